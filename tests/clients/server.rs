//! The server the client package's tests (client/test/) run against: one endpoint per
//! behaviour they check. Not an example to learn from; `cargo test` builds it as the example
//! `client-test-server`, and the tests start it with `ADDRESS [HEARTBEAT_MS]`.
//!
//! - `/echo`: every message back, text as text and binary as binary;
//! - `/json`: each JSON message back as `{"echo": message}`;
//! - `/garbage`: sends `not json`, then `{"after":"garbage"}`;
//! - `/bye`: closes at once with 1000; `/policy`: closes at once with 1008;
//! - `/forbidden`: refused before the upgrade with 403 and `not for you`.

use std::time::Duration;

use serde_json::{Value, json};
use wsock::prelude::*;

#[websocket("/echo")]
fn echo(out: Out<Message>) {
    on_message(|message: Message| out.write(message));
}

#[websocket("/json")]
fn json_echo(out: Out<Json<Value>>) {
    on_message(|Json(value): Json<Value>| out.write(Json(json!({ "echo": value }))));
}

#[websocket("/garbage")]
fn garbage(out: Out<String>) {
    out.write("not json");
    out.write(r#"{"after":"garbage"}"#);
}

#[websocket("/bye")]
fn bye(out: Out<String>) {
    out.close();
}

#[websocket("/policy")]
fn policy(out: Out<String>) {
    out.close_with(CloseCode::POLICY, "not allowed");
}

/// A guard that never lets anyone in.
struct Nobody;

impl FromRequest for Nobody {
    async fn from_request(_: &Request) -> Result<Self, Reject> {
        Err(Reject::forbidden().with_body("not for you"))
    }
}

#[websocket("/forbidden")]
fn forbidden(_nobody: Nobody, out: Out<String>) {
    out.write("unreachable");
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let mut server = Server::new()
        .route(echo)
        .route(json_echo)
        .route(garbage)
        .route(bye)
        .route(policy)
        .route(forbidden);
    if let Some(ms) = args.next() {
        let ms = ms.parse().map_err(std::io::Error::other)?;
        server = server.heartbeat(Duration::from_millis(ms));
    }
    let bound = server.bind(addr).await?;
    println!("listening addr={}", bound.local_addr());
    bound.run().await
}
