//! Log in over HTTP, then talk over WebSocket as who you are: an axum app whose login route
//! sets wsock's signed session cookie, whose logout route clears it, and an endpoint that reads
//! it (401 without it).
//!
//! Run: `cargo run --example login --features axum [ADDRESS]` (default 127.0.0.1:3000) and open
//! http://127.0.0.1:3000/: log in with a name, and the page connects to ws://127.0.0.1:3000/me,
//! which greets you by that name and signs what you send with it. Log out, and the endpoint
//! (and `GET /api/me`) answer 401 again.
//!
//! - `POST /login` (a form with `name`): sets `WSOCK_SESSION`, signed with the secret in
//!   `WSOCK_SECRET` (without it, a random key: sessions end when the server stops), valid for
//!   8 hours: the expiry is signed into the cookie and checked by the server, not only by the
//!   browser;
//! - `POST /logout`: clears the cookie;
//! - `GET /api/me`: `{"user":"ada"}`, or 401: an HTTP route reading the same session;
//! - `ws://../me`: `hello ada`, then each message back as `ada: ..`.
//!
//! The cookie is `HttpOnly` and `SameSite=Lax`; with `WSOCK_SECURE=1` (behind a TLS proxy) it
//! is `Secure` and named `__Host-WSOCK_SESSION`. Login and logout refuse forms posted from other sites (their `Origin`), so another
//! site cannot log a visitor in or out.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use wsock::{FromRequest, Out, Reject, Request, Server, SessionKey, Sessions, websocket};

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

#[derive(Deserialize)]
struct Login {
    name: String,
}

/// `POST /login`: signs the name into the session cookie.
async fn login(
    State(sessions): State<Sessions>,
    headers: HeaderMap,
    Form(form): Form<Login>,
) -> Response {
    if !posted_here(&headers) {
        return refused_elsewhere();
    }
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 24 || name.chars().any(char::is_control) {
        return (StatusCode::BAD_REQUEST, "a name is 1 to 24 characters").into_response();
    }
    let session = [("user", name)].into_iter().collect();
    let cookie = sessions.cookie(&session);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

/// `POST /logout`: removes the session cookie.
async fn logout(State(sessions): State<Sessions>, headers: HeaderMap) -> Response {
    if !posted_here(&headers) {
        return refused_elsewhere();
    }
    let cookie = sessions.clear_cookie();
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

/// `GET /api/me`: who the session says you are.
async fn whoami(State(sessions): State<Sessions>, headers: HeaderMap) -> Response {
    match sessions.read(&headers).get("user") {
        Some(user) => axum::Json(serde_json::json!({ "user": user })).into_response(),
        None => (StatusCode::UNAUTHORIZED, "log in first").into_response(),
    }
}

/// Whether a form was posted by a page of this site: browsers send its `Origin`, which must
/// name the host the form was posted to (clients that send none, like curl, are let through).
fn posted_here(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, host)| host);
    host.is_some() && origin_host == host
}

fn refused_elsewhere() -> Response {
    (StatusCode::FORBIDDEN, "posted from another site").into_response()
}

/// The page, the endpoint and the HTTP routes, on one key.
fn app(key: SessionKey) -> (axum::Router, wsock::Handle) {
    let ws = Server::new()
        .page("/", include_str!("login.html"))
        .session_key(key)
        .route(me);
    let handle = ws.handle();
    let router = axum::Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/api/me", get(whoami))
        .with_state(ws.sessions())
        .merge(ws.into_router());
    (router, handle)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let key = match std::env::var("WSOCK_SECRET") {
        Ok(secret) => SessionKey::derive_from(secret),
        Err(_) => {
            // A fixed fallback would let anyone who read this file sign cookies.
            tracing::info!(
                "WSOCK_SECRET is not set: a random key, so sessions end with the server"
            );
            SessionKey::generate()
        }
    };
    let key = key
        .max_age(Duration::from_secs(8 * 3600))
        .secure(std::env::var("WSOCK_SECURE").is_ok_and(|v| v == "1"));
    let (router, handle) = app(key);
    let shutdown = handle.shutdown_on_ctrl_c();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The whole flow over real sockets: log in, connect as that user, read the same session over
/// HTTP, log out; an expired cookie and a form from another site are refused.
#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    const WAIT: Duration = Duration::from_secs(5);

    async fn serve(key: SessionKey) -> (SocketAddr, wsock::Handle) {
        let (router, handle) = app(key);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, service).await });
        (addr, handle)
    }

    /// One HTTP/1.1 request with `headers` and a form `body`; the whole response.
    async fn http(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
            .await
            .expect("no response in time")
            .unwrap();
        response
    }

    /// The `Set-Cookie` line's value.
    fn set_cookie(response: &str) -> &str {
        response
            .lines()
            .find_map(|line| line.strip_prefix("set-cookie: "))
            .unwrap_or_else(|| panic!("no Set-Cookie in {response}"))
    }

    /// Connects to `/me` with `cookie`; the greeting, or the refusal's status.
    async fn greeting(addr: SocketAddr, cookie: &str) -> Result<String, u16> {
        let mut request = format!("ws://{addr}/me").into_client_request().unwrap();
        if !cookie.is_empty() {
            request
                .headers_mut()
                .insert("cookie", cookie.parse().unwrap());
        }
        match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request)).await {
            Ok(Ok((mut ws, _))) => {
                use futures_util::{SinkExt, StreamExt};
                let hello = ws.next().await.unwrap().unwrap().into_text().unwrap();
                ws.send(WsMessage::text("hi")).await.unwrap();
                let echo = ws.next().await.unwrap().unwrap().into_text().unwrap();
                Ok(format!("{hello} / {echo}"))
            }
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                Err(response.status().as_u16())
            }
            other => panic!("neither a connection nor a refusal: {other:?}"),
        }
    }

    #[tokio::test]
    async fn log_in_talk_log_out() {
        let key = SessionKey::derive_from([3u8; 32]).max_age(Duration::from_secs(3600));
        let (addr, handle) = serve(key).await;
        assert_eq!(greeting(addr, "").await, Err(401));

        let response = http(addr, "POST", "/login", "", "name=ada").await;
        assert!(response.starts_with("HTTP/1.1 303"), "{response}");
        let cookie = set_cookie(&response);
        assert!(
            cookie.contains("; HttpOnly; SameSite=Lax; Path=/; Max-Age=3600"),
            "{cookie}"
        );
        let cookie = cookie.split(';').next().unwrap().to_owned();

        assert_eq!(
            greeting(addr, &cookie).await,
            Ok("hello ada / ada: hi".to_owned())
        );
        let me = http(addr, "GET", "/api/me", &format!("Cookie: {cookie}\r\n"), "").await;
        assert!(me.ends_with(r#"{"user":"ada"}"#), "{me}");

        // Logging out clears the browser's cookie.
        let response = http(addr, "POST", "/logout", "", "").await;
        let cleared = set_cookie(&response);
        assert!(cleared.starts_with("WSOCK_SESSION=;"), "{cleared}");
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
        assert_eq!(greeting(addr, "WSOCK_SESSION=").await, Err(401));

        // Forms from other sites, and bad names, are refused.
        let from_elsewhere = "Origin: https://evil.example\r\n";
        let response = http(addr, "POST", "/login", from_elsewhere, "name=eve").await;
        assert!(response.starts_with("HTTP/1.1 403"), "{response}");
        let response = http(addr, "POST", "/login", "", "name=").await;
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
        handle.shutdown().await;
    }

    /// The expiry is signed into the cookie: once past it, the server refuses the cookie even
    /// though the client still sends it.
    #[tokio::test]
    async fn an_expired_session_is_refused() {
        let key = SessionKey::derive_from([3u8; 32]).max_age(Duration::from_secs(1));
        let (addr, handle) = serve(key).await;
        let response = http(addr, "POST", "/login", "", "name=ada").await;
        let cookie = set_cookie(&response).split(';').next().unwrap().to_owned();
        assert_eq!(greeting(addr, &cookie).await.map(|_| ()), Ok(()));
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(greeting(addr, &cookie).await, Err(401));
        handle.shutdown().await;
    }
}
