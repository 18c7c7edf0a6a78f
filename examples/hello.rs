//! The two endpoints of Play's WebSocket guide, on ws://127.0.0.1:9000.
//!
//! Run: `cargo run --example hello`, then connect a client, for example
//! `python3 -m websockets ws://127.0.0.1:9000/` (type a line to send it). Connecting to
//! ws://127.0.0.1:9000/ greets you with `Hello!`, prints what you send and `Disconnected` when
//! you leave; ws://127.0.0.1:9000/hello says `Hello!` and closes. Ctrl-C stops the server
//! gracefully.

use wsock::prelude::*;

/// Logs every event, says hello, logs the disconnect.
#[websocket("/")]
fn index(out: Out<String>) {
    on_message(|event: String| {
        println!("{event}");
    });
    on_close(|| {
        println!("Disconnected");
    });
    out.write("Hello!");
}

/// Discards all input, says hello and closes.
#[websocket("/hello")]
fn hello(out: Out<String>) {
    out.write("Hello!");
    out.close();
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    Server::new()
        .route(index)
        .route(hello)
        .serve("127.0.0.1:9000")
        .await
}
