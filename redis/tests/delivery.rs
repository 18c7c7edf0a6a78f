//! Delivery modes across two nodes through a real Redis (Debian's `redis-server`, started by
//! the test on a free port and stopped): the dashboard of the README's Topics section on both
//! nodes, samples published on one; viewers on the other node filter, pause and take the
//! latest per key of what comes through Redis, as those on the publishing node do.

mod common;
#[path = "../../tests/common/dashboard.rs"]
mod dashboard;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use dashboard::{
    Sample, await_viewers, command, dash, now_ms, publish, read_all, sample, seqs, viewer,
};
use wsock::prelude::*;

/// A node: its server on 127.0.0.1:0 with Redis as its broker.
async fn node(redis_url: &str) -> (SocketAddr, Topics, wsock::Handle) {
    let redis = wsock_redis::Redis::connect(redis_url).await.unwrap();
    let server = Server::new().broker(redis).route(dash);
    let topics = server.topics();
    let bound = server.bind("127.0.0.1:0").await.unwrap();
    let (addr, handle) = (bound.local_addr(), bound.handle());
    tokio::spawn(bound.run());
    (addr, topics, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_pauses_and_latest_hold_for_samples_from_the_other_node() {
    let Some(redis) = RedisServer::start("delivery modes").await else {
        return;
    };
    let (a, topics_a, _handle_a) = node(&redis.url()).await;
    let (b, topics_b, _handle_b) = node(&redis.url()).await;
    // The same viewers on both nodes: the publishing one (a) and the other (b).
    let mut viewers = Vec::new();
    for addr in [a, b] {
        viewers.push([
            viewer(addr, "sensor=cpu").await,
            viewer(addr, "").await,
            viewer(addr, "paused=true").await,
            viewer(addr, "").await,
        ]);
    }
    await_viewers(&topics_a, 4).await;
    await_viewers(&topics_b, 4).await;
    redis.await_subscribers("wsock:samples", 2).await;
    let topic = topics_a.topic::<Json<Sample>>("samples");
    let sensors = ["cpu", "disk", "net"];

    for seq in 1..=30 {
        publish(&topic, sensors[seq as usize % 3], seq, 0);
    }
    // Once a node's `all` viewer got the first half (through Redis on b), its `pausing`
    // viewer reads the first half, then pauses; the paused one plays.
    let mut pausing_read = [Vec::new(), Vec::new()];
    let mut paused_read = [Vec::new(), Vec::new()];
    let mut all_read = [Vec::new(), Vec::new()];
    for (node, [_, all, paused, pausing]) in viewers.iter_mut().enumerate() {
        while all_read[node].len() < 30 {
            all_read[node].push(sample(all, WAIT).await.expect("a sample").seq);
        }
        command(pausing, "pause", &mut pausing_read[node]).await;
        command(paused, "play", &mut paused_read[node]).await;
    }
    for seq in 31..=60 {
        publish(&topic, sensors[seq as usize % 3], seq, 0);
    }
    let quiet = Duration::from_millis(500);
    for (node, [cpu, all, paused, pausing]) in viewers.iter_mut().enumerate() {
        let name = ["a", "b"][node];
        all_read[node].extend(seqs(&read_all(all, quiet).await));
        assert_eq!(all_read[node], (1..=60).collect::<Vec<_>>(), "node {name}");
        command(pausing, "play", &mut pausing_read[node]).await;
        let pausing = seqs(&pausing_read[node]);
        assert_eq!(pausing, (1..=30).collect::<Vec<_>>(), "node {name}");
        let mut paused_seqs = seqs(&paused_read[node]);
        paused_seqs.extend(seqs(&read_all(paused, quiet).await));
        assert_eq!(paused_seqs, (31..=60).collect::<Vec<_>>(), "node {name}");
        let cpu = seqs(&read_all(cpu, quiet).await);
        let expected: Vec<u64> = (1..=60).filter(|s| s % 3 == 0).collect();
        assert_eq!(cpu, expected, "node {name}");
    }
    for topics in [&topics_a, &topics_b] {
        let counts = topics.topic::<Json<Sample>>("samples").delivery_counts();
        assert_eq!(counts.filtered, 40 + 30 + 30, "{counts:?}");
    }
    drop(viewers);

    // A latest-only viewer per key on node b stops reading for 3 s while node a publishes
    // 60 samples of 64 KiB a second: it is not closed, and once the samples that were in its
    // sockets' buffers are read, each sensor's first sample was its newest when the viewer
    // came back.
    let mut keyed = viewer(b, "mode=latest&keyed=true").await;
    await_viewers(&topics_b, 1).await;
    let publishing = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(50) / 3);
        for seq in 1.. {
            ticks.tick().await;
            publish(&topic, sensors[seq as usize % 3], seq, 64 * 1024);
            if seq == 60 * 5 {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let resumed = now_ms();
    let mut fresh: HashMap<String, u64> = HashMap::new();
    let mut stale = 0;
    while fresh.len() < 3 {
        let got = sample(&mut keyed, WAIT).await.expect("a sample");
        if fresh.contains_key(&got.sensor) {
            continue;
        }
        if got.at_ms + 1_500 < resumed {
            stale += 1;
            assert!(stale * 64 * 1024 <= 8 << 20, "{stale} stale samples");
            continue;
        }
        let before = resumed.saturating_sub(got.at_ms);
        assert!(
            before <= 50 + 25,
            "{}'s first sample after the stall was published {before} ms before",
            got.sensor
        );
        fresh.insert(got.sensor.clone(), got.seq);
    }
    publishing.await.unwrap();
    let counts = topics_b.topic::<Json<Sample>>("samples").delivery_counts();
    assert!(counts.replaced > 60, "{counts:?}");
    assert_eq!(topics_b.subscribers("samples"), 1, "the viewer was closed");
}
