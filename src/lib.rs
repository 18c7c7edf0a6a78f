//! Declare a WebSocket endpoint as one annotated function.
//!
//! ```no_run
//! use wsock::prelude::*;
//!
//! /// Logs every event, says hello, logs the disconnect.
//! #[websocket("/")]
//! fn index(out: Out<String>) {
//!     on_message(|event: String| {
//!         println!("{event}");
//!     });
//!     on_close(|| {
//!         println!("Disconnected");
//!     });
//!     out.write("Hello!");
//! }
//!
//! /// Discards all input, says hello and closes.
//! #[websocket("/hello")]
//! fn hello(out: Out<String>) {
//!     out.write("Hello!");
//!     out.close();
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     Server::new().route(index).route(hello).serve("127.0.0.1:9000").await
//! }
//! ```
//!
//! The function's body is the **ready code**: it runs once, right after the handshake. Its
//! top-level `on_message(..)`, `on_close(..)` and `on_error(..)` statements are **sections**,
//! the connection's callbacks, and they borrow the ready code's variables. See
//! [`websocket`] for the whole grammar, and the README for the server's behaviour.

// docs.rs builds with `--cfg docsrs` on nightly: items behind a feature show which one.
#![cfg_attr(docsrs, feature(doc_cfg))]

// `::wsock::..` paths in generated code must also resolve inside this crate's own tests.
extern crate self as wsock;

#[doc(inline)]
pub use wsock_macros::websocket;
pub use wsock_runtime::{
    Bound, Broker, BrokerError, BrokerFuture, Bytes, CloseCode, Closed, Compression, DecodeError,
    Delivery, DeliveryCounts, Endpoint, Error, FromMessage, FromPathParam, FromRequest, Handle,
    HeaderMap, History, IntoMessage, Json, ListenError, Listener, Locate, Located, Message, Method,
    NotRecovered, Out, Presence, PresenceError, Present, Publish, PublishError, Query, Reject,
    Request, SESSION_COOKIE, SameSite, Server, Session, SessionKey, Sessions, ShuttingDown, Sink,
    State, StatusCode, Subscribed, Subscriber, Text, Topic, Topics, Uri, WsService,
};

// Re-exports name their feature themselves: the runtime's own `cfg` is not this crate's.
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub use wsock_runtime::Access;
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub use wsock_runtime::Prometheus;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use wsock_runtime::Tls;
#[cfg(feature = "contract")]
#[cfg_attr(docsrs, doc(cfg(feature = "contract")))]
pub use wsock_runtime::contract;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use wsock_runtime::metric_names;
#[cfg(feature = "test")]
#[cfg_attr(docsrs, doc(cfg(feature = "test")))]
pub use wsock_runtime::test;

/// Everything an endpoint file needs: `use wsock::prelude::*;`.
pub mod prelude {
    pub use crate::sections::{on_close, on_error, on_message};
    pub use crate::{
        CloseCode, DecodeError, Delivery, Error, FromPathParam, FromRequest, Json, Message, Out,
        Query, Reject, Request, Server, Session, State, Subscribed, Text, Topic, Topics, websocket,
    };
}

mod sections {
    //! The section names as real items, for completion and docs. The macro takes section
    //! statements out of the body before rustc sees them; called anywhere else, these fail to
    //! build with a message that says where they belong.

    #[doc(hidden)]
    #[diagnostic::on_unimplemented(
        message = "sections can only be top-level statements of a `#[websocket]` function",
        label = "not a top-level statement of a `#[websocket]` function",
        note = "write `on_message(|event: String| {{ .. }});` directly in the body of a function \
                annotated with `#[websocket(\"/path\")]`"
    )]
    pub trait TopLevelSection {}

    /// Declares the section that handles each incoming message, in order, one at a time.
    ///
    /// Only valid as a top-level statement of a [`#[websocket]`](crate::websocket) function:
    /// `on_message(|event: String| { .. });`. The parameter's type says how messages decode.
    pub fn on_message<F: TopLevelSection>(section: F) {
        let _ = section;
    }

    /// Declares the section that runs once when the connection ends, after the last message.
    ///
    /// Only valid as a top-level statement of a [`#[websocket]`](crate::websocket) function:
    /// `on_close(|| { .. });`.
    pub fn on_close<F: TopLevelSection>(section: F) {
        let _ = section;
    }

    /// Declares the section that receives messages that do not decode as the `on_message`
    /// type; the connection then stays open.
    ///
    /// Only valid as a top-level statement of a [`#[websocket]`](crate::websocket) function:
    /// `on_error(|error: wsock::DecodeError| { .. });`.
    pub fn on_error<F: TopLevelSection>(section: F) {
        let _ = section;
    }
}

/// What generated code uses; not public API, no semver guarantees.
#[doc(hidden)]
pub mod __private {
    pub use wsock_runtime::__private::*;
    pub use wsock_runtime::Endpoint;

    /// Section names that accept anything: bound in the hidden copy of a function the macro
    /// rejected, so rustc reports nothing on top of the macro's error.
    pub mod stubs {
        pub fn on_message<F>(_: F) {}
        pub fn on_close<F>(_: F) {}
        pub fn on_error<F>(_: F) {}
    }
}
