//! TLS: wss:// and https:// with a certificate made in the test, and what happens to clients
//! that do not speak TLS or stall in the middle of it.
#![cfg(feature = "tls")]

mod common;

use std::time::Duration;

use common::tls::Cert;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wsock::Tls;
use wsock::prelude::*;

#[websocket("/echo")]
fn echo(out: Out<Message>) {
    on_message(|message: Message| out.write(message));
}

#[websocket("/bye")]
fn bye(out: Out<String>) {
    out.write("bye");
    out.close();
}

fn tls_server(cert: &Cert) -> Server {
    let tls = Tls::from_pem(&cert.cert_pem, &cert.key_pem).expect("the test certificate");
    Server::new().route(echo).route(bye).tls(tls)
}

/// At the end of a connection the server says goodbye in TLS too (close_notify), so the
/// client sees a clean end of stream rather than a truncation.
#[tokio::test]
async fn a_closed_connection_ends_with_close_notify() {
    let cert = Cert::new();
    let server = TestServer::start(tls_server(&cert)).await;
    let mut tls = cert.tls(server.addr).await;
    tls.write_all(
        b"GET /bye HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    // The 101, "bye", the close frame; then our close frame answers, and the stream ends.
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    while !seen.windows(2).any(|w| w == [0x88, 0x02]) {
        let n = tokio::time::timeout(WAIT, tls.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the stream ended before the close frame");
        seen.extend_from_slice(&chunk[..n]);
    }
    tls.write_all(&common::frame(0x8, &[0x03, 0xe8], true))
        .await
        .unwrap();
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(WAIT, tls.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(
        ended.is_ok(),
        "the stream ended without close_notify: {ended:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn wss_echoes_for_a_client_that_trusts_the_certificate() {
    let cert = Cert::new();
    let server = TestServer::start(tls_server(&cert).dev_console(true)).await;

    let mut ws = cert.connect(server.addr, "/echo").await;
    let (_, session) = ws.get_ref().get_ref();
    assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
    send(&mut ws, "over tls").await;
    assert_eq!(next(&mut ws).await, WsMessage::text("over tls"));
    let big = vec![7u8; 1 << 20];
    futures_util::SinkExt::send(&mut ws, WsMessage::binary(big.clone()))
        .await
        .unwrap();
    assert_eq!(next(&mut ws).await, WsMessage::binary(big));
    drop(ws);

    // The dev console comes over https.
    let mut tls = cert.tls(server.addr).await;
    tls.write_all(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut page = Vec::new();
    tokio::time::timeout(WAIT, tls.read_to_end(&mut page))
        .await
        .expect("no page in time")
        .unwrap();
    let page = String::from_utf8_lossy(&page);
    assert_eq!(status_of(&page), 200, "{page}");
    assert!(page.contains("<code>echo</code>"), "{page}");
    server.stop().await;
}

/// The certificate and key come from files as well; broken PEM says what is wrong.
#[tokio::test]
async fn certificates_load_from_files_and_bad_pem_is_an_error() {
    let cert = Cert::new();
    let tls = Tls::from_pem_files(cert.cert_file(), cert.key_file()).unwrap();
    let server = TestServer::start(Server::new().route(echo).tls(tls)).await;
    let mut ws = cert.connect(server.addr, "/echo").await;
    send(&mut ws, "from files").await;
    assert_eq!(next(&mut ws).await, WsMessage::text("from files"));
    drop(ws);
    server.stop().await;

    let error = |result: std::io::Result<Tls>| result.unwrap_err().to_string();
    assert!(error(Tls::from_pem("not pem", &cert.key_pem)).contains("no certificate"));
    assert!(error(Tls::from_pem(&cert.cert_pem, "not pem")).contains("no private key"));
    let other = Cert::new();
    assert!(
        error(Tls::from_pem(&cert.cert_pem, &other.key_pem)).contains("do not fit"),
        "a key that is not the certificate's"
    );
    let missing = cert.dir.join("missing.pem");
    assert!(error(Tls::from_pem_files(&missing, cert.key_file())).contains("missing.pem"));
}

/// Reads until the server closes the connection; returns what it sent.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("the server did not drop the connection");
    answer
}

#[tokio::test]
async fn plain_http_and_garbage_on_the_tls_port_are_dropped() {
    let cert = Cert::new();
    let server = TestServer::start(tls_server(&cert)).await;
    for input in [
        &b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n"[..],
        &[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 4, 5, 6, 7],
    ] {
        let mut plain = TcpStream::connect(server.addr).await.unwrap();
        plain.write_all(input).await.unwrap();
        let answer = until_closed(&mut plain).await;
        assert!(
            !String::from_utf8_lossy(&answer).contains("HTTP/1.1"),
            "answered in plain HTTP: {answer:?}"
        );
    }
    // The server keeps serving.
    let mut ws = cert.connect(server.addr, "/echo").await;
    send(&mut ws, "still here").await;
    assert_eq!(next(&mut ws).await, WsMessage::text("still here"));
    drop(ws);
    server.stop().await;
}

/// A client that stops in the middle of its TLS handshake holds a place of
/// `max_connections` until the handshake timeout drops it; nobody else waits on it.
#[tokio::test]
async fn a_stalled_tls_handshake_counts_and_is_dropped_in_time() {
    let cert = Cert::new();
    let server = TestServer::start(
        tls_server(&cert)
            .max_connections(2)
            .handshake_timeout(Duration::from_millis(500)),
    )
    .await;
    // The start of a TLS record holding a ClientHello, and then nothing.
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01])
        .await
        .unwrap();
    let started = tokio::time::Instant::now();

    // One place is left: a client gets through while the other stalls.
    let mut ws = cert.connect(server.addr, "/echo").await;
    send(&mut ws, "not held up").await;
    assert_eq!(next(&mut ws).await, WsMessage::text("not held up"));
    // Both places are taken now (the stalled handshake counts): 503, over TLS.
    let third = cert.tls(server.addr).await;
    let url = format!("wss://localhost:{}/echo", server.addr.port());
    match tokio_tungstenite::client_async(url, third).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!(
            "expected 503, got {:?}",
            other.map(|(_, response)| response)
        ),
    }

    until_closed(&mut stalled).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "the stalled handshake was dropped after {waited:?}"
    );
    drop(ws);
    server.stop().await;
}
