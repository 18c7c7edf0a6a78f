//! A self-signed certificate made for the test, and a client that trusts it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_tungstenite::WebSocketStream;

use super::WAIT;

pub type TlsClient = WebSocketStream<TlsStream<TcpStream>>;

/// A certificate for `localhost` and `127.0.0.1`, its key, and the same as files in a
/// directory of their own that goes when this is dropped.
pub struct Cert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    pub dir: PathBuf,
}

impl Cert {
    pub fn new() -> Cert {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let made = rcgen::generate_simple_self_signed(names).unwrap();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wsock-test-cert-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = Cert {
            cert_pem: made.cert.pem(),
            key_pem: made.signing_key.serialize_pem(),
            der: made.cert.der().clone(),
            dir,
        };
        std::fs::write(cert.cert_file(), &cert.cert_pem).unwrap();
        std::fs::write(cert.key_file(), &cert.key_pem).unwrap();
        cert
    }

    pub fn cert_file(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// A client configuration that trusts this certificate only, offering `http/1.1`.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// A TLS connection to `addr` that checks the server's certificate for `localhost`.
    pub async fn tls(&self, addr: SocketAddr) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        tokio::time::timeout(
            WAIT,
            TlsConnector::from(self.client_config()).connect(name, tcp),
        )
        .await
        .expect("the TLS handshake timed out")
        .expect("the TLS handshake failed")
    }

    /// A wss:// connection to `path`.
    pub async fn connect(&self, addr: SocketAddr, path: &str) -> TlsClient {
        let stream = self.tls(addr).await;
        let url = format!("wss://localhost:{}{path}", addr.port());
        let (ws, response) =
            tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, stream))
                .await
                .expect("the upgrade timed out")
                .expect("the upgrade failed");
        assert_eq!(response.status(), 101);
        ws
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
