//! permessage-deflate (RFC 7692) on the wire, with hand-made frames: what is negotiated, what
//! is compressed, and every edge case the RFC names.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use flate2::{Compress, Compression as Level, Decompress, FlushCompress, FlushDecompress};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wsock::Compression;
use wsock::prelude::*;

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;

#[websocket("/echo")]
fn echo(out: Out<Message>) {
    on_message(|message: Message| out.write(message));
}

#[websocket("/vault", compress = false)]
fn vault(out: Out<Message>) {
    on_message(|message: Message| out.write(message));
}

/// Subscribes to `news`, then says so.
#[websocket("/news")]
fn news(out: Out<String>, topics: Topics) {
    topics.topic::<String>("news").subscribe(&out);
    out.write("subscribed".to_owned());
}

fn endpoints() -> Server {
    Server::new()
        .route(echo)
        .route(vault)
        .route(measure)
        .max_message_size(1 << 20)
        // These raw clients do not answer a shutdown's close.
        .close_timeout(Duration::from_millis(200))
}

/// JSON-like text that compresses as real JSON does.
fn json(bytes: usize) -> String {
    let mut text = String::from("[");
    let mut i = 0;
    while text.len() < bytes {
        text.push_str(&format!(
            r#"{{"id":{i},"user":"user{}","kind":"message","text":"hello number {}"}},"#,
            i % 7,
            i * 7919 % 1000
        ));
        i += 1;
    }
    text.truncate(bytes - 1);
    text.push(']');
    text
}

/// Raw deflate with a sync flush, without the trailing 00 00 ff ff (RFC 7692 §7.2.1).
fn deflate(bytes: &[u8], window: u8) -> Vec<u8> {
    let mut compress = Compress::new_with_window_bits(Level::new(6), false, window);
    let mut out = Vec::with_capacity(bytes.len() + 64);
    compress
        .compress_vec(bytes, &mut out, FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// Inflates a compressed message payload with a window of `window` bits.
fn inflate(payload: &[u8], window: u8) -> Vec<u8> {
    let mut decompress = Decompress::new_with_window_bits(false, window);
    let input = [payload, &[0, 0, 0xff, 0xff]].concat();
    let mut out = Vec::with_capacity(payload.len() * 20 + 64);
    decompress
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

/// An upgrade with `extensions` offered; returns the stream and the response head, lowercased.
async fn upgrade(addr: SocketAddr, path: &str, extensions: Option<&str>) -> (TcpStream, String) {
    let header = extensions.map_or(String::new(), |offer| {
        format!("Sec-WebSocket-Extensions: {offer}\r\n")
    });
    let (stream, head) = raw_upgrade_with(addr, path, &header).await;
    (stream, head.to_ascii_lowercase())
}

/// The accepted extensions, as the response names them.
fn extensions(head: &str) -> Option<&str> {
    head.lines()
        .find_map(|line| line.strip_prefix("sec-websocket-extensions:"))
        .map(str::trim)
}

const AGREED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

#[tokio::test]
async fn offers_are_accepted_declined_or_not_made() {
    let server = TestServer::start(endpoints()).await;
    let offered = [
        (
            Some("permessage-deflate; client_max_window_bits"),
            Some(AGREED),
        ),
        (Some("permessage-deflate"), Some(AGREED)),
        // Declined, and the handshake goes on.
        (Some("permessage-deflate; no_such_parameter"), None),
        (Some("permessage-deflate; server_max_window_bits=16"), None),
        (Some("x-webkit-deflate-frame"), None),
        (None, None),
    ];
    for (offer, expected) in offered {
        let (_stream, head) = upgrade(server.addr, "/echo", offer).await;
        assert_eq!(extensions(&head), expected, "{offer:?}");
    }
    // An endpoint with `compress = false`, and a server with compression off, decline.
    let (_stream, head) = upgrade(server.addr, "/vault", Some("permessage-deflate")).await;
    assert_eq!(extensions(&head), None);
    server.stop().await;
    let server = TestServer::start(endpoints().compression(Compression::off())).await;
    let (_stream, head) = upgrade(server.addr, "/echo", Some("permessage-deflate")).await;
    assert_eq!(extensions(&head), None);
    server.stop().await;
}

#[tokio::test]
async fn large_json_is_smaller_on_the_wire_both_ways_and_small_messages_go_as_they_are() {
    let server = TestServer::start(endpoints()).await;
    let (mut stream, _) = upgrade(server.addr, "/echo", Some("permessage-deflate")).await;
    let text = json(10 << 10);
    let compressed = deflate(text.as_bytes(), 15);
    assert!(compressed.len() * 3 < text.len());
    stream
        .write_all(&raw_frame(FIN | RSV1 | TEXT, &compressed))
        .await
        .unwrap();
    let (first, payload) = raw_read_frame(&mut stream).await;
    assert_eq!(first, FIN | RSV1 | TEXT, "the echo is compressed");
    assert!(
        payload.len() * 3 < text.len(),
        "{} bytes on the wire for {} of text",
        payload.len(),
        text.len()
    );
    assert_eq!(inflate(&payload, 15), text.as_bytes());
    // Under the threshold (1 KiB), a message goes as it is, whatever the client did.
    let small = json(200);
    stream
        .write_all(&raw_frame(
            FIN | RSV1 | TEXT,
            &deflate(small.as_bytes(), 15),
        ))
        .await
        .unwrap();
    assert_eq!(
        raw_read_frame(&mut stream).await,
        (FIN | TEXT, small.into_bytes())
    );
    server.stop().await;
}

#[tokio::test]
async fn a_compressed_message_may_come_in_fragments_and_may_be_empty() {
    let server = TestServer::start(endpoints()).await;
    let (mut stream, _) = upgrade(server.addr, "/echo", Some("permessage-deflate")).await;
    let text = json(4 << 10);
    let compressed = deflate(text.as_bytes(), 15);
    let third = compressed.len() / 3;
    // RSV1 on the first frame only.
    let mut bytes = raw_frame(RSV1 | TEXT, &compressed[..third]);
    bytes.extend(raw_frame(FIN | PING, b"between"));
    bytes.extend(raw_frame(CONTINUATION, &compressed[third..2 * third]));
    bytes.extend(raw_frame(FIN | CONTINUATION, &compressed[2 * third..]));
    stream.write_all(&bytes).await.unwrap();
    assert_eq!(
        raw_read_frame(&mut stream).await,
        (FIN | 0xA, b"between".to_vec())
    );
    let (first, payload) = raw_read_frame(&mut stream).await;
    assert_eq!(first, FIN | RSV1 | TEXT);
    assert_eq!(inflate(&payload, 15), text.as_bytes());
    // An empty message: the single byte 0x00 (what Python's websockets sends), or nothing.
    for empty in [&[0u8][..], &[]] {
        stream
            .write_all(&raw_frame(FIN | RSV1 | TEXT, empty))
            .await
            .unwrap();
        assert_eq!(raw_read_frame(&mut stream).await, (FIN | TEXT, Vec::new()));
    }
    server.stop().await;
}

#[tokio::test]
async fn a_bomb_closes_with_1009_and_rsv1_where_it_does_not_belong_with_1002() {
    let server = TestServer::start(endpoints()).await;
    // 16 MiB of zeros compress to about 16 KiB; the limit is 1 MiB.
    let bomb = deflate(&vec![0u8; 16 << 20], 15);
    assert!(bomb.len() < 20 << 10);
    let (mut stream, _) = upgrade(server.addr, "/echo", Some("permessage-deflate")).await;
    stream
        .write_all(&raw_frame(FIN | RSV1 | 0x2, &bomb))
        .await
        .unwrap();
    assert_eq!(raw_close_code(&mut stream).await, 1009);

    let cases: [(&str, Option<&str>, Vec<u8>); 4] = [
        (
            "RSV1 on a continuation frame",
            Some("permessage-deflate"),
            [
                raw_frame(RSV1 | TEXT, &deflate(b"ab", 15)),
                raw_frame(FIN | RSV1 | CONTINUATION, b"c"),
            ]
            .concat(),
        ),
        (
            "RSV1 on a ping",
            Some("permessage-deflate"),
            raw_frame(FIN | RSV1 | PING, b"x"),
        ),
        (
            "RSV1 on a close",
            Some("permessage-deflate"),
            raw_frame(FIN | RSV1 | CLOSE, &1000u16.to_be_bytes()),
        ),
        (
            "RSV1 without permessage-deflate",
            None,
            raw_frame(FIN | RSV1 | TEXT, &deflate(b"hello", 15)),
        ),
    ];
    for (case, offer, bytes) in cases {
        let (mut stream, _) = upgrade(server.addr, "/echo", offer).await;
        stream.write_all(&bytes).await.unwrap();
        assert_eq!(raw_close_code(&mut stream).await, 1002, "{case}");
    }
    // Not deflate data at all: 1007.
    let (mut stream, _) = upgrade(server.addr, "/echo", Some("permessage-deflate")).await;
    stream
        .write_all(&raw_frame(FIN | RSV1 | TEXT, &[0xff, 0xff, 0xff]))
        .await
        .unwrap();
    assert_eq!(raw_close_code(&mut stream).await, 1007);
    server.stop().await;
}

/// Raw deflate of `bytes` at `level` (0 stores), sync-flushed every `flush_every` bytes, as
/// clients that stream do, without the final 00 00 ff ff.
fn deflate_at(bytes: &[u8], level: u32, flush_every: usize) -> Vec<u8> {
    let mut compress = Compress::new(Level::new(level), false);
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 8 + 1024);
    for piece in bytes.chunks(flush_every) {
        compress
            .compress_vec(piece, &mut out, FlushCompress::Sync)
            .unwrap();
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// The message limit is the message the endpoint receives: an incompressible message of
/// exactly the limit passes with and without deflate (its compressed form is a little larger
/// than the limit, in one frame or in fragments), and one byte more closes with 1009 either way.
#[tokio::test]
async fn an_incompressible_message_at_the_limit_passes_with_and_without_deflate() {
    let server = TestServer::start(endpoints()).await;
    let limit = 1 << 20;
    let exact = incompressible(limit);
    let over = incompressible(limit + 1);

    let (mut plain, _) = upgrade(server.addr, "/measure", None).await;
    plain
        .write_all(&raw_frame(FIN | 0x2, &exact))
        .await
        .unwrap();
    assert_eq!(raw_read_frame(&mut plain).await.1, b"1048576");

    let (mut compressed, head) = upgrade(server.addr, "/measure", Some("permessage-deflate")).await;
    assert!(extensions(&head).is_some(), "{head}");
    for (level, flush_every) in [(1, limit), (6, limit), (0, limit), (1, 4096)] {
        let payload = deflate_at(&exact, level, flush_every);
        assert!(
            payload.len() > limit,
            "level {level}: {} bytes compressed",
            payload.len()
        );
        compressed
            .write_all(&raw_frame(FIN | RSV1 | 0x2, &payload))
            .await
            .unwrap();
        let (_, answer) = raw_read_frame(&mut compressed).await;
        assert_eq!(
            answer, b"1048576",
            "level {level}, flushed every {flush_every} B"
        );
    }
    // In four fragments.
    let payload = deflate_at(&exact, 1, limit);
    let quarter = payload.len() / 4;
    let mut fragments = raw_frame(RSV1 | 0x2, &payload[..quarter]);
    fragments.extend(raw_frame(CONTINUATION, &payload[quarter..2 * quarter]));
    fragments.extend(raw_frame(CONTINUATION, &payload[2 * quarter..3 * quarter]));
    fragments.extend(raw_frame(FIN | CONTINUATION, &payload[3 * quarter..]));
    compressed.write_all(&fragments).await.unwrap();
    assert_eq!(raw_read_frame(&mut compressed).await.1, b"1048576");

    // One byte over: 1009, compressed or not.
    compressed
        .write_all(&raw_frame(FIN | RSV1 | 0x2, &deflate_at(&over, 1, limit)))
        .await
        .unwrap();
    assert_eq!(raw_close_code(&mut compressed).await, 1009);
    plain.write_all(&raw_frame(FIN | 0x2, &over)).await.unwrap();
    assert_eq!(raw_close_code(&mut plain).await, 1009);
    server.stop().await;
}

/// `server_max_window_bits=N` is echoed and honoured: the server's messages decode with a
/// window of N bits, from 9 to 15 here and 8 with Python's zlib below.
#[tokio::test]
async fn window_bits_from_8_to_15_are_honoured() {
    let server = TestServer::start(endpoints()).await;
    // Text whose repeats are far apart: a small window cannot reach back to them.
    let text = (0..400)
        .map(|i| format!("{:08}-{}", i * 7919 % 100_000, "abcdefghijklmnopqrstuvwxyz"))
        .collect::<Vec<_>>()
        .join(",");
    for bits in 8..=15u8 {
        let offer = format!("permessage-deflate; server_max_window_bits={bits}");
        let (mut stream, head) = upgrade(server.addr, "/echo", Some(&offer)).await;
        assert_eq!(
            extensions(&head).unwrap(),
            format!("{AGREED}; server_max_window_bits={bits}")
        );
        stream
            .write_all(&raw_frame(FIN | TEXT, text.as_bytes()))
            .await
            .unwrap();
        let (first, payload) = raw_read_frame(&mut stream).await;
        assert_eq!(first, FIN | RSV1 | TEXT);
        if bits >= 9 {
            assert_eq!(inflate(&payload, bits), text.as_bytes(), "{bits} bits");
        } else {
            assert_inflates_with_8_bits(&payload, &text);
        }
    }
    server.stop().await;
}

/// zlib inflates raw deflate with an 8-bit window (flate2 stops at 9): Python's does it.
fn assert_inflates_with_8_bits(payload: &[u8], text: &str) {
    let script = "import sys, zlib\n\
                  data = sys.stdin.buffer.read() + b'\\x00\\x00\\xff\\xff'\n\
                  sys.stdout.buffer.write(zlib.decompressobj(-8).decompress(data))";
    let Ok(mut python) = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    else {
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("python3 is missing: it checks the 8-bit window");
        }
        let _ = writeln!(
            std::io::stderr(),
            "\nSKIPPED the 8-bit window: python3 is missing."
        );
        return;
    };
    python.stdin.take().unwrap().write_all(payload).unwrap();
    let output = python.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "zlib could not inflate it with 8 bits"
    );
    assert_eq!(output.stdout, text.as_bytes(), "8 bits");
}

/// With context takeover allowed, a client that keeps its context gets it kept on the server
/// too (a repeated message shrinks), and a client that forbids it does not.
#[tokio::test]
async fn context_takeover_is_kept_when_both_agree_and_not_when_the_client_forbids_it() {
    let server =
        TestServer::start(endpoints().compression(Compression::default().context_takeover(true)))
            .await;
    let text = json(2 << 10);
    let (mut keeps, head) = upgrade(server.addr, "/echo", Some("permessage-deflate")).await;
    assert_eq!(extensions(&head), Some("permessage-deflate"));
    let (mut forbids, head) = upgrade(
        server.addr,
        "/echo",
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
    )
    .await;
    assert_eq!(extensions(&head), Some(AGREED));
    // The client keeps its own context: its second message refers to the first.
    let mut client = Compress::new_with_window_bits(Level::new(6), false, 15);
    let mut sizes = Vec::new();
    let mut server_window = Decompress::new_with_window_bits(false, 15);
    for _ in 0..2 {
        let mut out = Vec::with_capacity(text.len() + 64);
        client
            .compress_vec(text.as_bytes(), &mut out, FlushCompress::Sync)
            .unwrap();
        out.truncate(out.len() - 4);
        keeps
            .write_all(&raw_frame(FIN | RSV1 | TEXT, &out))
            .await
            .unwrap();
        let (first, payload) = raw_read_frame(&mut keeps).await;
        assert_eq!(first, FIN | RSV1 | TEXT);
        sizes.push(payload.len());
        let input = [&payload[..], &[0, 0, 0xff, 0xff]].concat();
        let mut inflated = Vec::with_capacity(text.len() + 64);
        server_window
            .decompress_vec(&input, &mut inflated, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(inflated, text.as_bytes());
    }
    assert!(sizes[1] * 3 < sizes[0], "kept context: {sizes:?}");
    let mut sizes = Vec::new();
    for _ in 0..2 {
        forbids
            .write_all(&raw_frame(FIN | RSV1 | TEXT, &deflate(text.as_bytes(), 15)))
            .await
            .unwrap();
        let (_, payload) = raw_read_frame(&mut forbids).await;
        assert_eq!(inflate(&payload, 15), text.as_bytes());
        sizes.push(payload.len());
    }
    assert_eq!(sizes[0], sizes[1], "no context kept: {sizes:?}");
    drop((keeps, forbids));
    tokio::time::sleep(Duration::from_millis(10)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_published_message_goes_compressed_to_those_that_agreed_the_same_bytes_to_each() {
    let app = endpoints().route(news);
    let topics = app.topics();
    let server = TestServer::start(app).await;
    let mut clients = Vec::new();
    for offer in [Some("permessage-deflate"), Some("permessage-deflate"), None] {
        let (mut stream, _) = upgrade(server.addr, "/news", offer).await;
        assert_eq!(
            raw_read_frame(&mut stream).await,
            (FIN | TEXT, b"subscribed".to_vec())
        );
        clients.push(stream);
    }
    let text = json(10 << 10);
    topics
        .topic::<String>("news")
        .publish(text.clone())
        .unwrap();
    let first = raw_read_frame(&mut clients[0]).await;
    assert_eq!(
        first.0,
        FIN | RSV1 | TEXT,
        "compressed for a client that agreed"
    );
    assert!(first.1.len() * 3 < text.len());
    assert_eq!(inflate(&first.1, 15), text.as_bytes());
    // Compressed once: the same bytes for the other subscriber with the same window.
    assert_eq!(raw_read_frame(&mut clients[1]).await, first);
    assert_eq!(
        raw_read_frame(&mut clients[2]).await,
        (FIN | TEXT, text.into_bytes()),
        "as it is for a client that offered no compression"
    );
    server.stop().await;
}
