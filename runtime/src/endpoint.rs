//! What `#[websocket]` generates code against: the `Endpoint` trait and its hidden helpers.
//!
//! Everything here but `Endpoint` is reached by generated code through `wsock::__private`
//! and is not part of the public API.

use std::future::{Future, poll_fn};
use std::marker::PhantomPinned;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use futures_util::FutureExt;

use crate::error::{Error, Failure, panic_message};
pub use crate::mailbox::Handled;
use crate::mailbox::{Handler, Mailbox};
use crate::message::{DecodeError, FromMessage, Message};
use crate::request::{Reject, Request};

/// A WebSocket endpoint: what `#[websocket("/path")]` generates from a function `name`, as a
/// struct `name` (with a function `name` that returns it, which
/// [`Server::route`](crate::Server::route) takes).
///
/// Implement it with the attribute, not by hand: its items are hidden and may change.
pub trait Endpoint: Send + Sync + 'static {
    /// The route pattern.
    #[doc(hidden)]
    const PATH: &'static str;
    /// The function's name, for logs.
    #[doc(hidden)]
    const NAME: &'static str;
    /// The subprotocols it speaks, preferred first (`protocol = ".."`).
    #[doc(hidden)]
    const PROTOCOLS: &'static [&'static str] = &[];
    /// Its own limit on incoming messages (`max_message_size = ".."`), over the server's.
    #[doc(hidden)]
    const MAX_MESSAGE_SIZE: Option<usize> = None;
    /// Whether it may compress (`compress = false` forbids it).
    #[doc(hidden)]
    const COMPRESS: bool = true;
    /// Whether its connections get the server's heartbeats (`heartbeat = false` says no).
    #[doc(hidden)]
    const HEARTBEAT: bool = true;
    /// Whether its connections resume their topics after a reconnect (`resume = true`).
    #[doc(hidden)]
    const RESUME: bool = false;
    /// Extracts the parameters from the upgrade request and prepares the connection's code.
    #[doc(hidden)]
    fn accept(cx: Accept) -> Accepting;
    /// Describes the endpoint's messages for the contract (`contract` feature).
    #[cfg(feature = "contract")]
    #[doc(hidden)]
    fn describe(d: &mut crate::describe::Describe<'_>) {
        let _ = d;
    }
}

/// A type a `{name}` segment of an endpoint's path resolves to: a parameter named like the
/// segment (`id: T` for `"/polls/{id}/live"`) takes the segment, percent-decoded, as a `T`,
/// before the upgrade.
///
/// Every `FromStr` type is one, parsed from the segment: `String`, numbers, your own
/// `FromStr` types. A segment that does not parse refuses the client with 400, naming the
/// parameter.
///
/// Implement it to resolve the segment against your data instead: the resource the path
/// names, looked up once, with the request and the server's state at hand, refusing the
/// client with any status (404 for an unknown id) and no WebSocket. The endpoint then gets
/// the resource itself, and nothing parses the id twice.
///
/// ```no_run
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex};
/// use wsock::prelude::*;
///
/// /// The server's rooms, by id: `Server::state(Rooms::default())`.
/// #[derive(Default)]
/// struct Rooms(Mutex<HashMap<u64, Arc<Room>>>);
///
/// struct Room {
///     name: String,
/// }
///
/// /// A room that exists: `{room}` resolved against the rooms, once, before the upgrade.
/// struct KnownRoom(Arc<Room>);
///
/// impl FromPathParam for KnownRoom {
///     async fn from_path_param(id: &str, req: &Request) -> Result<Self, Reject> {
///         let State(rooms) = State::<Rooms>::from_request(req).await?; // 500 (and a log) if missing
///         let room = id.parse().ok().and_then(|id| rooms.0.lock().unwrap().get(&id).cloned());
///         // An unknown room: 404 with a body, and no WebSocket.
///         room.map(KnownRoom)
///             .ok_or_else(|| Reject::not_found().with_body(format!("no room {id}")))
///     }
/// }
///
/// #[websocket("/rooms/{room}")]
/// fn join(room: KnownRoom, out: Out<String>) {
///     out.write(format!("welcome to {}", room.0.name));
/// }
/// ```
///
/// A type that is neither `FromStr` nor implements this trait is a compile error at the
/// parameter's type that says so.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a path parameter",
    label = "the type of a `{{..}}` path parameter",
    note = "a path parameter's type is parsed with `FromStr` (`String`, a number, a type that \
            implements `FromStr` with a displayable error), or resolved by an impl of \
            `wsock::FromPathParam` (to look the resource up and refuse an unknown one with 404)"
)]
pub trait FromPathParam: Sized + Send {
    /// Resolves `segment`, the segment's percent-decoded text, or refuses the client with
    /// the `Reject`'s status and body.
    fn from_path_param(
        segment: &str,
        req: &Request,
    ) -> impl Future<Output = Result<Self, Reject>> + Send;

    /// Resolves the segment of the parameter `name`: refusals of `FromStr` types name it.
    #[doc(hidden)]
    fn from_named_param(
        name: &'static str,
        segment: &str,
        req: &Request,
    ) -> impl Future<Output = Result<Self, Reject>> + Send {
        let _ = name;
        Self::from_path_param(segment, req)
    }
}

impl<T> FromPathParam for T
where
    T: std::str::FromStr + Send,
    T::Err: std::fmt::Display,
{
    async fn from_path_param(segment: &str, _: &Request) -> Result<Self, Reject> {
        parse_segment(segment)
            .map_err(|error| Reject::bad_request().with_body(format!("{segment:?}: {error}")))
    }

    async fn from_named_param(
        name: &'static str,
        segment: &str,
        _: &Request,
    ) -> Result<Self, Reject> {
        parse_segment(segment).map_err(|error| {
            Reject::bad_request().with_body(format!(
                "invalid path parameter `{name}` ({segment:?}): {error}"
            ))
        })
    }
}

/// Parses a segment with `FromStr`; the error as text.
fn parse_segment<T>(segment: &str) -> Result<T, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    segment.parse().map_err(|error: T::Err| error.to_string())
}

/// A type an endpoint parameter can be extracted as, from the upgrade request, before the
/// upgrade is accepted.
///
/// Implement it for guards: a parameter of that type makes the endpoint refuse clients the
/// guard rejects, with an HTTP error response and no WebSocket (Play's `WebSocket.reject`).
/// Extraction may be async.
///
/// For the resource a path names (an unknown room → 404), implement [`FromPathParam`] for
/// the `{room}` parameter's type instead: it gets the segment with the request, and nothing
/// parses it twice.
///
/// ```no_run
/// use wsock::prelude::*;
///
/// /// A client that sent the right `x-api-key` header.
/// struct ApiClient;
///
/// impl FromRequest for ApiClient {
///     async fn from_request(req: &Request) -> Result<Self, Reject> {
///         match req.header("x-api-key") {
///             Some("let-me-in") => Ok(ApiClient),
///             _ => Err(Reject::unauthorized().with_body("missing or wrong x-api-key")),
///         }
///     }
/// }
///
/// #[websocket("/private")]
/// fn private(_client: ApiClient, out: Out<String>) {
///     out.write("welcome");
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a parameter of a websocket endpoint",
    label = "not extractable from the upgrade request",
    note = "a parameter is `Out<T>`, `Request`, `Session`, `Query<T>`, `State<T>`, a type that \
            implements `wsock::FromRequest`, or a path parameter named like a `{{segment}}` of \
            the path"
)]
pub trait FromRequest: Sized + Send {
    /// Extracts the value, or refuses the connection.
    fn from_request(req: &Request) -> impl Future<Output = Result<Self, Reject>> + Send;

    /// Extracts the value as an endpoint parameter: from the request, except for `Out<T>`,
    /// which takes the connection-to-be.
    #[doc(hidden)]
    fn from_accept(cx: &Accept) -> impl Future<Output = Result<Self, Reject>> + Send {
        Self::from_request(cx.request())
    }
}

impl FromRequest for Request {
    async fn from_request(req: &Request) -> Result<Self, Reject> {
        Ok(req.clone())
    }
}

/// The future `Endpoint::accept` returns.
#[doc(hidden)]
pub type Accepting = Pin<Box<dyn Future<Output = Result<Prepared, Reject>> + Send>>;

/// The upgrade request as the generated code sees it before the upgrade, and the
/// connection-to-be that `Out` parameters write to.
#[doc(hidden)]
pub struct Accept {
    request: Request,
    mailbox: Arc<Mailbox>,
}

impl Accept {
    pub(crate) fn new(request: Request, mailbox: Arc<Mailbox>) -> Self {
        Accept { request, mailbox }
    }

    /// The request, for extractors.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The connection's state: its outbound queue and inbound slot.
    pub(crate) fn mailbox(&self) -> &Arc<Mailbox> {
        &self.mailbox
    }

    /// Extracts one parameter.
    ///
    /// The future is boxed (once per parameter and handshake) so that its type does not name
    /// `T`'s extractor: for a type that is not one, the only error is the one at the type.
    pub fn extract<T: FromRequest + 'static>(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<T, Reject>> + Send + '_>> {
        Box::pin(T::from_accept(self))
    }

    /// Resolves one path parameter, or refuses the client (400 for a segment that does not
    /// parse, or what the type's own resolution says).
    ///
    /// The future is boxed, as `extract`'s is: for a type that is not one, the only error is
    /// the one at the type.
    pub fn path_param<T: FromPathParam + 'static>(
        &self,
        name: &'static str,
    ) -> Pin<Box<dyn Future<Output = Result<T, Reject>> + Send + '_>> {
        let segment = self.request.path_param(name).unwrap_or_default();
        Box::pin(T::from_named_param(name, segment, &self.request))
    }

    /// The connection's inbound side, for the generated message loop.
    pub fn inbox(&self) -> Inbox {
        Inbox {
            mailbox: Arc::clone(&self.mailbox),
        }
    }

    /// Wraps the connection's code (ready code, message loop and `on_close`) as the
    /// connection that runs once the upgrade is done.
    pub fn connection<F>(self, code: F) -> Prepared
    where
        F: Future + Send + 'static,
        F::Output: Outcome,
    {
        Prepared {
            mailbox: self.mailbox,
            code: Box::pin(async move { code.await.into_result() }),
        }
    }
}

/// An accepted connection: the endpoint's code, waiting for the upgraded socket.
#[doc(hidden)]
pub struct Prepared {
    pub(crate) mailbox: Arc<Mailbox>,
    pub(crate) code: Code,
}

/// The endpoint's code for one connection: ready code, message loop, `on_close`.
pub(crate) type Code = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

/// The inbound side of a connection, as the generated message loop uses it.
#[doc(hidden)]
pub struct Inbox {
    mailbox: Arc<Mailbox>,
}

impl Inbox {
    /// The next message; `None` once the connection is closing or closed.
    pub fn recv(&mut self) -> impl Future<Output = Option<Message>> + Send + '_ {
        // No waker is stored: the driver polls this future again right after delivering.
        poll_fn(|_| match self.mailbox.take_message() {
            Some(message) => Poll::Ready(message),
            None => Poll::Pending,
        })
    }

    /// Hands each message to `handler`, called in place by the connection's driver the
    /// moment the message is read, until no more come: the message loop of an endpoint whose
    /// sections are synchronous, with no hand-off and no wake-up per message.
    pub fn serve<F>(&mut self, handler: F) -> Serve<'_, F>
    where
        F: FnMut(Message) -> Handled,
    {
        Serve {
            inbox: self,
            handler,
            registered: None,
            _pinned: PhantomPinned,
        }
    }

    /// The limit the `on_message` type asks for (`FromMessage::MAX_MESSAGE_SIZE`, through
    /// [`Inbound`]), said first thing in the connection's code: it applies from the first
    /// message on, unless the endpoint or the server sets a limit.
    pub fn message_limit(&self, limit: Option<usize>) {
        if let Some(limit) = limit {
            self.mailbox.set_message_limit(limit);
        }
    }

    /// Reads and drops messages until the connection closes (an endpoint with no `on_message`).
    pub async fn discard(&mut self) {
        while self.recv().await.is_some() {}
    }

    /// Records how a section ended: an error or a panic closes the connection with 1011.
    pub fn handled(&self, outcome: Result<(), Failure>) {
        if let Err(failure) = outcome {
            self.mailbox.handled(Handled::Failed(failure));
        }
    }

    /// A message that could not be decoded and that no `on_error` section takes.
    pub fn reject(&self, error: DecodeError) {
        self.mailbox.handled(Handled::Rejected(error));
    }

    /// Records how `on_close` ended; the connection is already closed.
    pub fn closed(&self, outcome: Result<(), Failure>) {
        if let Err(failure) = outcome {
            let endpoint = self.mailbox.endpoint;
            match failure {
                Failure::Error(error) => tracing::error!(endpoint, %error, "on_close failed"),
                Failure::Panic(panic) => {
                    let panic = panic_message(&*panic);
                    tracing::error!(endpoint, panic, "on_close panicked")
                }
            }
        }
    }
}

/// The message loop of [`Inbox::serve`]: while it waits, its handler is registered with the
/// connection, and the driver calls it for each message; it ends when no more come.
#[doc(hidden)]
pub struct Serve<'a, F> {
    inbox: &'a mut Inbox,
    handler: F,
    /// What the connection is given: a pointer to `handler`, stable while this future is
    /// pinned.
    registered: Option<Handler>,
    _pinned: PhantomPinned,
}

impl<F> Future for Serve<'_, F>
where
    F: FnMut(Message) -> Handled,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> Poll<()> {
        // SAFETY: nothing is moved out of the pinned future; `handler` stays where it is.
        let this = unsafe { self.get_unchecked_mut() };
        let mailbox = &this.inbox.mailbox;
        if mailbox.inbound_ended() {
            mailbox.set_handler(std::ptr::null());
            return Poll::Ready(());
        }
        if this.registered.is_none() {
            let call: *mut (dyn FnMut(Message) -> Handled + '_) = &mut this.handler;
            // SAFETY: only the lifetime is erased. The driver calls the handler only while it
            // is registered, on the connection's own task, between polls of the endpoint's
            // code; this future withdraws it when it ends or is dropped, and, pinned, never
            // moves it meanwhile.
            let call = unsafe {
                std::mem::transmute::<
                    *mut (dyn FnMut(Message) -> Handled + '_),
                    *mut (dyn FnMut(Message) -> Handled + 'static),
                >(call)
            };
            let registered = this.registered.insert(Handler { call });
            mailbox.set_handler(registered);
        }
        // No waker: the driver polls the endpoint's code again once the inbound side ends.
        Poll::Pending
    }
}

impl<F> Drop for Serve<'_, F> {
    fn drop(&mut self) {
        if self.registered.is_some() {
            self.inbox.mailbox.set_handler(std::ptr::null());
        }
    }
}

/// What a section's outcome comes to for the connection, in [`Inbox::serve`]'s handler.
#[doc(hidden)]
pub fn handled(outcome: Result<(), Failure>) -> Handled {
    match outcome {
        Ok(()) => Handled::Done,
        Err(failure) => Handled::Failed(failure),
    }
}

/// `<Inbound<T>>::MAX_MESSAGE_SIZE`: `T`'s own message limit if `T` is a message type, `None`
/// (from [`NotInbound`], in scope where it is read) if it is not, so that a type that is not
/// one is reported once, where messages are decoded, and not here too.
#[doc(hidden)]
pub struct Inbound<T>(std::marker::PhantomData<T>);

impl<T: FromMessage> Inbound<T> {
    pub const MAX_MESSAGE_SIZE: Option<usize> = T::MAX_MESSAGE_SIZE;
}

/// The fallback of [`Inbound`], for types that are not message types.
#[doc(hidden)]
pub trait NotInbound {
    const MAX_MESSAGE_SIZE: Option<usize> = None;
}

impl<T> NotInbound for Inbound<T> {}

/// Decodes a message as the `on_message` type.
#[doc(hidden)]
pub fn decode<T: FromMessage>(message: Message) -> Result<T, DecodeError> {
    T::from_message(message)
}

// The section runners. Generated code passes each section's closure, written anew for every
// call, so that it borrows the ready code's variables for that call only. A panic is caught
// (the connection then closes with 1011) and the outcome becomes a `Result`.

/// Runs a plain section with its argument.
#[doc(hidden)]
pub fn run<A, R: Outcome>(section: impl FnOnce(A) -> R, argument: A) -> Result<(), Failure> {
    caught(std::panic::catch_unwind(AssertUnwindSafe(|| {
        section(argument)
    })))
}

/// Runs an async section with its argument.
#[doc(hidden)]
pub async fn run_async<A, R: Outcome>(
    section: impl AsyncFnOnce(A) -> R,
    argument: A,
) -> Result<(), Failure> {
    caught(AssertUnwindSafe(section(argument)).catch_unwind().await)
}

/// Runs a plain `on_close` section.
#[doc(hidden)]
pub fn run_close<R: Outcome>(section: impl FnOnce() -> R) -> Result<(), Failure> {
    caught(std::panic::catch_unwind(AssertUnwindSafe(section)))
}

/// Runs an async `on_close` section.
#[doc(hidden)]
pub async fn run_close_async<R: Outcome>(section: impl AsyncFnOnce() -> R) -> Result<(), Failure> {
    caught(AssertUnwindSafe(section()).catch_unwind().await)
}

fn caught<R: Outcome>(result: std::thread::Result<R>) -> Result<(), Failure> {
    match result {
        Ok(outcome) => outcome.into_result().map_err(Failure::Error),
        Err(panic) => Err(Failure::Panic(panic)),
    }
}

/// What an endpoint function or a section may return: `()` or `Result<(), E>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a valid return type for a websocket endpoint or section",
    label = "expected `()` or `Result<(), wsock::Error>`",
    note = "return `()`, or `Result<(), wsock::Error>` to use `?`"
)]
pub trait Outcome {
    /// The value of a successful end.
    fn ok() -> Self;
    /// Whether to go on (`Continue`) or end with this value (`Break`).
    fn branch(self) -> ControlFlow<Self>
    where
        Self: Sized;
    /// Success, or the error to log.
    fn into_result(self) -> Result<(), Error>;
}

impl Outcome for () {
    fn ok() -> Self {}
    fn branch(self) -> ControlFlow<Self> {
        ControlFlow::Continue(())
    }
    fn into_result(self) -> Result<(), Error> {
        Ok(())
    }
}

impl<E: Into<Error>> Outcome for Result<(), E> {
    fn ok() -> Self {
        Ok(())
    }
    fn branch(self) -> ControlFlow<Self> {
        match self {
            Ok(()) => ControlFlow::Continue(()),
            Err(error) => ControlFlow::Break(Err(error)),
        }
    }
    fn into_result(self) -> Result<(), Error> {
        self.map_err(Into::into)
    }
}
