//! A multi-room chat, with its page.
//!
//! Run: `cargo run --example chat [ADDRESS]` (default 127.0.0.1:9000) and open
//! http://127.0.0.1:9000/ in two browser tabs: pick a name and a room in each, and what one
//! tab says appears in the other. Joining and leaving are announced to the room.
//!
//! The protocol, for other clients: connect to `ws://127.0.0.1:9000/chat/{room}?name=ada`
//! (the name may also come from the signed session's `name`), send text, receive JSON events:
//!
//! - `{"type":"welcome","you":"ada","room":"blue","members":["ada","bob"]}`, first, to you;
//! - `{"type":"joined","name":"bob","members":[..]}` and `{"type":"left",..}` to the room;
//! - `{"type":"message","from":"ada","text":".."}` to everyone in the room, you included.
//!
//! A room is 1 to 32 letters, digits, `-` or `_`; a name is 1 to 24 characters, no control
//! characters: anything else is refused before the upgrade with 400 and a body that says why.
//! A second `ada` in a room becomes `ada (2)`. A room holds up to 100 members: one more is
//! closed with 1013 (try again later). A message over 4 KiB closes the connection with 1009, a
//! binary one with 1003.

// `Rooms::counts` serves the axum example's REST route, not this server.
#[allow(dead_code)]
mod room;

use wsock::prelude::*;

use room::{Rooms, chat};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".to_owned());
    Server::new()
        .page("/", include_str!("index.html"))
        .state(Rooms::default())
        .route(chat)
        .serve(addr)
        .await
}
