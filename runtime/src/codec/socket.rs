//! Reading the socket into the thread's read buffer: like `AsyncRead`, except that the bytes
//! land in a `BytesMut`'s spare room without zeroing it first, and that on a plain TCP socket
//! a read that took less than it could also marks the socket as drained, so the connection
//! does not try another read (a system call that would only say "empty") before it sleeps.

use std::cell::RefCell;
use std::io;
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
            ready!(self.poll_read_ready(cx))?;
            let mut short = 0;
            // A read that fills less than the room it had emptied the socket: the outer
            // `try_io` then clears the readiness it saw before the read (a newer one
            // survives), so the next poll sleeps at once instead of reading to learn it is
            // empty.
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
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

#[cfg(feature = "tls")]
impl Socket for tokio_rustls::server::TlsStream<TcpStream> {}

impl Socket for hyper_util::rt::TokioIo<hyper::upgrade::Upgraded> {}

#[cfg(any(feature = "test", feature = "fuzz"))]
impl Socket for tokio::io::DuplexStream {}
