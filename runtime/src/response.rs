//! The HTTP answers before the upgrade: typed refusals, pages and the 101 that accepts.
//!
//! A refusal is a value ([`Refusal`]) until it is sent, so that the built-in server, the
//! tower `Service` and the test kit all see, log and report the same status and reason.

use std::borrow::Cow;
use std::fmt;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

/// The body of every answer wsock gives before the upgrade: short text or a page.
pub type Body = String;

/// An upgrade request refused with an HTTP status and a plain-text reason, plus the headers
/// its status calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    status: StatusCode,
    reason: Cow<'static, str>,
    extra: Extra,
    /// Why, in one word, for metrics (`origin`, `host`, ..); empty: the status's word.
    kind: &'static str,
}

/// Headers that go with some refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extra {
    None,
    /// 405: the methods the resource answers.
    Allow(&'static str),
    /// 426: the protocol and version to upgrade to.
    UpgradeRequired,
}

impl Refusal {
    /// A refusal with a reason, sent as the body (with a final newline).
    pub(crate) fn new(status: StatusCode, reason: impl Into<Cow<'static, str>>) -> Self {
        Refusal {
            status,
            reason: reason.into(),
            extra: Extra::None,
            kind: "",
        }
    }

    /// The same refusal, with its reason in one word for metrics (`origin`, `host`, ..).
    pub(crate) fn because(self, kind: &'static str) -> Self {
        Refusal { kind, ..self }
    }

    /// Why, in one word: the word given with [`because`](Self::because), or the status's.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn kind(&self) -> &'static str {
        if !self.kind.is_empty() {
            return self.kind;
        }
        match self.status {
            StatusCode::METHOD_NOT_ALLOWED => "method",
            StatusCode::UPGRADE_REQUIRED => "not_websocket",
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::INTERNAL_SERVER_ERROR => "internal",
            StatusCode::SERVICE_UNAVAILABLE => "busy",
            _ => "rejected",
        }
    }

    /// 405, saying which methods the resource answers.
    pub(crate) fn method_not_allowed(allow: &'static str, reason: &'static str) -> Self {
        Refusal {
            extra: Extra::Allow(allow),
            ..Refusal::new(StatusCode::METHOD_NOT_ALLOWED, reason)
        }
    }

    /// 426, naming the protocol and version to upgrade to.
    pub(crate) fn upgrade_required(reason: &'static str) -> Self {
        Refusal {
            extra: Extra::UpgradeRequired,
            ..Refusal::new(StatusCode::UPGRADE_REQUIRED, reason)
        }
    }

    /// 503: over `max_connections`.
    pub(crate) fn busy() -> Self {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections: try again later",
        )
        .because("busy")
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The response to send; the connection closes after it.
    pub(crate) fn into_response(self) -> Response<Body> {
        let mut response = plain(self.status, format!("{}\n", self.reason));
        let headers = response.headers_mut();
        match self.extra {
            Extra::None => {}
            Extra::Allow(methods) => {
                headers.insert(header::ALLOW, HeaderValue::from_static(methods));
            }
            Extra::UpgradeRequired => {
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(
                    header::CONNECTION,
                    HeaderValue::from_static("Upgrade, close"),
                );
                headers.insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
        }
        response
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.reason)
    }
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

/// 200 with an HTML page, not cached; the connection closes after it.
pub(crate) fn html(page: impl Into<String>) -> Response<Body> {
    let mut response = plain(StatusCode::OK, page);
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

/// 101: the handshake's answer, with the `Sec-WebSocket-Accept` value, the chosen
/// subprotocol and the accepted extensions.
pub(crate) fn switching(
    accept: &str,
    protocol: Option<&'static str>,
    extensions: Option<String>,
) -> Response<Body> {
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
    if let Some(extensions) = extensions {
        headers.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_str(&extensions).expect("made of header-safe text"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_their_headers() {
        let response = Refusal::method_not_allowed("GET", "only GET").into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET");
        assert_eq!(response.body(), "only GET\n");

        let response = Refusal::upgrade_required("speak websocket").into_response();
        assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(response.headers()[header::SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(response.headers()[header::CONNECTION], "Upgrade, close");

        let busy = Refusal::busy();
        assert_eq!(
            busy.to_string(),
            "503 Service Unavailable: too many connections: try again later"
        );
    }
}
