//! Plain HTTP next to the endpoints: the dev console on an endpoint's path, and the pages
//! registered with `Server::page`. The browser drives both in tests/clients.rs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{TestServer, connect_with, next_text, raw_http, send, status_of};
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
    // It connects through wsock's client, from this same server.
    assert!(page.contains(r#"from "/_wsock/client.js""#), "it connects");
    assert!(policy.contains("script-src 'self'"), "{policy}");
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

/// Counts how often the `named` endpoint's ready code ran.
#[derive(Clone, Default)]
struct Ran(Arc<AtomicUsize>);

impl Ran {
    fn once(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// A name from the query, as the chat example's guard takes it.
struct Nick(String);

impl FromRequest for Nick {
    async fn from_request(req: &Request) -> Result<Self, Reject> {
        match req.query_param("name") {
            Some(name) => Ok(Nick(name)),
            None => Err(Reject::bad_request().with_body("choose a name: ?name=..")),
        }
    }
}

#[websocket("/named", protocol = "chat.v1")]
fn named(out: Out<String>, nick: Nick, ran: State<Ran>) {
    ran.once();
    out.write(nick.0);
}

/// The dev console's probe of `path`, with `extra` header lines.
fn probe(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Wsock-Console: probe\r\n{extra}\r\n")
        .into_bytes()
}

/// The console's probe gets what the upgrade got (browsers hide that from the page): a
/// guard's status and body, the subprotocol check, the host check; never an upgrade, and no
/// endpoint code beyond the extractors. Only the console's own origin gets an answer.
#[tokio::test]
async fn the_console_probe_answers_what_the_upgrade_got() {
    let ran = Ran::default();
    let server = TestServer::start(
        Server::new()
            .route(named)
            .state(ran.clone())
            .dev_console(true),
    )
    .await;
    let same_origin = "Sec-Fetch-Site: same-origin\r\nX-Wsock-Protocol: chat.v1\r\n";

    let response = raw_http(server.addr, &probe("/named", same_origin)).await;
    assert_eq!(status_of(&response), 400, "{response}");
    assert_eq!(body(&response), "choose a name: ?name=..\n");
    assert_eq!(header(&response, "x-wsock-console"), Some("probe"));
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    assert_eq!(header(&response, "access-control-allow-origin"), None);

    // The subprotocol the console offered counts, as on the upgrade.
    let response = raw_http(server.addr, &probe("/named?name=ada", "")).await;
    assert_eq!(status_of(&response), 400, "{response}");
    assert!(
        body(&response).starts_with("no acceptable subprotocol"),
        "{response}"
    );
    let response = raw_http(server.addr, &probe("/named?name=ada", same_origin)).await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert_eq!(header(&response, "x-wsock-console"), Some("probe"));
    assert!(
        body(&response).starts_with("the upgrade would be accepted"),
        "{response}"
    );
    assert_eq!(ran.count(), 0, "a probe runs no endpoint code");

    // Every check of the upgrade: an unknown path, a host that is not allowed.
    let response = raw_http(server.addr, &probe("/nowhere", same_origin)).await;
    assert_eq!(status_of(&response), 404, "{response}");
    assert_eq!(header(&response, "x-wsock-console"), Some("probe"));
    let evil_host = b"GET /named HTTP/1.1\r\nHost: evil.example\r\nX-Wsock-Console: probe\r\n\r\n";
    let response = raw_http(server.addr, evil_host).await;
    assert_eq!(status_of(&response), 403, "{response}");

    // From another site or origin it is no probe: the plain GET's answer (the console page).
    for elsewhere in [
        "Sec-Fetch-Site: cross-site\r\n",
        "Sec-Fetch-Site: same-site\r\n",
        "Origin: http://localhost:1\r\n",
    ] {
        let response = raw_http(server.addr, &probe("/named", elsewhere)).await;
        assert_eq!(status_of(&response), 200, "{elsewhere}: {response}");
        assert_eq!(header(&response, "x-wsock-console"), None, "{elsewhere}");
        assert!(body(&response).contains("wsock dev console"), "{elsewhere}");
    }
    // And a page of another origin never gets past the CORS preflight its header needs.
    let preflight = b"OPTIONS /named HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://localhost:1\r\n\
        Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: x-wsock-console\r\n\r\n";
    let response = raw_http(server.addr, preflight).await;
    assert!(status_of(&response) >= 400, "{response}");
    assert!(
        !response
            .to_ascii_lowercase()
            .contains("access-control-allow"),
        "{response}"
    );

    // With a name and the subprotocol, the same URL connects, and the ready code runs once.
    let protocol = [("sec-websocket-protocol", "chat.v1")];
    let mut ws = connect_with(server.addr, "/named?name=ada", &protocol).await;
    assert_eq!(next_text(&mut ws).await, "ada");
    assert_eq!(ran.count(), 1);
    drop(ws);
    server.stop().await;

    // Without the console, the client module (on by default) answers the probe for wsock's
    // client; with neither, there is no probe.
    let server = TestServer::start(
        Server::new()
            .route(named)
            .state(Ran::default())
            .dev_console(false),
    )
    .await;
    let response = raw_http(server.addr, &probe("/named", same_origin)).await;
    assert_eq!(status_of(&response), 400, "{response}");
    assert_eq!(header(&response, "x-wsock-console"), Some("probe"));
    server.stop().await;
    let server = TestServer::start(
        Server::new()
            .route(named)
            .state(Ran::default())
            .dev_console(false)
            .client_module(false),
    )
    .await;
    let response = raw_http(server.addr, &probe("/named", same_origin)).await;
    assert_eq!(status_of(&response), 426, "{response}");
    assert_eq!(header(&response, "x-wsock-console"), None);
    server.stop().await;
}

/// The JavaScript client at `/_wsock/client.js`: the embedded build, as a module, cached by
/// its `ETag`; behind the host check; off with `client_module(false)` unless the console needs
/// it; a page at the same path wins.
#[tokio::test]
async fn the_client_module_is_served_at_its_fixed_path() {
    let script = include_str!("../runtime/src/client.js");
    let server = TestServer::start(Server::new().route(echo).dev_console(false)).await;
    let response = raw_http(server.addr, &get("/_wsock/client.js")).await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert_eq!(
        header(&response, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        header(&response, "cache-control"),
        Some("public, max-age=3600")
    );
    assert_eq!(header(&response, "x-content-type-options"), Some("nosniff"));
    assert_eq!(body(&response), script);
    assert!(script.contains("export function connect"));
    let tag = header(&response, "etag").expect("an ETag").to_owned();
    let again = format!(
        "GET /_wsock/client.js HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: {tag}\r\n\r\n"
    );
    let response = raw_http(server.addr, again.as_bytes()).await;
    assert_eq!(status_of(&response), 304, "{response}");
    assert_eq!(body(&response), "");
    let post = b"POST /_wsock/client.js HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(status_of(&raw_http(server.addr, post).await), 405);
    let evil_host = b"GET /_wsock/client.js HTTP/1.1\r\nHost: evil.example\r\n\r\n";
    assert_eq!(status_of(&raw_http(server.addr, evil_host).await), 403);
    server.stop().await;

    let off = Server::new()
        .route(echo)
        .dev_console(false)
        .client_module(false);
    let server = TestServer::start(off).await;
    let response = raw_http(server.addr, &get("/_wsock/client.js")).await;
    assert_eq!(status_of(&response), 404, "{response}");
    server.stop().await;
    let console = Server::new()
        .route(echo)
        .dev_console(true)
        .client_module(false);
    let server = TestServer::start(console).await;
    let response = raw_http(server.addr, &get("/_wsock/client.js")).await;
    assert_eq!(
        status_of(&response),
        200,
        "the console needs it: {response}"
    );
    server.stop().await;

    let mine = Server::new().route(echo).page("/_wsock/client.js", "mine");
    let server = TestServer::start(mine).await;
    let response = raw_http(server.addr, &get("/_wsock/client.js")).await;
    assert_eq!(body(&response), "mine");
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
