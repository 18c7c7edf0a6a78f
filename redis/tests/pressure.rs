//! The broker under pressure, with a real `redis-server`: a publisher faster than Redis (behind
//! a slow link), Redis asleep in the middle of a steady publish, a receiving node that stalls
//! until Redis cuts it off. Memory stays bounded, every message is either delivered on the
//! other node or its publisher was told, and nothing arrives twice.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// The broker's default queue limit, 8 MiB, in KiB.
const QUEUE_LIMIT_KIB: u64 = 8 << 10;
/// What the publishing node's memory may grow by beyond the queue limit: the allocator's
/// slack, the pipeline being built and the Redis client's buffers. Documented in the README.
const MARGIN_KIB: u64 = 16 << 10;

/// `done sent=N refused=A-B,C-D stats=..`: how many were sent and which were refused.
fn parse_done(text: &str) -> (u64, Vec<(u64, u64)>) {
    let rest = text
        .strip_prefix("done sent=")
        .unwrap_or_else(|| panic!("not a flood's end: {text}"));
    let (sent, rest) = rest.split_once(" refused=").unwrap();
    let (refused, _) = rest.split_once(" stats=").unwrap();
    let runs = refused
        .split(',')
        .filter(|run| !run.is_empty())
        .map(|run| {
            let (a, b) = run.split_once('-').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    (sent.parse().unwrap(), runs)
}

/// Reads numbered messages (`17....`) on `client` until `stop` says how many to expect and
/// they came, or nothing comes for a while; returns them in the order they came.
async fn collect(
    mut client: Client,
    mut stop: tokio::sync::watch::Receiver<Option<u64>>,
) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        if let Some(expected) = *stop.borrow()
            && got.len() as u64 >= expected
        {
            return got;
        }
        let next = tokio::time::timeout(Duration::from_secs(20), client.next());
        tokio::select! {
            message = next => match message {
                Ok(Some(Ok(Message::Text(text)))) => {
                    got.push(text.trim_end_matches('.').parse().expect("a number"));
                }
                Ok(Some(Ok(_))) => {}
                other => {
                    println!("the reader stopped: {other:?}");
                    return got;
                }
            },
            _ = stop.changed() => {}
        }
    }
}

/// Every number below `sent` either came (once, in order) or was refused, not both.
fn check_delivery(got: &[u64], sent: u64, refused: &[(u64, u64)]) {
    let refused_count: u64 = refused.iter().map(|(a, b)| b - a + 1).sum();
    let is_refused = |n: u64| refused.iter().any(|(a, b)| (*a..=*b).contains(&n));
    let mut expected = (0..sent).filter(|n| !is_refused(*n));
    for (at, n) in got.iter().enumerate() {
        let want = expected.next();
        assert_eq!(
            Some(*n),
            want,
            "message {at} on the other node: lost, duplicated, reordered or refused"
        );
    }
    assert_eq!(
        expected.next(),
        None,
        "messages neither delivered nor refused ({} delivered, {refused_count} refused of {sent})",
        got.len()
    );
}

/// The publishing node's resident memory while `during` runs: its largest sample, in KiB.
async fn largest_rss<T>(node: &Node, during: impl Future<Output = T>) -> (T, u64) {
    let mut during = std::pin::pin!(during);
    let mut largest = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            done = &mut during => return (done, largest.max(node.memory_kib().0)),
            _ = tick.tick() => largest = largest.max(node.memory_kib().0),
        }
    }
}

/// A publisher at full speed for 20 s, with Redis behind a link slower than the publisher
/// (2 MB/s): the publishing node's memory stays under the queue limit plus a margin, and
/// every message either reached the other node, in order and once, or was refused. Then the
/// awaiting form: nothing refused, everything delivered, at the link's pace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_faster_than_redis_is_refused_or_slowed_and_memory_stays_bounded() {
    let Some(redis) = RedisServer::start("redis behind").await else {
        return;
    };
    let redis_addr = SocketAddr::from(([127, 0, 0, 1], redis.port));
    let link = Throttle::start(redis_addr, 2 << 20).await;
    let a = Node::start_with(&link.url(), &[]).await;
    let b = Node::start(&redis.url(), false).await;

    for (wait, secs) in [(0, 20), (1, 5)] {
        let topic = format!("flood{wait}");
        let on_b = b.connect(&format!("/sub/{topic}")).await;
        redis.await_subscribers(&format!("wsock:{topic}"), 1).await;
        let (stop, stopped) = tokio::sync::watch::channel(None);
        let reader = tokio::spawn(collect(on_b, stopped));
        let (rss_before, _) = a.memory_kib();
        let started = Instant::now();
        let path = format!("/flood/{topic}?secs={secs}&size=64&wait={wait}");
        let mut flood = a.connect(&path).await;
        let flooded = next_text_within(&mut flood, Duration::from_secs(secs + 60));
        let (done, largest) = largest_rss(&a, flooded).await;
        let took = started.elapsed();
        let (sent, refused) = parse_done(&done);
        let refused_count: u64 = refused.iter().map(|(a, b)| b - a + 1).sum();
        stop.send(Some(sent - refused_count)).unwrap();
        let got = reader.await.unwrap();
        let delivered_in = started.elapsed();
        println!(
            "wait={wait}: {sent} published in {took:?}, {refused_count} refused, {} delivered on \
             the other node in {delivered_in:?} ({:.0}/s); publishing node's memory {rss_before} \
             KiB before, at most {largest} KiB during; {}",
            got.len(),
            got.len() as f64 / delivered_in.as_secs_f64(),
            done.split_once(" stats=").unwrap().1,
        );
        check_delivery(&got, sent, &refused);
        assert!(
            largest < rss_before + QUEUE_LIMIT_KIB + MARGIN_KIB,
            "the publishing node grew from {rss_before} KiB to {largest} KiB"
        );
        if wait == 0 {
            assert!(refused_count > 0, "Redis kept up: the link is too fast");
        } else {
            assert_eq!(refused_count, 0, "the awaiting form was refused");
        }
    }
}

/// Redis asleep for 3 s (`DEBUG SLEEP 3`) in the middle of a steady publish: the publishing
/// node's own subscriber keeps receiving without a pause, the publisher is told which
/// messages did not reach the other node, cross-node delivery resumes after the sleep, and
/// nothing arrives twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_asleep_mid_publish_pauses_no_local_subscriber_and_duplicates_nothing() {
    let Some(redis) = RedisServer::start("redis asleep").await else {
        return;
    };
    let a = Node::start(&redis.url(), false).await;
    let b = Node::start(&redis.url(), false).await;
    let mut on_a = a.connect("/sub/ticks").await;
    let on_b = b.connect("/sub/ticks").await;
    redis.await_subscribers("wsock:ticks", 2).await;
    let (stop, stopped) = tokio::sync::watch::channel(None);
    let reader_b = tokio::spawn(collect(on_b, stopped));

    // A steady publisher: 500 messages a second for 7 s; A answers `error: ..` for each one
    // that did not reach the other nodes.
    let mut publisher = a.connect("/pub/ticks").await;
    const COUNT: u64 = 3_500;
    let sending = async {
        let mut tick = tokio::time::interval(Duration::from_millis(2));
        for i in 0..COUNT {
            tick.tick().await;
            publisher.send(Message::text(i.to_string())).await.unwrap();
        }
    };
    let sleeping = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Redis answers once it wakes up: its own connection waits with it.
        let client = redis::Client::open(redis.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let slept: redis::RedisResult<()> = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(3)
            .query_async(&mut connection)
            .await;
        // The answer may come after this connection's own timeout; a refusal may not.
        if let Err(error) = slept {
            assert!(error.is_timeout(), "DEBUG SLEEP: {error}");
        }
    };
    // The local subscriber, timed: the longest gap between two messages.
    let local = async {
        let mut longest = Duration::ZERO;
        let mut last = Instant::now();
        for i in 0..COUNT {
            let text = next_text(&mut on_a).await;
            assert_eq!(
                text,
                i.to_string(),
                "the local subscriber lost or reordered"
            );
            longest = longest.max(last.elapsed());
            last = Instant::now();
        }
        longest
    };
    let ((), (), longest_gap) = tokio::join!(sending, sleeping, local);
    println!("the local subscriber's longest gap: {longest_gap:?}");
    assert!(
        longest_gap < Duration::from_millis(500),
        "the local subscriber paused for {longest_gap:?} while Redis slept"
    );

    // What the publisher was told: one `error: ..` per message refused, in order; read them
    // until the last message has had time to cross.
    let mut refused = Vec::new();
    let told = async {
        loop {
            let text = next_text(&mut publisher).await;
            assert!(text.starts_with("error: "), "{text}");
            refused.push(text);
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), told).await;
    // The publisher's errors do not name the message: the other node's gap must be exactly as
    // long as the number of refusals, and everything after the sleep must come.
    stop.send(Some(COUNT - refused.len() as u64)).unwrap();
    let got = reader_b.await.unwrap();
    println!(
        "{} refused while Redis slept, {} delivered on the other node; A: {}",
        refused.len(),
        got.len(),
        a.stats().await
    );
    assert!(!refused.is_empty(), "nothing was refused while Redis slept");
    assert_eq!(got.len() as u64, COUNT - refused.len() as u64);
    assert!(
        got.windows(2).all(|pair| pair[0] < pair[1]),
        "duplicated or reordered on the other node"
    );
    assert_eq!(
        got.last(),
        Some(&(COUNT - 1)),
        "cross-node delivery did not resume"
    );
}

/// A receiving node that stalls (SIGSTOP) while another publishes fast, against a Redis that
/// lets a pubsub client fall 256 KiB behind: Redis drops it, and when it runs again the node
/// says that messages were lost, subscribes again, says that too, and receives what comes
/// next. Its memory stays bounded: what was waiting when Redis cut it off, no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_receiver_cut_off_by_redis_says_so_and_recovers() {
    let Some(redis) = RedisServer::start("slow receiver").await else {
        return;
    };
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("client-output-buffer-limit")
        .arg("pubsub 256kb 128kb 1")
        .query_async(&mut connection)
        .await
        .unwrap();
    let a = Node::start(&redis.url(), false).await;
    let mut b = Node::start(&redis.url(), false).await;
    let mut on_b = b.connect("/sub/burst").await;
    redis.await_subscribers("wsock:burst", 1).await;
    let (_, peak_before) = b.memory_kib();

    b.signal(libc::SIGSTOP);
    let mut flood = a.connect("/flood/burst?count=200000&size=200&wait=1").await;
    let done = next_text(&mut flood).await;
    let (sent, refused) = parse_done(&done);
    assert!(refused.is_empty(), "A's queue overflowed: {done}");
    // Redis has cut B off by now (over 256 KiB behind for a second): wait for it to say so.
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.subscribers("wsock:burst").await > 0 {
        assert!(
            Instant::now() < deadline,
            "Redis never dropped the stalled node"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.signal(libc::SIGCONT);
    b.expect_output("the connection to Redis dropped").await;
    b.expect_output("subscribed again after the connection to Redis dropped")
        .await;
    redis.await_subscribers("wsock:burst", 1).await;
    let (_, peak_after) = b.memory_kib();

    // What B's subscriber got before and during the stall is a prefix of A's numbers, with
    // a gap; what A publishes now comes whole.
    let mut drained = 0;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_millis(500), on_b.next()).await
    {
        drained += 1;
    }
    let mut flood = a.connect("/flood/burst?count=100&size=8").await;
    let done = next_text(&mut flood).await;
    assert!(done.starts_with("done sent=100 refused= "), "{done}");
    for i in 0..100 {
        let text = next_text(&mut on_b).await;
        assert_eq!(text.trim_end_matches('.'), i.to_string());
    }
    let stats = b.stats().await;
    println!(
        "{sent} sent while B was stopped, {drained} reached B's subscriber; B's peak memory \
         {peak_before} KiB before, {peak_after} KiB after; B: {stats}"
    );
    assert!(
        drained < sent as usize,
        "nothing was lost: Redis did not cut B off"
    );
    // Once, or twice when the Redis client's reconnect raced its own retry.
    assert!(stat(&stats, "disconnections") >= 1, "{stats}");
    assert!(
        peak_after < peak_before + (64 << 10),
        "the stalled node grew from {peak_before} KiB to {peak_after} KiB"
    );
}

/// A receiving node whose subscribers stop reading while another node publishes fast: each
/// subscriber is closed with 1008 once its queue is full, and the node's memory stays within
/// what those queues hold (it reads from Redis no faster than it delivers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiving_node_whose_subscribers_stop_reading_stays_bounded() {
    let Some(redis) = RedisServer::start("subscribers not reading").await else {
        return;
    };
    let a = Node::start(&redis.url(), false).await;
    // wsock's default queue: 1,024 messages a connection.
    let mut b = Node::start_with(&redis.url(), &[]).await;
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(b.connect("/sub/firehose").await);
    }
    redis.await_subscribers("wsock:firehose", 1).await;
    let (_, peak_before) = b.memory_kib();
    let mut flood = a
        .connect("/flood/firehose?count=200000&size=200&wait=1")
        .await;
    let done = next_text_within(&mut flood, Duration::from_secs(120)).await;
    assert!(done.contains(" refused= "), "{done}");
    // Each idle subscriber got as much as its queue and socket held, then the server ended
    // it: a 1008 frame, or a reset once the close timeout passed with the frame unread.
    let readers: Vec<_> = idle
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                loop {
                    match tokio::time::timeout(WAIT, client.next()).await {
                        Ok(Some(Ok(Message::Close(Some(frame))))) => {
                            assert_eq!(u16::from(frame.code), 1008);
                            return;
                        }
                        Ok(Some(Ok(_))) => continue,
                        Ok(Some(Err(_)) | None) => return,
                        Err(_) => panic!("an idle subscriber was never closed"),
                    }
                }
            })
        })
        .collect();
    for reader in readers {
        reader.await.unwrap();
    }
    let (_, peak_after) = b.memory_kib();
    let stats = b.stats().await;
    println!(
        "100 idle subscribers closed; the receiving node's peak memory {peak_before} KiB \
         before, {peak_after} KiB after; B: {stats}"
    );
    let said = b.output(Duration::from_millis(300)).await;
    assert!(
        said.iter().any(|line| line.contains("slow consumer")),
        "{said:#?}"
    );
    // Bounded by what a full queue holds per subscriber (1,024 messages queued, framed and
    // on their way: about 256 KiB of bookkeeping in a debug build), and the allocator's slack.
    let bound = peak_before + 100 * 256 + MARGIN_KIB;
    assert!(
        peak_after < bound,
        "the receiving node grew from {peak_before} KiB to {peak_after} KiB (bound {bound} KiB)"
    );
}
