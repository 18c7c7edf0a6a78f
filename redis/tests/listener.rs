//! Server code that keeps its state in sync from a topic, across two nodes through a real
//! Redis (Debian's `redis-server`, started by the test on a free port and stopped): each node
//! holds a poll's counts in memory; an endpoint on either node publishes the votes it takes,
//! and a listener on each node applies every vote, its own node's and the other's, once. No
//! Redis code beyond `Server::broker`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wsock::prelude::*;

/// A vote, as the endpoints publish it on the `votes` topic.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
struct Cast {
    option: usize,
}

/// A node's in-memory copy of the poll's counts.
#[derive(Clone, Default)]
struct Counts(Arc<Mutex<Vec<u64>>>);

impl Counts {
    fn now(&self) -> Vec<u64> {
        self.0.lock().unwrap().clone()
    }
}

/// Takes votes (`0`, `1`, ..) and publishes them; the counts are the listeners' business.
#[websocket("/vote")]
fn vote(topics: Topics) {
    let votes = topics.topic::<Json<Cast>>("votes");
    on_message(|option: String| {
        let option = option.parse()?;
        votes.publish(Json(Cast { option }))?;
        Ok(())
    });
}

/// A node: its server on 127.0.0.1:0 with Redis as its broker, and the listener that applies
/// every vote to its counts.
async fn node(redis_url: &str) -> (std::net::SocketAddr, Counts, wsock::Handle) {
    let redis = wsock_redis::Redis::connect(redis_url).await.unwrap();
    let server = Server::new().broker(redis).route(vote);
    let counts = Counts(Arc::new(Mutex::new(vec![0; 3])));
    let mut listener = server.topics().topic::<Json<Cast>>("votes").listen();
    let applied = counts.clone();
    tokio::spawn(async move {
        while let Ok(Json(cast)) = listener.recv().await {
            applied.0.lock().unwrap()[cast.option] += 1;
        }
    });
    let bound = server.bind("127.0.0.1:0").await.unwrap();
    let (addr, handle) = (bound.local_addr(), bound.handle());
    tokio::spawn(bound.run());
    (addr, counts, handle)
}

async fn connect(addr: std::net::SocketAddr) -> Client {
    let (client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/vote"))
        .await
        .unwrap();
    client
}

async fn cast(client: &mut Client, options: &[usize]) {
    for option in options {
        client
            .send(WsMessage::text(option.to_string()))
            .await
            .unwrap();
    }
}

/// Waits until `counts` reads `expected`.
async fn await_counts(counts: &Counts, expected: &[u64], node: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = counts.now();
        if now == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {node}'s counts are {now:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_keep_each_nodes_counts_in_sync() {
    let Some(redis) = RedisServer::start("listeners in sync").await else {
        return;
    };
    let (a, counts_a, _handle_a) = node(&redis.url()).await;
    let (b, counts_b, _handle_b) = node(&redis.url()).await;
    // Both nodes listen: the channel has two subscribing connections.
    redis.await_subscribers("wsock:votes", 2).await;

    let (mut on_a, mut on_b) = (connect(a).await, connect(b).await);
    let from_a: Vec<usize> = (0..300).map(|i| i % 3).collect();
    let from_b: Vec<usize> = (0..200).map(|i| (i % 2) * 2).collect();
    tokio::join!(cast(&mut on_a, &from_a), cast(&mut on_b, &from_b));
    // Each vote counted once on each node: its own node's (delivered locally, and not a
    // second time back from Redis) and the other's (through Redis).
    let expected = [100 + 100, 100, 100 + 100];
    await_counts(&counts_a, &expected, "a").await;
    await_counts(&counts_b, &expected, "b").await;
    // And nothing more arrives later.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(counts_a.now(), expected);
    assert_eq!(counts_b.now(), expected);
}
