//! One server for every input: an echo endpoint behind wsock's real connection handling, fed
//! through an in-memory pipe on a paused-clock runtime (timeouts pass instantly when idle).

use std::sync::LazyLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsock::__private::FuzzHarness;
use wsock::prelude::*;

#[websocket("/echo")]
fn echo(out: Out<Message>) {
    on_message(|message: Message| out.write(message));
}

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime")
});

static SERVER: LazyLock<FuzzHarness> = LazyLock::new(|| {
    Server::new().route(echo).max_message_size(1 << 20).fuzz_harness()
});

/// Sends `input` as a client would, reads what the server answers, and checks that the
/// server neither panicked nor answered with anything but HTTP.
pub fn run(input: &[u8]) {
    RUNTIME.block_on(async {
        let (mut client, server_end) = tokio::io::duplex(1 << 16);
        let serving = tokio::spawn(async move { SERVER.serve(server_end).await });
        let exchange = async {
            let _ = client.write_all(input).await;
            let _ = client.shutdown().await;
            let mut response = Vec::new();
            let _ = client.read_to_end(&mut response).await;
            response
        };
        let response = tokio::time::timeout(Duration::from_secs(120), exchange)
            .await
            .expect("the server neither answered nor closed within its timeouts");
        drop(client);
        if !response.is_empty() {
            // HTTP/1.1, or HTTP/1.0 to an HTTP/1.0 request.
            assert!(response.starts_with(b"HTTP/1."), "not an HTTP response: {response:?}");
        }
        match tokio::time::timeout(Duration::from_secs(120), serving).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => panic!("serving the connection failed: {error}"),
            Err(_) => panic!("the connection was never released"),
        }
    });
}
