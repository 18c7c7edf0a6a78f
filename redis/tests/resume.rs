//! Resume across nodes sharing a Redis (the `node` example's `/resume/{topic}`): each node
//! numbers what it delivers, so a client is recovered on the node it left, and told it was not
//! on another node or after Redis restarted (the link dropped: what other nodes published
//! meanwhile may be missing); afterwards resuming works again. Never a silent gap.

mod common;

use common::*;
use serde_json::Value;

/// A resume frame's header and what follows it.
fn header(text: &str) -> (Value, &str) {
    let rest = text
        .strip_prefix('\u{1e}')
        .unwrap_or_else(|| panic!("not a resume frame: {text}"));
    let (header, body) = rest.split_once('\u{1e}').unwrap();
    (serde_json::from_str(header).unwrap(), body)
}

/// The notice: epoch, offset, and `recovered` if a position was given.
async fn notice(client: &mut Client) -> (String, u64, Option<bool>) {
    let text = next_text(client).await;
    let (header, _) = header(&text);
    assert!(header["subscribed"].is_string(), "{text}");
    (
        header["epoch"].as_str().unwrap().to_owned(),
        header["offset"].as_u64().unwrap(),
        header["recovered"].as_bool(),
    )
}

/// A topic message's offset and body.
async fn message(client: &mut Client) -> (u64, String) {
    let text = next_text(client).await;
    let (header, body) = header(&text);
    assert!(header["topic"].is_string(), "{text}");
    (header["offset"].as_u64().unwrap(), body.to_owned())
}

fn resume_path(topic: &str, epoch: &str, offset: u64) -> String {
    format!(
        "/resume/{topic}?{}",
        resume::resume_query(&[(topic, epoch, offset)])
    )
}

#[tokio::test]
async fn resume_is_per_node_and_a_redis_restart_is_told() {
    let Some(mut redis) = RedisServer::start("resume").await else {
        return;
    };
    let mut a = Node::start(&redis.url(), false).await;
    let mut b = Node::start(&redis.url(), false).await;
    // A plain subscriber on A, to know when A has delivered what B published.
    let mut watch = a.connect("/sub/news").await;
    let mut on_a = a.connect("/resume/news").await;
    let (epoch, start, _) = notice(&mut on_a).await;
    assert_eq!(start, 0);
    redis.await_subscribers("wsock:news", 1).await;
    // Published on B, numbered by A as A delivers them.
    let mut publisher = b.connect("/pub/news").await;
    publish_all(&mut publisher, "m", 0..10).await;
    for i in 1..=10 {
        assert_eq!(message(&mut on_a).await, (i, format!("m:{}", i - 1)));
    }
    drop(on_a);
    publish_all(&mut publisher, "away", 0..5).await;
    check_sequences(&mut watch, 15).await;

    // On another node, A's epoch means nothing: told, not given a gap.
    let mut on_b = b.connect(&resume_path("news", &epoch, 10)).await;
    let (_, _, recovered) = notice(&mut on_b).await;
    assert_eq!(recovered, Some(false));
    assert_eq!(next_text(&mut on_b).await, "not recovered: Epoch");
    drop(on_b);

    // Back on A: the five missed, then live.
    let mut on_a = a.connect(&resume_path("news", &epoch, 10)).await;
    assert_eq!(notice(&mut on_a).await, (epoch.clone(), 15, Some(true)));
    for i in 0..5 {
        assert_eq!(message(&mut on_a).await, (11 + i, format!("away:{i}")));
    }
    drop(on_a);

    // Nobody on A holds the topic now: its history is kept, and fed what B publishes.
    drop(watch);
    // (Time for A to see both connections end, so that the topic goes unheld.)
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let received = stat(&a.stats().await, "received");
    publish_all(&mut publisher, "unheld", 0..4).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while stat(&a.stats().await, "received") < received + 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A never got B's messages"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut on_a = a.connect(&resume_path("news", &epoch, 15)).await;
    assert_eq!(notice(&mut on_a).await, (epoch.clone(), 19, Some(true)));
    for i in 0..4 {
        assert_eq!(message(&mut on_a).await, (16 + i, format!("unheld:{i}")));
    }
    drop(on_a);
    let mut watch = a.connect("/sub/news").await;

    // Redis restarts (without persistence): A's link dropped, so its history starts again.
    redis.kill().await;
    redis.run().await;
    a.expect_output("subscribed again").await;
    b.expect_output("Redis is reachable").await;
    let mut on_a = a.connect(&resume_path("news", &epoch, 19)).await;
    let (after, offset, recovered) = notice(&mut on_a).await;
    assert_ne!(after, epoch);
    assert_eq!(recovered, Some(false));
    assert_eq!(next_text(&mut on_a).await, "not recovered: Epoch");
    drop(on_a);

    // And resuming works again from the new position.
    let mut publisher = b.connect("/pub/news").await;
    publish_all(&mut publisher, "later", 0..3).await;
    check_sequences(&mut watch, 3).await;
    let mut on_a = a.connect(&resume_path("news", &after, offset)).await;
    assert_eq!(notice(&mut on_a).await.2, Some(true));
    for i in 0..3 {
        assert_eq!(
            message(&mut on_a).await,
            (offset + 1 + i, format!("later:{i}"))
        );
    }
}
