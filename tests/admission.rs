//! One admission rule for every way in: while the open WebSocket connections and the
//! handshakes under way reach `max_connections`, a request gets 503 with the same body,
//! whether it came through the built-in listener, the tower `Service` (inside axum), the test
//! kit or the fuzz harness; once a connection ends, the next one is admitted.

mod common;

use std::time::Duration;

use common::*;
use wsock::prelude::*;

const BUSY: &str = "too many connections: try again later\n";

#[websocket("/echo")]
fn echo(out: Out<String>) {
    on_message(|text: String| out.write(text));
}

fn server() -> Server {
    Server::new()
        .route(echo)
        .page("/", "<!doctype html><title>page</title>")
        .max_connections(1)
}

/// Waits until `open()` says no connection is open any more.
async fn until_closed(open: impl Fn() -> usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while open() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the connection never ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_listener_refuses_with_503_and_admits_again() {
    let server = TestServer::start(server()).await;
    let first = server.connect("/echo").await;
    let (status, body) = refused(server.addr, "/echo", &[]).await;
    assert_eq!((status, body.as_str()), (503, BUSY));
    // Pages too: the server is full, whatever is asked.
    let page = raw_http(server.addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(status_of(&page), 503, "{page}");
    drop(first);
    let handle = server.handle.clone();
    until_closed(|| handle.open_connections()).await;
    drop(server.connect("/echo").await);
    server.stop().await;
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn the_service_refuses_with_503_and_admits_again() {
    let ws = server();
    let handle = ws.handle();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().merge(ws.into_router());
    let served = tokio::spawn(async move { axum::serve(listener, router).await });

    let first = connect_with(addr, "/echo", &[]).await;
    let (status, body) = refused(addr, "/echo", &[]).await;
    assert_eq!((status, body.as_str()), (503, BUSY));
    let page = raw_http(addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(status_of(&page), 503, "{page}");
    drop(first);
    until_closed(|| handle.open_connections()).await;
    drop(connect_with(addr, "/echo", &[]).await);
    handle.shutdown().await;
    served.abort();
}

#[cfg(feature = "test")]
#[tokio::test]
async fn the_test_kit_refuses_with_503_and_admits_again() {
    let app = wsock::test::TestServer::new(server());
    let mut first = app.connect("/echo").await.unwrap();
    let refused = app.connect("/echo").await.unwrap_err();
    assert_eq!(
        (refused.status().as_u16(), refused.body()),
        (503, BUSY.trim_end())
    );
    first.close(CloseCode::NORMAL).await;
    until_closed(|| app.open_connections()).await;
    let mut again = app.connect("/echo").await.unwrap();
    again.send("hello").await;
    assert_eq!(again.recv::<String>().await, "hello");
}

#[cfg(feature = "fuzz")]
#[tokio::test]
async fn the_fuzz_harness_refuses_with_503_and_admits_again() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const UPGRADE: &[u8] = b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    /// Sends the upgrade request and reads the answer's head.
    async fn ask(
        harness: &Arc<wsock::__private::FuzzHarness>,
    ) -> (tokio::io::DuplexStream, String) {
        let (mut client, server_end) = tokio::io::duplex(64 << 10);
        let serving = Arc::clone(harness);
        tokio::spawn(async move { serving.serve(server_end).await });
        client.write_all(UPGRADE).await.unwrap();
        let mut answer = Vec::new();
        let mut byte = [0];
        while !answer.ends_with(b"\r\n\r\n") {
            let read = tokio::time::timeout(WAIT, client.read(&mut byte)).await;
            assert_eq!(read.expect("no answer in time").unwrap(), 1, "no answer");
            answer.push(byte[0]);
        }
        (client, String::from_utf8(answer).unwrap())
    }

    let harness = Arc::new(server().fuzz_harness());
    let (first, answer) = ask(&harness).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    let (_, answer) = ask(&harness).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // The socket's end ends the first connection, and frees its place.
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, answer) = ask(&harness).await;
        if answer.starts_with("HTTP/1.1 101") {
            break;
        }
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the freed place was never given again"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
