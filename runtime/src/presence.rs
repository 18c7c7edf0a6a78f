//! Presence: who is here, per topic, with metadata: [`Topics::presence`](crate::Topics::presence).
//!
//! A connection is marked present under a key (a user id: several connections of one key, tabs
//! or devices, are one member) with metadata of its type `M`, sent as JSON; it leaves when it
//! untracks or ends. Connections that watch get the whole list at once, then the changes,
//! batched: every change of an interval (100 ms by default) goes in one frame, net (a member
//! that came and went within it is not mentioned), so a room that 10,000 members join in one
//! second costs each watcher about ten frames, not 10,000. A presence may keep counts only:
//! its watchers get the number of members, at most once an interval.
//!
//! On the wire, as the resume notices (see docs/protocol.md's "Presence"), a text frame between two
//! `0x1E` bytes: `{"presence":"room:lobby","state":[{"key":"ann","meta":{..},"connections":2}]}`
//! when watching starts, then `{"presence":..,"join":[..],"leave":["bob"]}` (a `join` of a
//! member already known replaces it: new metadata, or another connection count), or
//! `{"presence":..,"count":3}` for counts only. Frames hold at most 1,000 members each; a long
//! list comes in several `state` frames, all but the last with `"more":true`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::codec::Outgoing;
use crate::mailbox::{Mailbox, Subscriber};
use crate::message::{Message, Text};

/// What presence needs of the broker (`Broker`'s, for `topics`).
pub(crate) trait Wire: Send + Sync {
    fn subscribe(&self, topic: &str);
    fn unsubscribe(&self, topic: &str);
    /// Whether the broker took it.
    fn publish(&self, topic: &str, payload: Bytes) -> bool;
    /// Waits for room in the broker's queue; whether it took it.
    fn publish_wait<'a>(
        &'a self,
        topic: &'a str,
        payload: Bytes,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>;
    /// Waits until the broker's backend confirmed it; whether it did.
    fn publish_confirmed<'a>(
        &'a self,
        topic: &'a str,
        payload: Bytes,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>;
}

/// The broker topics of presence between nodes: `PREFIX` + a presence's name carries its
/// changes; `NODES`, the nodes' heartbeats.
pub(crate) const PREFIX: &str = "\u{1}presence:";
const NODES: &str = "\u{1}presence-nodes";
/// How often a node says it is alive, and after how long without a word its members are gone
/// everywhere.
const HEARTBEAT: Duration = Duration::from_secs(1);
pub const NODE_GONE_AFTER: Duration = Duration::from_secs(3);
/// After the broker's link came back, how long the other nodes have to say who they have in
/// a presence: the members of a node that did not are gone (it may have left the presence
/// while the link was down, and its word was lost).
const RESYNC_WITHIN: Duration = Duration::from_secs(2);

/// How often watchers hear of changes, by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);
/// The longest a member's metadata may be, as JSON.
pub const MAX_META_BYTES: usize = 4096;
/// The longest a member's key may be.
pub const MAX_KEY_BYTES: usize = 256;
/// The most members one frame names.
const PER_FRAME: usize = 1000;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every presence of a server, by name.
#[derive(Default)]
pub(crate) struct Registry {
    rooms: Mutex<HashMap<String, Weak<Room>>>,
    /// The broker and this node's name in it, with a broker.
    link: OnceLock<Link>,
    /// When each other node was last heard from.
    nodes: Mutex<HashMap<String, Instant>>,
}

struct Link {
    broker: Arc<dyn Wire>,
    node: String,
}

impl Registry {
    /// Links presence to other nodes through `broker`: heartbeats, and the members of nodes
    /// not heard from for `NODE_GONE_AFTER` removed.
    pub(crate) fn start(self: &Arc<Self>, broker: Arc<dyn Wire>, node: &[u8; 16]) {
        let node = node.iter().map(|b| format!("{b:02x}")).collect();
        broker.subscribe(NODES);
        let _ = self.link.set(Link { broker, node });
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let registry = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(registry) = registry.upgrade() else {
                    return;
                };
                if let Some(link) = registry.link.get() {
                    // Waits for room rather than be refused under a flood of publishes: a
                    // node that goes quiet loses its members everywhere.
                    let alive = json!({ "n": link.node }).to_string();
                    let _ = link.broker.publish_wait(NODES, Bytes::from(alive)).await;
                }
                registry.sweep();
            }
        });
    }

    /// Forgets the members of nodes that went quiet.
    fn sweep(&self) {
        let now = Instant::now();
        let gone: Vec<String> = {
            let mut nodes = lock(&self.nodes);
            let gone = nodes
                .iter()
                .filter(|(_, heard)| now.duration_since(**heard) > NODE_GONE_AFTER)
                .map(|(node, _)| node.clone())
                .collect::<Vec<_>>();
            for node in &gone {
                nodes.remove(node);
            }
            gone
        };
        if !gone.is_empty() {
            tracing::info!(nodes = ?gone, "presence: nodes not heard from for 3 s; their members are gone");
            for room in self.live_rooms() {
                let mut state = lock(&room.state);
                for node in &gone {
                    state.forget_node(node);
                }
                room.schedule(&mut state);
            }
        }
    }

    fn live_rooms(&self) -> Vec<Arc<Room>> {
        lock(&self.rooms)
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// The broker's link dropped and came back (or may have): every linked presence asks the
    /// others for their members again, and says its own; the members of nodes that do not
    /// answer within `RESYNC_WITHIN` are gone.
    pub(crate) fn relink(&self) {
        for room in self.live_rooms() {
            let mut state = lock(&room.state);
            if !state.linked {
                continue;
            }
            state.stale = state.remote.keys().cloned().collect();
            state.round += 1;
            let round = state.round;
            room.send(&mut state, true);
            room.schedule(&mut state);
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                continue;
            };
            let weak = Arc::downgrade(&room);
            runtime.spawn(async move {
                tokio::time::sleep(RESYNC_WITHIN).await;
                let Some(room) = weak.upgrade() else {
                    return;
                };
                let mut state = lock(&room.state);
                if state.round != round {
                    return; // a later resync's
                }
                for node in std::mem::take(&mut state.stale) {
                    state.forget_node(&node);
                }
                room.schedule(&mut state);
            });
        }
    }

    /// A message from another node, on `topic` (`PREFIX` + a presence's name, or `NODES`).
    pub(crate) fn deliver(&self, topic: &str, payload: &[u8]) {
        let Some(link) = self.link.get() else {
            return;
        };
        let Ok(message) = serde_json::from_slice::<Value>(payload) else {
            tracing::debug!(topic, "presence: a message that is not JSON, dropped");
            return;
        };
        let Some(node) = message["n"].as_str() else {
            return;
        };
        if node == link.node {
            return;
        }
        if message["bye"].as_bool() == Some(true) {
            lock(&self.nodes).remove(node);
            for room in self.live_rooms() {
                let mut state = lock(&room.state);
                state.forget_node(node);
                room.schedule(&mut state);
            }
            return;
        }
        lock(&self.nodes).insert(node.to_owned(), Instant::now());
        let Some(name) = topic.strip_prefix(PREFIX) else {
            return;
        };
        let Some(room) = lock(&self.rooms).get(name).and_then(Weak::upgrade) else {
            return;
        };
        let mut state = lock(&room.state);
        if message["sync"].as_bool() == Some(true) {
            // Another node came (or came back): it gets this node's members.
            room.send(&mut state, false);
        }
        if let Some(members) = message["state"].as_object() {
            state.stale.remove(node);
            let before: Vec<String> = state
                .remote
                .remove(node)
                .map(|members| members.into_keys().collect())
                .unwrap_or_default();
            let now: HashMap<String, Member> = members
                .iter()
                .filter_map(|(key, member)| Some((key.clone(), Member::from_wire(member)?)))
                .collect();
            let keys: Vec<String> = before.into_iter().chain(now.keys().cloned()).collect();
            state.remote.insert(node.to_owned(), now);
            for key in keys {
                state.recompute(&key);
            }
        }
        if let Some(set) = message["set"].as_object() {
            for (key, member) in set {
                if let Some(member) = Member::from_wire(member) {
                    state
                        .remote
                        .entry(node.to_owned())
                        .or_default()
                        .insert(key.clone(), member);
                    state.recompute(key);
                }
            }
        }
        for key in message["del"].as_array().into_iter().flatten() {
            if let Some(key) = key.as_str() {
                if let Some(members) = state.remote.get_mut(node) {
                    members.remove(key);
                }
                state.recompute(key);
            }
        }
        room.schedule(&mut state);
    }

    /// The broker confirmed this node hears the presence `name` from now on: it asks the
    /// others who they have (again: an answer to its first ask may have come too early).
    pub(crate) fn subscribed(&self, name: &str) {
        let Some(room) = lock(&self.rooms).get(name).and_then(Weak::upgrade) else {
            return;
        };
        let mut state = lock(&room.state);
        if state.linked {
            room.send(&mut state, true);
            room.schedule(&mut state);
        }
    }

    /// This node is stopping: the others forget its members at once. Waits (up to a second)
    /// for the broker to confirm it, so that the word is out before the process ends.
    pub(crate) async fn bye(&self) {
        if let Some(link) = self.link.get() {
            let bye = json!({ "n": link.node, "bye": true }).to_string();
            let sent = link.broker.publish_confirmed(NODES, Bytes::from(bye));
            let _ = tokio::time::timeout(Duration::from_secs(1), sent).await;
        }
    }

    pub(crate) fn room(self: &Arc<Self>, name: String) -> Arc<Room> {
        let mut rooms = lock(&self.rooms);
        if let Some(room) = rooms.get(&name).and_then(Weak::upgrade) {
            return room;
        }
        let room = Arc::new(Room {
            json_name: serde_json::to_string(&name).expect("a string serializes"),
            name: name.clone(),
            state: Mutex::default(),
            registry: Arc::downgrade(self),
        });
        rooms.insert(name, Arc::downgrade(&room));
        room
    }
}

/// One presence topic.
pub(crate) struct Room {
    name: String,
    /// The name as a JSON string, for the frames.
    json_name: String,
    state: Mutex<State>,
    registry: Weak<Registry>,
}

#[derive(Default)]
struct State {
    /// Everyone here, on every node: `local` and `remote` together.
    members: HashMap<String, Member>,
    /// This node's members.
    local: HashMap<String, Member>,
    /// Other nodes' members, by node.
    remote: BTreeMap<String, HashMap<String, Member>>,
    /// This node's members that changed since the last word to the other nodes.
    outgoing: HashSet<String>,
    /// The presence takes the other nodes' changes (through the broker).
    linked: bool,
    /// Which member each tracked connection is.
    tracked: HashMap<usize, String>,
    watchers: HashMap<usize, Arc<Mailbox>>,
    /// The members as watchers were last told of them.
    announced: HashMap<String, Member>,
    /// The count watchers were last told (counts only).
    announced_count: Option<usize>,
    /// Members that changed since the last frame.
    touched: HashSet<String>,
    /// A frame is due at the end of the interval.
    scheduled: bool,
    counts_only: bool,
    interval: Option<Duration>,
    /// This node's name among the others (once linked).
    node: String,
    /// The last word to the other nodes was refused: the whole list goes at the next frame.
    resend: bool,
    /// Nodes that have not said who they have here since the last resync, and its number.
    stale: HashSet<String>,
    round: u64,
}

#[derive(Clone, PartialEq, Eq)]
struct Member {
    /// The metadata, as JSON.
    meta: Arc<str>,
    connections: usize,
}

impl Member {
    /// `[connections, metadata]`, as nodes send it to each other.
    fn to_wire(&self) -> Value {
        let meta: Value = serde_json::from_str(&self.meta).unwrap_or(Value::Null);
        json!([self.connections, meta])
    }

    fn from_wire(value: &Value) -> Option<Member> {
        let connections = usize::try_from(value.get(0)?.as_u64()?).ok()?;
        let meta = serde_json::to_string(value.get(1)?).ok()?;
        if connections == 0 || meta.len() > MAX_META_BYTES {
            return None;
        }
        Some(Member {
            meta: meta.into(),
            connections,
        })
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        // Other nodes' members it still knew of leave the count with it.
        for _ in 0..state.members.len() {
            crate::stats::presence_member(false);
        }
        if let Some(registry) = self.registry.upgrade() {
            let linked = self
                .state
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .linked;
            if linked && let Some(link) = registry.link.get() {
                // Nobody here any more: said once more, in case a leave was lost.
                let topic = format!("{PREFIX}{}", self.name);
                let empty = json!({ "n": link.node, "state": {} }).to_string();
                let _ = link.broker.publish(&topic, Bytes::from(empty));
                link.broker.unsubscribe(&topic);
            }
            let mut rooms = lock(&registry.rooms);
            if rooms
                .get(&self.name)
                .is_some_and(|room| room.strong_count() == 0)
            {
                rooms.remove(&self.name);
            }
        }
    }
}

/// Who is present in a topic, with metadata of type `M`: from
/// [`Topics::presence`](crate::Topics::presence). Cloning is cheap.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use wsock::prelude::*;
///
/// #[derive(Serialize, Deserialize)]
/// struct Member {
///     name: String,
/// }
///
/// #[websocket("/rooms/{room}")]
/// fn room(room: String, Query(me): Query<Member>, out: Out<String>, topics: Topics) {
///     let here = topics.presence::<Member>(format!("room:{room}"));
///     here.watch(&out); // the list now, then who comes and goes
///     if let Err(error) = here.track(&out, me.name.clone(), &me) {
///         out.close_with(CloseCode::POLICY, &error.to_string());
///     }
/// }
/// ```
pub struct Presence<M> {
    room: Arc<Room>,
    meta: PhantomData<fn(M) -> M>,
}

impl<M> Clone for Presence<M> {
    fn clone(&self) -> Self {
        Presence {
            room: Arc::clone(&self.room),
            meta: PhantomData,
        }
    }
}

impl<M> fmt::Debug for Presence<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.room.state);
        f.debug_struct("Presence")
            .field("name", &self.room.name)
            .field("members", &state.members.len())
            .field("watchers", &state.watchers.len())
            .finish()
    }
}

/// A member, as [`Presence::list`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Present<M> {
    /// What the member was tracked under (a user id).
    pub key: String,
    /// Its metadata (the latest tracked or updated of its connections').
    pub meta: M,
    /// How many connections it is here with.
    pub connections: usize,
}

/// Why a connection could not be tracked or updated.
#[derive(Debug)]
#[non_exhaustive]
pub enum PresenceError {
    /// The metadata does not serialize to JSON.
    Encode(serde_json::Error),
    /// The metadata is longer than 4,096 bytes as JSON.
    TooLarge(usize),
    /// The key is empty or longer than 256 bytes.
    Key(usize),
    /// `update` on a connection that is not tracked.
    NotTracked,
}

impl fmt::Display for PresenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PresenceError::Encode(error) => write!(f, "the metadata does not serialize: {error}"),
            PresenceError::TooLarge(bytes) => write!(
                f,
                "the metadata is {bytes} bytes of JSON; at most {MAX_META_BYTES}"
            ),
            PresenceError::Key(bytes) => write!(
                f,
                "a member's key is 1 to {MAX_KEY_BYTES} bytes, not {bytes}"
            ),
            PresenceError::NotTracked => f.write_str("the connection is not tracked here"),
        }
    }
}

impl std::error::Error for PresenceError {}

impl<M> Presence<M> {
    pub(crate) fn new(room: Arc<Room>) -> Self {
        Presence {
            room,
            meta: PhantomData,
        }
    }

    /// The presence's name.
    pub fn name(&self) -> &str {
        &self.room.name
    }

    /// How many members are here (a key with several connections counts once).
    pub fn count(&self) -> usize {
        lock(&self.room.state).members.len()
    }

    /// Watchers get the number of members only (once an interval at most, when it changed),
    /// not who they are: for big rooms.
    pub fn counts_only(&self) -> &Self {
        lock(&self.room.state).counts_only = true;
        self
    }

    /// How often watchers hear of changes (default 100 ms; at least
    /// 1 ms).
    pub fn interval(&self, every: Duration) -> &Self {
        lock(&self.room.state).interval = Some(every.max(Duration::from_millis(1)));
        self
    }

    /// Sends `out`'s connection the list now, and then the changes, until it unwatches or
    /// ends. Watching twice is watching once.
    pub fn watch<T>(&self, out: &impl Subscriber<T>) {
        let mailbox = out.recipient().0;
        let room = &self.room;
        let mut state = lock(&room.state);
        let held = mailbox.hold(watch_key(room), || {
            Box::new(Watching {
                room: Arc::clone(room),
                connection: connection(mailbox),
            })
        });
        if !held {
            return;
        }
        room.link(&mut state);
        if state.watchers.is_empty() {
            // Nobody was told anything: the first watcher starts from the list as it is.
            state.announced = state.members.clone();
            state.announced_count = Some(state.members.len());
            state.touched.clear();
        }
        state
            .watchers
            .insert(connection(mailbox), Arc::clone(mailbox));
        // The list as it is now; what changes next comes as joins and leaves (a join of a
        // member it has already is a replacement).
        if state.counts_only {
            mailbox.push(Outgoing::Message(room.count_frame(state.members.len())));
            return;
        }
        let members: Vec<(&String, &Member)> = state.members.iter().collect();
        let chunks: Vec<&[(&String, &Member)]> = match members.is_empty() {
            true => vec![&[]],
            false => members.chunks(PER_FRAME).collect(),
        };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            // All but the last say more follow: the list is whole with the last.
            let kind = if i < last {
                "more\":true,\"state"
            } else {
                "state"
            };
            mailbox.push(Outgoing::Message(room.frame(kind, chunk, &[])));
        }
    }

    /// Stops sending `out`'s connection the changes.
    pub fn unwatch<T>(&self, out: &impl Subscriber<T>) {
        out.recipient().0.release(watch_key(&self.room));
    }

    /// Marks `out`'s connection present under `key` (a user id), with `meta`, until it
    /// untracks or ends. Tracking again replaces the key and metadata: a connection is one
    /// member at a time. A connection that ended is not tracked.
    pub fn track<T>(
        &self,
        out: &impl Subscriber<T>,
        key: impl Into<String>,
        meta: &M,
    ) -> Result<(), PresenceError>
    where
        M: Serialize,
    {
        let key = key.into();
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(PresenceError::Key(key.len()));
        }
        let meta = encode(meta)?;
        let mailbox = out.recipient().0;
        let room = &self.room;
        let this = connection(mailbox);
        let mut state = lock(&room.state);
        let held = mailbox.hold(track_key(room), || {
            Box::new(Tracking {
                room: Arc::clone(room),
                connection: this,
            })
        });
        if !held && !state.tracked.contains_key(&this) {
            return Ok(()); // the connection ended
        }
        if let Some(before) = state.tracked.remove(&this) {
            state.leave(&before);
        }
        state.tracked.insert(this, key.clone());
        let member = state.local.entry(key.clone()).or_insert(Member {
            meta: Arc::clone(&meta),
            connections: 0,
        });
        member.connections += 1;
        member.meta = meta;
        state.changed_here(&key);
        room.link(&mut state);
        room.schedule(&mut state);
        Ok(())
    }

    /// Replaces the metadata of the member `out`'s connection is tracked as.
    pub fn update<T>(&self, out: &impl Subscriber<T>, meta: &M) -> Result<(), PresenceError>
    where
        M: Serialize,
    {
        let meta = encode(meta)?;
        let room = &self.room;
        let mut state = lock(&room.state);
        let key = state
            .tracked
            .get(&connection(out.recipient().0))
            .cloned()
            .ok_or(PresenceError::NotTracked)?;
        if let Some(member) = state.local.get_mut(&key) {
            member.meta = meta;
        }
        state.changed_here(&key);
        room.schedule(&mut state);
        Ok(())
    }

    /// Marks `out`'s connection not present any more.
    pub fn untrack<T>(&self, out: &impl Subscriber<T>) {
        out.recipient().0.release(track_key(&self.room));
    }

    /// Who is here, with their metadata and connection counts, in no particular order.
    /// (Metadata that does not read back as `M` is left out.)
    pub fn list(&self) -> Vec<Present<M>>
    where
        M: DeserializeOwned,
    {
        let state = lock(&self.room.state);
        state
            .members
            .iter()
            .filter_map(|(key, member)| {
                Some(Present {
                    key: key.clone(),
                    meta: serde_json::from_str(&member.meta).ok()?,
                    connections: member.connections,
                })
            })
            .collect()
    }
}

fn encode<M: Serialize>(meta: &M) -> Result<Arc<str>, PresenceError> {
    let json = serde_json::to_string(meta).map_err(PresenceError::Encode)?;
    if json.len() > MAX_META_BYTES {
        return Err(PresenceError::TooLarge(json.len()));
    }
    Ok(json.into())
}

/// A connection, as presence knows it.
fn connection(mailbox: &Arc<Mailbox>) -> usize {
    Arc::as_ptr(mailbox) as usize
}

/// What a connection holds while tracked, and while watching (two keys no other room has).
fn track_key(room: &Arc<Room>) -> usize {
    Arc::as_ptr(room) as usize
}

fn watch_key(room: &Arc<Room>) -> usize {
    Arc::as_ptr(room) as usize + 1
}

impl State {
    /// One connection of `key` left.
    fn leave(&mut self, key: &str) {
        if let Some(member) = self.local.get_mut(key) {
            member.connections -= 1;
            if member.connections == 0 {
                self.local.remove(key);
            }
        }
        self.changed_here(key);
    }

    /// This node's member `key` changed: the others are told, and everyone here.
    fn changed_here(&mut self, key: &str) {
        if self.linked {
            self.outgoing.insert(key.to_owned());
        }
        self.recompute(key);
    }

    /// Sets `key` in the list from what every node has of it: the connections of all, the
    /// metadata of the first node by name (the same choice on every node).
    fn recompute(&mut self, key: &str) {
        let here = self
            .local
            .get(key)
            .map(|member| (self.node.as_str(), member));
        let there = self
            .remote
            .iter()
            .filter_map(|(node, members)| Some((node.as_str(), members.get(key)?)));
        let mut all: Vec<(&str, &Member)> = here.into_iter().chain(there).collect();
        all.sort_by_key(|(node, _)| *node);
        match all.first() {
            None => {
                if self.members.remove(key).is_some() {
                    crate::stats::presence_member(false);
                }
            }
            Some((_, first)) => {
                let member = Member {
                    meta: Arc::clone(&first.meta),
                    connections: all.iter().map(|(_, member)| member.connections).sum(),
                };
                if self.members.insert(key.to_owned(), member).is_none() {
                    crate::stats::presence_member(true);
                }
            }
        }
        self.touched.insert(key.to_owned());
    }

    /// `node`'s members are gone (it stopped, or went quiet).
    fn forget_node(&mut self, node: &str) {
        if let Some(members) = self.remote.remove(node) {
            for key in members.into_keys() {
                self.recompute(&key);
            }
        }
    }
}

impl Room {
    /// Takes the other nodes' changes, and tells them this one's members, once this node has
    /// members or watchers here (with a broker).
    fn link(&self, state: &mut State) {
        if state.linked {
            return;
        }
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let Some(link) = registry.link.get() else {
            return;
        };
        state.linked = true;
        state.node.clone_from(&link.node);
        link.broker.subscribe(&format!("{PREFIX}{}", self.name));
        // Its members so far, and the others', please.
        state.outgoing.clear();
        let keys: Vec<String> = state.local.keys().cloned().collect();
        for key in keys {
            state.recompute(&key);
        }
        self.send(state, true);
    }

    /// Tells the other nodes all of this node's members here (`sync`: and asks for theirs).
    fn send(&self, state: &mut State, sync: bool) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let Some(link) = registry.link.get() else {
            return;
        };
        let members: serde_json::Map<String, Value> = state
            .local
            .iter()
            .map(|(key, member)| (key.clone(), member.to_wire()))
            .collect();
        let mut message = json!({ "n": link.node, "state": members });
        if sync {
            message["sync"] = Value::Bool(true);
        }
        let topic = format!("{PREFIX}{}", self.name);
        // Refused (the broker is away, or behind): it goes again at the next frame.
        state.resend = !link
            .broker
            .publish(&topic, Bytes::from(message.to_string()));
    }

    /// Tells the other nodes what changed here since the last time.
    fn send_changes(&self, state: &mut State) {
        if state.resend {
            state.outgoing.clear();
            return self.send(state, false);
        }
        if state.outgoing.is_empty() {
            return;
        }
        let outgoing = std::mem::take(&mut state.outgoing);
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let Some(link) = registry.link.get() else {
            return;
        };
        let mut set = serde_json::Map::new();
        let mut del = Vec::new();
        for key in outgoing {
            match state.local.get(&key) {
                Some(member) => {
                    set.insert(key, member.to_wire());
                }
                None => del.push(Value::String(key)),
            }
        }
        let message = json!({ "n": link.node, "set": set, "del": del });
        let topic = format!("{PREFIX}{}", self.name);
        // Refused: the whole list goes at the next frame.
        state.resend = !link
            .broker
            .publish(&topic, Bytes::from(message.to_string()));
    }

    /// A frame is due at the end of the interval, unless one is already.
    fn schedule(self: &Arc<Self>, state: &mut State) {
        if state.scheduled {
            return;
        }
        if state.watchers.is_empty() {
            // Nobody to tell: the first to watch gets the list as it is then.
            state.touched.clear();
        }
        if state.touched.is_empty() && state.outgoing.is_empty() && !state.resend {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.flush_locked(state);
        };
        state.scheduled = true;
        let every = state.interval.unwrap_or(DEFAULT_INTERVAL);
        let room = Arc::downgrade(self);
        runtime.spawn(async move {
            tokio::time::sleep(every).await;
            if let Some(room) = room.upgrade() {
                let mut state = lock(&room.state);
                state.scheduled = false;
                room.flush_locked(&mut state);
                // Refused: tried again at the next interval.
                room.schedule(&mut state);
            }
        });
    }

    /// Tells the other nodes, and every watcher, what changed since the last frame, net.
    fn flush_locked(&self, state: &mut State) {
        self.send_changes(state);
        let touched = std::mem::take(&mut state.touched);
        if state.counts_only {
            let count = state.members.len();
            if state.announced_count != Some(count) {
                state.announced_count = Some(count);
                let frame = self.count_frame(count);
                for mailbox in state.watchers.values() {
                    mailbox.push(Outgoing::Message(frame.clone()));
                }
            }
            return;
        }
        let mut joins = Vec::new();
        let mut leaves = Vec::new();
        for key in touched {
            match state.members.get(&key) {
                Some(member) => {
                    if state.announced.get(&key) != Some(member) {
                        state.announced.insert(key.clone(), member.clone());
                        joins.push(key);
                    }
                }
                None => {
                    if state.announced.remove(&key).is_some() {
                        leaves.push(key);
                    }
                }
            }
        }
        if joins.is_empty() && leaves.is_empty() {
            return;
        }
        let members: Vec<(&String, &Member)> = joins
            .iter()
            .filter_map(|key| Some((key, state.members.get(key)?)))
            .collect();
        let mut frames = Vec::new();
        let mut leaves = leaves.chunks(PER_FRAME);
        let mut joins = members.chunks(PER_FRAME);
        loop {
            let (join, leave) = (joins.next(), leaves.next());
            if join.is_none() && leave.is_none() {
                break;
            }
            frames.push(self.frame("join", join.unwrap_or(&[]), leave.unwrap_or(&[])));
        }
        for mailbox in state.watchers.values() {
            for frame in &frames {
                mailbox.push(Outgoing::Message(frame.clone()));
            }
        }
    }

    /// `0x1E {"presence":<name>,"<kind>":[members..],"leave":[keys..]} 0x1E` (no `leave` when
    /// there is none).
    fn frame(&self, kind: &str, members: &[(&String, &Member)], leaves: &[String]) -> Message {
        let mut out = format!("\u{1e}{{\"presence\":{},\"{kind}\":[", self.json_name);
        for (i, (key, member)) in members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let key = serde_json::to_string(key).expect("a string serializes");
            out.push_str(&format!(
                "{{\"key\":{key},\"meta\":{},\"connections\":{}}}",
                member.meta, member.connections
            ));
        }
        out.push(']');
        if !leaves.is_empty() {
            let leaves = serde_json::to_string(leaves).expect("strings serialize");
            out.push_str(&format!(",\"leave\":{leaves}"));
        }
        out.push_str("}\u{1e}");
        Message::Text(Text::from(out))
    }

    fn count_frame(&self, count: usize) -> Message {
        Message::Text(Text::from(format!(
            "\u{1e}{{\"presence\":{},\"count\":{count}}}\u{1e}",
            self.json_name
        )))
    }
}

/// What a tracked connection holds: it leaves when this goes.
struct Tracking {
    room: Arc<Room>,
    connection: usize,
}

impl Drop for Tracking {
    fn drop(&mut self) {
        let mut state = lock(&self.room.state);
        if let Some(key) = state.tracked.remove(&self.connection) {
            state.leave(&key);
            self.room.schedule(&mut state);
        }
    }
}

/// What a watching connection holds.
struct Watching {
    room: Arc<Room>,
    connection: usize,
}

impl Drop for Watching {
    fn drop(&mut self) {
        lock(&self.room.state).watchers.remove(&self.connection);
    }
}
