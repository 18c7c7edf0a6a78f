//! Plain HTTP pages: the dev console served on an endpoint's path, and the pages registered
//! with `Server::page`.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::upgrade::Body;

const CONSOLE: &str = include_str!("console.html");

/// The dev console for one endpoint: a self-contained page that connects back to the URL it
/// was loaded from.
pub(crate) fn console(name: &str, path: &str, protocols: &[&str]) -> Response<Body> {
    let page = CONSOLE
        .replace("{{NAME}}", &escape(name))
        .replace("{{PATH}}", &escape(path))
        .replace("{{PROTOCOLS}}", &escape(&protocols.join(",")));
    let mut response = html(page);
    // Inline script and style, WebSockets, and no other network access.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src ws: wss:; base-uri 'none'; form-action 'none'",
        ),
    );
    response
}

/// 200 with an HTML page, not cached; the connection closes after it.
pub(crate) fn html(page: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(page.into());
    *response.status_mut() = StatusCode::OK;
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
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
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
        let response = console("chat", "/rooms/{room}&<x>", &["chat.v1", "chat.v2"]);
        assert!(
            response
                .headers()
                .contains_key(header::CONTENT_SECURITY_POLICY)
        );
        let page = response.into_body();
        assert!(page.contains("<code>chat</code> at <code>/rooms/{room}&amp;&lt;x&gt;</code>"));
        assert!(page.contains(r#"data-protocols="chat.v1,chat.v2""#));
        assert!(!page.contains("{{"), "every placeholder is filled");
    }
}
