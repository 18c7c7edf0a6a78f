//! Reading the socket: like `AsyncRead`, except that on a plain TCP socket a read that took
//! less than it could also marks the socket as drained, so the connection does not try
//! another read (a system call that would only say "empty") before it sleeps.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A stream a connection runs over.
pub(crate) trait Socket: AsyncRead + AsyncWrite + Unpin {
    /// Reads into `buf`; `Ok(0)` at the end of the stream.
    fn poll_read_some(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self).poll_read(cx, buf)
    }
}

impl Socket for TcpStream {
    fn poll_read_some(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_read_ready(cx))?;
            let mut short = false;
            // A read that fills less than the buffer emptied the socket: the outer `try_io`
            // then clears the readiness it saw before the read (a newer one survives), so
            // the next poll sleeps at once instead of reading to learn it is empty.
            let read = self.try_io(Interest::READABLE, || {
                let n = self.try_read(buf.initialize_unfilled())?;
                short = n > 0 && n < buf.remaining();
                buf.advance(n);
                if short {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(())
                }
            });
            match read {
                Ok(()) => return Poll::Ready(Ok(())),
                Err(_) if short => return Poll::Ready(Ok(())),
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
