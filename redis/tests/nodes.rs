//! Topics across server processes through a real Redis (Debian's `redis-server`, started by
//! each test on a free port in a temporary directory, and stopped): two nodes, clients and
//! publishers on both, every message checked; Redis killed and restarted mid-run; channels
//! released; a node started while Redis is down.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(15);

#[path = "../../tests/common/redis.rs"]
mod redis_server;

use redis_server::RedisServer;

/// What the tests ask Redis itself.
trait Ask {
    async fn subscribers(&self, channel: &str) -> usize;
    async fn channels(&self) -> Vec<String>;
    async fn await_subscribers(&self, channel: &str, count: usize);
}

impl Ask for RedisServer {
    /// How many connections subscribe to `channel`, as Redis counts them.
    async fn subscribers(&self, channel: &str) -> usize {
        let client = redis::Client::open(self.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let (_, count): (String, usize) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut connection)
            .await
            .unwrap();
        count
    }

    /// The channels with subscribers.
    async fn channels(&self) -> Vec<String> {
        let client = redis::Client::open(self.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query_async(&mut connection)
            .await
            .unwrap()
    }

    /// Waits until `channel` has `count` subscribing connections.
    async fn await_subscribers(&self, channel: &str, count: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let now = self.subscribers(channel).await;
            if now == count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{channel} has {now} subscribing connections, not {count}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A node: the `node` example, in a process of its own, on 127.0.0.1:0.
struct Node {
    _child: Child,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
    addr: SocketAddr,
    /// What it printed before it listened.
    banner: Vec<String>,
}

impl Node {
    async fn start(redis_url: &str, lazy: bool) -> Node {
        let examples = std::env::current_exe()
            .unwrap()
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("examples");
        let mut command = Command::new(examples.join("node"));
        // Queues that hold a whole run: what these tests check is the way through Redis, not
        // how fast their own clients read (under load, a 1024-message queue can overflow).
        command.args(["127.0.0.1:0", redis_url, "--queue", "100000"]);
        if lazy {
            command.arg("--lazy");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the node example is built by `cargo test`");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        let addr = tokio::time::timeout(WAIT, async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("the node exited before listening: {seen:#?}"));
                if let Some(addr) = line.split("listening addr=").nth(1) {
                    break addr.trim().parse().unwrap();
                }
                seen.push(line);
            }
        })
        .await
        .expect("the node did not listen in time");
        Node {
            _child: child,
            lines,
            addr,
            banner: seen,
        }
    }

    async fn expect_output(&mut self, text: &str) {
        if let Some(at) = self.banner.iter().position(|line| line.contains(text)) {
            self.banner.drain(..=at);
            return;
        }
        self.banner.clear();
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                if line.contains(text) {
                    return;
                }
            }
            panic!("the node exited without printing {text:?}");
        });
        found
            .await
            .unwrap_or_else(|_| panic!("the node never printed {text:?}"));
    }

    async fn connect(&self, path: &str) -> Client {
        let url = format!("ws://{}{path}", self.addr);
        tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .expect("connect failed")
            .0
    }
}

async fn next_text(client: &mut Client) -> String {
    loop {
        match tokio::time::timeout(WAIT, client.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return text.to_string(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Reads `count` messages and checks that each publisher's (`name:i`) came in order from 0,
/// with none missing or twice; returns how many came from each.
async fn check_sequences(client: &mut Client, count: usize) -> HashMap<String, usize> {
    let mut next: HashMap<String, usize> = HashMap::new();
    for _ in 0..count {
        let text = next_text(client).await;
        let (publisher, seq) = text.rsplit_once(':').expect("name:seq");
        let seq: usize = seq.parse().unwrap();
        let expected = next.entry(publisher.to_owned()).or_default();
        assert_eq!(
            seq, *expected,
            "from {publisher}: lost, duplicated or reordered"
        );
        *expected += 1;
    }
    next
}

/// Publishes `name:i` for each `i`, in batches of 50 a millisecond apart: fast, but not a
/// flood that would outrun the test's own readers (whose queues close them with 1008).
async fn publish_all(publisher: &mut Client, name: &str, range: std::ops::Range<usize>) {
    for i in range {
        publisher
            .feed(Message::text(format!("{name}:{i}")))
            .await
            .unwrap();
        if i % 50 == 49 {
            publisher.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    publisher.flush().await.unwrap();
}

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
    redis.await_subscribers("wsock:late", 1).await;
    publish_all(&mut pa, "late", 0..50).await;
    assert_eq!(check_sequences(&mut on_b, 50).await["late"], 50);
}
