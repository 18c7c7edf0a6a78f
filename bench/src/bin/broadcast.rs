//! The fan-out baseline: a tokio-tungstenite server that fans out through
//! `tokio::sync::broadcast`, written the way axum users do it today (axum's own chat example:
//! one channel, a receiver per subscriber, a task per subscriber that forwards what it
//! receives).
//!
//! `broadcast [ADDRESS]` (default 127.0.0.1:9004) prints `listening addr=..` once bound.
//!
//! - `/sub`: a task per subscriber loops on `rx.recv().await`, then `ws.send(msg).await`. A
//!   receiver that falls more than the channel's capacity behind gets
//!   `RecvError::Lagged(n)` and goes on: those `n` messages are lost for it (the load
//!   generator counts them). A second task reads the socket (pongs, the close), as in the
//!   chat example.
//! - `/pub`: each text message received is sent to the channel, as is (`Message` clones
//!   share the payload).
//!
//! The channel holds [`CAPACITY`] messages, the common choice (axum's chat example has 100).

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// The broadcast channel's capacity.
const CAPACITY: usize = 1024;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9004".to_owned());
    let listener = TcpListener::bind(addr).await?;
    println!("listening addr={}", listener.local_addr()?);
    let (tx, _) = broadcast::channel::<Message>(CAPACITY);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(connection(stream, tx.clone()));
    }
}

// The upgrade callback's `Err` is tungstenite's `ErrorResponse`, as its signature wants.
#[allow(clippy::result_large_err)]
async fn connection(stream: TcpStream, tx: broadcast::Sender<Message>) {
    let _ = stream.set_nodelay(true);
    let mut path = String::new();
    let upgraded = tokio_tungstenite::accept_hdr_async(stream, |request: &Request, response| {
        path = request.uri().path().to_owned();
        Ok::<Response, _>(response)
    })
    .await;
    let Ok(ws) = upgraded else {
        return;
    };
    match path.as_str() {
        "/sub" => {
            let mut rx = tx.subscribe();
            let (mut sender, mut receiver) = ws.split();
            let mut send_task = tokio::spawn(async move {
                loop {
                    match rx.recv().await {
                        Ok(msg) => {
                            if sender.send(msg).await.is_err() {
                                break;
                            }
                        }
                        // Fell behind: the `n` oldest messages are gone; go on.
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => break,
                    }
                }
            });
            let mut recv_task =
                tokio::spawn(async move { while let Some(Ok(_)) = receiver.next().await {} });
            tokio::select! {
                _ = &mut send_task => recv_task.abort(),
                _ = &mut recv_task => send_task.abort(),
            }
        }
        "/pub" => {
            let mut ws = ws;
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_text() {
                    // `Err`: nobody subscribes; nothing to do.
                    let _ = tx.send(msg);
                }
            }
        }
        _ => {
            let mut ws = ws;
            let _ = ws.close(None).await;
        }
    }
}
