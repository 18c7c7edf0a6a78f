//! The server the client package's tests (client/test/) run against: one endpoint per
//! behaviour they check. Not an example to learn from; `cargo test` builds it as the example
//! `client-test-server`, and the tests start it with
//! `ADDRESS [HEARTBEAT_MS] [--history N] [--redis URL]` (`--history N`: topics keep the last N
//! messages, and one resume replays at most N, which the queues can hold; `--redis URL`: topics, and their history, are
//! shared through that Redis with every server given it).
//!
//! - `/echo`: every message back, text as text and binary as binary;
//! - `/json`: each JSON message back as `{"echo": message}`;
//! - `/garbage`: sends `not json`, then `{"after":"garbage"}`;
//! - `/bye`: closes at once with 1000; `/policy`: closes at once with 1008;
//! - `/forbidden`: refused before the upgrade with 403 and `not for you`;
//! - `/feed/{name}` (`resume = true`): subscribes to the topic `feed:{name}`, and when the
//!   client's position there cannot be recovered, writes `{"snapshot": "<why>"}`;
//! - `/publish/{name}?count=N&every=MS`: publishes `1`, `2`, .. (JSON numbers) to `feed:{name}`,
//!   one every MS milliseconds (0, the default: without a pause), N of them, or until the client
//!   sends any message; then writes how many it published;
//! - `/presence/{room}?name=N&watch`: present in the presence `room` as `N` with
//!   `{"name": N}` (no `name`: not present), and with `watch` told who is there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use wsock::History;
use wsock::prelude::*;

#[websocket("/echo")]
fn echo(out: Out<Message>) {
    on_message(|message: Message| out.write(message));
}

#[websocket("/json")]
fn json_echo(out: Out<Json<Value>>) {
    on_message(|Json(value): Json<Value>| out.write(Json(json!({ "echo": value }))));
}

#[websocket("/garbage")]
fn garbage(out: Out<String>) {
    out.write("not json");
    out.write(r#"{"after":"garbage"}"#);
}

#[websocket("/bye")]
fn bye(out: Out<String>) {
    out.close();
}

#[websocket("/policy")]
fn policy(out: Out<String>) {
    out.close_with(CloseCode::POLICY, "not allowed");
}

/// A guard that never lets anyone in.
struct Nobody;

impl FromRequest for Nobody {
    async fn from_request(_: &Request) -> Result<Self, Reject> {
        Err(Reject::forbidden().with_body("not for you"))
    }
}

#[websocket("/forbidden")]
fn forbidden(_nobody: Nobody, out: Out<String>) {
    out.write("unreachable");
}

#[websocket("/feed/{name}", resume = true)]
fn feed(name: String, out: Out<String>, topics: Topics) {
    let topic = topics.topic::<String>(format!("feed:{name}"));
    if let Subscribed::NotRecovered(why) = topic.subscribe(&out) {
        out.write(json!({ "snapshot": format!("{why:?}") }).to_string());
    }
}

#[derive(Deserialize)]
struct Publishing {
    count: Option<u64>,
    #[serde(default)]
    every: u64,
}

#[websocket("/publish/{name}")]
fn publish(name: String, Query(how): Query<Publishing>, out: Out<String>, topics: Topics) {
    let stop = Arc::new(AtomicBool::new(false));
    let topic = topics.topic::<String>(format!("feed:{name}"));
    let publisher = {
        let (stop, out) = (Arc::clone(&stop), out.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(how.every.max(1)));
            let mut published = 0;
            while how.count.is_none_or(|count| published < count) && !stop.load(Ordering::Relaxed) {
                if how.every > 0 {
                    tick.tick().await;
                } else {
                    tokio::task::yield_now().await;
                }
                published += 1;
                // (Waits while the broker's queue toward Redis is full.)
                topic
                    .publish_wait(published.to_string())
                    .await
                    .expect("the message is published");
            }
            out.write(published.to_string());
        }
    };
    tokio::spawn(publisher);
    on_message(|_: String| stop.store(true, Ordering::Relaxed));
    on_close(|| stop.store(true, Ordering::Relaxed));
}

#[derive(serde::Serialize, Deserialize)]
struct Who {
    name: String,
}

#[websocket("/presence/{room}")]
fn presence(room: String, req: Request, out: Out<String>, topics: Topics) {
    let here = topics.presence::<Who>(room);
    if req.query_param("watch").is_some() {
        here.watch(&out);
    }
    if let Some(name) = req.query_param("name") {
        here.track(&out, name.clone(), &Who { name })
            .expect("a short name");
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let redis = match args.iter().position(|arg| arg == "--redis") {
        Some(at) => {
            let url = args.get(at + 1).cloned();
            let url = url.ok_or_else(|| std::io::Error::other("--redis takes a URL"))?;
            args.drain(at..at + 2);
            let redis = wsock_redis::Redis::connect(&url).await;
            Some(redis.map_err(std::io::Error::other)?)
        }
        None => None,
    };
    // A replay must also fit the connection's queue: with a long history the queue grows to
    // carry one whole replay (a client away for seconds on a loaded machine still recovers).
    let (history, queue) = match args.iter().position(|arg| arg == "--history") {
        Some(at) => {
            let n = args.get(at + 1).and_then(|n| n.parse().ok());
            let n: usize = n.ok_or_else(|| std::io::Error::other("--history takes a number"))?;
            args.drain(at..at + 2);
            // (And the bytes for them: the default 1 MiB holds about 2,500 small messages.)
            let history = History::default().messages(n).max_replay(n);
            (history.max_bytes(n * 1024), (n + 64).max(1024))
        }
        None => (History::default(), 1024),
    };
    let mut args = args.into_iter();
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let mut server = Server::new()
        .route(echo)
        .route(json_echo)
        .route(garbage)
        .route(bye)
        .route(policy)
        .route(forbidden)
        .route(feed)
        .route(publish)
        .route(presence)
        .history(history)
        .queue_capacity(queue);
    if let Some(redis) = redis {
        server = server.broker(redis);
    }
    if let Some(ms) = args.next() {
        let ms = ms.parse().map_err(std::io::Error::other)?;
        server = server.heartbeat(Duration::from_millis(ms));
    }
    let bound = server.bind(addr).await?;
    println!("listening addr={}", bound.local_addr());
    bound.run().await
}
