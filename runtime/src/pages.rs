//! Plain HTTP pages: the pages registered with `Server::page`, and the dev console served on
//! an endpoint's path.

use std::collections::HashMap;

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::checks;
use crate::config::Origins;
use crate::percent;
use crate::response::{self, Body, Refusal};

/// The static pages of a server, by path.
#[derive(Default)]
pub(crate) struct Pages(HashMap<&'static str, String>);

impl Pages {
    /// Adds a page; `false` if the path has one already.
    pub(crate) fn insert(&mut self, path: &'static str, html: String) -> bool {
        self.0.insert(path, html).is_none()
    }

    pub(crate) fn contains(&self, path: &str) -> bool {
        self.0.contains_key(path)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn paths(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.keys().copied()
    }

    /// The page at `path`, compared percent-decoded as endpoint paths are (`/%69ndex` is
    /// `/index`).
    pub(crate) fn find(&self, path: &str) -> Option<&str> {
        if self.0.is_empty() {
            return None;
        }
        let page = match self.0.get(path) {
            Some(page) => page,
            None if path.contains('%') => self.0.get(percent::decode(path)?.as_str())?,
            None => return None,
        };
        Some(page)
    }
}

/// A page registered with `Server::page`: `GET` and `HEAD` only.
pub(crate) fn page(method: &Method, page: &str) -> Result<Response<Body>, Refusal> {
    if matches!(*method, Method::GET | Method::HEAD) {
        return Ok(response::html(page));
    }
    Err(Refusal::method_not_allowed(
        "GET, HEAD",
        "this page only answers GET and HEAD requests",
    ))
}

/// Where the server serves its JavaScript client (`Server::client_module`).
pub(crate) const CLIENT_PATH: &str = "/_wsock/client.js";

/// Where the server serves its contract's AsyncAPI document, with the dev console on
/// (`contract` feature).
pub(crate) const CONTRACT_PATH: &str = "/_wsock/asyncapi.json";

/// The contract's AsyncAPI document, made when the server started.
pub(crate) fn contract<B>(
    req: &http::Request<B>,
    document: &str,
) -> Result<Response<Body>, Refusal> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Err(Refusal::method_not_allowed(
            "GET, HEAD",
            "the contract only answers GET and HEAD requests",
        ));
    }
    let mut response = response::plain(StatusCode::OK, document);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// The client, as `client/` builds it (CI checks that this file is that build).
const CLIENT: &str = include_str!("client.js");

/// The client's `ETag`: a hash of its text, made at compile time.
const CLIENT_TAG: u64 = {
    // FNV-1a: any change to the text changes the tag.
    let bytes = CLIENT.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash = (hash ^ bytes[i] as u64).wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
};

/// The JavaScript client, an ES module; `304 Not Modified` when the browser has it already.
pub(crate) fn client<B>(req: &http::Request<B>) -> Result<Response<Body>, Refusal> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Err(Refusal::method_not_allowed(
            "GET, HEAD",
            "this script only answers GET and HEAD requests",
        ));
    }
    let tag = format!("\"{CLIENT_TAG:016x}\"");
    let cached = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let (status, body) = match cached {
        true => (StatusCode::NOT_MODIFIED, Body::new()),
        false => (StatusCode::OK, CLIENT.to_owned()),
    };
    // Closed after the answer, as every answer before an upgrade.
    let mut response = response::plain(status, body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&tag).expect("hex digits in quotes"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

const CONSOLE: &str = include_str!("console.html");

/// The dev console for one endpoint: a self-contained page that connects back to the URL it
/// was loaded from.
///
/// It connects on its own only when the browser says the user opened it (typed, bookmarked:
/// `Sec-Fetch-Site: none`) or came from this same site. Opened from a link or a redirect on
/// another site, it waits for a click on Connect: otherwise that site could make the
/// visitor's browser open a connection, with their cookies and a query string of its
/// choosing, from the server's own origin, which the origin check lets through.
pub(crate) fn console<B>(
    req: &http::Request<B>,
    name: &str,
    path: &str,
    protocols: &[&str],
    contract: bool,
) -> Response<Body> {
    let invited = matches!(
        req.headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok()),
        Some("none" | "same-origin")
    );
    let page = CONSOLE
        .replace("{{NAME}}", &escape(name))
        .replace("{{PATH}}", &escape(path))
        .replace("{{PROTOCOLS}}", &escape(&protocols.join(",")))
        .replace("{{AUTOCONNECT}}", if invited { "true" } else { "false" })
        .replace(
            "{{CONTRACT}}",
            match contract {
                true => " What every endpoint takes and sends: the <a href=\"/_wsock/asyncapi.json\">AsyncAPI document</a>.",
                false => "",
            },
        );
    let mut response = response::html(page);
    // Inline script and style, WebSockets and its own origin (the probe), its own empty icon,
    // no other network access, and no framing by other pages (clickjacking).
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; \
             img-src data:; connect-src 'self' ws: wss:; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The header that marks the console's probe (`X-Wsock-Console: probe`), and its answer.
const PROBE: &str = "x-wsock-console";
/// The subprotocol the console offered, on its probe: `Sec-` headers are the browser's alone.
const PROBE_PROTOCOL: &str = "x-wsock-protocol";

/// Whether `req` is the probe of the dev console or of wsock's client: after a WebSocket
/// failed before it opened, the page asks again with a plain `GET` of the same URL, because
/// browsers hide a refused upgrade's answer from page code. The probe gets the status and body
/// the upgrade got (see `dispatch`); the caller checks that the console or the client module
/// is on.
///
/// Only the console's own page may ask. A page of another site cannot send the header
/// without a CORS preflight, which wsock never grants, and a browser says where a request
/// comes from: `Sec-Fetch-Site` must be `same-origin` when present, and `Origin` (browsers
/// send it on cross-origin requests) must name this host. Clients that are not browsers may
/// probe too, and learn nothing an upgrade request would not tell them.
///
/// For a probe, the subprotocol the console offered moves to `Sec-WebSocket-Protocol`, so
/// that the probe is checked as the upgrade was.
pub(crate) fn take_probe<B>(req: &mut http::Request<B>) -> bool {
    let headers = req.headers();
    let asked = headers
        .get(PROBE)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"probe"));
    let same_origin = matches!(
        headers.get("sec-fetch-site").map(HeaderValue::as_bytes),
        None | Some(b"same-origin")
    );
    let probe = asked
        && same_origin
        && req.method() == Method::GET
        && checks::check_origin(req, &Origins::SameHost).is_ok();
    if probe {
        let headers = req.headers_mut();
        headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
        let offered: Vec<HeaderValue> = headers.get_all(PROBE_PROTOCOL).iter().cloned().collect();
        for protocol in offered {
            headers.append(header::SEC_WEBSOCKET_PROTOCOL, protocol);
        }
    }
    probe
}

/// The answer to the console's probe: what the upgrade was answered (a refusal's status and
/// body), marked as the probe's answer, or, when the upgrade would be accepted now, 200 with
/// a note saying so.
pub(crate) fn probe_answer(answer: Option<Response<Body>>) -> Response<Body> {
    let mut response = answer.unwrap_or_else(|| {
        response::plain(
            StatusCode::OK,
            "the upgrade would be accepted: the server did not refuse it\n",
        )
    });
    let headers = response.headers_mut();
    headers.insert(PROBE, HeaderValue::from_static("probe"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Escapes text for an HTML attribute or element.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_names_its_endpoint_and_escapes_it() {
        let req = http::Request::new(());
        let response = console(
            &req,
            "chat",
            "/rooms/{room}&<x>",
            &["chat.v1", "chat.v2"],
            false,
        );
        assert!(
            response
                .headers()
                .contains_key(header::CONTENT_SECURITY_POLICY)
        );
        let page = response.into_body();
        assert!(page.contains("<code>chat</code> at <code>/rooms/{room}&amp;&lt;x&gt;</code>"));
        assert!(page.contains(r#"data-protocols="chat.v1,chat.v2""#));
        assert!(!page.contains("{{"), "every placeholder is filled");
        assert!(page.contains(r#"data-autoconnect="false""#), "{page}");
    }

    #[test]
    fn the_console_connects_by_itself_only_when_the_user_opened_it() {
        let opened = |site: Option<&str>| {
            let mut req = http::Request::builder();
            if let Some(site) = site {
                req = req.header("sec-fetch-site", site);
            }
            let page = console(&req.body(()).unwrap(), "e", "/", &[], false).into_body();
            page.contains(r#"data-autoconnect="true""#)
        };
        assert!(opened(Some("none")), "typed or bookmarked");
        assert!(opened(Some("same-origin")), "a link on this site");
        assert!(!opened(Some("cross-site")), "a link or redirect elsewhere");
        assert!(!opened(Some("same-site")), "a sibling subdomain");
        assert!(!opened(None), "a browser that does not say");
    }
}
