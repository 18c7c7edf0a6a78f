//! The upgrade request as endpoint code sees it, and refusing it.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode, Uri, Version};

use crate::percent;
use crate::session::{Session, Sessions};
use crate::states::States;
use crate::topics::Topics;

/// The head of the HTTP upgrade request: method, URI, headers, cookies and peer address.
///
/// Take it as an endpoint parameter (`req: Request`) to read what the client sent when it
/// connected. There is no body and no response: the reply was the upgrade itself. Cloning is
/// cheap (the head is shared).
///
/// ```no_run
/// use wsock::prelude::*;
///
/// #[websocket("/whoami")]
/// fn whoami(out: Out<String>, req: Request) {
///     let agent = req.header("user-agent").unwrap_or("an unknown client");
///     let theme = req.cookie("theme").unwrap_or("light");
///     out.write(format!("{} via {agent}, theme {theme}", req.peer_addr()));
/// }
/// ```
#[derive(Clone)]
pub struct Request {
    head: Arc<Head>,
}

pub(crate) struct Head {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) peer: SocketAddr,
    pub(crate) params: Params,
    pub(crate) protocol: Option<&'static str>,
    pub(crate) context: Arc<Context>,
}

/// The path parameters of a matched request, in the pattern's order, percent-decoded.
pub(crate) type Params = Vec<(&'static str, String)>;

/// What every request of one server can read: its state, its sessions and its topics.
pub(crate) struct Context {
    pub(crate) states: States,
    pub(crate) sessions: Sessions,
    pub(crate) topics: Topics,
}

impl Request {
    pub(crate) fn new(head: Head) -> Self {
        Request {
            head: Arc::new(head),
        }
    }

    /// The request method (always `GET` for an upgrade).
    pub fn method(&self) -> &Method {
        &self.head.method
    }

    /// The request URI as sent: path and query.
    pub fn uri(&self) -> &Uri {
        &self.head.uri
    }

    /// The HTTP version of the request.
    pub fn version(&self) -> Version {
        self.head.version
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.head.uri.path()
    }

    /// The raw query string, without the `?`, if there is one.
    pub fn query(&self) -> Option<&str> {
        self.head.uri.query()
    }

    /// The value of a query parameter, percent-decoded; the first one if it repeats.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query()?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent::decode_component(key) == name).then(|| percent::decode_component(value))
        })
    }

    /// All request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// A header's value, if present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.headers.get(name)?.to_str().ok()
    }

    /// A cookie's value, if the request carries it.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies()
            .find_map(|(key, value)| (key == name).then_some(value))
    }

    /// Every cookie of the request, as `(name, value)` pairs.
    pub fn cookies(&self) -> impl Iterator<Item = (&str, &str)> {
        self.head
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|header| header.split(';'))
            .filter_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                Some((name.trim(), value))
            })
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.head.peer
    }

    /// The session from the signed session cookie; empty if there is none or it is not valid.
    pub fn session(&self) -> Session {
        let headers = self.head.headers.get_all(http::header::COOKIE).iter();
        self.head
            .context
            .sessions
            .verify(headers.filter_map(|v| v.to_str().ok()))
    }

    /// The server's state of type `T` (see [`State`](crate::State)), if it was given one.
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.head.context.states.get::<T>()
    }

    /// The server's topics (see [`Topics`]).
    pub fn topics(&self) -> &Topics {
        &self.head.context.topics
    }

    /// The subprotocol agreed on with the client, for an endpoint that declares some
    /// (`#[websocket("/chat", protocol = "chat.v1")]`).
    pub fn protocol(&self) -> Option<&str> {
        self.head.protocol
    }

    /// A path parameter's value, percent-decoded: `room` for `#[websocket("/rooms/{room}")]`.
    ///
    /// An endpoint takes it as a parameter of that name instead (`room: String`); to refuse
    /// an unknown room with 404, give that parameter a type of your own that implements
    /// [`FromPathParam`](crate::FromPathParam): it looks the room up once, before the upgrade.
    pub fn path_param(&self, name: &str) -> Option<&str> {
        self.head
            .params
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.head.method)
            .field("uri", &self.head.uri)
            .field("headers", &self.head.headers)
            .field("peer", &self.head.peer)
            .finish()
    }
}

/// Refuses a connection before the upgrade, with an HTTP status and an optional body.
///
/// ```
/// use wsock::Reject;
/// let reject = Reject::forbidden().with_body("members only");
/// assert_eq!(reject.status(), 403);
/// assert_eq!(reject.body(), "members only");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    status: StatusCode,
    body: String,
}

impl Reject {
    /// A refusal with the given status (use a 4xx or 5xx code).
    pub fn new(status: StatusCode) -> Self {
        Reject {
            status,
            body: String::new(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request() -> Self {
        Reject::new(StatusCode::BAD_REQUEST)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Reject::new(StatusCode::UNAUTHORIZED)
    }

    /// 403 Forbidden.
    pub fn forbidden() -> Self {
        Reject::new(StatusCode::FORBIDDEN)
    }

    /// 404 Not Found.
    pub fn not_found() -> Self {
        Reject::new(StatusCode::NOT_FOUND)
    }

    /// 500 Internal Server Error.
    pub fn internal_error() -> Self {
        Reject::new(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Sets the response body (sent as `text/plain`).
    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response body.
    pub fn body(&self) -> &str {
        &self.body
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        if !self.body.is_empty() {
            write!(f, ": {}", self.body)?;
        }
        Ok(())
    }
}

impl std::error::Error for Reject {}
