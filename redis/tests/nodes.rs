//! Topics across server processes through a real Redis (Debian's `redis-server`, started by
//! each test on a free port in a temporary directory, and stopped): two nodes, clients and
//! publishers on both, every message checked; Redis killed and restarted mid-run; channels
//! released; a node started while Redis is down.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_two_nodes_none_lost_duplicated_or_reordered() {
    let Some(redis) = RedisServer::start("two nodes").await else {
        return;
    };
    let a = Node::start(&redis.url(), false).await;
    let b = Node::start(&redis.url(), false).await;
    let mut subscribers = Vec::new();
    for node in [&a, &b] {
        for _ in 0..3 {
            subscribers.push(node.connect("/sub/seq").await);
        }
    }
    redis.await_subscribers("wsock:seq", 2).await;

    const N: usize = 2_000;
    // Every subscriber reads while the publishers publish, as clients do.
    let readers: Vec<_> = subscribers
        .into_iter()
        .map(|mut subscriber| {
            tokio::spawn(async move {
                let counts = check_sequences(&mut subscriber, 2 * N).await;
                // Nothing more: no message twice.
                let more = tokio::time::timeout(Duration::from_millis(200), subscriber.next());
                assert!(more.await.is_err(), "an extra message");
                counts
            })
        })
        .collect();
    let (mut pa, mut pb) = (a.connect("/pub/seq").await, b.connect("/pub/seq").await);
    tokio::join!(
        publish_all(&mut pa, "a", 0..N),
        publish_all(&mut pb, "b", 0..N)
    );
    for reader in readers {
        let counts = reader.await.unwrap();
        assert_eq!(counts, HashMap::from([("a".into(), N), ("b".into(), N)]));
    }
}

#[tokio::test]
async fn both_nodes_recover_when_redis_is_killed_and_restarted() {
    let Some(mut redis) = RedisServer::start("redis restart").await else {
        return;
    };
    let mut a = Node::start(&redis.url(), false).await;
    let mut b = Node::start(&redis.url(), false).await;
    let mut on_a = a.connect("/sub/news").await;
    let mut on_b = b.connect("/sub/news").await;
    redis.await_subscribers("wsock:news", 2).await;
    let mut pa = a.connect("/pub/news").await;
    let mut pb = b.connect("/pub/news").await;
    publish_all(&mut pa, "before", 0..100).await;
    for subscriber in [&mut on_a, &mut on_b] {
        check_sequences(subscriber, 100).await;
    }

    redis.kill().await;
    a.expect_output("Redis is unreachable").await;
    b.expect_output("Redis is unreachable").await;
    // While Redis is down, a node's own subscribers still get its publishes, the publisher
    // is told the others did not, and nothing hangs.
    publish_all(&mut pa, "during", 0..20).await;
    assert_eq!(check_sequences(&mut on_a, 20).await["during"], 20);
    let told = next_text(&mut pa).await;
    assert!(
        told.starts_with("error: the message reached this node only: Redis at"),
        "{told}"
    );

    redis.run().await;
    a.expect_output("Redis is reachable").await;
    b.expect_output("Redis is reachable").await;
    redis.await_subscribers("wsock:news", 2).await;
    tokio::join!(
        publish_all(&mut pa, "after-a", 0..200),
        publish_all(&mut pb, "after-b", 0..200)
    );
    // On B, the outage's messages never came: the next ones are the later publishes.
    let counts = check_sequences(&mut on_b, 400).await;
    assert_eq!(counts.get("after-a"), Some(&200), "{counts:?}");
    assert_eq!(counts.get("after-b"), Some(&200), "{counts:?}");
    // On A, what came after its own "during" messages: the later ones, all of them.
    let counts = check_sequences(&mut on_a, 400).await;
    assert_eq!(counts.get("after-a"), Some(&200), "{counts:?}");
    assert_eq!(counts.get("after-b"), Some(&200), "{counts:?}");
}

#[tokio::test]
async fn a_nodes_channel_is_released_when_its_last_subscriber_leaves() {
    let Some(redis) = RedisServer::start("channel release").await else {
        return;
    };
    let a = Node::start(&redis.url(), false).await;
    let first = a.connect("/sub/lonely").await;
    let second = a.connect("/sub/lonely").await;
    redis.await_subscribers("wsock:lonely", 1).await;
    assert!(redis.channels().await.contains(&"wsock:lonely".to_owned()));
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        redis.subscribers("wsock:lonely").await,
        1,
        "one subscriber is left"
    );
    drop(second);
    redis.await_subscribers("wsock:lonely", 0).await;
    assert!(!redis.channels().await.contains(&"wsock:lonely".to_owned()));
}

#[tokio::test]
async fn a_node_started_while_redis_is_down_says_so_and_links_up_later() {
    let Some(mut redis) = RedisServer::start("redis down at start").await else {
        return;
    };
    redis.kill().await;
    let error = wsock_redis::Redis::connect(&redis.url()).await.unwrap_err();
    let expected = format!("cannot reach Redis at redis://127.0.0.1:{}", redis.port);
    assert!(error.to_string().starts_with(&expected), "{error}");

    let mut a = Node::start(&redis.url(), true).await;
    a.expect_output("Redis is unreachable").await;
    let b = Node::start(&redis.url(), true).await;
    let mut on_b = b.connect("/sub/late").await;
    let mut pa = a.connect("/pub/late").await;
    publish_all(&mut pa, "early", 0..1).await;
    assert!(
        next_text(&mut pa)
            .await
            .starts_with("error: the message reached this node only")
    );

    redis.run().await;
    // A checks every second: its publishes go to Redis once it has said Redis is back.
    a.expect_output("Redis is reachable").await;
    redis.await_subscribers("wsock:late", 1).await;
    publish_all(&mut pa, "late", 0..50).await;
    assert_eq!(check_sequences(&mut on_b, 50).await["late"], 50);
}
