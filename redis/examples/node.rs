//! One node of a cluster that shares a Redis: the smallest server to watch topics span
//! processes (the tests start two of these).
//!
//! Run: `cargo run -p wsock-redis --example node -- ADDRESS REDIS_URL` (say `127.0.0.1:9001
//! redis://127.0.0.1:6379`, and a second node on 127.0.0.1:9002), then
//!
//! - ws://ADDRESS/sub/{topic} receives every message published to `topic` on any node;
//! - ws://ADDRESS/resume/{topic} is `/sub/{topic}` resumable (`resume = true`): messages come
//!   with their position, and a reconnect with `wsock-resume` gets what it missed (see the
//!   README's "Resume"); when it cannot be, it answers `not recovered: <why>` after the notice;
//! - ws://ADDRESS/pub/{topic} publishes each text message it receives to `topic`, and
//!   answers `error: ..` for one that did not reach the other nodes;
//! - ws://ADDRESS/flood/{topic}?count=N (or `?secs=S`) publishes `0`, `1`, .. to `topic`
//!   from a task of its own as fast as it can (`&wait=1`: with `Topic::publish_wait`, slowed
//!   down to Redis's pace; `&size=B` pads each message to B bytes), then answers
//!   `done sent=N refused=A-B,C-D,.. stats=..` with the numbers whose publish was refused and
//!   the broker's counts;
//! - ws://ADDRESS/stats answers the broker's counts (`RedisStats`) and closes;
//! - ws://ADDRESS/presence/{room}?name=N[&user=U][&watch] is present in `room` as `U` (or `N`)
//!   with `{"name": N}`, and with `watch` gets who is there, on every node.
//!
//! With `--lazy` the node starts even while Redis is down; `--queue N` sets each
//! connection's outbound queue (`Server::queue_capacity`, 1024 by default); `--queue-limit B`
//! the broker's (`Redis::queue_limit`).

use wsock::prelude::*;
use wsock_redis::Redis;

#[websocket("/sub/{topic}")]
fn sub(topic: String, out: Out<Text>, topics: Topics) {
    topics.topic::<Text>(topic).subscribe(&out);
}

#[websocket("/resume/{topic}", resume = true)]
fn resume(topic: String, out: Out<Text>, topics: Topics) {
    if let Subscribed::NotRecovered(why) = topics.topic::<Text>(topic).subscribe(&out) {
        out.write(Text::from(format!("not recovered: {why:?}")));
    }
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

#[derive(serde::Deserialize)]
struct Flood {
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    secs: Option<u64>,
    #[serde(default)]
    wait: u8,
    #[serde(default)]
    size: usize,
}

#[websocket("/flood/{topic}")]
fn flood(
    topic: String,
    Query(flood): Query<Flood>,
    out: Out<String>,
    topics: Topics,
    redis: State<Redis>,
) {
    let topic = topics.topic::<Text>(topic);
    tokio::spawn(async move {
        let mut refused = Ranges::default();
        let count = flood.count.unwrap_or(u64::MAX);
        let until = flood
            .secs
            .map(|secs| std::time::Instant::now() + std::time::Duration::from_secs(secs));
        let mut sent = 0;
        while sent < count && until.is_none_or(|until| std::time::Instant::now() < until) {
            let i = sent;
            sent += 1;
            let mut text = i.to_string();
            while text.len() < flood.size {
                text.push('.');
            }
            let published = if flood.wait == 1 {
                topic.publish_wait(Text::from(text)).await
            } else {
                topic.publish(Text::from(text))
            };
            if published.is_err() {
                refused.add(i);
            }
            if i % 256 == 0 {
                // Other tasks (the connections delivering) run beside the publisher.
                tokio::task::yield_now().await;
            }
        }
        out.write(format!(
            "done sent={sent} refused={} stats={:?}",
            refused.shown(),
            redis.stats()
        ));
        out.close();
    });
}

/// Who is present, with a name.
#[derive(serde::Serialize, serde::Deserialize)]
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
        let user = req.query_param("user").unwrap_or_else(|| name.clone());
        if let Err(error) = here.track(&out, user, &Who { name }) {
            out.write(format!("error: {error}"));
        }
    }
}

#[websocket("/stats")]
fn stats(out: Out<String>, redis: State<Redis>) {
    out.write(format!("{:?}", redis.stats()));
    out.close();
}

/// Numbers as runs: `3-7,9-9`.
#[derive(Default)]
struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    fn add(&mut self, n: u64) {
        match self.0.last_mut() {
            Some((_, end)) if *end + 1 == n => *end = n,
            _ => self.0.push((n, n)),
        }
    }

    fn shown(&self) -> String {
        let runs: Vec<String> = self.0.iter().map(|(a, b)| format!("{a}-{b}")).collect();
        runs.join(",")
    }
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
    let mut redis = redis.map_err(std::io::Error::other)?;
    let option = |name: &str| {
        let at = args.iter().position(|arg| arg == name)?;
        args.get(at + 1)?.parse::<usize>().ok()
    };
    if let Some(bytes) = option("--queue-limit") {
        redis = redis.queue_limit(bytes);
    }
    let queue = args
        .iter()
        .position(|arg| arg == "--queue")
        .and_then(|at| args.get(at + 1)?.parse().ok())
        .unwrap_or(1024);
    Server::new()
        .queue_capacity(queue)
        .state(redis.clone())
        .broker(redis)
        .route(sub)
        .route(resume)
        .route(publish)
        .route(flood)
        .route(stats)
        .route(presence)
        .serve(addr)
        .await
}
