//! Typed messages, path and query parameters, state, guards and the signed session, over real
//! connections.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wsock::prelude::*;
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

async fn start() -> TestServer {
    TestServer::start(
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
    .await
}

async fn round_trip(server: &TestServer, path: &str, sent: WsMessage) -> WsMessage {
    let mut ws = server.connect(path).await;
    ws.send(sent).await.unwrap();
    next(&mut ws).await
}

#[tokio::test]
async fn every_message_type_round_trips() {
    let server = start().await;
    let text = |t: &str| WsMessage::text(t);
    let binary = |b: &[u8]| WsMessage::binary(b.to_vec());
    assert_eq!(
        round_trip(&server, "/string", text("hi")).await,
        text("hi!")
    );
    assert_eq!(
        round_trip(&server, "/text", text("héllo")).await,
        text("héllo")
    );
    assert_eq!(
        round_trip(&server, "/vec", binary(&[1, 2, 3])).await,
        binary(&[3, 2, 1])
    );
    assert_eq!(
        round_trip(&server, "/bytes", binary(&[0, 255])).await,
        binary(&[0, 255])
    );
    assert_eq!(round_trip(&server, "/message", text("t")).await, text("t"));
    assert_eq!(
        round_trip(&server, "/message", binary(&[9])).await,
        binary(&[9])
    );
    let sum = round_trip(&server, "/json", text(r#"{"op":"add","a":2,"b":40}"#)).await;
    assert_eq!(sum, text(r#"{"sum":42}"#));
    let echoed = round_trip(&server, "/json", text(r#"{"op":"echo","text":"x"}"#)).await;
    assert_eq!(echoed, text(r#"{"echoed":"x"}"#));
    server.stop().await;
}

#[tokio::test]
async fn undecodable_json_closes_with_1007_and_says_why() {
    let server = start().await;
    let mut ws = server.connect("/json").await;
    send(&mut ws, r#"{"op":"divide"}"#).await;
    let (code, reason) = close_frame(&mut ws).await;
    assert_eq!(code, 1007);
    assert!(
        reason.starts_with("invalid JSON: unknown variant `divide`"),
        "{reason}"
    );

    let mut ws = server.connect("/json").await;
    ws.send(WsMessage::binary(b"{}".to_vec())).await.unwrap();
    assert_eq!(
        close_frame(&mut ws).await,
        (
            1003,
            "expected a JSON text message, got a binary one".to_owned()
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn on_error_keeps_a_json_endpoint_usable() {
    let server = start().await;
    let mut ws = server.connect("/json-forgiving").await;
    send(&mut ws, "not json").await;
    let error = next_text(&mut ws).await;
    assert!(error.starts_with("1007: invalid JSON"), "{error}");
    ws.send(WsMessage::binary(vec![1])).await.unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        "1003: expected a JSON text message, got a binary one"
    );
    send(&mut ws, r#"{"op":"add","a":1,"b":1}"#).await;
    assert_eq!(next_text(&mut ws).await, "Add { a: 1, b: 1 }");
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn a_message_that_cannot_be_encoded_closes_with_1011() {
    let server = start().await;
    let mut ws = server.connect("/unencodable").await;
    assert_eq!(
        close_frame(&mut ws).await,
        (1011, "a message could not be encoded".to_owned())
    );
    server.stop().await;
}

#[tokio::test]
async fn path_parameters_are_parsed_before_the_upgrade() {
    let server = start().await;
    let mut ws = server.connect("/rooms/blue%20room/seats/7").await;
    assert_eq!(next_text(&mut ws).await, "blue room 7 blue room");
    drop(ws);
    // A literal segment wins over a parameter.
    let mut ws = server.connect("/rooms/lobby/seats/3").await;
    assert_eq!(next_text(&mut ws).await, "lobby 3");
    drop(ws);
    let (status, body) = refused(server.addr, "/rooms/blue/seats/seven", &[]).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("invalid path parameter `seat` (\"seven\")"),
        "{body}"
    );
    let (status, body) = refused(server.addr, "/rooms/lobby/seats/300", &[]).await;
    assert_eq!(status, 400);
    assert!(body.contains("`seat`"), "{body}");
    assert_eq!(refused(server.addr, "/rooms/blue/seats", &[]).await.0, 404);
    // Escapes are decoded before matching; ones that are not UTF-8 are refused.
    let mut ws = server.connect("/rooms/lobb%79/seats/5").await;
    assert_eq!(next_text(&mut ws).await, "lobby 5");
    drop(ws);
    assert_eq!(refused(server.addr, "/rooms/%FF/seats/1", &[]).await.0, 400);
    server.stop().await;
}

#[tokio::test]
async fn query_parameters_deserialize_or_refuse_with_400() {
    let server = start().await;
    let mut ws = server.connect("/query?name=ada+l&age=36").await;
    assert_eq!(next_text(&mut ws).await, "ada l Some(36)");
    drop(ws);
    let mut ws = server.connect("/query?name=bob").await;
    assert_eq!(next_text(&mut ws).await, "bob None");
    drop(ws);
    let (status, body) = refused(server.addr, "/query?age=old", &[]).await;
    assert_eq!(status, 400);
    assert!(body.starts_with("invalid query string"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn state_is_shared_and_a_missing_state_is_a_500() {
    let server = start().await;
    let first: u64 = next_text(&mut server.connect("/state").await)
        .await
        .parse()
        .unwrap();
    let second: u64 = next_text(&mut server.connect("/state").await)
        .await
        .parse()
        .unwrap();
    assert!(second > first);
    assert_eq!(refused(server.addr, "/missing-state", &[]).await.0, 500);
    server.stop().await;
}

#[tokio::test]
async fn a_guard_refuses_with_its_status_and_body() {
    let server = start().await;
    assert_eq!(
        refused(server.addr, "/guarded", &[]).await,
        (401, "missing or wrong x-api-key\n".to_owned())
    );
    let mut ws = connect_with(server.addr, "/guarded", &[("x-api-key", "open sesame")]).await;
    assert_eq!(next_text(&mut ws).await, "welcome");
    drop(ws);
    server.stop().await;
}

fn session_cookie(key: &SessionKey, user: &str) -> String {
    let set_cookie = key.cookie(&[("user", user)].into_iter().collect());
    set_cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn an_async_guard_reads_the_signed_session() {
    let server = start().await;
    let key = SessionKey::derive_from(SECRET);
    let cookie = session_cookie(&key, "ada");
    let mut ws = connect_with(server.addr, "/me", &[("cookie", &cookie)]).await;
    assert_eq!(next_text(&mut ws).await, "hello ada");
    drop(ws);
    assert_eq!(
        refused(server.addr, "/me", &[]).await,
        (401, "log in first\n".to_owned())
    );
    server.stop().await;
}

#[tokio::test]
async fn tampered_foreign_or_malformed_cookies_give_an_empty_session() {
    let server = start().await;
    let key = SessionKey::derive_from(SECRET);
    let good = session_cookie(&key, "ada");
    let mut ws = connect_with(server.addr, "/session", &[("cookie", &good)]).await;
    assert_eq!(next_text(&mut ws).await, r#"{"user": "ada"}"#);
    drop(ws);

    let tampered = good.replace("ada", "eve");
    let foreign = session_cookie(&SessionKey::derive_from([42u8; 32]), "ada");
    for cookie in [tampered.as_str(), &foreign, "WSOCK_SESSION=%%%", "other=1"] {
        let mut ws = connect_with(server.addr, "/session", &[("cookie", cookie)]).await;
        assert_eq!(next_text(&mut ws).await, "{}", "cookie {cookie}");
        drop(ws);
        // The guard that needs a user refuses them all.
        assert_eq!(
            refused(server.addr, "/me", &[("cookie", cookie)]).await.0,
            401
        );
    }
    server.stop().await;
}
