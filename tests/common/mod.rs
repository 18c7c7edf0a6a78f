//! Test harness shared by the end-to-end suites: servers on 127.0.0.1:0, clients, raw sockets.
#![allow(dead_code)]

pub mod example;
pub mod redis;
pub mod resume;
#[cfg(feature = "tls")]
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsock::prelude::*;

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a client's WebSocket runs over: TCP, or TLS.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Stream for S {}

pub const WAIT: Duration = Duration::from_secs(5);

/// Answers each message with its length: the limit is the endpoint's, 1 MiB.
#[websocket("/measure", max_message_size = "1MiB")]
pub fn measure(out: Out<String>) {
    on_message(|message: Message| {
        let len = match message {
            Message::Text(text) => text.len(),
            Message::Binary(bytes) => bytes.len(),
        };
        out.write(len.to_string());
    });
}

/// Bytes that do not compress (a xorshift stream).
pub fn incompressible(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Harness

/// What endpoints saw, per connection id (the `id` query parameter).
pub static EVENTS: LazyLock<Mutex<HashMap<String, Vec<String>>>> = LazyLock::new(Default::default);

pub fn record(req: &Request, event: impl Into<String>) {
    let id = req.query_param("id").unwrap_or_default();
    EVENTS
        .lock()
        .unwrap()
        .entry(id)
        .or_default()
        .push(event.into());
}

pub fn events(id: &str) -> Vec<String> {
    EVENTS.lock().unwrap().get(id).cloned().unwrap_or_default()
}

/// Waits until the connection `id` recorded `event`, then returns all its events.
pub async fn wait_for(id: &str, event: &str) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen = events(id);
        if seen.iter().any(|e| e == event) {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "connection {id} never recorded {event:?}; it recorded {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn unique_id(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: wsock::Handle,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub async fn start(server: Server) -> Self {
        let bound = server.bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = bound.local_addr();
        let handle = bound.handle();
        let task = tokio::spawn(bound.run());
        TestServer { addr, handle, task }
    }

    pub async fn connect(&self, path: &str) -> Client {
        let url = format!("ws://{}{path}", self.addr);
        let (ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .expect("handshake failed");
        assert_eq!(response.status(), 101);
        ws
    }

    pub async fn stop(self) {
        self.handle.shutdown();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("server did not stop in time")
            .expect("server task panicked")
            .expect("server failed");
    }
}

pub async fn next<S: Stream>(ws: &mut WebSocketStream<S>) -> WsMessage {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no message in time")
            .expect("stream ended")
            .expect("read failed");
        if !matches!(message, WsMessage::Ping(_) | WsMessage::Pong(_)) {
            return message;
        }
    }
}

pub async fn next_text<S: Stream>(ws: &mut WebSocketStream<S>) -> String {
    match next(ws).await {
        WsMessage::Text(text) => text.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Reads until the server's close frame, completes the close handshake and sees the server
/// end the connection; returns the close code and reason.
pub async fn close_frame<S: Stream>(ws: &mut WebSocketStream<S>) -> (u16, String) {
    let frame = loop {
        match next(ws).await {
            WsMessage::Close(Some(CloseFrame { code, reason })) => {
                break (u16::from(code), reason.to_string());
            }
            WsMessage::Close(None) => break (1005, String::new()),
            _ => {}
        }
    };
    // Reading on sends our echo of the close; then the server drops the TCP connection.
    let ended = tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = ws.next().await {} });
    ended
        .await
        .expect("the server did not end the connection after the close handshake");
    frame
}

pub async fn send<S: Stream>(ws: &mut WebSocketStream<S>, text: &str) {
    tokio::time::timeout(WAIT, ws.send(WsMessage::text(text)))
        .await
        .expect("send timed out")
        .expect("send failed");
}

/// Sends a raw request and returns the whole response (the server closes after answering).
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("no response in time")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

pub fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

/// A raw TCP connection after a hand-written upgrade: for frames no client library sends.
pub async fn raw_upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    raw_upgrade_with(addr, path, "").await.0
}

/// Reads an HTTP response head, byte by byte (so nothing after it is taken), within `WAIT`.
pub async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tokio::time::timeout(WAIT, stream.read_exact(&mut byte))
            .await
            .expect("no handshake response in time")
            .unwrap();
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// `raw_upgrade` with `headers` (whole lines, each ending in `\r\n`) added to the request;
/// returns the stream and the response head.
pub async fn raw_upgrade_with(addr: SocketAddr, path: &str, headers: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // RFC 6455's own example key and answer.
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    (stream, head)
}

/// A client frame: FIN set, masked unless `masked` is false, payload under 126 bytes.
pub fn frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    if masked {
        return raw_frame(0x80 | opcode, payload);
    }
    assert!(payload.len() < 126);
    let mut frame = vec![0x80 | opcode, payload.len() as u8];
    frame.extend_from_slice(payload);
    frame
}

/// Reads server frames until a close frame; returns its code (1005 if it has none).
pub async fn raw_close_code(stream: &mut TcpStream) -> u16 {
    loop {
        let (first, payload) = raw_read_frame(stream).await;
        if first & 0x0f == 0x8 {
            return match payload[..] {
                [high, low, ..] => u16::from_be_bytes([high, low]),
                _ => 1005,
            };
        }
    }
}

/// An upgrade request with extra headers.
fn client_request(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    request
}

/// Attempts an upgrade that the server should refuse; returns the status and body.
pub async fn refused(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let request = client_request(addr, path, headers);
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request)).await {
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            let body = response.body().clone().unwrap_or_default();
            (
                response.status().as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            )
        }
        Ok(Err(other)) => panic!("expected an HTTP refusal, got {other}"),
        Ok(Ok(_)) => panic!("the server accepted {path}"),
        Err(_) => panic!("no answer in time"),
    }
}

/// Connects with extra request headers.
pub async fn connect_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Client {
    let request = client_request(addr, path, headers);
    tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("connect timed out")
        .expect("handshake failed")
        .0
}

/// A raw client frame with its first byte given whole (FIN, RSV bits and opcode), masked.
pub fn raw_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut frame = vec![first];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xFFFF => {
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

/// Reads one server frame: its first byte and payload.
pub async fn raw_read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut header = [0u8; 2];
    tokio::time::timeout(WAIT, stream.read_exact(&mut header))
        .await
        .expect("no frame in time")
        .expect("connection ended");
    assert_eq!(header[1] & 0x80, 0, "server frames are never masked");
    let len = match header[1] & 0x7f {
        126 => {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await.unwrap();
            u16::from_be_bytes(len) as usize
        }
        127 => {
            let mut len = [0u8; 8];
            stream.read_exact(&mut len).await.unwrap();
            u64::from_be_bytes(len) as usize
        }
        len => len as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.unwrap();
    (header[0], payload)
}

/// Waits until the server closes the TCP connection (EOF or reset).
pub async fn raw_expect_eof(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .expect("the server did not close the connection in time");
}

// ---------------------------------------------------------------------------------------------
// Logs

/// What a test's log subscriber wrote, at the default level (INFO) as an app's
/// `tracing_subscriber::fmt().init()` writes it.
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Captures this thread's log lines (a current-thread runtime's tasks run on it) until the
    /// guard drops.
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(logs.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// The lines captured so far.
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The lines that contain `text`.
    pub fn matching(&self, text: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|line| line.contains(text))
            .collect()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}
