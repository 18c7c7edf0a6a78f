//! Feature `prometheus`: the live operations page (`Server::operations`), a self-contained
//! page and, at the same path, a WebSocket that sends it a JSON snapshot every second.
//!
//! The snapshot is read from the Prometheus recorder's state (connections per endpoint,
//! messages in and out, closes by code, the broker's link) and from `Topics::counts()` (the
//! topics of this node with their subscriber counts, the 50 largest). The page computes the
//! rates and draws the charts itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::endpoint::{Accept, Accepting};
use crate::out::Out;
use crate::prometheus::Prometheus;
use crate::request::{Reject, Request};
use crate::response::{self, Body, Refusal};
use crate::router::Route;
use crate::stats::names;
use crate::topics::Topics;

/// The name of the page's own WebSocket route, as logs and metrics show it; left out of the
/// numbers the page shows.
pub(crate) const NAME: &str = "wsock_operations";

/// How many topics a snapshot lists at most (the largest first).
pub const TOP_TOPICS: usize = 50;

/// How often the page gets a snapshot.
const EVERY: Duration = Duration::from_secs(1);

/// Who may open the operations page ([`Server::operations`](crate::Server::operations)):
/// the holder of a token, or whoever a guard of the application lets in.
#[derive(Clone)]
pub struct Access(Rule);

/// An application's check of a request.
type Guard = Arc<dyn Fn(&Request) -> Result<(), Reject> + Send + Sync>;

#[derive(Clone)]
enum Rule {
    Token(Arc<str>),
    Guard(Guard),
}

impl Access {
    /// Whoever gives `token`: as `?token=` in the page's URL (the page passes it on to its
    /// WebSocket) or as `Authorization: Bearer <token>`. Compared in constant time.
    ///
    /// # Panics
    /// If the token is shorter than 16 bytes: make it long and random.
    pub fn token(token: impl Into<String>) -> Access {
        let token: String = token.into();
        assert!(
            token.len() >= 16,
            "the operations page's token must be at least 16 bytes long"
        );
        Access(Rule::Token(token.into()))
    }

    /// Whoever `guard` accepts: it sees the page's request and its WebSocket's upgrade
    /// request (cookies, session, headers) and refuses with the [`Reject`] it returns.
    pub fn guard(guard: impl Fn(&Request) -> Result<(), Reject> + Send + Sync + 'static) -> Access {
        Access(Rule::Guard(Arc::new(guard)))
    }

    /// Checks a request: `Err` with the status and reason of the refusal.
    pub(crate) fn check(&self, req: &Request) -> Result<(), Reject> {
        match &self.0 {
            Rule::Guard(guard) => guard(req),
            Rule::Token(token) => {
                let given = req.query_param("token").or_else(|| {
                    req.header("authorization")
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .map(str::to_owned)
                });
                match given {
                    None => Err(Reject::unauthorized().with_body(
                        "the operations page needs its token: add ?token=<token> to the URL",
                    )),
                    Some(given) if same(given.as_bytes(), token.as_bytes()) => Ok(()),
                    Some(_) => {
                        Err(Reject::forbidden().with_body("wrong token for the operations page"))
                    }
                }
            }
        }
    }
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Rule::Token(_) => f.write_str("Access::token(..)"),
            Rule::Guard(_) => f.write_str("Access::guard(..)"),
        }
    }
}

/// Compares two byte strings in time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// What the page and its WebSocket need, kept in the server's state.
pub(crate) struct Operations {
    pub(crate) path: &'static str,
    pub(crate) prometheus: Prometheus,
    pub(crate) access: Access,
}

/// The route of the page's WebSocket, at the page's path.
pub(crate) fn route(path: &'static str) -> Route {
    Route {
        name: NAME,
        path,
        accept,
        protocols: &[],
        max_message_size: Some(1024),
        compress: true,
        heartbeat: true,
        resume: false,
    }
}

fn accept(cx: Accept) -> Accepting {
    Box::pin(async move {
        let Some(operations) = cx.request().state::<Operations>() else {
            return Err(Reject::internal_error());
        };
        operations.access.check(cx.request())?;
        let topics = cx.request().topics().clone();
        let out: Out<String> = Out::new(Arc::clone(cx.mailbox()));
        let mut inbox = cx.inbox();
        Ok(cx.connection(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let text = snapshot(&operations.prometheus.render(), &topics).to_string();
                        // The page reads as fast as it is sent; a page that does not is
                        // closed with 1008 when its queue is full, as any client.
                        out.write(text);
                    }
                    // The page sends nothing; its messages are ignored. `None`: closing.
                    message = inbox.recv() => if message.is_none() {
                        break;
                    },
                }
            }
        }))
    })
}

/// The page, to a `GET` that passes the access rule.
pub(crate) fn page(request: &Request) -> Result<Response<Body>, Refusal> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return Err(Refusal::method_not_allowed(
            "GET, HEAD",
            "the operations page only answers GET and HEAD requests",
        ));
    }
    let Some(operations) = request.state::<Operations>() else {
        return Err(Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
        ));
    };
    if let Err(reject) = operations.access.check(request) {
        return Err(Refusal::new(reject.status(), reject.body().to_owned()).because("rejected"));
    }
    let mut response = response::html(PAGE.replace("{{PATH}}", operations.path));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             img-src data:; connect-src 'self' ws: wss:; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The token is in the URL: no page it links to learns it.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

const PAGE: &str = include_str!("operations.html");

/// One snapshot: the totals the recorder holds (the page's own route left out) and the
/// node's topics.
///
/// ```json
/// {"endpoints": {"chat": 3}, "messages_in": 120, "messages_out": 480,
///  "bytes_in": 4100, "bytes_out": 16000, "closes": {"1000": 2, "1008": 1},
///  "topics": [["room-1", 3]], "topic_count": 1,
///  "broker": {"up": true, "publishes": 12, "errors": 0}}
/// ```
pub(crate) fn snapshot(rendered: &str, topics: &Topics) -> Value {
    let mut endpoints: BTreeMap<String, f64> = BTreeMap::new();
    let mut closes: BTreeMap<String, f64> = BTreeMap::new();
    let (mut messages_in, mut messages_out, mut bytes_in, mut bytes_out) = (0.0, 0.0, 0.0, 0.0);
    let (mut up, mut publishes, mut errors) = (None, 0.0, 0.0);
    for line in rendered.lines() {
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        let endpoint = label(labels, "endpoint");
        if endpoint == Some(NAME) {
            continue;
        }
        match name {
            names::CONNECTIONS_OPEN => {
                *endpoints
                    .entry(endpoint.unwrap_or("").to_owned())
                    .or_default() += value;
            }
            names::MESSAGES_RECEIVED => messages_in += value,
            names::MESSAGES_SENT => messages_out += value,
            names::BYTES_RECEIVED => bytes_in += value,
            names::BYTES_SENT => bytes_out += value,
            names::CLOSES => {
                *closes
                    .entry(label(labels, "code").unwrap_or("").to_owned())
                    .or_default() += value;
            }
            names::BROKER_UP => up = Some(value > 0.0),
            names::BROKER_PUBLISHES => publishes += value,
            names::BROKER_ERRORS => errors += value,
            _ => {}
        }
    }
    let mut counts = topics.counts();
    let topic_count = counts.len();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts.truncate(TOP_TOPICS);
    json!({
        "endpoints": endpoints,
        "messages_in": messages_in,
        "messages_out": messages_out,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "closes": closes,
        "topics": counts,
        "topic_count": topic_count,
        "broker": {"up": up, "publishes": publishes, "errors": errors},
    })
}

/// A sample line of Prometheus's text format: name, labels (between the braces) and value.
fn sample(line: &str) -> Option<(&str, &str, f64)> {
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    match series.split_once('{') {
        Some((name, rest)) => Some((name, rest.strip_suffix('}')?, value)),
        None => Some((series, "", value)),
    }
}

/// The value of label `key` (wsock's label values hold no quotes or commas).
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split("\",").find_map(|pair| {
        let (k, v) = pair.split_once("=\"")?;
        (k.trim() == key).then(|| v.trim_end_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_and_labels_are_read() {
        let line = r#"wsock_closes_total{endpoint="chat",code="1008",side="server"} 3"#;
        let (name, labels, value) = sample(line).unwrap();
        assert_eq!(name, "wsock_closes_total");
        assert_eq!(value, 3.0);
        assert_eq!(label(labels, "code"), Some("1008"));
        assert_eq!(label(labels, "side"), Some("server"));
        assert_eq!(label(labels, "endpoint"), Some("chat"));
        assert_eq!(
            sample("wsock_broker_up 1"),
            Some(("wsock_broker_up", "", 1.0))
        );
        assert_eq!(sample("# HELP x y"), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abcdefgh", b"abcdefgh"));
        assert!(!same(b"abcdefgh", b"abcdefgi"));
        assert!(!same(b"abcdefgh", b"abcdefg"));
        assert!(!same(b"", b"a"));
    }
}
