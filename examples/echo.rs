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
    Server::new()
        .route(echo)
        .max_message_size(64 << 20)
        .max_frame_size(64 << 20)
        .max_connections(19_900)
        .serve(addr)
        .await
}
