//! One accepted socket's HTTP side: opening it (nothing, or the TLS handshake), reading the
//! upgrade request (a plain one without hyper, see `http_head`; anything else with hyper),
//! dispatching it, and, once it is accepted, starting the connection's own task. The
//! handshake timeout bounds all of it; a shutdown drops it.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::task::Poll;

use bytes::BytesMut;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use crate::app::App;
use crate::codec::socket::Socket;
use crate::connection;
use crate::dispatch::{Peer, dispatch};
use crate::http_head::{self, Head, Rewind};
use crate::registry::Handshake;

/// Serves one socket until its request is answered: `open` yields the stream to speak HTTP
/// on; `handshake` counts it, from the moment it was accepted, until it is answered.
pub(crate) async fn serve<IO>(
    app: Arc<App>,
    open: impl Future<Output = io::Result<IO>>,
    peer: Peer,
    handshake: Handshake,
) where
    IO: Socket + Send + 'static,
{
    let config = &app.config;
    let http = async {
        let mut io = open.await?;
        match http_head::read(&mut io).await? {
            Head::Upgrade(request, rest) => answer(&app, io, request, rest, peer, handshake).await,
            // Boxed: a plain upgrade's handshake holds no room for hyper's state.
            Head::Other(read) => {
                Box::pin(with_hyper(&app, Rewind::new(read, io), peer, handshake)).await
            }
            Head::Ended => Ok(()),
        }
    };
    // A shutdown drops a connection still in its handshake: nothing was accepted yet, and a
    // client that never completes its request must not hold the shutdown up.
    let mut http = std::pin::pin!(http);
    let shutdown = app.registry.shutdown().signal();
    let mut shutdown = std::pin::pin!(shutdown);
    let http = std::future::poll_fn(|cx| match shutdown.as_mut().poll(cx) {
        Poll::Ready(()) => Poll::Ready(None),
        Poll::Pending => http.as_mut().poll(cx).map(Some),
    });
    // Bounds the whole handshake, TLS and slow extractors included.
    match tokio::time::timeout(config.handshake_timeout, http).await {
        Ok(Some(Ok(()))) => {}
        Ok(Some(Err(err))) => {
            tracing::debug!(peer = %peer.addr, error = %err, "handshake failed");
        }
        Ok(None) => tracing::debug!(peer = %peer.addr, "shutting down during the handshake"),
        Err(_) => tracing::debug!(peer = %peer.addr, "handshake timed out"),
    }
}

/// Answers a plain upgrade request read without hyper, and starts its connection if it is
/// accepted; any other answer closes the stream.
async fn answer<IO>(
    app: &Arc<App>,
    mut io: IO,
    request: http::Request<()>,
    rest: BytesMut,
    peer: Peer,
    handshake: Handshake,
) -> io::Result<()>
where
    IO: Socket + Send + 'static,
{
    let dispatched = dispatch(app, request, peer, &handshake).await;
    let mut accepted = None;
    let response = dispatched.respond(|upgrade| accepted = Some(upgrade));
    http_head::respond(&mut io, &response).await?;
    drop(response);
    match accepted {
        Some(accepted) => {
            // Counted as a connection from here on, not as a handshake.
            drop(handshake);
            let says_goodbye = connection::says_goodbye::<IO>();
            connection::spawn_on(app, accepted, io, rest, says_goodbye);
            Ok(())
        }
        None => io.shutdown().await,
    }
}

/// Serves the stream with hyper: any request but a plain upgrade.
async fn with_hyper<IO>(app: &Arc<App>, io: IO, peer: Peer, handshake: Handshake) -> io::Result<()>
where
    IO: Socket + Send + 'static,
{
    let handshake = Arc::new(handshake);
    let service = {
        let app = Arc::clone(app);
        service_fn(move |mut req| {
            let (app, handshake) = (Arc::clone(&app), Arc::clone(&handshake));
            async move {
                let on_upgrade = hyper::upgrade::on(&mut req);
                let dispatched = dispatch(&app, req, peer, &handshake).await;
                Ok::<_, Infallible>(dispatched.respond(|accepted| {
                    connection::spawn_upgraded::<IO>(&app, accepted, on_upgrade);
                }))
            }
        })
    };
    // One request per connection: refusals say `Connection: close`, upgrades hand over.
    // No timer for hyper: the handshake's timeout bounds it.
    http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await
        .map_err(io::Error::other)
}
