//! The HTTP side of the handshake (RFC 6455 §4.2): checking the upgrade request and the
//! responses, the refusals included. Every refusal is a complete HTTP response.

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

pub(crate) type Body = String;

/// Checks that a request on an endpoint's path asks for a WebSocket; returns the
/// `Sec-WebSocket-Accept` value, or the refusal to send.
// A large `Err` is fine here: it is built once per refused request, and sent as is.
#[allow(clippy::result_large_err)]
pub(crate) fn check<B>(req: &http::Request<B>) -> Result<String, Response<Body>> {
    let headers = req.headers();
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        });
    let connection = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("upgrade"));
    if req.method() != Method::GET {
        let mut response = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "a websocket endpoint only answers GET requests\n",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return Err(response);
    }
    if !upgrade || !connection {
        return Err(upgrade_required(
            "this is a websocket endpoint: connect with a websocket client\n",
        ));
    }
    if req.version() < Version::HTTP_11 {
        return Err(plain(
            StatusCode::BAD_REQUEST,
            "a websocket upgrade needs HTTP/1.1\n",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(upgrade_required(
            "unsupported websocket version: this server speaks version 13\n",
        ));
    }
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if is_valid_key(key.as_bytes()) => Ok(derive_accept_key(key.as_bytes())),
        _ => Err(plain(
            StatusCode::BAD_REQUEST,
            "missing or malformed Sec-WebSocket-Key header\n",
        )),
    }
}

/// A key is 16 random bytes in base64: 22 base64 characters and `==`.
fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// 101: the handshake's answer.
pub(crate) fn switching(accept: &str) -> Response<Body> {
    let mut response = Response::new(Body::new());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(accept).expect("base64 is a valid header value"),
    );
    response
}

/// 426, naming the protocol and version to upgrade to.
fn upgrade_required(body: &'static str) -> Response<Body> {
    let mut response = plain(StatusCode::UPGRADE_REQUIRED, body);
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        header::CONNECTION,
        HeaderValue::from_static("Upgrade, close"),
    );
    headers.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    response
}

/// A plain-text response, after which the connection closes.
pub(crate) fn plain(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
