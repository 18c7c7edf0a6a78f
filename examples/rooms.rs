//! Rooms and seats from the path: `/rooms/{room}/seats/{seat}`.
//!
//! Run: `cargo run --example rooms [ADDRESS]` (default 127.0.0.1:9000) and connect clients to
//! ws://127.0.0.1:9000/rooms/blue/seats/3, ws://127.0.0.1:9000/rooms/blue/seats/4, .. (for
//! example `python3 -m websockets ws://127.0.0.1:9000/rooms/blue/seats/3`, after
//! `pip install websockets`).
//!
//! - Each client is greeted with `welcome to blue, seat 3`.
//! - What a client sends reaches everyone in the same room as `seat 3: <text>`.
//! - A seat that is not a number from 0 to 255 is refused before the upgrade with 400 and
//!   a body naming the parameter: `invalid path parameter `seat` ("x"): ..`.

use std::collections::HashMap;
use std::sync::Mutex;

use wsock::prelude::*;

/// Who sits in which room.
#[derive(Default)]
struct Rooms {
    rooms: Mutex<HashMap<String, HashMap<u8, Out<String>>>>,
}

impl Rooms {
    fn sit(&self, room: &str, seat: u8, out: &Out<String>) -> Result<(), String> {
        let mut rooms = self.rooms.lock().unwrap();
        let seats = rooms.entry(room.to_owned()).or_default();
        match seats.get(&seat) {
            Some(other) if !other.is_closed() => Err(format!("seat {seat} is taken")),
            _ => {
                seats.insert(seat, out.clone());
                Ok(())
            }
        }
    }

    fn say(&self, room: &str, text: &str) {
        for out in self
            .rooms
            .lock()
            .unwrap()
            .get(room)
            .into_iter()
            .flat_map(HashMap::values)
        {
            out.write(text.to_owned());
        }
    }

    fn leave(&self, room: &str, seat: u8) {
        let mut rooms = self.rooms.lock().unwrap();
        if let Some(seats) = rooms.get_mut(room) {
            seats.remove(&seat);
            if seats.is_empty() {
                rooms.remove(room);
            }
        }
    }
}

/// One client in one seat of one room.
#[websocket("/rooms/{room}/seats/{seat}")]
fn join(room: String, seat: u8, rooms: State<Rooms>, out: Out<String>) {
    if let Err(refusal) = rooms.sit(&room, seat, &out) {
        out.close_with(4409, &refusal);
        return;
    }
    out.write(format!("welcome to {room}, seat {seat}"));
    on_message(|text: String| rooms.say(&room, &format!("seat {seat}: {text}")));
    on_close(|| rooms.leave(&room, seat));
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".to_owned());
    Server::new()
        .state(Rooms::default())
        .route(join)
        .serve(addr)
        .await
}
