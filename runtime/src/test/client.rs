//! The test client: what it sends, and what it expects to receive, each wait bounded by the
//! server's timeout.

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::panic::Location;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{self, HeaderName};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::codec::Role;
use crate::codec::deflate::{self, Contexts, Deflate};
use crate::codec::frame::OpCode;
use crate::codec::read::{Incoming, Limits, Reader};
use crate::codec::write::Writer;
use crate::message::{CloseCode, FromMessage, IntoMessage, Message, Text};
use crate::test::expect::Expect;

/// The default for every wait.
pub(super) const TIMEOUT: Duration = Duration::from_secs(1);

/// What the server sent, as [`TestClient::next`] returns it: a message, its close, or the
/// end of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A text message.
    Text(Text),
    /// A binary message.
    Binary(Bytes),
    /// The server's close frame: its code and reason.
    Close(CloseCode, String),
    /// The connection ended without a close frame, or broke (what broke it).
    Ended(String),
}

impl From<Got> for Event {
    fn from(got: Got) -> Self {
        match got {
            Got::Message(Message::Text(text)) => Event::Text(text),
            Got::Message(Message::Binary(bytes)) => Event::Binary(bytes),
            Got::Close(code, reason) => Event::Close(code, reason),
            Got::Ended(why) => Event::Ended(why),
        }
    }
}

/// What the server sent: a message, its close, or the end of the connection.
enum Got {
    Message(Message),
    Close(CloseCode, String),
    /// The connection ended without a close frame, or broke (what broke it).
    Ended(String),
}

impl fmt::Display for Got {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Got::Message(message) => write!(f, "got {}", describe(message)),
            Got::Close(code, reason) if reason.is_empty() => {
                write!(f, "the connection closed with {code}")
            }
            Got::Close(code, reason) => write!(f, "the connection closed with {code}: {reason}"),
            Got::Ended(why) => write!(f, "the connection ended without a close frame ({why})"),
        }
    }
}

/// `T`'s name without module paths: `Json<Point>`, not `wsock_runtime::message::Json<..>`.
pub(super) fn short_type_name<T>() -> String {
    let full = std::any::type_name::<T>();
    let mut short = String::with_capacity(full.len());
    let mut word = String::new();
    for c in full.chars().chain(std::iter::once(' ')) {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        short.push_str(word.rsplit("::").next().unwrap_or_default());
        word.clear();
        short.push(c);
    }
    short.pop();
    short
}

/// A message, as a failure message shows it: its kind and (the start of) its payload.
pub(super) fn describe(message: &Message) -> String {
    const SHOWN: usize = 200;
    match message {
        Message::Text(text) => {
            let mut end = text.len().min(SHOWN);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let more = if end < text.len() { ".." } else { "" };
            format!("a text message {:?}{more}", &text[..end])
        }
        Message::Binary(bytes) => {
            let shown = &bytes[..bytes.len().min(32)];
            format!("a binary message of {} bytes {shown:02x?}", bytes.len())
        }
    }
}

/// A client connected to a [`TestServer`](super::TestServer): send, receive as a type, expect a close or
/// nothing at all; every wait has the server's timeout, and a failed expectation panics with
/// what came instead and the line that expected it.
pub struct TestClient {
    io: Box<dyn Io>,
    reader: Reader,
    writer: Writer,
    /// permessage-deflate, when the client offered it and the server agreed: every message
    /// it sends is compressed.
    deflate: Option<Deflate>,
    contexts: Contexts,
    /// Bytes read and not yet taken by the reader.
    read: Vec<u8>,
    /// This client sent its close frame.
    close_sent: bool,
    timeout: Duration,
    /// The handshake response's headers.
    headers: HeaderMap,
    /// Messages read while waiting for a pong, for the next `recv`.
    received: VecDeque<Message>,
    /// How the connection ended, once it did.
    closed: Option<(CloseCode, String)>,
}

/// The client's end of the connection: an in-memory pipe, or an upgraded TCP socket.
pub(super) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

impl TestClient {
    /// A client on an upgraded connection whose handshake response had `headers`.
    pub(super) fn new(io: Box<dyn Io>, headers: HeaderMap, timeout: Duration) -> Self {
        // The client speaks deflate when it offered it (a test's own header) and the server
        // agreed, as a browser would.
        let deflate = headers
            .get(header::SEC_WEBSOCKET_EXTENSIONS)
            .and_then(|value| value.to_str().ok())
            .and_then(deflate::client_side);
        let limits = Limits {
            max_frame: usize::MAX,
            max_message: usize::MAX,
        };
        TestClient {
            io,
            reader: Reader::new(Role::Client, limits, deflate),
            writer: Writer::new(Role::Client),
            deflate,
            contexts: Contexts::default(),
            read: Vec::new(),
            close_sent: false,
            timeout,
            headers,
            received: VecDeque::new(),
            closed: None,
        }
    }

    /// How long this client's waits last before they fail.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The subprotocol the server chose, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.header(header::SEC_WEBSOCKET_PROTOCOL)
    }

    /// The extensions the server agreed to (`permessage-deflate; ..`), if any: the client
    /// offers them with `.header("sec-websocket-extensions", "permessage-deflate")`, and then
    /// compresses what it sends and inflates what it receives, as a browser does.
    pub fn extensions(&self) -> Option<&str> {
        self.header(header::SEC_WEBSOCKET_EXTENSIONS)
    }

    /// The headers of the server's handshake response (`101 Switching Protocols`).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    fn header(&self, name: HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Sends a message: a `String` or `&str`, `Vec<u8>` or `Bytes`, `Json(value)`, a
    /// [`Message`]: whatever an `Out` can send.
    ///
    /// A message the server refuses while it arrives (over its size limit, say) is not an
    /// error here: the server closes the connection, and the next `recv` or `expect_close`
    /// says how, as a browser's `send` would not throw either.
    ///
    /// # Panics
    /// If the value cannot be encoded, or the server stops reading for longer than the
    /// timeout.
    #[track_caller]
    pub fn send<T: IntoMessage>(&mut self, message: T) -> impl Future<Output = ()> + '_ {
        let at = Location::caller();
        let message = match message.into_message() {
            Ok(message) => message,
            // Here, not in a closure: the panic is reported at the caller's line.
            Err(err) => panic!("cannot encode the message (at {at}): {err}"),
        };
        let (opcode, payload) = match message {
            Message::Text(text) => (OpCode::Text, text.into_bytes()),
            Message::Binary(bytes) => (OpCode::Binary, bytes),
        };
        Expect::new(async move {
            let (rsv1, payload) = match &self.deflate {
                Some(deflate) => {
                    let compressed =
                        deflate::deflate_message(&payload, deflate, &mut self.contexts);
                    (true, Bytes::from(compressed))
                }
                None => (false, payload),
            };
            match self.write(opcode, rsv1, payload).await {
                Err(Unsent::Stalled) => Err(format!(
                    "could not send a message within {:?} (at {at}): the server did not read it",
                    self.timeout
                )),
                Ok(()) | Err(Unsent::Gone) => Ok(()),
            }
        })
    }

    /// Receives the next message as `T`: `String`, `Vec<u8>`, `Json<E>`, [`Message`], ..
    ///
    /// # Panics
    /// If no message comes within the timeout, the connection closes first, or the message
    /// does not decode as `T`: the panic says which, and what came instead.
    #[track_caller]
    pub fn recv<T: FromMessage>(&mut self) -> impl Future<Output = T> + '_ {
        let at = Location::caller();
        Expect::new(async move {
            let timeout = self.timeout;
            match self.next_event(timeout).await {
                Some(Got::Message(message)) => {
                    let shown = describe(&message);
                    T::from_message(message).map_err(|err| {
                        format!(
                            "expected a message that decodes as `{}` (at {at}); got {shown}, \
                             which does not: {err}",
                            short_type_name::<T>()
                        )
                    })
                }
                Some(other) => Err(format!(
                    "expected a message within {timeout:?} (at {at}); {other}"
                )),
                None => Err(format!(
                    "expected a message within {timeout:?} (at {at}); nothing came"
                )),
            }
        })
    }

    /// Expects the server to close the connection with `code`; returns the close reason.
    ///
    /// # Panics
    /// If a message comes first, the close has another code, or nothing comes within the
    /// timeout.
    #[track_caller]
    pub fn expect_close(
        &mut self,
        code: impl Into<CloseCode>,
    ) -> impl Future<Output = String> + '_ {
        let (at, code) = (Location::caller(), code.into());
        Expect::new(async move {
            let timeout = self.timeout;
            match self.next_event(timeout).await {
                Some(Got::Close(got, reason)) if got == code => Ok(reason),
                Some(other) => Err(format!(
                    "expected a close with {code} within {timeout:?} (at {at}); {other}"
                )),
                None => Err(format!(
                    "expected a close with {code} within {timeout:?} (at {at}); nothing came"
                )),
            }
        })
    }

    /// Expects no message and no close for `quiet` (a short time, or a long one under
    /// `start_paused`).
    ///
    /// # Panics
    /// If anything comes.
    #[track_caller]
    pub fn expect_nothing(&mut self, quiet: Duration) -> impl Future<Output = ()> + '_ {
        let at = Location::caller();
        Expect::new(async move {
            match self.next_event(quiet).await {
                Some(event) => Err(format!("expected nothing for {quiet:?} (at {at}); {event}")),
                None => Ok(()),
            }
        })
    }

    /// Closes the connection with `code` and waits for the server's answering close.
    ///
    /// # Panics
    /// If the server does not answer within the timeout.
    #[track_caller]
    pub fn close(&mut self, code: impl Into<CloseCode>) -> impl Future<Output = ()> + '_ {
        self.close_with(code, "")
    }

    /// Closes the connection with `code` and `reason`, and waits for the server's answering
    /// close; messages sent before it are dropped.
    ///
    /// # Panics
    /// If the server does not answer within the timeout.
    #[track_caller]
    pub fn close_with(
        &mut self,
        code: impl Into<CloseCode>,
        reason: &str,
    ) -> impl Future<Output = ()> + '_ {
        let (at, code) = (Location::caller(), code.into());
        let mut payload = code.as_u16().to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        Expect::new(async move {
            let timeout = self.timeout;
            // A server that ended the connection already answers with what it sent before.
            if self.closed.is_none()
                && let Err(Unsent::Stalled) = self.write(OpCode::Close, false, payload.into()).await
            {
                return Err(format!(
                    "could not send the close within {timeout:?} (at {at}): the server did not \
                     read it"
                ));
            }
            loop {
                match self.next_event(timeout).await {
                    Some(Got::Message(_)) => continue,
                    Some(Got::Close(..) | Got::Ended(_)) => return Ok(()),
                    None => {
                        return Err(format!(
                            "expected the server to answer the close within {timeout:?} (at \
                             {at}); nothing came"
                        ));
                    }
                }
            }
        })
    }

    /// Pings the server and waits for its pong (with the same payload, up to 125 bytes).
    /// Messages that arrive meanwhile are kept for `recv`.
    ///
    /// # Panics
    /// If no pong comes within the timeout.
    #[track_caller]
    pub fn ping(&mut self, payload: &[u8]) -> impl Future<Output = ()> + '_ {
        let at = Location::caller();
        let payload = bytes::Bytes::copy_from_slice(payload);
        Expect::new(async move {
            let timeout = self.timeout;
            if let Err(Unsent::Stalled) = self.write(OpCode::Ping, false, payload.clone()).await {
                return Err(format!(
                    "could not send the ping within {timeout:?} (at {at}): the server did not \
                     read it"
                ));
            }
            let pong = tokio::time::timeout(timeout, async {
                loop {
                    match self.read(true).await {
                        Read::Pong(got) if got == payload => return Ok(()),
                        Read::Pong(_) => continue,
                        Read::Event(Got::Message(message)) => self.received.push_back(message),
                        Read::Event(other) => return Err(other),
                    }
                }
            });
            match pong.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(event)) => Err(format!(
                    "expected a pong within {timeout:?} (at {at}); {event}"
                )),
                Err(_) => Err(format!(
                    "expected a pong within {timeout:?} (at {at}); nothing came"
                )),
            }
        })
    }

    /// The next thing the server sends: a message, its close or the end, or `None` if
    /// nothing comes within the timeout. For tests that take what comes; the `recv` and
    /// `expect_*` methods say what they expect.
    pub async fn next(&mut self) -> Option<Event> {
        self.next_event(self.timeout).await.map(Event::from)
    }

    /// The next event within `wait`; `None` when nothing came.
    async fn next_event(&mut self, wait: Duration) -> Option<Got> {
        if let Some(message) = self.received.pop_front() {
            return Some(Got::Message(message));
        }
        if let Some((code, reason)) = &self.closed {
            return Some(Got::Close(*code, reason.clone()));
        }
        let read = tokio::time::timeout(wait, async {
            loop {
                if let Read::Event(event) = self.read(false).await {
                    return event;
                }
            }
        });
        read.await.ok()
    }

    /// Reads the next frame that matters: a message, the close, the end (or, when asked, a
    /// pong). Pings are answered, and the server's close too.
    async fn read(&mut self, pongs: bool) -> Read {
        poll_fn(|cx| {
            loop {
                // Answers (pongs, a close) go out as soon as they are due.
                if !self.writer.is_empty() {
                    let _ = self.writer.poll_flush(&mut self.io, cx);
                }
                if self.read.is_empty() {
                    let mut chunk = [0u8; 16 << 10];
                    let mut buf = tokio::io::ReadBuf::new(&mut chunk);
                    match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                            return Poll::Ready(self.ended("the server dropped it".to_owned()));
                        }
                        Poll::Ready(Ok(())) => self.read.extend_from_slice(buf.filled()),
                        Poll::Ready(Err(error)) => {
                            return Poll::Ready(self.ended(error.to_string()));
                        }
                    }
                }
                let (taken, frame) = match self.reader.feed(&self.read) {
                    Ok(read) => read,
                    Err(error) => {
                        let why = format!("the server broke the protocol: {}", error.close().1);
                        return Poll::Ready(self.ended(why));
                    }
                };
                self.read.drain(..taken);
                match frame {
                    None => continue,
                    Some(Incoming::Ping(payload)) => self.writer.push(OpCode::Pong, false, payload),
                    Some(Incoming::Pong(payload)) if pongs => {
                        return Poll::Ready(Read::Pong(payload));
                    }
                    Some(Incoming::Pong(_)) => continue,
                    Some(Incoming::Close(frame)) => {
                        let (code, reason) = frame.unwrap_or((CloseCode::NO_STATUS, String::new()));
                        if !self.close_sent {
                            // The closing handshake: the client answers with the same code.
                            self.close_sent = true;
                            let payload = Bytes::copy_from_slice(&code.as_u16().to_be_bytes());
                            self.writer.push(OpCode::Close, false, payload);
                            let _ = self.writer.poll_flush(&mut self.io, cx);
                        }
                        self.closed = Some((code, reason.clone()));
                        return Poll::Ready(Read::Event(Got::Close(code, reason)));
                    }
                    Some(Incoming::Message(message)) => {
                        return Poll::Ready(Read::Event(Got::Message(message)));
                    }
                }
            }
        })
        .await
    }

    /// The connection ended without a close frame: `why`.
    fn ended(&mut self, why: String) -> Read {
        self.closed
            .get_or_insert((CloseCode::ABNORMAL, why.clone()));
        Read::Event(Got::Ended(why))
    }

    /// Writes a frame (a message, a ping, the close) and flushes it, within the timeout.
    async fn write(&mut self, opcode: OpCode, rsv1: bool, payload: Bytes) -> Result<(), Unsent> {
        if opcode == OpCode::Close {
            self.close_sent = true;
        }
        self.writer.push(opcode, rsv1, payload);
        let written = tokio::time::timeout(
            self.timeout,
            poll_fn(|cx| self.writer.poll_flush(&mut self.io, cx)),
        );
        match written.await {
            Ok(Ok(())) => Ok(()),
            // The server ended the connection (it refused what it was reading, say): what it
            // sent before is still there to read.
            Ok(Err(_)) => {
                self.writer.clear();
                Err(Unsent::Gone)
            }
            Err(_) => Err(Unsent::Stalled),
        }
    }
}

/// Why a frame was not sent.
enum Unsent {
    /// The server ended the connection.
    Gone,
    /// The server did not read it within the timeout.
    Stalled,
}

/// What a read found.
enum Read {
    Event(Got),
    Pong(bytes::Bytes),
}

impl fmt::Debug for TestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClient")
            .field("protocol", &self.protocol())
            .field("extensions", &self.extensions())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}
