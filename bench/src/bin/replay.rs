//! Resume's replay speed: how fast a wsock server replays what resuming clients missed.
//!
//! `replay [--clients 1000] [--missed 256] [--single 50000] [--redis URL]` prints two lines of
//! `key=value` results:
//!
//! - `single`: one client subscribed to a topic of 64 B text messages, left, missed
//!   `--single` messages, and comes back with its position: the time from its upgrade request
//!   to the last replayed message, and the messages per second that makes;
//! - `crowd`: `--clients` clients left the same topic, missed `--missed` messages each, and
//!   come back at once: the time until every one has every message, and the messages per
//!   second replayed in all.
//!
//! The server (a `resume = true` endpoint, history and replay cap sized to what is missed)
//! runs in this process on a runtime of one thread, the clients on another: on a machine of
//! two cores, each has a core. Every replayed message is checked: the next offset, once.
//!
//! With `--redis URL` the history is in that Redis (`wsock_redis`), and the clients come back
//! to a server started afresh (a restart, or another node): everything they missed comes from
//! Redis.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wsock::prelude::*;
use wsock::{History, Server};

#[websocket("/feed", resume = true)]
fn feed(out: Out<Text>, topics: Topics) {
    topics.topic::<Text>("feed").subscribe(&out);
}

struct Args {
    clients: usize,
    missed: usize,
    single: usize,
    redis: Option<String>,
}

fn args() -> Args {
    let mut args = Args {
        clients: 1000,
        missed: 256,
        single: 50_000,
        redis: None,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        if flag == "--redis" {
            args.redis = Some(given.next().unwrap_or_else(|| usage()));
            continue;
        }
        let value = given
            .next()
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| usage());
        match flag.as_str() {
            "--clients" => args.clients = value,
            "--missed" => args.missed = value,
            "--single" => args.single = value,
            _ => usage(),
        }
    }
    args
}

fn usage() -> ! {
    eprintln!("usage: replay [--clients N] [--missed N] [--single N] [--redis URL]");
    std::process::exit(2)
}

/// Starts a server on a thread of its own (a runtime of one thread): its address, and its
/// topic.
fn start(args: &Args) -> (std::net::SocketAddr, Topic<Text>) {
    let most = args.single.max(args.missed);
    let server = Server::new()
        .route(feed)
        .max_connections(args.clients + 100)
        .queue_capacity(most + 16)
        .history(
            History::default()
                .messages(most)
                .max_bytes(most * 512)
                .max_replay(most),
        );
    let topic = server.topics().topic::<Text>("feed");
    let redis = args.redis.clone();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let server = match redis {
                    Some(url) => server.broker(wsock_redis::Redis::connect(&url).await.unwrap()),
                    None => server,
                };
                let bound = server.bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(bound.local_addr()).unwrap();
                bound.run().await.unwrap();
            });
    });
    (addr_rx.recv().unwrap(), topic)
}

fn main() {
    let args = args();
    let (first, topic) = start(&args);
    let clients = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    clients.block_on(async move {
        let body = Text::from("x".repeat(64));
        // With Redis: a client that stays, to know when Redis has them all; and the clients
        // come back to a server started afresh.
        let mut watcher = match args.redis {
            Some(_) => Some(open(first, "").await),
            None => None,
        };
        if let Some(watcher) = watcher.as_mut() {
            text(watcher).await; // its notice
        }
        // One client.
        let (epoch, at) = leave(first).await;
        publish(&topic, &body, args.single, watcher.as_mut()).await;
        let again = match args.redis {
            Some(_) => start(&args).0,
            None => first,
        };
        let start_at = Instant::now();
        back(again, &epoch, at, args.single).await;
        let took = start_at.elapsed();
        println!(
            "single messages={} ms={:.1} messages_per_s={:.0}",
            args.single,
            took.as_secs_f64() * 1e3,
            args.single as f64 / took.as_secs_f64()
        );
        // A crowd.
        let mut left = Vec::new();
        for _ in 0..args.clients {
            left.push(leave(first).await);
        }
        publish(&topic, &body, args.missed, watcher.as_mut()).await;
        let again = match args.redis {
            Some(_) => start(&args).0,
            None => first,
        };
        let start_at = Instant::now();
        let returning: Vec<_> = left
            .into_iter()
            .map(|(epoch, at)| {
                tokio::spawn(async move { back(again, &epoch, at, args.missed).await })
            })
            .collect();
        for client in returning {
            client.await.unwrap();
        }
        let took = start_at.elapsed();
        let total = args.clients * args.missed;
        println!(
            "crowd clients={} missed_each={} messages={total} ms={:.1} messages_per_s={:.0}",
            args.clients,
            args.missed,
            took.as_secs_f64() * 1e3,
            total as f64 / took.as_secs_f64()
        );
    });
}

/// Publishes `count` messages; with a watcher, waits until it has them all (they are in
/// Redis then).
async fn publish(topic: &Topic<Text>, body: &Text, count: usize, watcher: Option<&mut Ws>) {
    for _ in 0..count {
        topic.publish_wait(body.clone()).await.unwrap();
    }
    if let Some(watcher) = watcher {
        for _ in 0..count {
            text(watcher).await;
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn open(addr: std::net::SocketAddr, query: &str) -> Ws {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let url = format!("ws://{addr}/feed{query}");
    let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    ws
}

async fn text(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(WsMessage::Text(text)))) => return text.as_str().to_owned(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("the connection failed: {other:?}"),
        }
    }
}

/// The header's field `name` (a string or a number), as text.
fn field<'a>(header: &'a str, name: &str) -> &'a str {
    let at = header.find(&format!("\"{name}\":")).expect("the field") + name.len() + 3;
    let rest = &header[at..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].trim_matches('"')
}

/// Subscribes, reads the notice, and leaves: its epoch and offset.
async fn leave(addr: std::net::SocketAddr) -> (String, u64) {
    let mut ws = open(addr, "").await;
    let notice = text(&mut ws).await;
    (
        field(&notice, "epoch").to_owned(),
        field(&notice, "offset").parse().unwrap(),
    )
}

/// Comes back at `at` and reads `missed` replayed messages, each the next one.
async fn back(addr: std::net::SocketAddr, epoch: &str, at: u64, missed: usize) {
    let json = format!("[[\"feed\",\"{epoch}\",{at}]]");
    let encoded: String = json
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let mut ws = open(addr, &format!("?wsock-resume={encoded}")).await;
    let notice = text(&mut ws).await;
    assert!(notice.contains("\"recovered\":true"), "{notice}");
    for i in 1..=missed as u64 {
        let message = text(&mut ws).await;
        let header_end = message[1..].find('\u{1e}').unwrap() + 1;
        let offset: u64 = field(&message[..header_end], "offset").parse().unwrap();
        assert_eq!(offset, at + i, "the next message, once");
    }
}
