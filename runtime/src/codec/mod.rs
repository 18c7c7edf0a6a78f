//! wsock's own message layer (RFC 6455 framing, RFC 7692 compression): frames parsed and
//! written here, messages assembled and checked as their bytes arrive, compression
//! negotiated and applied per message.

pub(crate) mod deflate;
pub(crate) mod frame;
pub(crate) mod read;
pub(crate) mod socket;
pub(crate) mod utf8;
pub(crate) mod write;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::message::Message;

/// Which end of the connection a reader or writer is on: a client masks the frames it sends
/// and the server requires them masked; the server's frames are never masked.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Role {
    Server,
    /// The test kit's client.
    #[cfg_attr(not(any(test, feature = "test")), allow(dead_code))]
    Client,
}

/// What a connection's outbound queue holds.
pub(crate) enum Outgoing {
    /// A message for this connection (`Out::write`).
    Message(Message),
    /// A message published to a topic: shared by every subscriber, and compressed at most
    /// once for all of those that agreed on the same window.
    Published(Arc<Published>),
    /// The newest published messages a latest-only subscription holds (one per key), taken
    /// only when framed: whatever was published meanwhile replaced what waited.
    Newest(Arc<dyn Conflated>),
}

/// Where a latest-only subscription keeps the newest messages while its connection is backed
/// up (see `delivery`).
pub(crate) trait Conflated: Send + Sync {
    /// Takes what waits, oldest key first.
    fn take(&self, into: &mut Vec<Arc<Published>>);
}

impl From<Message> for Outgoing {
    fn from(message: Message) -> Self {
        Outgoing::Message(message)
    }
}

/// A published message, with its compressed forms, made on first need.
pub(crate) struct Published {
    pub(crate) message: Message,
    /// By window bits, 9 to 15: the compressed payload, or `None` when compressing did not
    /// make it smaller.
    deflated: [OnceLock<Option<Bytes>>; 7],
}

impl Published {
    pub(crate) fn new(message: Message) -> Self {
        Published {
            message,
            deflated: Default::default(),
        }
    }

    /// The payload compressed for `window`, compressing it with `compress` the first time.
    pub(crate) fn deflated(
        &self,
        window: u8,
        compress: impl FnOnce() -> Option<Bytes>,
    ) -> Option<Bytes> {
        let slot = &self.deflated[usize::from(window.clamp(9, 15) - 9)];
        slot.get_or_init(compress).clone()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn a_published_message_is_compressed_once_per_window() {
        let published = Published::new(Message::text("a published message"));
        let made = Cell::new(0);
        let compress = |bytes: &'static [u8]| {
            made.set(made.get() + 1);
            Some(Bytes::from_static(bytes))
        };
        assert_eq!(published.deflated(15, || compress(b"15")).unwrap(), "15");
        assert_eq!(published.deflated(15, || compress(b"again")).unwrap(), "15");
        assert_eq!(made.get(), 1);
        // Another window is another form; 8 bits are compressed as 9 (RFC 7692 §7.1.2.1).
        assert_eq!(published.deflated(9, || compress(b"9")).unwrap(), "9");
        assert_eq!(published.deflated(8, || compress(b"8")).unwrap(), "9");
        assert_eq!(made.get(), 2);
        // Not smaller once compressed: remembered too, as `None`.
        let incompressible = Published::new(Message::text("x"));
        assert_eq!(incompressible.deflated(15, || None), None);
        assert_eq!(incompressible.deflated(15, || compress(b"late")), None);
        assert_eq!(made.get(), 2);
    }
}
