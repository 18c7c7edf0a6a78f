//! The metrics (feature `prometheus`): what `/metrics` shows follows the traffic, and a real
//! Prometheus scrapes it and answers queries about it.
//!
//! The recorder is the process's, shared by the tests of this binary: each test has
//! endpoints of its own and causes refusals of a kind no other test here causes.
#![cfg(all(feature = "prometheus", feature = "test"))]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::LazyLock;
use std::time::Duration;

use common::{TestServer, connect_with, next_text, raw_http, refused, send, status_of};
use wsock::Prometheus;
use wsock::prelude::*;

static PROMETHEUS: LazyLock<Prometheus> =
    LazyLock::new(|| Prometheus::install().expect("the first recorder of this process"));

#[websocket("/echo-a", max_message_size = "1KiB")]
fn echo_a(out: Out<String>) {
    on_message(|text: String| out.write(text));
}

#[websocket("/echo-b")]
fn echo_b(out: Out<String>) {
    on_message(|text: String| out.write(text));
}

/// The samples of a Prometheus text page, by series (`name{labels}` as written).
fn samples(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(addr: SocketAddr) -> String {
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let response = raw_http(addr, request.as_bytes()).await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{response}"
    );
    response
}

/// Scrapes until `series` has `value` (up to 5 s): a connection hands its counts over at
/// the end of each wake-up, which may come after the client saw the answer.
async fn until(addr: SocketAddr, series: &str, value: f64) -> HashMap<String, f64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let page = scrape(addr).await;
        let samples = samples(&page);
        if samples.get(series) == Some(&value) {
            return samples;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {series} {value}; the page:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_metrics_page_follows_connections_messages_refusals_and_closes() {
    let server = TestServer::start(
        Server::new()
            .route(echo_a)
            .metrics("/metrics", PROMETHEUS.clone()),
    )
    .await;
    let addr = server.addr;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = server.connect("/echo-a").await;
        for i in 0..10 {
            send(&mut client, &format!("hello {i}")).await;
            assert_eq!(next_text(&mut client).await, format!("hello {i}"));
        }
        clients.push(client);
    }
    for _ in 0..2 {
        let (status, _) = refused(addr, "/echo-a", &[("Origin", "https://evil.example")]).await;
        assert_eq!(status, 403);
    }
    let open = r#"wsock_connections_open{endpoint="echo_a"}"#;
    let received = r#"wsock_messages_received_total{endpoint="echo_a",compression="off"}"#;
    let samples = until(addr, received, 30.0).await;
    assert_eq!(samples.get(open), Some(&3.0));
    assert_eq!(
        samples.get(r#"wsock_messages_sent_total{endpoint="echo_a",compression="off"}"#),
        Some(&30.0)
    );
    assert_eq!(
        samples.get(r#"wsock_received_bytes_total{endpoint="echo_a",compression="off"}"#),
        Some(&(3.0 * 70.0))
    );
    assert_eq!(
        samples.get(r#"wsock_handshakes_total{status="403",reason="origin"}"#),
        Some(&2.0)
    );
    assert!(samples[r#"wsock_handshakes_total{status="101",reason="accepted"}"#] >= 3.0);
    assert!(samples[r#"wsock_handshake_duration_seconds_count{status="101"}"#] >= 3.0);

    // A client closes normally, one goes over the size limit: closes by code and side.
    let mut first = clients.remove(0);
    first.close(None).await.unwrap();
    let mut big = connect_with(addr, "/echo-a", &[]).await;
    send(&mut big, &"x".repeat(2000)).await;
    until(addr, open, 2.0).await;
    let samples = until(
        addr,
        r#"wsock_closes_total{endpoint="echo_a",code="1009",side="server"}"#,
        1.0,
    )
    .await;
    assert_eq!(
        samples.get(r#"wsock_closes_total{endpoint="echo_a",code="1005",side="client"}"#),
        Some(&1.0),
        "tungstenite's close(None) sends no code"
    );
    drop(clients);
    until(addr, open, 0.0).await;
    server.stop().await;
}

/// Prometheus's binary: `PROMETHEUS`, or `prometheus` on the PATH (Debian's package).
fn prometheus_binary() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("PROMETHEUS") {
        return Some(path.into());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|path| path.is_file())
    })
}

/// A port free a moment ago, for a process that takes no port 0.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Asks Prometheus's HTTP API `query`; the value of its one result, if it has one.
async fn query(prometheus: SocketAddr, query: &str) -> Option<f64> {
    let mut encoded = String::new();
    for byte in query.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => {
                encoded.push(byte as char)
            }
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    let request = format!(
        "GET /api/v1/query?query={encoded} HTTP/1.1\r\nHost: {prometheus}\r\nConnection: close\r\n\r\n"
    );
    let stream = tokio::net::TcpStream::connect(prometheus).await.ok()?;
    drop(stream);
    let response = raw_http(prometheus, request.as_bytes()).await;
    let body = response.split_once("\r\n\r\n")?.1;
    // Chunked or not, the JSON is the part between the first `{` and the last `}`.
    let json = &body[body.find('{')?..=body.rfind('}')?];
    let json: serde_json::Value = serde_json::from_str(json).ok()?;
    let value = json["data"]["result"][0]["value"][1].as_str()?;
    value.parse().ok()
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_metrics_and_answers_queries() {
    let Some(binary) = prometheus_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: Prometheus is missing (Debian's `prometheus`, or PROMETHEUS=path)"
        );
        eprintln!("SKIPPED: no prometheus binary (Debian's `prometheus`, or PROMETHEUS=path)");
        return;
    };
    let server = TestServer::start(
        Server::new()
            .route(echo_b)
            .metrics("/metrics", PROMETHEUS.clone()),
    )
    .await;
    let addr = server.addr;
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut client = server.connect("/echo-b").await;
        send(&mut client, "hi").await;
        assert_eq!(next_text(&mut client).await, "hi");
        clients.push(client);
    }
    // Three refusals for a host this server does not answer.
    for _ in 0..3 {
        let request = "GET /echo-b HTTP/1.1\r\nHost: evil.example\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        assert_eq!(status_of(&raw_http(addr, request.as_bytes()).await), 403);
    }

    let dir = std::env::temp_dir().join(format!("wsock-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: wsock\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let prometheus: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut process = tokio::process::Command::new(&binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={prometheus}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start prometheus");

    // Prometheus starts, scrapes every second, and answers with what it scraped.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (mut open, mut refusals) = (None, None);
    while tokio::time::Instant::now() < deadline {
        open = query(
            prometheus,
            r#"wsock_connections_open{endpoint="echo_b",job="wsock"}"#,
        )
        .await;
        refusals = query(
            prometheus,
            r#"sum(wsock_handshakes_total{status="403",reason="host",job="wsock"})"#,
        )
        .await;
        if open == Some(4.0) && refusals == Some(3.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let up = query(prometheus, r#"up{job="wsock"}"#).await;
    process.kill().await.ok();
    let _ = tokio::time::timeout(Duration::from_secs(10), process.wait()).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(up, Some(1.0), "Prometheus could not scrape {addr}/metrics");
    assert_eq!(open, Some(4.0), "open connections, as Prometheus saw them");
    assert_eq!(
        refusals,
        Some(3.0),
        "refusals for the host, as Prometheus saw them"
    );
    drop(clients);
    server.stop().await;
}

#[websocket("/echo-c")]
fn echo_c(out: Out<String>) {
    on_message(|text: String| out.write(text));
}

/// `into_router()` routes the metrics too: one port for the app, its endpoints and
/// `/metrics`.
#[cfg(feature = "axum")]
#[tokio::test]
async fn the_metrics_are_routed_in_an_axum_app() {
    let server = Server::new()
        .route(echo_c)
        .metrics("/metrics", PROMETHEUS.clone());
    let app = wsock::test::TestRouter::new(server.into_router());
    let mut client = app.connect("/echo-c").await.unwrap();
    client.send("hi").await;
    assert_eq!(client.recv::<String>().await, "hi");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let page = app.get("/metrics").await;
        assert_eq!(page.status(), 200);
        let samples = samples(&page.text());
        let open = r#"wsock_connections_open{endpoint="echo_c"}"#;
        if samples.get(open) == Some(&1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {open} 1 in:\n{}",
            page.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.close(CloseCode::NORMAL).await;
}

#[websocket("/filtered")]
fn filtered(out: Out<String>, topics: Topics) {
    let news = topics.topic::<String>("metrics:news");
    news.subscribe_with(
        &out,
        Delivery::every().filter(|text: &String| text.starts_with("keep")),
    );
    out.write("ready");
}

/// What a delivery mode did not deliver is counted, by why.
#[tokio::test]
async fn the_messages_delivery_modes_skip_are_counted() {
    let app = Server::new()
        .route(filtered)
        .metrics("/metrics", PROMETHEUS.clone());
    let news = app.topics().topic::<String>("metrics:news");
    let server = TestServer::start(app).await;
    let mut client = server.connect("/filtered").await;
    assert_eq!(next_text(&mut client).await, "ready");
    for text in ["drop 1", "keep 1", "drop 2", "drop 3", "keep 2"] {
        news.publish(text.to_owned()).unwrap();
    }
    assert_eq!(next_text(&mut client).await, "keep 1");
    assert_eq!(next_text(&mut client).await, "keep 2");
    let skipped = r#"wsock_topic_skipped_total{why="filtered"}"#;
    until(server.addr, skipped, 3.0).await;
    assert_eq!(news.delivery_counts().filtered, 3);
}

/// A room of the operations page's test: its connections subscribe to the topic `ops-room`.
#[websocket("/ops-room")]
fn ops_room(out: Out<String>, topics: Topics) {
    topics.topic::<String>("ops-room").subscribe(&out);
    on_message(|text: String| out.write(text));
}

const OPS_TOKEN: &str = "a-long-random-operations-token";

/// The next snapshot of the operations page's WebSocket that `done` accepts (up to 5 s).
async fn snapshot_until(
    ws: &mut common::Client,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = tokio::time::timeout_at(deadline, next_text(ws))
            .await
            .expect("no snapshot like that in 5 s");
        let snapshot: serde_json::Value = serde_json::from_str(&text).unwrap();
        if done(&snapshot) {
            return snapshot;
        }
    }
}

#[tokio::test]
async fn the_operations_page_wants_its_token() {
    let server = TestServer::start(Server::new().route(ops_room).operations(
        "/_ops",
        PROMETHEUS.clone(),
        wsock::Access::token(OPS_TOKEN),
    ))
    .await;
    let addr = server.addr;
    // The WebSocket: refused before the upgrade, with the reason.
    let (status, body) = refused(addr, "/_ops", &[]).await;
    assert_eq!(
        (status, body.trim_end()),
        (
            401,
            "the operations page needs its token: add ?token=<token> to the URL"
        )
    );
    let (status, body) = refused(addr, "/_ops?token=wrong-token-wrong-token", &[]).await;
    assert_eq!(
        (status, body.trim_end()),
        (403, "wrong token for the operations page")
    );
    let (status, _) = refused(addr, "/_ops", &[("Authorization", "Bearer nope")]).await;
    assert_eq!(status, 403);
    // The page: the same rule.
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let page = raw_http(addr, get("/_ops").as_bytes()).await;
    assert_eq!(status_of(&page), 401, "{page}");
    let page = raw_http(addr, get("/_ops?token=wrong-token-wrong-token").as_bytes()).await;
    assert_eq!(status_of(&page), 403, "{page}");
    let page = raw_http(addr, get(&format!("/_ops?token={OPS_TOKEN}")).as_bytes()).await;
    assert_eq!(status_of(&page), 200, "{page}");
    assert!(page.contains("<canvas id=\"chart-messages\""), "{page}");
    assert!(!page.contains("<script src"), "self-contained: {page}");
    // The right token, in the query or as a bearer token: snapshots every second.
    let mut ws = connect_with(addr, &format!("/_ops?token={OPS_TOKEN}"), &[]).await;
    snapshot_until(&mut ws, |s| s["endpoints"].is_object()).await;
    let bearer = format!("Bearer {OPS_TOKEN}");
    let mut other = connect_with(addr, "/_ops", &[("Authorization", &bearer)]).await;
    snapshot_until(&mut other, |s| s["endpoints"].is_object()).await;
    // Bad input: another method gets 405; a message over 1 KiB closes the socket with 1009.
    let post = format!(
        "POST /_ops?token={OPS_TOKEN} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let answer = raw_http(addr, post.as_bytes()).await;
    assert_eq!(status_of(&answer), 405, "{answer}");
    send(&mut other, &"x".repeat(2000)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let (code, _) = tokio::time::timeout_at(deadline, common::close_frame(&mut other))
        .await
        .expect("a close frame in 5 s");
    assert_eq!(code, 1009);
    drop((ws, other));
    server.stop().await;
}

#[tokio::test]
async fn the_operations_snapshot_follows_connections_messages_closes_and_topics() {
    let server = TestServer::start(Server::new().route(ops_room).operations(
        "/_ops",
        PROMETHEUS.clone(),
        wsock::Access::guard(|req| match req.header("x-ops") {
            Some("yes") => Ok(()),
            _ => Err(Reject::forbidden().with_body("operators only")),
        }),
    ))
    .await;
    let addr = server.addr;
    assert_eq!(
        refused(addr, "/_ops", &[]).await,
        (403, "operators only\n".to_owned())
    );
    let mut ops = connect_with(addr, "/_ops", &[("x-ops", "yes")]).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut client = server.connect("/ops-room").await;
        for i in 0..5 {
            send(&mut client, &format!("m{i}")).await;
            assert_eq!(next_text(&mut client).await, format!("m{i}"));
        }
        clients.push(client);
    }
    let before = snapshot_until(&mut ops, |s| s["endpoints"]["ops_room"] == 4.0).await;
    assert_eq!(before["topics"], serde_json::json!([["ops-room", 4]]));
    assert_eq!(before["topic_count"], 1);
    assert!(before["messages_in"].as_f64().unwrap() >= 20.0, "{before}");
    assert!(before["messages_out"].as_f64().unwrap() >= 20.0, "{before}");
    assert!(
        before["endpoints"].get("wsock_operations").is_none(),
        "the page leaves its own connections out: {before}"
    );
    let closed_before = before["closes"]["1000"].as_f64().unwrap_or(0.0);
    let mut first = clients.remove(0);
    first
        .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 1000.into(),
            reason: "".into(),
        }))
        .await
        .unwrap();
    let after = snapshot_until(&mut ops, |s| {
        s["endpoints"]["ops_room"] == 3.0
            && s["closes"]["1000"].as_f64().unwrap_or(0.0) > closed_before
    })
    .await;
    assert_eq!(after["topics"], serde_json::json!([["ops-room", 3]]));
    drop((clients, ops));
    server.stop().await;
}

/// `into_router()` routes the operations page and its WebSocket too, under the same rule.
#[cfg(feature = "axum")]
#[tokio::test]
async fn the_operations_page_is_routed_in_an_axum_app() {
    let server = Server::new().route(echo_c).operations(
        "/_ops",
        PROMETHEUS.clone(),
        wsock::Access::token(OPS_TOKEN),
    );
    let app = wsock::test::TestRouter::new(server.into_router());
    assert_eq!(app.get("/_ops").await.status(), 401);
    let page = app.get(&format!("/_ops?token={OPS_TOKEN}")).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().contains("wsock operations"));
    assert!(
        app.connect("/_ops").await.is_err(),
        "no token, no WebSocket"
    );
    let mut ops = app
        .connect(&format!("/_ops?token={OPS_TOKEN}"))
        .await
        .unwrap();
    let snapshot: serde_json::Value = serde_json::from_str(&ops.recv::<String>().await).unwrap();
    assert!(snapshot["endpoints"].is_object(), "{snapshot}");
    ops.close(CloseCode::NORMAL).await;
}

#[websocket("/here/{name}")]
fn here(name: String, out: Out<String>, topics: Topics) {
    let here = topics.presence::<String>("metrics:here");
    here.track(&out, name.clone(), &name).unwrap();
    out.write("tracked");
}

/// The members of the presences, as a gauge that follows joins and leaves.
#[tokio::test]
async fn presence_members_are_a_gauge() {
    let server = TestServer::start(
        Server::new()
            .route(here)
            .metrics("/metrics", PROMETHEUS.clone()),
    )
    .await;
    let mut clients = Vec::new();
    // Two connections of ann are one member.
    for name in ["ann", "bob", "ann", "cid"] {
        let mut client = server.connect(&format!("/here/{name}")).await;
        assert_eq!(next_text(&mut client).await, "tracked");
        clients.push(client);
    }
    until(server.addr, "wsock_presence_members", 3.0).await;
    drop(clients.remove(1)); // bob
    until(server.addr, "wsock_presence_members", 2.0).await;
    drop(clients.remove(0)); // one of ann's two
    drop(clients.remove(0)); // the other
    until(server.addr, "wsock_presence_members", 1.0).await;
}
