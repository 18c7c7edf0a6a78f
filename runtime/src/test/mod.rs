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
//! outbound queue full`. The panic itself is reported at the test's `.await` too (`thread
//! 'chat' panicked at tests/chat.rs:20:33`), so an editor jumps to the test, not into wsock.
//! Under `#[tokio::test(start_paused = true)]` the clock only moves when everything waits, so
//! tests of keep-alive, idle and close timeouts take no wall time.
//!
//! With the `axum` feature, `TestRouter` serves a whole axum app (its own routes, and
//! wsock's merged in with `Server::into_router`) on a loopback port: the same clients for its
//! endpoints, and plain HTTP requests for its other routes.

mod client;
mod connect;
mod expect;
#[cfg(feature = "axum")]
mod rest;
#[cfg(feature = "axum")]
mod router;
mod watch;

use std::future::{Future, IntoFuture};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use http::HeaderMap;

use crate::app::App;
use crate::listen::{Handle, ShuttingDown};
use crate::message::IntoMessage;
use crate::server::Server;
use crate::topics::Topics;

pub use client::{Event, TestClient};
pub use connect::{Connect, Refused};
#[cfg(feature = "axum")]
pub use rest::{HttpRequest, HttpResponse};
#[cfg(feature = "axum")]
pub use router::TestRouter;
pub use watch::TopicWatch;

use client::TIMEOUT;
use connect::Target;

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
    ///
    /// # Panics
    /// If `path` is not a request path (`/chat?room=blue`).
    #[track_caller]
    pub fn connect(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<TestClient, Refused>> + Send + '_ {
        self.request(path).into_future()
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
            target: Target::App(&self.app),
            timeout: self.timeout,
            path: path.to_owned(),
            headers: HeaderMap::new(),
            peer: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
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
        TopicWatch {
            listener: self
                .topics()
                .topic::<T>(name)
                .listen_with_capacity(usize::MAX),
            timeout: self.timeout,
        }
    }
}
