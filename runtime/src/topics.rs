//! Topics: publish once, deliver to every subscribed connection, in this process or, through a
//! [`Broker`], on every node.
//!
//! A published value is encoded once; each subscriber's queue gets the same bytes (a
//! reference-count bump and a queue push, no copy or allocation per subscriber), under the
//! queue's usual policy: a subscriber that does not keep up is closed with 1008, and nobody
//! waits for it. A connection leaves its topics when it ends, through the guards it holds
//! (see `Shared::hold`), never by a sweep.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, Weak};

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{Outgoing, Published};
use crate::delivery::{Counters, Delivery, DeliveryCounts, Judge, Judged, Sub, Verdicts};
use crate::error::Error;
use crate::follow::{self, Asker, Link, Origin};
use crate::history::{History, Locate, Ring, Subscribed, Total, unique_u64};
use crate::mailbox::Mailbox;
pub use crate::mailbox::{Recipient, Sealed, Subscriber};
use crate::message::{IntoMessage, Message, Text};
use crate::presence::{self, Presence};
use crate::resume::Resume;
use crate::stats;

/// A server's topics: take it as an endpoint parameter (`topics: Topics`), or from
/// [`Server::topics`](crate::Server::topics) to publish from anywhere (a spawned task, an axum
/// handler). Cloning is cheap.
///
/// ```
/// use serde::Serialize;
/// use wsock::prelude::*;
///
/// #[derive(Serialize)]
/// struct Said<'a> {
///     from: &'a str,
///     text: &'a str,
/// }
///
/// /// Everyone in a room hears what anyone says, but not their own words back.
/// #[websocket("/rooms/{room}")]
/// fn room(room: String, out: Out<Text>, topics: Topics) {
///     let room = topics.topic::<Text>(format!("room:{room}"));
///     room.subscribe(&out); // until the connection ends
///     on_message(|text: String| {
///         let said = serde_json::to_string(&Said { from: "someone", text: &text })?;
///         room.publish_except(&out, Text::from(said))?;
///         Ok(())
///     });
/// }
/// ```
#[derive(Clone)]
pub struct Topics {
    hub: Arc<Hub>,
}

/// Every topic of one server, and the broker that links it to other nodes.
struct Hub {
    /// This node, as other nodes see it in the broker's messages.
    node: [u8; 16],
    topics: Mutex<HashMap<String, Weak<Entry>>>,
    broker: OnceLock<Arc<dyn Broker>>,
    /// The broker keeps the topics' history (`Broker::keeps_history`): their rings follow
    /// its numbering (`follow`).
    follows: AtomicBool,
    /// What history a topic keeps once a resumable connection subscribes to it.
    history: Mutex<History>,
    /// The histories of topics nobody holds any more, by name: kept until they expire (and
    /// fed what other nodes publish meanwhile), so that a client that was alone in a topic
    /// still resumes; a new topic of that name takes its history back. Taken after `topics`
    /// by whoever takes both.
    parked: Mutex<HashMap<String, Parked>>,
    /// What all the histories take (`History::max_total_bytes`).
    history_bytes: Total,
    /// Who is present where.
    presence: Arc<presence::Registry>,
}

/// The topics of a hub, locked.
type TopicsGuard<'a> = MutexGuard<'a, HashMap<String, Weak<Entry>>>;

/// A topic's history, while nobody holds the topic.
struct Parked {
    /// Since when nobody holds it.
    since: tokio::time::Instant,
    /// The type of its topic's messages; `None` for a history a resuming client's handshake
    /// looked up before any topic of that name was taken.
    message_type: Option<TypeId>,
    ring: Ring,
}

/// How long a history that follows the broker's numbering stays when nobody holds its topic
/// (looked up for a resuming client's handshake, or left by the topic's last holder).
const LOOKED_UP_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a resuming client's handshake waits for the broker to say what it missed.
const PREFETCH_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// One topic: its subscribers on this node.
struct Entry {
    name: String,
    /// The message type it carries, and its name for the error when another is asked for.
    message_type: (TypeId, &'static str),
    subscribers: RwLock<Slots>,
    /// Its history, once a resumable connection subscribed: the messages' numbering and the
    /// last ones. Taken before `subscribers` by whoever takes both.
    ring: Mutex<Option<Ring>>,
    /// `ring` is `Some`: asked without the lock on every publish.
    keeps: AtomicBool,
    /// How many subscriptions filter or key on the typed value (`Slots::typed`): asked
    /// without the lock on every publish.
    typed: AtomicUsize,
    /// What the delivery modes did not deliver as published.
    counters: Counters,
    hub: Arc<Hub>,
}

/// Subscribers in slots that keep their place, so a subscription knows where it is.
#[derive(Default)]
struct Slots {
    slots: Vec<Option<Arc<Mailbox>>>,
    free: Vec<usize>,
    count: usize,
    /// The delivery modes of the subscriptions that have one, by slot (shorter than `slots`
    /// when the last ones have none); empty while none has.
    subs: Vec<Option<Arc<Sub>>>,
    /// How many subscriptions have a mode: 0 keeps publishing on the plain loop.
    special: usize,
    /// How many of those filter or key on the typed value.
    typed: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; poisoning would only come from a bug.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for Topics {
    fn default() -> Self {
        let mut node = [0u8; 16];
        node.copy_from_slice(&random_node_id());
        Topics {
            hub: Arc::new(Hub {
                node,
                topics: Mutex::new(HashMap::new()),
                broker: OnceLock::new(),
                follows: AtomicBool::new(false),
                history: Mutex::new(History::default()),
                parked: Mutex::new(HashMap::new()),
                history_bytes: Total::default(),
                presence: Arc::default(),
            }),
        }
    }
}

impl Hub {
    /// The histories take more than `History::max_total_bytes`: drops the parked ones, the
    /// longest unheld first (but `keep`'s), until they fit or none is left.
    fn evict_parked(&self, parked: &mut HashMap<String, Parked>, keep: Option<&str>) {
        let cap = lock(&self.history).total_bytes();
        while self.history_bytes.load(Ordering::Relaxed) > cap {
            let Some(oldest) = parked
                .iter()
                .filter(|(name, _)| Some(name.as_str()) != keep)
                .min_by_key(|(_, parked)| parked.since)
                .map(|(name, _)| name.clone())
            else {
                return;
            };
            parked.remove(&oldest);
            tracing::debug!(
                topic = oldest,
                "a parked history dropped: the histories take too much"
            );
            if let Some(broker) = self.broker.get() {
                broker.unsubscribe(&oldest);
            }
        }
    }

    /// The entry of the topic `name` if a topic holds it; otherwise `parked` runs on the
    /// parked histories, under the topics' lock (so that a topic taking its history back
    /// meanwhile waits for it).
    fn entry_or_parked(
        &self,
        name: &str,
        parked: impl FnOnce(&mut HashMap<String, Parked>),
    ) -> Option<Arc<Entry>> {
        let (_topics, entry) = self.settled(name);
        if entry.is_none() {
            parked(&mut lock(&self.parked));
        }
        entry
    }

    /// The topics, locked, and the topic `name` if a topic holds it, once it is not being
    /// dropped. Its last holder drops it before its `Drop` takes this lock to park its
    /// history: whoever comes in between (a message from the broker, a new subscriber) waits
    /// that moment out rather than find the history nowhere, which would lose a message, or
    /// the history itself (a new topic of that name would take its place with none).
    fn settled(&self, name: &str) -> (TopicsGuard<'_>, Option<Arc<Entry>>) {
        loop {
            let topics = lock(&self.topics);
            let Some(weak) = topics.get(name) else {
                return (topics, None);
            };
            if let Some(entry) = weak.upgrade() {
                return (topics, Some(entry));
            }
            drop(topics);
            std::thread::yield_now();
        }
    }

    /// Forgets the parked histories that expired (and stops taking their topics' messages
    /// from other nodes).
    fn forget_expired(&self) {
        let now = tokio::time::Instant::now();
        let mut parked = lock(&self.parked);
        if parked.is_empty() {
            return;
        }
        parked.retain(|name, parked| {
            let keep = match parked.ring.follow {
                Some(_) => now.saturating_duration_since(parked.since) < LOOKED_UP_FOR,
                None => !parked.ring.expired(parked.since, now),
            };
            if !keep && let Some(broker) = self.broker.get() {
                broker.unsubscribe(name);
            }
            keep
        });
    }
}

/// A node id no other process is likely to have.
fn random_node_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    for (i, half) in id.chunks_mut(8).enumerate() {
        half.copy_from_slice(&unique_u64(i as u64).to_le_bytes());
    }
    id
}

impl Topics {
    /// The topic `name`, carrying messages of type `T` (what its subscribers' `Out<T>` send).
    /// Names are any text built at run time: `format!("room:{room}")`.
    ///
    /// # Panics
    /// If the topic is in use with another message type: a topic carries one type.
    pub fn topic<T: IntoMessage>(&self, name: impl Into<String>) -> Topic<T> {
        let name = name.into();
        let message_type = (TypeId::of::<T>(), std::any::type_name::<T>());
        self.hub.forget_expired();
        let (mut topics, entry) = self.hub.settled(&name);
        if let Some(entry) = entry {
            assert!(
                entry.message_type.0 == message_type.0,
                "the topic {name:?} carries `{}`, not `{}`: a topic carries one message type",
                entry.message_type.1,
                message_type.1
            );
            return Topic::new(entry);
        }
        // A history kept since the topic's last holder went is its again.
        let ring = lock(&self.hub.parked)
            .remove(&name)
            .filter(|parked| {
                parked
                    .message_type
                    .is_none_or(|kind| kind == message_type.0)
            })
            .map(|parked| parked.ring);
        let entry = Arc::new(Entry {
            name: name.clone(),
            message_type,
            subscribers: RwLock::default(),
            keeps: AtomicBool::new(ring.is_some()),
            ring: Mutex::new(ring),
            typed: AtomicUsize::new(0),
            counters: Counters::default(),
            hub: Arc::clone(&self.hub),
        });
        topics.insert(name, Arc::downgrade(&entry));
        Topic::new(entry)
    }

    /// Who is present in `name` (a room, a document), with metadata of type `M` (a name, a
    /// status; sent to watchers as JSON): see [`Presence`]. A presence is kept while a handle,
    /// a tracked connection or a watcher holds it. (On this node; with a broker, presence on
    /// every node is a later step.)
    pub fn presence<M>(&self, name: impl Into<String>) -> Presence<M> {
        Presence::new(self.hub.presence.room(name.into()))
    }

    /// How many connections of this node subscribe to the topic `name`.
    pub fn subscribers(&self, name: &str) -> usize {
        let entry = lock(&self.hub.topics).get(name).and_then(Weak::upgrade);
        entry.map_or(0, |entry| entry.count())
    }

    /// The topics with subscribers on this node, by name, with their subscriber counts.
    pub fn counts(&self) -> Vec<(String, usize)> {
        let entries: Vec<Arc<Entry>> = lock(&self.hub.topics)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        let mut counts: Vec<_> = entries
            .iter()
            .map(|entry| (entry.name.clone(), entry.count()))
            .filter(|(_, count)| *count > 0)
            .collect();
        counts.sort();
        counts
    }

    /// What each topic's delivery modes did not deliver as published (replaced, dropped,
    /// filtered; see [`Delivery`]), by topic name, for the topics held on this node.
    pub fn delivery_counts(&self) -> Vec<(String, DeliveryCounts)> {
        let entries: Vec<Arc<Entry>> = lock(&self.hub.topics)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        let mut counts: Vec<_> = entries
            .iter()
            .map(|entry| (entry.name.clone(), entry.counters.read()))
            .collect();
        counts.sort_by(|a, b| a.0.cmp(&b.0));
        counts
    }

    /// The history that topics resumable connections subscribe to keep from now on.
    pub(crate) fn set_history(&self, history: History) {
        *lock(&self.hub.history) = history;
    }

    /// Links the topics to other nodes; once only.
    pub(crate) fn set_broker(&self, broker: Arc<dyn Broker>) {
        let sink = Sink {
            hub: Arc::downgrade(&self.hub),
        };
        if self.hub.broker.set(Arc::clone(&broker)).is_err() {
            panic!("a server has one broker: `Server::broker` was called twice");
        }
        self.hub
            .follows
            .store(broker.keeps_history(), Ordering::Release);
        broker.start(sink);
        self.hub.presence.start(Arc::new(broker), &self.hub.node);
    }

    /// The server stopped: other nodes forget its presence members at once.
    pub(crate) async fn stopped(&self) {
        self.hub.presence.bye().await;
    }

    /// For a resuming client's handshake, where the broker keeps the topics' history: asks
    /// it for what the client missed in each topic it names that this node does not keep,
    /// and waits (at most 2 s) for the answers, so that the endpoint's `subscribe` finds them
    /// here.
    pub(crate) async fn prefetch(&self, resume: &Resume) {
        let hub = &self.hub;
        let Some(broker) = hub.broker.get() else {
            return;
        };
        if !hub.follows.load(Ordering::Acquire) {
            return;
        }
        let mut waits = Vec::new();
        for (topic, epoch, offset) in resume.positions() {
            let link = Link { topic, broker };
            let entry = {
                let (_topics, entry) = hub.settled(topic);
                if entry.is_none() {
                    let mut parked = lock(&hub.parked);
                    let parked = parked.entry(topic.to_owned()).or_insert_with(|| {
                        broker.subscribe(topic);
                        Parked {
                            since: tokio::time::Instant::now(),
                            message_type: None,
                            ring: Ring::following(topic, *lock(&hub.history), &hub.history_bytes),
                        }
                    });
                    if parked.ring.follow.is_some() {
                        waits.extend(follow::prefetch(&link, &mut parked.ring, (epoch, offset)));
                    }
                }
                entry
            };
            if let Some(entry) = entry {
                let mut ring = lock(&entry.ring);
                let ring = ring.get_or_insert_with(|| {
                    entry.keeps.store(true, Ordering::Release);
                    entry.new_ring()
                });
                if ring.follow.is_some() {
                    waits.extend(follow::prefetch(&link, ring, (epoch, offset)));
                }
            }
        }
        let all = futures_util::future::join_all(waits);
        let _ = tokio::time::timeout(PREFETCH_WITHIN, all).await;
    }
}

impl fmt::Debug for Topics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topics")
            .field("topics", &self.counts())
            .field("broker", &self.hub.broker.get().is_some())
            .finish()
    }
}

/// A topic carrying messages of type `T`, from [`Topics::topic`]: subscribe connections,
/// publish to them. Cloning is cheap.
pub struct Topic<T> {
    entry: Arc<Entry>,
    /// `T`'s encoder, as in `Out`: the methods need no bound, so a type that is not a message
    /// type is one error, where the topic is taken.
    encode: fn(T) -> Result<Message, Error>,
    /// The value as its typed subscribers' filters and keys see it.
    as_any: fn(&T) -> &dyn Any,
}

impl<T> Clone for Topic<T> {
    fn clone(&self) -> Self {
        Topic {
            entry: Arc::clone(&self.entry),
            encode: self.encode,
            as_any: self.as_any,
        }
    }
}

impl<T> fmt::Debug for Topic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.entry.name)
            .field("subscribers", &self.entry.count())
            .finish()
    }
}

/// What can be published to a `Topic<T>`: a `T`, or a value that converts into one, as for
/// `Out<T>::write`.
#[diagnostic::on_unimplemented(
    message = "a `{Self}` cannot be published to a `Topic<{T}>`",
    label = "not a `{T}`",
    note = "a topic carries one message type, what its subscribers' `Out<{T}>` send: publish a \
            `{T}`"
)]
pub trait Publish<T> {
    #[doc(hidden)]
    fn into_topic_message(self) -> T;
}

#[diagnostic::do_not_recommend]
impl<T, M: Into<T>> Publish<T> for M {
    fn into_topic_message(self) -> T {
        self.into()
    }
}

impl<T: IntoMessage> Topic<T> {
    fn new(entry: Arc<Entry>) -> Self {
        Topic {
            entry,
            encode: T::into_message,
            as_any: |value| value,
        }
    }

    /// Subscribes `out`'s connection as [`subscribe`](Topic::subscribe) does, taking the
    /// topic's messages as `delivery` says: every one, the newest only (per key), droppable,
    /// at most N a second, filtered, paused (see [`Delivery`]). On a connection already
    /// subscribed, changes how it takes them (no message is lost or repeated by the change).
    ///
    /// A connection of an endpoint with `resume = true` gets every message (a resumable
    /// subscription replays every message it missed, and its position counts each): the
    /// mode is ignored there, with a warning. Where a resumable connection subscribes to a
    /// topic of a broker that keeps history (`wsock-redis`), the topic's other subscriptions
    /// get every message too, for now.
    pub fn subscribe_with(&self, out: &impl Subscriber<T>, delivery: Delivery<T>) -> Subscribed {
        let mailbox = out.recipient().0;
        if mailbox.resume().is_some() {
            tracing::warn!(
                topic = self.entry.name,
                "a delivery mode on a resumable connection: it gets every message"
            );
            return self.subscribe(out);
        }
        let entry = &self.entry;
        let sub = Arc::new(Sub::new(delivery, mailbox));
        let mut fresh = Some(Arc::clone(&sub));
        mailbox.hold(entry.key(), || {
            let slot = entry.add(Arc::clone(mailbox), fresh.take());
            Box::new(Subscription {
                entry: Arc::clone(entry),
                slot,
            })
        });
        if fresh.is_some() {
            // Subscribed already: the new mode takes the place of the old.
            entry.set_sub(mailbox, |_| Some(sub));
        }
        Subscribed::Live
    }
}

impl<T> Topic<T> {
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// Delivers every message published to this topic from now on to `out`'s connection,
    /// until it unsubscribes or the connection ends. Subscribing twice is subscribing once;
    /// a connection that ended does not subscribe.
    ///
    /// On an endpoint with `resume = true`, the topic keeps history from now on, the client
    /// is told the topic's position, and a client that reconnected with its position in this
    /// topic first gets what it missed, then the live messages: no gap, no duplicate, however
    /// fast others publish meanwhile. What became of its position is returned: on
    /// [`Subscribed::NotRecovered`], send it what it needs afresh. See the README's
    /// "Resume" for the limits and the wire format. Elsewhere it returns
    /// [`Subscribed::Live`].
    pub fn subscribe(&self, out: &impl Subscriber<T>) -> Subscribed {
        let mailbox = out.recipient().0;
        let entry = &self.entry;
        let mut subscribed = Subscribed::Live;
        mailbox.hold(entry.key(), || {
            let slot = match mailbox.resume() {
                None => entry.add(Arc::clone(mailbox), None),
                Some(resume) => {
                    let (slot, resumed) = entry.add_resuming(mailbox, resume);
                    stats::resumed(match &resumed {
                        Subscribed::Live => "live",
                        Subscribed::Recovered { .. } => "recovered",
                        Subscribed::NotRecovered(_) => "not_recovered",
                    });
                    subscribed = resumed;
                    slot
                }
            };
            Box::new(Subscription {
                entry: Arc::clone(entry),
                slot,
            })
        });
        subscribed
    }

    /// Stops delivering this topic's messages to `out`'s subscribed connection, without
    /// unsubscribing it, until [`unpause`](Topic::unpause): what is published meanwhile is
    /// not for it (counted as filtered), except that a latest-only or at-most-N subscription
    /// keeps the newest, which it gets when it is unpaused. Does nothing to a connection that
    /// does not subscribe.
    pub fn pause(&self, out: &impl Subscriber<T>) {
        self.entry.set_sub(out.recipient().0, |sub| match sub {
            Some(sub) => {
                sub.set_paused(true);
                None
            }
            None => Some(Arc::new(Sub::paused_every())),
        });
    }

    /// Delivers again to a connection [`pause`](Topic::pause)d (or subscribed
    /// [`paused`](Delivery::paused)).
    pub fn unpause(&self, out: &impl Subscriber<T>) {
        self.entry.set_sub(out.recipient().0, |sub| {
            if let Some(sub) = sub {
                sub.set_paused(false);
            }
            None
        });
    }

    /// What this topic's delivery modes did not deliver as published (replaced, dropped,
    /// filtered), on this node, since the topic was taken.
    pub fn delivery_counts(&self) -> DeliveryCounts {
        self.entry.counters.read()
    }

    /// Stops delivering this topic's messages to `out`'s connection.
    pub fn unsubscribe(&self, out: &impl Subscriber<T>) {
        out.recipient().0.release(self.entry.key());
    }

    /// How many connections of this node subscribe.
    pub fn subscribers(&self) -> usize {
        self.entry.count()
    }

    /// Publishes `message` to every subscriber: encoded once, queued for each subscriber on
    /// this node without waiting for any, and handed to the broker for the other nodes. It
    /// never waits.
    ///
    /// `Err` means the message could not be encoded (nobody got it), or the broker could not
    /// take it (the subscribers of this node got it, other nodes did not):
    /// [`PublishError::Broker`] while the broker cannot reach its backend,
    /// [`PublishError::Behind`] while its queue toward the backend is full (publishers
    /// outpace Redis). To slow down to the broker's pace instead, use
    /// [`Topic::publish_wait`].
    pub fn publish(&self, message: impl Publish<T>) -> Result<(), PublishError> {
        self.publish_from(None, message)
    }

    /// Publishes `message` to every subscriber but `except`'s connection (a chat message is
    /// not echoed to its sender). See [`Topic::publish`].
    pub fn publish_except(
        &self,
        except: &impl Subscriber<T>,
        message: impl Publish<T>,
    ) -> Result<(), PublishError> {
        self.publish_from(Some(except.recipient().0), message)
    }

    fn publish_from(
        &self,
        except: Option<&Arc<Mailbox>>,
        message: impl Publish<T>,
    ) -> Result<(), PublishError> {
        let value = message.into_topic_message();
        let entry = &self.entry;
        let judged = entry.judge((self.as_any)(&value));
        let verdicts = verdicts(&judged);
        let message = (self.encode)(value).map_err(PublishError::Encode)?;
        stats::published();
        let Some(broker) = entry.hub.broker.get() else {
            entry.deliver(message, except, true, verdicts);
            return Ok(());
        };
        let token = entry.deliver(message.clone(), except, true, verdicts);
        let payload = encode_remote(&entry.hub.node, token, &message);
        let taken = broker.publish(&entry.name, payload);
        stats::broker_publish(broker_refused(&taken));
        taken.map_err(|error| entry.refused(error, &message, token))
    }

    /// Publishes `message` as [`Topic::publish`] does, but waits while the broker's queue
    /// toward its backend is full, so that a publisher slows down to the backend's pace
    /// instead of being refused: for a spawned task or a section that publishes in bulk and
    /// must not lose messages on other nodes. Without a broker, or with room in its queue, it
    /// does not wait. It still fails at once while the broker cannot reach its backend.
    ///
    /// The subscribers of this node get the message once the broker had room for it, so they
    /// see the same pace.
    pub async fn publish_wait(&self, message: impl Publish<T>) -> Result<(), PublishError> {
        let value = message.into_topic_message();
        let entry = &self.entry;
        let judged = entry.judge((self.as_any)(&value));
        let message = (self.encode)(value).map_err(PublishError::Encode)?;
        stats::published();
        let Some(broker) = entry.hub.broker.get() else {
            entry.deliver(message, None, true, verdicts(&judged));
            return Ok(());
        };
        let payload = encode_remote(&entry.hub.node, 0, &message);
        let taken = broker.publish_wait(&entry.name, payload).await;
        stats::broker_publish(broker_refused(&taken));
        entry.deliver(message.clone(), None, true, verdicts(&judged));
        taken.map_err(|error| entry.refused(error, &message, 0))
    }
}

impl Entry {
    /// Identifies the topic among what a connection holds.
    fn key(&self) -> usize {
        self as *const Entry as usize
    }

    fn count(&self) -> usize {
        self.subscribers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .count
    }

    fn add(&self, mailbox: Arc<Mailbox>, sub: Option<Arc<Sub>>) -> usize {
        let mut subscribers = self
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let slot = self.add_locked(&mut subscribers, mailbox);
        self.put_sub(&mut subscribers, slot, sub);
        slot
    }

    fn add_locked(&self, subscribers: &mut Slots, mailbox: Arc<Mailbox>) -> usize {
        let slot = match subscribers.free.pop() {
            Some(slot) => {
                subscribers.slots[slot] = Some(mailbox);
                slot
            }
            None => {
                subscribers.slots.push(Some(mailbox));
                subscribers.slots.len() - 1
            }
        };
        subscribers.count += 1;
        // Its first subscriber on this node: messages from other nodes are wanted now.
        if subscribers.count == 1
            && let Some(broker) = self.hub.broker.get()
        {
            broker.subscribe(&self.name);
        }
        slot
    }

    /// Subscribes a connection that resumes its topics: under the history's lock, so that
    /// no message is published between what it is told and what it gets live, it gets the
    /// notice of its position, then what it missed (when it said where it was and that can be
    /// replayed), then it joins the subscribers.
    fn add_resuming(&self, mailbox: &Arc<Mailbox>, resume: &Resume) -> (usize, Subscribed) {
        let mut ring = lock(&self.ring);
        let ring = ring.get_or_insert_with(|| {
            self.keeps.store(true, Ordering::Release);
            self.new_ring()
        });
        if ring.follow.is_some()
            && let Some(link) = self.link()
        {
            let subscribed = follow::subscribe(&link, ring, mailbox, resume.position(&self.name));
            return (self.add(Arc::clone(mailbox), None), subscribed);
        }
        let subscribed = ring.resume(mailbox, resume.position(&self.name));
        (self.add(Arc::clone(mailbox), None), subscribed)
    }

    fn remove(&self, slot: usize) {
        let mut subscribers = self
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if subscribers.slots[slot].take().is_none() {
            return;
        }
        self.put_sub(&mut subscribers, slot, None);
        subscribers.free.push(slot);
        subscribers.count -= 1;
        if subscribers.count > 0 {
            return;
        }
        // No garbage left behind by churn: a topic nobody subscribes to holds no slots.
        subscribers.slots = Vec::new();
        subscribers.free = Vec::new();
        subscribers.subs = Vec::new();
        // A topic with history goes on taking other nodes' messages while it keeps it.
        if !self.keeps.load(Ordering::Acquire)
            && let Some(broker) = self.hub.broker.get()
        {
            broker.unsubscribe(&self.name);
        }
    }

    /// What a publish the broker refused returns. Where the topic follows the broker's
    /// numbering, its resumable subscribers here get `message` now, without a number.
    fn refused(&self, error: BrokerError, message: &Message, token: u64) -> PublishError {
        if self.keeps.load(Ordering::Acquire)
            && let Some(ring) = lock(&self.ring).as_mut()
            && ring.follow.is_some()
        {
            let subscribers = self.read();
            follow::refused(ring, &subscribers.slots, message, token);
        }
        // The broker logs its outages and its backlog; each message is a debug line.
        tracing::debug!(topic = self.name, %error, "the broker did not take a message");
        match error {
            BrokerError::Unreachable(error) => PublishError::Broker(error),
            BrokerError::Behind(error) => PublishError::Behind(error),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Slots> {
        self.subscribers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The topic's name and the broker, for a ring that follows the broker's numbering.
    fn link(&self) -> Option<Link<'_>> {
        let broker = self.hub.broker.get()?;
        Some(Link {
            topic: &self.name,
            broker,
        })
    }

    /// Queues `message` for every subscriber but `except`: published on this node (`here`),
    /// or by another node, without a number. Returns the token that names `except` to the
    /// broker where the topic follows the broker's numbering (0 elsewhere).
    fn deliver(
        &self,
        message: Message,
        except: Option<&Arc<Mailbox>>,
        here: bool,
        verdicts: Verdicts<'_>,
    ) -> u64 {
        if self.keeps.load(Ordering::Acquire) {
            return self.deliver_kept(message, except, here, verdicts);
        }
        let subscribers = self.read();
        if subscribers.count == 0 {
            return 0;
        }
        // History started meanwhile (set before its first subscriber joined): this message
        // is numbered, as that subscriber expects.
        if self.keeps.load(Ordering::Acquire) {
            drop(subscribers);
            return self.deliver_kept(message, except, here, verdicts);
        }
        stats::delivered(
            subscribers
                .count
                .saturating_sub(usize::from(except.is_some())),
        );
        // One shared copy for all, which also carries its compressed forms once made.
        let published = Arc::new(Published::new(message));
        if subscribers.special > 0 {
            self.deliver_each(&subscribers, &published, except, verdicts);
            return 0;
        }
        for mailbox in subscribers.slots.iter().flatten() {
            if except.is_some_and(|except| Arc::ptr_eq(except, mailbox)) {
                continue;
            }
            mailbox.push(Outgoing::Published(Arc::clone(&published)));
        }
        0
    }

    /// Queues `published` for every subscriber but `except`, each as its mode says: the loop
    /// of a topic some of whose subscriptions have a mode.
    fn deliver_each(
        &self,
        subscribers: &Slots,
        published: &Arc<Published>,
        except: Option<&Arc<Mailbox>>,
        verdicts: Verdicts<'_>,
    ) {
        let mut judge = Judge::new(verdicts);
        for (slot, mailbox) in subscribers.slots.iter().enumerate() {
            let Some(mailbox) = mailbox else {
                continue;
            };
            if except.is_some_and(|except| Arc::ptr_eq(except, mailbox)) {
                continue;
            }
            self.offer(subscribers, slot, mailbox, published, &mut judge);
        }
    }

    /// Hands `published` to the subscription in `slot`, through its mode if it has one.
    #[inline]
    fn offer(
        &self,
        subscribers: &Slots,
        slot: usize,
        mailbox: &Mailbox,
        published: &Arc<Published>,
        judge: &mut Judge<'_>,
    ) {
        match subscribers.subs.get(slot).and_then(Option::as_ref) {
            None => mailbox.push(Outgoing::Published(Arc::clone(published))),
            Some(sub) => match judge.key(slot, sub, &published.message) {
                Some(key) => sub.offer(mailbox, published, key, &self.counters),
                None => self.counters.filtered(),
            },
        }
    }

    /// Judges `value` for each subscription that filters or keys on it, in slot order;
    /// `None` when none does (the usual case: no lock taken).
    fn judge(&self, value: &dyn Any) -> Option<Judged> {
        if self.typed.load(Ordering::Acquire) == 0 {
            return None;
        }
        let subscribers = self.read();
        let judged = subscribers
            .subs
            .iter()
            .enumerate()
            .filter_map(|(slot, sub)| {
                let sub = sub.as_ref()?;
                let typed = sub.typed.as_ref()?;
                Some((slot, Arc::clone(sub), typed.judge(value)))
            })
            .collect();
        Some(judged)
    }

    /// Sets the mode of `mailbox`'s subscription to what `change` makes of its current one
    /// (`None` from `change`: it stays). Does nothing if `mailbox` does not subscribe.
    fn set_sub(
        &self,
        mailbox: &Arc<Mailbox>,
        change: impl FnOnce(Option<&Arc<Sub>>) -> Option<Arc<Sub>>,
    ) {
        let mut subscribers = self
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(slot) = subscribers
            .slots
            .iter()
            .position(|held| held.as_ref().is_some_and(|held| Arc::ptr_eq(held, mailbox)))
        else {
            return;
        };
        let current = subscribers.subs.get(slot).and_then(Option::as_ref);
        if let Some(sub) = change(current) {
            self.put_sub(&mut subscribers, slot, Some(sub));
        }
    }

    /// Puts `sub` as the mode of the subscription in `slot`, keeping the counts.
    fn put_sub(&self, subscribers: &mut Slots, slot: usize, sub: Option<Arc<Sub>>) {
        if subscribers.subs.len() <= slot {
            if sub.is_none() {
                return;
            }
            subscribers.subs.resize(slot + 1, None);
        }
        let count = |sub: Option<&Arc<Sub>>| match sub {
            Some(sub) => (1, usize::from(sub.typed.is_some())),
            None => (0, 0),
        };
        let (special, typed) = count(sub.as_ref());
        let old = std::mem::replace(&mut subscribers.subs[slot], sub);
        let (was_special, was_typed) = count(old.as_ref());
        subscribers.special = subscribers.special + special - was_special;
        subscribers.typed = subscribers.typed + typed - was_typed;
        self.typed.store(subscribers.typed, Ordering::Release);
    }

    /// A message from another node, or this one's back from the broker, without a number.
    fn deliver_remote(&self, message: Message, origin: Origin) {
        if let Origin::Own { .. } = origin {
            // Delivered here when it was published, unless the topic follows the broker.
            if self.keeps.load(Ordering::Acquire)
                && let Some(ring) = lock(&self.ring).as_mut()
                && ring.follow.is_some()
                && let Some(link) = self.link()
            {
                follow::unnumbered(&link, ring, &self.read().slots, &message, origin);
            }
            return;
        }
        self.deliver(message, None, false, Verdicts::Remote);
    }

    /// A message as the broker numbered it.
    fn deliver_numbered(&self, at: (&str, u64), message: Message, origin: Origin) {
        if self.keeps.load(Ordering::Acquire) {
            let mut ring = lock(&self.ring);
            if let Some(ring) = ring.as_mut()
                && ring.follow.is_some()
                && let Some(link) = self.link()
            {
                follow::numbered(&link, ring, &self.read().slots, at, message, origin);
                self.bound(ring);
                return;
            }
        }
        // Nobody here resumes in this topic: as any message.
        if let Origin::Remote = origin {
            self.deliver(message, None, false, Verdicts::Remote);
        }
    }

    /// The histories take more than the server allows: the parked ones go first, then this
    /// one keeps less.
    fn bound(&self, ring: &mut Ring) {
        if ring.over_total() {
            self.hub.evict_parked(&mut lock(&self.hub.parked), None);
            ring.shrink_to_total();
        }
    }
}

impl Entry {
    /// Numbers and keeps `message`, and queues it for every subscriber but `except`: with its
    /// header for those that resume, as it is for the others. Under the history's lock, so
    /// that every subscriber gets the topic's messages in the order of their offsets, and a
    /// subscription that resumes meanwhile sees either all of this or none of it.
    ///
    /// Where the ring follows the broker's numbering, nothing is numbered here: see `follow`.
    fn deliver_kept(
        &self,
        message: Message,
        except: Option<&Arc<Mailbox>>,
        here: bool,
        verdicts: Verdicts<'_>,
    ) -> u64 {
        let mut ring = lock(&self.ring);
        let Some(ring) = ring.as_mut() else {
            return 0;
        };
        if ring.follow.is_some() {
            let subscribers = self.read();
            if here {
                return follow::published(ring, &subscribers.slots, &message, except);
            }
            if let Some(link) = self.link() {
                follow::unnumbered(&link, ring, &subscribers.slots, &message, Origin::Remote);
            }
            return 0;
        }
        let enveloped = ring.push(&message);
        self.bound(ring);
        let subscribers = self.read();
        stats::delivered(
            subscribers
                .count
                .saturating_sub(usize::from(except.is_some())),
        );
        let mut plain = None;
        let mut message = Some(message);
        let mut judge = Judge::new(verdicts);
        for (slot, mailbox) in subscribers.slots.iter().enumerate() {
            let Some(mailbox) = mailbox else {
                continue;
            };
            if except.is_some_and(|except| Arc::ptr_eq(except, mailbox)) {
                // Its position moves on all the same.
                if mailbox.resume().is_some() {
                    mailbox.push(Outgoing::Message(ring.skipped()));
                }
                continue;
            }
            match mailbox.resume() {
                Some(_) => mailbox.push(Outgoing::Published(Arc::clone(&enveloped))),
                None => {
                    let published = plain.get_or_insert_with(|| {
                        Arc::new(Published::new(message.take().expect("made once")))
                    });
                    self.offer(&subscribers, slot, mailbox, published, &mut judge);
                }
            }
        }
        0
    }

    /// A history for this topic with the server's settings: under a fresh epoch, or
    /// following the broker's numbering where the broker keeps the topics' history.
    fn new_ring(&self) -> Ring {
        let settings = *lock(&self.hub.history);
        match self.hub.follows.load(Ordering::Acquire) {
            true => Ring::following(&self.name, settings, &self.hub.history_bytes),
            false => Ring::new(&self.name, settings, &self.hub.history_bytes),
        }
    }

    /// The broker's link dropped, so messages from other nodes may be missing. A history this
    /// node numbers starts again, under a new epoch, so that no client resumes across the
    /// gap; one that follows the broker's numbering asks it for what came meanwhile.
    fn lost(&self) {
        let mut ring = lock(&self.ring);
        match ring.as_mut() {
            Some(following) if following.follow.is_some() => {
                if let Some(link) = self.link() {
                    follow::lost(&link, following, &self.read().slots);
                }
            }
            Some(_) => *ring = Some(self.new_ring()),
            None => {}
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        // Forget the name, unless a new topic of that name took its place already. (Until
        // this takes the lock, whoever looks the topic up waits: `Hub::settled`.)
        let mut topics = lock(&self.hub.topics);
        if topics
            .get(&self.name)
            .is_some_and(|weak| weak.strong_count() == 0)
        {
            topics.remove(&self.name);
            // Its history stays for those who come back, until it expires (one the broker
            // keeps, for a little while: reconnecting clients find it here, known and
            // following); it goes on taking other nodes' messages meanwhile (the broker's
            // subscription stays).
            let ring = self.ring.get_mut().unwrap_or_else(PoisonError::into_inner);
            if let Some(ring) = ring.take() {
                let parked = Parked {
                    since: tokio::time::Instant::now(),
                    message_type: Some(self.message_type.0),
                    ring,
                };
                lock(&self.hub.parked).insert(self.name.clone(), parked);
            }
        }
    }
}

/// A connection's place among a topic's subscribers, left when dropped.
struct Subscription {
    entry: Arc<Entry>,
    slot: usize,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.entry.remove(self.slot);
    }
}

/// Why a publish did not reach everyone.
#[derive(Debug)]
#[non_exhaustive]
pub enum PublishError {
    /// The value could not be encoded (a `Json` value that does not serialize): nobody got it.
    Encode(Error),
    /// The broker cannot reach its backend (Redis is unreachable, say): this node's
    /// subscribers got it, other nodes did not.
    Broker(Error),
    /// The broker's queue toward its backend is full: publishers outpace it (Redis is slow,
    /// or slower than they are). This node's subscribers got it, other nodes did not.
    /// [`Topic::publish_wait`] waits for room instead.
    Behind(Error),
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Encode(error) => write!(f, "the message could not be encoded: {error}"),
            PublishError::Broker(error) | PublishError::Behind(error) => {
                write!(f, "the message reached this node only: {error}")
            }
        }
    }
}

impl std::error::Error for PublishError {}

/// Why a [`Broker`] did not take a message.
#[derive(Debug)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker cannot reach its backend.
    Unreachable(Error),
    /// The broker's queue toward its backend is full.
    Behind(Error),
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerError::Unreachable(error) | BrokerError::Behind(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for BrokerError {}

/// What [`Broker::publish_wait`] returns.
pub type BrokerFuture<'a> = Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send + 'a>>;

/// Carries published messages between the nodes of a cluster: each node hands its
/// publishes to the broker and gets the other nodes' from it. The `wsock-redis` crate is one,
/// on Redis pub/sub; give it to a server with [`Server::broker`](crate::Server::broker).
///
/// The runtime asks for a topic only while this node has subscribers to it; payloads are
/// opaque bytes, encoded once per publish, that another node's [`Sink`] understands.
pub trait Broker: Send + Sync + 'static {
    /// Called once, when the broker is given to a server: messages from other nodes go to
    /// `sink`.
    fn start(&self, sink: Sink);
    /// This node has subscribers to `topic` now: receive its messages. Must not block.
    fn subscribe(&self, topic: &str);
    /// This node has no subscriber to `topic` left. Must not block.
    fn unsubscribe(&self, topic: &str);
    /// Sends `payload` to every node subscribed to `topic`, this one included (the sink
    /// skips its own). Must not block: a broker that cannot take it now says so, and why.
    fn publish(&self, topic: &str, payload: Bytes) -> Result<(), BrokerError>;

    /// Sends `payload` as [`Broker::publish`] does, once the broker has room for it: waits
    /// while its queue toward the backend is full, not while the backend is unreachable. The
    /// default, for a broker with no queue of its own, is `publish`.
    fn publish_wait<'a>(&'a self, topic: &'a str, payload: Bytes) -> BrokerFuture<'a> {
        Box::pin(std::future::ready(self.publish(topic, payload)))
    }

    /// Sends `payload` as [`Broker::publish_wait`] does, and resolves once the backend
    /// confirmed it (or it failed): for what must be out before the process ends (presence's
    /// goodbye). The default, for a broker without confirmations, is `publish_wait`.
    fn publish_confirmed<'a>(&'a self, topic: &'a str, payload: Bytes) -> BrokerFuture<'a> {
        self.publish_wait(topic, payload)
    }

    /// Whether the broker keeps the history of the topics that resumable connections
    /// subscribe to, numbering their messages itself, the same on every node, so that a
    /// client resumes on any node. Such a broker delivers the numbered messages with
    /// [`Sink::deliver_numbered`] and answers [`Broker::locate`]. The default, `false`:
    /// each node numbers and keeps the history of its own topics.
    fn keeps_history(&self) -> bool {
        false
    }

    /// Asks where `topic` stands in the history the broker keeps, and for the messages
    /// `locate` names; the answer goes to [`Sink::located`] for `topic`. Called only where
    /// [`Broker::keeps_history`] says so.
    ///
    /// The contract that makes resumes exact: every call gets one answer, in the order of the
    /// calls for that topic, and **in order with the topic's messages**: the answer covers
    /// every message delivered to the sink before it and none delivered after it. An answer
    /// lost with the broker's link is asked again once the link is back (after the topic's
    /// messages flow again). Must not block, and must not call into the sink.
    fn locate(&self, topic: &str, locate: Locate) {
        let _ = (topic, locate);
    }
}

impl Asker for Arc<dyn Broker> {
    fn subscribe(&self, topic: &str) {
        Broker::subscribe(&**self, topic);
    }

    fn locate(&self, topic: &str, locate: Locate) {
        Broker::locate(&**self, topic, locate);
    }
}

impl presence::Wire for Arc<dyn Broker> {
    fn subscribe(&self, topic: &str) {
        Broker::subscribe(&**self, topic);
    }

    fn unsubscribe(&self, topic: &str) {
        Broker::unsubscribe(&**self, topic);
    }

    fn publish(&self, topic: &str, payload: Bytes) -> bool {
        Broker::publish(&**self, topic, payload).is_ok()
    }

    fn publish_wait<'a>(
        &'a self,
        topic: &'a str,
        payload: Bytes,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(async move { Broker::publish_wait(&**self, topic, payload).await.is_ok() })
    }

    fn publish_confirmed<'a>(
        &'a self,
        topic: &'a str,
        payload: Bytes,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            Broker::publish_confirmed(&**self, topic, payload)
                .await
                .is_ok()
        })
    }
}

/// A broker's answer to [`Broker::locate`]: where the topic stands, and the messages asked for.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Located {
    /// The topic's epoch in the broker; empty when the broker keeps no history of it.
    pub epoch: String,
    /// The offset of its last message (0: none yet).
    pub last: u64,
    /// The messages asked for, by offset, oldest first, as the sink got them.
    pub messages: Vec<(u64, Bytes)>,
}

impl Located {
    /// An answer: the topic's `epoch` (empty: no history kept), its `last` offset, and the
    /// `messages` asked for.
    pub fn new(epoch: impl Into<String>, last: u64, messages: Vec<(u64, Bytes)>) -> Self {
        Located {
            epoch: epoch.into(),
            last,
            messages,
        }
    }
}

/// For the metrics: `None` when the broker took a message, else whether it was unreachable.
fn broker_refused(taken: &Result<(), BrokerError>) -> Option<bool> {
    match taken {
        Ok(()) => None,
        Err(BrokerError::Unreachable(_)) => Some(true),
        Err(BrokerError::Behind(_)) => Some(false),
    }
}

/// Where a [`Broker`] delivers what other nodes published.
#[derive(Clone)]
pub struct Sink {
    hub: Weak<Hub>,
}

impl Sink {
    /// Says that messages from other nodes may have been lost (the broker's link to its
    /// backend dropped): every topic's history starts again under a new epoch, so that a
    /// client resuming on this node is told it was not recovered rather than given a gap.
    ///
    /// Where the broker keeps the topics' history ([`Broker::keeps_history`]), nothing is
    /// lost: each topic asks the broker for what came since its last message instead.
    pub fn lost(&self) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        // (Once no topic is being dropped: each history is told here, or parked and told below.)
        let entries: Vec<Arc<Entry>> = loop {
            let topics = lock(&hub.topics);
            let entries: Vec<Arc<Entry>> = topics.values().filter_map(Weak::upgrade).collect();
            let settled = entries.len() == topics.len();
            // (Unlocked first: the last of these dropped parks its history, under the lock.)
            drop(topics);
            if settled {
                break entries;
            }
            drop(entries);
            std::thread::yield_now();
        };
        for entry in &entries {
            entry.lost();
        }
        hub.presence.relink();
        let Some(broker) = hub.broker.get() else {
            return;
        };
        let mut parked = lock(&hub.parked);
        for (name, parked) in parked.iter_mut() {
            if parked.ring.follow.is_some() {
                let link = Link {
                    topic: name,
                    broker,
                };
                follow::lost(&link, &mut parked.ring, &[]);
            }
        }
        // Parked histories of this node's own are dropped: their topics start afresh when
        // next used.
        parked.retain(|name, parked| {
            let keep = parked.ring.follow.is_some();
            if !keep {
                broker.unsubscribe(name);
            }
            keep
        });
    }

    /// Delivers a message the broker numbered (`offset` under `epoch`) for `topic`, where the
    /// broker keeps the topics' history ([`Broker::keeps_history`]). Payloads that are not
    /// wsock's are dropped.
    pub fn deliver_numbered(&self, topic: &str, epoch: &str, offset: u64, payload: Bytes) {
        let Some((hub, message, origin)) = self.open(topic, payload) else {
            return;
        };
        let at = (epoch, offset);
        let mut message = Some(message);
        let entry = hub.entry_or_parked(topic, |parked| {
            if let Some(parked) = parked.get_mut(topic)
                && parked.ring.follow.is_some()
                && let Some(broker) = hub.broker.get()
                && let Some(message) = message.take()
            {
                let link = Link { topic, broker };
                follow::numbered(&link, &mut parked.ring, &[], at, message, origin);
            }
        });
        if let (Some(entry), Some(message)) = (entry, message) {
            entry.deliver_numbered(at, message, origin);
        }
    }

    /// The broker's answer to [`Broker::locate`] for `topic` (`Err`: it could not answer).
    pub fn located(&self, topic: &str, answer: Result<Located, BrokerError>) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        let Some(broker) = hub.broker.get() else {
            return;
        };
        if let Err(error) = &answer {
            tracing::debug!(topic, %error, "the broker could not say where a topic stands");
        }
        let answer = answer.ok().map(|located| {
            let messages = located
                .messages
                .into_iter()
                .filter_map(|(offset, payload)| {
                    let (node, except, message) = decode_remote(payload)?;
                    Some((offset, message, origin(&hub, node, except)))
                })
                .collect();
            follow::Answer {
                epoch: located.epoch,
                last: located.last,
                messages,
            }
        });
        let link = Link { topic, broker };
        let mut answer = Some(answer);
        let entry = hub.entry_or_parked(topic, |parked| {
            if let Some(parked) = parked.get_mut(topic)
                && parked.ring.follow.is_some()
            {
                follow::located(&link, &mut parked.ring, &[], answer.take().flatten());
            }
        });
        let (Some(entry), Some(answer)) = (entry, answer) else {
            return;
        };
        let mut ring = lock(&entry.ring);
        if let Some(ring) = ring.as_mut()
            && ring.follow.is_some()
        {
            follow::located(&link, ring, &entry.read().slots, answer);
            entry.bound(ring);
        }
    }

    /// The hub, and the message and where it came from, if the payload is wsock's.
    fn open(&self, topic: &str, payload: Bytes) -> Option<(Arc<Hub>, Message, Origin)> {
        let hub = self.hub.upgrade()?;
        let Some((node, except, message)) = decode_remote(payload) else {
            tracing::debug!(topic, "dropping a broker message that is not wsock's");
            return None;
        };
        let origin = origin(&hub, node, except);
        Some((hub, message, origin))
    }

    /// Says that the broker receives `topic`'s messages from now on (optional: a broker that
    /// can tell when a subscription took effect calls it). Presence asks the other nodes who
    /// they have then, so that no answer comes before this node can hear it.
    pub fn subscribed(&self, topic: &str) {
        if let Some(name) = topic.strip_prefix(presence::PREFIX)
            && let Some(hub) = self.hub.upgrade()
        {
            hub.presence.subscribed(name);
        }
    }

    /// The history settings of the server: what a broker that keeps history keeps.
    pub fn history(&self) -> History {
        self.hub
            .upgrade()
            .map_or_else(History::default, |hub| *lock(&hub.history))
    }

    /// Delivers a payload received for `topic` to this node's subscribers. Payloads this node
    /// published itself, and payloads that are not wsock's, are dropped.
    pub fn deliver(&self, topic: &str, payload: Bytes) {
        if topic.starts_with('\u{1}') {
            // Presence between nodes.
            if let Some(hub) = self.hub.upgrade() {
                hub.presence.deliver(topic, &payload);
            }
            return;
        }
        let Some((hub, message, origin)) = self.open(topic, payload) else {
            return;
        };
        // Nobody holds the topic here, but its history is kept: it keeps up.
        let entry = hub.entry_or_parked(topic, |parked| {
            let Some(history) = parked.get_mut(topic) else {
                return;
            };
            if history.ring.follow.is_some() {
                if let Some(broker) = hub.broker.get() {
                    let link = Link { topic, broker };
                    follow::unnumbered(&link, &mut history.ring, &[], &message, origin);
                }
            } else if let Origin::Remote = origin {
                // (This node's own were delivered, and kept, when they were published.)
                history.ring.push(&message);
                if history.ring.over_total() {
                    hub.evict_parked(parked, Some(topic));
                    if let Some(history) = parked.get_mut(topic) {
                        history.ring.shrink_to_total();
                    }
                }
            }
        });
        if let Some(entry) = entry {
            entry.deliver_remote(message, origin);
        }
    }
}

/// Where a message from the broker came from: this node (and the token of the connection it
/// was published except) or another.
fn origin(hub: &Hub, node: [u8; 16], except: u64) -> Origin {
    match node == hub.node {
        true => Origin::Own { except },
        false => Origin::Remote,
    }
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sink")
    }
}

/// The start of every payload: `wsock`, a format version.
const MAGIC: &[u8; 5] = b"wsck2";
const TEXT: u8 = 1;
const BINARY: u8 = 2;
/// What comes before the message: magic, kind, node, token.
const HEAD: usize = MAGIC.len() + 1 + 16 + 8;

/// A message as it crosses the broker: magic, kind, the publishing node, the token of the
/// connection it was published except (0: none; see `follow`), the payload.
fn encode_remote(node: &[u8; 16], except: u64, message: &Message) -> Bytes {
    let (kind, payload) = match message {
        Message::Text(text) => (TEXT, text.as_bytes()),
        Message::Binary(bytes) => (BINARY, &bytes[..]),
    };
    let mut out = BytesMut::with_capacity(HEAD + payload.len());
    out.put_slice(MAGIC);
    out.put_u8(kind);
    out.put_slice(node);
    out.put_u64(except);
    out.put_slice(payload);
    out.freeze()
}

fn decode_remote(mut payload: Bytes) -> Option<([u8; 16], u64, Message)> {
    if payload.len() < HEAD || !payload.starts_with(MAGIC) {
        return None;
    }
    let kind = payload[MAGIC.len()];
    let mut node = [0u8; 16];
    node.copy_from_slice(&payload[MAGIC.len() + 1..MAGIC.len() + 17]);
    let mut token = [0u8; 8];
    token.copy_from_slice(&payload[MAGIC.len() + 17..HEAD]);
    let body = payload.split_off(HEAD);
    let message = match kind {
        TEXT => Message::Text(Text::try_from(body).ok()?),
        BINARY => Message::Binary(body),
        _ => return None,
    };
    Some((node, u64::from_be_bytes(token), message))
}

/// What a publish judged of its value, for `Entry::deliver`.
fn verdicts(judged: &Option<Judged>) -> Verdicts<'_> {
    match judged {
        Some(list) => Verdicts::Local(list),
        None => Verdicts::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(listener: &mut crate::Listener<Text>) -> Vec<String> {
        std::iter::from_fn(|| listener.try_recv())
            .map(|text| text.unwrap().as_str().to_owned())
            .collect()
    }

    /// Latest-only per key: what waits is replaced by the newest of its key, counted; the
    /// keys keep the order they first came in.
    #[test]
    fn latest_keeps_the_newest_per_key_and_counts_what_it_replaced() {
        let topics = Topics::default();
        let topic = topics.topic::<Text>("t");
        let mut listener = topic.listen();
        let by_sensor = |text: &Text| text.as_str()[..1].to_owned();
        topic.subscribe_with(&listener, Delivery::latest().by_key(by_sensor));
        for text in ["a1", "b1", "a2", "a3", "b2"] {
            topic.publish(Text::from(text)).unwrap();
        }
        assert_eq!(drained(&mut listener), ["a3", "b2"]);
        topic.publish(Text::from("a4")).unwrap();
        assert_eq!(drained(&mut listener), ["a4"]);
        assert_eq!(topic.delivery_counts().replaced, 3);
        // What waits is bounded, whatever the keys: past 1,024, the oldest key's goes.
        let by_number = |text: &Text| text.as_str().to_owned();
        topic.subscribe_with(&listener, Delivery::latest().by_key(by_number));
        for n in 0..crate::delivery::MAX_KEYS + 5 {
            topic.publish(Text::from(format!("{n:05}"))).unwrap();
        }
        let got = drained(&mut listener);
        assert_eq!(got.len(), crate::delivery::MAX_KEYS);
        assert_eq!(got[0], "00005");
        assert_eq!(topic.delivery_counts().dropped, 5);
    }

    /// Droppable: what finds the queue full is skipped and counted, and the subscriber is not
    /// dropped from the topic (a plain one would be); a filter counts what it kept out.
    #[test]
    fn droppable_skips_what_finds_the_queue_full_and_filters_count() {
        let topics = Topics::default();
        let topic = topics.topic::<Text>("t");
        let mut droppable = topic.listen_with_capacity(2);
        topic.subscribe_with(&droppable, Delivery::droppable());
        let mut odd = topic.listen();
        let is_odd = |text: &Text| text.as_str().parse::<u32>().is_ok_and(|n| n % 2 == 1);
        topic.subscribe_with(&odd, Delivery::every().filter(is_odd));
        for n in 0..5 {
            topic.publish(Text::from(n.to_string())).unwrap();
        }
        assert_eq!(drained(&mut droppable), ["0", "1"]);
        assert_eq!(drained(&mut odd), ["1", "3"]);
        topic.publish(Text::from("5")).unwrap();
        assert_eq!(drained(&mut droppable), ["5"]);
        let counts = topic.delivery_counts();
        assert_eq!(
            (counts.dropped, counts.filtered, counts.replaced),
            (3, 3, 0)
        );
        assert_eq!(topic.subscribers(), 2);
    }

    /// A broker that keeps history and counts the questions asked of it.
    #[derive(Default)]
    struct Asked(AtomicUsize);

    impl Broker for Asked {
        fn start(&self, _: Sink) {}
        fn subscribe(&self, _: &str) {}
        fn unsubscribe(&self, _: &str) {}
        fn publish(&self, _: &str, _: Bytes) -> Result<(), BrokerError> {
            Ok(())
        }
        fn keeps_history(&self) -> bool {
            true
        }
        fn locate(&self, _: &str, _: Locate) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Topics dropped by their last holder (and taken again) while the broker delivers: every
    /// numbered message reaches the history, held or parked; none falls between the drop and
    /// the parking (which the next one would show as a gap, and a question to the broker).
    #[test]
    fn a_topic_being_dropped_loses_no_message_from_the_broker() {
        let topics = Topics::default();
        let broker = Arc::new(Asked::default());
        topics.set_broker(Arc::clone(&broker) as Arc<dyn Broker>);
        let sink = Sink {
            hub: Arc::downgrade(&topics.hub),
        };
        // A history that follows the broker, at offset 0 of the epoch `e`, parked.
        let mut ring = Ring::following("t", History::default(), &topics.hub.history_bytes);
        ring.reset("e", 0);
        ring.follow.as_mut().unwrap().state = crate::history::FollowState::Known;
        let parked = Parked {
            since: tokio::time::Instant::now(),
            message_type: None,
            ring,
        };
        lock(&topics.hub.parked).insert("t".to_owned(), parked);
        let done = Arc::new(AtomicBool::new(false));
        let churn = {
            let (topics, done) = (topics.clone(), Arc::clone(&done));
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    drop(topics.topic::<Text>("t"));
                }
            })
        };
        let node = [9u8; 16];
        let count = 100_000;
        for offset in 1..=count {
            let payload = encode_remote(&node, 0, &Message::text(offset.to_string()));
            sink.deliver_numbered("t", "e", offset, payload);
        }
        done.store(true, Ordering::Relaxed);
        churn.join().unwrap();
        let parked = lock(&topics.hub.parked);
        let ring = &parked.get("t").expect("the history, parked, not lost").ring;
        let follow = ring.follow.as_ref().unwrap();
        assert_eq!(follow.state, crate::history::FollowState::Known);
        assert_eq!(ring.last(), count);
        assert_eq!(broker.0.load(Ordering::SeqCst), 0, "questions asked: a gap");
    }

    #[test]
    fn remote_payloads_round_trip_and_foreign_ones_are_refused() {
        let node = [7u8; 16];
        for message in [Message::text("héllo"), Message::binary(vec![0u8, 255])] {
            let payload = encode_remote(&node, 42, &message);
            assert_eq!(decode_remote(payload), Some((node, 42, message)));
        }
        assert_eq!(decode_remote(Bytes::from_static(b"hello")), None);
        let mut bad_utf8 = encode_remote(&node, 0, &Message::text("x")).to_vec();
        *bad_utf8.last_mut().unwrap() = 0xff;
        assert_eq!(decode_remote(bad_utf8.into()), None);
    }
}
