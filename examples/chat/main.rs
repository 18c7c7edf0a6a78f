//! A multi-room chat, with its page, on one server or on several that share a Redis.
//!
//! Run: `cargo run --example chat [ADDRESS [REDIS_URL]]` (default 127.0.0.1:9000) and open
//! http://127.0.0.1:9000/ in two browser tabs: pick a name and a room in each, and what one
//! tab says appears in the other. Joining and leaving are announced to the room.
//!
//! Several servers, one chat: start a Redis (`redis-server --port 6379`), then
//!
//! ```text
//! cargo run --example chat -- 127.0.0.1:9001 redis://127.0.0.1:6379
//! cargo run --example chat -- 127.0.0.1:9002 redis://127.0.0.1:6379
//! ```
//!
//! and open http://127.0.0.1:9001/ in one tab and http://127.0.0.1:9002/ in another: each room
//! is a topic, so messages, joins and leaves reach the room on both servers.
//!
//! The protocol, for other clients: connect to `ws://127.0.0.1:9000/chat/{room}?name=ada`
//! (the name may also come from the signed session's `name`), send text, receive JSON events:
//!
//! - `{"type":"welcome","you":"ada","room":"blue","members":["ada","bob"]}`, first, to you
//!   (the members on your server);
//! - `{"type":"joined","name":"bob"}` and `{"type":"left","name":"bob"}` to the rest of the
//!   room;
//! - `{"type":"message","from":"ada","text":".."}` to everyone in the room, you included;
//! - `{"type":"notice","text":".."}` to you, when a message of yours reached your server only
//!   (Redis is unreachable);
//! - an empty text message every 15 s: a heartbeat (`Server::heartbeat`), by which the page's
//!   client (wsock's, served at `/_wsock/client.js`) notices a dead connection;
//! - with `&presence` in the URL, who is in the room on every server, kept up to date: the
//!   presence `room:{room}` (the README's "Presence"), whose frames wsock's client turns into
//!   its member list (the page shows it).
//!
//! The page is `index.html` with `page.js` inline: the script compiled from `page.ts`,
//! TypeScript (strict) against the chat's types that wsock's contract generates from `Event`
//! (`contract.ts`) and the client package's. Both generated files are committed, so running
//! the example needs no Node. After changing `Event` (with `npm install --prefix client`):
//!
//! ```text
//! WSOCK_BLESS=1 cargo test --all-features --test example_kits chat_page_types  # contract.ts
//! WSOCK_BLESS=1 cargo test --all-features --test contract chat_page  # tsc: page.ts to page.js
//! ```
//!
//! Without `WSOCK_BLESS`, both tests fail while a file is stale; the second one is where tsc
//! points at the page's uses of a renamed or removed field.
//!
//! A room is 1 to 32 letters, digits, `-` or `_`; a name is 1 to 24 characters, no control
//! characters: anything else is refused before the upgrade with 400 and a body that says why.
//! What a server keeps is its own members: names are unique per server (a second `ada` on the
//! same server becomes `ada (2)`; two servers may each have an `ada`), a room holds up to 100
//! members per server (one more is closed with 1013, try again later), and the member list in
//! `welcome` is the room's members on your server (the presence has everyone's; two `ada`s on
//! two servers are one member there, with two connections). A message over 4 KiB closes the connection
//! with 1009, a binary one with 1003.

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
    let mut server = server();
    if let Some(url) = std::env::args().nth(2) {
        let redis = wsock_redis::Redis::connect(&url).await;
        server = server.broker(redis.map_err(std::io::Error::other)?);
    }
    server.serve(addr).await
}

pub(crate) fn server() -> Server {
    Server::new()
        .page("/", room::page())
        // The page's client reconnects when it hears nothing for 40 s.
        .heartbeat(std::time::Duration::from_secs(15))
        .state(Rooms::default())
        .route(chat)
}

/// The chat, tested in process with wsock's test kit (`cargo test --features test`): two
/// members, no port.
#[cfg(all(test, feature = "test"))]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use wsock::test::{TestClient, TestServer};

    async fn event(client: &mut TestClient) -> Value {
        client.recv::<Json<Value>>().await.0
    }

    #[tokio::test]
    async fn members_hear_each_other_and_bad_input_is_refused() {
        let app = TestServer::new(server());
        let mut ada = app.connect("/chat/blue?name=ada").await.unwrap();
        assert_eq!(
            event(&mut ada).await,
            json!({"type": "welcome", "you": "ada", "room": "blue", "members": ["ada"]})
        );
        let mut bob = app.connect("/chat/blue?name=bob").await.unwrap();
        assert_eq!(event(&mut bob).await["members"], json!(["ada", "bob"]));
        assert_eq!(
            event(&mut ada).await,
            json!({"type": "joined", "name": "bob"})
        );

        bob.send("hi ada").await;
        let said = json!({"type": "message", "from": "bob", "text": "hi ada"});
        assert_eq!(event(&mut ada).await, said);
        assert_eq!(event(&mut bob).await, said);

        bob.close(CloseCode::NORMAL).await;
        assert_eq!(
            event(&mut ada).await,
            json!({"type": "left", "name": "bob"})
        );

        let refused = app.connect("/chat/blue").await.unwrap_err();
        assert_eq!(
            (refused.status().as_u16(), refused.body()),
            (400, "choose a name: ?name=..")
        );
        ada.send(vec![1u8]).await;
        ada.expect_close(CloseCode::UNSUPPORTED).await;
        let mut carol = app.connect("/chat/blue?name=carol").await.unwrap();
        event(&mut carol).await;
        carol.send("x".repeat(5000)).await;
        carol.expect_close(CloseCode::TOO_BIG).await;
    }
}
