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
    server().serve(addr).await
}

fn server() -> Server {
    Server::new()
        .page("/", include_str!("index.html"))
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
            json!({"type": "joined", "name": "bob", "members": ["ada", "bob"]})
        );

        bob.send("hi ada").await;
        let said = json!({"type": "message", "from": "bob", "text": "hi ada"});
        assert_eq!(event(&mut ada).await, said);
        assert_eq!(event(&mut bob).await, said);

        bob.close(CloseCode::NORMAL).await;
        assert_eq!(
            event(&mut ada).await,
            json!({"type": "left", "name": "bob", "members": ["ada"]})
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
