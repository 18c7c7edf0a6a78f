//! wsock inside another server: the tower `Service` ([`Server::into_service`]), and behind
//! the `axum` feature [`Server::into_router`].

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::StatusCode;
use hyper::upgrade::OnUpgrade;
use tokio::net::TcpStream;

use crate::app::App;
use crate::connection;
use crate::dispatch::{Dispatched, Peer, dispatch};
use crate::response::{Body, Refusal};
use crate::server::Server;

/// A wsock server as a tower `Service`: its endpoints and pages inside another HTTP server
/// (axum, or hyper itself), with everything the built-in server does (see
/// [`Server::into_service`]).
///
/// It takes any request body type and answers with `http::Response<String>`; it is
/// `Clone + Send + Sync`, never fails (`Error = Infallible`: refusals are responses) and
/// its future is `Send`. An accepted upgrade is answered with 101 at once, and the
/// connection runs in a task of its own once the server in front hands the socket over.
#[derive(Clone)]
pub struct WsService {
    app: Arc<App>,
}

impl Server {
    /// The server as a tower [`Service`](WsService), for another HTTP server that speaks
    /// HTTP/1.1 with upgrades: axum (`route_service`, `nest_service`, `fallback_service`;
    /// see [`Server::into_router`] for the usual way), or hyper's
    /// `serve_connection(io, TowerToHyperService::new(service)).with_upgrades()`.
    ///
    /// Everything behaves as in the built-in server: routes, pages, the dev console, origins,
    /// limits, guards, sessions, keep-alive and the outbound queue. The differences:
    ///
    /// - the path is the one the server in front hands over (under axum's
    ///   `nest_service("/ws", ..)`, a request for `/ws/chat` reaches the endpoint at `/chat`);
    /// - `max_connections` counts the WebSocket connections this service opened and the
    ///   requests it is answering (the server in front counts its own connections);
    /// - [`Request::peer_addr`](crate::Request::peer_addr) is the address in the request's
    ///   extensions, from axum's `ConnectInfo<SocketAddr>` (serve with
    ///   `into_make_service_with_connect_info::<SocketAddr>()`) or a plain `SocketAddr` a
    ///   hyper server inserts; without either it is `0.0.0.0:0`;
    /// - the `Host` check of [`Server::allow_host`] has no listening address to go by: by
    ///   default it applies the loopback rule to requests whose peer address is a loopback
    ///   address;
    /// - graceful shutdown: take a [`Handle`](crate::Handle) with [`Server::handle`] first,
    ///   and await its [`shutdown`](crate::Handle::shutdown) when the server in front stops
    ///   (axum's `with_graceful_shutdown` closes no upgraded connection by itself).
    pub fn into_service(self) -> WsService {
        self.log_startup("");
        WsService {
            app: self.into_app(),
        }
    }
}

impl<B: Send + 'static> tower_service::Service<http::Request<B>> for WsService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let app = Arc::clone(&self.app);
        Box::pin(async move { Ok(answer(&app, req).await) })
    }
}

async fn answer<B>(app: &Arc<App>, mut req: http::Request<B>) -> http::Response<Body> {
    let addr = peer_addr(&req);
    let peer = Peer {
        addr: addr.unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))),
        over_loopback: addr.is_some_and(|addr| addr.ip().is_loopback()),
    };
    let handshake = app.registry.handshake();
    let on_upgrade = req.extensions_mut().remove::<OnUpgrade>();
    match (dispatch(app, req, peer, &handshake).await, on_upgrade) {
        (Dispatched::Upgrade(..), None) => {
            tracing::error!(
                "an upgrade was accepted, but the server in front cannot hand the connection \
                 over: serve HTTP/1.1 with upgrades (hyper's `serve_connection(..).with_upgrades()`)"
            );
            Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "this server cannot upgrade the connection",
            )
            .into_response()
        }
        (dispatched, on_upgrade) => dispatched.respond(|accepted| {
            let on_upgrade = on_upgrade.expect("checked above");
            // axum's own server serves `TcpStream`s: taking one back skips hyper's dynamic IO.
            connection::spawn_upgraded::<TcpStream>(app, accepted, on_upgrade);
        }),
    }
}

/// The client's address, as the server in front put it in the request's extensions.
fn peer_addr<B>(req: &http::Request<B>) -> Option<SocketAddr> {
    let extensions = req.extensions();
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(*addr);
    }
    extensions.get::<SocketAddr>().copied()
}

#[cfg(feature = "axum")]
impl Server {
    /// The server's endpoints and pages as an axum `Router`, to merge into an app's own:
    /// one `route_service` per path, so the app keeps its own routes and fallback.
    ///
    /// ```no_run
    /// use std::net::SocketAddr;
    /// use axum::routing::get;
    /// use wsock::prelude::*;
    ///
    /// #[websocket("/chat")]
    /// fn chat(out: Out<String>) {
    ///     on_message(|text: String| out.write(text));
    /// }
    ///
    /// # async fn demo() -> std::io::Result<()> {
    /// let ws = Server::new().route(chat);
    /// let handle = ws.handle();
    /// let app = axum::Router::new()
    ///     .route("/api/health", get(|| async { "ok" }))
    ///     .merge(ws.into_router());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
    ///     .with_graceful_shutdown(async move {
    ///         tokio::signal::ctrl_c().await.ok();
    ///         handle.shutdown().await; // 1001 to every connection, each on_close runs
    ///     })
    ///     .await
    /// # }
    /// ```
    ///
    /// axum routes a request by its raw path, so a percent-encoded spelling of an endpoint's
    /// path reaches the app's fallback, not the endpoint. axum panics when an app's own route
    /// has one of these paths.
    pub fn into_router<S: Clone + Send + Sync + 'static>(self) -> axum::Router<S> {
        let paths = self.paths();
        let service = self.into_service();
        paths.into_iter().fold(axum::Router::new(), |router, path| {
            router.route_service(path, service.clone())
        })
    }
}
