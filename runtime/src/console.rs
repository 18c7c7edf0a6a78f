//! Plain HTTP pages: the dev console served on an endpoint's path, and the pages registered
//! with `Server::page`.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::upgrade::{self, Body};

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
        .replace("{{AUTOCONNECT}}", if invited { "true" } else { "false" });
    let mut response = html(page);
    // Inline script and style, WebSockets, its own empty icon, no other network access, and
    // no framing by other pages (clickjacking).
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             img-src data:; connect-src ws: wss:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// 200 with an HTML page, not cached; the connection closes after it.
pub(crate) fn html(page: impl Into<String>) -> Response<Body> {
    // A plain response (which closes the connection after it), typed as HTML.
    let mut response = upgrade::plain(StatusCode::OK, page);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
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
        let response = console(&req, "chat", "/rooms/{room}&<x>", &["chat.v1", "chat.v2"]);
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
            let page = console(&req.body(()).unwrap(), "e", "/", &[]).into_body();
            page.contains(r#"data-autoconnect="true""#)
        };
        assert!(opened(Some("none")), "typed or bookmarked");
        assert!(opened(Some("same-origin")), "a link on this site");
        assert!(!opened(Some("cross-site")), "a link or redirect elsewhere");
        assert!(!opened(Some("same-site")), "a sibling subdomain");
        assert!(!opened(None), "a browser that does not say");
    }
}
