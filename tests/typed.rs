//! Typed messages, path and query parameters, state, guards and the signed session, through
//! the server's dispatch and connection loop, with the test kit (no port).
#![cfg(feature = "test")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wsock::prelude::*;
use wsock::test::{Refused, TestServer};
use wsock::{Bytes, SessionKey, Text};

// ---------------------------------------------------------------------------------------------
// Message types

#[websocket("/string")]
fn string(out: Out<String>) {
    on_message(|text: String| out.write(text + "!"));
}

#[websocket("/text")]
fn text(out: Out<Text>) {
    on_message(|text: Text| out.write(text));
}

#[websocket("/vec")]
fn vec(out: Out<Vec<u8>>) {
    on_message(|mut bytes: Vec<u8>| {
        bytes.reverse();
        out.write(bytes);
    });
}

#[websocket("/bytes")]
fn bytes(out: Out<Bytes>) {
    on_message(|bytes: Bytes| out.write(bytes));
}

#[websocket("/message")]
fn message(out: Out<Message>) {
    on_message(|message: Message| out.write(message));
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Command {
    Add { a: i64, b: i64 },
    Echo { text: String },
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Sum(i64),
    Echoed(String),
}

#[websocket("/json")]
fn json(out: Out<Json<Reply>>) {
    on_message(|Json(command): Json<Command>| {
        out.write(Json(match command {
            Command::Add { a, b } => Reply::Sum(a + b),
            Command::Echo { text } => Reply::Echoed(text),
        }));
    });
}

#[websocket("/json-forgiving")]
fn json_forgiving(out: Out<String>) {
    on_message(|Json(command): Json<Command>| out.write(format!("{command:?}")));
    on_error(|error| out.write(format!("{}: {error}", error.close_code())));
}

#[websocket("/unencodable")]
fn unencodable(out: Out<Json<HashMap<(u8, u8), u8>>>) {
    // JSON object keys must be strings: this cannot be encoded.
    out.write(Json(HashMap::from([((1, 2), 3)])));
}

// ---------------------------------------------------------------------------------------------
// Parameters

#[websocket("/rooms/{room}/seats/{seat}")]
fn seat(room: String, seat: u16, out: Out<String>, req: Request) {
    out.write(format!(
        "{room} {seat} {}",
        req.path_param("room").unwrap_or("?")
    ));
}

#[websocket("/rooms/lobby/seats/{seat}")]
fn lobby(seat: u8, out: Out<String>) {
    out.write(format!("lobby {seat}"));
}

#[derive(Deserialize)]
struct Join {
    name: String,
    #[serde(default)]
    age: Option<u8>,
}

#[websocket("/query")]
fn query(Query(join): Query<Join>, out: Out<String>) {
    out.write(format!("{} {:?}", join.name, join.age));
}

#[derive(Default)]
struct Visits {
    count: AtomicU64,
}

#[websocket("/state")]
fn state(visits: State<Visits>, out: Out<String>) {
    out.write((visits.count.fetch_add(1, Ordering::Relaxed) + 1).to_string());
}

struct Missing;

#[websocket("/missing-state")]
fn missing_state(_missing: State<Missing>, out: Out<String>) {
    out.write("unreachable");
}

/// A synchronous guard.
struct ApiKey;

impl FromRequest for ApiKey {
    async fn from_request(req: &Request) -> Result<Self, Reject> {
        match req.header("x-api-key") {
            Some("open sesame") => Ok(ApiKey),
            _ => Err(Reject::unauthorized().with_body("missing or wrong x-api-key")),
        }
    }
}

#[websocket("/guarded")]
fn guarded(_key: ApiKey, out: Out<String>) {
    out.write("welcome");
}

/// An async guard: it awaits (a database, say) before deciding.
struct User(String);

impl FromRequest for User {
    async fn from_request(req: &Request) -> Result<Self, Reject> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        match req.session().get("user") {
            Some(user) => Ok(User(user.to_owned())),
            None => Err(Reject::unauthorized().with_body("log in first")),
        }
    }
}

#[websocket("/me")]
fn me(user: User, out: Out<String>) {
    out.write(format!("hello {}", user.0));
}

#[websocket("/session")]
fn session(session: Session, out: Out<String>) {
    out.write(format!("{session:?}"));
}

const SECRET: &[u8] = b"a test secret that is long enough, surely";

fn app() -> TestServer {
    TestServer::new(
        Server::new()
            .route(string)
            .route(text)
            .route(vec)
            .route(bytes)
            .route(message)
            .route(json)
            .route(json_forgiving)
            .route(unencodable)
            .route(seat)
            .route(lobby)
            .route(query)
            .route(state)
            .route(missing_state)
            .route(guarded)
            .route(me)
            .route(session)
            .state(Visits::default())
            .secret(SECRET),
    )
}

/// Sends `sent` to `path` and returns the first message back.
async fn round_trip(app: &TestServer, path: &str, sent: Message) -> Message {
    let mut client = app.connect(path).await.unwrap();
    client.send(sent).await;
    client.recv().await
}

/// The first text message from `path`.
async fn first(app: &TestServer, path: &str) -> String {
    app.connect(path).await.unwrap().recv().await
}

fn status_and_body(refused: Refused) -> (u16, String) {
    (refused.status().as_u16(), refused.body().to_owned())
}

#[tokio::test]
async fn every_message_type_round_trips() {
    let app = app();
    let text = |t: &str| Message::text(t);
    let binary = |b: &[u8]| Message::binary(b.to_vec());
    assert_eq!(round_trip(&app, "/string", text("hi")).await, text("hi!"));
    assert_eq!(
        round_trip(&app, "/text", text("héllo")).await,
        text("héllo")
    );
    assert_eq!(
        round_trip(&app, "/vec", binary(&[1, 2, 3])).await,
        binary(&[3, 2, 1])
    );
    assert_eq!(
        round_trip(&app, "/bytes", binary(&[0, 255])).await,
        binary(&[0, 255])
    );
    assert_eq!(round_trip(&app, "/message", text("t")).await, text("t"));
    assert_eq!(
        round_trip(&app, "/message", binary(&[9])).await,
        binary(&[9])
    );
    let sum = round_trip(&app, "/json", text(r#"{"op":"add","a":2,"b":40}"#)).await;
    assert_eq!(sum, text(r#"{"sum":42}"#));
    let echoed = round_trip(&app, "/json", text(r#"{"op":"echo","text":"x"}"#)).await;
    assert_eq!(echoed, text(r#"{"echoed":"x"}"#));
}

#[tokio::test]
async fn undecodable_json_closes_with_1007_and_says_why() {
    let app = app();
    let mut client = app.connect("/json").await.unwrap();
    client.send(r#"{"op":"divide"}"#).await;
    let reason = client.expect_close(1007).await;
    assert!(
        reason.starts_with("invalid JSON: unknown variant `divide`"),
        "{reason}"
    );

    let mut client = app.connect("/json").await.unwrap();
    client.send(b"{}".to_vec()).await;
    assert_eq!(
        client.expect_close(1003).await,
        "expected a JSON text message, got a binary one"
    );
}

#[tokio::test]
async fn on_error_keeps_a_json_endpoint_usable() {
    let app = app();
    let mut client = app.connect("/json-forgiving").await.unwrap();
    client.send("not json").await;
    let error: String = client.recv().await;
    assert!(error.starts_with("1007: invalid JSON"), "{error}");
    client.send(vec![1u8]).await;
    assert_eq!(
        client.recv::<String>().await,
        "1003: expected a JSON text message, got a binary one"
    );
    client.send(r#"{"op":"add","a":1,"b":1}"#).await;
    assert_eq!(client.recv::<String>().await, "Add { a: 1, b: 1 }");
}

#[tokio::test]
async fn a_message_that_cannot_be_encoded_closes_with_1011() {
    let app = app();
    let mut client = app.connect("/unencodable").await.unwrap();
    assert_eq!(
        client.expect_close(1011).await,
        "a message could not be encoded"
    );
}

#[tokio::test]
async fn path_parameters_are_parsed_before_the_upgrade() {
    let app = app();
    assert_eq!(
        first(&app, "/rooms/blue%20room/seats/7").await,
        "blue room 7 blue room"
    );
    // A literal segment wins over a parameter.
    assert_eq!(first(&app, "/rooms/lobby/seats/3").await, "lobby 3");
    let (status, body) = status_and_body(app.connect("/rooms/blue/seats/seven").await.unwrap_err());
    assert_eq!(status, 400);
    assert!(
        body.contains("invalid path parameter `seat` (\"seven\")"),
        "{body}"
    );
    let (status, body) = status_and_body(app.connect("/rooms/lobby/seats/300").await.unwrap_err());
    assert_eq!(status, 400);
    assert!(body.contains("`seat`"), "{body}");
    assert_eq!(
        app.connect("/rooms/blue/seats").await.unwrap_err().status(),
        404
    );
    // Escapes are decoded before matching; ones that are not UTF-8 are refused.
    assert_eq!(first(&app, "/rooms/lobb%79/seats/5").await, "lobby 5");
    assert_eq!(
        app.connect("/rooms/%FF/seats/1")
            .await
            .unwrap_err()
            .status(),
        400
    );
}

#[tokio::test]
async fn query_parameters_deserialize_or_refuse_with_400() {
    let app = app();
    assert_eq!(
        first(&app, "/query?name=ada+l&age=36").await,
        "ada l Some(36)"
    );
    assert_eq!(first(&app, "/query?name=bob").await, "bob None");
    let (status, body) = status_and_body(app.connect("/query?age=old").await.unwrap_err());
    assert_eq!(status, 400);
    assert!(body.starts_with("invalid query string"), "{body}");
}

#[tokio::test]
async fn state_is_shared_and_a_missing_state_is_a_500() {
    let app = app();
    let first_visit: u64 = first(&app, "/state").await.parse().unwrap();
    let second_visit: u64 = first(&app, "/state").await.parse().unwrap();
    assert!(second_visit > first_visit);
    let refused = app.connect("/missing-state").await.unwrap_err();
    assert_eq!(refused.status(), 500);
    // The body names the missing type, so the developer knows what to add.
    assert_eq!(
        refused.body(),
        "internal error: the server has no state of type `typed::Missing` (add it with \
         Server::state)"
    );
}

#[tokio::test]
async fn a_guard_refuses_with_its_status_and_body() {
    let app = app();
    assert_eq!(
        status_and_body(app.connect("/guarded").await.unwrap_err()),
        (401, "missing or wrong x-api-key".to_owned())
    );
    let mut client = app
        .request("/guarded")
        .header("x-api-key", "open sesame")
        .await
        .unwrap();
    assert_eq!(client.recv::<String>().await, "welcome");
}

fn session_cookie(key: &SessionKey, user: &str) -> String {
    let set_cookie = key.cookie(&[("user", user)].into_iter().collect());
    set_cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn an_async_guard_reads_the_signed_session() {
    let app = app();
    let ada: Session = [("user", "ada")].into_iter().collect();
    let mut client = app.request("/me").session(&ada).await.unwrap();
    assert_eq!(client.recv::<String>().await, "hello ada");
    // A cookie issued elsewhere with the server's secret works the same.
    let cookie = session_cookie(&SessionKey::derive_from(SECRET), "bob");
    let mut client = app.request("/me").header("cookie", &cookie).await.unwrap();
    assert_eq!(client.recv::<String>().await, "hello bob");
    assert_eq!(
        status_and_body(app.connect("/me").await.unwrap_err()),
        (401, "log in first".to_owned())
    );
}

#[tokio::test]
async fn tampered_foreign_or_malformed_cookies_give_an_empty_session() {
    let app = app();
    let good = session_cookie(&SessionKey::derive_from(SECRET), "ada");
    let mut client = app
        .request("/session")
        .header("cookie", &good)
        .await
        .unwrap();
    assert_eq!(client.recv::<String>().await, r#"{"user": "ada"}"#);

    let tampered = good.replace("ada", "eve");
    let foreign = session_cookie(&SessionKey::derive_from([42u8; 32]), "ada");
    for cookie in [tampered.as_str(), &foreign, "WSOCK_SESSION=%%%", "other=1"] {
        let mut client = app
            .request("/session")
            .header("cookie", cookie)
            .await
            .unwrap();
        assert_eq!(client.recv::<String>().await, "{}", "cookie {cookie}");
        // The guard that needs a user refuses them all.
        let refused = app
            .request("/me")
            .header("cookie", cookie)
            .await
            .unwrap_err();
        assert_eq!(refused.status(), 401);
    }
}
