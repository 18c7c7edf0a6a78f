//! Plain HTTP requests to a served `Router`'s other routes (its REST API), with hyper's
//! client: one connection per request, each bounded by the timeout.

use std::borrow::Cow;
use std::fmt;
use std::future::{Future, IntoFuture, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::panic::Location;
use std::pin::{Pin, pin};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::{TcpSocket, TcpStream};

use crate::test::expect::Expect;

/// Connects to `addr`, from `bind` when given.
pub(super) async fn dial(addr: SocketAddr, bind: Option<SocketAddr>) -> io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(bind) = bind {
        socket.bind(bind)?;
    }
    socket.connect(addr).await
}

/// A response body, whole.
pub(super) async fn collect(body: Incoming) -> Result<Vec<u8>, hyper::Error> {
    let mut body = pin!(body);
    let mut whole = Vec::new();
    while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        if let Ok(data) = frame?.into_data() {
            whole.extend_from_slice(&data);
        }
    }
    Ok(whole)
}

/// An HTTP request to a [`TestRouter`](super::TestRouter)'s routes, being set up: see
/// [`TestRouter::http`](super::TestRouter::http). Await it for the [`HttpResponse`].
#[must_use = "a request does nothing until it is awaited"]
pub struct HttpRequest {
    pub(super) addr: SocketAddr,
    pub(super) timeout: Duration,
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) headers: HeaderMap,
    pub(super) body: String,
}

impl HttpRequest {
    /// Adds a request header.
    ///
    /// # Panics
    /// If the name or value is not valid in an HTTP header.
    #[track_caller]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::try_from(name).expect("a valid header name");
        let value = HeaderValue::try_from(value).expect("a valid header value");
        self.headers.append(name, value);
        self
    }

    /// Sends `body` (with its `Content-Length`; set `Content-Type` with
    /// [`header`](Self::header)).
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }
}

impl IntoFuture for HttpRequest {
    type Output = HttpResponse;
    type IntoFuture = Pin<Box<dyn Future<Output = HttpResponse> + Send>>;

    /// # Panics
    /// If the path is not a request path, or no response comes within the timeout.
    #[track_caller]
    fn into_future(self) -> Self::IntoFuture {
        let at = Location::caller();
        let HttpRequest {
            addr,
            timeout,
            method,
            path,
            mut headers,
            body,
        } = self;
        if !headers.contains_key(header::HOST) {
            let host = HeaderValue::try_from(addr.to_string()).expect("an address is a header");
            headers.insert(header::HOST, host);
        }
        let mut request = match http::Request::builder()
            .method(method)
            .uri(&path)
            .body(body)
        {
            Ok(request) => request,
            Err(err) => panic!("{path:?} is not a request path: {err}"),
        };
        *request.headers_mut() = headers;
        let what = format!("{} {path}", request.method());
        Box::pin(Expect::new(async move {
            let fail = |step: &str, err: &dyn fmt::Display| {
                format!("{what} to {addr} failed (at {at}): {step}: {err}")
            };
            let exchange = async {
                let stream = dial(addr, None)
                    .await
                    .map_err(|err| fail("connecting", &err))?;
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(|err| fail("the HTTP handshake", &err))?;
                tokio::spawn(connection);
                let response = sender
                    .send_request(request)
                    .await
                    .map_err(|err| fail("sending the request", &err))?;
                let (parts, body) = response.into_parts();
                let body = collect(body)
                    .await
                    .map_err(|err| fail("reading the response", &err))?;
                Ok(HttpResponse {
                    status: parts.status,
                    headers: parts.headers,
                    body: Bytes::from(body),
                })
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(answered) => answered,
                Err(_) => Err(format!(
                    "expected a response to {what} within {timeout:?} (at {at}); nothing came"
                )),
            }
        }))
    }
}

/// A [`TestRouter`](super::TestRouter)'s answer to an [`HttpRequest`]: status, headers and
/// the whole body.
#[derive(Clone)]
pub struct HttpResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl HttpResponse {
    /// The response status (`200`, `404`, ..).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// A header's value, if it is there and is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body's bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body decoded from JSON.
    ///
    /// # Panics
    /// If the body is not JSON of type `T`: the panic shows the status and the body.
    #[track_caller]
    pub fn json<T: DeserializeOwned>(&self) -> T {
        match serde_json::from_slice(&self.body) {
            Ok(value) => value,
            Err(err) => panic!(
                "expected a JSON body that decodes as `{}`; got {}: {} ({err})",
                super::client::short_type_name::<T>(),
                self.status,
                self.text()
            ),
        }
    }
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &self.text())
            .finish()
    }
}
