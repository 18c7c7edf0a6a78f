//! Reading the socket into the thread's read buffer: like `AsyncRead`, except that the bytes
//! land in a `BytesMut`'s spare room without zeroing it first, and that on a plain TCP socket
//! a read that took less than it could also marks the socket as drained, so the connection
//! does not try another read (a system call that would only say "empty") before it sleeps.
//! On a plain TCP socket, reads and writes are first only tried: the socket's readiness is
//! polled (which registers the task to be woken) only when it has nothing, or no room.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// The most one read takes in.
pub(crate) const READ_MAX: usize = 64 << 10;

thread_local! {
    /// Where the reads of streams that want initialized memory (TLS) land before they are
    /// copied into the read buffer: zeroed once per thread, not per read.
    static ZEROED: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_MAX].into_boxed_slice());
}

/// A stream a connection runs over.
pub(crate) trait Socket: AsyncRead + AsyncWrite + Unpin {
    /// Reads at most [`READ_MAX`] bytes onto the end of `into`; `Ok(0)` at the end of the
    /// stream.
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        into: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        ZEROED.with_borrow_mut(|scratch| {
            let mut buf = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(self).poll_read(cx, &mut buf))?;
            into.extend_from_slice(buf.filled());
            Poll::Ready(Ok(buf.filled().len()))
        })
    }

    /// `poll_write`; on a plain TCP socket the write is first only tried, which costs less
    /// than polling the socket's readiness when it can take the bytes (nearly always).
    fn poll_write_now(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(self).poll_write(cx, buf)
    }

    /// `poll_write_vectored`, first only tried as [`Socket::poll_write_now`] is.
    fn poll_write_vectored_now(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self).poll_write_vectored(cx, bufs)
    }
}

/// A socket whose writes are first only tried ([`Socket::poll_write_now`]), for a writer
/// that takes any `AsyncWrite`.
pub(crate) struct WriteNow<'a, S>(pub(crate) &'a mut S);

impl<S: Socket> AsyncWrite for WriteNow<'_, S> {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().0.poll_write_now(cx, buf)
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().0.poll_write_vectored_now(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_shutdown(cx)
    }
}

/// Below this much room, a read first makes more: it takes back the buffer's memory when no
/// view of what was read into it is left, and allocates anew otherwise.
const READ_MIN_ROOM: usize = 4 << 10;

impl Socket for TcpStream {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        into: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        if into.capacity() - into.len() < READ_MIN_ROOM {
            into.reserve(READ_MAX);
        }
        loop {
            let mut short = 0;
            // Tried first: polling for readiness costs more, and is needed only to register
            // this task's waker when the socket has nothing (then `try_io` says so without a
            // system call). A read that fills less than the room it had emptied the socket:
            // the outer `try_io` then clears the readiness it saw before the read (a newer
            // one survives), so the next poll sleeps at once instead of reading to learn it
            // is empty.
            let read = self.try_io(Interest::READABLE, || {
                let room = into.capacity() - into.len();
                let n = self.try_read_buf(into)?;
                if n > 0 && n < room {
                    short = n;
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(n)
                }
            });
            match read {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(_) if short > 0 => return Poll::Ready(Ok(short)),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.poll_read_ready(cx))?;
                }
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }

    fn poll_write_now(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.try_write(buf) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                Pin::new(self).poll_write(cx, buf)
            }
            written => Poll::Ready(written),
        }
    }

    fn poll_write_vectored_now(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.try_write_vectored(bufs) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                Pin::new(self).poll_write_vectored(cx, bufs)
            }
            written => Poll::Ready(written),
        }
    }
}

#[cfg(feature = "tls")]
impl Socket for tokio_rustls::server::TlsStream<TcpStream> {}

impl Socket for hyper_util::rt::TokioIo<hyper::upgrade::Upgraded> {}

#[cfg(any(feature = "test", feature = "fuzz"))]
impl Socket for tokio::io::DuplexStream {}
