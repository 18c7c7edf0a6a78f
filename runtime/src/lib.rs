//! The runtime behind [wsock](https://docs.rs/wsock): the server, the HTTP upgrade, routing,
//! the connection loop, `Out`, `Request` and the message codecs.
//!
//! Use it through the `wsock` crate, which adds the `#[websocket]` attribute.

// docs.rs builds with `--cfg docsrs` on nightly: items behind a feature show which one.
#![cfg_attr(docsrs, feature(doc_cfg))]

// The way of a request, top to bottom: `server` builds an `app`; `listen` accepts sockets and
// `http_conn` serves their HTTP side, or `service` takes requests from another server; both
// hand each request to `dispatch`, which checks it (`checks`), answers with `pages` or a
// `response`, or runs the endpoint's extractors and starts the `connection`, tracked by the
// `registry` until it ends.

mod app;
#[cfg(feature = "contract")]
mod asyncapi;
mod checks;
mod codec;
mod config;
mod connection;
#[cfg(feature = "contract")]
pub mod contract;
#[cfg(feature = "contract")]
mod contract_ts;
mod delivery;
#[cfg(feature = "contract")]
mod describe;
mod dispatch;
mod endpoint;
mod error;
mod extract;
mod follow;
#[cfg(feature = "axum")]
mod foreign;
#[cfg(feature = "fuzz")]
mod fuzz;
mod history;
mod http_conn;
mod http_head;
mod listen;
mod listener;
mod mailbox;
mod message;
#[cfg(feature = "prometheus")]
mod operations;
mod out;
mod pages;
mod percent;
mod presence;
#[cfg(feature = "prometheus")]
mod prometheus;
mod ratelimit;
mod registry;
mod request;
mod response;
mod resume;
mod router;
mod server;
mod service;
mod session;
mod shutdown;
mod states;
mod stats;
mod sweep;
#[cfg(feature = "test")]
pub mod test;
#[cfg(feature = "tls")]
mod tls;
mod topics;

pub use crate::config::Compression;
pub use crate::delivery::{Delivery, DeliveryCounts};
pub use crate::endpoint::{Endpoint, FromPathParam, FromRequest};
pub use crate::error::{Closed, Error};
pub use crate::extract::{Query, State};
pub use crate::history::{History, Locate, NotRecovered, Subscribed};
pub use crate::listen::{Bound, Handle, ShuttingDown};
pub use crate::listener::{ListenError, Listener};
pub use crate::message::{CloseCode, DecodeError, FromMessage, IntoMessage, Json, Message, Text};
#[cfg(feature = "prometheus")]
pub use crate::operations::Access;
pub use crate::out::Out;
pub use crate::presence::{Presence, PresenceError, Present};
#[cfg(feature = "prometheus")]
pub use crate::prometheus::Prometheus;
pub use crate::request::{Reject, Request};
pub use crate::server::Server;
pub use crate::service::WsService;
pub use crate::session::{SESSION_COOKIE, SameSite, Session, SessionKey, Sessions};
#[cfg(feature = "metrics")]
pub use crate::stats::names as metric_names;
#[cfg(feature = "tls")]
pub use crate::tls::Tls;
pub use crate::topics::{
    Broker, BrokerError, BrokerFuture, Located, Publish, PublishError, Sink, Subscriber, Topic,
    Topics,
};

pub use bytes::Bytes;
pub use http::{HeaderMap, Method, StatusCode, Uri};

/// What generated code uses; not public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(feature = "contract")]
    pub use crate::contract;
    pub use crate::describe;
    pub use crate::endpoint::{
        Accept, Accepting, Handled, Inbound, Inbox, NotInbound, Outcome, Prepared, Serve, decode,
        handled, run, run_async, run_close, run_close_async,
    };
    pub use crate::error::Failure;
    #[cfg(feature = "axum")]
    pub use crate::foreign::*;
    #[cfg(feature = "fuzz")]
    pub use crate::fuzz::FuzzHarness;
}

/// What `#[websocket]` says about an endpoint for the contract, as the `Endpoint` impl's
/// `describe`: with the `contract` feature. Not public API.
#[cfg(feature = "contract")]
#[doc(hidden)]
#[macro_export]
macro_rules! describe {
    (|$d:ident| $($body:tt)*) => {
        fn describe($d: &mut $crate::__private::contract::Describe<'_>) {
            #[allow(unused_imports)]
            use $crate::__private::contract::ladder::*;
            $($body)*
        }
    };
}

/// Without the `contract` feature, endpoints describe nothing. Not public API.
#[cfg(not(feature = "contract"))]
#[doc(hidden)]
#[macro_export]
macro_rules! describe {
    ($($body:tt)*) => {};
}
