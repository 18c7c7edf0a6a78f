//! Every path generated code names, in one table: absolute, so they resolve whatever the
//! user's module imports or shadows.

use proc_macro2::TokenStream;
use quote::quote;

pub(crate) fn endpoint() -> TokenStream {
    quote!(::wsock::__private::Endpoint)
}

pub(crate) fn accept() -> TokenStream {
    quote!(::wsock::__private::Accept)
}

pub(crate) fn accepting() -> TokenStream {
    quote!(::wsock::__private::Accepting)
}

pub(crate) fn outcome() -> TokenStream {
    quote!(::wsock::__private::Outcome)
}

/// The section runner for a section kind and its asyncness.
pub(crate) fn run(with_argument: bool, is_async: bool) -> TokenStream {
    match (with_argument, is_async) {
        (true, false) => quote!(::wsock::__private::run),
        (true, true) => quote!(::wsock::__private::run_async),
        (false, false) => quote!(::wsock::__private::run_close),
        (false, true) => quote!(::wsock::__private::run_close_async),
    }
}

pub(crate) fn decode() -> TokenStream {
    quote!(::wsock::__private::decode)
}

pub(crate) fn inbound() -> TokenStream {
    quote!(::wsock::__private::Inbound)
}

pub(crate) fn not_inbound() -> TokenStream {
    quote!(::wsock::__private::NotInbound)
}

pub(crate) fn handled() -> TokenStream {
    quote!(::wsock::__private::handled)
}

pub(crate) fn rejected() -> TokenStream {
    quote!(::wsock::__private::Handled::Rejected)
}

pub(crate) fn stubs() -> TokenStream {
    quote!(::wsock::__private::stubs)
}

pub(crate) fn error() -> TokenStream {
    quote!(::wsock::Error)
}

pub(crate) fn decode_error() -> TokenStream {
    quote!(::wsock::DecodeError)
}

pub(crate) fn box_pin() -> TokenStream {
    quote!(::std::boxed::Box::pin)
}

pub(crate) fn result() -> TokenStream {
    quote!(::core::result::Result)
}

pub(crate) fn ok() -> TokenStream {
    quote!(::core::result::Result::Ok)
}

pub(crate) fn err() -> TokenStream {
    quote!(::core::result::Result::Err)
}

pub(crate) fn some() -> TokenStream {
    quote!(::core::option::Option::Some)
}

pub(crate) fn control_break() -> TokenStream {
    quote!(::core::ops::ControlFlow::Break)
}

pub(crate) fn unreachable() -> TokenStream {
    quote!(::core::unreachable!)
}

/// The runtime's `describe!`, which expands to the contract's `describe` or to nothing.
pub(crate) fn describe() -> TokenStream {
    quote!(::wsock::__private::describe)
}

/// The contract's probe, for the autoref ladder (only named inside `describe!`).
pub(crate) fn probe() -> TokenStream {
    quote!(::wsock::__private::contract::Probe)
}

pub(crate) fn unknown_payload() -> TokenStream {
    quote!(::wsock::__private::contract::Payload::Unknown)
}
