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
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes one socket read takes in.
const SCRATCH_LEN: usize = 64 << 10;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_LEN].into_boxed_slice());
}

/// A socket whose reads go through the thread's scratch buffer (see the module's docs).
pub(crate) struct LeanIo<S> {
    io: S,
    /// Bytes read from the socket and not yet taken, from `taken` on; no allocation when none.
    leftover: Vec<u8>,
    taken: usize,
}

impl<S> LeanIo<S> {
    /// Wraps `io`; `read` holds bytes already read from it (past the HTTP request).
    pub(crate) fn new(io: S, read: Vec<u8>) -> Self {
        LeanIo {
            io,
            leftover: read,
            taken: 0,
        }
    }

    /// Hands over what `leftover` holds; frees it once it is all taken.
    fn take_leftover(&mut self, buf: &mut ReadBuf<'_>) {
        let rest = &self.leftover[self.taken..];
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.taken += n;
        if self.taken == self.leftover.len() {
            self.leftover = Vec::new();
            self.taken = 0;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LeanIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.taken < this.leftover.len() {
            this.take_leftover(buf);
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= SCRATCH_LEN {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let through_scratch = SCRATCH.try_with(|scratch| {
            // Taken by this thread already (a read inside a read) or gone (the thread is
            // ending): read straight into the caller's buffer instead.
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                return None;
            };
            let mut into = ReadBuf::new(&mut scratch[..]);
            Some(
                Pin::new(&mut this.io)
                    .poll_read(cx, &mut into)
                    .map_ok(|()| {
                        let read = into.filled();
                        let n = read.len().min(buf.remaining());
                        buf.put_slice(&read[..n]);
                        if n < read.len() {
                            this.leftover = read[n..].to_vec();
                        }
                    }),
            )
        });
        match through_scratch {
            Ok(Some(polled)) => polled,
            Ok(None) | Err(_) => {
                ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LeanIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes come out whole and in order, whatever the reader's buffer size, and the
    /// leftover is freed once taken.
    #[tokio::test]
    async fn small_reads_see_every_byte_in_order() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (client, server) = tokio::io::duplex(256 << 10);
        let writer = {
            let data = data.clone();
            tokio::spawn(async move {
                let mut client = client;
                client.write_all(&data).await.unwrap();
                client.shutdown().await.unwrap();
                client
            })
        };
        let mut io = LeanIo::new(server, b"head".to_vec());
        let mut got = Vec::new();
        let mut chunk = [0u8; 1000];
        loop {
            let n = io.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
            assert!(io.taken < io.leftover.len() || io.leftover.capacity() == 0);
        }
        assert_eq!(&got[..4], b"head");
        assert_eq!(got[4..], data[..]);
        drop(writer.await.unwrap());
    }
}
