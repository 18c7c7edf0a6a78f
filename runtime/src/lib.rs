//! The runtime behind [wsock](https://docs.rs/wsock): the server, the HTTP upgrade, routing,
//! the connection loop, `Out`, `Request` and the message codecs.
//!
//! Use it through the `wsock` crate, which adds the `#[websocket]` attribute.

mod connection;
mod console;
mod endpoint;
mod error;
mod extract;
mod lean_io;
mod message;
mod out;
mod request;
mod router;
mod server;
mod session;
mod shared;
mod shutdown;
mod upgrade;

pub use crate::endpoint::{Endpoint, FromPathParam};
pub use crate::error::{Closed, DecodeError, Error};
pub use crate::extract::{Query, State};
pub use crate::message::{CloseCode, FromMessage, IntoMessage, Json, Message, Text};
pub use crate::out::Out;
pub use crate::request::{FromRequest, Reject, Request};
pub use crate::server::{Bound, FuzzHarness, Handle, Server};
pub use crate::session::{SESSION_COOKIE, Session, SessionKey};

pub use bytes::Bytes;
pub use http::{HeaderMap, Method, StatusCode, Uri};

/// What generated code uses; not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::endpoint::{
        Accept, Accepting, Failure, Inbox, Outcome, Session, decode, run, run_async, run_close,
        run_close_async,
    };
}
