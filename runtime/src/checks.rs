//! The HTTP side of the handshake (RFC 6455 §4.2): the checks an upgrade request passes
//! before any endpoint code runs. Each check returns the [`Refusal`] to send when it fails.

use std::net::IpAddr;

use base64::Engine;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode, Version};
use sha1::{Digest, Sha1};

use crate::config::{Hosts, Origins};
use crate::response::Refusal;

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
/// `Sec-WebSocket-Accept` value. `upgrade` is what [`asks_for_websocket`] says of it.
pub(crate) fn check<B>(req: &http::Request<B>, upgrade: bool) -> Result<String, Refusal> {
    let headers = req.headers();
    let connection = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("upgrade"));
    if req.method() != Method::GET {
        return Err(Refusal::method_not_allowed(
            "GET",
            "a websocket endpoint only answers GET requests",
        ));
    }
    if !upgrade || !connection {
        return Err(Refusal::upgrade_required(
            "this is a websocket endpoint: connect with a websocket client",
        ));
    }
    if req.version() < Version::HTTP_11 {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "a websocket upgrade needs HTTP/1.1",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(Refusal::upgrade_required(
            "unsupported websocket version: this server speaks version 13",
        ));
    }
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if is_valid_key(key.as_bytes()) => Ok(derive_accept_key(key.as_bytes())),
        _ => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "missing or malformed Sec-WebSocket-Key header",
        )),
    }
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2): the key and the protocol's GUID, hashed
/// with SHA-1, in base64.
pub(crate) fn derive_accept_key(key: &[u8]) -> String {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

/// A key is 16 random bytes in base64: 22 base64 characters and `==`.
fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// Checks the `Host` header against the allowed hosts. `over_loopback` says whether the
/// connection came in over a loopback address, where only loopback names are expected
/// unless more were allowed: a page whose DNS name an attacker re-points at 127.0.0.1 sends
/// its own name, and is refused with 403.
///
/// IP addresses are always allowed: no DNS answer can re-point one. A request without `Host`
/// is not from a browser (browsers always send it) and passes.
pub(crate) fn check_host<B>(
    req: &http::Request<B>,
    hosts: &Hosts,
    over_loopback: bool,
) -> Result<(), Refusal> {
    let allowed: &[String] = match hosts {
        Hosts::Any => return Ok(()),
        Hosts::Auto if !over_loopback => return Ok(()),
        Hosts::Auto => &[],
        Hosts::List(list) => list,
    };
    let mut values = req.headers().get_all(header::HOST).iter();
    let (Some(host), None) = (values.next(), values.next()) else {
        return match req.headers().contains_key(header::HOST) {
            true => Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "a request carries one Host header",
            )),
            false => Ok(()),
        };
    };
    let host = host.to_str().unwrap_or_default();
    let name = host_name(host);
    let loopback_name = name == "localhost" || name.ends_with(".localhost");
    if loopback_name || name.parse::<IpAddr>().is_ok() || allowed.contains(&name) {
        return Ok(());
    }
    Err(Refusal::new(
        StatusCode::FORBIDDEN,
        format!(
            "host {name:?} is not allowed: this server only answers requests for localhost or \
             an IP address; allow more names with Server::allow_host"
        ),
    )
    .because("host"))
}

/// The name in a `Host` value, lowercased, without port, brackets or final dot:
/// `[::1]:9000` is `::1`, `Example.COM.:80` is `example.com`.
pub(crate) fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Checks the `Origin` header against the allowed origins; a cross-site page gets 403, a
/// request with two `Origin` headers 400 (a browser sends one).
pub(crate) fn check_origin<B>(req: &http::Request<B>, origins: &Origins) -> Result<(), Refusal> {
    let mut values = req.headers().get_all(header::ORIGIN).iter();
    let Some(origin) = values.next() else {
        return Ok(()); // not a browser: nothing to protect against
    };
    if values.next().is_some() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "a request carries at most one Origin header",
        ));
    }
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
        Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!("origin {origin} is not allowed to open websockets here"),
        )
        .because("origin"))
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
) -> Result<Option<&'static str>, Refusal> {
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
        None => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!(
                "no acceptable subprotocol: this endpoint speaks {}; the client offered {}",
                supported.join(", "),
                if offered.is_empty() {
                    "none".to_owned()
                } else {
                    offered.join(", ")
                }
            ),
        )
        .because("protocol")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_is_the_rfcs() {
        // RFC 6455 §1.3's example.
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

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
    fn hosts_on_loopback_are_loopback_names_or_addresses() {
        let ok = |host: &str, hosts: &Hosts, over_loopback: bool| {
            check_host(&request(&[("host", host)]), hosts, over_loopback).is_ok()
        };
        let auto = Hosts::Auto;
        for host in [
            "localhost",
            "localhost:9000",
            "LOCALHOST.",
            "app.localhost:1",
            "127.0.0.1:9000",
            "[::1]:9000",
            "[::1]",
            "10.1.2.3",
        ] {
            assert!(ok(host, &auto, true), "{host}");
        }
        for host in ["evil.example:9000", "localhost.evil.example", "evil", ""] {
            assert!(!ok(host, &auto, true), "{host}");
            assert!(ok(host, &auto, false), "not over loopback: {host}");
            assert!(ok(host, &Hosts::Any, true), "{host}");
        }
        let list = Hosts::List(vec!["chat.example.com".into()]);
        assert!(ok("Chat.Example.COM:8443", &list, true));
        assert!(ok("chat.example.com", &list, false));
        assert!(
            !ok("evil.example", &list, false),
            "a list applies everywhere"
        );
        // No Host at all: not a browser.
        assert!(check_host(&request(&[]), &auto, true).is_ok());
        let two = request(&[("host", "localhost"), ("host", "evil.example")]);
        assert_eq!(
            check_host(&two, &auto, true).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(host_name("[::1]:9000"), "::1");
        assert_eq!(host_name("Example.COM.:80"), "example.com");
    }

    #[test]
    fn two_origins_are_refused() {
        let two = request(&[
            ("host", "example.com"),
            ("origin", "https://example.com"),
            ("origin", "https://evil.example"),
        ]);
        let refusal = check_origin(&two, &Origins::Any).unwrap_err();
        assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
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
