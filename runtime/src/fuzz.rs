//! Serving byte streams without a listener, for the fuzz targets in `fuzz/` (the `fuzz`
//! feature); not public API.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::DuplexStream;

use crate::app::App;
use crate::dispatch::Peer;
use crate::http_conn;
use crate::server::Server;

/// A server that serves streams handed to it as if they had been accepted.
#[doc(hidden)]
pub struct FuzzHarness {
    app: Arc<App>,
}

impl Server {
    /// The server as a [`FuzzHarness`]; not public API.
    #[doc(hidden)]
    pub fn fuzz_harness(self) -> FuzzHarness {
        FuzzHarness {
            app: self.into_app(),
        }
    }
}

impl FuzzHarness {
    /// Serves one client connection over the pipe `io`, as if it had been accepted, and
    /// returns once
    /// every connection it started has ended.
    pub async fn serve(&self, io: DuplexStream) {
        let peer = Peer {
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            over_loopback: true,
        };
        let handshake = self.app.registry.handshake();
        http_conn::serve(Arc::clone(&self.app), async { Ok(io) }, peer, handshake).await;
        self.app.registry.closed().await;
    }
}
