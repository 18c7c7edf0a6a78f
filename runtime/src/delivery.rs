//! Delivery modes: how one subscription takes its topic's messages. Every message (the
//! default, and what a subscription without a mode gets: the topic's plain loop), the newest
//! only (per key), droppable, at most N a second, paused; and a filter on the typed value.
//!
//! A subscription with a mode has a `Sub` beside its slot in the topic. The topic's publish
//! judges the typed value once per such subscriber (filter, key) before the value is encoded,
//! and hands the one encoded copy to those that take it: encode-once holds. A latest-only
//! subscription keeps the newest copies in its `Newest` and queues a marker that the
//! connection's driver resolves when it frames it, so what a backed-up connection finally
//! writes is what was published last, never a backlog.

use std::any::Any;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::codec::{Conflated, Outgoing, Published};
use crate::mailbox::Mailbox;
use crate::message::{FromMessage, Message};

/// How a subscription takes its topic's messages: give it to
/// [`Topic::subscribe_with`](crate::Topic::subscribe_with). Built from a mode, then
/// optionally a [`key`](Delivery::by_key), a [`filter`](Delivery::filter), and
/// [`paused`](Delivery::paused).
///
/// | mode | a connection that does not keep up | memory while it is stalled |
/// |---|---|---|
/// | [`every`](Delivery::every) (default) | gets every message; closed with 1008 once 1,024 wait | up to 1,024 messages |
/// | [`latest`](Delivery::latest) | gets the newest message (per key) when it reads again; never closed for it | one message per key |
/// | [`droppable`](Delivery::droppable) | a message that finds its queue full is skipped and counted; never closed for it | up to 1,024 messages |
/// | [`at_most(n)`](Delivery::at_most) | at most `n` a second, each the newest (per key); never closed for it | one message per key |
///
/// ```
/// use wsock::Delivery;
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct Sample { sensor: String, value: f64 }
/// // The newest sample of each sensor, at most 5 a second, only sensors that start with "cpu".
/// let delivery = Delivery::<wsock::Json<Sample>>::at_most(5)
///     .by_key(|sample| sample.0.sensor.clone())
///     .filter(|sample| sample.0.sensor.starts_with("cpu"));
/// ```
pub struct Delivery<T> {
    pub(crate) mode: Mode,
    pub(crate) paused: bool,
    key: Option<KeyFn<T>>,
    filter: Option<FilterFn<T>>,
    decode: Option<fn(Message) -> Option<T>>,
}

type KeyFn<T> = Box<dyn Fn(&T) -> u64 + Send + Sync>;
type FilterFn<T> = Box<dyn Fn(&T) -> bool + Send + Sync>;

/// Each typed subscription (by slot) and what it made of a value: its key, or `None` when
/// its filter said no.
pub(crate) type Judged = Vec<(usize, Arc<Sub>, Option<u64>)>;

/// A subscription's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Every,
    Latest,
    Droppable,
    /// At most one delivery per this interval, of the newest.
    AtMost(Duration),
}

impl<T> Default for Delivery<T> {
    fn default() -> Self {
        Delivery::every()
    }
}

impl<T> fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("mode", &self.mode)
            .field("paused", &self.paused)
            .field("keyed", &self.key.is_some())
            .field("filtered", &self.filter.is_some())
            .finish()
    }
}

impl<T> Delivery<T> {
    fn mode(mode: Mode) -> Self {
        Delivery {
            mode,
            paused: false,
            key: None,
            filter: None,
            decode: None,
        }
    }

    /// Every message, in order (what [`Topic::subscribe`](crate::Topic::subscribe) does): a
    /// connection that lets 1,024 wait is closed with 1008.
    pub fn every() -> Self {
        Delivery::mode(Mode::Every)
    }

    /// The newest message only: while the connection is backed up (the client reads slower
    /// than the topic publishes), a newer message replaces the one waiting (per key, with
    /// [`by_key`](Delivery::by_key)), so a slow client always reads fresh data and is never
    /// closed for being slow. Each replaced message is counted.
    pub fn latest() -> Self {
        Delivery::mode(Mode::Latest)
    }

    /// Every message the connection's queue has room for: one that finds the queue full is
    /// skipped and counted, and the connection is never closed for being slow.
    pub fn droppable() -> Self {
        Delivery::mode(Mode::Droppable)
    }

    /// At most `per_second` messages a second, each the newest when it is sent (per key,
    /// with [`by_key`](Delivery::by_key)); what came between is replaced, and counted. As
    /// [`latest`](Delivery::latest), never closed for being slow. `0` counts as 1.
    pub fn at_most(per_second: u32) -> Self {
        let per_second = per_second.max(1);
        Delivery::mode(Mode::AtMost(Duration::from_secs(1) / per_second))
    }

    /// Starts paused: nothing is delivered until [`Topic::unpause`](crate::Topic::unpause).
    pub fn paused(mut self) -> Self {
        self.paused = true;
        self
    }
}

impl<T: FromMessage> Delivery<T> {
    /// For [`latest`](Delivery::latest) and [`at_most`](Delivery::at_most): the newest message
    /// is kept per `key` of the value (the latest sample of each sensor), rather than one for
    /// all. Keys are compared by their hash (64 bits). At most 1,024 keys wait at once: past
    /// that, the oldest key's message is dropped (and counted). Ignored by the other modes.
    ///
    /// Evaluated once per subscriber and message; a message from another node is decoded
    /// once for all the topic's keyed or filtered subscribers (hence `T: FromMessage`).
    pub fn by_key<K: Hash>(mut self, key: impl Fn(&T) -> K + Send + Sync + 'static) -> Self {
        self.key = Some(Box::new(move |value| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            key(value).hash(&mut hasher);
            hasher.finish()
        }));
        self.decode = Some(decode::<T>);
        self
    }

    /// Delivers only the messages whose value `keep` says `true` of; the others are
    /// counted as filtered. Evaluated once per subscriber and message, at publish time,
    /// before the value is encoded (which still happens once for all): its cost is that of
    /// `keep`, times the topic's filtered subscribers. A message from another node is
    /// decoded once for all the topic's keyed or filtered subscribers (a message that does
    /// not decode is filtered out). `keep` runs while the topic's subscribers are read: it
    /// must not subscribe to or leave that same topic.
    pub fn filter(mut self, keep: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Box::new(keep));
        self.decode = Some(decode::<T>);
        self
    }
}

fn decode<T: FromMessage>(message: Message) -> Option<T> {
    T::from_message(message).ok()
}

/// A subscription's filter and key on the typed value, its type erased for the topic.
pub(crate) trait Typed: Send + Sync {
    /// A message from another node, decoded for `judge`.
    fn decode(&self, message: &Message) -> Option<Box<dyn Any>>;
    /// `None`: filtered out; `Some(key)` otherwise (0 when not keyed).
    fn judge(&self, value: &dyn Any) -> Option<u64>;
}

struct TypedFns<T> {
    key: Option<KeyFn<T>>,
    filter: Option<FilterFn<T>>,
    decode: fn(Message) -> Option<T>,
}

impl<T: 'static> Typed for TypedFns<T> {
    fn decode(&self, message: &Message) -> Option<Box<dyn Any>> {
        let value = (self.decode)(message.clone())?;
        Some(Box::new(value))
    }

    fn judge(&self, value: &dyn Any) -> Option<u64> {
        let value = value.downcast_ref::<T>()?;
        if let Some(filter) = &self.filter
            && !filter(value)
        {
            return None;
        }
        Some(self.key.as_ref().map_or(0, |key| key(value)))
    }
}

/// Counts of what a topic's delivery modes did not deliver as published, since the topic was
/// taken: from [`Topic::delivery_counts`](crate::Topic::delivery_counts) and
/// [`Topics::delivery_counts`](crate::Topics::delivery_counts). Each counts subscriber
/// messages (a message filtered out for 3 subscribers counts 3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryCounts {
    /// Replaced by a newer one before it was sent (latest-only and at-most-N subscriptions).
    pub replaced: u64,
    /// Skipped because the connection's queue was full (droppable subscriptions).
    pub dropped: u64,
    /// Not for the subscriber: its filter said no, or it was paused (a paused latest-only
    /// or at-most-N subscription keeps its newest instead, and counts what it replaces).
    pub filtered: u64,
}

/// A topic's counters, bumped by publishes (relaxed atomics).
#[derive(Default)]
pub(crate) struct Counters {
    replaced: AtomicU64,
    dropped: AtomicU64,
    filtered: AtomicU64,
}

impl Counters {
    pub(crate) fn read(&self) -> DeliveryCounts {
        DeliveryCounts {
            replaced: self.replaced.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            filtered: self.filtered.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn filtered(&self) {
        self.filtered.fetch_add(1, Ordering::Relaxed);
        crate::stats::skipped("filtered");
    }

    fn replaced(&self) {
        self.replaced.fetch_add(1, Ordering::Relaxed);
        crate::stats::skipped("replaced");
    }

    fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        crate::stats::skipped("dropped");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A subscription with a mode, beside its slot in the topic.
pub(crate) struct Sub {
    mode: Mode,
    paused: AtomicBool,
    pub(crate) typed: Option<Box<dyn Typed>>,
    /// For latest-only and at-most-N: the newest messages waiting.
    newest: Option<Arc<Newest>>,
}

impl Sub {
    /// The state of `delivery` for the connection `mailbox`.
    pub(crate) fn new<T: 'static>(delivery: Delivery<T>, mailbox: &Arc<Mailbox>) -> Self {
        let typed = delivery.decode.map(|decode| {
            Box::new(TypedFns {
                key: delivery.key,
                filter: delivery.filter,
                decode,
            }) as Box<dyn Typed>
        });
        let every = match delivery.mode {
            Mode::Latest => Some(None),
            Mode::AtMost(interval) => Some(Some(interval)),
            Mode::Every | Mode::Droppable => None,
        };
        let newest = every.map(|interval| {
            Arc::new(Newest {
                state: Mutex::new(State {
                    values: Vec::new(),
                    queued: false,
                    timer: false,
                    next: None,
                    paused: delivery.paused,
                }),
                mailbox: Arc::downgrade(mailbox),
                interval,
                runtime: tokio::runtime::Handle::try_current().ok(),
            })
        });
        Sub {
            mode: delivery.mode,
            paused: AtomicBool::new(delivery.paused),
            typed,
            newest,
        }
    }

    /// Plain, paused: what pausing a subscription without a mode makes of it.
    pub(crate) fn paused_every() -> Self {
        Sub {
            mode: Mode::Every,
            paused: AtomicBool::new(true),
            typed: None,
            newest: None,
        }
    }

    /// Pauses or resumes. A latest-only or at-most-N subscription resumed gets the newest
    /// message published while it was paused at once.
    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
        if let Some(newest) = &self.newest {
            let mut state = lock(&newest.state);
            state.paused = paused;
            if !paused && !state.values.is_empty() && !state.queued && !state.timer {
                newest.schedule(state);
            }
        }
    }

    /// Hands `published` (with its key) to this subscription's connection, as its mode says.
    #[inline]
    pub(crate) fn offer(
        &self,
        mailbox: &Mailbox,
        published: &Arc<Published>,
        key: u64,
        counters: &Counters,
    ) {
        if let Some(newest) = &self.newest {
            newest.offer(published, key, counters);
            return;
        }
        if self.paused.load(Ordering::Relaxed) {
            counters.filtered();
            return;
        }
        let outgoing = Outgoing::Published(Arc::clone(published));
        match self.mode {
            Mode::Droppable => {
                if !mailbox.try_push(outgoing) {
                    counters.dropped();
                }
            }
            _ => mailbox.push(outgoing),
        }
    }
}

/// The most keys a latest-only (or at-most-N) subscription holds a message for at once.
pub(crate) const MAX_KEYS: usize = 1024;

/// The newest messages of a latest-only (or at-most-N) subscription, waiting to be framed.
pub(crate) struct Newest {
    state: Mutex<State>,
    mailbox: Weak<Mailbox>,
    /// At most one marker queued per interval (at-most-N); `None` for latest-only.
    interval: Option<Duration>,
    /// Where the timer of an at-most-N subscription runs (the subscriber's runtime). Without
    /// one, what waits goes with the next publish that finds the interval passed.
    runtime: Option<tokio::runtime::Handle>,
}

struct State {
    /// The newest message per key, in the order the keys first came.
    values: Vec<(u64, Arc<Published>)>,
    /// A marker is in the connection's queue: what is published meanwhile only replaces.
    queued: bool,
    /// A timer will queue the marker once the interval passed.
    timer: bool,
    /// When the next marker may be queued (at-most-N).
    next: Option<Instant>,
    paused: bool,
}

impl Newest {
    fn offer(self: &Arc<Self>, published: &Arc<Published>, key: u64, counters: &Counters) {
        let mut state = lock(&self.state);
        match state.values.iter_mut().find(|(k, _)| *k == key) {
            Some(waiting) => {
                waiting.1 = Arc::clone(published);
                counters.replaced();
            }
            None => {
                // A bound on what one subscription holds, whatever its keys: past it, the
                // oldest key's message goes (counted as dropped).
                if state.values.len() >= MAX_KEYS {
                    state.values.remove(0);
                    counters.dropped();
                }
                state.values.push((key, Arc::clone(published)));
            }
        }
        if state.queued || state.timer || state.paused {
            return;
        }
        self.schedule(state);
    }

    /// Queues the marker now, or (at-most-N, within the interval) arms the timer that will.
    fn schedule(self: &Arc<Self>, mut state: MutexGuard<'_, State>) {
        let Some(interval) = self.interval else {
            state.queued = true;
            drop(state);
            self.queue();
            return;
        };
        let now = Instant::now();
        match state.next {
            Some(next) if next > now => {
                let Some(runtime) = &self.runtime else {
                    return;
                };
                state.timer = true;
                drop(state);
                let newest = Arc::downgrade(self);
                runtime.spawn(async move {
                    tokio::time::sleep_until(next.into()).await;
                    if let Some(newest) = newest.upgrade() {
                        newest.fire();
                    }
                });
            }
            _ => {
                state.next = Some(now + interval);
                state.queued = true;
                drop(state);
                self.queue();
            }
        }
    }

    /// The at-most-N timer: the interval passed, the newest goes.
    fn fire(self: &Arc<Self>) {
        let mut state = lock(&self.state);
        state.timer = false;
        if state.values.is_empty() || state.paused || state.queued {
            return;
        }
        self.schedule(state);
    }

    fn queue(self: &Arc<Self>) {
        if let Some(mailbox) = self.mailbox.upgrade() {
            mailbox.push_newest(Outgoing::Newest(Arc::clone(self) as Arc<dyn Conflated>));
        }
    }
}

impl Conflated for Newest {
    fn take(&self, into: &mut Vec<Arc<Published>>) {
        let mut state = lock(&self.state);
        state.queued = false;
        into.extend(state.values.drain(..).map(|(_, published)| published));
    }
}

/// What a publish knows of its value for the topic's typed subscribers.
pub(crate) enum Verdicts<'a> {
    /// Nobody judges (no typed subscriber when the publish looked).
    None,
    /// Published here: each typed subscriber's verdict, judged before encoding, in slot order.
    Local(&'a [(usize, Arc<Sub>, Option<u64>)]),
    /// From another node: decoded once, on first need.
    Remote,
}

/// Judges a publish for its typed subscribers, one after the other in slot order.
pub(crate) struct Judge<'a> {
    verdicts: Verdicts<'a>,
    /// Where `Local`'s list is at.
    cursor: usize,
    /// A message from another node, decoded on first need (`Some(None)`: it did not decode).
    decoded: Option<Option<Box<dyn Any>>>,
}

impl<'a> Judge<'a> {
    pub(crate) fn new(verdicts: Verdicts<'a>) -> Self {
        Judge {
            verdicts,
            cursor: 0,
            decoded: None,
        }
    }

    /// The key `sub` (in `slot`) takes `message` under, or `None` if it does not take it.
    pub(crate) fn key(&mut self, slot: usize, sub: &Arc<Sub>, message: &Message) -> Option<u64> {
        let Some(typed) = &sub.typed else {
            return Some(0);
        };
        match self.verdicts {
            Verdicts::Local(list) => {
                while let Some((at, judged, verdict)) = list.get(self.cursor) {
                    if *at > slot {
                        break;
                    }
                    self.cursor += 1;
                    if *at == slot && Arc::ptr_eq(judged, sub) {
                        return *verdict;
                    }
                }
                // Subscribed while the value was judged: this message is not for it.
                None
            }
            Verdicts::Remote | Verdicts::None => {
                let decoded = self.decoded.get_or_insert_with(|| typed.decode(message));
                typed.judge(&**decoded.as_ref()?)
            }
        }
    }
}
