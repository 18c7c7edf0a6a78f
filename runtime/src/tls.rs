//! TLS for the built-in server (the `tls` feature): wss:// and https:// on rustls, with the
//! `ring` crypto provider (it builds with the C compiler Rust's linker already is; aws-lc-rs
//! would also need cmake).

use std::io;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;

use crate::listen::Open;

/// A certificate chain and its private key: [`Server::tls`](crate::Server::tls) serves
/// wss:// (and the dev console and pages over https://) with them.
///
/// TLS 1.2 and 1.3 with rustls' safe defaults; ALPN offers `http/1.1`. The TLS handshake
/// counts against the server's handshake timeout and `max_connections`; a client that sends
/// plain HTTP, garbage, or stalls mid-handshake is dropped without affecting others.
///
/// ```no_run
/// use wsock::prelude::*;
/// use wsock::Tls;
///
/// #[websocket("/chat")]
/// fn chat(out: Out<String>) {
///     on_message(|text: String| out.write(text));
/// }
///
/// # async fn demo() -> std::io::Result<()> {
/// let tls = Tls::from_pem_files("cert.pem", "key.pem")?;
/// Server::new().route(chat).tls(tls).serve("0.0.0.0:443").await
/// # }
/// ```
#[derive(Clone)]
pub struct Tls {
    config: Arc<ServerConfig>,
}

impl Tls {
    /// From PEM text: the certificate chain (the server's certificate first, then any
    /// intermediates) and the private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(
        cert_chain: impl AsRef<[u8]>,
        private_key: impl AsRef<[u8]>,
    ) -> io::Result<Tls> {
        let certs = CertificateDer::pem_slice_iter(cert_chain.as_ref())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| invalid(format!("the certificate chain is not valid PEM: {err}")))?;
        if certs.is_empty() {
            return Err(invalid("no certificate in the certificate chain's PEM"));
        }
        let key = PrivateKeyDer::from_pem_slice(private_key.as_ref())
            .map_err(|err| invalid(format!("no private key in the key's PEM: {err}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| invalid(err.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|err| invalid(format!("the certificate and key do not fit: {err}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            config: Arc::new(config),
        })
    }

    /// From PEM files: the certificate chain and the private key.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        private_key: impl AsRef<Path>,
    ) -> io::Result<Tls> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|err| {
                io::Error::new(err.kind(), format!("cannot read {}: {err}", path.display()))
            })
        };
        Tls::from_pem(read(cert_chain.as_ref())?, read(private_key.as_ref())?)
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.config))
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("alpn", &"http/1.1")
            .finish_non_exhaustive()
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.into())
}

/// A TLS handshake before HTTP, in the connection's own task.
impl Open for TlsAcceptor {
    type Io = TlsStream<TcpStream>;

    async fn open(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        self.accept(tcp).await
    }
}
