//! Serving a listener: [`Bound`], [`Handle`] and the accept loop, which plain TCP and TLS share.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;

use crate::app::App;
use crate::codec::socket::Socket;
use crate::dispatch::Peer;
use crate::http_conn;
use crate::registry::Registry;

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
    pub(crate) listener: TcpListener,
    /// Accepted sockets come with `TCP_NODELAY` already set (see `listen_on`).
    pub(crate) nodelay_inherited: bool,
    pub(crate) addr: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) app: Arc<App>,
}

/// What each accepted socket goes through before HTTP.
pub(crate) enum Transport {
    Plain,
    #[cfg(feature = "tls")]
    Tls(tokio_rustls::TlsAcceptor),
}

impl Bound {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that shuts the server down.
    pub fn handle(&self) -> Handle {
        Handle::new(&self.app.registry, self.app.config.shutdown_timeout)
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
        self.run_until_hurried(signal, std::future::pending()).await
    }

    /// [`run_until`](Bound::run_until), and when `hurry` completes while the connections
    /// drain, they are dropped at once (a second Ctrl-C).
    pub(crate) async fn run_until_hurried(
        self,
        signal: impl Future<Output = ()>,
        hurry: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let topics = self.app.context.topics.clone();
        let done = self.serve_until(signal, hurry).await;
        // Stopped: other nodes forget its members at once.
        topics.stopped().await;
        done
    }

    async fn serve_until(
        self,
        signal: impl Future<Output = ()>,
        hurry: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let registry = Arc::clone(&self.app.registry);
        let serving = match self.transport {
            Transport::Plain => tokio::spawn(accept_loop(
                self.listener,
                Plain,
                self.app,
                self.nodelay_inherited,
            )),
            #[cfg(feature = "tls")]
            Transport::Tls(acceptor) => tokio::spawn(accept_loop(
                self.listener,
                acceptor,
                self.app,
                self.nodelay_inherited,
            )),
        };
        let mut serving = AbortOnDrop(serving);
        let mut signal = std::pin::pin!(signal);
        tokio::select! {
            done = &mut serving.0 => return finished(done),
            () = &mut signal => registry.shut_down(),
        }
        let mut hurry = std::pin::pin!(hurry);
        tokio::select! {
            done = &mut serving.0 => return finished(done),
            () = &mut hurry => hurried(&registry),
        }
        // The drain ends as soon as the aborted tasks are gone.
        finished((&mut serving.0).await)
    }
}

/// Drops every open connection now, mid-drain.
fn hurried(registry: &Registry) {
    let dropped = registry.abort_all();
    tracing::warn!(
        dropped,
        "Ctrl-C again: dropping the remaining connections without waiting for them"
    );
}

/// Shuts a server down gracefully; cheap to clone.
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
    registry: Arc<Registry>,
    timeout: Duration,
}

impl Handle {
    pub(crate) fn new(registry: &Arc<Registry>, timeout: Duration) -> Self {
        Handle {
            registry: Arc::clone(registry),
            timeout,
        }
    }

    /// Stops accepting, sends 1001 (going away) to every open connection and lets each
    /// `on_close` run.
    ///
    /// The shutdown starts at this call. Awaiting what it returns waits until every
    /// connection is closed, or the shutdown timeout passed (then the remaining ones are
    /// dropped): inside an axum app, await it in the `with_graceful_shutdown` signal, since
    /// axum itself neither closes nor waits for upgraded connections. The built-in server's
    /// [`Bound::run`] returns once the same is done.
    pub fn shutdown(&self) -> ShuttingDown {
        self.registry.shut_down();
        let (registry, timeout) = (Arc::clone(&self.registry), self.timeout);
        ShuttingDown(Box::pin(async move { registry.drain(timeout).await }))
    }

    /// Waits for Ctrl-C, then shuts down as [`Handle::shutdown`] does and waits for the end:
    /// for axum's `with_graceful_shutdown(handle.shutdown_on_ctrl_c())`. Ctrl-C is caught
    /// from this call on, so call it before the server starts listening.
    ///
    /// A second Ctrl-C while the connections drain drops the remaining ones at once, and the
    /// future completes (axum then stops as soon as its own HTTP connections are done).
    pub fn shutdown_on_ctrl_c(&self) -> ShuttingDown {
        let (first, handle) = (ctrl_c(), self.clone());
        ShuttingDown(Box::pin(async move {
            first.await;
            let draining = handle.shutdown();
            let again = ctrl_c();
            tokio::select! {
                () = draining => {}
                () = again => hurried(&handle.registry),
            }
        }))
    }

    /// How many WebSocket connections are open.
    pub fn open_connections(&self) -> usize {
        self.registry.open()
    }
}

/// A graceful shutdown under way: completes once every connection is closed, or the shutdown
/// timeout passed. See [`Handle::shutdown`].
pub struct ShuttingDown(Pin<Box<dyn Future<Output = ()> + Send>>);

impl Future for ShuttingDown {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for ShuttingDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShuttingDown")
    }
}

/// Completes at Ctrl-C (SIGINT), which is caught from this call on, not from the first poll
/// (until then, Ctrl-C would end the process). Made once the first one came, it completes at
/// the next.
pub(crate) fn ctrl_c() -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let mut ctrl_c = Box::pin(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C: shutting down");
        }
    });
    // The first poll installs the handler; the waker that matters comes with the next one.
    let _ = ctrl_c
        .as_mut()
        .poll(&mut Context::from_waker(std::task::Waker::noop()));
    ctrl_c
}

/// A listening socket as `TcpListener::bind` makes one (address reuse on Unix, a backlog of
/// 1024), with `TCP_NODELAY` set: Linux passes it on to every accepted socket, which saves a
/// system call per connection.
pub(crate) fn listen_on(addr: SocketAddr) -> io::Result<TcpListener> {
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

/// What an accepted TCP socket goes through before HTTP: nothing, or a TLS handshake, run in
/// the connection's own task under the handshake timeout.
pub(crate) trait Open: Send + Sync + 'static {
    type Io: Socket + Send + 'static;
    fn open(&self, tcp: TcpStream) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

/// Plain TCP.
struct Plain;

impl Open for Plain {
    type Io = TcpStream;

    async fn open(&self, tcp: TcpStream) -> io::Result<TcpStream> {
        Ok(tcp)
    }
}

/// Accepts connections until the shutdown signal, then closes them gracefully.
async fn accept_loop<T: Open>(
    listener: TcpListener,
    transport: T,
    app: Arc<App>,
    nodelay_inherited: bool,
) -> io::Result<()> {
    let transport = Arc::new(transport);
    let registry = Arc::clone(&app.registry);
    // Dropping this loop (the run future was dropped) drops every connection with it.
    let _abort = AbortConnections(Arc::clone(&registry));
    let over_loopback = listener.local_addr()?.ip().is_loopback();
    let mut handshakes = JoinSet::new();
    {
        let stop = registry.shutdown().signal();
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                biased;
                () = &mut stop => break,
                Some(done) = handshakes.join_next(), if !handshakes.is_empty() => {
                    if let Err(err) = done {
                        tracing::error!(error = %err, "handshake task failed");
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let handshake = registry.handshake();
                        if !nodelay_inherited {
                            // Small frames go out at once, not held back by Nagle's algorithm.
                            let _ = stream.set_nodelay(true);
                        }
                        let (app, transport) = (Arc::clone(&app), Arc::clone(&transport));
                        let peer = Peer { addr, over_loopback };
                        handshakes.spawn(async move {
                            let open = transport.open(stream);
                            http_conn::serve(app, open, peer, handshake).await;
                        });
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
    tracing::info!(open = registry.open(), "shutting down: closing connections");
    registry.drain(app.config.shutdown_timeout).await;
    // Handshakes end at the shutdown signal; what remains of them is dropped here.
    handshakes.shutdown().await;
    Ok(())
}

/// Aborts every connection of the registry when dropped.
struct AbortConnections(Arc<Registry>);

impl Drop for AbortConnections {
    fn drop(&mut self) {
        self.0.abort_all();
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
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        if cfg!(target_os = "linux") {
            assert!(accepted.nodelay().unwrap());
        }
    }
}
