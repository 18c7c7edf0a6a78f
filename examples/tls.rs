//! The echo endpoint over TLS: wss:// for the endpoint, https:// for its dev console.
//!
//! Run: `cargo run --example tls --features tls [ADDRESS [CERT.pem KEY.pem]]` (default
//! 127.0.0.1:9443). Without a certificate it makes a self-signed one for `localhost` and
//! `127.0.0.1`, writes it to a temporary directory and prints where, so that a client can
//! trust it: `SSL_CERT_FILE=<that cert.pem> python3 -m websockets wss://localhost:9443/`.
//! A browser warns about a self-signed certificate; accept it to see the dev console at
//! https://localhost:9443/ (debug builds).

use std::path::PathBuf;

use wsock::Tls;
use wsock::prelude::*;

/// Sends each message back as it came.
#[websocket("/")]
fn echo(out: Out<Message>) {
    on_message(|message: Message| out.write(message));
}

/// A self-signed certificate for this machine's own names, written to a temporary directory.
fn self_signed() -> std::io::Result<(PathBuf, PathBuf)> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let made = rcgen::generate_simple_self_signed(names).map_err(std::io::Error::other)?;
    let dir = std::env::temp_dir().join(format!("wsock-tls-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.signing_key.serialize_pem())?;
    println!("self-signed certificate: {}", cert.display());
    Ok((cert, key))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9443".to_owned());
    let (cert, key) = match (args.next(), args.next()) {
        (Some(cert), Some(key)) => (cert.into(), key.into()),
        _ => self_signed()?,
    };
    Server::new()
        .route(echo)
        .tls(Tls::from_pem_files(cert, key)?)
        .serve(addr)
        .await
}

/// The endpoint, tested in process with wsock's test kit (`cargo test --features test,tls`):
/// TLS is the listener's business, so the kit needs none.
#[cfg(all(test, feature = "test"))]
mod tests {
    use super::*;
    use wsock::test::TestServer;

    #[tokio::test]
    async fn echoes() {
        let app = TestServer::new(Server::new().route(echo));
        let mut client = app.connect("/").await.unwrap();
        client.send("over the kit").await;
        assert_eq!(client.recv::<String>().await, "over the kit");
    }
}
