//! The socket as the WebSocket codec sees it: reads go through one scratch buffer per thread.
//!
//! tungstenite allocates its read buffer up front, zero-fills it, and never reads more than
//! its size at once: a large buffer costs every idle connection its size, a small one costs a
//! busy connection one system call per few bytes. So the codec gets a small buffer, and this
//! adapter sits between it and the socket: each socket read fills a 64 KiB buffer shared by
//! all the connections of the thread, the codec takes what fits, and only the rest is kept,
//! in a buffer of the connection's own that exists while those bytes wait and is freed once
//! the codec has taken them. An idle connection owns no read buffer; a busy one still reads
//! up to 64 KiB per system call.
//!
//! It reads the socket only when the codec asks, and at most 64 KiB ahead, so a connection
//! whose endpoint is busy still pushes back on its client through TCP.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes one socket read takes in.
const SCRATCH_LEN: usize = 64 << 10;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_LEN].into_boxed_slice());
}

/// A socket whose reads go through the thread's scratch buffer (see the module's docs), seen
/// through `std::io` by the task that polls it: a read or write that would wait returns
/// `WouldBlock` and registers that task, to be woken when the socket is ready.
///
/// The task's waker is kept here and refreshed once per poll ([`LeanIo::set_waker`]), so
/// reads and writes reach the socket without any waker proxy or atomic operation of their own.
pub(crate) struct LeanIo<S> {
    io: S,
    leftover: Leftover,
    /// The task polling the connection.
    waker: Waker,
}

/// Bytes read from the socket and not yet taken, from `taken` on; no allocation when none.
struct Leftover {
    bytes: Vec<u8>,
    taken: usize,
}

impl<S> LeanIo<S> {
    /// Wraps `io`; `read` holds bytes already read from it (past the HTTP request).
    pub(crate) fn new(io: S, read: Vec<u8>) -> Self {
        LeanIo {
            io,
            leftover: Leftover {
                bytes: read,
                taken: 0,
            },
            waker: Waker::noop().clone(),
        }
    }

    /// The stream.
    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// The task to wake when a read or write that returned `WouldBlock` can go on: called
    /// at the start of each poll of the connection. Clones only when the task changed.
    pub(crate) fn set_waker(&mut self, waker: &Waker) {
        if !self.waker.will_wake(waker) {
            self.waker.clone_from(waker);
        }
    }
}

impl Leftover {
    fn is_empty(&self) -> bool {
        self.taken == self.bytes.len()
    }

    /// Hands over what is kept; frees it once it is all taken.
    fn take(&mut self, buf: &mut [u8]) -> usize {
        let rest = &self.bytes[self.taken..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.taken += n;
        if self.taken == self.bytes.len() {
            self.bytes = Vec::new();
            self.taken = 0;
        }
        n
    }
}

/// Reads `io` into `buf`, through the thread's scratch buffer when `buf` is smaller than it;
/// what does not fit is kept in `leftover`.
fn poll_read_lean<S: AsyncRead + Unpin>(
    io: &mut S,
    leftover: &mut Leftover,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    if buf.len() >= SCRATCH_LEN {
        let mut into = ReadBuf::new(buf);
        return Pin::new(io)
            .poll_read(cx, &mut into)
            .map_ok(|()| into.filled().len());
    }
    let through_scratch = SCRATCH.try_with(|scratch| {
        // Taken by this thread already (a read inside a read) or gone (the thread is
        // ending): read straight into the caller's buffer instead.
        let Ok(mut scratch) = scratch.try_borrow_mut() else {
            return None;
        };
        let mut into = ReadBuf::new(&mut scratch[..]);
        Some(Pin::new(&mut *io).poll_read(cx, &mut into).map_ok(|()| {
            let read = into.filled();
            let n = read.len().min(buf.len());
            buf[..n].copy_from_slice(&read[..n]);
            if n < read.len() {
                leftover.bytes = read[n..].to_vec();
                leftover.taken = 0;
            }
            n
        }))
    });
    match through_scratch {
        Ok(Some(polled)) => polled,
        Ok(None) | Err(_) => {
            let mut into = ReadBuf::new(buf);
            Pin::new(io)
                .poll_read(cx, &mut into)
                .map_ok(|()| into.filled().len())
        }
    }
}

/// A `Pending` poll becomes `WouldBlock`: the task is registered and will be woken.
fn would_block<T>(polled: Poll<io::Result<T>>) -> io::Result<T> {
    match polled {
        Poll::Ready(result) => result,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

impl<S: AsyncRead + Unpin> Read for LeanIo<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if !self.leftover.is_empty() {
            return Ok(self.leftover.take(buf));
        }
        let mut cx = Context::from_waker(&self.waker);
        would_block(poll_read_lean(
            &mut self.io,
            &mut self.leftover,
            &mut cx,
            buf,
        ))
    }
}

impl<S: AsyncWrite + Unpin> Write for LeanIo<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut cx = Context::from_waker(&self.waker);
        would_block(Pin::new(&mut self.io).poll_write(&mut cx, buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut cx = Context::from_waker(&self.waker);
        would_block(Pin::new(&mut self.io).poll_flush(&mut cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Bytes come out whole and in order, whatever the reader's buffer size, and the
    /// leftover is freed once taken. A read that would wait registers the task and returns
    /// `WouldBlock`, and the task is woken when bytes come.
    #[tokio::test]
    async fn small_reads_see_every_byte_in_order() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (client, server) = tokio::io::duplex(256 << 10);
        let writer = {
            let data = data.clone();
            tokio::spawn(async move {
                let mut client = client;
                for chunk in data.chunks(7_000) {
                    client.write_all(chunk).await.unwrap();
                    tokio::task::yield_now().await;
                }
                client.shutdown().await.unwrap();
                client
            })
        };
        let mut io = LeanIo::new(server, b"head".to_vec());
        let mut got = Vec::new();
        let mut chunk = [0u8; 1000];
        let mut waited = 0;
        loop {
            let n = std::future::poll_fn(|cx| {
                io.set_waker(cx.waker());
                match io.read(&mut chunk) {
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        waited += 1;
                        Poll::Pending
                    }
                    read => Poll::Ready(read.unwrap()),
                }
            })
            .await;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
            assert!(!io.leftover.is_empty() || io.leftover.bytes.capacity() == 0);
        }
        assert_eq!(&got[..4], b"head");
        assert_eq!(got[4..], data[..]);
        assert!(waited > 0, "the reader never had to wait for the writer");
        drop(writer.await.unwrap());
    }
}
