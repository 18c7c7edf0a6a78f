//! Setting a connection up: the request's headers, the handshake through the server's
//! dispatch, and a refusal's status and body.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};

use crate::app::App;
use crate::connection;
use crate::dispatch::{Peer, dispatch};
use crate::session::Session;
#[cfg(feature = "axum")]
use crate::session::Sessions;
use crate::test::client::TestClient;
#[cfg(feature = "axum")]
use crate::test::expect::Expect;

/// The key every test client sends (RFC 6455's example).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A connection being set up: see [`TestServer::request`](super::TestServer::request). Await it to connect.
pub struct Connect<'a> {
    pub(super) target: Target<'a>,
    /// The server's timeout, for the client's waits.
    pub(super) timeout: Duration,
    pub(super) path: String,
    pub(super) headers: HeaderMap,
    /// The client's address: always set in process; over TCP, what to bind the socket to.
    pub(super) peer: Option<SocketAddr>,
}

/// Where a test client connects.
pub(super) enum Target<'a> {
    /// A [`TestServer`](super::TestServer)'s app, through its dispatch, in process.
    App(&'a Arc<App>),
    /// A [`TestRouter`](super::TestRouter)'s port on the loopback address.
    #[cfg(feature = "axum")]
    Tcp {
        addr: SocketAddr,
        sessions: Option<&'a Sessions>,
    },
}

impl Connect<'_> {
    /// Adds a request header.
    ///
    /// # Panics
    /// If the name or value is not valid in an HTTP header.
    #[track_caller]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::try_from(name).expect("a valid header name");
        let value = HeaderValue::try_from(value).expect("a valid header value");
        self.headers.append(name, value);
        self
    }

    /// Sends `Origin`, as a browser page from `origin` does (`"https://app.example.com"`).
    #[track_caller]
    pub fn origin(self, origin: &str) -> Self {
        self.header("origin", origin)
    }

    /// Adds a cookie.
    #[track_caller]
    pub fn cookie(self, name: &str, value: &str) -> Self {
        self.header("cookie", &format!("{name}={value}"))
    }

    /// Sends `session` in the session cookie, signed with the server's key.
    ///
    /// # Panics
    /// On a `TestRouter` (feature `axum`) that was not given the server's
    /// [`Sessions`](crate::Sessions) with `TestRouter::sessions`.
    #[track_caller]
    pub fn session(self, session: &Session) -> Self {
        let cookie = match &self.target {
            Target::App(app) => app.context.sessions.cookie(session),
            #[cfg(feature = "axum")]
            Target::Tcp {
                sessions: Some(sessions),
                ..
            } => sessions.cookie(session),
            #[cfg(feature = "axum")]
            Target::Tcp { sessions: None, .. } => panic!(
                "a TestRouter signs sessions with the server's key once it has it: \
                 `TestRouter::new(router).sessions(server.sessions())`"
            ),
        };
        let pair = cookie.split(';').next().unwrap_or_default().to_owned();
        self.header("cookie", &pair)
    }

    /// Offers a subprotocol (`Sec-WebSocket-Protocol`); call again to offer more, preferred
    /// first.
    #[track_caller]
    pub fn protocol(self, protocol: &str) -> Self {
        self.header("sec-websocket-protocol", protocol)
    }

    /// Connects from this address (`Request::peer_addr`). Default: `127.0.0.1` and a port of
    /// its own. A loopback address also means `Host` is checked as on a loopback server.
    ///
    /// On a `TestRouter` (feature `axum`) the client's socket is bound to this address
    /// before it connects, so it must be a loopback address (`127.0.0.2:0` for any port).
    pub fn peer_addr(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// The request to send: the path, the test's headers, and the handshake's own headers
    /// where the test gave none.
    #[track_caller]
    fn build(&mut self, host: &str) -> http::Request<String> {
        let headers = &mut self.headers;
        let defaults = [
            (header::UPGRADE, "websocket"),
            (header::CONNECTION, "Upgrade"),
            (header::SEC_WEBSOCKET_VERSION, "13"),
            (header::SEC_WEBSOCKET_KEY, KEY),
        ];
        if !headers.contains_key(header::HOST) {
            let host = HeaderValue::try_from(host).expect("an address is a valid header");
            headers.insert(header::HOST, host);
        }
        for (name, value) in defaults {
            if !headers.contains_key(&name) {
                headers.insert(name, HeaderValue::from_static(value));
            }
        }
        let path = &self.path;
        let mut request = match http::Request::builder().uri(path).body(String::new()) {
            Ok(request) => request,
            Err(err) => panic!("{path:?} is not a request path: {err}"),
        };
        *request.headers_mut() = std::mem::take(headers);
        request
    }
}

impl<'a> IntoFuture for Connect<'a> {
    type Output = Result<TestClient, Refused>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    #[track_caller]
    fn into_future(mut self) -> Self::IntoFuture {
        let timeout = self.timeout;
        match self.target {
            Target::App(app) => {
                let request = self.build("localhost");
                let peer = self.peer.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
                Box::pin(in_process(app, request, peer, timeout))
            }
            #[cfg(feature = "axum")]
            Target::Tcp { addr, .. } => {
                let at = std::panic::Location::caller();
                let request = self.build(&addr.to_string());
                let bind = self.peer;
                Box::pin(Expect::new(over_tcp(addr, bind, request, timeout, at)))
            }
        }
    }
}

/// Connects through the app's own dispatch and connection loop, over an in-memory pipe.
async fn in_process(
    app: &Arc<App>,
    request: http::Request<String>,
    peer: SocketAddr,
    timeout: Duration,
) -> Result<TestClient, Refused> {
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
    let mailbox = Arc::clone(&accepted.prepared.mailbox);
    connection::spawn_on(app, accepted, server_end, bytes::BytesMut::new(), false);
    // Handed over once the ready code has run (what it set up is in place), or after the
    // timeout for ready code that waits on something slow.
    let _ = tokio::time::timeout(timeout, mailbox.ready()).await;
    Ok(TestClient::new(Box::new(client), headers, timeout))
}

/// Connects over loopback TCP to a server that speaks HTTP/1.1 (a served axum `Router`), as
/// any WebSocket client does: hyper's client sends the upgrade request and hands back the
/// upgraded socket.
#[cfg(feature = "axum")]
async fn over_tcp(
    addr: SocketAddr,
    bind: Option<SocketAddr>,
    request: http::Request<String>,
    timeout: Duration,
    at: &'static std::panic::Location<'static>,
) -> Result<Result<TestClient, Refused>, String> {
    use hyper_util::rt::TokioIo;

    let fail = |what: &str, err: &dyn fmt::Display| {
        format!("could not connect to {addr} (at {at}): {what}: {err}")
    };
    let exchange = async {
        let stream = super::rest::dial(addr, bind)
            .await
            .map_err(|err| fail("connecting", &err))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| fail("the HTTP handshake", &err))?;
        tokio::spawn(connection.with_upgrades());
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| fail("sending the upgrade request", &err))?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (parts, body) = response.into_parts();
            let body = super::rest::collect(body)
                .await
                .map_err(|err| fail("reading the refusal", &err))?;
            let body = String::from_utf8_lossy(&body).into_owned();
            let refused = Refused {
                status: parts.status,
                body,
                headers: parts.headers,
            };
            return Ok(Err(refused));
        }
        let headers = response.headers().clone();
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(|err| fail("taking the upgraded connection", &err))?;
        let io = Box::new(TokioIo::new(upgraded));
        Ok(Ok(TestClient::new(io, headers, timeout)))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "could not connect to {addr} within {timeout:?} (at {at}): no answer to the \
             upgrade request"
        )),
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
