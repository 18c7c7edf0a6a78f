//! The test kit's own contract: what it connects with, what it checks, and the exact failure
//! messages it gives (each says what came instead, at the line of the test that expected it).
#![cfg(feature = "test")]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

mod common;

use common::{incompressible, measure};
use serde::{Deserialize, Serialize};
use wsock::prelude::*;
use wsock::test::{TestClient, TestServer};

#[websocket("/echo")]
fn echo(out: Out<Message>) {
    on_message(|message: Message| out.write(message));
}

/// Says who connected, how: peer, path, query, origin, cookie, session user, subprotocol.
#[websocket("/who", protocol = "chat.v2", protocol = "chat.v1")]
fn who(out: Out<String>, req: Request, session: Session) {
    out.write(format!(
        "{} {} {} {} {} {} {}",
        req.peer_addr(),
        req.path(),
        req.query().unwrap_or("-"),
        req.header("origin").unwrap_or("-"),
        req.cookie("theme").unwrap_or("-"),
        session.get("user").unwrap_or("-"),
        req.protocol().unwrap_or("-"),
    ));
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Point {
    x: i32,
    y: i32,
}

#[websocket("/json")]
fn json(out: Out<Json<Point>>) {
    on_message(|Json(p): Json<Point>| out.write(Json(Point { x: p.y, y: p.x })));
}

/// Writes three messages at once into a queue of two: the client is closed with 1008.
#[websocket("/flood")]
fn flood(out: Out<String>) {
    for i in 0..3 {
        out.write(format!("m{i}"));
    }
}

#[websocket("/says-hi")]
fn says_hi(out: Out<String>) {
    out.write("hi");
}

#[websocket("/bye")]
fn bye(out: Out<String>) {
    out.close_with(4000, "bye now");
}

fn server() -> Server {
    Server::new()
        .route(echo)
        .route(measure)
        .route(who)
        .route(json)
        .route(flood)
        .route(says_hi)
        .route(bye)
        .secret([7u8; 32])
        .queue_capacity(2)
}

/// How an expectation failed: the panic's message, and where the panic was reported (the
/// `file:line:column` a test's output shows and an editor jumps to).
struct Failed {
    message: String,
    at: String,
}

thread_local! {
    /// Where the last panic on this thread was reported.
    static PANICKED_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Records each panic's location for [`failure`], then reports it as before.
fn record_panic_locations() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let at = info.location().map(ToString::to_string);
            PANICKED_AT.with(|slot| *slot.borrow_mut() = at);
            report(info);
        }));
    });
}

/// How `failing`, which must panic, failed. (`#[tokio::test]` runs the spawned task on the
/// test's own thread, where the hook records the location.)
async fn failure(failing: impl Future<Output = ()> + Send + 'static) -> Failed {
    record_panic_locations();
    PANICKED_AT.with(|slot| slot.borrow_mut().take());
    let error = tokio::spawn(failing)
        .await
        .expect_err("the expectation should have failed");
    let payload = error.into_panic();
    let message = match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_default(),
    };
    let at = PANICKED_AT
        .with(|slot| slot.borrow_mut().take())
        .expect("the panic hook saw the panic");
    Failed { message, at }
}

/// Checks a failure: its message is `{before} (at tests/kit.rs:{line}:<column>); {after}`,
/// and the panic itself is reported at that line of this file, not inside the kit.
#[track_caller]
fn assert_failure(failed: &Failed, before: &str, line: u32, after: &str) {
    let message = &failed.message;
    let start = format!("{before} (at {}:{line}:", file!());
    assert!(
        message.starts_with(&start) && message.ends_with(&format!("); {after}")),
        "the failure message\n  {message}\nis not\n  {start}<column>); {after}"
    );
    assert_panicked_at(failed, line);
}

/// Checks that the panic was reported at `line` of this file.
#[track_caller]
fn assert_panicked_at(failed: &Failed, line: u32) {
    let here = format!("{}:{line}:", file!());
    assert!(
        failed.at.starts_with(&here),
        "the panic was reported at {}, not at {here}<column>",
        failed.at
    );
}

#[tokio::test]
async fn sends_and_receives_every_message_type() {
    let app = TestServer::new(server());
    let mut client = app.connect("/echo").await.unwrap();
    client.send("text").await;
    assert_eq!(client.recv::<String>().await, "text");
    client.send(vec![1u8, 2, 3]).await;
    assert_eq!(client.recv::<Vec<u8>>().await, [1, 2, 3]);
    client.send(Message::binary(vec![9u8])).await;
    assert_eq!(client.recv::<Message>().await, Message::binary(vec![9u8]));
    client.send(Json(Point { x: 1, y: 2 })).await;
    let Json(point) = client.recv::<Json<Point>>().await;
    assert_eq!(point, Point { x: 1, y: 2 });
    client.ping(b"are you there").await;
    client.close(CloseCode::NORMAL).await;

    let mut json = app.connect("/json").await.unwrap();
    json.send(Json(Point { x: 1, y: 2 })).await;
    assert_eq!(json.recv::<Json<Point>>().await.0, Point { x: 2, y: 1 });
    // Bad JSON: the server's close code and reason come back.
    json.send("{not json").await;
    let reason = json.expect_close(CloseCode::INVALID_PAYLOAD).await;
    assert!(reason.starts_with("invalid JSON"), "{reason}");
}

#[tokio::test]
async fn connects_with_headers_origin_session_cookies_subprotocols_and_peer() {
    let app = TestServer::new(server().allow_origin("https://app.example.com"));
    let user: Session = [("user", "ada")].into_iter().collect();
    let peer: SocketAddr = "127.0.0.1:4242".parse().unwrap();
    let mut client = app
        .request("/who?room=blue")
        .origin("https://app.example.com")
        .cookie("theme", "dark")
        .session(&user)
        .protocol("chat.v1")
        .peer_addr(peer)
        .await
        .unwrap();
    assert_eq!(client.protocol(), Some("chat.v1"));
    assert_eq!(
        client.recv::<String>().await,
        "127.0.0.1:4242 /who room=blue https://app.example.com dark ada chat.v1"
    );

    // Two clients at once, each with its own default peer address.
    let mut a = app.request("/who").protocol("chat.v2").await.unwrap();
    let mut b = app.request("/who").protocol("chat.v2").await.unwrap();
    let (a, b) = (a.recv::<String>().await, b.recv::<String>().await);
    assert!(a.starts_with("127.0.0.1:") && b.starts_with("127.0.0.1:"));
    assert_ne!(a, b);
    assert_eq!(app.open_connections(), 3);
}

#[tokio::test]
async fn a_refusal_comes_back_with_its_status_and_body() {
    let app = TestServer::new(server());
    let refused = app.connect("/nowhere").await.unwrap_err();
    assert_eq!(refused.status(), 404);
    assert_eq!(refused.body(), "no websocket endpoint at this path");
    assert_eq!(
        refused.to_string(),
        "refused with 404 Not Found: no websocket endpoint at this path"
    );
    let refused = app
        .request("/echo")
        .origin("https://evil.example")
        .await
        .unwrap_err();
    assert_eq!(refused.status(), 403);
    let refused = app.request("/who").protocol("other").await.unwrap_err();
    assert_eq!(refused.status(), 400);
    assert!(
        refused.body().contains("speaks chat.v2, chat.v1"),
        "{refused}"
    );
    // The Host check holds as on a loopback server.
    let refused = app
        .request("/echo")
        .header("host", "evil.example")
        .await
        .unwrap_err();
    assert_eq!(refused.status(), 403);
}

#[tokio::test]
async fn expecting_a_message_and_getting_a_close_says_so() {
    let app = TestServer::new(server());
    let mut client = app.connect("/flood").await.unwrap();
    let line = line!() + 2;
    let failed = failure(async move {
        let _ = client.recv::<String>().await;
    })
    .await;
    assert_failure(
        &failed,
        "expected a message within 1s",
        line,
        "the connection closed with 1008: outbound queue full",
    );
}

#[tokio::test(start_paused = true)]
async fn expecting_a_message_that_never_comes_times_out() {
    let app = TestServer::new(server());
    let mut client = app.connect("/echo").await.unwrap();
    let line = line!() + 2;
    let failed = failure(async move {
        let _ = client.recv::<String>().await;
    })
    .await;
    assert_failure(
        &failed,
        "expected a message within 1s",
        line,
        "nothing came",
    );

    // The timeout is the server's, or the client's own.
    let app = TestServer::new(server()).timeout(Duration::from_secs(30));
    let mut client = app.connect("/echo").await.unwrap();
    client.set_timeout(Duration::from_millis(250));
    let line = line!() + 2;
    let failed = failure(async move {
        let _ = client.recv::<String>().await;
    })
    .await;
    assert_failure(
        &failed,
        "expected a message within 250ms",
        line,
        "nothing came",
    );
}

#[tokio::test]
async fn a_message_that_does_not_decode_is_shown() {
    let app = TestServer::new(server());
    let mut client = app.connect("/says-hi").await.unwrap();
    let line = line!() + 2;
    let failed = failure(async move {
        let _ = client.recv::<Json<Point>>().await;
    })
    .await;
    let start = format!(
        "expected a message that decodes as `Json<Point>` (at {}:{line}:",
        file!()
    );
    let message = &failed.message;
    assert!(message.starts_with(&start), "{message}");
    assert!(
        message.contains("); got a text message \"hi\", which does not: invalid JSON"),
        "{message}"
    );
    assert_panicked_at(&failed, line);
}

#[tokio::test]
async fn expecting_a_close_and_getting_a_message_or_another_code_says_so() {
    let app = TestServer::new(server());
    let mut client = app.connect("/says-hi").await.unwrap();
    let line = line!() + 2;
    let failed = failure(async move {
        let _ = client.expect_close(1000).await;
    })
    .await;
    assert_failure(
        &failed,
        "expected a close with 1000 within 1s",
        line,
        "got a text message \"hi\"",
    );

    let mut client = app.connect("/bye").await.unwrap();
    let line = line!() + 2;
    let failed = failure(async move {
        let _ = client.expect_close(1000).await;
    })
    .await;
    assert_failure(
        &failed,
        "expected a close with 1000 within 1s",
        line,
        "the connection closed with 4000: bye now",
    );
    let mut client = app.connect("/bye").await.unwrap();
    assert_eq!(client.expect_close(4000).await, "bye now");
}

#[tokio::test(start_paused = true)]
async fn expecting_nothing_and_getting_a_message_says_so() {
    let app = TestServer::new(server());
    let mut client = app.connect("/echo").await.unwrap();
    client.expect_nothing(Duration::from_secs(5)).await;
    client.send("unexpected").await;
    let line = line!() + 1;
    let failed = failure(async move { client.expect_nothing(Duration::from_secs(5)).await }).await;
    assert_failure(
        &failed,
        "expected nothing for 5s",
        line,
        "got a text message \"unexpected\"",
    );
}

/// Under a paused clock, keep-alive and the idle timeout take no wall time: a client that
/// reads answers the server's pings and stays; one that stops reading is closed with 1001.
#[tokio::test(start_paused = true)]
async fn keep_alive_and_idle_timeout_run_in_no_wall_time() {
    let started = std::time::Instant::now();
    let app = TestServer::new(
        server()
            .ping_interval(Duration::from_secs(30))
            .idle_timeout(Duration::from_secs(60)),
    );
    let mut client = app.connect("/echo").await.unwrap();
    // Ten minutes of silence: the client answers every ping while it waits.
    client.expect_nothing(Duration::from_secs(600)).await;
    client.send("still here").await;
    assert_eq!(client.recv::<String>().await, "still here");
    // Not reading for two minutes: pings go unanswered.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(client.expect_close(1001).await, "idle timeout");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Shutting the server down closes its clients with 1001.
#[tokio::test]
async fn shutdown_closes_every_client_with_1001() {
    let app = TestServer::new(server());
    let mut a = app.connect("/echo").await.unwrap();
    let mut b = app.connect("/echo").await.unwrap();
    let shutdown = app.shutdown();
    assert_eq!(a.expect_close(1001).await, "server shutting down");
    assert_eq!(b.expect_close(1001).await, "server shutting down");
    shutdown.await;
    assert_eq!(app.open_connections(), 0);
    let refused: Result<TestClient, _> = app.connect("/echo").await;
    assert_eq!(refused.unwrap_err().status(), 503);
}

/// A client that offers permessage-deflate speaks it, as a browser does: it compresses what
/// it sends and inflates what it gets; the handshake's answer is there to read.
#[tokio::test]
async fn a_client_that_offers_deflate_speaks_it() {
    let app = TestServer::new(server().queue_capacity(16));
    let mut client = app
        .request("/echo")
        .header("sec-websocket-extensions", "permessage-deflate")
        .await
        .unwrap();
    assert_eq!(
        client.extensions(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    assert_eq!(client.headers()["upgrade"], "websocket");
    let long = "a long message that compresses well. ".repeat(100);
    for message in ["short", long.as_str()] {
        client.send(message.to_owned()).await;
        assert_eq!(client.recv::<String>().await, message);
    }
    client.send(vec![1u8, 2, 3]).await;
    assert_eq!(client.recv::<Vec<u8>>().await, [1, 2, 3]);

    // With context takeover agreed, both sides keep their windows.
    let app =
        TestServer::new(server().compression(wsock::Compression::default().context_takeover(true)));
    let mut client = app
        .request("/echo")
        .header("sec-websocket-extensions", "permessage-deflate")
        .await
        .unwrap();
    assert_eq!(client.extensions(), Some("permessage-deflate"));
    for _ in 0..3 {
        client.send(long.clone()).await;
        assert_eq!(client.recv::<String>().await, long);
    }

    // Without the offer, nothing is agreed.
    let plain = app.connect("/echo").await.unwrap();
    assert_eq!(plain.extensions(), None);
}

/// The message limit is the message the endpoint gets: an incompressible message of exactly
/// the limit passes with deflate (compressed, it is a little larger) and without; one byte
/// more gets 1009, and the send itself does not fail before `expect_close` can say so.
#[tokio::test]
async fn a_message_at_the_limit_passes_and_one_over_is_refused_with_1009() {
    let app = TestServer::new(server());
    let limit = 1 << 20;
    for deflate in [false, true] {
        let mut request = app.request("/measure");
        if deflate {
            request = request.header("sec-websocket-extensions", "permessage-deflate");
        }
        let mut client = request.await.unwrap();
        assert_eq!(client.extensions().is_some(), deflate);
        client.send(incompressible(limit)).await;
        assert_eq!(
            client.recv::<String>().await,
            limit.to_string(),
            "deflate {deflate}"
        );
        client.send(incompressible(limit + 1)).await;
        let reason = client.expect_close(CloseCode::TOO_BIG).await;
        assert_eq!(
            reason, "message over the size limit of 1 MiB",
            "deflate {deflate}"
        );
    }
    // Far over the limit: the server stops reading at the header and ends the connection
    // while the client still writes.
    let mut client = app.connect("/measure").await.unwrap();
    client.send(vec![0u8; 16 << 20]).await;
    client.expect_close(CloseCode::TOO_BIG).await;
}

/// Every expectation that fails, waiting or not, is reported at the test's line: what an
/// editor jumps to from the test's output is the test, never the kit.
#[tokio::test(start_paused = true)]
async fn every_failure_is_reported_at_the_line_of_the_test() {
    let app = TestServer::new(server());
    let mut lobby = app.watch::<String>("room:lobby");
    let line = line!() + 2;
    let failed = failure(async move {
        let _ = lobby.recv::<String>().await;
    })
    .await;
    assert_failure(
        &failed,
        "expected a message on the topic \"room:lobby\" within 1s",
        line,
        "nothing was published",
    );

    // Failing before any wait: a message that cannot be encoded (JSON keys are strings).
    let mut client = app.connect("/echo").await.unwrap();
    let line = line!() + 3;
    let failed = failure(async move {
        let keyed_by_pairs = std::collections::HashMap::from([((1, 2), 3)]);
        client.send(Json(keyed_by_pairs)).await;
    })
    .await;
    let start = format!("cannot encode the message (at {}:{line}:", file!());
    assert!(failed.message.starts_with(&start), "{}", failed.message);
    assert_panicked_at(&failed, line);

    // Setting a connection up: a header that is not one.
    let line = line!() + 2;
    let failed = failure(async move {
        let _ = app.request("/echo").header("no spaces", "in names").await;
    })
    .await;
    assert!(
        failed.message.contains("a valid header name"),
        "{}",
        failed.message
    );
    assert_panicked_at(&failed, line);
}

/// A whole axum app, served by the kit: its WebSocket endpoints (wsock's router, merged)
/// and its REST routes, on one loopback port.
#[cfg(feature = "axum")]
mod router {
    use std::sync::{Arc, Mutex};

    use axum::extract::State;
    use axum::routing::{get, post};
    use wsock::test::TestRouter;

    use super::*;

    /// Who joined, as the endpoint writes it and the REST route reads it.
    #[derive(Clone, Default)]
    struct Joined(Arc<Mutex<Vec<String>>>);

    impl Joined {
        fn add(&self, name: &str) {
            self.0.lock().unwrap().push(name.to_owned());
        }
    }

    /// Names come from the query; a missing one is refused with 400 and a reason.
    #[websocket("/join")]
    fn join(out: Out<String>, joined: wsock::State<Joined>, query: Query<Name>) {
        joined.add(&query.name);
        out.write(format!("welcome {}", query.name));
        on_message(|text: String| out.write(format!("{}: {text}", query.name)));
    }

    #[derive(Deserialize)]
    struct Name {
        name: String,
    }

    #[derive(Serialize, Deserialize)]
    struct Members {
        members: Vec<String>,
    }

    /// The app as its `main` would build it: REST routes, then wsock's router merged in.
    fn app() -> (axum::Router, Server) {
        let joined = Joined::default();
        let ws = server().state(joined.clone()).route(join);
        let members = async |State(joined): State<Joined>| {
            let members = joined.0.lock().unwrap().clone();
            axum::Json(Members { members })
        };
        let shout = async |body: String| body.to_uppercase();
        let rest = axum::Router::new()
            .route("/api/members", get(members))
            .route("/api/shout", post(shout))
            .with_state(joined);
        (rest, ws)
    }

    #[tokio::test]
    async fn serves_the_merged_app_endpoints_and_rest_routes_alike() {
        let (rest, ws) = app();
        let sessions = ws.sessions();
        let handle = ws.handle();
        let app = TestRouter::new(rest.merge(ws.into_router())).sessions(sessions);

        let mut ada = app.connect("/join?name=ada").await.unwrap();
        assert_eq!(ada.recv::<String>().await, "welcome ada");
        ada.send("hi").await;
        assert_eq!(ada.recv::<String>().await, "ada: hi");

        // The REST route reads what the endpoint wrote.
        let members = app.get("/api/members").await;
        assert_eq!(members.status(), 200);
        assert_eq!(members.header("content-type"), Some("application/json"));
        assert_eq!(members.json::<Members>().members, ["ada"]);
        let shouted = app
            .http(wsock::Method::POST, "/api/shout")
            .header("content-type", "text/plain")
            .body("hello")
            .await;
        assert_eq!(shouted.text(), "HELLO");
        assert_eq!(app.get("/api/nothing").await.status(), 404);

        // A refusal comes back as from a TestServer; so does a path axum has no route for.
        let refused = app.connect("/join").await.unwrap_err();
        assert_eq!(refused.status(), 400);
        assert!(refused.body().contains("missing field `name`"), "{refused}");
        let refused = app
            .request("/join?name=eve")
            .origin("https://evil.example")
            .await
            .unwrap_err();
        assert_eq!(refused.status(), 403);
        assert_eq!(app.connect("/nowhere").await.unwrap_err().status(), 404);

        // Over real TCP: the peer is the client's socket; headers, subprotocols and sessions
        // go as with a TestServer.
        let user: Session = [("user", "bob")].into_iter().collect();
        let peer: SocketAddr = "127.0.0.2:0".parse().unwrap();
        let mut bob = app
            .request("/who?room=blue")
            .cookie("theme", "dark")
            .session(&user)
            .protocol("chat.v1")
            .peer_addr(peer)
            .await
            .unwrap();
        assert_eq!(bob.protocol(), Some("chat.v1"));
        let who = bob.recv::<String>().await;
        let (peer, rest) = who.split_once(' ').unwrap();
        assert!(peer.starts_with("127.0.0.2:"), "{who}");
        assert_eq!(rest, "/who room=blue - dark bob chat.v1");

        // The server's own handle shuts the WebSockets down, with 1001.
        handle.shutdown().await;
        assert_eq!(ada.expect_close(1001).await, "server shutting down");
    }

    /// A failure on a served app is reported at the test's line too.
    #[tokio::test]
    async fn a_failure_over_tcp_is_reported_at_the_line_of_the_test() {
        let (rest, ws) = app();
        let app = TestRouter::new(rest.merge(ws.into_router()));
        let mut client = app.connect("/join?name=ada").await.unwrap();
        let line = line!() + 2;
        let failed = failure(async move {
            let _ = client.expect_close(1000).await;
        })
        .await;
        assert_failure(
            &failed,
            "expected a close with 1000 within 1s",
            line,
            "got a text message \"welcome ada\"",
        );
    }
}
