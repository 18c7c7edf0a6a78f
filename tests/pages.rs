//! Plain HTTP next to the endpoints: the dev console on an endpoint's path, and the pages
//! registered with `Server::page`. The browser drives both in tests/clients.rs.

mod common;

use common::{TestServer, next_text, raw_http, send, status_of};
use wsock::prelude::*;

#[websocket("/echo")]
fn echo(out: Out<String>) {
    on_message(|text: String| out.write(text));
}

#[websocket("/rooms/{room}", protocol = "chat.v1")]
fn room(room: String, out: Out<String>) {
    out.write(room);
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next().unwrap();
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[tokio::test]
async fn the_dev_console_is_on_by_default_in_debug_builds_only() {
    let server = TestServer::start(Server::new().route(echo)).await;
    let response = raw_http(server.addr, &get("/echo")).await;
    let expected = if cfg!(debug_assertions) { 200 } else { 426 };
    assert_eq!(status_of(&response), expected, "{response}");
    server.stop().await;
}

#[tokio::test]
async fn the_dev_console_connects_back_to_its_endpoint() {
    let server = TestServer::start(Server::new().route(echo).route(room).dev_console(true)).await;

    let response = raw_http(server.addr, &get("/echo")).await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert_eq!(
        header(&response, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let policy = header(&response, "content-security-policy").expect("a policy");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    let page = body(&response);
    assert!(
        page.contains("<code>echo</code> at <code>/echo</code>"),
        "{page}"
    );
    assert!(page.contains("new WebSocket(url"), "it connects");
    assert!(!page.contains("src=\"http"), "no external assets");

    // A path with parameters: the page is the pattern's, and lists the subprotocol.
    let response = raw_http(server.addr, &get("/rooms/blue")).await;
    assert_eq!(status_of(&response), 200, "{response}");
    let page = body(&response);
    assert!(page.contains("at <code>/rooms/{room}</code>"), "{page}");
    assert!(page.contains(r#"data-protocols="chat.v1""#), "{page}");

    // HEAD too; other methods and unknown paths are refused as before.
    let head = b"HEAD /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let response = raw_http(server.addr, head).await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert_eq!(body(&response), "", "no body for HEAD");
    let post = b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(status_of(&raw_http(server.addr, post).await), 405);
    assert_eq!(
        status_of(&raw_http(server.addr, &get("/nowhere")).await),
        404
    );

    // A request that asks for a websocket but is malformed still gets its refusal, not the page.
    let broken = b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\r\n";
    assert_eq!(status_of(&raw_http(server.addr, broken).await), 426);

    // And the endpoint itself is unchanged.
    let mut ws = server.connect("/echo").await;
    send(&mut ws, "still here").await;
    assert_eq!(next_text(&mut ws).await, "still here");
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn a_server_without_the_dev_console_answers_426() {
    let server = TestServer::start(Server::new().route(echo).dev_console(false)).await;
    let response = raw_http(server.addr, &get("/echo")).await;
    assert_eq!(status_of(&response), 426, "{response}");
    assert!(!response.contains("<html"), "{response}");
    server.stop().await;
}

const PAGE: &str = "<!doctype html><title>chat</title><p>hello";

#[tokio::test]
async fn pages_are_served_to_plain_gets_and_share_paths_with_endpoints() {
    let server = TestServer::start(
        Server::new()
            .page("/", PAGE)
            .page("/echo", "<p>the echo page")
            .route(echo),
    )
    .await;

    let response = raw_http(server.addr, &get("/")).await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert_eq!(body(&response), PAGE);
    assert_eq!(
        header(&response, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        header(&response, "content-security-policy"),
        None,
        "pages carry no policy header of their own"
    );

    // The page replaces the console on the endpoint's path; websocket clients get the endpoint.
    let response = raw_http(server.addr, &get("/echo")).await;
    assert_eq!(body(&response), "<p>the echo page");
    let mut ws = server.connect("/echo").await;
    send(&mut ws, "hi").await;
    assert_eq!(next_text(&mut ws).await, "hi");
    drop(ws);

    // Pages answer GET and HEAD only, and are not websocket endpoints.
    let post = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n";
    let response = raw_http(server.addr, post).await;
    assert_eq!(status_of(&response), 405, "{response}");
    assert_eq!(header(&response, "allow"), Some("GET, HEAD"));
    let upgrade = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    let response = raw_http(server.addr, upgrade.as_bytes()).await;
    assert_eq!(status_of(&response), 404, "{response}");
    // A query string does not change the page; paths compare percent-decoded.
    assert_eq!(
        body(&raw_http(server.addr, &get("/?room=blue")).await),
        PAGE
    );
    let escaped = raw_http(server.addr, &get("/%65cho")).await;
    assert_eq!(body(&escaped), "<p>the echo page");
    server.stop().await;
}

#[test]
#[should_panic(expected = "two pages at the same path \"/\"")]
fn two_pages_at_one_path_are_a_startup_error() {
    let _ = Server::new().page("/", "a").page("/", "b");
}

#[test]
#[should_panic(expected = "must start with `/`")]
fn a_page_path_must_be_absolute() {
    let _ = Server::new().page("index.html", "a");
}
