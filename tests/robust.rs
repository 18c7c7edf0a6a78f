//! Secure defaults, RFC 6455 behaviour through wsock's dispatch, and load: bad input and
//! heavy use get the documented status or close code, and nothing accepted is lost.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use wsock::prelude::*;

#[websocket("/echo")]
fn echo(out: Out<Message>) {
    on_message(|message: Message| out.write(message));
}

#[websocket("/small", max_message_size = "1KiB")]
fn small(out: Out<String>) {
    on_message(|text: String| out.write(text.len().to_string()));
}

#[websocket("/chat", protocol = "chat.v2", protocol = "chat.v1")]
fn chat(out: Out<String>, req: Request) {
    out.write(format!("speaking {}", req.protocol().unwrap_or("nothing")));
}

static CLOSED: AtomicUsize = AtomicUsize::new(0);

#[websocket("/counted")]
fn counted(out: Out<String>) {
    on_message(|text: String| out.write(text));
    on_close(|| {
        CLOSED.fetch_add(1, Ordering::SeqCst);
    });
}

/// Queues a burst at once: a shutdown right after must still deliver all of it, in order.
#[websocket("/burst")]
fn burst(out: Out<String>) {
    for i in 0..500 {
        out.write(format!("burst {i}"));
    }
}

static STREAM_CLOSED: AtomicUsize = AtomicUsize::new(0);

/// Streams with backpressure until the connection closes.
#[websocket("/stream")]
fn stream(out: Out<Vec<u8>>) {
    let streamer = out.clone();
    tokio::spawn(async move { while streamer.send(vec![1u8; 16 << 10]).await.is_ok() {} });
    on_close(|| {
        STREAM_CLOSED.fetch_add(1, Ordering::SeqCst);
    });
}

fn endpoints() -> Server {
    Server::new()
        .route(stream)
        .route(echo)
        .route(small)
        .route(chat)
        .route(counted)
        .route(burst)
}

// ---------------------------------------------------------------------------------------------
// Secure defaults

#[tokio::test]
async fn a_cross_site_page_gets_403_unless_allowed() {
    let server = TestServer::start(endpoints().allow_origin("https://app.example.com")).await;
    let same = format!("http://{}", server.addr);
    let mut ws = connect_with(server.addr, "/echo", &[("origin", &same)]).await;
    send(&mut ws, "same origin").await;
    assert_eq!(next(&mut ws).await, WsMessage::text("same origin"));
    drop(ws);
    let allowed = connect_with(
        server.addr,
        "/echo",
        &[("origin", "https://app.example.com")],
    );
    drop(allowed.await);
    let (status, body) = refused(server.addr, "/echo", &[("origin", "https://evil.example")]).await;
    assert_eq!(status, 403);
    assert!(body.contains("https://evil.example"), "{body}");
    assert_eq!(
        refused(server.addr, "/echo", &[("origin", "null")]).await.0,
        403
    );
    server.stop().await;
}

/// An upgrade request written by hand, with the given `Host` and extra headers.
fn upgrade_request(host: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut request = format!(
        "GET /echo HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in extra {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// DNS rebinding: a page on evil.example whose name the attacker re-points at 127.0.0.1 sends
/// `Host` and `Origin` naming evil.example, which the origin check alone would take for the
/// same host. A server on a loopback address answers loopback names and IP addresses only.
#[tokio::test]
async fn a_name_re_pointed_at_loopback_is_refused() {
    let server = TestServer::start(endpoints().dev_console(true)).await;
    let port = server.addr.port();
    let evil = format!("evil.example:{port}");
    let evil_origin = format!("http://evil.example:{port}");
    let response = raw_http(
        server.addr,
        &upgrade_request(&evil, &[("Origin", &evil_origin)]),
    )
    .await;
    assert_eq!(status_of(&response), 403, "{response}");
    assert!(
        response.contains("host \"evil.example\" is not allowed")
            && response.contains("Server::allow_host"),
        "{response}"
    );
    // Pages and the dev console are refused to that name too.
    let console = format!("GET /echo HTTP/1.1\r\nHost: {evil}\r\n\r\n");
    assert_eq!(
        status_of(&raw_http(server.addr, console.as_bytes()).await),
        403
    );

    // The names this machine's own browser uses are accepted, with their own origin.
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        format!("app.localhost:{port}"),
    ] {
        let origin = format!("http://{host}");
        let mut ws = connect_with(
            server.addr,
            "/echo",
            &[("host", &host), ("origin", &origin)],
        )
        .await;
        send(&mut ws, &host).await;
        assert_eq!(next(&mut ws).await, WsMessage::text(host.as_str()));
    }
    server.stop().await;
}

/// Behind a reverse proxy on the same machine, the public name is allowed explicitly.
#[tokio::test]
async fn an_allowed_host_passes_on_loopback_and_others_do_not() {
    let server = TestServer::start(endpoints().allow_host("Chat.Example.com:443")).await;
    let mut ws = connect_with(
        server.addr,
        "/echo",
        &[
            ("host", "chat.example.com"),
            ("origin", "http://chat.example.com"),
        ],
    )
    .await;
    send(&mut ws, "proxied").await;
    assert_eq!(next(&mut ws).await, WsMessage::text("proxied"));
    drop(ws);
    let (status, _) = refused(server.addr, "/echo", &[("host", "evil.example")]).await;
    assert_eq!(status, 403);
    server.stop().await;

    // `allow_any_host` lifts the check.
    let server = TestServer::start(endpoints().allow_any_host()).await;
    drop(connect_with(server.addr, "/echo", &[("host", "evil.example")]).await);
    server.stop().await;
}

/// A browser sends one `Origin`; two, the first same-host and the second foreign, are a
/// forgery that must not pass on the first.
#[tokio::test]
async fn two_origin_headers_get_400() {
    let server = TestServer::start(endpoints()).await;
    let host = server.addr.to_string();
    let same = format!("http://{host}");
    let request = upgrade_request(&host, &[("Origin", &same), ("Origin", "http://evil.com")]);
    let response = raw_http(server.addr, &request).await;
    assert_eq!(status_of(&response), 400, "{response}");
    assert!(response.contains("at most one Origin header"), "{response}");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_is_dropped() {
    let server = TestServer::start(endpoints().handshake_timeout(Duration::from_millis(300))).await;
    let started = std::time::Instant::now();
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgr")
        .await
        .unwrap();
    raw_expect_eof(&mut slow).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "dropped too early, after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "dropped too late, after {waited:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_get_503() {
    let server = TestServer::start(endpoints().max_connections(2)).await;
    let first = server.connect("/echo").await;
    let second = server.connect("/echo").await;
    let (status, _) = refused(server.addr, "/echo", &[]).await;
    assert_eq!(status, 503);
    drop(first);
    // The slot frees once the server has seen the first connection end.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let url = format!("ws://{}/echo", server.addr);
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(url).await {
            drop(ws);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the freed slot was never reused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(second);
    server.stop().await;
}

#[tokio::test]
async fn a_silent_peer_is_pinged_then_closed_and_a_live_one_stays() {
    let server = TestServer::start(
        endpoints()
            .ping_interval(Duration::from_millis(100))
            .idle_timeout(Duration::from_millis(400)),
    )
    .await;
    // A raw client that never answers pings.
    let mut silent = raw_upgrade(server.addr, "/echo").await;
    let (first, payload) = raw_read_frame(&mut silent).await;
    assert_eq!(first & 0x0f, 0x9, "expected a ping first");
    assert!(payload.is_empty());
    let code = raw_close_code(&mut silent).await;
    assert_eq!(code, 1001);
    drop(silent);

    // A client that is read (and so answers pings) outlives the idle timeout.
    let mut live = server.connect("/echo").await;
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(900);
    while let Ok(message) = tokio::time::timeout_at(until, live.next()).await {
        match message {
            Some(Ok(WsMessage::Ping(_))) => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 2, "only {pings} pings");
    send(&mut live, "still here").await;
    assert_eq!(next(&mut live).await, WsMessage::text("still here"));
    drop(live);
    server.stop().await;
}

#[tokio::test]
async fn subprotocols_are_negotiated_or_refused_with_400() {
    let server = TestServer::start(endpoints()).await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/chat", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "other, chat.v1".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat.v1");
    assert_eq!(next_text(&mut ws).await, "speaking chat.v1");
    drop(ws);
    let (status, body) = refused(server.addr, "/chat", &[("sec-websocket-protocol", "x")]).await;
    assert_eq!(status, 400);
    assert!(body.contains("chat.v2, chat.v1"), "{body}");
    assert_eq!(refused(server.addr, "/chat", &[]).await.0, 400);
    server.stop().await;
}

#[tokio::test]
async fn an_endpoints_own_message_limit_closes_with_1009() {
    let server = TestServer::start(endpoints()).await;
    let mut ws = server.connect("/small").await;
    send(&mut ws, &"x".repeat(1024)).await;
    assert_eq!(next_text(&mut ws).await, "1024");
    send(&mut ws, &"x".repeat(1025)).await;
    assert_eq!(close_frame(&mut ws).await.0, 1009);
    // Other endpoints keep the server's limit.
    let mut ws = server.connect("/echo").await;
    send(&mut ws, &"y".repeat(100_000)).await;
    assert_eq!(next(&mut ws).await, WsMessage::text("y".repeat(100_000)));
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_writes_the_queued_messages_before_1001() {
    let server = TestServer::start(endpoints()).await;
    let mut ws = server.connect("/burst").await;
    server.handle.shutdown();
    for i in 0..500 {
        assert_eq!(next_text(&mut ws).await, format!("burst {i}"));
    }
    assert_eq!(close_frame(&mut ws).await.0, 1001);
    server.stop().await;
}

/// Waits until `STREAM_CLOSED` exceeds `before`.
async fn stream_closed_after(before: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while STREAM_CLOSED.load(Ordering::SeqCst) <= before {
        assert!(tokio::time::Instant::now() < deadline, "on_close never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_close_stuck_behind_unread_data_still_ends_in_time() {
    // A client that reads nothing while the endpoint streams: the 1001 of a shutdown cannot
    // be written, and the close timeout ends the connection; on_close runs.
    let server = TestServer::start(endpoints().close_timeout(Duration::from_millis(300))).await;
    let before = STREAM_CLOSED.load(Ordering::SeqCst);
    let stuck = raw_upgrade(server.addr, "/stream").await;
    tokio::time::sleep(Duration::from_millis(200)).await; // let the buffers fill
    let started = std::time::Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
    stream_closed_after(before).await;
    drop(stuck);
}

#[tokio::test]
async fn an_idle_client_that_does_not_read_is_closed_in_time() {
    let server = TestServer::start(
        endpoints()
            .ping_interval(Duration::from_millis(100))
            .idle_timeout(Duration::from_millis(300))
            .close_timeout(Duration::from_millis(300)),
    )
    .await;
    let before = STREAM_CLOSED.load(Ordering::SeqCst);
    let stuck = raw_upgrade(server.addr, "/stream").await;
    stream_closed_after(before).await;
    drop(stuck);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_an_unfinished_handshake() {
    let server = TestServer::start(endpoints()).await;
    let mut half = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown took {:?}",
        started.elapsed()
    );
    drop(half);
}

// ---------------------------------------------------------------------------------------------
// RFC 6455 through the dispatch

const FIN: u8 = 0x80;
const TEXT: u8 = 0x1;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;

#[tokio::test]
async fn fragments_are_reassembled_around_a_ping_that_is_answered() {
    let server = TestServer::start(endpoints()).await;
    let mut stream = raw_upgrade(server.addr, "/echo").await;
    stream.write_all(&raw_frame(TEXT, b"Hel")).await.unwrap();
    stream
        .write_all(&raw_frame(FIN | PING, b"are you there"))
        .await
        .unwrap();
    stream
        .write_all(&raw_frame(CONTINUATION, b"lo, "))
        .await
        .unwrap();
    stream
        .write_all(&raw_frame(FIN | CONTINUATION, "wörld".as_bytes()))
        .await
        .unwrap();
    assert_eq!(
        raw_read_frame(&mut stream).await,
        (FIN | 0xA, b"are you there".to_vec())
    );
    assert_eq!(
        raw_read_frame(&mut stream).await,
        (FIN | TEXT, "Hello, wörld".as_bytes().to_vec())
    );
    drop(stream);
    server.stop().await;
}

#[tokio::test]
async fn empty_fragments_and_empty_messages_are_echoed() {
    let server = TestServer::start(endpoints()).await;
    let mut stream = raw_upgrade(server.addr, "/echo").await;
    // In one write, so that the server finds them all in one read: an empty first fragment,
    // an empty one in the middle and an empty last one, then an empty message.
    let mut frames = raw_frame(TEXT, b"");
    frames.extend(raw_frame(CONTINUATION, b"Hi"));
    frames.extend(raw_frame(CONTINUATION, b""));
    frames.extend(raw_frame(FIN | CONTINUATION, b""));
    frames.extend(raw_frame(FIN | TEXT, b""));
    stream.write_all(&frames).await.unwrap();
    assert_eq!(
        raw_read_frame(&mut stream).await,
        (FIN | TEXT, b"Hi".to_vec())
    );
    assert_eq!(raw_read_frame(&mut stream).await, (FIN | TEXT, Vec::new()));
    // And one frame per write.
    for frame in [
        raw_frame(TEXT, b""),
        raw_frame(CONTINUATION, b""),
        raw_frame(FIN | CONTINUATION, b"yo"),
    ] {
        stream.write_all(&frame).await.unwrap();
    }
    assert_eq!(
        raw_read_frame(&mut stream).await,
        (FIN | TEXT, b"yo".to_vec())
    );
    drop(stream);
    server.stop().await;
}

#[tokio::test]
async fn invalid_utf8_split_across_fragments_closes_with_1007() {
    let server = TestServer::start(endpoints()).await;
    let mut stream = raw_upgrade(server.addr, "/echo").await;
    // "é" is C3 A9: the first fragment ends inside it, the second does not finish it.
    stream
        .write_all(&raw_frame(TEXT, &[b'a', 0xC3]))
        .await
        .unwrap();
    stream
        .write_all(&raw_frame(FIN | CONTINUATION, &[0x28, b'b']))
        .await
        .unwrap();
    assert_eq!(raw_close_code(&mut stream).await, 1007);
    raw_expect_eof(&mut stream).await;
    server.stop().await;
}

#[tokio::test]
async fn protocol_violations_close_with_1002() {
    let server = TestServer::start(endpoints()).await;
    let bad_close = |code: u16| raw_frame(FIN | CLOSE, &code.to_be_bytes());
    let cases: [(&str, Vec<u8>); 5] = [
        ("reserved bits", raw_frame(FIN | 0x40 | TEXT, b"x")),
        ("unknown opcode", raw_frame(FIN | 0x3, b"x")),
        ("close code 1005", bad_close(1005)),
        ("close code 999", bad_close(999)),
        (
            "continuation without a start",
            raw_frame(FIN | CONTINUATION, b"x"),
        ),
    ];
    for (case, bytes) in cases {
        let mut stream = raw_upgrade(server.addr, "/echo").await;
        stream.write_all(&bytes).await.unwrap();
        assert_eq!(raw_close_code(&mut stream).await, 1002, "{case}");
        raw_expect_eof(&mut stream).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn the_close_handshake_echoes_the_code_and_ends_the_connection() {
    let server = TestServer::start(endpoints()).await;
    let mut stream = raw_upgrade(server.addr, "/echo").await;
    let mut payload = 4000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    stream
        .write_all(&raw_frame(FIN | CLOSE, &payload))
        .await
        .unwrap();
    assert_eq!(raw_close_code(&mut stream).await, 4000);
    raw_expect_eof(&mut stream).await;

    // A client that never answers the server's close is dropped after the close timeout.
    let server2 = TestServer::start(endpoints().close_timeout(Duration::from_millis(200))).await;
    let mut stream = raw_upgrade(server2.addr, "/counted").await;
    server2.handle.shutdown();
    assert_eq!(raw_close_code(&mut stream).await, 1001);
    raw_expect_eof(&mut stream).await;
    server2.stop().await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Load

const CONNECTIONS: usize = 1000;
const MESSAGES: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_a_thousand_connections_lose_and_reorder_nothing() {
    let server = TestServer::start(endpoints()).await;
    let addr = server.addr;
    let started = std::time::Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CONNECTIONS {
        clients.spawn(async move {
            let url = format!("ws://{addr}/echo");
            let (ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("connect");
            let (mut sink, mut stream) = ws.split();
            let writer = tokio::spawn(async move {
                for m in 0..MESSAGES {
                    sink.feed(WsMessage::text(format!("{c}:{m}")))
                        .await
                        .unwrap();
                }
                sink.flush().await.unwrap();
                sink
            });
            let (mut received, mut wrong) = (0, 0);
            while received < MESSAGES {
                match stream.next().await {
                    Some(Ok(WsMessage::Text(text))) => {
                        wrong += usize::from(text.as_str() != format!("{c}:{received}"));
                        received += 1;
                    }
                    Some(Ok(_)) => {}
                    other => panic!("connection {c} ended early: {other:?}"),
                }
            }
            let mut ws = writer.await.unwrap().reunite(stream).unwrap();
            ws.close(None).await.ok();
            (received, wrong)
        });
    }
    let (mut received, mut wrong) = (0, 0);
    let all = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(result) = clients.join_next().await {
            let (r, w) = result.expect("a client failed");
            received += r;
            wrong += w;
        }
    });
    all.await.expect("the soak did not finish in 120 s");
    let lost = CONNECTIONS * MESSAGES - received;
    println!(
        "soak: {CONNECTIONS} connections x {MESSAGES} messages in {:?}: {lost} lost, {wrong} reordered",
        started.elapsed()
    );
    assert_eq!((lost, wrong), (0, 0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_thousand_connections_sends_1001_to_all_and_runs_every_on_close() {
    let server = TestServer::start(endpoints()).await;
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut ws = server.connect("/counted").await;
        send(&mut ws, "hi").await;
        assert_eq!(next_text(&mut ws).await, "hi");
        clients.push(ws);
    }
    let before = CLOSED.load(Ordering::SeqCst);
    server.handle.shutdown();
    let mut readers = tokio::task::JoinSet::new();
    for mut ws in clients {
        readers.spawn(async move {
            let code = close_frame(&mut ws).await.0;
            ws.close(Some(CloseFrame {
                code: code.into(),
                reason: "".into(),
            }))
            .await
            .ok();
            code
        });
    }
    let mut codes = Vec::new();
    while let Some(code) = readers.join_next().await {
        codes.push(code.unwrap());
    }
    assert_eq!(codes.len(), CONNECTIONS);
    assert!(codes.iter().all(|&code| code == 1001), "not all got 1001");
    tokio::time::timeout(WAIT, server.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        CLOSED.load(Ordering::SeqCst) - before,
        CONNECTIONS,
        "on_close count"
    );
}

/// Messages that arrive in one read with the client's close (or right before a bad frame) are
/// all answered before the close: the replies a synchronous section wrote are not dropped by
/// the close that follows them in the same batch.
#[tokio::test]
async fn replies_to_messages_read_with_the_close_go_out_before_it() {
    let server = TestServer::start(endpoints()).await;
    for (end, code) in [
        (raw_frame(0x88, &1000u16.to_be_bytes()), 1000),
        // A continuation with nothing to continue: a protocol error.
        (raw_frame(0x80, b"?"), 1002),
    ] {
        let mut stream = raw_upgrade(server.addr, "/echo").await;
        let mut burst = Vec::new();
        for i in 0..5 {
            burst.extend(raw_frame(0x81, format!("message {i}").as_bytes()));
        }
        burst.extend(end);
        stream.write_all(&burst).await.unwrap();
        for i in 0..5 {
            let (first, payload) = raw_read_frame(&mut stream).await;
            assert_eq!(
                (first, String::from_utf8(payload).unwrap()),
                (0x81, format!("message {i}")),
                "before the close {code}"
            );
        }
        assert_eq!(raw_close_code(&mut stream).await, code);
    }
    server.stop().await;
}

/// Frames the client sends in the same write as its upgrade request (read by the server
/// along with the request) are the connection's first messages.
#[tokio::test]
async fn frames_sent_with_the_upgrade_request_are_read() {
    let server = TestServer::start(endpoints()).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut bytes = format!(
        "GET /echo HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    )
    .into_bytes();
    bytes.extend(raw_frame(0x81, b"first"));
    bytes.extend(raw_frame(0x82, b"second"));
    stream.write_all(&bytes).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(raw_read_frame(&mut stream).await, (0x81, b"first".to_vec()));
    assert_eq!(
        raw_read_frame(&mut stream).await,
        (0x82, b"second".to_vec())
    );
    drop(stream);
    server.stop().await;
}

/// A plain upgrade request is read without hyper, anything else with it: both ways end alike.
/// A head in pieces, a head over 8 KiB (hyper's, with the bytes read so far put back and the
/// frames behind it), and a refusal, framed as HTTP says and closed.
#[tokio::test]
async fn upgrade_requests_in_pieces_or_too_long_for_the_quick_path_are_answered_alike() {
    let server = TestServer::start(endpoints()).await;
    let request = upgrade_request(&server.addr.to_string(), &[]);

    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    for piece in request.chunks(40) {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
        .write_all(&raw_frame(0x81, b"in pieces"))
        .await
        .unwrap();
    assert_eq!(
        raw_read_frame(&mut stream).await,
        (0x81, b"in pieces".to_vec())
    );
    drop(stream);

    let cookie = "c".repeat(10 << 10);
    let mut long = upgrade_request(&server.addr.to_string(), &[("cookie", &cookie)]);
    long.extend(raw_frame(0x81, b"behind a long head"));
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(&long).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    assert_eq!(
        raw_read_frame(&mut stream).await,
        (0x81, b"behind a long head".to_vec())
    );
    drop(stream);

    let refused = raw_http(
        server.addr,
        &upgrade_request(
            &server.addr.to_string(),
            &[("origin", "https://evil.example")],
        ),
    )
    .await;
    assert_eq!(status_of(&refused), 403, "{refused}");
    let (head, body) = refused.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert!(
        head.contains(&format!("\r\ncontent-length: {}", body.len())),
        "{head}"
    );
    assert!(head.contains("\r\ndate: "), "{head}");
    assert!(body.contains("https://evil.example"), "{body}");
    server.stop().await;
}
