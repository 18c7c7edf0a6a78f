//! The two endpoints of Play's WebSocket guide, on ws://127.0.0.1:9000.
//!
//! Run: `cargo run --example hello` (or `cargo run --example hello -- 127.0.0.1:9001` for
//! another address), then connect a client, for example `websocat ws://127.0.0.1:9000/` or
//! `python3 -m websockets ws://127.0.0.1:9000/`, and type lines to send them.
//!
//! - ws://127.0.0.1:9000/ greets you with `Hello!`; the server prints every message you send,
//!   and `Disconnected` when you leave.
//! - ws://127.0.0.1:9000/hello says `Hello!` and closes (1000).
//!
//! Ctrl-C stops the server gracefully: open connections get 1001 (going away).

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
    tracing_subscriber::fmt().with_target(false).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".to_owned());
    Server::new().route(index).route(hello).serve(addr).await
}

/// The endpoints, tested in process with wsock's test kit (`cargo test --features test`).
#[cfg(all(test, feature = "test"))]
mod tests {
    use super::*;
    use wsock::test::TestServer;

    #[tokio::test]
    async fn index_greets_and_hello_says_hello_then_closes() {
        let app = TestServer::new(Server::new().route(index).route(hello));
        let mut client = app.connect("/").await.unwrap();
        assert_eq!(client.recv::<String>().await, "Hello!");
        client.send("an event").await;
        client.close(CloseCode::NORMAL).await;

        let mut client = app.connect("/hello").await.unwrap();
        assert_eq!(client.recv::<String>().await, "Hello!");
        client.expect_close(CloseCode::NORMAL).await;
    }
}
