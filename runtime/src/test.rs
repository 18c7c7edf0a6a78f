//! The test kit (the `test` feature, for dev-dependencies): connect to a server's endpoints in
//! process, with no port, through the server's own dispatch and connection loop, over
//! in-memory pipes.
//!
//! ```
//! use wsock::prelude::*;
//! use wsock::test::TestServer;
//!
//! #[websocket("/echo")]
//! fn echo(out: Out<String>) {
//!     on_message(|text: String| out.write(text));
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = TestServer::new(Server::new().route(echo));
//! let mut client = app.connect("/echo").await.unwrap();
//! client.send("hello").await;
//! assert_eq!(client.recv::<String>().await, "hello");
//! client.close(CloseCode::NORMAL).await;
//! # }
//! ```
//!
//! Every wait has a timeout (1 s unless [`TestServer::timeout`] says otherwise), and a failed
//! expectation panics with what came instead and the line of the test that expected it:
//! `expected a message within 1s (at tests/chat.rs:20:9); the connection closed with 1008:
//! outbound queue full`. Under `#[tokio::test(start_paused = true)]` the clock only moves when
//! everything waits, so tests of keep-alive, idle and close timeouts take no wall time.

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, IntoFuture, poll_fn};
use std::marker::PhantomData;
use std::net::{Ipv4Addr, SocketAddr};
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncRead, DuplexStream};

use crate::app::App;
use crate::codec::deflate::{self, Contexts, Deflate};
use crate::codec::frame::OpCode;
use crate::codec::read::{Incoming, Limits, Reader};
use crate::codec::write::Writer;
use crate::codec::{Outgoing, Role};
use crate::connection;
use crate::dispatch::{Peer, dispatch};
use crate::listen::{Handle, ShuttingDown};
use crate::mailbox::Mailbox;
use crate::message::{CloseCode, FromMessage, IntoMessage, Message, Text};
use crate::server::Server;
use crate::session::Session;
use crate::topics::{Recipient, Sealed, Subscriber, Topics};

/// The default for every wait.
const TIMEOUT: Duration = Duration::from_secs(1);

/// The key every test client sends (RFC 6455's example).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A server to test, built from the same [`Server`] the app runs (routes, pages, state,
/// settings, session key), served in process: no port, no TLS, no other process.
///
/// Connections go through the server's real dispatch (origins, hosts, subprotocols, guards and
/// extractors, `max_connections`) and its real connection loop (queues, limits, keep-alive,
/// close codes); only the socket is an in-memory pipe. By default a client sends
/// `Host: localhost` and no `Origin`, from the peer address `127.0.0.1`.
pub struct TestServer {
    app: Arc<App>,
    timeout: Duration,
}

impl TestServer {
    /// Serves `server` in process.
    pub fn new(server: Server) -> TestServer {
        TestServer {
            app: server.into_app(),
            timeout: TIMEOUT,
        }
    }

    /// How long every wait of the clients made from now on lasts before it fails.
    /// Default: 1 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects to `path` (with its query string), as a client with no special headers.
    /// A refusal comes back as [`Refused`], with its status and body.
    ///
    /// It returns once the endpoint's ready code has run (up to where it waits for its
    /// first message), so what the ready code set up (a subscription, a first message) is in
    /// place.
    pub async fn connect(&self, path: &str) -> Result<TestClient, Refused> {
        self.request(path).await
    }

    /// A connection to `path` (with its query string) to set up before connecting: headers,
    /// origin, session, cookies, subprotocols, peer address. Await it to connect.
    ///
    /// ```
    /// # use wsock::prelude::*;
    /// # use wsock::test::TestServer;
    /// #[websocket("/me")]
    /// fn me(out: Out<String>, session: Session) {
    ///     out.write(session.get("user").unwrap_or("nobody").to_owned());
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let app = TestServer::new(Server::new().route(me));
    /// let ada: Session = [("user", "ada")].into_iter().collect();
    /// let mut client = app.request("/me").session(&ada).await.unwrap();
    /// assert_eq!(client.recv::<String>().await, "ada");
    ///
    /// let refused = app.request("/me").origin("https://evil.example").await.unwrap_err();
    /// assert_eq!(refused.status(), 403);
    /// # }
    /// ```
    pub fn request(&self, path: &str) -> Connect<'_> {
        static PORTS: AtomicU16 = AtomicU16::new(40_000);
        let port = PORTS.fetch_add(1, Ordering::Relaxed).max(1024);
        Connect {
            server: self,
            path: path.to_owned(),
            headers: HeaderMap::new(),
            peer: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        }
    }

    /// Shuts the server down as [`Handle::shutdown`] does: 1001 to every client, every
    /// `on_close` runs. Await the result to wait for them.
    pub fn shutdown(&self) -> ShuttingDown {
        self.handle().shutdown()
    }

    /// The server's shutdown handle.
    pub fn handle(&self) -> Handle {
        Handle::new(&self.app.registry, self.app.config.shutdown_timeout)
    }

    /// How many connections are open.
    pub fn open_connections(&self) -> usize {
        self.app.registry.open()
    }

    /// The server's topics: publish to them as the app does.
    pub fn topics(&self) -> Topics {
        self.app.context.topics.clone()
    }

    /// Watches the topic `name` (of message type `T`) as a subscriber would, without a
    /// client: what is published to it from now on comes out of the watch's `recv`.
    ///
    /// ```
    /// # use wsock::prelude::*;
    /// # use wsock::test::TestServer;
    /// #[websocket("/say/{room}")]
    /// fn say(room: String, topics: Topics) {
    ///     let room = topics.topic::<String>(format!("room:{room}"));
    ///     on_message(|text: String| room.publish(text));
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let app = TestServer::new(Server::new().route(say));
    /// let mut lobby = app.watch::<String>("room:lobby");
    /// let mut client = app.connect("/say/lobby").await.unwrap();
    /// client.send("hello").await;
    /// assert_eq!(lobby.recv::<String>().await, "hello");
    /// # }
    /// ```
    pub fn watch<T: IntoMessage>(&self, name: &str) -> TopicWatch<T> {
        let watch = TopicWatch {
            mailbox: Arc::new(Mailbox::new("watch", usize::MAX)),
            queue: VecDeque::new(),
            timeout: self.timeout,
            topic: name.to_owned(),
            _message: PhantomData,
        };
        self.topics().topic::<T>(name).subscribe(&watch);
        watch
    }
}

/// What a topic receives, watched from a test: see [`TestServer::watch`]. Dropping it
/// unsubscribes.
pub struct TopicWatch<T> {
    mailbox: Arc<Mailbox>,
    queue: VecDeque<Outgoing>,
    timeout: Duration,
    topic: String,
    _message: PhantomData<fn(T)>,
}

impl<T> Sealed for TopicWatch<T> {}

impl<T: IntoMessage> Subscriber<T> for TopicWatch<T> {
    fn recipient(&self) -> Recipient<'_> {
        Recipient(&self.mailbox)
    }
}

impl<T> TopicWatch<T> {
    /// Receives the next message published to the topic, as `U`.
    ///
    /// # Panics
    /// If nothing is published within the timeout, or the message does not decode as `U`.
    #[track_caller]
    pub fn recv<U: FromMessage>(&mut self) -> impl Future<Output = U> + '_ {
        let at = Location::caller();
        async move {
            let timeout = self.timeout;
            let Some(message) = self.next(timeout).await else {
                panic!(
                    "expected a message on the topic {:?} within {timeout:?} (at {at}); \
                     nothing was published",
                    self.topic
                );
            };
            let shown = describe(&message);
            U::from_message(message).unwrap_or_else(|err| {
                panic!(
                    "expected a message that decodes as `{}` (at {at}); the topic {:?} got \
                     {shown}, which does not: {err}",
                    short_type_name::<U>(),
                    self.topic
                )
            })
        }
    }

    /// Expects nothing to be published to the topic for `quiet`.
    ///
    /// # Panics
    /// If a message is published.
    #[track_caller]
    pub fn expect_nothing(&mut self, quiet: Duration) -> impl Future<Output = ()> + '_ {
        let at = Location::caller();
        async move {
            if let Some(message) = self.next(quiet).await {
                panic!(
                    "expected nothing on the topic {:?} for {quiet:?} (at {at}); got {}",
                    self.topic,
                    describe(&message)
                );
            }
        }
    }

    async fn next(&mut self, wait: Duration) -> Option<Message> {
        let next = poll_fn(|cx| {
            loop {
                if let Some(outgoing) = self.queue.pop_front() {
                    return Poll::Ready(match outgoing {
                        Outgoing::Message(message) => message,
                        Outgoing::Published(published) => published.message.clone(),
                    });
                }
                let _ = self.mailbox.drain(&mut self.queue);
                if self.queue.is_empty() && self.mailbox.park(cx) {
                    return Poll::Pending;
                }
            }
        });
        tokio::time::timeout(wait, next).await.ok()
    }
}

impl<T> Drop for TopicWatch<T> {
    fn drop(&mut self) {
        self.mailbox.finish();
    }
}

impl<T> fmt::Debug for TopicWatch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicWatch")
            .field("topic", &self.topic)
            .finish()
    }
}

/// A connection being set up: see [`TestServer::request`]. Await it to connect.
pub struct Connect<'a> {
    server: &'a TestServer,
    path: String,
    headers: HeaderMap,
    peer: SocketAddr,
}

impl Connect<'_> {
    /// Adds a request header.
    ///
    /// # Panics
    /// If the name or value is not valid in an HTTP header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::try_from(name).expect("a valid header name");
        let value = HeaderValue::try_from(value).expect("a valid header value");
        self.headers.append(name, value);
        self
    }

    /// Sends `Origin`, as a browser page from `origin` does (`"https://app.example.com"`).
    pub fn origin(self, origin: &str) -> Self {
        self.header("origin", origin)
    }

    /// Adds a cookie.
    pub fn cookie(self, name: &str, value: &str) -> Self {
        self.header("cookie", &format!("{name}={value}"))
    }

    /// Sends `session` in the session cookie, signed with the server's key.
    pub fn session(self, session: &Session) -> Self {
        let cookie = self.server.app.context.sessions.cookie(session);
        let pair = cookie.split(';').next().unwrap_or_default().to_owned();
        self.header("cookie", &pair)
    }

    /// Offers a subprotocol (`Sec-WebSocket-Protocol`); call again to offer more, preferred
    /// first.
    pub fn protocol(self, protocol: &str) -> Self {
        self.header("sec-websocket-protocol", protocol)
    }

    /// Connects from this address (`Request::peer_addr`). Default: `127.0.0.1` and a port of
    /// its own. A loopback address also means `Host` is checked as on a loopback server.
    pub fn peer_addr(mut self, peer: SocketAddr) -> Self {
        self.peer = peer;
        self
    }

    async fn connect(self) -> Result<TestClient, Refused> {
        let Connect {
            server,
            path,
            mut headers,
            peer,
        } = self;
        let app = &server.app;
        let defaults = [
            (header::HOST, "localhost"),
            (header::UPGRADE, "websocket"),
            (header::CONNECTION, "Upgrade"),
            (header::SEC_WEBSOCKET_VERSION, "13"),
            (header::SEC_WEBSOCKET_KEY, KEY),
        ];
        for (name, value) in defaults {
            if !headers.contains_key(&name) {
                headers.insert(name, HeaderValue::from_static(value));
            }
        }
        let mut request = http::Request::builder()
            .uri(&path)
            .body(())
            .unwrap_or_else(|err| panic!("{path:?} is not a request path: {err}"));
        *request.headers_mut() = headers;
        let peer = Peer {
            addr: peer,
            over_loopback: peer.ip().is_loopback(),
        };
        if app.is_full(app.registry.open()) {
            return Err(Refused::from(
                crate::response::Refusal::busy().into_response(),
            ));
        }
        let (client, server_end) = tokio::io::duplex(64 << 10);
        let mut accepted = None;
        let response = dispatch(app, request, peer).await.respond(|connection| {
            accepted = Some(connection);
        });
        let Some(accepted) = accepted else {
            return Err(Refused::from(response));
        };
        let headers = response.headers().clone();
        // The client speaks deflate when it offered it (a test's own header) and the server
        // agreed, as a browser would.
        let deflate = headers
            .get(header::SEC_WEBSOCKET_EXTENSIONS)
            .and_then(|value| value.to_str().ok())
            .and_then(deflate::client_side);
        let mailbox = Arc::clone(&accepted.prepared.mailbox);
        connection::spawn_on(app, accepted, server_end);
        // Handed over once the ready code has run (what it set up is in place), or after the
        // timeout for ready code that waits on something slow.
        let _ = tokio::time::timeout(server.timeout, mailbox.ready()).await;
        let limits = Limits {
            max_frame: usize::MAX,
            max_message: usize::MAX,
        };
        Ok(TestClient {
            io: client,
            reader: Reader::new(Role::Client, limits, deflate),
            writer: Writer::new(Role::Client),
            deflate,
            contexts: Contexts::default(),
            read: Vec::new(),
            close_sent: false,
            timeout: server.timeout,
            headers,
            received: VecDeque::new(),
            closed: None,
        })
    }
}

impl<'a> IntoFuture for Connect<'a> {
    type Output = Result<TestClient, Refused>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.connect())
    }
}

/// A connection the server refused before the upgrade: the HTTP status and body it answered
/// with.
#[derive(Clone, PartialEq, Eq)]
pub struct Refused {
    status: StatusCode,
    body: String,
    headers: HeaderMap,
}

impl Refused {
    /// The response status (`403`, `404`, ..).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response body, without its final newline: the reason, as the client reads it.
    pub fn body(&self) -> &str {
        self.body.strip_suffix('\n').unwrap_or(&self.body)
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

impl From<http::Response<String>> for Refused {
    fn from(response: http::Response<String>) -> Self {
        let (parts, body) = response.into_parts();
        Refused {
            status: parts.status,
            body,
            headers: parts.headers,
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused with {}: {}", self.status, self.body())
    }
}

impl fmt::Debug for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Refused {}

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
fn short_type_name<T>() -> String {
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
fn describe(message: &Message) -> String {
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

/// A client connected to a [`TestServer`]: send, receive as a type, expect a close or
/// nothing at all; every wait has the server's timeout, and a failed expectation panics with
/// what came instead and the line that expected it.
pub struct TestClient {
    io: DuplexStream,
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

impl TestClient {
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
        let message = message
            .into_message()
            .unwrap_or_else(|err| panic!("cannot encode the message (at {at}): {err}"));
        let (opcode, payload) = match message {
            Message::Text(text) => (OpCode::Text, text.into_bytes()),
            Message::Binary(bytes) => (OpCode::Binary, bytes),
        };
        async move {
            let (rsv1, payload) = match &self.deflate {
                Some(deflate) => {
                    let compressed =
                        deflate::deflate_message(&payload, deflate, &mut self.contexts);
                    (true, Bytes::from(compressed))
                }
                None => (false, payload),
            };
            if let Err(Unsent::Stalled) = self.write(opcode, rsv1, payload).await {
                panic!(
                    "could not send a message within {:?} (at {at}): the server did not read it",
                    self.timeout
                );
            }
        }
    }

    /// Receives the next message as `T`: `String`, `Vec<u8>`, `Json<E>`, [`Message`], ..
    ///
    /// # Panics
    /// If no message comes within the timeout, the connection closes first, or the message
    /// does not decode as `T`: the panic says which, and what came instead.
    #[track_caller]
    pub fn recv<T: FromMessage>(&mut self) -> impl Future<Output = T> + '_ {
        let at = Location::caller();
        async move {
            let timeout = self.timeout;
            match self.next_event(timeout).await {
                Some(Got::Message(message)) => {
                    let shown = describe(&message);
                    T::from_message(message).unwrap_or_else(|err| {
                        panic!(
                            "expected a message that decodes as `{}` (at {at}); got {shown}, \
                             which does not: {err}",
                            short_type_name::<T>()
                        )
                    })
                }
                Some(other) => {
                    panic!("expected a message within {timeout:?} (at {at}); {other}")
                }
                None => panic!("expected a message within {timeout:?} (at {at}); nothing came"),
            }
        }
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
        async move {
            let timeout = self.timeout;
            match self.next_event(timeout).await {
                Some(Got::Close(got, reason)) if got == code => reason,
                Some(other) => {
                    panic!("expected a close with {code} within {timeout:?} (at {at}); {other}")
                }
                None => panic!(
                    "expected a close with {code} within {timeout:?} (at {at}); nothing came"
                ),
            }
        }
    }

    /// Expects no message and no close for `quiet` (a short time, or a long one under
    /// `start_paused`).
    ///
    /// # Panics
    /// If anything comes.
    #[track_caller]
    pub fn expect_nothing(&mut self, quiet: Duration) -> impl Future<Output = ()> + '_ {
        let at = Location::caller();
        async move {
            if let Some(event) = self.next_event(quiet).await {
                panic!("expected nothing for {quiet:?} (at {at}); {event}");
            }
        }
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
        async move {
            let timeout = self.timeout;
            // A server that ended the connection already answers with what it sent before.
            if self.closed.is_none()
                && let Err(Unsent::Stalled) = self.write(OpCode::Close, false, payload.into()).await
            {
                panic!(
                    "could not send the close within {timeout:?} (at {at}): the server did not \
                     read it"
                );
            }
            loop {
                match self.next_event(timeout).await {
                    Some(Got::Message(_)) => continue,
                    Some(Got::Close(..) | Got::Ended(_)) => return,
                    None => panic!(
                        "expected the server to answer the close within {timeout:?} (at {at}); \
                         nothing came"
                    ),
                }
            }
        }
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
        async move {
            let timeout = self.timeout;
            if let Err(Unsent::Stalled) = self.write(OpCode::Ping, false, payload.clone()).await {
                panic!(
                    "could not send the ping within {timeout:?} (at {at}): the server did not \
                     read it"
                );
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
                Ok(Ok(())) => {}
                Ok(Err(event)) => panic!("expected a pong within {timeout:?} (at {at}); {event}"),
                Err(_) => panic!("expected a pong within {timeout:?} (at {at}); nothing came"),
            }
        }
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
