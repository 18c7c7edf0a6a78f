//! What every request and connection of one server shares, once the server is built: its
//! routes and pages, settings, what requests can read (state, session key) and the
//! connection registry.

use std::sync::Arc;

use crate::config::Config;
use crate::pages::Pages;
use crate::registry::Registry;
use crate::request::Context;
use crate::router::Router;

pub(crate) struct App {
    pub(crate) router: Router,
    pub(crate) pages: Pages,
    pub(crate) config: Config,
    pub(crate) context: Arc<Context>,
    pub(crate) registry: Arc<Registry>,
    /// The contract's AsyncAPI document, served with the dev console (`contract` feature).
    pub(crate) contract: Option<String>,
    /// `Server::metrics`: the path of the metrics, and the recorder it shows.
    #[cfg(feature = "prometheus")]
    pub(crate) metrics: Option<(&'static str, crate::prometheus::Prometheus)>,
}

impl App {
    /// Whether the server takes no more connections (`max_connections`).
    pub(crate) fn is_full(&self, load: usize) -> bool {
        load >= self.config.max_connections
    }
}
