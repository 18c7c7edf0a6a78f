//! The writer and the close paths together: a client whose reads are throttled, so that what
//! the server sends backs up in the pipe, in the writer and in the outbound queue, while the
//! input decides what happens next: messages published to the connection, reads of a few
//! bytes, messages, pings, a Close at any point, time passing, the client's side shut.
//!
//! Checks: nothing panics; once the server has the client's Close, the connection ends within
//! the close timeout even though the client reads nothing more; every connection ends. A
//! connection that spins instead of parking shows as a timeout of the fuzzer (the clock is
//! paused, so waits cost nothing and only busy work takes time).
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use wsock::__private::FuzzHarness;
use wsock::prelude::*;

/// Echoes what it is sent, and receives what is published to `feed`.
#[websocket("/feed")]
fn feed(out: Out<Message>, topics: Topics) {
    topics.topic::<Message>("feed").subscribe(&out);
    on_message(|message: Message| out.write(message));
}

const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime")
});

/// The server and its topics. A small queue, so that the slow-consumer close (1008) is in
/// reach as well.
static SERVER: LazyLock<(FuzzHarness, Topics)> = LazyLock::new(|| {
    let server = Server::new()
        .route(feed)
        .queue_capacity(64)
        .close_timeout(CLOSE_TIMEOUT)
        .max_message_size(1 << 20);
    let topics = server.topics();
    (server.fuzz_harness(), topics)
});

const HANDSHAKE: &[u8] = b"GET /feed HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

const DEFLATE: &[u8] = b"Sec-WebSocket-Extensions: permessage-deflate\r\n";

/// A masked client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Writes `bytes` if the server takes them within a moment (it may not: it reads only while
/// its endpoint waits for a message); returns whether it did.
async fn try_write(client: &mut DuplexStream, bytes: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_millis(10), client.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// Reads at most `n` bytes of what the server sent, if any came within a moment; `false`
/// once the server ended the connection.
async fn read_some(client: &mut DuplexStream, n: usize) -> bool {
    let mut buf = vec![0u8; n.max(1)];
    !matches!(
        tokio::time::timeout(Duration::from_millis(1), client.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let Some((&first, mut script)) = input.split_first() else {
        return;
    };
    let (harness, topics) = &*SERVER;
    RUNTIME.block_on(async {
        // A small pipe: a few KiB unread and the server's writes block.
        let (mut client, server_end) = tokio::io::duplex(1 << 12);
        let serving = tokio::spawn(async move { harness.serve(server_end).await });
        let mut request = HANDSHAKE.to_vec();
        if first & 1 == 1 {
            request.extend_from_slice(DEFLATE);
        }
        request.extend_from_slice(b"\r\n");
        client.write_all(&request).await.expect("the request");
        let feed = topics.topic::<Message>("feed");

        let mut close_sent = false;
        let mut open = true;
        while open && !close_sent {
            let Some((&op, rest)) = script.split_first() else {
                break;
            };
            let arg = rest.first().copied().unwrap_or(0);
            script = rest.get(1..).unwrap_or_default();
            match op % 8 {
                // Messages published to the connection: `arg` of them, of a size the next
                // op byte would otherwise be (up to 16 KiB), text or binary.
                0 | 1 => {
                    let size = usize::from(op >> 3) * 512;
                    for i in 0..arg {
                        let message = if op & 1 == 0 {
                            Message::text("p".repeat(size) + &i.to_string())
                        } else {
                            Message::Binary(vec![i; size].into())
                        };
                        let _ = feed.publish(message);
                    }
                }
                // A throttled read: `arg` * 16 bytes at most.
                2 => open = read_some(&mut client, usize::from(arg) * 16).await,
                // A message of `arg` bytes, echoed back (more for the server to write).
                3 => {
                    let payload = vec![b'm'; usize::from(arg)];
                    let _ = try_write(&mut client, &frame(0x1, &payload)).await;
                }
                4 => {
                    let _ = try_write(&mut client, &frame(0x9, &[arg])).await;
                }
                // The Close: a code (1000 + `arg`, or none) and no reason.
                5 => {
                    let payload = if arg == 0 {
                        Vec::new()
                    } else {
                        (1000 + u16::from(arg)).to_be_bytes().to_vec()
                    };
                    close_sent = try_write(&mut client, &frame(0x8, &payload)).await;
                }
                // Time passes: up to about 25 s, past pings and close timeouts.
                6 => tokio::time::sleep(Duration::from_millis(u64::from(arg) * 100)).await,
                // The client shuts its sending side.
                _ => {
                    let _ = client.shutdown().await;
                }
            }
        }

        if close_sent {
            // The server has the Close (it was written into the pipe, which it reads even
            // while its own writes are blocked): without another read by the client, the
            // connection ends within the close timeout.
            let bound = CLOSE_TIMEOUT + Duration::from_secs(1);
            match tokio::time::timeout(bound, serving).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => panic!("serving the connection failed: {error}"),
                Err(_) => panic!("the connection outlived its close timeout after a Close"),
            }
            return;
        }
        // Otherwise the client reads everything and goes: the connection still ends.
        let _ = client.shutdown().await;
        let drained = async {
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = client.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(120), drained).await;
        drop(client);
        match tokio::time::timeout(Duration::from_secs(120), serving).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => panic!("serving the connection failed: {error}"),
            Err(_) => panic!("the connection was never released"),
        }
    });
});
