//! The examples as a newcomer runs them: each binary started on 127.0.0.1:0, its address read
//! from its log, and driven by a real client. `cargo test` builds the examples first.

mod common;

use std::time::Duration;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use common::example::Example;
use common::{connect_with, next, next_text, refused};

#[tokio::test]
async fn hello_example_behaves_as_the_readme_says() {
    let mut example = Example::start("hello").await;

    let mut ws = example.connect("/").await;
    assert_eq!(next(&mut ws).await, Message::text("Hello!"));
    ws.send(Message::text("a message from the test"))
        .await
        .unwrap();
    example.expect_output("a message from the test").await;
    ws.close(Some(CloseFrame {
        code: 1000.into(),
        reason: "".into(),
    }))
    .await
    .unwrap();
    example.expect_output("Disconnected").await;

    let mut ws = example.connect("/hello").await;
    assert_eq!(next(&mut ws).await, Message::text("Hello!"));
    match next(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected a close frame, got {other:?}"),
    }
    example.stop().await;
}

#[tokio::test]
async fn ctrl_c_shuts_the_example_down_gracefully() {
    let mut example = Example::start("hello").await;
    let mut ws = example.connect("/").await;
    assert_eq!(next(&mut ws).await, Message::text("Hello!"));
    example.interrupt();
    match next(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a close frame, got {other:?}"),
    }
    drop(ws);
    example.expect_output("Disconnected").await;
    let status = example.wait().await;
    assert!(status.success(), "the example exited with {status}");
}

/// A second Ctrl-C while the connections drain drops them at once: a client that never
/// answers the server's close would otherwise hold the shutdown for the close timeout (5 s).
#[tokio::test]
async fn a_second_ctrl_c_exits_at_once() {
    let mut example = Example::start("hello").await;
    // Upgraded, then silent: it reads nothing and never answers the close.
    let _silent = common::raw_upgrade(example.addr, "/").await;
    // Its ready code ran ("Hello!" queued) before the first Ctrl-C.
    tokio::time::sleep(Duration::from_millis(100)).await;
    example.interrupt();
    example.expect_output("Ctrl-C: shutting down").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = std::time::Instant::now();
    example.interrupt();
    example
        .expect_output("Ctrl-C again: dropping the remaining connections")
        .await;
    let status = example.wait().await;
    let took = second.elapsed();
    assert!(status.success(), "the example exited with {status}");
    assert!(
        took < Duration::from_secs(2),
        "the example took {took:?} to exit after the second Ctrl-C"
    );
}

#[tokio::test]
async fn echo_example_echoes_text_and_binary() {
    let example = Example::start("echo").await;
    let mut ws = example.connect("/").await;
    ws.send(Message::text("text stays text")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("text stays text"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(vec![0u8, 1, 2, 255]));
    let big = "x".repeat(1 << 20);
    ws.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text(big));
    example.stop().await;
}

#[tokio::test]
async fn json_example_answers_commands_as_its_header_says() {
    let example = Example::start("json").await;
    let mut ws = example.connect("/todo").await;
    let mut ask = async |command: &str| {
        ws.send(Message::text(command)).await.unwrap();
        next_text(&mut ws).await
    };
    assert_eq!(
        ask(r#"{"op":"add","text":"buy milk"}"#).await,
        r#"{"added":{"id":1,"text":"buy milk","done":false}}"#
    );
    assert_eq!(
        ask(r#"{"op":"done","id":1}"#).await,
        r#"{"updated":{"id":1,"text":"buy milk","done":true}}"#
    );
    assert_eq!(
        ask(r#"{"op":"list"}"#).await,
        r#"{"items":[{"id":1,"text":"buy milk","done":true}]}"#
    );
    assert_eq!(
        ask(r#"{"op":"done","id":7}"#).await,
        r#"{"error":"no item 7"}"#
    );
    assert_eq!(
        ask("hello").await,
        r#"{"error":"invalid JSON: expected value at line 1 column 1"}"#
    );
    example.stop().await;
}

#[tokio::test]
async fn rooms_example_shares_a_room_and_checks_the_seat() {
    let example = Example::start("rooms").await;
    let mut three = example.connect("/rooms/blue/seats/3").await;
    assert_eq!(next_text(&mut three).await, "welcome to blue, seat 3");
    let mut four = example.connect("/rooms/blue/seats/4").await;
    assert_eq!(next_text(&mut four).await, "welcome to blue, seat 4");
    let mut elsewhere = example.connect("/rooms/red/seats/3").await;
    assert_eq!(next_text(&mut elsewhere).await, "welcome to red, seat 3");
    three.send(Message::text("hi")).await.unwrap();
    assert_eq!(next_text(&mut four).await, "seat 3: hi");
    assert_eq!(next_text(&mut three).await, "seat 3: hi");
    let (status, body) = refused(example.addr, "/rooms/blue/seats/x", &[]).await;
    assert_eq!(status, 400);
    assert!(body.contains("invalid path parameter `seat`"), "{body}");
    example.stop().await;
}

#[tokio::test]
async fn auth_example_needs_the_printed_session_cookie() {
    let example = Example::start("auth").await;
    let cookie = example
        .banner
        .iter()
        .find_map(|line| line.split("Cookie: ").nth(1))
        .expect("the example prints a cookie")
        .trim()
        .to_owned();
    assert_eq!(
        refused(example.addr, "/me", &[]).await,
        (401, "log in first\n".to_owned())
    );
    let tampered = cookie.replace("ada", "eve");
    assert_eq!(
        refused(example.addr, "/me", &[("cookie", &tampered)])
            .await
            .0,
        401
    );

    let mut ws = connect_with(example.addr, "/me", &[("cookie", &cookie)]).await;
    assert_eq!(next_text(&mut ws).await, "hello ada");
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "ada: hi");
    example.stop().await;
}

/// The server's resident memory, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_client_that_never_reads_cannot_grow_server_memory() {
    let example = Example::start("echo").await;
    let pid = example.child.id().unwrap();
    let baseline = rss_kib(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // 4,000 messages of 64 KiB: 256 MiB echoed to a client that reads none of it.
    let ws = example.connect("/").await;
    let (mut sink, _unread) = futures_util::StreamExt::split(ws);
    let chunk = vec![0x5au8; 64 << 10];
    let mut sent = 0;
    let flood = async {
        for _ in 0..4000 {
            if sink.send(Message::binary(chunk.clone())).await.is_err() {
                break; // the server gave up on us and dropped the connection
            }
            sent += 1;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), flood).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    sampler.abort();
    let growth_mib = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(baseline)
        / 1024;
    println!(
        "slow reader: {sent} messages of 64 KiB sent, server RSS grew by at most {growth_mib} MiB"
    );
    // The outbound queue (1024 messages) bounds what the server holds: far below what was sent.
    assert!(
        sent > 1100,
        "the flood stopped early, after {sent} messages"
    );
    assert!(growth_mib < 160, "server memory grew by {growth_mib} MiB");
    example.stop().await;
}

/// The next chat event, parsed.
async fn event(ws: &mut common::Client) -> serde_json::Value {
    serde_json::from_str(&next_text(ws).await).expect("chat events are JSON")
}

#[tokio::test]
async fn chat_example_announces_broadcasts_and_refuses_bad_names() {
    let example = Example::start("chat").await;

    // Its page is served at `/`.
    let page = common::raw_http(example.addr, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert_eq!(common::status_of(&page), 200, "{page}");
    assert!(page.contains("<title>wsock chat</title>"), "{page}");

    let mut ada = example.connect("/chat/blue?name=ada").await;
    let welcome = event(&mut ada).await;
    assert_eq!(
        welcome,
        serde_json::json!({"type": "welcome", "you": "ada", "room": "blue", "members": ["ada"]})
    );
    // A second ada is renamed; the room hears of the arrival.
    let mut twin = example.connect("/chat/blue?name=ada").await;
    assert_eq!(event(&mut twin).await["you"], "ada (2)");
    assert_eq!(
        event(&mut ada).await,
        serde_json::json!({"type": "joined", "name": "ada (2)"})
    );
    // Another room hears nothing.
    let mut red = example.connect("/chat/red?name=bob").await;
    assert_eq!(event(&mut red).await["members"], serde_json::json!(["bob"]));

    twin.send(Message::text("  hi all  ")).await.unwrap();
    let said = serde_json::json!({"type": "message", "from": "ada (2)", "text": "hi all"});
    assert_eq!(event(&mut ada).await, said);
    assert_eq!(event(&mut twin).await, said, "the speaker gets their copy");

    twin.close(None).await.unwrap();
    assert_eq!(
        event(&mut ada).await,
        serde_json::json!({"type": "left", "name": "ada (2)"})
    );

    // Bad rooms and names are refused before the upgrade, saying why.
    let (status, body) = refused(example.addr, "/chat/a%20b?name=x", &[]).await;
    assert_eq!(status, 400);
    assert!(body.contains("a room is 1 to 32 letters"), "{body}");
    let (status, body) = refused(example.addr, "/chat/blue", &[]).await;
    assert_eq!((status, body.as_str()), (400, "choose a name: ?name=..\n"));
    let long = format!("/chat/blue?name={}", "x".repeat(25));
    assert_eq!(refused(example.addr, &long, &[]).await.0, 400);

    // Binary messages and messages over 4 KiB close that connection.
    red.send(Message::binary(vec![1u8, 2])).await.unwrap();
    assert_eq!(common::close_frame(&mut red).await.0, 1003);
    ada.send(Message::text("x".repeat(5000))).await.unwrap();
    assert_eq!(common::close_frame(&mut ada).await.0, 1009);

    // A room holds 100 members; the 101st is told to try again later.
    let mut crowd = Vec::new();
    for i in 0..100 {
        let mut member = example.connect(&format!("/chat/full?name=m{i}")).await;
        assert_eq!(event(&mut member).await["type"], "welcome");
        crowd.push(member);
    }
    let mut late = example.connect("/chat/full?name=late").await;
    assert_eq!(
        common::close_frame(&mut late).await,
        (1013, "this room is full: try again later".to_owned())
    );
    example.stop().await;
}

/// The body of `GET path`, asked with `Connection: close`.
#[cfg(feature = "axum")]
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let response = common::raw_http(addr, request.as_bytes()).await;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (common::status_of(&response), body.to_owned())
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_example_serves_rest_page_and_chat_on_one_port() {
    let mut example = Example::start("axum").await;
    assert_eq!(
        get(example.addr, "/api/rooms").await,
        (200, r#"{"rooms":[]}"#.to_owned())
    );
    let (status, page) = get(example.addr, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<title>wsock chat</title>"), "{page}");

    let mut ada = example.connect("/chat/lobby?name=ada").await;
    assert_eq!(event(&mut ada).await["type"], "welcome");
    let mut bob = example.connect("/chat/lobby?name=bob").await;
    assert_eq!(
        event(&mut bob).await["members"],
        serde_json::json!(["ada", "bob"])
    );
    assert_eq!(event(&mut ada).await["type"], "joined");
    // The REST route reads the state the endpoint writes.
    assert_eq!(
        get(example.addr, "/api/rooms").await,
        (
            200,
            r#"{"rooms":[{"room":"lobby","members":2}]}"#.to_owned()
        )
    );
    bob.send(Message::text("hello over axum")).await.unwrap();
    let said = serde_json::json!({"type": "message", "from": "bob", "text": "hello over axum"});
    assert_eq!(event(&mut ada).await, said);
    assert_eq!(event(&mut bob).await, said);

    // Ctrl-C: axum stops, and wsock's handle closes both WebSockets with 1001.
    example.interrupt();
    assert_eq!(common::close_frame(&mut ada).await.0, 1001);
    assert_eq!(common::close_frame(&mut bob).await.0, 1001);
    let status = example.wait().await;
    assert!(status.success(), "the example exited with {status}");
}
