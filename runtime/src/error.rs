//! The one error type of user code, and the errors the runtime reports.

use std::any::Any;
use std::fmt;

/// The error type of endpoint code: any error converts into it with `?`.
///
/// An endpoint function or section that returns `Result<(), wsock::Error>` can use `?` on any
/// error type without annotations, because there is exactly one error type to infer. An `Err`
/// from a section closes the connection with 1011 (internal error) and logs the error.
///
/// ```
/// fn parse_seat(text: &str) -> Result<u16, wsock::Error> {
///     let seat: u16 = text.trim().parse()?; // a `ParseIntError` becomes a `wsock::Error`
///     if seat == 0 {
///         return Err(wsock::Error::msg("seats are numbered from 1"));
///     }
///     Ok(seat)
/// }
/// assert_eq!(parse_seat(" 7 ").unwrap(), 7);
/// assert_eq!(parse_seat("0").unwrap_err().to_string(), "seats are numbered from 1");
/// assert!(parse_seat("x").is_err());
/// ```
pub struct Error(Box<dyn std::error::Error + Send + Sync + 'static>);

impl Error {
    /// An error with the given message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error(message.to_string().into())
    }

    /// Wraps any error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error(Box::new(error))
    }

    /// The wrapped error, for downcasting or walking its sources.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }

    /// Unwraps the boxed error.
    pub fn into_inner(self) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self.0
    }
}

// `Error` deliberately does not implement `std::error::Error`: this blanket conversion, which
// makes `?` work on every error type, would otherwise overlap with `From<T> for T`.
impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(error: E) -> Self {
        Error(Box::new(error))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// The connection is closed: returned by [`Out::send`](crate::Out::send) once nothing more
/// can be sent.
///
/// ```no_run
/// use wsock::prelude::*;
///
/// /// Streams numbers until the client leaves: `send` fails with `Closed` then.
/// #[websocket("/count")]
/// fn count(out: Out<String>) {
///     let out = out.clone();
///     tokio::spawn(async move {
///         let mut n = 0u64;
///         while out.send(n.to_string()).await.is_ok() {
///             n += 1;
///         }
///     });
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the websocket connection is closed")
    }
}

impl std::error::Error for Closed {}

/// How a section failed.
#[doc(hidden)]
pub enum Failure {
    Error(Error),
    Panic(Box<dyn Any + Send>),
}

/// The text of a panic payload.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(text) = panic.downcast_ref::<&'static str>() {
        text
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text
    } else {
        "a non-text panic payload"
    }
}
