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
//! On the wire, as the resume notices (see the README's "Presence"), a text frame between two
//! `0x1E` bytes: `{"presence":"room:lobby","state":[{"key":"ann","meta":{..},"connections":2}]}`
//! when watching starts, then `{"presence":..,"join":[..],"leave":["bob"]}` (a `join` of a
//! member already known replaces it: new metadata, or another connection count), or
//! `{"presence":..,"count":3}` for counts only. Frames hold at most 1,000 members each; a long
//! list comes as `state` and then `join`s.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::Outgoing;
use crate::mailbox::Mailbox;
use crate::message::{Message, Text};
use crate::out::Out;

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
}

impl Registry {
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
    members: HashMap<String, Member>,
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
}

#[derive(Clone, PartialEq, Eq)]
struct Member {
    /// The metadata, as JSON.
    meta: Arc<str>,
    connections: usize,
}

impl Drop for Room {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
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
    /// The metadata is longer than [`MAX_META_BYTES`] as JSON.
    TooLarge(usize),
    /// The key is empty or longer than [`MAX_KEY_BYTES`].
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

    /// How often watchers hear of changes (default [`DEFAULT_INTERVAL`], 100 ms; at least
    /// 1 ms).
    pub fn interval(&self, every: Duration) -> &Self {
        lock(&self.room.state).interval = Some(every.max(Duration::from_millis(1)));
        self
    }

    /// Sends `out`'s connection the list now, and then the changes, until it unwatches or
    /// ends. Watching twice is watching once.
    pub fn watch<T>(&self, out: &Out<T>) {
        let mailbox = out.mailbox();
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
        let mut chunks = members.chunks(PER_FRAME);
        let first = chunks.next().unwrap_or(&[]);
        mailbox.push(Outgoing::Message(room.frame("state", first, &[])));
        for chunk in chunks {
            mailbox.push(Outgoing::Message(room.frame("join", chunk, &[])));
        }
    }

    /// Stops sending `out`'s connection the changes.
    pub fn unwatch<T>(&self, out: &Out<T>) {
        out.mailbox().release(watch_key(&self.room));
    }

    /// Marks `out`'s connection present under `key` (a user id), with `meta`, until it
    /// untracks or ends. Tracking again replaces the key and metadata: a connection is one
    /// member at a time. A connection that ended is not tracked.
    pub fn track<T>(
        &self,
        out: &Out<T>,
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
        let mailbox = out.mailbox();
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
        let member = state.members.entry(key.clone()).or_insert(Member {
            meta: Arc::clone(&meta),
            connections: 0,
        });
        member.connections += 1;
        member.meta = meta;
        state.touched.insert(key);
        room.schedule(&mut state);
        Ok(())
    }

    /// Replaces the metadata of the member `out`'s connection is tracked as.
    pub fn update<T>(&self, out: &Out<T>, meta: &M) -> Result<(), PresenceError>
    where
        M: Serialize,
    {
        let meta = encode(meta)?;
        let room = &self.room;
        let mut state = lock(&room.state);
        let key = state
            .tracked
            .get(&connection(out.mailbox()))
            .cloned()
            .ok_or(PresenceError::NotTracked)?;
        if let Some(member) = state.members.get_mut(&key) {
            member.meta = meta;
        }
        state.touched.insert(key);
        room.schedule(&mut state);
        Ok(())
    }

    /// Marks `out`'s connection not present any more.
    pub fn untrack<T>(&self, out: &Out<T>) {
        out.mailbox().release(track_key(&self.room));
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
        if let Some(member) = self.members.get_mut(key) {
            member.connections -= 1;
            if member.connections == 0 {
                self.members.remove(key);
            }
        }
        self.touched.insert(key.to_owned());
    }
}

impl Room {
    /// A frame is due at the end of the interval, unless one is already.
    fn schedule(self: &Arc<Self>, state: &mut State) {
        if state.scheduled || state.touched.is_empty() {
            return;
        }
        if state.watchers.is_empty() {
            // Nobody to tell: the first to watch gets the list as it is then.
            state.touched.clear();
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
            }
        });
    }

    /// Tells every watcher what changed since the last frame, net.
    fn flush_locked(&self, state: &mut State) {
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
