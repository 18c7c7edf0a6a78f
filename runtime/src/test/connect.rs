//! Setting a connection up: the request's headers, the handshake through the server's
//! dispatch, and a refusal's status and body.

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};

use crate::app::App;
use crate::codec::Role;
use crate::codec::deflate::{self, Contexts};
use crate::codec::read::{Limits, Reader};
use crate::codec::write::Writer;
use crate::connection;
use crate::dispatch::{Peer, dispatch};
use crate::session::Session;
use crate::test::client::TestClient;

/// The key every test client sends (RFC 6455's example).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A connection being set up: see [`TestServer::request`](super::TestServer::request). Await it to connect.
pub struct Connect<'a> {
    pub(super) app: &'a Arc<App>,
    /// The server's timeout, for the client's waits.
    pub(super) timeout: Duration,
    pub(super) path: String,
    pub(super) headers: HeaderMap,
    pub(super) peer: SocketAddr,
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
        let cookie = self.app.context.sessions.cookie(session);
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
            app,
            timeout,
            path,
            mut headers,
            peer,
        } = self;
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
        let (client, server_end) = tokio::io::duplex(64 << 10);
        let mut accepted = None;
        let handshake = app.registry.handshake();
        let response = dispatch(app, request, peer, &handshake)
            .await
            .respond(|connection| {
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
        let _ = tokio::time::timeout(timeout, mailbox.ready()).await;
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
            timeout,
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
