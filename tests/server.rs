//! End to end: real servers on 127.0.0.1:0, real WebSocket clients, raw sockets for bad HTTP.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use wsock::prelude::*;

// ---------------------------------------------------------------------------------------------
// Endpoints

/// The seed's first example, recording instead of printing.
#[websocket("/")]
fn index(out: Out<String>, req: Request) {
    on_message(|event: String| {
        record(&req, format!("message {event}"));
    });
    on_close(|| {
        record(&req, "closed");
    });
    out.write("Hello!");
}

/// The seed's second example.
#[websocket("/hello")]
fn hello(out: Out<String>) {
    out.write("Hello!");
    out.close();
}

#[websocket("/echo")]
fn echo(out: Out<String>) {
    on_message(|text: String| out.write(text));
}

/// A counter shared by `on_message` and `on_close`, with no `Arc`, `Mutex` or `move`.
#[websocket("/count")]
fn count(out: Out<String>, req: Request) {
    let mut count = 0;
    let mut log = Vec::new();
    on_message(|event: String| {
        count += 1;
        log.push(event);
        out.write(count.to_string());
    });
    on_close(|| {
        count += 1000;
        record(&req, format!("count {count} log {}", log.join(",")));
    });
}

/// Every way a connection can end, chosen by the message.
#[websocket("/endings")]
fn endings(out: Out<String>, req: Request) -> Result<(), wsock::Error> {
    on_message(|command: String| {
        record(&req, format!("message {command}"));
        match command.as_str() {
            "close" => out.close_with(4001, "asked to"),
            "fail" => {
                let n: u32 = "not a number".parse()?;
                out.write(n.to_string());
            }
            "panic" => panic!("the client asked for a panic"),
            other => out.write(other.to_owned()),
        }
        Ok(())
    });
    on_close(|| record(&req, "closed"));
    out.write("ready");
    Ok(())
}

/// An async section that awaits `out.send`, with backpressure, and borrows a local.
#[websocket("/async")]
async fn async_section(out: Out<String>) {
    let mut total = 0usize;
    on_message(async |text: String| {
        total += text.len();
        for i in 0..3 {
            out.send(format!("{text} {i}")).await?;
            tokio::task::yield_now().await;
        }
        out.send(format!("total {total}")).await?;
        Ok(())
    });
}

/// The `|m| async move { .. }` form borrows too.
#[websocket("/async-block")]
fn async_block(out: Out<String>) {
    let mut seen = 0;
    on_message(|text: String| async move {
        seen += 1;
        out.send(format!("{seen}: {text}")).await.ok();
    });
}

/// `Out` moved into a task that writes later.
#[websocket("/later")]
fn later(out: Out<String>) {
    let writer = out.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.write("from a task");
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.write("and again");
    });
}

/// The ready code may end the connection before it is ready.
#[websocket("/early")]
async fn early(out: Out<String>, req: Request) -> Result<(), wsock::Error> {
    on_close(|| record(&req, "closed"));
    match req.query_param("how").as_deref() {
        Some("return") => {
            out.write("leaving");
            return Ok(());
        }
        Some("error") => return Err(wsock::Error::msg("refusing in the ready code")),
        Some("panic") => panic!("panicking in the ready code"),
        _ => {}
    }
    out.write("ready");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tests

fn all_endpoints() -> Server {
    Server::new()
        .route(index)
        .route(hello)
        .route(echo)
        .route(count)
        .route(endings)
        .route(async_section)
        .route(async_block)
        .route(later)
        .route(early)
        .close_timeout(Duration::from_secs(2))
}

#[tokio::test]
async fn the_seed_index_greets_takes_messages_and_sees_the_disconnect() {
    let server = TestServer::start(all_endpoints()).await;
    let id = unique_id("index");
    let mut ws = server.connect(&format!("/?id={id}")).await;
    assert_eq!(next_text(&mut ws).await, "Hello!");
    send(&mut ws, "one").await;
    send(&mut ws, "two").await;
    ws.close(Some(CloseFrame {
        code: 1000.into(),
        reason: "".into(),
    }))
    .await
    .unwrap();
    let (code, _) = close_frame(&mut ws).await;
    assert_eq!(code, 1000);
    let seen = wait_for(&id, "closed").await;
    assert_eq!(seen, ["message one", "message two", "closed"]);
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn the_seed_hello_says_hello_then_closes_with_1000() {
    let server = TestServer::start(all_endpoints()).await;
    let mut ws = server.connect("/hello").await;
    assert_eq!(next_text(&mut ws).await, "Hello!");
    assert_eq!(close_frame(&mut ws).await, (1000, String::new()));
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn echo_keeps_order_over_many_messages() {
    let server = TestServer::start(all_endpoints()).await;
    let mut ws = server.connect("/echo").await;
    for i in 0..500 {
        ws.feed(WsMessage::text(format!("m{i}"))).await.unwrap();
    }
    ws.flush().await.unwrap();
    for i in 0..500 {
        assert_eq!(next_text(&mut ws).await, format!("m{i}"));
    }
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn sections_share_the_ready_codes_locals() {
    let server = TestServer::start(all_endpoints()).await;
    let id = unique_id("count");
    let mut ws = server.connect(&format!("/count?id={id}")).await;
    for (i, word) in ["a", "b", "c"].into_iter().enumerate() {
        send(&mut ws, word).await;
        assert_eq!(next_text(&mut ws).await, (i + 1).to_string());
    }
    ws.close(None).await.unwrap();
    let seen = wait_for(&id, "count 1003 log a,b,c").await;
    assert_eq!(seen, ["count 1003 log a,b,c"]);
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn an_async_section_awaits_send_and_borrows() {
    let server = TestServer::start(all_endpoints()).await;
    let mut ws = server.connect("/async").await;
    send(&mut ws, "ab").await;
    send(&mut ws, "cde").await;
    let replies: Vec<String> = {
        let mut replies = Vec::new();
        for _ in 0..8 {
            replies.push(next_text(&mut ws).await);
        }
        replies
    };
    assert_eq!(
        replies,
        [
            "ab 0", "ab 1", "ab 2", "total 2", "cde 0", "cde 1", "cde 2", "total 5"
        ]
    );
    drop(ws);
    let mut ws = server.connect("/async-block").await;
    send(&mut ws, "x").await;
    send(&mut ws, "y").await;
    assert_eq!(next_text(&mut ws).await, "1: x");
    assert_eq!(next_text(&mut ws).await, "2: y");
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn out_moved_into_a_task_writes_later() {
    let server = TestServer::start(all_endpoints()).await;
    let mut ws = server.connect("/later").await;
    assert_eq!(next_text(&mut ws).await, "from a task");
    assert_eq!(next_text(&mut ws).await, "and again");
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn on_close_runs_once_after_a_client_close() {
    let server = TestServer::start(all_endpoints()).await;
    let id = unique_id("client-close");
    let mut ws = server.connect(&format!("/endings?id={id}")).await;
    assert_eq!(next_text(&mut ws).await, "ready");
    send(&mut ws, "x").await;
    assert_eq!(next_text(&mut ws).await, "x");
    ws.close(Some(CloseFrame {
        code: 1000.into(),
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    assert_eq!(close_frame(&mut ws).await.0, 1000);
    assert_eq!(wait_for(&id, "closed").await, ["message x", "closed"]);
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn on_close_runs_once_after_out_close() {
    let server = TestServer::start(all_endpoints()).await;
    let id = unique_id("out-close");
    let mut ws = server.connect(&format!("/endings?id={id}")).await;
    assert_eq!(next_text(&mut ws).await, "ready");
    send(&mut ws, "close").await;
    assert_eq!(close_frame(&mut ws).await, (4001, "asked to".to_owned()));
    assert_eq!(wait_for(&id, "closed").await, ["message close", "closed"]);
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn on_close_runs_once_after_an_abrupt_drop() {
    let server = TestServer::start(all_endpoints()).await;
    let id = unique_id("drop");
    let mut ws = server.connect(&format!("/endings?id={id}")).await;
    assert_eq!(next_text(&mut ws).await, "ready");
    send(&mut ws, "x").await;
    assert_eq!(next_text(&mut ws).await, "x");
    drop(ws); // no close frame: the TCP connection just goes away
    assert_eq!(wait_for(&id, "closed").await, ["message x", "closed"]);
    server.stop().await;
}

#[tokio::test]
async fn an_err_from_a_section_closes_with_1011_and_runs_on_close() {
    let server = TestServer::start(all_endpoints()).await;
    let id = unique_id("err");
    let mut ws = server.connect(&format!("/endings?id={id}")).await;
    assert_eq!(next_text(&mut ws).await, "ready");
    send(&mut ws, "fail").await;
    assert_eq!(close_frame(&mut ws).await.0, 1011);
    assert_eq!(wait_for(&id, "closed").await, ["message fail", "closed"]);
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn a_panic_closes_that_connection_only_with_1011() {
    let server = TestServer::start(all_endpoints()).await;
    let bystander_id = unique_id("bystander");
    let mut bystander = server.connect(&format!("/endings?id={bystander_id}")).await;
    assert_eq!(next_text(&mut bystander).await, "ready");

    let id = unique_id("panic");
    let mut ws = server.connect(&format!("/endings?id={id}")).await;
    assert_eq!(next_text(&mut ws).await, "ready");
    send(&mut ws, "panic").await;
    assert_eq!(close_frame(&mut ws).await.0, 1011);
    assert_eq!(wait_for(&id, "closed").await, ["message panic", "closed"]);

    // The other connection, and new ones, are served as before.
    send(&mut bystander, "still here").await;
    assert_eq!(next_text(&mut bystander).await, "still here");
    let mut fresh = server.connect("/echo").await;
    send(&mut fresh, "hi").await;
    assert_eq!(next_text(&mut fresh).await, "hi");
    drop((ws, bystander, fresh));
    server.stop().await;
}

#[tokio::test]
async fn shutdown_sends_1001_runs_on_close_and_returns() {
    let server = TestServer::start(all_endpoints()).await;
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = unique_id("shutdown");
        let mut ws = server.connect(&format!("/endings?id={id}")).await;
        assert_eq!(next_text(&mut ws).await, "ready");
        clients.push(ws);
        ids.push(id);
    }
    let handle = server.handle.clone();
    let stopping = tokio::spawn(server.stop());
    for ws in &mut clients {
        assert_eq!(
            close_frame(ws).await,
            (1001, "server shutting down".to_owned())
        );
        ws.close(None).await.ok();
    }
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("shutdown hung")
        .unwrap();
    for id in &ids {
        assert_eq!(events(id), ["closed"]);
    }
    handle.shutdown(); // a second shutdown is harmless
}

/// The server runs as a task of its own; dropping the future that runs it (an aborted task,
/// a `select!` that took another branch) still stops it: the port refuses connections.
#[tokio::test]
async fn dropping_the_run_future_stops_the_server() {
    let bound = all_endpoints().bind("127.0.0.1:0").await.unwrap();
    let addr = bound.local_addr();
    let running = tokio::spawn(bound.run());
    let (mut ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{addr}/echo")),
    )
    .await
    .expect("connect hung")
    .expect("the server serves");
    ws.send(WsMessage::text("hi")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "hi");
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    // The listener is closed once the server's own task has been aborted too.
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "the port still accepts connections");
}

#[tokio::test]
async fn the_ready_code_can_end_the_connection_before_it_is_ready() {
    let server = TestServer::start(all_endpoints()).await;
    for (how, code) in [("return", 1000), ("error", 1011), ("panic", 1011)] {
        let id = unique_id(how);
        let mut ws = server.connect(&format!("/early?how={how}&id={id}")).await;
        if how == "return" {
            assert_eq!(next_text(&mut ws).await, "leaving");
        }
        assert_eq!(close_frame(&mut ws).await.0, code, "ending by {how}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            events(&id).is_empty(),
            "on_close ran after the ready code ended by {how}"
        );
    }
    let mut ws = server.connect("/early").await;
    assert_eq!(next_text(&mut ws).await, "ready");
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn http_refusals_are_real_responses() {
    // With the dev console off, as in release builds (tests/pages.rs has it on).
    let server = TestServer::start(all_endpoints().dev_console(false)).await;
    let addr = server.addr;

    let response = raw_http(addr, b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(status_of(&response), 404, "{response}");

    let response = raw_http(addr, b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(status_of(&response), 426, "{response}");
    assert!(
        response.to_ascii_lowercase().contains("upgrade: websocket"),
        "{response}"
    );

    let response = raw_http(addr, b"this is not HTTP\r\n\r\n").await;
    assert_eq!(status_of(&response), 400, "{response}");

    let bad_key =
        b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n";
    assert_eq!(status_of(&raw_http(addr, bad_key).await), 400);

    let post = b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(status_of(&raw_http(addr, post).await), 405);

    // The server is still fine.
    let mut ws = server.connect("/echo").await;
    send(&mut ws, "ok").await;
    assert_eq!(next_text(&mut ws).await, "ok");
    drop(ws);
    server.stop().await;
}

#[websocket("/quiet")]
fn quiet(out: Out<String>) {
    on_message(|text: String| out.write(text));
}

/// An endpoint that wants no heartbeats, on a server that sends them.
#[websocket("/no-beats", heartbeat = false)]
fn no_beats(out: Out<String>) {
    on_message(|text: String| out.write(text));
}

/// `Server::heartbeat`: an empty text message each interval, whatever else flows, and none
/// without it, nor to an endpoint that says `heartbeat = false`.
#[tokio::test]
async fn heartbeats_are_empty_text_messages_each_interval_and_off_by_default() {
    let server = TestServer::start(
        Server::new()
            .route(quiet)
            .route(no_beats)
            .heartbeat(Duration::from_millis(100)),
    )
    .await;
    let mut opted_out = server.connect("/no-beats").await;
    let mut ws = server.connect("/quiet").await;
    let started = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(next_text(&mut ws).await, "");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "three heartbeats took {took:?}"
    );
    // Messages go on between them.
    send(&mut ws, "hello").await;
    let mut got = next_text(&mut ws).await;
    while got.is_empty() {
        got = next_text(&mut ws).await;
    }
    assert_eq!(got, "hello");
    // Meanwhile (over 300 ms), the endpoint that said no got none; it echoes as ever.
    send(&mut opted_out, "still here").await;
    assert_eq!(next_text(&mut opted_out).await, "still here");
    drop((ws, opted_out));
    server.stop().await;

    let server = TestServer::start(Server::new().route(quiet)).await;
    let mut ws = server.connect("/quiet").await;
    let silent = tokio::time::timeout(Duration::from_millis(400), next(&mut ws)).await;
    assert!(silent.is_err(), "no heartbeat by default: {silent:?}");
    drop(ws);
    server.stop().await;
}
