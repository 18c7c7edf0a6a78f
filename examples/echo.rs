//! Echoes every message back unchanged: text as text, binary as binary.
//!
//! Run: `cargo run --release --example echo [ADDRESS]` (default 127.0.0.1:9000), then connect
//! to ws://127.0.0.1:9000/ with any client. The benchmark and conformance tools use this
//! server, so it accepts messages up to 64 MiB, as conformance-suite echo servers do, and up
//! to 19,900 connections at once (raise the open-file limit, `ulimit -n`, to match).

use wsock::prelude::*;

/// Sends each message back as it came.
#[websocket("/")]
fn echo(out: Out<Message>) {
    on_message(|message: Message| out.write(message));
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
    let server = Server::new()
        .route(echo)
        .max_message_size(64 << 20)
        .max_frame_size(64 << 20)
        .max_connections(19_900);
    // With `--features prometheus`: the metrics at /metrics (the benchmark measures their cost).
    #[cfg(feature = "prometheus")]
    let server = match wsock::Prometheus::install() {
        Ok(prometheus) => server.metrics("/metrics", prometheus),
        Err(_) => server, // the test kit's tests make several servers in one process
    };
    server
}

/// The endpoint, tested in process with wsock's test kit (`cargo test --features test`).
#[cfg(all(test, feature = "test"))]
mod tests {
    use super::*;
    use wsock::test::TestServer;

    #[tokio::test]
    async fn echoes_text_as_text_and_binary_as_binary() {
        let app = TestServer::new(server());
        let mut client = app.connect("/").await.unwrap();
        client.send("text").await;
        assert_eq!(client.recv::<Message>().await, Message::text("text"));
        client.send(vec![0u8, 255]).await;
        assert_eq!(
            client.recv::<Message>().await,
            Message::binary(vec![0u8, 255])
        );
        let big = "x".repeat(1 << 20);
        client.send(big.clone()).await;
        assert_eq!(client.recv::<String>().await, big);
    }
}
