//! A baseline: an axum 0.8 WebSocket echo server.
//!
//! `axum_echo [ADDRESS]` (default 127.0.0.1:9002) prints `listening addr=..` once bound.

use axum::Router;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;

async fn upgrade(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(echo)
}

async fn echo(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        use axum::extract::ws::Message;
        if matches!(message, Message::Text(_) | Message::Binary(_))
            && socket.send(message).await.is_err()
        {
            break;
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".to_owned());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening addr={}", listener.local_addr()?);
    axum::serve(listener, Router::new().route("/", get(upgrade))).await
}
