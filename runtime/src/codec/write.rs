//! Writing: frames queued as a header and a shared payload, written out together, one system
//! call for a batch: small batches copied into one buffer, larger ones with vectored writes
//! (no copy of the payload into a buffer of ours).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;

use crate::codec::frame::{Header, MAX_HEADER, OpCode, apply_mask};

/// One frame waiting to be written.
struct Pending {
    head: [u8; MAX_HEADER],
    head_len: u8,
    payload: Bytes,
}

impl Pending {
    fn len(&self) -> usize {
        usize::from(self.head_len) + self.payload.len()
    }
}

/// Frames to write, and how far into the first one the socket has taken.
#[derive(Default)]
pub(crate) struct Writer {
    frames: VecDeque<Pending>,
    /// Bytes of the first frame already written.
    written: usize,
    /// The client's side masks its frames.
    mask: Option<MaskKeys>,
}

/// The most frames one write hands to the socket.
const BATCH: usize = 64;

/// Up to this many frames, a write gathers them in a small array.
const FEW: usize = 4;

/// Up to this many bytes in all, a write copies the frames into one buffer.
const SMALL: usize = 2048;

thread_local! {
    /// The buffer small batches are copied into, one per thread.
    static COPY: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(SMALL));
}

impl Writer {
    /// A writer for the client's side (the test kit's), which masks every frame with a
    /// fresh key.
    #[cfg_attr(not(feature = "test"), allow(dead_code))]
    pub(crate) fn masking() -> Self {
        Writer {
            mask: Some(MaskKeys::new()),
            ..Writer::default()
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Queues a frame.
    pub(crate) fn push(&mut self, opcode: OpCode, rsv1: bool, payload: Bytes) {
        let mask = self.mask.as_mut().map(MaskKeys::next);
        let payload = match mask {
            Some(key) => {
                let mut masked = payload.to_vec();
                apply_mask(&mut masked, key, 0);
                Bytes::from(masked)
            }
            None => payload,
        };
        let header = Header {
            fin: true,
            rsv1,
            opcode,
            mask,
            len: payload.len() as u64,
        };
        let mut head = [0u8; MAX_HEADER];
        let head_len = header.encode(&mut head) as u8;
        self.frames.push_back(Pending {
            head,
            head_len,
            payload,
        });
    }

    /// Writes what is queued; `Ready(Ok)` once all of it is written.
    pub(crate) fn poll_flush<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.frames.is_empty() {
            let written = if self.is_small() {
                COPY.with_borrow_mut(|copy| {
                    copy.clear();
                    self.copy_into(copy);
                    Pin::new(&mut *io).poll_write(cx, copy)
                })
            } else if self.frames.len() <= FEW {
                // Most of the other flushes carry a few frames: their slices fit a small array.
                let (slices, count) = self.gather::<{ 2 * FEW }>();
                Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count])
            } else {
                let (slices, count) = self.gather::<{ 2 * BATCH }>();
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
        // Streams that buffer (TLS) hand their bytes to the socket here.
        Pin::new(io).poll_flush(cx)
    }

    /// Whether what is queued is small enough to be copied into one buffer and written with
    /// one plain write (`send`), which costs the kernel less than a vectored one (`writev`),
    /// more than copying a few KiB saves (measured: about 0.3 us of server CPU per message at
    /// one message in flight).
    fn is_small(&self) -> bool {
        let mut total = 0;
        for frame in &self.frames {
            total += frame.len();
            if total - self.written > SMALL {
                return false;
            }
        }
        true
    }

    /// Calls `each` with the unwritten bytes of the first `frames` queued frames, header and
    /// payload apart, in order (empty parts left out).
    fn each_unwritten<'a>(&'a self, frames: usize, mut each: impl FnMut(&'a [u8])) {
        let mut skip = self.written;
        for frame in self.frames.iter().take(frames) {
            for part in [
                &frame.head[..usize::from(frame.head_len)],
                &frame.payload[..],
            ] {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                each(&part[skip..]);
                skip = 0;
            }
        }
    }

    /// Appends the unwritten bytes of every queued frame to `copy`.
    fn copy_into(&self, copy: &mut Vec<u8>) {
        self.each_unwritten(self.frames.len(), |part| copy.extend_from_slice(part));
    }

    /// The unwritten parts of the first `N / 2` frames, as slices for one vectored write.
    fn gather<const N: usize>(&self) -> ([IoSlice<'_>; N], usize) {
        let mut slices = [IoSlice::new(&[]); N];
        let mut count = 0;
        self.each_unwritten(N / 2, |part| {
            slices[count] = IoSlice::new(part);
            count += 1;
        });
        (slices, count)
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let first = self
                .frames
                .front()
                .expect("written bytes belong to a frame");
            let left = first.len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.written = 0;
            self.frames.pop_front();
        }
    }

    /// Drops the frames the socket has not started on (the peer stopped reading): a frame
    /// partly written is kept, so that what follows it is still a valid stream.
    pub(crate) fn drop_unstarted(&mut self) {
        let keep = usize::from(self.written > 0);
        self.frames.truncate(keep);
    }

    /// Drops what is queued (the socket broke).
    pub(crate) fn clear(&mut self) {
        self.frames.clear();
        self.written = 0;
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
    use crate::codec::read::{Event, Limits, Reader};
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
    #[test]
    fn frames_written_in_pieces_read_back_whole() {
        for masked in [false, true] {
            for step in [1, 5, 1000, usize::MAX] {
                let mut writer = if masked {
                    Writer::masking()
                } else {
                    Writer::default()
                };
                // Under SMALL bytes in all the frames are copied into one write; over it, the
                // writes are vectored.
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
                    assert_eq!(socket.vectored > 0, size > SMALL);
                    let limits = Limits {
                        max_frame: 1 << 20,
                        max_message: 1 << 20,
                    };
                    let mut reader = Reader::new(masked, limits, None);
                    let mut events = Vec::new();
                    let mut at = 0;
                    while at < socket.out.len() {
                        let (taken, event) = reader.feed(&socket.out[at..]).unwrap();
                        at += taken;
                        events.extend(event);
                    }
                    assert_eq!(
                        events,
                        [
                            Event::Message(Message::text("hello")),
                            Event::Message(Message::Binary(big)),
                            Event::Ping(Bytes::new()),
                        ],
                        "masked {masked}, step {step}, size {size}"
                    );
                }
            }
        }
    }
}
