//! The chat's rooms and its endpoint, shared by the `chat` example (wsock's own server) and
//! the `axum` example (inside an axum app). See `main.rs` for the protocol.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use wsock::Text;
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

/// What the server sends, as JSON.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Event<'a> {
    Welcome {
        you: &'a str,
        room: &'a str,
        members: Vec<&'a str>,
    },
    Joined {
        name: &'a str,
        members: Vec<&'a str>,
    },
    Left {
        name: &'a str,
        members: Vec<&'a str>,
    },
    Message {
        from: &'a str,
        text: &'a str,
    },
}

/// Everyone in every room, by room, in order of arrival. Cloning shares it.
#[derive(Clone, Default)]
pub struct Rooms(Arc<Members>);

#[derive(Default)]
pub struct Members {
    next_id: AtomicU64,
    rooms: Mutex<HashMap<String, BTreeMap<u64, Member>>>,
}

impl std::ops::Deref for Rooms {
    type Target = Members;
    fn deref(&self) -> &Members {
        &self.0
    }
}

struct Member {
    name: String,
    out: Out<Text>,
}

/// The most members a room holds.
const ROOM_SIZE: usize = 100;

impl Members {
    /// Every room with its member count, by name.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let rooms = self.rooms.lock().unwrap();
        rooms
            .iter()
            .map(|(room, members)| (room.clone(), members.len()))
            .collect()
    }

    /// Adds a member; returns their id and name, made unique in the room, or `None` when the
    /// room is full.
    fn enter(&self, room: &str, wanted: &str, out: &Out<Text>) -> Option<(u64, String)> {
        let mut rooms = self.rooms.lock().unwrap();
        let members = rooms.entry(room.to_owned()).or_default();
        if members.len() >= ROOM_SIZE {
            return None;
        }
        let taken: HashSet<&str> = members.values().map(|m| m.name.as_str()).collect();
        // With at most ROOM_SIZE names taken, one of the first ROOM_SIZE + 1 is free.
        let name = (1..)
            .map(|n| match n {
                1 => wanted.to_owned(),
                n => format!("{wanted} ({n})"),
            })
            .find(|name| !taken.contains(name.as_str()))
            .expect("a free name");
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let out = out.clone();
        members.insert(id, Member { name, out });
        let me = &members[&id];
        let names = names(members);
        me.out.write(encode(&Event::Welcome {
            you: &me.name,
            room,
            members: names.clone(),
        }));
        let joined = encode(&Event::Joined {
            name: &me.name,
            members: names,
        });
        broadcast(members, Some(id), joined);
        Some((id, me.name.clone()))
    }

    /// Says `text` to the whole room, the speaker included (their copy confirms the order).
    fn say(&self, room: &str, from: &str, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let message = encode(&Event::Message { from, text });
        if let Some(members) = self.rooms.lock().unwrap().get(room) {
            broadcast(members, None, message);
        }
    }

    fn leave(&self, room: &str, id: u64) {
        let mut rooms = self.rooms.lock().unwrap();
        let Some(members) = rooms.get_mut(room) else {
            return;
        };
        let Some(gone) = members.remove(&id) else {
            return;
        };
        if members.is_empty() {
            rooms.remove(room);
            return;
        }
        let left = encode(&Event::Left {
            name: &gone.name,
            members: names(members),
        });
        broadcast(members, None, left);
    }
}

fn names(members: &BTreeMap<u64, Member>) -> Vec<&str> {
    members.values().map(|m| m.name.as_str()).collect()
}

/// Encoded once; every member's copy shares the same bytes.
fn encode(event: &Event) -> Text {
    Text::from(serde_json::to_string(event).expect("events serialize"))
}

fn broadcast(members: &BTreeMap<u64, Member>, except: Option<u64>, event: Text) {
    for (id, member) in members {
        if Some(*id) != except {
            member.out.write(event.clone());
        }
    }
}

/// One member of one room.
#[websocket("/chat/{room}", max_message_size = "4KiB")]
pub fn chat(room: RoomName, nick: Nick, rooms: State<Rooms>, out: Out<Text>) {
    let room = room.0;
    let Some((id, name)) = rooms.enter(&room, &nick.0, &out) else {
        out.close_with(1013, "this room is full: try again later");
        return;
    };
    on_message(|text: String| rooms.say(&room, &name, &text));
    on_close(|| rooms.leave(&room, id));
}
