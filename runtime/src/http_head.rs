//! Upgrade requests read and answered without hyper, on the built-in listener.
//!
//! Nearly every request a WebSocket server gets is one plain `GET` with `Upgrade: websocket`,
//! whose head arrives in one read. It is read here onto the stack, parsed with httparse, and
//! answered with a response written here: a handshake then holds no buffer of its own, where
//! hyper's holds two of 8 KiB and its connection's state, which a burst of handshakes leaves
//! in the allocator's free lists for good (a third of an idle connection's memory, at 10,000
//! connections opened 256 at a time).
//!
//! Anything else goes to hyper, with the bytes read so far put back in front of the stream
//! ([`Rewind`]): another method or version, a body, a head over 8 KiB, or one that httparse or
//! `http` refuse. So pages, refusals of odd requests and HTTP's errors stay hyper's.

use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::codec::socket::Socket;
use crate::response::Body;

/// The longest head read here; a longer one goes to hyper, which allows much more.
const HEAD_MAX: usize = 8 << 10;

/// As many header lines as hyper takes.
const HEADERS_MAX: usize = 100;

/// What the start of a stream held.
// Made once per handshake and taken apart at once: boxing the request would only cost an
// allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Head {
    /// A plain upgrade request, and the bytes the client sent right behind it.
    Upgrade(Request<()>, BytesMut),
    /// Anything else, for hyper: the bytes read so far.
    Other(Bytes),
    /// The stream ended before a whole head.
    Ended,
}

/// Reads the head of the stream's first request.
pub(crate) async fn read<S: Socket>(io: &mut S) -> io::Result<Head> {
    // Only a head that does not arrive in one read is kept here, between reads.
    let mut partial = Vec::new();
    std::future::poll_fn(|cx| poll_head(io, cx, &mut partial)).await
}

fn poll_head<S: Socket>(
    io: &mut S,
    cx: &mut Context<'_>,
    partial: &mut Vec<u8>,
) -> Poll<io::Result<Head>> {
    loop {
        let mut stack = [MaybeUninit::<u8>::uninit(); HEAD_MAX];
        // Never more in all than the longest head: what follows a whole head stays in the
        // socket for the connection.
        let mut buf = ReadBuf::uninit(&mut stack[..HEAD_MAX - partial.len()]);
        ready!(Pin::new(&mut *io).poll_read(cx, &mut buf))?;
        let read = buf.filled();
        if read.is_empty() {
            return Poll::Ready(Ok(Head::Ended));
        }
        let whole: &[u8] = if partial.is_empty() {
            read
        } else {
            partial.extend_from_slice(read);
            partial
        };
        match parse(whole) {
            Parsed::Upgrade(request, used) => {
                let rest = BytesMut::from(&whole[used..]);
                return Poll::Ready(Ok(Head::Upgrade(request, rest)));
            }
            Parsed::Partial if whole.len() < HEAD_MAX => {
                if partial.is_empty() {
                    partial.extend_from_slice(read);
                }
            }
            Parsed::Partial | Parsed::Other => {
                return Poll::Ready(Ok(Head::Other(Bytes::copy_from_slice(whole))));
            }
        }
    }
}

#[allow(clippy::large_enum_variant)] // as `Head`
enum Parsed {
    /// A plain upgrade request, whose head took this many bytes.
    Upgrade(Request<()>, usize),
    /// Not all of the head yet.
    Partial,
    /// Anything else: for hyper.
    Other,
}

/// A `GET` in HTTP/1.1 with an `Upgrade` header and no body, as a request.
fn parse(bytes: &[u8]) -> Parsed {
    let mut lines = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut head = httparse::Request::new(&mut lines);
    let used = match head.parse(bytes) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    if head.method != Some("GET") || head.version != Some(1) {
        return Parsed::Other;
    }
    let Some(Ok(uri)) = head.path.map(http::Uri::try_from) else {
        return Parsed::Other;
    };
    let mut headers = HeaderMap::with_capacity(head.headers.len());
    let mut upgrade = false;
    for line in head.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line.name.as_bytes()),
            HeaderValue::from_bytes(line.value),
        ) else {
            return Parsed::Other;
        };
        // A body, or a client waiting to be told to send one: hyper's to read.
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::EXPECT
        {
            return Parsed::Other;
        }
        upgrade |= name == header::UPGRADE;
        headers.append(name, value);
    }
    if !upgrade {
        return Parsed::Other;
    }
    let mut request = Request::new(());
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Parsed::Upgrade(request, used)
}

/// Writes `response` whole. Every answer but the 101 closes the connection (each says
/// `Connection: close`): it gets a `Content-Length`, and a `Date` as RFC 9110 asks.
pub(crate) async fn respond<S: Socket>(io: &mut S, response: &Response<Body>) -> io::Result<()> {
    io.write_all(&encode(response)).await?;
    io.flush().await
}

fn encode(response: &Response<Body>) -> Vec<u8> {
    let (status, headers, body) = (response.status(), response.headers(), response.body());
    let mut out = Vec::with_capacity(192 + body.len());
    let reason = status.canonical_reason().unwrap_or("");
    // Writing to a Vec cannot fail.
    let _ = write!(out, "HTTP/1.1 {} {reason}\r\n", status.as_str());
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !status.is_informational() {
        if !headers.contains_key(header::CONTENT_LENGTH) {
            let _ = write!(out, "content-length: {}\r\n", body.len());
        }
        if !headers.contains_key(header::DATE) {
            let date = httpdate::fmt_http_date(std::time::SystemTime::now());
            let _ = write!(out, "date: {date}\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// A stream with bytes already read from it put back in front.
pub(crate) struct Rewind<S> {
    read: Bytes,
    io: S,
}

impl<S> Rewind<S> {
    pub(crate) fn new(read: Bytes, io: S) -> Self {
        Rewind { read, io }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read[..n]);
        self.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<S: Socket> Socket for Rewind<S> {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        into: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        if self.read.is_empty() {
            return self.io.poll_read_into(cx, into);
        }
        let n = self.read.len();
        into.extend_from_slice(&self.read);
        self.read.clear();
        Poll::Ready(Ok(n))
    }

    fn poll_write_now(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.io.poll_write_now(cx, buf)
    }

    fn poll_write_vectored_now(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.io.poll_write_vectored_now(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] =
        b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn a_plain_upgrade_is_read_here_with_what_follows_it() {
        let mut bytes = UPGRADE.to_vec();
        bytes.extend_from_slice(b"\x81\x80frame");
        let Parsed::Upgrade(request, used) = parse(&bytes) else {
            panic!("not read as an upgrade");
        };
        assert_eq!(used, UPGRADE.len());
        assert_eq!(request.uri(), "/chat?room=1");
        assert_eq!(request.method(), http::Method::GET);
        assert_eq!(request.headers()["upgrade"], "websocket");
        assert_eq!(request.headers()["sec-websocket-version"], "13");
        assert!(matches!(parse(&UPGRADE[..40]), Parsed::Partial));
    }

    #[test]
    fn anything_else_is_left_to_hyper() {
        let others: [&[u8]; 6] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\nabc",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        ];
        for other in others {
            assert!(
                matches!(parse(other), Parsed::Other),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn answers_are_framed_as_http_says() {
        let switching = Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .body(Body::new())
            .unwrap();
        assert_eq!(
            String::from_utf8(encode(&switching)).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"
        );
        let refused = Response::builder()
            .status(403)
            .header("connection", "close")
            .body("no\n".to_owned())
            .unwrap();
        let refused = String::from_utf8(encode(&refused)).unwrap();
        assert!(
            refused.starts_with(
                "HTTP/1.1 403 Forbidden\r\nconnection: close\r\ncontent-length: 3\r\ndate: "
            ),
            "{refused}"
        );
        assert!(refused.ends_with(" GMT\r\n\r\nno\n"), "{refused}");
    }
}
