//! Topic history, for connections that resume: each message a topic delivers gets an offset
//! (1, 2, 3, .. in delivery order) under the topic's epoch, and the last ones are kept, so a
//! client that reconnects and says where it was gets what it missed (see `Topic::subscribe`).
//!
//! On the wire (docs/protocol.md's "Resume" documents it for clients in any language), a resumable
//! connection's topic messages carry a header between two `0x1E` bytes (ASCII record
//! separator: no JSON text starts with it), and subscribing sends a notice of the same shape
//! with nothing after it. Plain connections get the plain message.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::codec::{Outgoing, Published};
use crate::mailbox::Mailbox;
use crate::message::{Message, Text};

/// How much history a topic keeps for connections that resume (endpoints with
/// `resume = true`), and how much one resume may replay:
/// [`Server::history`](crate::Server::history).
///
/// A topic keeps history once a resumable connection subscribed to it, and keeps it for
/// `max_age` after its last subscriber left; other topics keep nothing.
///
/// ```
/// use std::time::Duration;
/// use wsock::History;
///
/// // 256 messages, 5 minutes and 1 MiB per topic, replays of 256, 64 MiB in all
/// let history = History::default()
///     .messages(1000)
///     .max_age(Duration::from_secs(60))
///     .max_replay(500);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct History {
    messages: usize,
    max_age: Duration,
    max_bytes: usize,
    max_replay: usize,
    max_total_bytes: usize,
}

impl Default for History {
    fn default() -> Self {
        History {
            messages: 256,
            max_age: Duration::from_secs(300),
            max_bytes: 1 << 20,
            max_replay: 256,
            max_total_bytes: 64 << 20,
        }
    }
}

impl History {
    /// The most messages a topic keeps (at least 1). Default 256.
    #[must_use]
    pub fn messages(mut self, messages: usize) -> Self {
        self.messages = messages.max(1);
        self
    }

    /// How long a message is kept, and how long a topic's history outlives its last
    /// subscriber. Default 5 minutes.
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The most bytes a topic's history takes: its messages as sent (with their headers) and
    /// about 350 bytes of bookkeeping each (the newest message is always kept). Default 1 MiB.
    #[must_use]
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The most messages one resume replays; a client that missed more is told it was not
    /// recovered. A replay is queued like any message, so it is also capped below the
    /// connection's queue (`Server::queue_capacity`). Default 256.
    #[must_use]
    pub fn max_replay(mut self, max_replay: usize) -> Self {
        self.max_replay = max_replay;
        self
    }

    /// The most bytes all of a server's histories take together, counted as `max_bytes`
    /// counts. Past it, the histories of topics nobody holds go first, the oldest first (their
    /// clients are told they were not recovered); then the topic that grows keeps less.
    /// Default 64 MiB.
    #[must_use]
    pub fn max_total_bytes(mut self, max_total_bytes: usize) -> Self {
        self.max_total_bytes = max_total_bytes;
        self
    }

    /// `max_total_bytes`.
    pub(crate) fn total_bytes(&self) -> usize {
        self.max_total_bytes
    }

    /// The most messages a topic keeps ([`History::messages`]): what a broker that keeps
    /// history keeps of each topic.
    pub fn message_limit(&self) -> usize {
        self.messages
    }

    /// How long a message is kept ([`History::max_age`]).
    pub fn age_limit(&self) -> Duration {
        self.max_age
    }

    /// The most messages one resume replays ([`History::max_replay`]).
    pub fn replay_limit(&self) -> usize {
        self.max_replay
    }

    /// The most bytes a topic's history takes ([`History::max_bytes`]): a broker that keeps
    /// history sends at most about this much for one resume.
    pub fn byte_limit(&self) -> usize {
        self.max_bytes
    }
}

/// What [`Topic::subscribe`](crate::Topic::subscribe) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Subscribed {
    /// Live messages from now on: the client gave no position for this topic (or the endpoint
    /// does not resume).
    Live,
    /// What the client missed, `replayed` messages, is queued ahead of the live ones.
    Recovered {
        /// How many messages were replayed (0 when it missed nothing).
        replayed: usize,
    },
    /// The client asked to resume but the gap cannot be filled: it was told so, and gets the
    /// live messages from now on. Send it what it needs afresh (a snapshot).
    NotRecovered(NotRecovered),
}

/// Why a resume could not fill a client's gap in a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotRecovered {
    /// The client's epoch is not the topic's: the history it knew was lost since (a restart,
    /// a history that expired), or it resumed on another node.
    Epoch,
    /// Part of what it missed is no longer kept (past the history's length, age or size).
    Behind,
    /// It missed more than one replay carries (`History::max_replay`).
    Cap,
    /// Its position is past the topic's last message: not one this topic gave.
    Ahead,
    /// The history could not be read: the broker that keeps it (Redis) did not answer in time.
    Unavailable,
}

impl NotRecovered {
    /// The reason as the `subscribed` notice gives it.
    fn code(self) -> &'static str {
        match self {
            NotRecovered::Epoch => "epoch",
            NotRecovered::Behind => "behind",
            NotRecovered::Cap => "cap",
            NotRecovered::Ahead => "ahead",
            NotRecovered::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for NotRecovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotRecovered::Epoch => "the topic's history is not the one the client knew",
            NotRecovered::Behind => "what the client missed is no longer kept",
            NotRecovered::Cap => "the client missed more than one replay carries",
            NotRecovered::Ahead => "the client's position is past the topic's last message",
            NotRecovered::Unavailable => "the topic's history could not be read in time",
        })
    }
}

/// What [`Broker::locate`](crate::Broker::locate) asks about a topic.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Locate {
    /// A client's position, `(epoch, offset)`: the messages after it are wanted if the topic's
    /// history is still under that epoch and holds them all, up to the history's replay and
    /// byte limits (past them, none are).
    pub after: Option<(String, u64)>,
    /// Start keeping the topic's history if the broker keeps none of it (otherwise the
    /// answer says so with an empty epoch).
    pub create: bool,
    /// With `create`: a message reached this node outside the history while it was under
    /// this epoch, so the history cannot be trusted; if it is still under it, it starts again
    /// under a new epoch.
    pub replace: Option<String>,
    /// The server's history settings: how much to keep, for how long, and what a replay may
    /// carry.
    pub history: History,
}

/// For a topic whose history the broker keeps, how its ring follows the broker's numbering
/// (the logic is `follow`'s).
pub(crate) struct Follow {
    pub(crate) state: FollowState,
    /// Sent to the broker, answered in this order.
    pub(crate) requests: VecDeque<Request>,
    /// The connections messages published here were published except, by token, oldest
    /// first, until their numbered copies come back.
    pub(crate) excepts: VecDeque<(u64, Weak<Mailbox>)>,
    pub(crate) next_token: u64,
    /// While refilling: the numbered messages that came meanwhile, oldest first (at most the
    /// history's length). The answer brings them too; they are what goes on when it cannot.
    pub(crate) held: VecDeque<Held>,
}

/// A numbered message held while refilling.
pub(crate) struct Held {
    pub(crate) epoch: String,
    pub(crate) offset: u64,
    pub(crate) message: Message,
    /// Published on this node, except the connection with this token (0: none); `None`:
    /// published on another node.
    pub(crate) own: Option<u64>,
}

impl Default for Follow {
    fn default() -> Self {
        Follow {
            state: FollowState::Unknown { absent: false },
            requests: VecDeque::new(),
            excepts: VecDeque::new(),
            next_token: 0,
            held: VecDeque::new(),
        }
    }
}

/// Where a following ring stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FollowState {
    /// Where the topic stands is not known here yet. `absent`: the broker said it keeps no
    /// history of it.
    Unknown { absent: bool },
    /// Following: the ring's epoch and last offset are the broker's.
    Known,
    /// The link to the broker dropped, or a message came past the next offset, so messages
    /// were (or may have been) missed: asked for them. What comes meanwhile is in the answer.
    Refilling,
}

/// A question to the broker, and the resuming clients' handshakes that wait for its answer.
pub(crate) struct Request {
    pub(crate) kind: Kind,
    pub(crate) told: Vec<oneshot::Sender<()>>,
}

pub(crate) enum Kind {
    /// What a resuming client missed after `after` in `epoch`.
    Prefetch { epoch: String, after: u64 },
    /// Where the topic stands (the broker starts keeping its history if it kept none).
    Position,
    /// What came after the ring's last message.
    Refill,
}

impl From<Kind> for Request {
    fn from(kind: Kind) -> Self {
        Request {
            kind,
            told: Vec::new(),
        }
    }
}

/// The bytes all of a server's histories take, shared by their rings.
pub(crate) type Total = Arc<AtomicUsize>;

/// What a kept message takes beside its bytes: its entry, and the shared message with its
/// slots for compressed forms.
const BOOKKEEPING: usize = std::mem::size_of::<Kept>() + std::mem::size_of::<Published>() + 16;

/// A topic's numbering and its kept messages.
pub(crate) struct Ring {
    /// The topic's name as a JSON string, for the headers (made once).
    topic: String,
    /// Changes whenever the history is lost: a new ring has a new one.
    epoch: String,
    /// The offset of the last message (0: none yet).
    last: u64,
    /// The kept messages, oldest first, with consecutive offsets ending at `last`.
    kept: VecDeque<Kept>,
    /// What they take, counted as `History::max_bytes` says.
    bytes: usize,
    /// What every history of the server takes, this one's `bytes` included.
    total: Total,
    settings: History,
    /// For a topic whose history the broker keeps: how this node follows the broker's
    /// numbering. `None` where this node numbers the messages itself.
    pub(crate) follow: Option<Box<Follow>>,
}

struct Kept {
    at: Instant,
    size: usize,
    /// As resumable connections get it: enveloped.
    published: Arc<Published>,
}

impl Ring {
    /// The history of `topic`, under a fresh epoch.
    pub(crate) fn new(topic: &str, settings: History, total: &Total) -> Self {
        Ring {
            topic: serde_json::to_string(topic).expect("a string serializes"),
            epoch: format!("{:016x}", unique_u64(0)),
            last: 0,
            kept: VecDeque::new(),
            bytes: 0,
            total: Arc::clone(total),
            settings,
            follow: None,
        }
    }

    /// The history of `topic` as the broker keeps it: its epoch and offsets are the broker's,
    /// unknown until the broker says them (`Follow`).
    pub(crate) fn following(topic: &str, settings: History, total: &Total) -> Self {
        let mut ring = Ring::new(topic, settings, total);
        ring.epoch.clear();
        ring.follow = Some(Box::default());
        ring
    }

    /// Forgets every kept message: the history goes on from `last` under `epoch`.
    pub(crate) fn reset(&mut self, epoch: &str, last: u64) {
        while !self.kept.is_empty() {
            self.pop();
        }
        epoch.clone_into(&mut self.epoch);
        self.last = last;
    }

    /// Keeps `message`, the one before the oldest kept (offset `first() - 1`), if the
    /// history has room for it: what a broker's answer brings from before this node followed.
    /// Returns whether it was kept.
    pub(crate) fn prepend(&mut self, message: &Message) -> bool {
        let offset = self.first() - 1;
        if offset == 0 || self.kept.len() >= self.settings.messages {
            return false;
        }
        let published = Arc::new(Published::new(self.envelope_at(message, offset)));
        let size = payload(&published.message).len() + BOOKKEEPING;
        if self.bytes + size > self.settings.max_bytes {
            return false;
        }
        self.kept.push_front(Kept {
            at: Instant::now(),
            size,
            published,
        });
        self.bytes += size;
        self.total.fetch_add(size, Ordering::Relaxed);
        true
    }

    /// The offset of the oldest kept message (`last + 1` when none is kept).
    pub(crate) fn first(&self) -> u64 {
        self.last + 1 - self.kept.len() as u64
    }

    /// The offset of the last message (0: none yet).
    pub(crate) fn last(&self) -> u64 {
        self.last
    }

    pub(crate) fn epoch(&self) -> &str {
        &self.epoch
    }

    pub(crate) fn settings(&self) -> History {
        self.settings
    }

    /// Numbers `message`, keeps it, and returns it as resumable connections get it: with its
    /// header, made once for all of them.
    pub(crate) fn push(&mut self, message: &Message) -> Arc<Published> {
        self.last += 1;
        let published = Arc::new(Published::new(self.envelope(message)));
        let size = payload(&published.message).len() + BOOKKEEPING;
        let now = Instant::now();
        self.kept.push_back(Kept {
            at: now,
            size,
            published: Arc::clone(&published),
        });
        self.bytes += size;
        self.total.fetch_add(size, Ordering::Relaxed);
        while self.kept.len() > self.settings.messages
            || (self.bytes > self.settings.max_bytes && self.kept.len() > 1)
        {
            self.pop();
        }
        self.expire(now);
        published
    }

    fn pop(&mut self) {
        if let Some(kept) = self.kept.pop_front() {
            self.bytes -= kept.size;
            self.total.fetch_sub(kept.size, Ordering::Relaxed);
        }
    }

    /// All the server's histories take more than `History::max_total_bytes`.
    pub(crate) fn over_total(&self) -> bool {
        self.total.load(Ordering::Relaxed) > self.settings.max_total_bytes
    }

    /// Keeps less (the newest message, at least) while all the histories take too much.
    pub(crate) fn shrink_to_total(&mut self) {
        while self.kept.len() > 1 && self.over_total() {
            self.pop();
        }
    }

    /// Forgets the messages older than the history's age.
    fn expire(&mut self, now: Instant) {
        while self
            .kept
            .front()
            .is_some_and(|kept| now.saturating_duration_since(kept.at) > self.settings.max_age)
        {
            self.pop();
        }
    }

    /// The messages after `offset` for a client that knew `epoch`, to replay at most
    /// `queue_room` of them (and `max_replay`); or why not.
    pub(crate) fn since(
        &mut self,
        epoch: &str,
        offset: u64,
        queue_room: usize,
    ) -> Result<Vec<Arc<Published>>, NotRecovered> {
        if epoch != self.epoch {
            return Err(NotRecovered::Epoch);
        }
        if offset > self.last {
            return Err(NotRecovered::Ahead);
        }
        self.expire(Instant::now());
        let missed = self.last - offset;
        if missed > 0 && offset + 1 < self.first() {
            return Err(NotRecovered::Behind);
        }
        if missed > self.settings.max_replay.min(queue_room) as u64 {
            return Err(NotRecovered::Cap);
        }
        let skip = self.kept.len() - missed as usize;
        Ok(self
            .kept
            .iter()
            .skip(skip)
            .map(|kept| Arc::clone(&kept.published))
            .collect())
    }

    /// Subscribes a resumable connection that was at `position` (if it said): queues the
    /// notice of where the topic stands, then what it missed if it can be replayed.
    pub(crate) fn resume(
        &mut self,
        mailbox: &Mailbox,
        position: Option<(&str, u64)>,
    ) -> Subscribed {
        let (subscribed, replay) = match position {
            None => (Subscribed::Live, Vec::new()),
            Some((epoch, offset)) => match self.since(epoch, offset, mailbox.replay_room()) {
                Ok(replay) => (
                    Subscribed::Recovered {
                        replayed: replay.len(),
                    },
                    replay,
                ),
                Err(why) => (Subscribed::NotRecovered(why), Vec::new()),
            },
        };
        mailbox.push(Outgoing::Message(self.notice(subscribed)));
        for published in replay {
            mailbox.push(Outgoing::Published(published));
        }
        subscribed
    }

    /// Whether the history expired: its newest message is older than the history's age (or
    /// it has none, and `since` is older than that).
    pub(crate) fn expired(&self, since: Instant, now: Instant) -> bool {
        let newest = self.kept.back().map_or(since, |kept| kept.at.max(since));
        now.saturating_duration_since(newest) > self.settings.max_age
    }

    /// The header's start: the topic under `key`, the epoch and the last offset, as
    /// `{"<key>":"<topic>","epoch":"..","offset":N` (the caller adds its fields and `}`).
    fn header(&self, key: &str) -> String {
        self.header_at(key, self.last)
    }

    fn header_at(&self, key: &str, offset: u64) -> String {
        format!(
            "{{\"{key}\":{},\"epoch\":\"{}\",\"offset\":{offset}",
            self.topic, self.epoch
        )
    }

    /// The notice a resumable connection gets when it subscribes: the topic's epoch, the
    /// offset of the last message before the live ones, and what became of its position.
    pub(crate) fn notice(&self, subscribed: Subscribed) -> Message {
        self.notice_at(subscribed, self.last)
    }

    /// The notice, at `offset` rather than the last message's.
    pub(crate) fn notice_at(&self, subscribed: Subscribed, offset: u64) -> Message {
        let mut header = self.header_at("subscribed", offset);
        match subscribed {
            Subscribed::Live => {}
            Subscribed::Recovered { .. } => header.push_str(",\"recovered\":true"),
            Subscribed::NotRecovered(why) => {
                header.push_str(",\"recovered\":false,\"reason\":\"");
                header.push_str(why.code());
                header.push('"');
            }
        }
        Message::Text(Text::from(format!("\u{1e}{header}}}\u{1e}")))
    }

    /// What the connection a message was published except gets in its place, if it resumes:
    /// the position alone, `0x1E {"topic":..,"epoch":..,"offset":..,"skipped":true} 0x1E`, so
    /// that its position moves on (and a resume does not give it its own message back).
    pub(crate) fn skipped(&self) -> Message {
        let header = self.header("topic");
        Message::Text(Text::from(format!(
            "\u{1e}{header},\"skipped\":true}}\u{1e}"
        )))
    }

    /// `message` with its header: `0x1E {"topic":..,"epoch":..,"offset":..} 0x1E`, then the
    /// message's bytes, in a frame of the message's type.
    fn envelope(&self, message: &Message) -> Message {
        self.envelope_at(message, self.last)
    }

    fn envelope_at(&self, message: &Message, offset: u64) -> Message {
        let header = self.header_at("topic", offset);
        let body = payload(message);
        let mut bytes = BytesMut::with_capacity(header.len() + 3 + body.len());
        bytes.put_u8(0x1e);
        bytes.put_slice(header.as_bytes());
        bytes.put_slice(b"}\x1e");
        bytes.put_slice(body);
        let bytes = bytes.freeze();
        match message {
            // A UTF-8 header and UTF-8 text around ASCII separators: UTF-8.
            Message::Text(_) => Message::Text(Text::try_from(bytes).expect("UTF-8 throughout")),
            Message::Binary(_) => Message::Binary(bytes),
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

fn payload(message: &Message) -> &[u8] {
    match message {
        Message::Text(text) => text.as_bytes(),
        Message::Binary(bytes) => bytes,
    }
}

/// A number no other call, in this process or another, is likely to return: a random
/// state, a count, the process and the time; `salt` tells apart numbers made together.
pub(crate) fn unique_u64(salt: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(salt);
    hasher.write_usize(COUNT.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_nanos()),
    );
    hasher.finish()
}

/// `Bytes` of a published message, for tests.
#[cfg(test)]
fn bytes_of(published: &Published) -> bytes::Bytes {
    match &published.message {
        Message::Text(text) => bytes::Bytes::copy_from_slice(text.as_bytes()),
        Message::Binary(bytes) => bytes.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(settings: History) -> Ring {
        Ring::new("t", settings, &Total::default())
    }

    #[test]
    fn messages_are_numbered_and_enveloped_once() {
        let mut ring = Ring::new("room:\"x\"", History::default(), &Total::default());
        let first = ring.push(&Message::text("hi"));
        let epoch = ring.epoch().to_owned();
        assert_eq!(
            bytes_of(&first),
            format!(
                "\u{1e}{{\"topic\":\"room:\\\"x\\\"\",\"epoch\":\"{epoch}\",\"offset\":1}}\u{1e}hi"
            )
        );
        let second = ring.push(&Message::binary(vec![0u8, 0x1e, 255]));
        let Message::Binary(bytes) = &second.message else {
            panic!("a binary message stays binary");
        };
        assert!(bytes.ends_with(&[0x1e, 0, 0x1e, 255]));
        assert!(String::from_utf8_lossy(bytes).contains("\"offset\":2}"));
    }

    #[test]
    fn a_resume_replays_exactly_what_was_missed_or_says_why_not() {
        let mut ring = ring(History::default().messages(4).max_replay(3));
        let epoch = ring.epoch().to_owned();
        // Nothing published yet: a client at 0 missed nothing.
        assert_eq!(ring.since(&epoch, 0, 100).unwrap().len(), 0);
        for i in 1..=6 {
            ring.push(&Message::text(i.to_string()));
        }
        let texts = |replay: Vec<Arc<Published>>| -> Vec<String> {
            replay
                .iter()
                .map(|p| {
                    let b = bytes_of(p);
                    let s = String::from_utf8(b.to_vec()).unwrap();
                    s.rsplit('\u{1e}').next().unwrap().to_owned()
                })
                .collect()
        };
        assert_eq!(
            texts(ring.since(&epoch, 6, 100).unwrap()),
            Vec::<String>::new()
        );
        assert_eq!(texts(ring.since(&epoch, 4, 100).unwrap()), ["5", "6"]);
        assert_eq!(texts(ring.since(&epoch, 3, 100).unwrap()), ["4", "5", "6"]);
        // Kept: 3 to 6; 2 missed 3, which is kept, but 4 messages are over the cap of 3.
        assert!(matches!(ring.since(&epoch, 2, 100), Err(NotRecovered::Cap)));
        // 1 missed 2, which is gone.
        assert!(matches!(
            ring.since(&epoch, 1, 100),
            Err(NotRecovered::Behind)
        ));
        // The queue's room caps a replay too.
        assert!(matches!(ring.since(&epoch, 4, 1), Err(NotRecovered::Cap)));
        assert!(matches!(
            ring.since(&epoch, 7, 100),
            Err(NotRecovered::Ahead)
        ));
        assert!(matches!(
            ring.since("another", 6, 100),
            Err(NotRecovered::Epoch)
        ));
    }

    #[test]
    fn a_history_keeps_its_bytes_and_age_bounded() {
        let total = Total::default();
        let one = |ring: &mut Ring| {
            ring.push(&Message::text("abcd"));
            ring.kept.back().unwrap().size
        };
        let size = one(&mut Ring::new("t", History::default(), &total));
        assert_eq!(
            total.load(Ordering::Relaxed),
            0,
            "a dropped ring gives its bytes back"
        );
        let mut ring = Ring::new("t", History::default().max_bytes(2 * size + 1), &total);
        let epoch = ring.epoch().to_owned();
        for _ in 0..5 {
            one(&mut ring);
        }
        assert_eq!(ring.bytes, 2 * size);
        assert_eq!(total.load(Ordering::Relaxed), 2 * size);
        assert!(matches!(
            ring.since(&epoch, 2, 100),
            Err(NotRecovered::Behind)
        ));
        assert_eq!(ring.since(&epoch, 3, 100).unwrap().len(), 2);
        // A message larger than the bound is still kept, alone.
        ring.push(&Message::text("a long message".repeat(100)));
        assert_eq!(ring.kept.len(), 1);
        // Past the server's total, a ring keeps less, down to its newest message.
        let mut other = Ring::new("t", History::default().max_total_bytes(3 * size), &total);
        for _ in 0..4 {
            one(&mut other);
        }
        assert!(other.over_total());
        other.shrink_to_total();
        assert_eq!(other.kept.len(), 1);
        drop((ring, other));
        assert_eq!(total.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn old_messages_expire() {
        let mut ring = ring(History::default().max_age(Duration::from_secs(10)));
        let epoch = ring.epoch().to_owned();
        let start = Instant::now();
        ring.push(&Message::text("old"));
        tokio::time::advance(Duration::from_secs(6)).await;
        ring.push(&Message::text("new"));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(matches!(
            ring.since(&epoch, 0, 100),
            Err(NotRecovered::Behind)
        ));
        assert_eq!(ring.since(&epoch, 1, 100).unwrap().len(), 1);
        assert!(!ring.expired(start, Instant::now()));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(ring.expired(start, Instant::now()));
    }

    #[test]
    fn notices_say_the_position_and_the_outcome() {
        let mut ring = ring(History::default());
        ring.push(&Message::text("x"));
        let epoch = ring.epoch().to_owned();
        let notice = |subscribed| match ring.notice(subscribed) {
            Message::Text(text) => text.as_str().to_owned(),
            Message::Binary(_) => panic!("a text notice"),
        };
        assert_eq!(
            notice(Subscribed::Live),
            format!("\u{1e}{{\"subscribed\":\"t\",\"epoch\":\"{epoch}\",\"offset\":1}}\u{1e}")
        );
        assert!(notice(Subscribed::Recovered { replayed: 0 }).contains(",\"recovered\":true}"));
        assert!(
            notice(Subscribed::NotRecovered(NotRecovered::Behind))
                .contains(",\"recovered\":false,\"reason\":\"behind\"}")
        );
    }
}
