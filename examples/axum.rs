//! The chat example inside an axum app: a JSON REST route, the chat page and the chat
//! endpoint on one port.
//!
//! Run: `cargo run --example axum --features axum [ADDRESS]` (default 127.0.0.1:3000), open
//! http://127.0.0.1:3000/ in two tabs to chat, and http://127.0.0.1:3000/api/rooms for the
//! rooms with their member counts, read from the same state the endpoint writes:
//! `{"rooms":[{"room":"lobby","members":2}]}`. The chat protocol is the `chat` example's.
//!
//! Ctrl-C stops axum and wsock together: wsock's handle, awaited in axum's graceful shutdown,
//! closes every WebSocket with 1001 and runs each `on_close` (axum alone would leave upgraded
//! connections open).

#[path = "chat/room.rs"]
mod room;

use std::net::SocketAddr;

use axum::extract::State;
use axum::routing::get;
use serde::Serialize;
use wsock::Server;

use room::{Rooms, chat};

#[derive(Serialize)]
struct RoomList {
    rooms: Vec<RoomCount>,
}

#[derive(Serialize)]
struct RoomCount {
    room: String,
    members: usize,
}

/// `GET /api/rooms`: every room with its member count.
async fn list_rooms(State(rooms): State<Rooms>) -> axum::Json<RoomList> {
    let rooms = rooms
        .counts()
        .into_iter()
        .map(|(room, members)| RoomCount { room, members })
        .collect();
    axum::Json(RoomList { rooms })
}

/// The chat's page and endpoint, on the rooms the REST route reads.
fn chat_server(rooms: &Rooms) -> Server {
    Server::new()
        .page("/", room::page())
        // The page's client reconnects when it hears nothing for 40 s.
        .heartbeat(std::time::Duration::from_secs(15))
        .state(rooms.clone())
        .route(chat)
}

/// The whole app: the REST route, then the chat merged in; and wsock's handle, for the
/// graceful shutdown.
fn app(rooms: &Rooms) -> (axum::Router, wsock::Handle) {
    let ws = chat_server(rooms);
    let handle = ws.handle();
    let app = axum::Router::new()
        .route("/api/rooms", get(list_rooms))
        .with_state(rooms.clone())
        .merge(ws.into_router());
    (app, handle)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let (app, handle) = app(&Rooms::default());
    let shutdown = handle.shutdown_on_ctrl_c(); // Ctrl-C caught from here on
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    // At Ctrl-C, wsock's 1001 to every WebSocket, then axum stops.
    .with_graceful_shutdown(shutdown)
    .await
}

/// The whole app as `main` serves it, with wsock's test kit (`cargo test --features
/// test,axum`): the endpoint and the REST route, on one port.
#[cfg(all(test, feature = "test"))]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use wsock::test::TestRouter;

    #[tokio::test]
    async fn the_rest_route_counts_who_the_endpoint_let_in() {
        let (app, _handle) = app(&Rooms::default());
        let app = TestRouter::new(app);
        let mut ada = app.connect("/chat/lobby?name=ada").await.unwrap();
        let mut bob = app.connect("/chat/lobby?name=bob").await.unwrap();
        let mut eve = app.connect("/chat/attic?name=eve").await.unwrap();
        for client in [&mut ada, &mut bob, &mut eve] {
            let welcome = client.recv::<wsock::Json<Value>>().await.0;
            assert_eq!(welcome["type"], "welcome");
        }
        let refused = app.connect("/chat/lobby").await.unwrap_err();
        assert_eq!(refused.status(), 400);
        assert_eq!(refused.body(), "choose a name: ?name=..");

        let rooms = app.get("/api/rooms").await;
        assert_eq!(rooms.status(), 200);
        assert_eq!(
            rooms.json::<Value>(),
            json!({"rooms": [{"room": "attic", "members": 1}, {"room": "lobby", "members": 2}]})
        );
    }
}
