//! The chat's rooms and its endpoint, shared by the `chat` example (wsock's own server) and
//! the `axum` example (inside an axum app). See `main.rs` for the protocol.
//!
//! A room is a topic, `room:<name>`: every event is encoded once and published to it, so it
//! reaches the room's members on this server and, with a broker, on every server. Who is in
//! the room, on every server, is the presence of the same name. What this server keeps itself
//! is its own members per room: names are unique, and a room holds 100 members, per server.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use wsock::prelude::*;

/// A room's name, from the path: `/chat/{room}`.
pub struct RoomName(String);

impl FromStr for RoomName {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let valid = (1..=32).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(RoomName(text.to_owned()))
        } else {
            Err("a room is 1 to 32 letters, digits, `-` or `_`")
        }
    }
}

/// Who is talking: `?name=` in the query string, or the session's `name`.
pub struct Nick(String);

impl FromRequest for Nick {
    async fn from_request(req: &Request) -> Result<Self, Reject> {
        let name = req
            .query_param("name")
            .or_else(|| req.session().get("name").map(str::to_owned))
            .unwrap_or_default();
        let name = name.trim();
        let length = name.chars().count();
        if length == 0 {
            return Err(Reject::bad_request().with_body("choose a name: ?name=.."));
        }
        if length > 24 || name.chars().any(char::is_control) {
            return Err(Reject::bad_request()
                .with_body("a name is 1 to 24 characters, without control characters"));
        }
        Ok(Nick(name.to_owned()))
    }
}

// The page's TypeScript type of it is generated from this (`contract.ts`; see `main.rs`).
/// What the server sends, as JSON.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    /// To a newcomer: the name it got, and the room's members on this server.
    Welcome {
        you: String,
        room: String,
        members: Vec<String>,
    },
    /// To the rest of the room: someone came.
    Joined { name: String },
    /// To the rest of the room: someone went.
    Left { name: String },
    /// To everyone in the room, the speaker included.
    Message { from: String, text: String },
    /// To one member: something it should know (a message that reached this server only).
    Notice { text: String },
}

/// The chat's page: `index.html` with the script `page.ts` compiles to (`page.js`) inline.
pub fn page() -> String {
    let script = include_str!("page.js");
    debug_assert!(!script.contains("</script"), "the script would end early");
    include_str!("index.html").replace("/* page.js */", script)
}

/// The members of this server, by room, in order of arrival. Cloning shares them.
#[derive(Clone, Default)]
pub struct Rooms(Arc<Members>);

#[derive(Default)]
pub struct Members {
    next_id: AtomicU64,
    rooms: Mutex<HashMap<String, BTreeMap<u64, String>>>,
}

impl std::ops::Deref for Rooms {
    type Target = Members;
    fn deref(&self) -> &Members {
        &self.0
    }
}

/// The most members a room holds on one server.
const ROOM_SIZE: usize = 100;

impl Members {
    /// Every room with its member count on this server, by name.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let rooms = self.rooms.lock().unwrap();
        rooms
            .iter()
            .map(|(room, members)| (room.clone(), members.len()))
            .collect()
    }

    /// Adds a member; returns their id, their name (made unique in the room) and the room's
    /// members on this server, or `None` when the room is full.
    fn enter(&self, room: &str, wanted: &str) -> Option<(u64, String, Vec<String>)> {
        let mut rooms = self.rooms.lock().unwrap();
        let members = rooms.entry(room.to_owned()).or_default();
        if members.len() >= ROOM_SIZE {
            return None;
        }
        let taken: HashSet<&str> = members.values().map(String::as_str).collect();
        // With at most ROOM_SIZE names taken, one of the first ROOM_SIZE + 1 is free.
        let name = (1..)
            .map(|n| match n {
                1 => wanted.to_owned(),
                n => format!("{wanted} ({n})"),
            })
            .find(|name| !taken.contains(name.as_str()))
            .expect("a free name");
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        members.insert(id, name.clone());
        Some((id, name, members.values().cloned().collect()))
    }

    fn leave(&self, room: &str, id: u64) {
        let mut rooms = self.rooms.lock().unwrap();
        if let Some(members) = rooms.get_mut(room) {
            members.remove(&id);
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }
}

/// A member as the room's presence shows it.
#[derive(Serialize)]
struct Who<'a> {
    name: &'a str,
}

/// One member of one room.
#[websocket("/chat/{room}", max_message_size = "4KiB")]
pub fn chat(
    room: RoomName,
    nick: Nick,
    req: Request,
    rooms: State<Rooms>,
    topics: Topics,
    out: Out<Json<Event>>,
) {
    let room = room.0;
    let Some((id, name, here)) = rooms.enter(&room, &nick.0) else {
        out.close_with(1013, "this room is full: try again later");
        return;
    };
    // Who is here, on every server: the page watches it (`&presence`).
    let presence = topics.presence::<Who>(format!("room:{room}"));
    if req.query_param("presence").is_some() {
        presence.watch(&out);
    }
    // A name of at most 24 characters: never too long.
    let _ = presence.track(&out, name.clone(), &Who { name: &name });
    out.write(Json(Event::Welcome {
        you: name.clone(),
        room: room.clone(),
        members: here,
    }));
    // Encoded once per publish: every member's copy shares the same bytes.
    let topic = topics.topic::<Json<Event>>(format!("room:{room}"));
    topic.subscribe(&out);
    // Without a broker this never fails; with one, it fails while the broker is away.
    let publish = |event: Event, except: Option<&Out<Json<Event>>>| {
        let published = match except {
            Some(except) => topic.publish_except(except, Json(event)),
            None => topic.publish(Json(event)),
        };
        if published.is_err() {
            let text = "other servers are unreachable: only members on this server got that";
            out.write(Json(Event::Notice { text: text.into() }));
        }
    };
    let joined = Event::Joined { name: name.clone() };
    publish(joined, Some(&out));
    // Everyone in the room gets the message, the speaker included (their copy confirms the
    // order).
    on_message(|text: String| {
        let text = text.trim();
        if !text.is_empty() {
            let (from, text) = (name.clone(), text.to_owned());
            publish(Event::Message { from, text }, None);
        }
    });
    on_close(|| {
        rooms.leave(&room, id);
        publish(Event::Left { name: name.clone() }, None);
    });
}
