//! Redis pub/sub as the broker of wsock's topics: a message published on any server process
//! reaches the subscribers of every process that shares the Redis.
//!
//! ```no_run
//! use wsock::prelude::*;
//! use wsock_redis::Redis;
//!
//! #[websocket("/news")]
//! fn news(out: Out<String>, topics: Topics) {
//!     topics.topic::<String>("news").subscribe(&out);
//! }
//!
//! # async fn demo() -> std::io::Result<()> {
//! let redis = Redis::connect("redis://127.0.0.1:6379").await.map_err(std::io::Error::other)?;
//! Server::new().broker(redis).route(news).serve("127.0.0.1:9000").await
//! # }
//! ```
//!
//! **The guarantee.** While Redis is up, a message published on any node reaches each
//! subscriber on every node exactly once, in publish order per publisher and topic; across a
//! Redis outage delivery to other nodes is at most once (a message published while Redis is
//! unreachable reaches the publishing node's subscribers only, and `publish` says so). Topics
//! that resumable connections subscribe to do better: their history is in Redis, so a node
//! whose link to Redis dropped gets what it missed once the link is back, and a client that
//! reconnects, to any node, gets what it missed (see "Topic history in Redis" below).
//!
//! How it works: two Redis connections per server, one that publishes (the redis crate's
//! connection manager, pipelined) and one in subscribe mode (RESP3, so Redis 6 or later), a
//! channel `wsock:<topic>` per topic, subscribed only while the server has a subscriber to
//! that topic. Each publish crosses Redis once, as the bytes wsock encoded (a short header
//! names the publishing server, which skips its own messages: it delivered them when they were
//! published). Publishes are queued in order and sent in pipelines. When Redis goes away,
//! publishes fail at once (`PublishError::Broker`), the connection is retried every second,
//! and once Redis is back the server's channels are subscribed again.
//!
//! **Topic history in Redis** (for `resume = true` endpoints; see the README's "Resume"): a
//! topic that a resumable connection subscribes to, on any node, keeps its history in Redis: a
//! hash `wsock:h:<topic>` (its epoch and last offset) and a stream `wsock:s:<topic>` (its last
//! messages, `XADD .. MAXLEN ~ History::messages`), both expiring `History::max_age` after
//! their last use (nodes that follow the topic extend them meanwhile). Every publish runs a
//! short Lua script that numbers and keeps the message when its topic keeps history, so every
//! node sees the same offsets, and a client resumes on any node. A node asks Redis where a
//! topic stands, and for what a resuming client missed, on its subscriber connection, so the
//! answer comes in order with the topic's messages: that is what makes the seam exact. When
//! that connection drops, the node asks for what it missed once it is back (and so it does
//! when a message skips an offset), so nothing is lost within the history's length; if Redis lost the history (restarted without persistence,
//! `FLUSHALL`), the topic starts a new epoch and its clients are told. Topics nobody resumes
//! keep nothing in Redis; their publishes cost one script call instead of a `PUBLISH` (the
//! benchmark's README has the figures).
//!
//! **Bounded both ways.** Publishes waiting for Redis (queued, or sent and not yet confirmed)
//! hold at most [`Redis::queue_limit`] bytes (8 MiB by default): past it, `publish` is refused
//! at once with `PublishError::Behind` (this server's subscribers still get the message), and
//! `Topic::publish_wait` waits for room, so a publisher slows down to Redis's pace. Messages
//! from other servers come on a connection of their own, read no faster than this server
//! delivers them: a server that falls behind leaves the backlog in Redis, whose
//! `client-output-buffer-limit` for pubsub clients drops the connection when it grows too
//! large; the server then logs that messages published meanwhile are lost for its
//! subscribers, connects again, subscribes its channels again, and logs that too.
//! [`Redis::stats`] counts all of it.

mod counters;
mod error;
mod resp;
mod scripts;
mod subscriber;

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo};
use tokio::sync::{Notify, Semaphore, mpsc};
use wsock_runtime::{Broker, BrokerError, BrokerFuture, Locate, Sink};

use crate::counters::{Counters, Line, lock};
pub use crate::error::Error;
use crate::subscriber::{Asked, Delivery, Subscriptions, Target};

/// The prefix of every channel: the topic `room:lobby` is the channel `wsock:room:lobby`.
pub const DEFAULT_PREFIX: &str = "wsock:";

/// How often the connection is checked, and retried while Redis is away.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How long the once-a-second check may take before Redis counts as unreachable.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1_000);
/// How long a pipeline of publishes may wait for its answer, holding its room in the queue:
/// Redis is slow, not gone, until the check says so.
const PIPELINE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most publishes, and payload bytes, sent in one pipeline.
const PIPELINE: usize = 512;
const PIPELINE_BYTES: usize = 256 << 10;
/// How many bytes of publishes may wait for Redis by default: [`Redis::queue_limit`].
pub const DEFAULT_QUEUE_LIMIT: usize = 8 << 20;
/// What a waiting publish costs beyond its channel name and payload: its queue entry and
/// Redis's framing.
const ENTRY_COST: usize = 64;

/// A Redis server as the broker of a wsock server's topics: give it to
/// [`Server::broker`](wsock_runtime::Server::broker).
#[derive(Clone)]
pub struct Redis {
    shared: Arc<Shared>,
}

struct Shared {
    /// The address, for logs (without a password).
    shown: String,
    prefix: String,
    /// The publishing connection.
    connection: ConnectionManager,
    /// Redis answered the last command or check.
    up: Arc<AtomicBool>,
    /// The subscriber connection's state.
    subscriptions: Arc<Subscriptions>,
    /// The most bytes of publishes waiting for Redis.
    queue_limit: usize,
    /// Room for publishes, in bytes: taken when one is queued, given back once Redis answered
    /// its pipeline (or did not, in time).
    room: Semaphore,
    /// Publishes, in order, for the publishing task.
    publishes: mpsc::UnboundedSender<Queued>,
    publish_queue: Mutex<Option<mpsc::UnboundedReceiver<Queued>>>,
    stats: Arc<Counters>,
    /// Topics whose history this node asked Redis to keep: their keys' lives are extended
    /// while this node follows them, even when nothing is published.
    kept: Mutex<HashSet<String>>,
}

/// A publish waiting for Redis, and the room it holds.
struct Queued {
    topic: String,
    payload: Bytes,
    cost: u32,
    /// Told whether Redis confirmed it (`Broker::publish_confirmed`).
    confirm: Option<tokio::sync::oneshot::Sender<bool>>,
}

/// What a Redis broker counted since it was made: [`Redis::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Publishes Redis confirmed.
    pub published: u64,
    /// Publishes refused because the queue toward Redis was full (`PublishError::Behind`).
    pub refused_behind: u64,
    /// Publishes refused because Redis was unreachable (`PublishError::Broker`).
    pub refused_unreachable: u64,
    /// Publishes sent whose pipeline Redis did not confirm: in time (they reach Redis when it
    /// gets to them, and are never sent twice) or at all (the connection broke; they may be
    /// lost).
    pub unconfirmed: u64,
    /// Bytes of publishes waiting for Redis now (queued, or sent and not yet confirmed).
    pub queued_bytes: usize,
    /// Messages from other servers received for this server's subscribers.
    pub received: u64,
    /// Times the subscriber connection dropped while it held subscriptions (what other
    /// servers published until it had subscribed again was lost for this server).
    pub disconnections: u64,
}

impl Redis {
    /// Connects to Redis at `url` (`redis://[user:password@]host:port[/db]`, or
    /// `redis+unix:///path`), and fails within a few seconds, saying so, if it cannot be
    /// reached: a server that starts without its Redis would quietly serve its own clients
    /// only. See [`Redis::lazy`] to start regardless.
    pub async fn connect(url: &str) -> Result<Redis, Error> {
        Redis::open(url, DEFAULT_PREFIX, true).await
    }

    /// Connects to Redis at `url` in the background: the server starts even while Redis is
    /// down (it logs a warning that says so, and topics reach this node only until Redis is
    /// there), and links up once Redis answers.
    pub async fn lazy(url: &str) -> Result<Redis, Error> {
        Redis::open(url, DEFAULT_PREFIX, false).await
    }

    /// Uses `prefix` for channel names instead of `wsock:` (several apps on one Redis).
    ///
    /// # Panics
    /// Once the broker was given to a server.
    pub fn with_prefix(self, prefix: impl Into<String>) -> Redis {
        let shared = self.unshared("the prefix");
        Redis {
            shared: Arc::new(Shared {
                prefix: prefix.into(),
                ..shared
            }),
        }
    }

    /// The most bytes of publishes that may wait for Redis, queued or sent and not yet
    /// confirmed (each counts its payload, its channel name and 64 bytes). Past it, `publish`
    /// is refused at once with `PublishError::Behind` and `Topic::publish_wait` waits for
    /// room. Default: [`DEFAULT_QUEUE_LIMIT`], 8 MiB: about 0.4 s of Redis's pace with
    /// small messages, so a server's memory stays bounded and other servers get messages
    /// late by at most that much.
    ///
    /// # Panics
    /// Once the broker was given to a server.
    pub fn queue_limit(self, bytes: usize) -> Redis {
        let shared = self.unshared("the queue limit");
        let bytes = bytes.clamp(1, Semaphore::MAX_PERMITS);
        Redis {
            shared: Arc::new(Shared {
                queue_limit: bytes,
                room: Semaphore::new(bytes),
                ..shared
            }),
        }
    }

    /// Whether Redis answered the last command or check.
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Relaxed)
    }

    /// What the broker counted since it was made: publishes confirmed, refused and
    /// unconfirmed, the bytes waiting for Redis, messages received, and lost subscriber
    /// connections.
    pub fn stats(&self) -> RedisStats {
        let counters = &self.shared.stats;
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RedisStats {
            published: count(&counters.published),
            refused_behind: count(&counters.behind),
            refused_unreachable: count(&counters.unreachable),
            unconfirmed: count(&counters.unconfirmed),
            queued_bytes: self
                .shared
                .queue_limit
                .saturating_sub(self.shared.room.available_permits()),
            received: count(&counters.received),
            disconnections: count(&counters.disconnections),
        }
    }

    fn unshared(self, what: &str) -> Shared {
        Arc::try_unwrap(self.shared)
            .unwrap_or_else(|_| panic!("set {what} before the Redis broker is given to a server"))
    }

    async fn open(url: &str, prefix: &str, eager: bool) -> Result<Redis, Error> {
        let info = url.into_connection_info().map_err(|error| Error {
            message: format!("{url:?} is not a Redis URL: {error}"),
        })?;
        let shown = format!("redis://{}", info.addr());
        let target = Target::new(&info, &shown)?;
        let client = Client::open(info).map_err(|error| Error {
            message: format!("{shown}: {error}"),
        })?;
        let config = ConnectionManagerConfig::new()
            .set_min_delay(Duration::from_millis(50))
            // Jitter may double this: reconnects are tried at most about a second apart.
            .set_max_delay(Duration::from_millis(500))
            .set_number_of_retries(4)
            .set_connection_timeout(Some(Duration::from_millis(500)))
            // The check times itself (RESPONSE_TIMEOUT); this bounds the pipelines.
            .set_response_timeout(Some(PIPELINE_TIMEOUT));
        let connection = if eager {
            client
                .get_connection_manager_with_config(config)
                .await
                .map_err(|error| Error {
                    message: format!(
                        "cannot reach Redis at {shown}: {error}; without it, topics would \
                         reach this server's own clients only"
                    ),
                })?
        } else {
            client
                .get_connection_manager_lazy(config)
                .map_err(|error| Error {
                    message: format!("{shown}: {error}"),
                })?
        };
        let stats = Arc::new(Counters::default());
        let subscriptions = Arc::new(Subscriptions {
            target,
            shown: shown.clone(),
            wanted: Mutex::default(),
            changed: Notify::new(),
            delivery: OnceLock::new(),
            stats: Arc::clone(&stats),
            locates: Mutex::default(),
            known: Mutex::default(),
        });
        let (publishes, publish_queue) = mpsc::unbounded_channel();
        Ok(Redis {
            shared: Arc::new(Shared {
                shown,
                prefix: prefix.to_owned(),
                connection,
                up: Arc::new(AtomicBool::new(eager)),
                subscriptions,
                queue_limit: DEFAULT_QUEUE_LIMIT,
                room: Semaphore::new(DEFAULT_QUEUE_LIMIT),
                publishes,
                publish_queue: Mutex::new(Some(publish_queue)),
                stats,
                kept: Mutex::default(),
            }),
        })
    }
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("at", &self.shared.shown)
            .field("prefix", &self.shared.prefix)
            .field("up", &self.is_up())
            .finish()
    }
}

impl Broker for Redis {
    fn start(&self, sink: Sink) {
        let shared = &self.shared;
        let announcements = scripts::announcements(&shared.prefix);
        lock(&shared.subscriptions.wanted).insert(announcements.clone());
        let delivery = Delivery {
            sink,
            prefix: shared.prefix.clone(),
            announcements,
        };
        if shared.subscriptions.delivery.set(delivery).is_err() {
            panic!("a Redis broker serves one server");
        }
        let publish_queue = lock(&shared.publish_queue).take().expect("started once");
        if !self.is_up() {
            tracing::warn!(
                redis = shared.shown,
                "Redis is unreachable: topics reach this server's own clients only until it is \
                 back"
            );
        }
        tokio::spawn(publish(Arc::clone(shared), publish_queue));
        tokio::spawn(watch(Arc::clone(shared)));
        tokio::spawn(subscriber::run(Arc::clone(&shared.subscriptions)));
    }

    fn subscribe(&self, topic: &str) {
        let channel = format!("{}{topic}", self.shared.prefix);
        lock(&self.shared.subscriptions.wanted).insert(channel);
        self.shared.subscriptions.changed.notify_one();
    }

    fn unsubscribe(&self, topic: &str) {
        let channel = format!("{}{topic}", self.shared.prefix);
        lock(&self.shared.subscriptions.wanted).remove(&channel);
        lock(&self.shared.kept).remove(topic);
        self.shared.subscriptions.changed.notify_one();
    }

    fn publish(&self, topic: &str, payload: Bytes) -> Result<(), BrokerError> {
        let shared = &self.shared;
        shared.reachable()?;
        let cost = shared.cost(topic, &payload);
        match shared.room.try_acquire_many(cost) {
            Ok(room) => room.forget(),
            Err(_) => return Err(shared.behind()),
        }
        shared.queue(topic.to_owned(), payload, cost)
    }

    fn publish_wait<'a>(&'a self, topic: &'a str, payload: Bytes) -> BrokerFuture<'a> {
        Box::pin(self.shared.queue_when_room(topic, payload, None))
    }

    fn publish_confirmed<'a>(&'a self, topic: &'a str, payload: Bytes) -> BrokerFuture<'a> {
        Box::pin(async move {
            let (confirm, confirmed) = tokio::sync::oneshot::channel();
            let queued = self.shared.queue_when_room(topic, payload, Some(confirm));
            queued.await?;
            match confirmed.await {
                Ok(true) => Ok(()),
                _ => Err(BrokerError::Unreachable(wsock_runtime::Error::msg(
                    "Redis did not confirm the publish",
                ))),
            }
        })
    }

    fn keeps_history(&self) -> bool {
        true
    }

    fn locate(&self, topic: &str, locate: Locate) {
        let shared = &self.shared;
        if locate.create {
            lock(&shared.kept).insert(topic.to_owned());
        }
        lock(&shared.subscriptions.locates).push_back(Asked {
            topic: topic.to_owned(),
            locate,
        });
        shared.subscriptions.changed.notify_one();
    }
}

fn stopped() -> BrokerError {
    BrokerError::Unreachable(wsock_runtime::Error::msg("the Redis broker has stopped"))
}

impl Shared {
    /// `Ok` while Redis answers; a refusal, counted, while it does not.
    fn reachable(&self) -> Result<(), BrokerError> {
        if self.up.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.stats.unreachable.fetch_add(1, Ordering::Relaxed);
        Err(BrokerError::Unreachable(wsock_runtime::Error::msg(
            format!("Redis at {} is unreachable", self.shown),
        )))
    }

    /// The room a publish takes: its payload, channel and entry; at most the whole queue, so
    /// that a message larger than the limit still goes, alone.
    fn cost(&self, topic: &str, payload: &Bytes) -> u32 {
        let channel = self.prefix.len() + topic.len();
        let cost = (payload.len() + channel + ENTRY_COST).min(self.queue_limit);
        u32::try_from(cost).unwrap_or(u32::MAX)
    }

    /// A publish refused for want of room: counted, logged at most once a second.
    fn behind(&self) -> BrokerError {
        self.stats.behind.fetch_add(1, Ordering::Relaxed);
        if let Some(skipped) = self.stats.log(Line::Behind) {
            tracing::warn!(
                redis = self.shown,
                limit = self.queue_limit,
                refused = skipped + 1,
                "Redis is behind: publishes are refused while its queue is full (this server's \
                 subscribers still get them); Topic::publish_wait waits for room instead"
            );
        }
        BrokerError::Behind(wsock_runtime::Error::msg(format!(
            "Redis at {} is behind: {} bytes of publishes wait for it",
            self.shown, self.queue_limit
        )))
    }

    fn queue(&self, topic: String, payload: Bytes, cost: u32) -> Result<(), BrokerError> {
        self.queue_confirmed(topic, payload, cost, None)
    }

    /// Queues a publish once the queue toward Redis has room for it (`confirm`: told whether
    /// Redis confirmed it); fails at once while Redis is unreachable.
    async fn queue_when_room(
        &self,
        topic: &str,
        payload: Bytes,
        confirm: Option<tokio::sync::oneshot::Sender<bool>>,
    ) -> Result<(), BrokerError> {
        self.reachable()?;
        let cost = self.cost(topic, &payload);
        let room = self.room.acquire_many(cost).await.map_err(|_| stopped())?;
        room.forget();
        // Redis may have gone while this waited: the room goes back.
        if let Err(error) = self.reachable() {
            self.room.add_permits(cost as usize);
            return Err(error);
        }
        self.queue_confirmed(topic.to_owned(), payload, cost, confirm)
    }

    fn queue_confirmed(
        &self,
        topic: String,
        payload: Bytes,
        cost: u32,
        confirm: Option<tokio::sync::oneshot::Sender<bool>>,
    ) -> Result<(), BrokerError> {
        let queued = Queued {
            topic,
            payload,
            cost,
            confirm,
        };
        self.publishes.send(queued).map_err(|_| {
            self.room.add_permits(cost as usize);
            stopped()
        })
    }
}

/// Sends the publishes in order, in pipelines of whatever queued meanwhile; gives their room
/// back once Redis answered (or did not in time).
async fn publish(shared: Arc<Shared>, mut queue: mpsc::UnboundedReceiver<Queued>) {
    let mut connection = shared.connection.clone();
    // The publishing script's SHA1, once Redis has it.
    let mut script: Option<String> = None;
    let mut batch = Vec::with_capacity(PIPELINE);
    // A publish that did not fit the last pipeline: the first of the next.
    let mut carried: Option<Queued> = None;
    loop {
        let first = match carried.take() {
            Some(queued) => queued,
            None => match queue.recv().await {
                Some(queued) => queued,
                None => return,
            },
        };
        let mut bytes = first.payload.len();
        batch.push(first);
        // What queued meanwhile, up to a pipeline's worth: its answer then comes back within
        // the check's second even over a slow link, so a slow Redis is not taken for a dead one.
        while batch.len() < PIPELINE {
            let Ok(queued) = queue.try_recv() else {
                break;
            };
            if bytes + queued.payload.len() > PIPELINE_BYTES {
                carried = Some(queued);
                break;
            }
            bytes += queued.payload.len();
            batch.push(queued);
        }
        let room: usize = batch.iter().map(|queued| queued.cost as usize).sum();
        // The room is held until Redis answers: the bound counts what is on the way too.
        let mut sent = send(&shared, &mut connection, &mut script, &batch).await;
        if sent
            .as_ref()
            .is_err_and(|error| error.code() == Some("NOSCRIPT"))
        {
            // Redis forgot the script (it restarted, or SCRIPT FLUSH): none of the batch ran.
            script = None;
            sent = send(&shared, &mut connection, &mut script, &batch).await;
        }
        let count = batch.len() as u64;
        let confirmed = sent.is_ok();
        match sent {
            Ok(()) => {
                shared.stats.published.fetch_add(count, Ordering::Relaxed);
            }
            // Sent, unanswered for PIPELINE_TIMEOUT: Redis runs them if it ever gets to them,
            // and the late answer is dropped. Nothing is sent twice.
            Err(error) if error.is_timeout() => unconfirmed(
                &shared,
                count,
                "no answer in time",
                "Redis did not confirm publishes in time: they were sent, and reach other \
                 servers if Redis gets to them",
            ),
            // The connection failed: that much the pipeline knows for sure.
            Err(error) => {
                went_down(&shared, &error.to_string());
                unconfirmed(
                    &shared,
                    count,
                    &error.to_string(),
                    "publishes may not have reached Redis: the connection failed; other \
                     servers may miss them",
                );
            }
        }
        shared.room.add_permits(room);
        for queued in &mut batch {
            if let Some(confirm) = queued.confirm.take() {
                let _ = confirm.send(confirmed);
            }
        }
        batch.clear();
    }
}

/// Sends `batch` in one pipeline, each publish through the script that numbers and keeps the
/// messages of topics whose history Redis keeps (loading the script first if need be).
async fn send(
    shared: &Shared,
    connection: &mut ConnectionManager,
    script: &mut Option<String>,
    batch: &[Queued],
) -> redis::RedisResult<()> {
    let sha = match script {
        Some(sha) => sha,
        None => {
            let load = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(scripts::PUBLISH)
                .to_owned();
            script.insert(load.query_async::<String>(connection).await?)
        }
    };
    let history = shared
        .subscriptions
        .delivery
        .get()
        .map(|delivery| delivery.sink.history())
        .unwrap_or_default();
    let max_len = history.message_limit().to_string();
    let ttl = scripts::ttl_ms(history.age_limit()).to_string();
    let mut pipeline = redis::pipe();
    // Which publishes go through the script: those to topics kept, or not known.
    let scripted: Vec<bool> = {
        let known = lock(&shared.subscriptions.known);
        batch
            .iter()
            .map(|queued| known.scripted(&queued.topic))
            .collect()
    };
    for (queued, scripted) in batch.iter().zip(&scripted) {
        let channel = format!("{}{}", shared.prefix, queued.topic);
        if !scripted {
            pipeline
                .cmd("PUBLISH")
                .arg(channel)
                .arg(&queued.payload[..]);
            continue;
        }
        let (hash, stream) = scripts::keys(&shared.prefix, &queued.topic);
        pipeline
            .cmd("EVALSHA")
            .arg(&sha[..])
            .arg(2)
            .arg(hash)
            .arg(stream)
            .arg(channel)
            .arg(&queued.payload[..])
            .arg(&max_len)
            .arg(&ttl);
    }
    let answers: Vec<i64> = pipeline.query_async(connection).await?;
    // What the script did says whether its topic is kept.
    let mut known = lock(&shared.subscriptions.known);
    for ((queued, scripted), answer) in batch.iter().zip(&scripted).zip(answers) {
        if *scripted {
            known.note(&queued.topic, answer == 1);
        }
    }
    Ok(())
}

/// A pipeline Redis did not confirm: counted, logged at most once a second. (A slow answer is
/// not a dead Redis: that is for a failed connection or the once-a-second check to say.)
fn unconfirmed(shared: &Shared, count: u64, error: &str, what: &str) {
    shared.stats.unconfirmed.fetch_add(count, Ordering::Relaxed);
    if let Some(skipped) = shared.stats.log(Line::Unconfirmed) {
        tracing::warn!(
            redis = shared.shown,
            error,
            publishes = count,
            pipelines_before = skipped,
            "{what}"
        );
    }
}

/// Checks the publishing connection every second (which is also what makes it reconnect after
/// a long outage), and says when Redis comes and goes.
async fn watch(shared: Arc<Shared>) {
    let mut connection = shared.connection.clone();
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refreshed = Instant::now();
    loop {
        tick.tick().await;
        refresh_kept(&shared, &mut connection, &mut refreshed).await;
        let ping = redis::cmd("PING");
        let answered =
            tokio::time::timeout(RESPONSE_TIMEOUT, ping.query_async::<()>(&mut connection));
        match answered.await {
            Ok(Ok(())) => came_up(&shared.up, &shared.shown),
            Ok(Err(error)) => went_down(&shared, &error.to_string()),
            Err(_) => went_down(&shared, "no answer in time"),
        }
    }
}

/// Extends the lives of the histories this node follows, a third of their age after the last
/// time, so that a quiet topic's history is there when its clients come back.
async fn refresh_kept(shared: &Shared, connection: &mut ConnectionManager, last: &mut Instant) {
    let Some(delivery) = shared.subscriptions.delivery.get() else {
        return;
    };
    let ttl = scripts::ttl_ms(delivery.sink.history().age_limit());
    if last.elapsed() < Duration::from_millis(ttl / 3) {
        return;
    }
    *last = Instant::now();
    let kept: Vec<String> = lock(&shared.kept).iter().cloned().collect();
    for chunk in kept.chunks(PIPELINE) {
        let mut pipeline = redis::pipe();
        for topic in chunk {
            let (hash, stream) = scripts::keys(&shared.prefix, topic);
            pipeline.cmd("PEXPIRE").arg(hash).arg(ttl).ignore();
            pipeline.cmd("PEXPIRE").arg(stream).arg(ttl).ignore();
            // For nodes that forgot, or started since.
            let channel = scripts::announcements(&shared.prefix);
            pipeline.cmd("PUBLISH").arg(channel).arg(topic).ignore();
        }
        let answered =
            tokio::time::timeout(RESPONSE_TIMEOUT, pipeline.query_async::<()>(connection));
        if !matches!(answered.await, Ok(Ok(()))) {
            tracing::debug!(
                redis = shared.shown,
                "could not extend the lives of topic histories"
            );
            return;
        }
    }
}

fn came_up(up: &AtomicBool, shown: &str) {
    if !up.swap(true, Ordering::Relaxed) {
        tracing::info!(
            redis = shown,
            "Redis is reachable: topics span every server again"
        );
    }
}

fn went_down(shared: &Shared, error: &str) {
    if shared.up.swap(false, Ordering::Relaxed) {
        tracing::warn!(
            redis = shared.shown,
            error,
            "Redis is unreachable: publishes reach this server's own clients only (and say so) \
             until it is back; retrying every second"
        );
    }
}
