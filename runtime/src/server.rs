//! `Server`: routes and settings, binding, the accept loop and graceful shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, ToSocketAddrs};
use tokio::task::JoinSet;
use tracing::Instrument;
use tungstenite::WebSocket;
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::endpoint::{Accept, Endpoint, Session, panic_message};
use crate::extract::States;
use crate::lean_io::LeanIo;
use crate::request::{App, Head};
use crate::router::{BadPath, Router, percent_decode};
use crate::session::{ServerKey, SessionKey};
use crate::shared::Shared;
use crate::shutdown::Shutdown;
use crate::upgrade::{self, Body, Origins};
use crate::{Reject, Request, connection, console};

/// A WebSocket server: endpoints by path, settings, and serving.
///
/// ```no_run
/// use wsock::prelude::*;
///
/// #[websocket("/")]
/// fn hello(out: Out<String>) {
///     out.write("Hello!");
///     out.close();
/// }
///
/// #[tokio::main]
/// async fn main() -> std::io::Result<()> {
///     // Serves until Ctrl-C, then shuts down gracefully.
///     Server::new().route(hello).serve("127.0.0.1:9000").await
/// }
/// ```
pub struct Server {
    router: Router,
    pages: HashMap<&'static str, String>,
    config: Config,
    states: States,
    session_key: Option<SessionKey>,
}

pub(crate) struct Config {
    pub(crate) queue_capacity: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) max_message_size: usize,
    pub(crate) max_frame_size: usize,
    pub(crate) max_connections: usize,
    pub(crate) ping_interval: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) origins: Origins,
    pub(crate) dev_console: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            queue_capacity: 1024,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            max_message_size: 16 << 20,
            max_frame_size: 16 << 20,
            max_connections: 10_000,
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            origins: Origins::SameHost,
            dev_console: cfg!(debug_assertions),
        }
    }
}

impl Default for Server {
    fn default() -> Self {
        Server::new()
    }
}

impl Server {
    /// A server with no endpoints and the default settings.
    pub fn new() -> Self {
        Server {
            router: Router::default(),
            pages: HashMap::new(),
            config: Config::default(),
            states: States::default(),
            session_key: None,
        }
    }

    /// Serves an endpoint, a function annotated with `#[websocket]`, at its path:
    /// `Server::new().route(chat)`.
    ///
    /// # Panics
    /// If another endpoint already has the same path.
    pub fn route<E: Endpoint>(mut self, _endpoint: fn() -> E) -> Self {
        self.router.add::<E>();
        self
    }

    /// Serves a static HTML page at `path` to plain `GET` (and `HEAD`) requests: the page of
    /// a chat app, say, at `/`.
    ///
    /// A page may share its path with an endpoint: browsers that load the URL get the page,
    /// WebSocket clients get the endpoint (the page replaces the dev console there). Pages
    /// are for a few small static pages next to the endpoints, not a web framework: no
    /// parameters, no other methods (they get 405), no other content types.
    ///
    /// ```no_run
    /// # use wsock::prelude::*;
    /// # #[websocket("/chat")] fn chat(out: Out<String>) { on_message(|m: String| out.write(m)); }
    /// # async fn demo() -> std::io::Result<()> {
    /// Server::new()
    ///     .page("/", "<!doctype html><title>chat</title><script>/* .. */</script>")
    ///     .route(chat)
    ///     .serve("127.0.0.1:9000")
    ///     .await
    /// # }
    /// ```
    ///
    /// # Panics
    /// If `path` does not start with `/`, or another page already has it.
    pub fn page(mut self, path: &'static str, html: impl Into<String>) -> Self {
        assert!(
            path.starts_with('/'),
            "page path {path:?} must start with `/`"
        );
        if self.pages.insert(path, html.into()).is_some() {
            panic!("two pages at the same path {path:?}");
        }
        self
    }

    /// Turns the dev console on or off. When on, a browser that opens an endpoint's URL
    /// (a plain `GET`, no upgrade) gets a small self-contained page that connects to that
    /// endpoint, sends text, JSON or binary messages, and shows every message received and
    /// the close code and reason. When off, such a request gets
    /// `426 Upgrade Required`.
    ///
    /// On by default in debug builds (`cfg!(debug_assertions)`), off in release builds.
    /// The console talks to the endpoint like any client would: guards, origins and limits
    /// apply. It connects by itself only when the user opened it (typed or bookmarked, or
    /// from a page of this site, per the browser's `Sec-Fetch-Site`); opened from another
    /// site it waits for a click on Connect, and other sites cannot frame it. It shows
    /// anyone who can reach the URL the endpoint's name, path pattern and subprotocols,
    /// before any guard runs: keep it off on servers others can reach.
    pub fn dev_console(mut self, enabled: bool) -> Self {
        self.config.dev_console = enabled;
        self
    }

    /// Adds shared state that endpoints take as [`State<T>`](crate::State): one value per type.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.states.insert(value);
        self
    }

    /// Signs and verifies session cookies with a key derived from `secret` (at least 32 bytes).
    /// Default: a random key per process, with a warning the first time a session is read.
    ///
    /// # Panics
    /// If the secret is shorter than 32 bytes.
    pub fn secret(self, secret: impl AsRef<[u8]>) -> Self {
        self.session_key(SessionKey::derive_from(secret))
    }

    /// Signs and verifies session cookies with this key; give the same key to whatever issues
    /// the cookies ([`SessionKey::cookie`]).
    pub fn session_key(mut self, key: SessionKey) -> Self {
        self.session_key = Some(key);
        self
    }

    /// How many messages each connection's outbound queue holds before
    /// [`Out::write`](crate::Out::write) closes a client that does not read with 1008, and
    /// [`Out::send`](crate::Out::send) waits. Default: 1024.
    pub fn queue_capacity(mut self, messages: usize) -> Self {
        self.config.queue_capacity = messages.max(1);
        self
    }

    /// How long a client may take to send its upgrade request and be answered. Default: 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// How long a closing connection waits for the peer's close frame, and for its last
    /// writes, before it is dropped. Default: 5 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// How long a graceful shutdown waits for connections to close before dropping them.
    /// Default: 10 s.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// The largest message a client may send, in bytes; a larger one closes the connection
    /// with 1009. Default: 16 MiB.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// The largest frame a client may send, in bytes; a larger one closes the connection with
    /// 1009. Default: 16 MiB.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self
    }

    /// The most TCP connections served at once, handshakes included; a client over the limit
    /// gets 503 before any upgrade. Default: 10,000 (mind the process's open-file limit).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.config.max_connections = connections;
        self
    }

    /// How long a connection may stay silent before the server pings it. Default: 30 s.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.config.ping_interval = interval;
        self
    }

    /// How long a connection may stay silent (no message, no pong) before the server closes
    /// it with 1001. Default: 60 s. Time spent in the endpoint's own sections does not count.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Also accepts upgrades from browser pages of this origin (`"https://app.example.com"`).
    ///
    /// By default a browser page may connect only if it was served by the same host the
    /// WebSocket request is sent to (its `Origin` matches `Host`); clients that send no
    /// `Origin` (not browsers) are always accepted. Other pages get 403: this stops a
    /// malicious site from using a visitor's cookies to open connections on their behalf.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        let origin = origin.into().trim_end_matches('/').to_owned();
        match &mut self.config.origins {
            Origins::List(list) => list.push(origin),
            Origins::Any => {}
            same_host => *same_host = Origins::List(vec![origin]),
        }
        self
    }

    /// Accepts upgrades from any browser page (a public API without cookies, say).
    pub fn allow_any_origin(mut self) -> Self {
        self.config.origins = Origins::Any;
        self
    }

    /// Binds the address; the returned [`Bound`] tells the real address (for port 0) and
    /// serves when awaited through [`Bound::run`].
    pub async fn bind(self, addr: impl ToSocketAddrs) -> io::Result<Bound> {
        let mut failed = None;
        for addr in tokio::net::lookup_host(addr).await? {
            match listen_on(addr) {
                Ok(listener) => {
                    let mut bound = self.listen(listener)?;
                    bound.nodelay_inherited = cfg!(target_os = "linux");
                    return Ok(bound);
                }
                Err(err) => failed = Some(err),
            }
        }
        Err(failed.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the address resolved to no address",
            )
        }))
    }

    /// Serves on a listener bound by the caller.
    pub fn listen(self, listener: TcpListener) -> io::Result<Bound> {
        let addr = listener.local_addr()?;
        if self.router.is_empty() && self.pages.is_empty() {
            tracing::warn!("the server has no endpoints: every request gets 404");
        }
        if self.config.dev_console {
            for (path, name) in self.router.paths() {
                if self.pages.contains_key(path) {
                    continue;
                }
                let hint = if path.contains('{') {
                    " (with the {parameters} filled in)"
                } else {
                    ""
                };
                tracing::info!(endpoint = name, "dev console at http://{addr}{path}{hint}");
            }
        }
        Ok(Bound {
            listener,
            nodelay_inherited: false,
            addr,
            inner: self.into_inner(),
        })
    }

    fn into_inner(self) -> Arc<Inner> {
        Arc::new(Inner {
            router: self.router,
            pages: self.pages,
            config: self.config,
            app: Arc::new(App {
                states: self.states,
                session_key: ServerKey::new(self.session_key),
            }),
            shutdown: Shutdown::default(),
            ids: AtomicU64::new(0),
            active: AtomicUsize::new(0),
        })
    }

    /// Binds the address and serves until Ctrl-C, then shuts down gracefully: every
    /// connection is closed with 1001 and its `on_close` runs.
    pub async fn serve(self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let bound = self.bind(addr).await?;
        tracing::info!(addr = %bound.local_addr(), "wsock listening");
        bound
            .run_until(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    tracing::info!("Ctrl-C: shutting down");
                }
            })
            .await
    }
}

/// A bound server, not yet serving: read its address, take a shutdown handle, then run it.
///
/// ```no_run
/// # use wsock::prelude::*;
/// # #[websocket("/")] fn echo(out: Out<String>) { on_message(|m: String| out.write(m)); }
/// # async fn demo() -> std::io::Result<()> {
/// let bound = Server::new().route(echo).bind("127.0.0.1:0").await?;
/// let addr = bound.local_addr(); // the port the system chose
/// let handle = bound.handle();
/// let server = tokio::spawn(bound.run());
/// // ... connect to ws://{addr}/ ...
/// handle.shutdown(); // 1001 to every connection, on_close runs, then run() returns
/// server.await.unwrap()?;
/// # Ok(()) }
/// ```
pub struct Bound {
    listener: TcpListener,
    /// Accepted sockets come with `TCP_NODELAY` already set (see `listen_on`).
    nodelay_inherited: bool,
    addr: SocketAddr,
    inner: Arc<Inner>,
}

/// Shuts a running server down gracefully; cheap to clone.
///
/// ```no_run
/// # use wsock::prelude::*;
/// # #[websocket("/")] fn echo(out: Out<String>) { on_message(|m: String| out.write(m)); }
/// # async fn demo() -> std::io::Result<()> {
/// let bound = Server::new().route(echo).bind("127.0.0.1:0").await?;
/// let handle = bound.handle();
/// tokio::spawn(async move {
///     tokio::time::sleep(std::time::Duration::from_secs(60)).await;
///     handle.shutdown(); // every connection gets 1001, every on_close runs
/// });
/// bound.run().await // returns once the shutdown is done
/// # }
/// ```
#[derive(Clone)]
pub struct Handle {
    shutdown: Shutdown,
}

impl Handle {
    /// Stops accepting, sends 1001 (going away) to every connection, lets each `on_close`
    /// run, and makes [`Bound::run`] return once all are closed or the shutdown timeout passed.
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }
}

struct Inner {
    router: Router,
    pages: HashMap<&'static str, String>,
    config: Config,
    app: Arc<App>,
    shutdown: Shutdown,
    ids: AtomicU64,
    /// TCP connections being served, handshakes included.
    active: AtomicUsize,
}

impl Bound {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that shuts the server down.
    pub fn handle(&self) -> Handle {
        Handle {
            shutdown: self.inner.shutdown.clone(),
        }
    }

    /// Serves until [`Handle::shutdown`] is called, then shuts down gracefully.
    pub async fn run(self) -> io::Result<()> {
        self.run_until(std::future::pending()).await
    }

    /// Serves until `signal` completes or [`Handle::shutdown`] is called, then shuts down
    /// gracefully.
    ///
    /// The accept loop runs as a task of its own, on the runtime's worker threads, with the
    /// connections it starts: under `#[tokio::main]` the caller's thread is not a worker, and
    /// accepting there would hand every new connection over to another thread. Dropping this
    /// future stops the server at once (no graceful close).
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> io::Result<()> {
        let Bound {
            listener,
            inner,
            nodelay_inherited,
            ..
        } = self;
        let shutdown = inner.shutdown.clone();
        let serving = tokio::spawn(accept_loop(listener, inner, nodelay_inherited));
        let mut serving = AbortOnDrop(serving);
        let mut signal = std::pin::pin!(signal);
        tokio::select! {
            done = &mut serving.0 => return finished(done),
            () = &mut signal => shutdown.trigger(),
        }
        finished((&mut serving.0).await)
    }
}

/// A listening socket as `TcpListener::bind` makes one (address reuse on Unix, a backlog of
/// 1024), with `TCP_NODELAY` set: Linux passes it on to every accepted socket, which saves a
/// system call per connection.
fn listen_on(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Aborts the server's task when the future awaiting it is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<io::Result<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The server task's outcome; a panic in it goes on in the caller.
fn finished(done: Result<io::Result<()>, tokio::task::JoinError>) -> io::Result<()> {
    match done {
        Ok(result) => result,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => Err(io::Error::other(format!("the server task ended: {err}"))),
    }
}

/// Accepts connections until the shutdown signal, then closes them gracefully.
async fn accept_loop(
    listener: TcpListener,
    inner: Arc<Inner>,
    nodelay_inherited: bool,
) -> io::Result<()> {
    let mut connections = JoinSet::new();
    {
        let stop = inner.shutdown.signal();
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                biased;
                () = &mut stop => break,
                Some(done) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(err) = done {
                        tracing::error!(error = %err, "connection task failed");
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let active = Active::enter(&inner);
                        if !nodelay_inherited {
                            // Small frames go out at once, not held back by Nagle's algorithm.
                            let _ = stream.set_nodelay(true);
                        }
                        connections.spawn(serve_io(stream, peer, active));
                    }
                    Err(err) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }
    drop(listener);
    inner.shutdown.trigger();
    let open = connections.len();
    tracing::info!(open, "shutting down: closing connections");
    let drained = tokio::time::timeout(inner.config.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            "shutdown timeout passed: dropping the remaining connections"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// One served TCP connection, counted against `max_connections` while it lives.
struct Active {
    inner: Arc<Inner>,
    /// Over the limit: every request gets 503.
    overloaded: bool,
}

impl Active {
    fn enter(inner: &Arc<Inner>) -> Self {
        let before = inner.active.fetch_add(1, Ordering::Relaxed);
        Active {
            inner: Arc::clone(inner),
            overloaded: before >= inner.config.max_connections,
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.inner.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The size of tungstenite's read buffer: what an idle connection keeps for reading, and the
/// most a frame read takes from `LeanIo` at once.
const READ_BUFFER: usize = 1 << 10;

/// What the upgrade service leaves for the task once the 101 is sent.
struct Upgrade {
    session: Session,
    on_upgrade: OnUpgrade,
    endpoint: &'static str,
    max_message_size: usize,
    max_frame_size: usize,
}

type UpgradeSlot = Arc<Mutex<Option<Upgrade>>>;

/// One connection: the HTTP handshake, then (if upgraded) the WebSocket connection loop.
/// The HTTP side of one connection; returns the accepted upgrade, if any. Boxed by the
/// caller, so hyper's connection state is freed before the WebSocket phase: an idle
/// connection then costs only what it uses.
async fn handshake<IO>(
    stream: IO,
    peer: SocketAddr,
    inner: &Arc<Inner>,
    overloaded: bool,
) -> Option<Upgrade>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slot = UpgradeSlot::default();
    if overloaded {
        tracing::warn!(%peer, limit = inner.config.max_connections, "too many connections: 503");
    }
    let service = {
        let (inner, slot) = (Arc::clone(inner), Arc::clone(&slot));
        service_fn(move |req| {
            let (inner, slot) = (Arc::clone(&inner), Arc::clone(&slot));
            async move {
                if overloaded {
                    let busy = "too many connections: try again later\n";
                    return Ok(upgrade::plain(http::StatusCode::SERVICE_UNAVAILABLE, busy));
                }
                handle(req, peer, inner, slot).await
            }
        })
    };
    let handshake_timeout = inner.config.handshake_timeout;
    // One request per connection: refusals say `Connection: close`, upgrades hand over.
    // No timer for hyper: the timeout below bounds the whole handshake, the head's read too.
    let http = http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    // A shutdown drops a connection still in its handshake: nothing was accepted yet, and
    // a client that never completes its request must not hold the shutdown up.
    let mut http = std::pin::pin!(http);
    let shutdown = inner.shutdown.signal();
    let mut shutdown = std::pin::pin!(shutdown);
    let http = std::future::poll_fn(|cx| match shutdown.as_mut().poll(cx) {
        Poll::Ready(()) => Poll::Ready(None),
        Poll::Pending => http.as_mut().poll(cx).map(Some),
    });
    // Bounds the whole handshake, slow extractors included, not only the header read.
    match tokio::time::timeout(handshake_timeout, http).await {
        Ok(Some(Ok(()))) => {}
        Ok(Some(Err(err))) => {
            tracing::debug!(%peer, error = %err, "http connection failed");
            return None;
        }
        Ok(None) => {
            tracing::debug!(%peer, "shutting down during the handshake");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "handshake timed out");
            return None;
        }
    }
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

async fn serve_io<IO>(stream: IO, peer: SocketAddr, active: Active)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let inner = Arc::clone(&active.inner);
    let upgrade = Box::pin(handshake(stream, peer, &inner, active.overloaded)).await;
    let config = &inner.config;
    let Some(Upgrade {
        session,
        on_upgrade,
        endpoint,
        max_message_size,
        max_frame_size,
    }) = upgrade
    else {
        return;
    };
    let id = inner.ids.fetch_add(1, Ordering::Relaxed);
    let span = tracing::debug_span!("ws", endpoint, %peer, id);
    async {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(error = %err, "upgrade failed");
                return;
            }
        };
        tracing::debug!("websocket open");
        // tungstenite's read buffer is allocated and zero-filled up front (128 KiB by
        // default), and caps each read: it is kept small, and `LeanIo` reads the socket up to
        // 64 KiB at a time through a buffer shared by the thread's connections. Writes collect
        // in the write buffer until the driver flushes once per batch, or 64 KiB pile up.
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(64 << 10)
            .max_message_size(Some(max_message_size))
            .max_frame_size(Some(max_frame_size));
        let shutdown = &inner.shutdown;
        let timing = connection::Timing {
            close_timeout: config.close_timeout,
            ping_interval: config.ping_interval,
            idle_timeout: config.idle_timeout,
        };
        // The upgraded stream is our own socket: take it back to skip hyper's dynamic IO.
        match upgraded.downcast::<TokioIo<IO>>() {
            Ok(parts) => {
                // Copied out and dropped now: the bytes share hyper's whole read buffer.
                let hyper::upgrade::Parts { io, read_buf, .. } = parts;
                let io = LeanIo::new(io.into_inner(), read_buf.to_vec());
                drop(read_buf);
                let ws = WebSocket::from_raw_socket(io, Role::Server, Some(ws_config));
                connection::run(ws, session, shutdown, timing).await;
            }
            Err(upgraded) => {
                let io = LeanIo::new(TokioIo::new(upgraded), Vec::new());
                let ws = WebSocket::from_raw_socket(io, Role::Server, Some(ws_config));
                connection::run(ws, session, shutdown, timing).await;
            }
        }
    }
    .instrument(span)
    .await;
}

/// Answers the HTTP request: a refusal, or 101 with the connection's code left in `slot`.
async fn handle(
    mut req: http::Request<Incoming>,
    peer: SocketAddr,
    inner: Arc<Inner>,
    slot: UpgradeSlot,
) -> Result<http::Response<Body>, Infallible> {
    let websocket = upgrade::asks_for_websocket(&req);
    if !websocket && let Some(page) = find_page(&inner.pages, req.uri().path()) {
        return Ok(page_response(req.method(), page));
    }
    let found = match inner.router.find(req.uri().path()) {
        Ok(found) => found,
        Err(BadPath) => {
            let body = "the path's %-escapes do not decode to UTF-8\n";
            return Ok(upgrade::plain(http::StatusCode::BAD_REQUEST, body));
        }
    };
    let Some((route, params)) = found else {
        return Ok(upgrade::plain(
            http::StatusCode::NOT_FOUND,
            "no websocket endpoint at this path\n",
        ));
    };
    let read_only = matches!(*req.method(), http::Method::GET | http::Method::HEAD);
    if !websocket && read_only && inner.config.dev_console {
        return Ok(console::console(
            &req,
            route.name,
            route.path,
            route.protocols,
        ));
    }
    let accept_key = match upgrade::check(&req, websocket) {
        Ok(key) => key,
        Err(refusal) => return Ok(refusal),
    };
    if let Err(refusal) = upgrade::check_origin(&req, &inner.config.origins) {
        return Ok(refusal);
    }
    let protocol = match upgrade::negotiate_protocol(&req, route.protocols) {
        Ok(protocol) => protocol,
        Err(refusal) => return Ok(refusal),
    };
    if inner.shutdown.is_triggered() {
        return Ok(upgrade::plain(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down\n",
        ));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, _body) = req.into_parts();
    let shared = Arc::new(Shared::new(route.name, inner.config.queue_capacity));
    let head = Arc::new(Head {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        peer,
        params,
        protocol,
        app: Arc::clone(&inner.app),
    });
    let accept = (route.accept)(Accept::new(Request::new(head, shared)));
    // A panic in an extractor refuses this client with 500; the server goes on.
    match AssertUnwindSafe(accept).catch_unwind().await {
        Ok(Ok(session)) => {
            let upgrade = Upgrade {
                session,
                on_upgrade,
                endpoint: route.name,
                // An endpoint's own message limit also bounds (or lifts) its frame limit.
                max_message_size: route
                    .max_message_size
                    .unwrap_or(inner.config.max_message_size),
                max_frame_size: route
                    .max_message_size
                    .unwrap_or(inner.config.max_frame_size),
            };
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(upgrade);
            Ok(upgrade::switching(&accept_key, protocol))
        }
        Ok(Err(reject)) => Ok(refusal(reject)),
        Err(panic) => {
            let panic = panic_message(&*panic);
            tracing::error!(
                endpoint = route.name,
                panic,
                "extracting the parameters panicked"
            );
            Ok(upgrade::plain(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal error\n",
            ))
        }
    }
}

/// The page at `path`, compared percent-decoded as endpoint paths are (`/%69ndex` is `/index`).
fn find_page<'a>(pages: &'a HashMap<&'static str, String>, path: &str) -> Option<&'a str> {
    if pages.is_empty() {
        return None;
    }
    let page = match pages.get(path) {
        Some(page) => page,
        None if path.contains('%') => pages.get(percent_decode(path)?.as_str())?,
        None => return None,
    };
    Some(page)
}

/// A page registered with [`Server::page`]: `GET` and `HEAD` only.
fn page_response(method: &http::Method, page: &str) -> http::Response<Body> {
    if matches!(*method, http::Method::GET | http::Method::HEAD) {
        return console::html(page);
    }
    let mut response = upgrade::plain(
        http::StatusCode::METHOD_NOT_ALLOWED,
        "this page only answers GET and HEAD requests\n",
    );
    response.headers_mut().insert(
        http::header::ALLOW,
        http::HeaderValue::from_static("GET, HEAD"),
    );
    response
}

fn refusal(reject: Reject) -> http::Response<Body> {
    let body = if reject.body().is_empty() {
        format!("{}\n", reject.status())
    } else {
        format!("{}\n", reject.body())
    };
    upgrade::plain(reject.status(), body)
}

/// Serves byte streams without a listener, for the fuzz targets in `fuzz/`; not public API.
#[doc(hidden)]
pub struct FuzzHarness {
    inner: Arc<Inner>,
}

impl Server {
    /// The server as a [`FuzzHarness`]; not public API.
    #[doc(hidden)]
    pub fn fuzz_harness(self) -> FuzzHarness {
        FuzzHarness {
            inner: self.into_inner(),
        }
    }
}

impl FuzzHarness {
    /// Serves one client connection over `io`, as if it had been accepted.
    pub async fn serve<IO>(&self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        serve_io(io, peer, Active::enter(&self.inner)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sockets accepted from a listener made by `listen_on` have `TCP_NODELAY` without a
    /// system call of their own (on Linux, where the server relies on it).
    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay() {
        let listener = listen_on("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        if cfg!(target_os = "linux") {
            assert!(accepted.nodelay().unwrap());
        }
    }
}
