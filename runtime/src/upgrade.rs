//! The HTTP side of the handshake (RFC 6455 §4.2): checking the upgrade request and the
//! responses, the refusals included. Every refusal is a complete HTTP response.

// The checks return the refusal itself as their `Err`: large, but built once per refused
// request and sent as is.
#![allow(clippy::result_large_err)]

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use tungstenite::handshake::derive_accept_key;

pub(crate) type Body = String;

/// Whether the request asks for a WebSocket (`Upgrade: websocket`), well-formed or not.
pub(crate) fn asks_for_websocket<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
}

/// Checks that a request on an endpoint's path asks for a WebSocket; returns the
/// `Sec-WebSocket-Accept` value, or the refusal to send.
/// `upgrade` is what [`asks_for_websocket`] says of it.
pub(crate) fn check<B>(req: &http::Request<B>, upgrade: bool) -> Result<String, Response<Body>> {
    let headers = req.headers();
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
pub(crate) fn switching(accept: &str, protocol: Option<&'static str>) -> Response<Body> {
    let mut response = Response::new(Body::new());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(accept).expect("base64 is a valid header value"),
    );
    if let Some(protocol) = protocol {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol),
        );
    }
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

/// Which browser pages may open connections: the `Origin` header a browser sends.
#[derive(Clone, Debug, Default)]
pub(crate) enum Origins {
    /// Requests without `Origin` (non-browser clients), and pages served by this same host.
    #[default]
    SameHost,
    /// Any page.
    Any,
    /// These origins (`https://app.example.com`), plus what `SameHost` allows.
    List(Vec<String>),
}

/// Checks the `Origin` header against the allowed origins; a cross-site page gets 403.
pub(crate) fn check_origin<B>(
    req: &http::Request<B>,
    origins: &Origins,
) -> Result<(), Response<Body>> {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return Ok(()); // not a browser: nothing to protect against
    };
    let origin = origin.to_str().unwrap_or_default().trim();
    let allowed = match origins {
        Origins::Any => true,
        Origins::SameHost => same_host(req, origin),
        Origins::List(list) => {
            same_host(req, origin) || list.iter().any(|allowed| same_origin(allowed, origin))
        }
    };
    if allowed {
        Ok(())
    } else {
        tracing::debug!(origin, "refusing a cross-origin upgrade");
        Err(plain(
            StatusCode::FORBIDDEN,
            format!("origin {origin} is not allowed to open websockets here\n"),
        ))
    }
}

/// `scheme://host[:port]` as `(scheme, host:port)`, lowercased, with the scheme's default
/// port made explicit; `None` for `null` and anything that is not an http(s) origin.
fn normalize_origin(origin: &str) -> Option<(String, String)> {
    let (scheme, authority) = origin.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    Some((scheme, with_port(authority, default_port)))
}

/// `host[:port]`, lowercased, with the port made explicit (`[::1]` and `[::1]:80` alike).
fn with_port(authority: &str, default_port: &str) -> String {
    let authority = authority.trim_end_matches('/').to_ascii_lowercase();
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    if has_port {
        authority
    } else {
        format!("{authority}:{default_port}")
    }
}

/// Whether `Origin: scheme://host[:port]` names the host the request was sent to (`Host`).
fn same_host<B>(req: &http::Request<B>, origin: &str) -> bool {
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, authority)) = normalize_origin(origin) else {
        return false;
    };
    let default_port = if scheme == "https" { "443" } else { "80" };
    authority == with_port(host, default_port)
}

/// Whether an allowed origin (as configured) and a request's `Origin` are the same origin.
fn same_origin(allowed: &str, origin: &str) -> bool {
    normalize_origin(allowed).is_some_and(|allowed| Some(allowed) == normalize_origin(origin))
}

/// Picks the subprotocol: the first of the endpoint's that the client offers. An endpoint that
/// declares protocols refuses a client that offers none of them with 400.
pub(crate) fn negotiate_protocol<B>(
    req: &http::Request<B>,
    supported: &'static [&'static str],
) -> Result<Option<&'static str>, Response<Body>> {
    if supported.is_empty() {
        return Ok(None);
    }
    let offered: Vec<&str> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    match supported.iter().find(|protocol| offered.contains(protocol)) {
        Some(protocol) => Ok(Some(protocol)),
        None => Err(plain(
            StatusCode::BAD_REQUEST,
            format!(
                "no acceptable subprotocol: this endpoint speaks {}; the client offered {}\n",
                supported.join(", "),
                if offered.is_empty() {
                    "none".to_owned()
                } else {
                    offered.join(", ")
                }
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> http::Request<()> {
        let mut builder = http::Request::builder().uri("/chat");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn same_origin_is_allowed_and_cross_origin_refused() {
        let same = Origins::SameHost;
        let ok = |headers: &[(&str, &str)], origins: &Origins| {
            check_origin(&request(headers), origins).is_ok()
        };
        assert!(ok(&[("host", "example.com")], &same));
        assert!(ok(
            &[("host", "example.com"), ("origin", "https://example.com")],
            &same
        ));
        assert!(ok(
            &[
                ("host", "example.com:443"),
                ("origin", "https://EXAMPLE.com")
            ],
            &same
        ));
        assert!(ok(
            &[
                ("host", "127.0.0.1:9000"),
                ("origin", "http://127.0.0.1:9000")
            ],
            &same
        ));
        assert!(ok(
            &[("host", "[::1]:9000"), ("origin", "http://[::1]:9000")],
            &same
        ));
        assert!(!ok(
            &[("host", "example.com"), ("origin", "https://evil.example")],
            &same
        ));
        assert!(!ok(
            &[
                ("host", "example.com:8080"),
                ("origin", "http://example.com")
            ],
            &same
        ));
        assert!(!ok(&[("host", "example.com"), ("origin", "null")], &same));
        assert!(!ok(&[("origin", "https://example.com")], &same));
        let list = Origins::List(vec!["https://app.example.com:443".into()]);
        assert!(ok(
            &[
                ("host", "api.example.com"),
                ("origin", "https://app.example.com")
            ],
            &list
        ));
        assert!(!ok(
            &[
                ("host", "api.example.com"),
                ("origin", "https://evil.example")
            ],
            &list
        ));
        assert!(ok(
            &[("host", "a"), ("origin", "https://evil.example")],
            &Origins::Any
        ));
    }

    #[test]
    fn negotiates_the_first_supported_protocol_the_client_offers() {
        const CHAT: &[&str] = &["chat.v2", "chat.v1"];
        let offer =
            |offer: &str| negotiate_protocol(&request(&[("sec-websocket-protocol", offer)]), CHAT);
        assert_eq!(offer("chat.v1").unwrap(), Some("chat.v1"));
        assert_eq!(offer("chat.v1, chat.v2").unwrap(), Some("chat.v2"));
        assert_eq!(
            offer("other").unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        assert!(negotiate_protocol(&request(&[]), CHAT).is_err());
        assert_eq!(
            negotiate_protocol(&request(&[("sec-websocket-protocol", "x")]), &[]).unwrap(),
            None
        );
    }
}
