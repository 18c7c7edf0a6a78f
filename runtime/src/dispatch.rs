//! One HTTP request, answered: a page, a refusal, or the 101 that accepts it together with the
//! connection to run once the socket is upgraded.
//!
//! The built-in server, the tower `Service` and the test kit all call [`dispatch`]; what
//! they do around it is only how the request arrived and where the upgraded socket comes from.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use http::{Method, Response, StatusCode, header};

use crate::app::App;
use crate::checks;
use crate::codec::deflate::{self, Deflate};
use crate::config::{Compression, DEFAULT_MAX_MESSAGE_SIZE};
use crate::endpoint::{Accept, Prepared};
use crate::error::panic_message;
use crate::mailbox::Mailbox;
use crate::pages;
use crate::ratelimit::RateLimit;
use crate::registry::Handshake;
use crate::request::{Head, Reject, Request};
use crate::response::{self, Body, Refusal};
use crate::resume::Resume;
use crate::router::BadPath;
use crate::stats;

/// Where a request came from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer {
    /// The client's address (`0.0.0.0:0` when the server in front does not say).
    pub(crate) addr: SocketAddr,
    /// The connection came in over a loopback address, where only loopback host names are
    /// expected (see `Server::allow_host`).
    pub(crate) over_loopback: bool,
}

/// What to answer.
pub(crate) enum Dispatched {
    /// A page or the dev console, sent as it is.
    Page(Response<Body>),
    /// A refusal: no WebSocket.
    Refused(Refusal),
    /// The 101 to send, and the connection to run on the upgraded socket.
    Upgrade(Response<Body>, Accepted),
}

/// An accepted upgrade: the endpoint's code and what its connection loop needs to know.
pub(crate) struct Accepted {
    pub(crate) prepared: Prepared,
    /// permessage-deflate, when the client offered it and the server and endpoint allow it.
    pub(crate) deflate: Option<Deflate>,
    pub(crate) endpoint: &'static str,
    pub(crate) peer: SocketAddr,
    pub(crate) max_message_size: usize,
    pub(crate) max_frame_size: usize,
    /// Neither the endpoint nor the server set the message limit: the endpoint's inbound
    /// type may (`FromMessage::MAX_MESSAGE_SIZE`, which the connection's code says).
    pub(crate) limit_by_type: bool,
    /// The endpoint takes the server's heartbeats (`heartbeat = false` says not).
    pub(crate) heartbeat: bool,
}

/// Answers one request: admits it, checks it, finds the endpoint, and runs its extractors.
///
/// Every way in (the accept loop, the tower `Service`, the test kit, the fuzz harness) comes
/// here with its request counted as a `handshake`, so one rule admits them all: while the
/// open WebSocket connections and the handshakes under way reach `max_connections`, every
/// request is answered 503.
///
/// The probe of the dev console or of the client (see `pages::take_probe`) comes here too and
/// goes the same way, but is never upgraded: it is answered with the refusal the upgrade got,
/// or a note that it would be accepted.
pub(crate) async fn dispatch<B>(
    app: &Arc<App>,
    mut req: http::Request<B>,
    peer: Peer,
    handshake: &Handshake,
) -> Dispatched {
    let started = stats::Started::now();
    let config = &app.config;
    let probe = (config.dev_console || config.client_module) && pages::take_probe(&mut req);
    let dispatched = if app.is_full(handshake.load()) {
        Dispatched::Refused(Refusal::busy())
    } else {
        let path = req.uri().path().to_owned();
        match checked(app, req, peer, probe).await {
            Ok(dispatched) => dispatched,
            Err(refusal) => {
                log_refusal(&refusal, peer, &path, probe);
                Dispatched::Refused(refusal)
            }
        }
    };
    match &dispatched {
        Dispatched::Refused(refusal) => {
            if refusal.status() == StatusCode::SERVICE_UNAVAILABLE && refusal.kind() == "busy" {
                log_busy(app.config.max_connections, peer);
            }
            stats::handshake(started, refusal.status().as_u16(), refusal.kind());
        }
        Dispatched::Upgrade(..) => stats::handshake(started, 101, "accepted"),
        Dispatched::Page(_) => {}
    }
    match dispatched {
        Dispatched::Refused(refusal) if probe => {
            Dispatched::Page(pages::probe_answer(Some(refusal.into_response())))
        }
        dispatched => dispatched,
    }
}

/// One line per refusal at the default level, with the reason in words; a flood of them
/// (a scanner, a misconfigured client retrying) logs one line a second with the count of
/// the others.
fn log_refusal(refusal: &Refusal, peer: Peer, path: &str, probe: bool) {
    static REFUSALS: RateLimit = RateLimit::new(Duration::from_secs(1));
    let Some(skipped) = REFUSALS.check() else {
        return;
    };
    let path = path.get(..path.len().min(200)).unwrap_or("(path)");
    let probe = if probe { " (the client's probe)" } else { "" };
    match skipped {
        0 => tracing::info!(peer = %peer.addr, path, "refused {refusal}{probe}"),
        skipped => tracing::info!(
            peer = %peer.addr,
            path,
            "refused {refusal}{probe} ({skipped} more refusals since the last such line)"
        ),
    }
}

/// 503 at `max_connections`, rate-limited as the other refusals.
fn log_busy(limit: usize, peer: Peer) {
    static BUSY: RateLimit = RateLimit::new(Duration::from_secs(1));
    match BUSY.check() {
        None => {}
        Some(0) => tracing::warn!(peer = %peer.addr, limit, "too many connections: 503"),
        Some(skipped) => tracing::warn!(
            peer = %peer.addr,
            limit,
            "too many connections: 503 ({skipped} more not logged)"
        ),
    }
}

/// Checks a request and runs the endpoint's extractors. A `probe` is checked as the upgrade
/// it stands for (it cannot carry the upgrade's own headers) and gets its answer as a page.
async fn checked<B>(
    app: &Arc<App>,
    req: http::Request<B>,
    peer: Peer,
    probe: bool,
) -> Result<Dispatched, Refusal> {
    let config = &app.config;
    checks::check_host(&req, &config.hosts, peer.over_loopback)?;
    let websocket = checks::asks_for_websocket(&req);
    if !websocket && let Some(page) = app.pages.find(req.uri().path()) {
        return pages::page(req.method(), page).map(Dispatched::Page);
    }
    #[cfg(feature = "prometheus")]
    if !websocket
        && let Some((path, prometheus)) = &app.metrics
        && req.uri().path() == *path
    {
        return prometheus.page(req.method()).map(Dispatched::Page);
    }
    if !websocket
        && (config.client_module || config.dev_console)
        && req.uri().path() == pages::CLIENT_PATH
    {
        return pages::client(&req).map(Dispatched::Page);
    }
    if !websocket
        && let Some(document) = &app.contract
        && req.uri().path() == pages::CONTRACT_PATH
    {
        return pages::contract(&req, document).map(Dispatched::Page);
    }
    let (route, params) = match app.router.find(req.uri().path()) {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Err(
                Refusal::new(StatusCode::NOT_FOUND, "no websocket endpoint at this path")
                    .because("not_found"),
            );
        }
        Err(BadPath) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "the path's %-escapes do not decode to UTF-8",
            )
            .because("bad_path"));
        }
    };
    #[cfg(feature = "prometheus")]
    if !websocket && route.name == crate::operations::NAME {
        let request = Request::new(Head {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
            peer: peer.addr,
            params,
            protocol: None,
            context: Arc::clone(&app.context),
        });
        return crate::operations::page(&request).map(Dispatched::Page);
    }
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD);
    if !websocket && read_only && config.dev_console && !probe {
        let console = pages::console(
            &req,
            route.name,
            route.path,
            route.protocols,
            app.contract.is_some(),
        );
        return Ok(Dispatched::Page(console));
    }
    let accept_key = match probe {
        false => checks::check(&req, websocket)?,
        true => String::new(),
    };
    checks::check_origin(&req, &config.origins)?;
    let protocol = checks::negotiate_protocol(&req, route.protocols)?;
    let compression = if route.compress {
        config.compression
    } else {
        Compression::off()
    };
    let offers = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|value| value.to_str().ok());
    let (deflate, extensions) = deflate::negotiate(offers, &compression).unzip();
    if app.registry.shutdown().is_triggered() {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        )
        .because("shutting_down"));
    }
    // Where a resuming client was in its topics: read before any extractor runs.
    let resume = match route.resume {
        false => None,
        true => Some(Box::new(Resume::from_query(req.uri().query()).map_err(
            |reason| Refusal::new(StatusCode::BAD_REQUEST, reason).because("resume"),
        )?)),
    };
    // Where the broker keeps the topics' history, what the client missed is looked up now,
    // so that the endpoint's `subscribe` finds it here.
    if let Some(resume) = &resume {
        app.context.topics.prefetch(resume).await;
    }
    let (parts, _body) = req.into_parts();
    let request = Request::new(Head {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        peer: peer.addr,
        params,
        protocol,
        context: Arc::clone(&app.context),
    });
    let mailbox = Arc::new(Mailbox::new(route.name, config.queue_capacity).resuming(resume));
    let accepting = (route.accept)(Accept::new(request, mailbox));
    // A panic in an extractor refuses this client with 500; the server goes on.
    let prepared = match AssertUnwindSafe(accepting).catch_unwind().await {
        Ok(Ok(prepared)) => prepared,
        Ok(Err(reject)) => return Err(refused(reject)),
        Err(panic) => {
            let panic = panic_message(&*panic);
            tracing::error!(
                endpoint = route.name,
                panic,
                "extracting the parameters panicked"
            );
            return Err(
                Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").because("panic"),
            );
        }
    };
    if probe {
        // Accepted: the endpoint's code is dropped unrun.
        drop(prepared);
        return Ok(Dispatched::Page(pages::probe_answer(None)));
    }
    // The endpoint's own limit, or the server's, or (when neither is set) its inbound type's,
    // or the default.
    let max_message_size = route.max_message_size.or(config.max_message_size);
    let accepted = Accepted {
        prepared,
        deflate,
        endpoint: route.name,
        peer: peer.addr,
        max_message_size: max_message_size.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE),
        // An endpoint's own message limit also bounds (or lifts) its frame limit.
        max_frame_size: route.max_message_size.unwrap_or(config.max_frame_size),
        limit_by_type: max_message_size.is_none(),
        heartbeat: route.heartbeat,
    };
    Ok(Dispatched::Upgrade(
        response::switching(&accept_key, protocol, extensions),
        accepted,
    ))
}

/// A guard's refusal; without a body, the status says it all.
fn refused(reject: Reject) -> Refusal {
    let reason = if reject.body().is_empty() {
        reject.status().to_string()
    } else {
        reject.body().to_owned()
    };
    Refusal::new(reject.status(), reason).because("rejected")
}

impl Dispatched {
    /// The response to send; an accepted upgrade is handed to `start` first, which runs the
    /// connection once the socket is upgraded.
    pub(crate) fn respond(self, start: impl FnOnce(Accepted)) -> Response<Body> {
        match self {
            Dispatched::Page(page) => page,
            Dispatched::Refused(refusal) => refusal.into_response(),
            Dispatched::Upgrade(switching, accepted) => {
                start(accepted);
                switching
            }
        }
    }
}
