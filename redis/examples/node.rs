//! One node of a cluster that shares a Redis: the smallest server to watch topics span
//! processes (the tests start two of these).
//!
//! Run: `cargo run -p wsock-redis --example node -- ADDRESS REDIS_URL` (say `127.0.0.1:9001
//! redis://127.0.0.1:6379`, and a second node on 127.0.0.1:9002), then
//!
//! - ws://ADDRESS/sub/{topic} receives every message published to `topic` on any node;
//! - ws://ADDRESS/pub/{topic} publishes each text message it receives to `topic`, and
//!   answers `error: ..` for one that did not reach the other nodes.
//!
//! With `--lazy` the node starts even while Redis is down; `--queue N` sets each
//! connection's outbound queue (`Server::queue_capacity`, 1024 by default).

use wsock::prelude::*;
use wsock_redis::Redis;

#[websocket("/sub/{topic}")]
fn sub(topic: String, out: Out<Text>, topics: Topics) {
    topics.topic::<Text>(topic).subscribe(&out);
}

#[websocket("/pub/{topic}")]
fn publish(topic: String, out: Out<String>, topics: Topics) {
    let topic = topics.topic::<Text>(topic);
    on_message(|text: Text| {
        if let Err(error) = topic.publish(text) {
            out.write(format!("error: {error}"));
        }
    });
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(addr), Some(url)) = (args.first(), args.get(1)) else {
        eprintln!("usage: node ADDRESS REDIS_URL [--lazy] [--queue N]");
        std::process::exit(2);
    };
    let redis = if args.iter().any(|arg| arg == "--lazy") {
        Redis::lazy(url).await
    } else {
        Redis::connect(url).await
    };
    let redis = redis.map_err(std::io::Error::other)?;
    let queue = args
        .iter()
        .position(|arg| arg == "--queue")
        .and_then(|at| args.get(at + 1)?.parse().ok())
        .unwrap_or(1024);
    Server::new()
        .queue_capacity(queue)
        .broker(redis)
        .route(sub)
        .route(publish)
        .serve(addr)
        .await
}
