//! A connection's output: messages taken from its queue, framed (compressed when that was
//! agreed, a published message once per window for all its subscribers) into the codec's
//! writer, and written out.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::codec::deflate::{self, Contexts, Deflate};
use crate::codec::frame::OpCode;
use crate::codec::socket::{Socket, WriteNow};
use crate::codec::write::Writer;
use crate::codec::{Conflated, Outgoing, Published, Role};
use crate::mailbox::{CloseRequest, Writes};
use crate::message::{CloseCode, Message};
use crate::stats;

pub(super) struct Output {
    writer: Writer,
    /// Compression agreed with the client, if any (the endpoint allowing it), with the
    /// compressor it keeps between messages. Boxed: a connection without compression holds a
    /// null pointer.
    deflate: Option<Box<Compressing>>,
    /// Messages taken from the queue, not yet framed; and the endpoint's own writes made while
    /// the socket is full or others wait here.
    pub(super) pending: VecDeque<Outgoing>,
    /// Budget units spent framing the endpoint's own writes, made while the connection's task
    /// runs its code, for the driver to count.
    pub(super) owed: usize,
    /// The endpoint's own writes framed at once since the driver's last framing pass.
    pub(super) framed_at_once: usize,
    /// A close asked for, sent once `pending` is written.
    pub(super) close: Option<CloseRequest>,
    /// The socket took only part of what was written: write it out before framing more, so
    /// that a client that does not read fills the outbound queue (and meets its limit).
    pub(super) blocked: bool,
    /// The client stopped reading and what it had not started to get was dropped.
    pub(super) abandoned: bool,
    /// Messages and bytes framed since the driver last handed them to the metrics.
    pub(super) sent: stats::Tally,
}

impl Output {
    pub(super) fn new(deflate: Option<Deflate>) -> Self {
        Output {
            writer: Writer::new(Role::Server),
            deflate: deflate.map(|deflate| {
                Box::new(Compressing {
                    deflate,
                    contexts: Contexts::default(),
                })
            }),
            pending: VecDeque::new(),
            owed: 0,
            framed_at_once: 0,
            close: None,
            blocked: false,
            abandoned: false,
            sent: stats::Tally::default(),
        }
    }

    /// Nothing framed waits to be written.
    pub(super) fn is_written(&self) -> bool {
        self.writer.is_empty()
    }

    /// Frames one message: compressed when compression was agreed and the message is long
    /// enough; a published message is compressed once for all its subscribers. Returns the
    /// work it took, in units of the wake-up's budget.
    #[inline(always)]
    pub(super) fn frame(&mut self, outgoing: Outgoing) -> usize {
        let (message, published) = match outgoing {
            Outgoing::Message(message) => (message, None),
            Outgoing::Published(published) => (published.message.clone(), Some(published)),
            Outgoing::Newest(newest) => return self.frame_newest(&*newest),
        };
        self.frame_message(message, published)
    }

    /// Frames what a latest-only subscription holds now: the newest message (per key).
    #[inline(never)]
    fn frame_newest(&mut self, newest: &dyn Conflated) -> usize {
        let mut taken = Vec::new();
        newest.take(&mut taken);
        let mut units = 0;
        for published in taken {
            units += self.frame_message(published.message.clone(), Some(published));
        }
        units
    }

    #[inline(always)]
    fn frame_message(&mut self, message: Message, published: Option<Arc<Published>>) -> usize {
        let (opcode, payload) = match message {
            Message::Text(text) => (OpCode::Text, text.into_bytes()),
            Message::Binary(bytes) => (OpCode::Binary, bytes),
        };
        self.sent.add(payload.len());
        let Some(Compressing { deflate, contexts }) = self
            .deflate
            .as_deref_mut()
            .filter(|c| payload.len() >= c.deflate.threshold)
        else {
            self.writer.push(opcode, false, payload);
            return 1;
        };
        let units = 1 + payload.len() / 1024;
        let compressed = match published {
            Some(published) if !deflate.server_takeover => deflated(&published, deflate, &payload),
            _ => deflate::compress(&payload, deflate, contexts),
        };
        match compressed {
            Some(compressed) => self.writer.push(opcode, true, compressed),
            None => self.writer.push(opcode, false, payload),
        }
        units
    }

    /// Frames everything taken from the queue, whatever the budget: the endpoint's answers
    /// to the messages read before the connection's end, which go out before the close.
    pub(super) fn frame_pending(&mut self) {
        while let Some(outgoing) = self.pending.pop_front() {
            self.frame(outgoing);
        }
    }

    /// Frames a control frame (ping, pong, close).
    pub(super) fn control(&mut self, opcode: OpCode, payload: Bytes) {
        self.writer.push(opcode, false, payload);
    }

    /// Frames a close with `code` and `reason`.
    pub(super) fn close_frame(&mut self, code: CloseCode, reason: &str) {
        let mut payload = Vec::with_capacity(2 + reason.len());
        payload.extend_from_slice(&code.as_u16().to_be_bytes());
        payload.extend_from_slice(reason.as_bytes());
        self.control(OpCode::Close, payload.into());
    }

    /// The client stopped reading: what it has not started to get is dropped (a frame under
    /// way is finished, so that the close that goes next is read as one).
    pub(super) fn abandon(&mut self) {
        self.abandoned = true;
        self.pending.clear();
        self.writer.drop_unstarted();
    }

    /// Drops everything: nothing more is written.
    pub(super) fn clear(&mut self) {
        self.writer.clear();
        self.blocked = false;
        self.pending.clear();
        self.close = None;
    }

    /// Writes out what is framed; what the socket does not take now waits for it (this task
    /// is woken when it can take more).
    pub(super) fn flush<S: Socket>(&mut self, io: &mut S, cx: &mut Context<'_>) -> io::Result<()> {
        match self.writer.poll_flush(&mut WriteNow(io), cx) {
            Poll::Ready(Ok(())) => self.blocked = false,
            Poll::Pending => self.blocked = true,
            Poll::Ready(Err(error)) => return Err(error),
        }
        Ok(())
    }
}

/// Compression agreed with the client, and its compressor.
struct Compressing {
    deflate: Deflate,
    /// Kept between messages, with context takeover.
    contexts: Contexts,
}

/// The endpoint's own writes, made while the connection's task runs its code (see
/// `mailbox::running`): framed at once, unless others wait to be framed first or the socket
/// is full (then listed). Either way they count toward the queue's limit until the driver's
/// next framing pass, as they did when all were listed. So a section that answers a message
/// costs no list and no buffer of its own.
impl Writes for Output {
    #[inline(always)]
    fn take(&mut self, message: Outgoing, limit: usize) -> bool {
        if self.framed_at_once + self.pending.len() >= limit {
            return false;
        }
        if self.pending.is_empty() && !self.blocked {
            self.framed_at_once += 1;
            self.owed += self.frame(message);
        } else {
            self.pending.push_back(message);
        }
        true
    }
}

/// A published message's compressed payload for this connection's window: made by the
/// first subscriber that needs it, shared by the others.
fn deflated(published: &Published, deflate: &Deflate, payload: &Bytes) -> Option<Bytes> {
    published.deflated(deflate.window, || {
        deflate::compress(payload, deflate, &mut Contexts::default())
    })
}
