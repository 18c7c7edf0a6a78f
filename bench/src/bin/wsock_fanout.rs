//! wsock's fan-out server for the benchmark: one topic, `bench`, of text messages.
//!
//! `wsock_fanout ADDRESS [REDIS_URL] [--publish-wait] [--history] [--mode MODE]` logs
//! `listening addr=..` once bound.
//!
//! - `--mode latest|droppable|at_most|filter|every` subscribes `/sub` with that delivery mode
//!   (`Delivery::latest()`, `Delivery::droppable()`, `Delivery::at_most(50)`,
//!   `Delivery::every()` with a filter that keeps every message, or plain `subscribe`, the
//!   default);
//! - `/sub` subscribes the connection to the topic `bench` (its `Out<Text>`); with
//!   `--history`, as a `resume = true` endpoint: the topic numbers and keeps its messages
//!   (`History::default()`) and each goes out with its resume header;
//! - `/pub` publishes each text message it receives to `bench`, as is (the received `Text`,
//!   no copy); with `--publish-wait` after the Redis URL, with `Topic::publish_wait`, so that
//!   the publisher slows down to Redis's pace;
//! - `/stats` answers the Redis broker's counts (`RedisStats { .. }`) and closes.
//!
//! With REDIS_URL (`redis://127.0.0.1:6379`) the topic spans every node that shares the Redis
//! (`wsock_redis::Redis` as the broker). Each connection's outbound queue holds
//! [`QUEUE`] messages (`Server::queue_capacity`; wsock's default); a subscriber whose queue
//! overflows is closed with 1008, which the load generator counts.

use wsock::prelude::*;

/// `Server::queue_capacity`: wsock's default, stated here so the benchmark says what it ran.
const QUEUE: usize = 1024;

#[websocket("/sub")]
fn sub(out: Out<Text>, topics: Topics) {
    topics.topic::<Text>("bench").subscribe(&out);
}

/// `--mode`: how `/sub` subscribes.
#[derive(Clone, Copy)]
struct Mode(&'static str);

#[websocket("/sub")]
fn sub_mode(out: Out<Text>, topics: Topics, mode: State<Mode>) {
    let delivery = match mode.0.0 {
        "latest" => Delivery::latest(),
        "droppable" => Delivery::droppable(),
        // At most 50 a second for each subscriber, the newest.
        "at_most" => Delivery::at_most(50),
        // A filter that looks at every message and keeps it: the filter's own cost.
        "filter" => Delivery::every().filter(|text: &Text| !text.as_str().is_empty()),
        _ => Delivery::every(),
    };
    topics.topic::<Text>("bench").subscribe_with(&out, delivery);
}

#[websocket("/sub", resume = true)]
fn sub_resume(out: Out<Text>, topics: Topics) {
    topics.topic::<Text>("bench").subscribe(&out);
}

#[websocket("/pub")]
fn publish(topics: Topics) {
    let topic = topics.topic::<Text>("bench");
    on_message(|text: Text| {
        // `Err`: the broker could not take it (this node's subscribers got it); the load
        // generator sees the loss on the other node.
        let _ = topic.publish(text);
    });
}

#[websocket("/pub")]
fn publish_wait(topics: Topics) {
    let topic = topics.topic::<Text>("bench");
    on_message(async |text: Text| {
        // Waits while the broker's queue toward Redis is full.
        let _ = topic.publish_wait(text).await;
    });
}

#[websocket("/stats")]
fn stats(out: Out<String>, redis: State<wsock_redis::Redis>) {
    out.write(format!("{:?}", redis.stats()));
    out.close();
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let history = args.iter().any(|arg| arg == "--history");
    let mode = args
        .iter()
        .position(|arg| arg == "--mode")
        .and_then(|at| args.get(at + 1))
        .map(|mode| match mode.as_str() {
            "latest" => "latest",
            "droppable" => "droppable",
            "at_most" => "at_most",
            "filter" => "filter",
            _ => "every",
        });
    if let Some(at) = args.iter().position(|arg| arg == "--mode") {
        args.drain(at..(at + 2).min(args.len()));
    }
    let wait = args.iter().any(|arg| arg == "--publish-wait");
    args.retain(|arg| !arg.starts_with("--"));
    let mut args = args.into_iter();
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9003".to_owned());
    let mut server = Server::new()
        .queue_capacity(QUEUE)
        // 10,000 subscribers and the publisher on one node.
        .max_connections(19_900);
    server = match (history, mode) {
        (true, _) => server.route(sub_resume),
        (false, Some(mode)) => server.state(Mode(mode)).route(sub_mode),
        (false, None) => server.route(sub),
    };
    let url = args.next();
    server = if wait {
        server.route(publish_wait)
    } else {
        server.route(publish)
    };
    if let Some(url) = url {
        let redis = wsock_redis::Redis::connect(&url)
            .await
            .map_err(std::io::Error::other)?;
        server = server.state(redis.clone()).broker(redis).route(stats);
    }
    server.serve(addr).await
}
