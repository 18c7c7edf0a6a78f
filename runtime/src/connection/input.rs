//! A connection's input: bytes from the socket into the codec's reader, events out (a
//! message, a control frame, the end).

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::ReadBuf;

use crate::codec::Role;
use crate::codec::deflate::Deflate;
use crate::codec::read::{Incoming, Limits, ReadError, Reader};
use crate::codec::socket::Socket;
use crate::message::CloseCode;
use crate::stats;

/// A payload at least this long still to come is read straight into its message.
const DIRECT_MIN: usize = 8 << 10;

thread_local! {
    /// Where socket reads land, shared by the thread's connections: an idle connection owns
    /// no read buffer; a busy one keeps a view of what it read and has not parsed yet, and
    /// the bytes of a frame not yet whole. Messages in whole frames are slices of it: once
    /// they are all dropped (written out, say), a read reuses the same memory, so reading
    /// allocates nothing.
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Why reading stopped.
pub(super) enum ReadEnd {
    /// The peer broke the protocol: close with this code and reason.
    Fail(CloseCode, &'static str),
    /// The stream ended or failed: nothing more can be read.
    Gone(Option<io::Error>),
}

impl From<ReadError> for ReadEnd {
    fn from(error: ReadError) -> Self {
        let (code, reason) = error.close();
        ReadEnd::Fail(code, reason)
    }
}

pub(super) struct Input {
    reader: Reader,
    /// What was read and not parsed yet: a view of the thread's read buffer (or of the bytes
    /// the client sent right behind its HTTP request), parsed a message at a time. Empty, and
    /// holding nothing, whenever the connection has taken everything it read.
    buffered: BytesMut,
    /// The socket had nothing to read in this wake-up: the task is woken when it has, so
    /// asking again before then is a wasted look.
    drained: bool,
    /// Frames read so far (the keep-alive counts them).
    pub(super) frames_read: u64,
    /// Messages and bytes received since the driver last handed them to the metrics.
    pub(super) received: stats::Tally,
}

impl Input {
    /// `read`: bytes the client sent right behind its HTTP request.
    pub(super) fn new(read: BytesMut, limits: Limits, deflate: Option<Deflate>) -> Self {
        Input {
            reader: Reader::new(Role::Server, limits, deflate),
            buffered: read,
            drained: false,
            frames_read: 0,
            received: stats::Tally::default(),
        }
    }

    /// The limit of the endpoint's inbound type, set before its first message is read.
    pub(super) fn set_max_message(&mut self, max_message: usize) {
        self.reader.set_max_message(max_message);
    }

    /// The frame and message limits in force.
    pub(super) fn limits(&self) -> Limits {
        self.reader.limits()
    }

    /// A new wake-up: the socket may have something to read again.
    pub(super) fn woken(&mut self) {
        self.drained = false;
    }

    /// The next event: from bytes already read, or from the socket.
    // Called once, in the driver's read loop: inlined there, as it was written there.
    #[inline(always)]
    pub(super) fn next<S: Socket>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Incoming, ReadEnd>> {
        loop {
            if !self.buffered.is_empty() {
                let event = self.reader.feed_from(&mut self.buffered)?;
                if self.buffered.is_empty() {
                    // Lets go of the read buffer, which the next read may then reuse.
                    self.buffered = BytesMut::new();
                }
                if let Some(event) = event {
                    match &event {
                        // Nothing after a close frame is read.
                        Incoming::Close(_) => self.buffered = BytesMut::new(),
                        Incoming::Message(message) => self.received.add(message.as_bytes().len()),
                        _ => {}
                    }
                    self.frames_read += 1;
                    return Poll::Ready(Ok(event));
                }
                continue;
            }
            // A large payload under way: read it straight into its message.
            if let Some((buf, want)) = self.reader.direct(DIRECT_MIN) {
                let spare = &mut buf.spare_capacity_mut()[..want];
                let mut read = ReadBuf::uninit(spare);
                match Pin::new(&mut *io).poll_read(cx, &mut read) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(ReadEnd::Gone(Some(error)))),
                    Poll::Ready(Ok(())) => {}
                }
                let n = read.filled().len();
                if n == 0 {
                    return Poll::Ready(Err(ReadEnd::Gone(None)));
                }
                // SAFETY: the read initialized these `n` bytes of spare capacity.
                unsafe { buf.set_len(buf.len() + n) };
                if let Some(event) = self.reader.filled(n)? {
                    if let Incoming::Message(message) = &event {
                        self.received.add(message.as_bytes().len());
                    }
                    self.frames_read += 1;
                    return Poll::Ready(Ok(event));
                }
                continue;
            }
            if self.drained {
                return Poll::Pending;
            }
            let read = SCRATCH.with_borrow_mut(|chunk| match io.poll_read_into(cx, chunk) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(error)) => Poll::Ready(Err(ReadEnd::Gone(Some(error)))),
                Poll::Ready(Ok(0)) => Poll::Ready(Err(ReadEnd::Gone(None))),
                // This connection's view of what it read; the buffer keeps its room.
                Poll::Ready(Ok(_)) => Poll::Ready(Ok(chunk.split())),
            });
            match read {
                Poll::Ready(Ok(read)) => self.buffered = read,
                Poll::Ready(Err(end)) => return Poll::Ready(Err(end)),
                Poll::Pending => {
                    self.drained = true;
                    return Poll::Pending;
                }
            }
        }
    }
}
