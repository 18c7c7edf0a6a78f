//! The close codes of docs/server.md's table that come from the client's input, over real
//! connections (raw bytes where no client library would send them).

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wsock::prelude::*;

#[websocket("/text")]
fn text(out: Out<String>) {
    on_message(|text: String| out.write(text));
}

#[websocket("/forgiving")]
fn forgiving(out: Out<String>) {
    on_message(|text: String| out.write(text));
    on_error(|error: DecodeError| out.write(format!("error {}: {error}", error.close_code())));
}

/// Writes 64 KiB messages until the connection closes, and records why it closed.
#[websocket("/flood")]
fn flood(out: Out<Vec<u8>>, req: Request) {
    let flooder = out.clone();
    tokio::spawn(async move {
        while !flooder.is_closed() {
            flooder.write(vec![7u8; 64 << 10]);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        record(&req, "queue overflowed");
    });
}

async fn start() -> TestServer {
    TestServer::start(
        Server::new()
            .route(text)
            .route(forgiving)
            .route(flood)
            .max_message_size(1024)
            .queue_capacity(8)
            .close_timeout(Duration::from_secs(10)),
    )
    .await
}

#[tokio::test]
async fn a_binary_message_on_a_text_endpoint_closes_with_1003() {
    let server = start().await;
    let mut ws = server.connect("/text").await;
    ws.send(WsMessage::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        close_frame(&mut ws).await,
        (1003, "expected a text message, got a binary one".to_owned())
    );
    server.stop().await;
}

#[tokio::test]
async fn on_error_takes_undecodable_messages_and_the_connection_goes_on() {
    let server = start().await;
    let mut ws = server.connect("/forgiving").await;
    ws.send(WsMessage::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        "error 1003: expected a text message, got a binary one"
    );
    send(&mut ws, "still open").await;
    assert_eq!(next_text(&mut ws).await, "still open");
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn a_message_over_the_size_limit_closes_with_1009() {
    let server = start().await;
    let mut ws = server.connect("/text").await;
    send(&mut ws, &"x".repeat(1000)).await;
    assert_eq!(next_text(&mut ws).await.len(), 1000);
    send(&mut ws, &"x".repeat(2000)).await;
    assert_eq!(close_frame(&mut ws).await.0, 1009);
    server.stop().await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_message_closes_with_1007() {
    let server = start().await;
    let mut stream = raw_upgrade(server.addr, "/text").await;
    stream
        .write_all(&frame(0x1, &[0x66, 0xff, 0xfe], true))
        .await
        .unwrap();
    assert_eq!(raw_close_code(&mut stream).await, 1007);
    server.stop().await;
}

#[tokio::test]
async fn an_unmasked_client_frame_closes_with_1002() {
    let server = start().await;
    let mut stream = raw_upgrade(server.addr, "/text").await;
    stream.write_all(&frame(0x1, b"hi", false)).await.unwrap();
    assert_eq!(raw_close_code(&mut stream).await, 1002);
    server.stop().await;
}

#[tokio::test]
async fn a_raw_client_is_answered_like_any_other() {
    let server = start().await;
    let mut stream = raw_upgrade(server.addr, "/text").await;
    stream.write_all(&frame(0x1, b"hi", true)).await.unwrap();
    assert_eq!(raw_read_frame(&mut stream).await, (0x81, b"hi".to_vec()));
    stream
        .write_all(&frame(0x8, &1000u16.to_be_bytes(), true))
        .await
        .unwrap();
    assert_eq!(raw_close_code(&mut stream).await, 1000);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_with_1008() {
    let server = start().await;
    let id = unique_id("flood");
    let mut ws = server.connect(&format!("/flood?id={id}")).await;
    // The client reads nothing until the server gave up on it.
    wait_for(&id, "queue overflowed").await;
    assert_eq!(
        close_frame(&mut ws).await,
        (1008, "outbound queue full".to_owned())
    );
    server.stop().await;
}
