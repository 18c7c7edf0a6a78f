//! Delivery modes per subscription, over real sockets: the dashboard of the README's Topics
//! section (`common/dashboard.rs`), viewers that stop reading at the socket level (a
//! tokio-tungstenite client that is not polled, on a socket with a small receive buffer, so
//! that the server's socket fills and its queue backs up), a rate-limited viewer, filters and
//! pausing, several connections with different settings on one topic.

mod common;
#[path = "common/dashboard.rs"]
mod dashboard;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use dashboard::{
    Sample, await_viewers, command, dash, now_ms, publish, read_all, sample, seqs, viewer,
};
use wsock::prelude::*;
use wsock::{Delivery, DeliveryCounts};

fn server() -> Server {
    Server::new().route(dash)
}

async fn start(server: Server) -> (TestServer, Topics) {
    let topics = server.topics();
    (TestServer::start(server).await, topics)
}

fn counts(topics: &Topics) -> DeliveryCounts {
    topics.topic::<Json<Sample>>("samples").delivery_counts()
}

/// A publisher on its own task: `sensors` in turn, one sample every `interval`, `pad` bytes
/// each, until stopped; `last` holds the last seq published.
struct Publisher {
    stop: Arc<AtomicBool>,
    last: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    fn start(
        topics: &Topics,
        sensors: &'static [&'static str],
        interval: Duration,
        pad: usize,
    ) -> Self {
        let topic = topics.topic::<Json<Sample>>("samples");
        let stop = Arc::new(AtomicBool::new(false));
        let last = Arc::new(AtomicU64::new(0));
        let (stopped, published) = (Arc::clone(&stop), Arc::clone(&last));
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = 0;
            while !stopped.load(Ordering::Relaxed) {
                ticks.tick().await;
                seq += 1;
                publish(&topic, sensors[(seq as usize) % sensors.len()], seq, pad);
                published.store(seq, Ordering::Relaxed);
            }
        });
        Publisher { stop, last, task }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// A latest-only viewer that stops reading for 10 s is never closed, and once the samples
/// that were in flight in the sockets' buffers before it stopped are read, the first sample
/// it gets is at most one publish interval old; keyed, the same holds for each sensor. The
/// server holds one sample per key meanwhile, and counts the ones it replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_latest_only_viewer_is_not_closed_and_then_reads_fresh_samples() {
    let (app, topics) = start(server()).await;
    let mut latest = viewer(app.addr, "mode=latest").await;
    let mut keyed = viewer(app.addr, "mode=latest&keyed=true").await;
    await_viewers(&topics, 2).await;

    // 3 sensors, 20 samples a second each (one every 50 ms): 60 a second of 64 KiB.
    const SENSORS: &[&str] = &["cpu", "disk", "net"];
    let interval = Duration::from_millis(50);
    const PAD: usize = 64 * 1024;
    let publisher = Publisher::start(&topics, SENSORS, interval / 3, PAD);
    // Neither viewer is polled for 10 s: nothing reads their sockets.
    tokio::time::sleep(Duration::from_secs(10)).await;

    for (viewer, keys) in [(&mut latest, 1), (&mut keyed, SENSORS.len())] {
        let resumed = now_ms();
        // What was in flight when the viewer stopped: written to the sockets' buffers before
        // they filled, as old as the stall. Bounded by those buffers (a few MiB at most).
        let mut stale = 0;
        let mut fresh_of: std::collections::HashMap<String, u64> = Default::default();
        let deadline = Instant::now() + WAIT;
        while fresh_of.len() < keys {
            assert!(Instant::now() < deadline, "no fresh sample");
            let got = sample(viewer, WAIT).await.expect("a sample");
            let key = if keys == 1 {
                String::new()
            } else {
                got.sensor.clone()
            };
            if fresh_of.contains_key(&key) {
                continue;
            }
            if got.at_ms + 5_000 < resumed {
                stale += 1;
                assert!(
                    stale * PAD <= 8 << 20,
                    "more stale samples ({stale}) than the sockets' buffers hold"
                );
                continue;
            }
            // The first sample written since the viewer read again was the newest (of its
            // key) when the viewer came back: published at most one interval before.
            let before = resumed.saturating_sub(got.at_ms);
            assert!(
                before <= interval.as_millis() as u64 + 25,
                "the first sample after the stall ({} of {}) was published {before} ms before \
                 the viewer read again",
                got.seq,
                got.sensor
            );
            fresh_of.insert(key, got.seq);
        }
        eprintln!(
            "keys {keys}: {stale} stale samples were in the sockets' buffers, then {fresh_of:?} \
             (read {} ms after the viewer came back)",
            now_ms() - resumed
        );
    }
    publisher.stop().await;
    let counts = counts(&topics);
    // 10 s of 60 samples a second, for two viewers: most were replaced.
    assert!(counts.replaced > 600, "{counts:?}");
    assert_eq!((counts.dropped, counts.filtered), (0, 0));
    // Neither was closed: both still subscribe.
    assert_eq!(topics.subscribers("samples"), 2);
    drop((latest, keyed));
    app.stop().await;
}

/// A droppable viewer that stops reading loses samples, each counted, and is not closed;
/// a viewer that reads loses none meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_droppable_viewer_drops_counted_samples_and_others_lose_none() {
    let (app, topics) = start(server()).await;
    let mut stalled = viewer(app.addr, "mode=droppable").await;
    let mut reading = viewer(app.addr, "").await;
    await_viewers(&topics, 2).await;

    // 3,000 samples of 8 KiB, 1,000 a second: far more than the stalled viewer's queue
    // (1,024) and sockets hold.
    const N: u64 = 3_000;
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while (seqs.len() as u64) < N {
            let got = sample(&mut reading, WAIT).await.expect("a sample");
            seqs.push(got.seq);
        }
        (reading, seqs)
    });
    let topic = topics.topic::<Json<Sample>>("samples");
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    for seq in 1..=N {
        if seq % 10 == 1 {
            ticks.tick().await;
        }
        publish(&topic, "cpu", seq, 8 * 1024);
    }
    let (reading, seqs) = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    assert_eq!(
        seqs,
        (1..=N).collect::<Vec<_>>(),
        "the reading viewer lost samples"
    );

    // The stalled viewer reads again: what it gets and what was dropped make up every sample.
    let got = read_all(&mut stalled, Duration::from_millis(500)).await;
    let dropped = counts(&topics).dropped;
    assert!(dropped > 0, "nothing dropped");
    assert_eq!(
        got.len() as u64 + dropped,
        N,
        "got {} and dropped {dropped}",
        got.len()
    );
    assert!(got.windows(2).all(|w| w[0].seq < w[1].seq), "out of order");
    assert_eq!(topics.subscribers("samples"), 2, "a viewer was closed");
    drop((stalled, reading));
    app.stop().await;
}

/// A viewer that asks for 5 a second of a topic published 200 times a second gets 5 ± 1 in
/// each second, each the newest published when it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_viewer_gets_five_a_second_each_the_newest() {
    let (app, topics) = start(server()).await;
    let mut slow = viewer(app.addr, "rate=5").await;
    await_viewers(&topics, 1).await;
    let publisher = Publisher::start(&topics, &["cpu"], Duration::from_millis(5), 16);
    // Settle: the first one goes at once.
    let _ = sample(&mut slow, WAIT).await.expect("a sample");
    let mut received = 1u64;
    let start = Instant::now();
    let mut per_second = [0u32; 4];
    while start.elapsed() < Duration::from_secs(4) {
        let Some(got) = sample(&mut slow, Duration::from_millis(500)).await else {
            continue;
        };
        received += 1;
        let second = start.elapsed().as_secs() as usize;
        if second < per_second.len() {
            per_second[second] += 1;
        }
        // The newest: nothing but the samples of the last few milliseconds (the publisher
        // goes on while this one crosses the socket and this task waits for its turn: up to
        // 50 ms on a loaded machine) was published after it. A queue of every sample would
        // fall hundreds behind.
        let last = publisher.last.load(Ordering::Relaxed);
        assert!(
            last - got.seq <= 10,
            "sample {} when {last} was published",
            got.seq
        );
    }
    let last = Arc::clone(&publisher.last);
    publisher.stop().await;
    let publisher_last = last.load(Ordering::Relaxed);
    for (second, count) in per_second.iter().enumerate() {
        assert!(
            (4..=6).contains(count),
            "{count} in second {second}: {per_second:?}"
        );
    }
    // Every sample not sent was replaced by a newer one, and counted (the publisher's pace is
    // the machine's: at least all but the one still waiting and those under way).
    let published = publisher_last;
    let replaced = counts(&topics).replaced;
    assert!(
        replaced + received + 3 >= published && replaced > published / 2,
        "{published} published, {received} received, {:?}",
        counts(&topics)
    );
    drop(slow);
    app.stop().await;
}

/// Several viewers with different settings on one topic, each getting what it asked for:
/// filtered by sensor, keyed latest filtered, every sample, paused from the start then
/// played, paused and played by message in the middle of the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_pauses_hold_per_connection_on_one_topic() {
    let (app, topics) = start(server()).await;
    let mut cpu = viewer(app.addr, "sensor=cpu").await;
    let mut all = viewer(app.addr, "").await;
    let mut started_paused = viewer(app.addr, "paused=true").await;
    let mut pausing = viewer(app.addr, "").await;
    let mut latest_disk = viewer(app.addr, "mode=latest&sensor=disk").await;
    await_viewers(&topics, 5).await;
    let topic = topics.topic::<Json<Sample>>("samples");
    let sensors = ["cpu", "disk", "net"];

    // First half: `pausing` reads, `started_paused` gets nothing.
    for seq in 1..=30 {
        publish(&topic, sensors[seq as usize % 3], seq, 0);
    }
    let mut pausing_read = Vec::new();
    command(&mut pausing, "pause", &mut pausing_read).await;
    let mut paused_read = Vec::new();
    command(&mut started_paused, "play", &mut paused_read).await;
    // Second half: the other way round.
    for seq in 31..=60 {
        publish(&topic, sensors[seq as usize % 3], seq, 0);
    }
    command(&mut pausing, "play", &mut pausing_read).await;
    pausing_read.extend(read_all(&mut pausing, Duration::from_millis(300)).await);
    paused_read.extend(read_all(&mut started_paused, Duration::from_millis(300)).await);

    let quiet = Duration::from_millis(300);
    let cpu_read = read_all(&mut cpu, quiet).await;
    assert!(cpu_read.iter().all(|s| s.sensor == "cpu"));
    assert_eq!(
        seqs(&cpu_read),
        (1..=60).filter(|s| s % 3 == 0).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(&read_all(&mut all, quiet).await),
        (1..=60).collect::<Vec<_>>()
    );
    assert_eq!(seqs(&pausing_read), (1..=30).collect::<Vec<_>>());
    assert_eq!(seqs(&paused_read), (31..=60).collect::<Vec<_>>());
    // Latest-only and filtered: disk samples only, the last one for sure (it read along,
    // so it may have got earlier ones too).
    let disk = read_all(&mut latest_disk, quiet).await;
    assert!(disk.iter().all(|s| s.sensor == "disk"), "{:?}", seqs(&disk));
    assert_eq!(disk.last().map(|s| s.seq), Some(58));

    let counts = counts(&topics);
    // Filtered: cpu's 40 others, latest_disk's 40 others, and 30 for each pause.
    assert_eq!(counts.filtered, 40 + 40 + 30 + 30, "{counts:?}");
    assert_eq!(counts.dropped, 0);
    drop((cpu, all, started_paused, pausing, latest_disk));
    app.stop().await;
}

/// A subscription's mode changes when the connection subscribes again with another one:
/// the same connection, no second copy of any message.
#[tokio::test]
async fn subscribing_again_changes_the_mode() {
    #[websocket("/switch")]
    fn switch(out: Out<Text>, topics: Topics) {
        let topic = topics.topic::<Text>("switch");
        topic.subscribe(&out);
        on_message(|text: String| {
            let delivery = match text.as_str() {
                "odd" => Delivery::every()
                    .filter(|t: &Text| t.as_str().ends_with(['1', '3', '5', '7', '9'])),
                _ => Delivery::every(),
            };
            topic.subscribe_with(&out, delivery);
            out.write(Text::from("ok"));
        });
    }
    let (app, topics) = start(Server::new().route(switch)).await;
    let mut client = app.connect("/switch").await;
    let topic = topics.topic::<Text>("switch");
    while topic.subscribers() != 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    send(&mut client, "odd").await;
    assert_eq!(next_text(&mut client).await, "ok");
    assert_eq!(topic.subscribers(), 1);
    for i in 0..6 {
        topic.publish(Text::from(i.to_string())).unwrap();
    }
    for expected in ["1", "3", "5"] {
        assert_eq!(next_text(&mut client).await, expected);
    }
    send(&mut client, "every").await;
    assert_eq!(next_text(&mut client).await, "ok");
    topic.publish(Text::from("6")).unwrap();
    assert_eq!(next_text(&mut client).await, "6");
    assert_eq!(topic.delivery_counts().filtered, 3);
    drop(client);
    app.stop().await;
}
