//! Writing: frames encoded into one buffer as they are queued (headers, and the payloads of
//! small frames copied in), so that a batch goes out with one plain write; a large payload is
//! not copied but written from its shared bytes with a vectored write, in its place.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;

use crate::codec::Role;
use crate::codec::frame::{Header, MAX_HEADER, OpCode, apply_mask};

/// Frames to write.
///
/// The stream to write is `out` with each of `inserts`' payloads inserted at its place:
/// `out[..at1]`, `payload1`, `out[at1..at2]`, `payload2`, .. , the rest of `out`.
#[derive(Default)]
pub(crate) struct Writer {
    /// Encoded bytes: every header, and the payloads of small frames.
    out: Vec<u8>,
    /// Bytes of `out` written.
    written: usize,
    /// Large payloads, each to be written after `out[..at]`, with how much of it is written.
    inserts: VecDeque<Insert>,
    /// The client's side masks its frames.
    mask: Option<MaskKeys>,
}

struct Insert {
    at: usize,
    payload: Bytes,
    written: usize,
}

/// Payloads up to this long are copied into the buffer: one plain write (`send`) costs the
/// kernel less than a vectored one (`writev`), more than copying a few KiB costs.
const COPY_MAX: usize = 2048;

/// The most pieces one vectored write hands to the socket.
const SLICES: usize = 64;

/// A buffer kept for more than this is freed once written rather than kept for reuse.
const KEEP_MAX: usize = 64 << 10;

thread_local! {
    /// An empty buffer, reused by the next connection of this thread that writes: a
    /// connection holds a buffer only while it has something to write.
    static SPARE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Writer {
    /// A writer for `role`'s side: the client's masks every frame with a fresh key.
    pub(crate) fn new(role: Role) -> Self {
        Writer {
            mask: (role == Role::Client).then(MaskKeys::new),
            ..Writer::default()
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.written == self.out.len() && self.inserts.is_empty()
    }

    /// Queues a frame.
    pub(crate) fn push(&mut self, opcode: OpCode, rsv1: bool, payload: Bytes) {
        if self.out.capacity() == 0 {
            self.out = SPARE.with_borrow_mut(std::mem::take);
        }
        let mask = self.mask.as_mut().map(MaskKeys::next);
        if mask.is_none() && payload.len() < 126 {
            // The usual frame: a two-byte header and a payload copied in, after one check for
            // room.
            let first = 0x80 | (u8::from(rsv1) << 6) | opcode.bits();
            let (len, n) = (self.out.len(), payload.len());
            self.out.reserve(2 + n);
            // SAFETY: `reserve` made room for `2 + n` bytes past the length; they are written
            // (two, then `n` from the payload, which cannot overlap the buffer) before the
            // length takes them in.
            unsafe {
                let at = self.out.as_mut_ptr().add(len);
                at.write(first);
                at.add(1).write(n as u8);
                std::ptr::copy_nonoverlapping(payload.as_ptr(), at.add(2), n);
                self.out.set_len(len + 2 + n);
            }
            return;
        }
        let header = Header {
            fin: true,
            rsv1,
            opcode,
            mask,
            len: payload.len() as u64,
        };
        let mut head = [0u8; MAX_HEADER];
        let head_len = header.encode(&mut head);
        self.out.extend_from_slice(&head[..head_len]);
        match mask {
            // Masked payloads are copied, and masked where they land.
            Some(key) => {
                let start = self.out.len();
                self.out.extend_from_slice(&payload);
                apply_mask(&mut self.out[start..], key, 0);
            }
            None if payload.len() <= COPY_MAX => self.out.extend_from_slice(&payload),
            None => self.inserts.push_back(Insert {
                at: self.out.len(),
                payload,
                written: 0,
            }),
        }
    }

    /// Writes what is queued; `Ready(Ok)` once all of it is written.
    pub(crate) fn poll_flush<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            let written = if self.inserts.is_empty() {
                Pin::new(&mut *io).poll_write(cx, &self.out[self.written..])
            } else {
                let (slices, count) = self.gather();
                Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count])
            };
            let n = match written {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            };
            self.advance(n);
        }
        self.recycle();
        // Streams that buffer (TLS) hand their bytes to the socket here.
        Pin::new(io).poll_flush(cx)
    }

    /// The unwritten pieces in order, as slices for one vectored write.
    fn gather(&self) -> ([IoSlice<'_>; SLICES], usize) {
        let mut slices = [IoSlice::new(&[]); SLICES];
        let mut count = 0;
        let mut from = self.written;
        for insert in &self.inserts {
            if count + 2 > SLICES {
                return (slices, count);
            }
            if insert.at > from {
                slices[count] = IoSlice::new(&self.out[from..insert.at]);
                count += 1;
            }
            slices[count] = IoSlice::new(&insert.payload[insert.written..]);
            count += 1;
            from = insert.at;
        }
        if from < self.out.len() && count < SLICES {
            slices[count] = IoSlice::new(&self.out[from..]);
            count += 1;
        }
        (slices, count)
    }

    /// Takes `n` written bytes off the front: `out` up to the first insert, the insert, ..
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let until = self
                .inserts
                .front()
                .map_or(self.out.len(), |insert| insert.at);
            let from_out = (until - self.written).min(n);
            self.written += from_out;
            n -= from_out;
            if n == 0 {
                return;
            }
            let insert = self
                .inserts
                .front_mut()
                .expect("written bytes belong to the stream");
            let left = insert.payload.len() - insert.written;
            if n < left {
                insert.written += n;
                return;
            }
            n -= left;
            self.inserts.pop_front();
        }
    }

    /// All written: the buffer goes back to the thread for the next writer.
    fn recycle(&mut self) {
        if self.out.capacity() == 0 {
            return;
        }
        let mut out = std::mem::take(&mut self.out);
        self.written = 0;
        if self.inserts.capacity() != 0 {
            self.inserts = VecDeque::new();
        }
        if out.capacity() <= KEEP_MAX {
            out.clear();
            SPARE.with_borrow_mut(|spare| {
                if spare.capacity() == 0 {
                    *spare = out;
                }
            });
        }
    }

    /// Drops the frames the socket has not started on (the peer stopped reading): a frame
    /// partly written is kept, so that what follows it is still a valid stream.
    pub(crate) fn drop_unstarted(&mut self) {
        // Walks the frames by their headers: each starts in `out`, and its payload follows
        // there or is the next insert.
        let (mut at, mut inserts) = (0, 0);
        while at < self.out.len() {
            if at >= self.written {
                self.out.truncate(at);
                self.inserts.truncate(inserts);
                return;
            }
            let Ok(Some((header, head_len))) = Header::parse(&self.out[at..]) else {
                return;
            };
            let payload_at = at + head_len;
            if self
                .inserts
                .get(inserts)
                .is_some_and(|insert| insert.at == payload_at)
            {
                inserts += 1;
                at = payload_at;
            } else {
                at = payload_at + header.len as usize;
            }
        }
    }

    /// Drops what is queued (the socket broke).
    pub(crate) fn clear(&mut self) {
        self.out.clear();
        self.written = 0;
        self.inserts.clear();
    }
}

/// Mask keys for the client's side (RFC 6455 §5.3 asks for unpredictable ones: the test
/// client needs them to be only valid, but a xorshift seeded per process is cheap anyway).
#[cfg_attr(not(feature = "test"), allow(dead_code))]
struct MaskKeys(u64);

#[cfg_attr(not(feature = "test"), allow(dead_code))]
impl MaskKeys {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u8(0);
        MaskKeys(hasher.finish() | 1)
    }

    fn next(&mut self) -> [u8; 4] {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 as u32).to_ne_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::read::{Incoming, Limits, Reader};
    use crate::message::Message;

    /// A socket that takes at most `step` bytes per write.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        /// Vectored writes taken.
        vectored: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let n = buf.len().min(this.step);
            this.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.vectored += 1;
            let mut left = this.step;
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(left);
                this.out.extend_from_slice(&buf[..take]);
                n += take;
                left -= take;
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// What a writer writes, masked or not, reads back as the same frames whatever the
    /// socket takes per write.
    /// What a reader on `role`'s side reads from `wire`: every event, in order.
    fn read_back(wire: &[u8], role: Role) -> Vec<Incoming> {
        let limits = Limits {
            max_frame: 1 << 20,
            max_message: 1 << 20,
        };
        let mut reader = Reader::new(role, limits, None);
        let mut events = Vec::new();
        let mut at = 0;
        while at < wire.len() {
            let (taken, event) = reader.feed(&wire[at..]).unwrap();
            at += taken;
            events.extend(event);
        }
        events
    }

    #[test]
    fn frames_written_in_pieces_read_back_whole() {
        for masked in [false, true] {
            for step in [1, 5, 1000, usize::MAX] {
                let mut writer = if masked {
                    Writer::new(Role::Client)
                } else {
                    Writer::new(Role::Server)
                };
                // Payloads up to COPY_MAX are copied into one plain write; a larger one goes
                // out from its own bytes, in a vectored write (masked ones are always copied).
                for size in [1_000, 70_000] {
                    let big = Bytes::from(vec![7u8; size]);
                    writer.push(OpCode::Text, false, Bytes::from_static(b"hello"));
                    writer.push(OpCode::Binary, false, big.clone());
                    writer.push(OpCode::Ping, false, Bytes::new());
                    let mut socket = Trickle {
                        out: Vec::new(),
                        step,
                        vectored: 0,
                    };
                    let mut cx = Context::from_waker(std::task::Waker::noop());
                    assert!(writer.poll_flush(&mut socket, &mut cx).is_ready());
                    assert!(writer.is_empty());
                    assert_eq!(socket.vectored > 0, size > COPY_MAX && !masked);
                    let reader = if masked { Role::Server } else { Role::Client };
                    assert_eq!(
                        read_back(&socket.out, reader),
                        [
                            Incoming::Message(Message::text("hello")),
                            Incoming::Message(Message::Binary(big)),
                            Incoming::Ping(Bytes::new()),
                        ],
                        "masked {masked}, step {step}, size {size}"
                    );
                }
            }
        }
    }

    /// Frames the socket has not started on are dropped, a frame partly written is kept
    /// whole, and what was queued before stays: the stream is still valid frames.
    #[test]
    fn unstarted_frames_are_dropped_and_a_started_one_is_kept() {
        let big = Bytes::from(vec![9u8; 10_000]);
        for step in [1, 3, 7, 200, 5_000, 10_010] {
            let mut writer = Writer::new(Role::Server);
            writer.push(OpCode::Text, false, Bytes::from_static(b"first"));
            writer.push(OpCode::Binary, false, big.clone());
            writer.push(OpCode::Text, false, Bytes::from_static(b"last"));
            let mut socket = Trickle {
                out: Vec::new(),
                step,
                vectored: 0,
            };
            let mut cx = Context::from_waker(std::task::Waker::noop());
            // One write of `step` bytes, then the peer stops reading.
            let (slices, count) = writer.gather();
            let n = Pin::new(&mut socket)
                .poll_write_vectored(&mut cx, &slices[..count])
                .map(Result::unwrap);
            let Poll::Ready(n) = n else { unreachable!() };
            writer.advance(n);
            writer.drop_unstarted();
            socket.step = usize::MAX;
            assert!(writer.poll_flush(&mut socket, &mut cx).is_ready());
            let events = read_back(&socket.out, Role::Client);
            // "first" is 7 bytes on the wire; the big frame 10,004.
            let expected = if step <= 7 {
                1
            } else if step < 10_011 {
                2
            } else {
                3
            };
            let all = [
                Incoming::Message(Message::text("first")),
                Incoming::Message(Message::Binary(big.clone())),
                Incoming::Message(Message::text("last")),
            ];
            assert_eq!(events, all[..expected], "step {step}");
        }
    }
}
