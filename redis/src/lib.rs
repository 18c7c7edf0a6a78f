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
//! unreachable reaches the publishing node's subscribers only, and `publish` says so).
//!
//! How it works: one Redis connection per server (RESP3, so that it both publishes and
//! receives), a channel `wsock:<topic>` per topic, subscribed only while the server has a
//! subscriber to that topic. Each publish crosses Redis once, as the bytes wsock encoded (a
//! short header names the publishing server, which skips its own messages: it delivered them
//! when they were published). Publishes are queued in order and sent in pipelines. When Redis
//! goes away, publishes fail at once (`PublishError::Broker`), the connection is retried every
//! second, and once Redis is back the server's channels are subscribed again.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use wsock_runtime::{Broker, Sink};

/// The prefix of every channel: the topic `room:lobby` is the channel `wsock:room:lobby`.
pub const DEFAULT_PREFIX: &str = "wsock:";

/// How often the connection is checked, and retried while Redis is away.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How long one command may take before Redis counts as unreachable.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1_000);
/// The most publishes sent in one pipeline.
const PIPELINE: usize = 512;

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
    connection: ConnectionManager,
    /// Redis answered the last command or check (or confirmed a subscription).
    up: Arc<AtomicBool>,
    /// Where messages from other nodes go, once the server started the broker.
    delivery: Arc<OnceLock<Delivery>>,
    /// Channels this node wants (it has subscribers to their topics).
    wanted: Mutex<HashSet<String>>,
    /// Channels Redis confirmed this connection subscribes to.
    confirmed: Arc<Mutex<HashSet<String>>>,
    /// Publishes, in order, for the publishing task.
    publishes: mpsc::UnboundedSender<(String, Bytes)>,
    publish_queue: Mutex<Option<mpsc::UnboundedReceiver<(String, Bytes)>>>,
    /// Subscription changes, for the task that makes them.
    changes: mpsc::UnboundedSender<()>,
    change_queue: Mutex<Option<mpsc::UnboundedReceiver<()>>>,
}

/// The sink, and the prefix to strip from channel names to find topic names.
struct Delivery {
    sink: Sink,
    prefix: String,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Redis could not be reached, or the address is not a Redis URL.
#[derive(Debug)]
pub struct Error {
    message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl Redis {
    /// Connects to Redis at `url` (`redis://host:port[/db]`), and fails within a few seconds,
    /// saying so, if it cannot be reached: a server that starts without its Redis would
    /// quietly serve its own clients only. See [`Redis::lazy`] to start regardless.
    pub async fn connect(url: &str) -> Result<Redis, Error> {
        let redis = Redis::open(url, DEFAULT_PREFIX, true).await?;
        Ok(redis)
    }

    /// Connects to Redis at `url` in the background: the server starts even while Redis is
    /// down (it logs a warning that says so, and topics reach this node only until Redis is
    /// there), and links up once Redis answers.
    pub async fn lazy(url: &str) -> Result<Redis, Error> {
        Redis::open(url, DEFAULT_PREFIX, false).await
    }

    /// Uses `prefix` for channel names instead of `wsock:` (several apps on one Redis).
    pub fn with_prefix(self, prefix: impl Into<String>) -> Redis {
        let shared = Arc::try_unwrap(self.shared).unwrap_or_else(|_| {
            panic!("set the prefix before the Redis broker is given to a server")
        });
        Redis {
            shared: Arc::new(Shared {
                prefix: prefix.into(),
                ..shared
            }),
        }
    }

    /// Whether Redis answered the last command or check.
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Relaxed)
    }

    async fn open(url: &str, prefix: &str, eager: bool) -> Result<Redis, Error> {
        let info = url.into_connection_info().map_err(|error| Error {
            message: format!("{url:?} is not a Redis URL: {error}"),
        })?;
        let shown = format!("redis://{}", info.addr());
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(info.set_redis_settings(settings)).map_err(|error| Error {
            message: format!("{shown}: {error}"),
        })?;
        let delivery: Arc<OnceLock<Delivery>> = Arc::default();
        let confirmed: Arc<Mutex<HashSet<String>>> = Arc::default();
        let up = Arc::new(AtomicBool::new(eager));
        let pushes = {
            let (delivery, confirmed) = (Arc::clone(&delivery), Arc::clone(&confirmed));
            let (up, shown) = (Arc::clone(&up), shown.clone());
            move |push: PushInfo| -> Result<(), std::convert::Infallible> {
                if push.kind == PushKind::Subscribe {
                    // Resubscribed after a reconnect: Redis is back, say so at once.
                    came_up(&up, &shown);
                }
                received(&delivery, &confirmed, push);
                Ok(())
            }
        };
        let config = ConnectionManagerConfig::new()
            .set_min_delay(Duration::from_millis(50))
            // Jitter may double this: reconnects are tried at most about a second apart.
            .set_max_delay(Duration::from_millis(500))
            .set_number_of_retries(4)
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_push_sender(pushes)
            .set_automatic_resubscription();
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
        let (publishes, publish_queue) = mpsc::unbounded_channel();
        let (changes, change_queue) = mpsc::unbounded_channel();
        Ok(Redis {
            shared: Arc::new(Shared {
                shown,
                prefix: prefix.to_owned(),
                connection,
                up,
                delivery,
                wanted: Mutex::default(),
                confirmed,
                publishes,
                publish_queue: Mutex::new(Some(publish_queue)),
                changes,
                change_queue: Mutex::new(Some(change_queue)),
            }),
        })
    }
}

/// What Redis pushes on the connection: messages for the sink, and the subscriptions it
/// confirms or has dropped. Runs on the connection's task: it must not block, and does not.
fn received(delivery: &OnceLock<Delivery>, confirmed: &Mutex<HashSet<String>>, push: PushInfo) {
    let channel_of = |value: Option<&Value>| match value {
        Some(Value::BulkString(name)) => std::str::from_utf8(name).ok().map(str::to_owned),
        _ => None,
    };
    match push.kind {
        PushKind::Message => {
            let mut data = push.data.into_iter();
            let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                (data.next(), data.next())
            else {
                return;
            };
            let Some(delivery) = delivery.get() else {
                return;
            };
            let Some(topic) = std::str::from_utf8(&channel)
                .ok()
                .and_then(|channel| channel.strip_prefix(delivery.prefix.as_str()))
            else {
                return;
            };
            delivery.sink.deliver(topic, Bytes::from(payload));
        }
        PushKind::Subscribe => {
            if let Some(channel) = channel_of(push.data.first()) {
                lock(confirmed).insert(channel);
            }
        }
        PushKind::Unsubscribe => {
            if let Some(channel) = channel_of(push.data.first()) {
                lock(confirmed).remove(&channel);
            }
        }
        // The connection dropped: Redis forgot its subscriptions.
        PushKind::Disconnection => lock(confirmed).clear(),
        _ => {}
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
        let delivery = Delivery {
            sink,
            prefix: shared.prefix.clone(),
        };
        if shared.delivery.set(delivery).is_err() {
            panic!("a Redis broker serves one server");
        }
        let publish_queue = lock(&shared.publish_queue).take().expect("started once");
        let change_queue = lock(&shared.change_queue).take().expect("started once");
        if !self.is_up() {
            tracing::warn!(
                redis = shared.shown,
                "Redis is unreachable: topics reach this server's own clients only until it is \
                 back"
            );
        }
        tokio::spawn(publish(Arc::clone(shared), publish_queue));
        tokio::spawn(watch(Arc::clone(shared), change_queue));
    }

    fn subscribe(&self, topic: &str) {
        let channel = format!("{}{topic}", self.shared.prefix);
        lock(&self.shared.wanted).insert(channel);
        let _ = self.shared.changes.send(());
    }

    fn unsubscribe(&self, topic: &str) {
        let channel = format!("{}{topic}", self.shared.prefix);
        lock(&self.shared.wanted).remove(&channel);
        let _ = self.shared.changes.send(());
    }

    fn publish(&self, topic: &str, payload: Bytes) -> Result<(), wsock_runtime::Error> {
        if !self.is_up() {
            return Err(wsock_runtime::Error::msg(format!(
                "Redis at {} is unreachable",
                self.shared.shown
            )));
        }
        let channel = format!("{}{topic}", self.shared.prefix);
        self.shared
            .publishes
            .send((channel, payload))
            .map_err(|_| wsock_runtime::Error::msg("the Redis broker has stopped"))
    }
}

/// Sends the publishes in order, in pipelines of whatever queued meanwhile.
async fn publish(shared: Arc<Shared>, mut queue: mpsc::UnboundedReceiver<(String, Bytes)>) {
    let mut connection = shared.connection.clone();
    let mut batch = Vec::with_capacity(PIPELINE);
    while queue.recv_many(&mut batch, PIPELINE).await > 0 {
        let mut pipeline = redis::pipe();
        for (channel, payload) in &batch {
            pipeline
                .cmd("PUBLISH")
                .arg(channel)
                .arg(&payload[..])
                .ignore();
        }
        let sent = tokio::time::timeout(
            RESPONSE_TIMEOUT,
            pipeline.query_async::<()>(&mut connection),
        )
        .await;
        let failed = match sent {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some("no answer in time".to_owned()),
        };
        if let Some(error) = failed {
            went_down(&shared, &error);
            tracing::warn!(
                redis = shared.shown,
                lost = batch.len(),
                "publishes did not reach Redis: other servers miss them"
            );
        }
        batch.clear();
    }
}

/// Keeps the subscriptions what this node wants, and checks the connection every second
/// (which is also what makes it reconnect after a long outage).
async fn watch(shared: Arc<Shared>, mut changes: mpsc::UnboundedReceiver<()>) {
    let mut connection = shared.connection.clone();
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            change = changes.recv() => {
                if change.is_none() {
                    return;
                }
                while changes.try_recv().is_ok() {}
            }
            _ = tick.tick() => {
                let ping = redis::cmd("PING");
                match tokio::time::timeout(RESPONSE_TIMEOUT, ping.query_async::<()>(&mut connection)).await {
                    Ok(Ok(())) => came_up(&shared.up, &shared.shown),
                    Ok(Err(error)) => went_down(&shared, &error.to_string()),
                    Err(_) => went_down(&shared, "no answer in time"),
                }
            }
        }
        if shared.up.load(Ordering::Relaxed) {
            reconcile(&shared, &mut connection).await;
        }
    }
}

/// Subscribes to the channels wanted and not confirmed, unsubscribes from the others.
async fn reconcile(shared: &Shared, connection: &mut ConnectionManager) {
    let (subscribe, unsubscribe) = {
        let wanted = lock(&shared.wanted);
        let confirmed = lock(&shared.confirmed);
        let subscribe: Vec<String> = wanted.difference(&confirmed).cloned().collect();
        let unsubscribe: Vec<String> = confirmed.difference(&wanted).cloned().collect();
        (subscribe, unsubscribe)
    };
    let result = async {
        if !subscribe.is_empty() {
            connection.subscribe(&subscribe).await?;
        }
        if !unsubscribe.is_empty() {
            connection.unsubscribe(&unsubscribe).await?;
        }
        Ok::<(), redis::RedisError>(())
    };
    match tokio::time::timeout(RESPONSE_TIMEOUT, result).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => went_down(shared, &error.to_string()),
        Err(_) => went_down(shared, "no answer in time"),
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
