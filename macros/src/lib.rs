//! The `#[websocket]` attribute of wsock. Use it through the `wsock` crate, which documents it.

mod errors;
mod expand;
mod fallback;
mod parse;
mod paths;
mod validate;

use proc_macro::TokenStream;

/// Turns a function into a WebSocket endpoint.
///
/// ```no_run
/// use wsock::prelude::*;
///
/// /// Echoes text, counts messages, and says goodbye with the count.
/// #[websocket("/echo")]
/// fn echo(out: Out<String>, req: Request) {
///     let mut count = 0;
///     on_message(|text: String| {
///         count += 1;
///         out.write(text);
///     });
///     on_close(|| println!("{} sent {count} messages", req.peer_addr()));
///     out.write("send me something");
/// }
///
/// #[tokio::main]
/// async fn main() -> std::io::Result<()> {
///     Server::new().route(echo).serve("127.0.0.1:9000").await
/// }
/// ```
///
/// # Syntax
///
/// ```text
/// #[websocket("/path")]
/// [pub] [async] fn name(param: Type, ..) [-> Result<(), wsock::Error>] {
///     ready code: any statements
///     on_message(|message: Type| body);     // each section at most once,
///     on_close(|| body);                    // as a top-level statement
///     on_error(|error: wsock::DecodeError| body);
///     more ready code: expression statements, no `let`
/// }
/// ```
///
/// - **The path** is a string literal starting with `/`: the request path the endpoint serves.
///   A segment `{name}` is a path parameter: `#[websocket("/rooms/{room}")]`.
/// - **Options** may follow the path: `protocol = "chat.v1"` (repeatable, preferred first: the
///   subprotocols it speaks), `max_message_size = "4MiB"` (its own limit on incoming messages),
///   `compress = false` (no permessage-deflate for this endpoint), `heartbeat = false` (none
///   of the server's heartbeats, `Server::heartbeat`, for this endpoint's connections),
///   `resume = true` (its connections get their topics' missed messages after a reconnect:
///   see `Topic::subscribe` and the README's "Resume").
///   Without `max_message_size`, the server's limit applies, or, when the server sets none
///   either, the `on_message` type's: 64 KiB for `Json<T>`, 16 MiB for the others.
/// - **Parameters** are extracted from the HTTP upgrade request before the handshake is
///   accepted; if one refuses, the client gets an HTTP error and no WebSocket:
///   - a parameter named like a `{segment}` takes that segment, parsed with `FromStr` (400 if
///     it does not parse), or resolved by its type's `wsock::FromPathParam` impl, which gets
///     the request too and may refuse with any status (404 for an unknown resource);
///   - `Out<T>`: the outbound handle, `T` the outbound message type;
///   - `Request`: the request head; `Session`: the signed session; `Query<T>`: the query
///     string (serde); `State<T>`: state given to `Server::state`;
///   - any type that implements `wsock::FromRequest`: a guard that may refuse the client with
///     an HTTP status.
/// - **The body is the ready code**: it runs once, right after the handshake. A `return`, an
///   `Err` (with `-> Result<(), wsock::Error>`) or a panic there closes the connection (1000, or
///   1011) before it is ready, and `on_close` does not run.
/// - **Sections** are the top-level statements `on_message(..)`, `on_close(..)` and
///   `on_error(..)`, each holding a closure written in place. The macro takes them out of the
///   body. They **borrow** the ready code's variables: each closure is written anew for every
///   call, so its borrows last that call only, and several sections may mutate one variable.
///   - `on_message(|m: T| ..)` handles each message, one at a time and in order; `T` says how
///     messages decode: `String` or `wsock::Text` (text frames), `Vec<u8>` or `wsock::Bytes`
///     (binary frames), `Json<T>` (JSON text, serde), `wsock::Message` (either).
///   - `on_close(|| ..)` runs once, after the last `on_message`, however the connection ended.
///   - `on_error(|e: wsock::DecodeError| ..)` receives messages that do not decode as `T`;
///     without it they close the connection with 1003 or 1007.
///   - A section may be async: `async |m: T| { .. }` or `|m: T| async move { .. }`; both borrow
///     like a plain section and may `.await`.
///   - A section returns `()` or `Result<(), wsock::Error>`; one that uses `?` or ends in
///     `Ok(..)` is given that `Result` type, so `?` needs no annotation. An `Err` or a panic
///     closes the connection with 1011 (and `on_close` still runs).
///   - Without `on_message`, incoming messages are read and dropped.
///
/// # Expansion
///
/// For `#[websocket("/echo")] fn echo(out: Out<String>) { .. }` the macro generates, in outline:
///
/// ```text
/// /// (the function's docs)
/// pub struct echo {}
/// pub fn echo() -> echo { echo {} }        // what `Server::route(echo)` takes
///
/// impl wsock::Endpoint for echo {
///     const PATH: &'static str = "/echo";
///     fn accept(cx) -> .. {
///         Box::pin(async move {
///             let out: Out<String> = cx.extract::<Out<String>>().await?;  // before the upgrade
///             let mut inbox = cx.inbox();
///             let connection = async move {
///                 inbox.message_limit(/* `String`'s own limit, if any */);
///                 /* the ready code */
///                 while let Some(msg) = inbox.recv().await {
///                     match decode::<String>(msg) {                // the message type
///                         Ok(msg) => inbox.handled(run(|text: String| { /* on_message */ }, msg)),
///                         Err(error) => inbox.reject(error),     // or the on_error section
///                     }
///                 }
///                 inbox.closed(run_close(|| { /* on_close */ }));
///             };
///             Ok(cx.connection(connection))
///         })
///     }
/// }
/// ```
///
/// Every path in the generated code is absolute and its locals are hygienic. The exact code for
/// the seed examples is in the repository's `tests/expand/*.expanded.rs`;
/// `cargo expand` shows it for your own code.
///
/// # Errors
///
/// The macro reports every mistake in one build, each at the token at fault:
///
/// - the attribute: a missing path, a path that is not a string literal, does not start with
///   `/` or holds a query, a malformed path (`x{y}`, `//`, `{}`, `..`, a character no request
///   path has), a `{segment}` used twice or with no function parameter of its name, a
///   malformed option list (a missing comma, `key` without `= value`, a value that is not a
///   literal), an unknown option, a malformed or repeated subprotocol, a malformed or repeated
///   size, a `compress`, `heartbeat` or `resume` that is not `true` or `false` or is given
///   twice, or an
///   item that is not a function;
/// - the signature: a generic, `const`, `unsafe` or `extern` function, a `self` parameter, a
///   return type other than `()` or a `Result`, `.await` in the ready code of a plain `fn`, an
///   attribute other than docs, `cfg`, lint levels and `deprecated`, a `mut` `Session`
///   parameter (the session is read-only in an endpoint: a change would reach no cookie);
/// - the sections: a misspelled section name (with a suggestion), a duplicate section, a section
///   inside a block, an `if`, a loop or a closure, a section that is not a closure, a `move`
///   closure, a section with other than one closure, a closure with the wrong number of
///   parameters, an `on_message` parameter without
///   its type, an attribute on a section, a `let` after the first section.
///
/// The type checker adds, at your tokens and in wsock's words: a message type that cannot be
/// received or sent, a parameter type that is not an extractor, a path parameter type that
/// is neither `FromStr` nor `FromPathParam`, and a parameter or message type that is axum's
/// `State`, `Json` or `Query` (or `http::Request`), hiding the prelude's name of wsock's: the
/// error says to write `wsock::State<T>` (with wsock's `axum` feature). A connection runs on any worker thread, so a value that is not `Send`
/// (an `Rc`, a `RefCell` borrow, a `std::sync::MutexGuard`) cannot live across an `.await` of
/// the ready code or an async section: rustc reports it at the function's name, with notes
/// naming the variable and the section whose await it crosses.
#[proc_macro_attribute]
pub fn websocket(args: TokenStream, item: TokenStream) -> TokenStream {
    websocket_impl(args.into(), item.into()).into()
}

fn websocket_impl(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            // Give the user's tokens back untouched, with the one error that matters.
            let error = syn::Error::new_spanned(
                first_tokens(&item),
                "`#[websocket]` goes on a function: `#[websocket(\"/path\")] fn name(out: Out<String>) { .. }`",
            );
            let error = error.into_compile_error();
            return quote::quote!(#error #item);
        }
    };
    // The attribute's arguments are parsed here, once: the stand-ins take the path from the
    // model, as `expand` takes every option.
    let endpoint = match parse::endpoint(args, &func) {
        Ok(endpoint) => endpoint,
        Err(error) => return fallback::endpoint(&func, None, error),
    };
    match validate::endpoint(&endpoint) {
        Ok(()) => expand::endpoint(&endpoint),
        Err(error) => fallback::endpoint(&func, Some(&endpoint.args.path.lit), error),
    }
}

/// The item's tokens up to its name (`struct Foo`, `impl Trait for X`): where the error shows.
fn first_tokens(item: &proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    item.clone()
        .into_iter()
        .skip_while(|tt| matches!(tt, proc_macro2::TokenTree::Punct(p) if p.as_char() == '#'))
        .skip_while(|tt| matches!(tt, proc_macro2::TokenTree::Group(_)))
        .take(2)
        .collect()
}

#[cfg(test)]
mod snapshots;
