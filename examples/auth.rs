//! A guard that reads the signed session: clients without a session get 401.
//!
//! Run: `cargo run --example auth [ADDRESS]` (default 127.0.0.1:9000). It prints a `Cookie`
//! header that logs you in as `ada` (what a login page would set). Then:
//!
//! - without the cookie, `curl -i -H 'Connection: Upgrade' -H 'Upgrade: websocket'
//!   -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='
//!   http://127.0.0.1:9000/me` answers `401 Unauthorized` with `log in first`;
//! - with it, a client is greeted: `websocat -H 'Cookie: WSOCK_SESSION=..' ws://127.0.0.1:9000/me`
//!   or, in Python (`pip install websockets`):
//!   `websockets.connect("ws://127.0.0.1:9000/me", additional_headers={"Cookie": "WSOCK_SESSION=.."})`,
//!   then receives `hello ada` and the echo of each message, signed `ada: ..`.
//!
//! The cookie is signed with the secret in `WSOCK_SECRET` (at least 32 bytes; without it, with
//! a random key, so the printed cookie works until the server stops): a cookie edited by hand,
//! or signed with another secret,
//! gives an empty session, hence 401.

use wsock::SessionKey;
use wsock::prelude::*;

/// A logged-in user: the session's `user`.
struct User {
    name: String,
}

impl FromRequest for User {
    async fn from_request(req: &Request) -> Result<Self, Reject> {
        match req.session().get("user") {
            Some(name) => Ok(User {
                name: name.to_owned(),
            }),
            None => Err(Reject::unauthorized().with_body("log in first")),
        }
    }
}

/// Only for logged-in users.
#[websocket("/me")]
fn me(user: User, out: Out<String>) {
    out.write(format!("hello {}", user.name));
    on_message(|text: String| out.write(format!("{}: {text}", user.name)));
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".to_owned());
    let key = match std::env::var("WSOCK_SECRET") {
        Ok(secret) => SessionKey::derive_from(secret),
        // A fixed fallback would let anyone who read this file sign cookies.
        Err(_) => SessionKey::generate(),
    };
    let mut session = Session::new();
    session.insert("user", "ada");
    let set_cookie = key.cookie(&session);
    let cookie = set_cookie.split(';').next().unwrap_or_default();
    println!("log in as ada with the header  Cookie: {cookie}");
    Server::new().session_key(key).route(me).serve(addr).await
}

/// The guard, tested in process with wsock's test kit (`cargo test --features test`).
#[cfg(all(test, feature = "test"))]
mod tests {
    use super::*;
    use wsock::test::TestServer;

    #[tokio::test]
    async fn only_a_signed_session_gets_in() {
        let app = TestServer::new(Server::new().secret([1u8; 32]).route(me));
        let refused = app.connect("/me").await.unwrap_err();
        assert_eq!(
            (refused.status().as_u16(), refused.body()),
            (401, "log in first")
        );

        let ada: Session = [("user", "ada")].into_iter().collect();
        let mut client = app.request("/me").session(&ada).await.unwrap();
        assert_eq!(client.recv::<String>().await, "hello ada");
        client.send("hi").await;
        assert_eq!(client.recv::<String>().await, "ada: hi");

        // A cookie signed with another key is no session.
        let forged = SessionKey::derive_from([2u8; 32]).cookie(&ada);
        let value = forged
            .split(';')
            .next()
            .unwrap()
            .trim_start_matches("WSOCK_SESSION=");
        let refused = app
            .request("/me")
            .cookie("WSOCK_SESSION", value)
            .await
            .unwrap_err();
        assert_eq!(refused.status(), 401);
    }
}
