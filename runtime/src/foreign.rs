//! Look-alikes: other crates' types that share a name with one of wsock's, and reach an
//! endpoint when an explicit import hides the prelude's glob (`use axum::extract::State;`
//! next to `use wsock::prelude::*;` makes `State` axum's in that module, without a word).
//!
//! Each gets an impl of the wsock trait it was meant for, under a bound no type meets, so
//! that the one error the user sees is this bound's: it names the type they got and the one
//! to write. (rustc words an unmet bound by the innermost trait when its type differs from
//! the outer one: these traits bound the wrapped type, `Polls` of `State<Polls>`, for that.)
//!
//! Only with the `axum` feature: an app that imports axum's names next to wsock's merges
//! wsock into axum; and rustc lists a trait's impls in some of its messages, which these would
//! crowd for everyone else.

use crate::endpoint::FromRequest;
use crate::error::Error;
use crate::message::{DecodeError, FromMessage, IntoMessage, Message};
use crate::request::{Reject, Request};

/// Met by no type: see the module's docs.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "this `Request` is `http::Request` (axum's `Request`): write `wsock::Request`",
    label = "`http::Request`, not the upgrade request",
    note = "an endpoint takes the upgrade request as `wsock::Request`; an import of \
            `axum::extract::Request` (or `http::Request`) hides the prelude's `Request` in \
            this module"
)]
pub trait HttpRequestIsNotWsocks: Send {}

impl<B> FromRequest for http::Request<B>
where
    B: HttpRequestIsNotWsocks,
{
    async fn from_request(_: &Request) -> Result<Self, Reject> {
        unreachable!("no type implements `HttpRequestIsNotWsocks`")
    }
}

/// Met by no type: see the module's docs.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "this `State` is `axum::extract::State`: write `wsock::State<{Self}>`",
    label = "axum's `State`",
    note = "an import of `axum::extract::State` hides the prelude's `State` in this module; an \
            endpoint's state is given with `Server::state(..)` and taken as `wsock::State<T>`"
)]
pub trait AxumStateIsNotWsocks: Send {}

impl<T> FromRequest for axum::extract::State<T>
where
    T: AxumStateIsNotWsocks,
{
    async fn from_request(_: &Request) -> Result<Self, Reject> {
        unreachable!("no type implements `AxumStateIsNotWsocks`")
    }
}

/// Met by no type: see the module's docs.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "this `Query` is `axum::extract::Query`: write `wsock::Query<{Self}>`",
    label = "axum's `Query`",
    note = "an import of `axum::extract::Query` hides the prelude's `Query` in this module; an \
            endpoint reads the query string as `wsock::Query<T>`"
)]
pub trait AxumQueryIsNotWsocks: Send {}

impl<T> FromRequest for axum::extract::Query<T>
where
    T: AxumQueryIsNotWsocks,
{
    async fn from_request(_: &Request) -> Result<Self, Reject> {
        unreachable!("no type implements `AxumQueryIsNotWsocks`")
    }
}

/// Met by no type: see the module's docs.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "this `Json` is `axum::Json`: write `wsock::Json<{Self}>`",
    label = "axum's `Json`",
    note = "an import of `axum::Json` hides the prelude's `Json` in this module; websocket \
            messages are sent and received as `wsock::Json<T>`"
)]
pub trait AxumJsonIsNotWsocks: Send + 'static {}

impl<T> FromMessage for axum::Json<T>
where
    T: AxumJsonIsNotWsocks,
{
    fn from_message(_: Message) -> Result<Self, DecodeError> {
        unreachable!("no type implements `AxumJsonIsNotWsocks`")
    }
}

impl<T> IntoMessage for axum::Json<T>
where
    T: AxumJsonIsNotWsocks,
{
    fn into_message(self) -> Result<Message, Error> {
        unreachable!("no type implements `AxumJsonIsNotWsocks`")
    }
}
