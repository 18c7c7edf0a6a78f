//! One accepted socket's HTTP side: opening it (nothing, or the TLS handshake), reading the
//! upgrade request with hyper, dispatching it, and, once it is accepted, starting the
//! connection's own task. The handshake timeout bounds all of it; a shutdown drops it.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::task::Poll;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::app::App;
use crate::codec::socket::Socket;
use crate::connection;
use crate::dispatch::{Peer, dispatch};
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
    let handshake = Arc::new(handshake);
    let service = {
        let app = Arc::clone(&app);
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
    let http = async {
        let io = open.await?;
        // One request per connection: refusals say `Connection: close`, upgrades hand over.
        // No timer for hyper: the timeout below bounds the whole handshake.
        http1::Builder::new()
            .header_read_timeout(None)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
            .await
            .map_err(io::Error::other)
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
