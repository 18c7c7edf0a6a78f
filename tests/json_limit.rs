//! The message limit of endpoints that receive `Json<T>`: 64 KiB unless the endpoint or the
//! server sets one; other inbound types keep the server's default, 16 MiB.
#![cfg(feature = "test")]

use serde::Deserialize;
use wsock::prelude::*;
use wsock::test::TestServer;

#[derive(Deserialize)]
struct Vote {
    option: usize,
}

/// Says the option of each vote.
#[websocket("/vote")]
fn vote(out: Out<String>) {
    on_message(|Json(vote): Json<Vote>| out.write(vote.option.to_string()));
}

/// The same, with the endpoint's own limit.
#[websocket("/vote-1mib", max_message_size = "1MiB")]
fn vote_1mib(out: Out<String>) {
    on_message(|Json(vote): Json<Vote>| out.write(vote.option.to_string()));
}

/// The same, async, with the type declared in the body.
#[websocket("/vote-async")]
fn vote_async(out: Out<String>) {
    #[derive(Deserialize)]
    struct Ballot {
        option: usize,
    }
    on_message(async |Json(ballot): Json<Ballot>| out.write(ballot.option.to_string()));
}

/// Says the length of each text message.
#[websocket("/text")]
fn text(out: Out<String>) {
    on_message(|text: String| out.write(text.len().to_string()));
}

/// A vote of `len` bytes: an unknown field pads it.
fn padded_vote(len: usize) -> String {
    let vote = r#"{"option":1,"padding":""}"#;
    let padding = "x".repeat(len - vote.len());
    format!(r#"{{"option":1,"padding":"{padding}"}}"#)
}

fn app(server: Server) -> TestServer {
    TestServer::new(
        server
            .route(vote)
            .route(vote_1mib)
            .route(vote_async)
            .route(text),
    )
}

#[tokio::test]
async fn a_json_endpoint_takes_64_kib_and_closes_with_1009_above() {
    let app = app(Server::new());
    for path in ["/vote", "/vote-async"] {
        let mut client = app.connect(path).await.unwrap();
        client.send(padded_vote(64 << 10)).await;
        assert_eq!(client.recv::<String>().await, "1");
        client.send(padded_vote((64 << 10) + 1)).await;
        client.expect_close(1009).await;
    }
}

#[tokio::test]
async fn the_endpoints_limit_wins() {
    let app = app(Server::new());
    let mut client = app.connect("/vote-1mib").await.unwrap();
    client.send(padded_vote(1 << 20)).await;
    assert_eq!(client.recv::<String>().await, "1");
    client.send(padded_vote((1 << 20) + 1)).await;
    client.expect_close(1009).await;
}

#[tokio::test]
async fn the_servers_limit_wins() {
    let app = app(Server::new().max_message_size(256 << 10));
    let mut client = app.connect("/vote").await.unwrap();
    client.send(padded_vote(256 << 10)).await;
    assert_eq!(client.recv::<String>().await, "1");
    client.send(padded_vote((256 << 10) + 1)).await;
    client.expect_close(1009).await;
    // The endpoint's own limit still wins over the server's.
    let mut client = app.connect("/vote-1mib").await.unwrap();
    client.send(padded_vote(1 << 20)).await;
    assert_eq!(client.recv::<String>().await, "1");
}

#[tokio::test]
async fn other_types_keep_the_default() {
    let app = app(Server::new());
    let mut client = app.connect("/text").await.unwrap();
    client.send("x".repeat(1 << 20)).await;
    assert_eq!(client.recv::<String>().await, (1 << 20).to_string());
}
