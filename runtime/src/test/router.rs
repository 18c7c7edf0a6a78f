//! An axum app under test: the whole `Router` (its own routes and wsock's, merged) served on a
//! loopback port.

use std::future::{Future, IntoFuture};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use http::{HeaderMap, Method};
use tokio::task::JoinHandle;

use crate::session::Sessions;
use crate::test::client::{TIMEOUT, TestClient};
use crate::test::connect::{Connect, Refused, Target};
use crate::test::rest::HttpRequest;

/// An axum `Router` that merged wsock's ([`Server::into_router`](crate::Server::into_router)),
/// served as the app serves it: `axum::serve` with `ConnectInfo<SocketAddr>`, on a port of
/// its own on 127.0.0.1. Its WebSocket endpoints take [`TestClient`]s, as a
/// [`TestServer`](super::TestServer)'s do; its other routes (a REST API, a login form) take
/// plain HTTP requests, with [`get`](Self::get) and [`http`](Self::http), or from any HTTP
/// client at [`url`](Self::url).
///
/// ```
/// use axum::routing::get;
/// use wsock::prelude::*;
/// use wsock::test::TestRouter;
///
/// #[websocket("/echo")]
/// fn echo(out: Out<String>) {
///     on_message(|text: String| out.write(text));
/// }
///
/// fn app() -> axum::Router {
///     axum::Router::new()
///         .route("/api/health", get(|| async { "ok" }))
///         .merge(Server::new().route(echo).into_router())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let app = TestRouter::new(app());
/// let mut client = app.connect("/echo").await.unwrap();
/// client.send("hello").await;
/// assert_eq!(client.recv::<String>().await, "hello");
///
/// let health = app.get("/api/health").await;
/// assert_eq!(health.status(), 200);
/// assert_eq!(health.text(), "ok");
/// # }
/// ```
///
/// Connections are real loopback TCP, so a few things differ from a `TestServer`: `connect`
/// returns once the server's 101 arrives, while the endpoint's ready code may still run
/// (wait for its first message rather than for what it sets up); topics, the shutdown handle
/// and the session key are the `Server`'s own, so take them from it before
/// `into_router` (`server.topics()`, `server.handle()`, and [`sessions`](Self::sessions)
/// for [`Connect::session`]). Dropping the `TestRouter` stops serving new requests.
pub struct TestRouter {
    addr: SocketAddr,
    timeout: Duration,
    sessions: Option<Sessions>,
    serving: JoinHandle<()>,
}

impl TestRouter {
    /// Serves `router` on a loopback port, in a task of the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime, or if no loopback port can be had.
    #[track_caller]
    pub fn new(router: axum::Router) -> TestRouter {
        if tokio::runtime::Handle::try_current().is_err() {
            panic!("a TestRouter serves from inside a tokio runtime (#[tokio::test])");
        }
        let listener = match bind() {
            Ok(listener) => listener,
            Err(err) => panic!("cannot listen on a loopback port: {err}"),
        };
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(err) => panic!("cannot read the loopback port's address: {err}"),
        };
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        let serving = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(%err, "the TestRouter stopped serving");
            }
        });
        TestRouter {
            addr,
            timeout: TIMEOUT,
            sessions: None,
            serving,
        }
    }

    /// How long every wait of the clients and requests made from now on lasts before it
    /// fails. Default: 1 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server's session key (`server.sessions()`, taken before `into_router`), so that
    /// [`Connect::session`] can sign sessions.
    pub fn sessions(mut self, sessions: Sessions) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// The address the app is served at (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of `path` (with its query string) on this server: `http://127.0.0.1:<port>/..`,
    /// for an HTTP client of the test's choosing.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connects to the WebSocket endpoint at `path` (with its query string), as a client
    /// with no special headers. A refusal comes back as [`Refused`], with its status and body.
    ///
    /// # Panics
    /// If `path` is not a request path, or the server does not answer within the timeout.
    #[track_caller]
    pub fn connect(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<TestClient, Refused>> + Send + '_ {
        self.request(path).into_future()
    }

    /// A WebSocket connection to `path` to set up before connecting, as with
    /// [`TestServer::request`](super::TestServer::request). It sends `Host: 127.0.0.1:<port>`
    /// unless told otherwise.
    pub fn request(&self, path: &str) -> Connect<'_> {
        Connect {
            target: Target::Tcp {
                addr: self.addr,
                sessions: self.sessions.as_ref(),
            },
            timeout: self.timeout,
            path: path.to_owned(),
            headers: HeaderMap::new(),
            peer: None,
        }
    }

    /// `GET path`, for the app's other routes. Await it for the
    /// [`HttpResponse`](super::HttpResponse).
    pub fn get(&self, path: &str) -> HttpRequest {
        self.http(Method::GET, path)
    }

    /// An HTTP request to the app's other routes (its REST API), to set up with headers and
    /// a body, then await.
    ///
    /// ```
    /// # use axum::routing::post;
    /// # use wsock::test::TestRouter;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let app = TestRouter::new(axum::Router::new().route("/echo", post(|body: String| async { body })));
    /// let response = app
    ///     .http(wsock::Method::POST, "/echo")
    ///     .header("content-type", "text/plain")
    ///     .body("hello")
    ///     .await;
    /// assert_eq!(response.text(), "hello");
    /// # }
    /// ```
    pub fn http(&self, method: Method, path: &str) -> HttpRequest {
        HttpRequest {
            addr: self.addr,
            timeout: self.timeout,
            method,
            path: path.to_owned(),
            headers: HeaderMap::new(),
            body: String::new(),
        }
    }
}

/// A listener on a port of its own on 127.0.0.1.
fn bind() -> std::io::Result<tokio::net::TcpListener> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

impl Drop for TestRouter {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

impl std::fmt::Debug for TestRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRouter")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
