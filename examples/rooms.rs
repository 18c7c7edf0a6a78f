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
    server().serve(addr).await
}

pub(crate) fn server() -> Server {
    Server::new().state(Rooms::default()).route(join)
}

/// The endpoint, tested in process with wsock's test kit (`cargo test --features test`).
#[cfg(all(test, feature = "test"))]
mod tests {
    use super::*;
    use wsock::test::TestServer;

    #[tokio::test]
    async fn a_room_hears_its_seats_and_a_taken_or_bad_seat_is_refused() {
        let app = TestServer::new(server());
        let mut three = app.connect("/rooms/blue/seats/3").await.unwrap();
        assert_eq!(three.recv::<String>().await, "welcome to blue, seat 3");
        let mut four = app.connect("/rooms/blue/seats/4").await.unwrap();
        assert_eq!(four.recv::<String>().await, "welcome to blue, seat 4");
        let mut red = app.connect("/rooms/red/seats/3").await.unwrap();
        assert_eq!(red.recv::<String>().await, "welcome to red, seat 3");

        four.send("hi").await;
        assert_eq!(three.recv::<String>().await, "seat 4: hi");
        assert_eq!(four.recv::<String>().await, "seat 4: hi");
        red.expect_nothing(std::time::Duration::from_millis(50))
            .await;

        let mut again = app.connect("/rooms/blue/seats/3").await.unwrap();
        assert_eq!(again.expect_close(4409).await, "seat 3 is taken");
        let refused = app.connect("/rooms/blue/seats/x").await.unwrap_err();
        assert_eq!(refused.status(), 400);
        assert!(
            refused
                .body()
                .starts_with("invalid path parameter `seat` (\"x\")")
        );
    }
}
