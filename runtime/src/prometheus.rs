//! Feature `prometheus`: a Prometheus recorder for what the server counts, and the page that
//! shows it (`Server::metrics`).

use http::header::{self, HeaderValue};
use http::{Method, Response};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::response::{self, Body, Refusal};
use crate::stats::{self, names};

/// The Prometheus recorder: installed once per process, it receives every metric recorded
/// through the `metrics` facade (wsock's and the application's own) and renders them in
/// Prometheus's text format. Serve it with [`Server::metrics`](crate::Server::metrics), or
/// from any route with [`render`](Self::render).
///
/// ```no_run
/// # use wsock::prelude::*;
/// # #[websocket("/echo")] fn echo() {}
/// # async fn run() -> std::io::Result<()> {
/// let prometheus = wsock::Prometheus::install().expect("the process's first recorder");
/// Server::new().route(echo).metrics("/metrics", prometheus).serve("0.0.0.0:9000").await
/// # }
/// ```
#[derive(Clone)]
pub struct Prometheus {
    handle: PrometheusHandle,
}

impl Prometheus {
    /// Installs a Prometheus recorder as the process's `metrics` recorder, with buckets for
    /// the handshake duration histogram and wsock's metric descriptions. Fails when the
    /// process has a recorder already.
    pub fn install() -> Result<Prometheus, BuildError> {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(names::HANDSHAKE_DURATION.to_owned()),
                &[
                    0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
                ],
            )?
            .install_recorder()?;
        stats::describe();
        Ok(Prometheus { handle })
    }

    /// Serves a recorder the application built itself (with its own buckets or global
    /// labels): `PrometheusBuilder::new().install_recorder()?`.
    pub fn from_handle(handle: PrometheusHandle) -> Self {
        stats::describe();
        Prometheus { handle }
    }

    /// The metrics in Prometheus's text format, as a scrape reads them.
    pub fn render(&self) -> String {
        self.handle.run_upkeep();
        self.handle.render()
    }

    /// The page at the metrics' path: `GET` and `HEAD` only.
    pub(crate) fn page(&self, method: &Method) -> Result<Response<Body>, Refusal> {
        if !matches!(*method, Method::GET | Method::HEAD) {
            return Err(Refusal::method_not_allowed(
                "GET, HEAD",
                "the metrics only answer GET and HEAD requests",
            ));
        }
        let mut page = response::plain(http::StatusCode::OK, self.render());
        page.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        Ok(page)
    }
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus").finish_non_exhaustive()
    }
}
