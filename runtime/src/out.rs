//! `Out<T>`: the outbound handle of one connection.

use std::fmt;
use std::sync::Arc;

use crate::codec::Outgoing;
use crate::endpoint::{Accept, FromRequest};
use crate::error::{Closed, Error};
use crate::mailbox::Mailbox;
use crate::message::{CloseCode, IntoMessage, Message};
use crate::request::{Reject, Request};
use crate::topics::{Recipient, Sealed, Subscriber};

/// Sends messages of type `T` to one connection.
///
/// Take it as a parameter of the endpoint function (`out: Out<String>`). It is cheap to clone,
/// `Send + Sync + 'static`: move it into a spawned task or keep it in shared state (a chat
/// room's member list) and write from anywhere.
///
/// Messages go through a bounded queue that the connection writes in order, several at a time.
/// [`write`](Out::write) never waits: a client that stops reading until the queue is full is
/// closed with 1008 (policy violation) rather than growing the server's memory.
/// [`send`](Out::send) waits for room instead, for producers that should slow down to the
/// client's pace.
///
/// ```no_run
/// use std::time::Duration;
/// use wsock::prelude::*;
///
/// /// Sends the time every second until the client leaves.
/// #[websocket("/clock")]
/// fn clock(out: Out<String>) {
///     let ticker = out.clone();
///     tokio::spawn(async move {
///         let mut seconds = 0u64;
///         // `send` fails once the connection is closed, which ends the task.
///         while ticker.send(format!("{seconds} s")).await.is_ok() {
///             tokio::time::sleep(Duration::from_secs(1)).await;
///             seconds += 1;
///         }
///     });
/// }
/// ```
pub struct Out<T> {
    mailbox: Arc<Mailbox>,
    /// `T`'s encoder, taken where the handle is made, the one place that requires
    /// `T: IntoMessage`: the methods need no bound, so a type that is not a message type is
    /// one error, at the parameter, and not one more at every `write`. (A `fn(T)`, it holds no
    /// `T`: the handle is `Send + Sync` whatever `T` is.)
    encode: fn(T) -> Result<Message, Error>,
}

impl<T: IntoMessage> Out<T> {
    pub(crate) fn new(mailbox: Arc<Mailbox>) -> Self {
        Out {
            mailbox,
            encode: T::into_message,
        }
    }
}

impl<T> Out<T> {
    /// Queues a message; never waits.
    ///
    /// After the connection is closed, or a close was asked for, this does nothing (the
    /// message is dropped). If the queue is full, the client is not reading: the queued
    /// messages are dropped and the connection is closed with 1008. A message that cannot be
    /// encoded (a `Json` value that does not serialize) closes the connection with 1011.
    pub fn write(&self, message: impl Into<T>) {
        if let Some(message) = self.encode(message.into()) {
            self.mailbox.push(Outgoing::Message(message));
        }
    }

    /// Queues a message, waiting while the queue is full (backpressure).
    ///
    /// Returns [`Closed`] if the connection is closed or closing; the message is then dropped.
    pub async fn send(&self, message: impl Into<T>) -> Result<(), Closed> {
        let message = self.encode(message.into()).ok_or(Closed)?;
        self.mailbox.push_wait(Outgoing::Message(message)).await
    }

    /// The message to send; one that cannot be encoded closes the connection with 1011.
    fn encode(&self, message: T) -> Option<Message> {
        match (self.encode)(message) {
            Ok(message) => Some(message),
            Err(error) => {
                let endpoint = self.mailbox.endpoint;
                tracing::error!(endpoint, %error, "a message could not be encoded; closing with 1011");
                self.mailbox
                    .close(CloseCode::INTERNAL_ERROR, "a message could not be encoded");
                None
            }
        }
    }

    /// Closes the connection normally (1000) once the queued messages are written.
    pub fn close(&self) {
        self.close_with(CloseCode::NORMAL, "");
    }

    /// Closes the connection with a code and reason once the queued messages are written.
    ///
    /// The reason is cut to 123 bytes, the most a close frame carries. Only the first close
    /// counts.
    pub fn close_with(&self, code: impl Into<CloseCode>, reason: &str) {
        self.mailbox.close(code.into(), reason);
    }

    /// Whether the connection is closed or closing: writes are then dropped.
    pub fn is_closed(&self) -> bool {
        self.mailbox.is_shut()
    }
}

impl<T> Clone for Out<T> {
    fn clone(&self) -> Self {
        Out {
            mailbox: Arc::clone(&self.mailbox),
            encode: self.encode,
        }
    }
}

impl<T> fmt::Debug for Out<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Out")
            .field("endpoint", &self.mailbox.endpoint)
            .field("closed", &self.mailbox.is_shut())
            .finish()
    }
}

/// `Out<T>` is extracted as a parameter of an endpoint function only, where it belongs to the
/// connection being accepted; a guard that asks for one from a bare request is refused.
impl<T: IntoMessage> FromRequest for Out<T> {
    async fn from_request(_: &Request) -> Result<Self, Reject> {
        tracing::error!("`Out` is an endpoint parameter; it cannot be extracted from a request");
        Err(Reject::internal_error())
    }

    async fn from_accept(cx: &Accept) -> Result<Self, Reject> {
        Ok(Out::new(Arc::clone(cx.mailbox())))
    }
}

impl<T> Sealed for Out<T> {}

impl<T> Subscriber<T> for Out<T> {
    fn recipient(&self) -> Recipient<'_> {
        Recipient(&self.mailbox)
    }
}
