//! The extractors that come with wsock besides `Out` and `Request`: `Query`, `State` and
//! `Session`.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::endpoint::FromRequest;
use crate::ratelimit::RateLimit;
use crate::request::{Reject, Request};
use crate::session::Session;
use crate::topics::Topics;

/// The query string, deserialized with serde: `Query(params): Query<Params>`.
///
/// A query that does not deserialize refuses the client with 400 and says why.
///
/// ```no_run
/// use serde::Deserialize;
/// use wsock::prelude::*;
///
/// #[derive(Deserialize)]
/// struct Join {
///     name: String,
///     #[serde(default)]
///     color: Option<String>,
/// }
///
/// // ws://host/join?name=ada&color=blue
/// #[websocket("/join")]
/// fn join(Query(join): Query<Join>, out: Out<String>) {
///     out.write(format!("hello {} ({})", join.name, join.color.as_deref().unwrap_or("grey")));
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Query<T>(pub T);

impl<T> Deref for Query<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + Send> FromRequest for Query<T> {
    async fn from_request(req: &Request) -> Result<Self, Reject> {
        serde_urlencoded::from_str(req.query().unwrap_or(""))
            .map(Query)
            .map_err(|error| {
                Reject::bad_request().with_body(format!("invalid query string: {error}"))
            })
    }
}

/// Shared application state given to the server with [`Server::state`](crate::Server::state):
/// a database pool, a chat room's members.
///
/// It holds an `Arc<T>`, so extracting it is cheap and `T` needs no `Clone`. If the server was
/// given no `T`, the client gets 500 and the mistake is logged.
///
/// ```no_run
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use wsock::prelude::*;
///
/// #[derive(Default)]
/// struct Stats {
///     visits: AtomicU64,
/// }
///
/// #[websocket("/visits")]
/// fn visits(stats: State<Stats>, out: Out<String>) {
///     let visit = stats.visits.fetch_add(1, Ordering::Relaxed) + 1;
///     out.write(format!("visit number {visit}"));
/// }
///
/// # async fn run() -> std::io::Result<()> {
/// Server::new().state(Stats::default()).route(visits).serve("127.0.0.1:9000").await
/// # }
/// ```
pub struct State<T>(pub Arc<T>);

impl<T> Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        State(Arc::clone(&self.0))
    }
}

impl<T: fmt::Debug> fmt::Debug for State<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("State").field(&self.0).finish()
    }
}

impl<T: Send + Sync + 'static> FromRequest for State<T> {
    async fn from_request(req: &Request) -> Result<Self, Reject> {
        req.state::<T>().map(State).ok_or_else(|| {
            let name = std::any::type_name::<T>();
            // A mistake in the server's code, the same for every request: logged once a
            // second at most.
            static MISSING: RateLimit = RateLimit::new(Duration::from_secs(1));
            if MISSING.check().is_some() {
                tracing::error!(
                    "an endpoint takes `State<{name}>` but the server has no `{name}`: add \
                     `Server::state(value)`"
                );
            }
            Reject::internal_error().with_body(format!(
                "internal error: the server has no state of type `{name}` (add it with \
                 Server::state)"
            ))
        })
    }
}

impl FromRequest for Session {
    async fn from_request(req: &Request) -> Result<Self, Reject> {
        Ok(req.session())
    }
}

impl FromRequest for Topics {
    async fn from_request(req: &Request) -> Result<Self, Reject> {
        Ok(req.topics().clone())
    }
}
