//! A connection's life, from the upgraded socket to its end: one task per connection.
//!
//! The driver owns the WebSocket stream and polls, in one task and without channels: the
//! endpoint's future (ready code, sections, `on_close`), the outbound queue, the socket and
//! the shutdown signal. It reads the socket only while the endpoint waits for a message, so
//! messages are handled one at a time and a busy endpoint pushes back on the client through
//! TCP. It writes everything queued before flushing once, after reading every frame already
//! buffered, so a burst of messages costs one write system call.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tracing::Instrument;
use tungstenite::error::ProtocolError;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Error as WsError, WebSocket, protocol::CloseFrame};

use crate::app::App;
use crate::dispatch::Accepted;
use crate::endpoint::{Code, panic_message};
use crate::error::Error;
use crate::lean_io::LeanIo;
use crate::message::{CloseCode, Message};
use crate::shared::Shared;
use crate::shutdown::Shutdown;

/// Runs an accepted connection on the socket hyper hands over after the 101, in a task of its
/// own. `T` is the socket type hyper served: taking it back from the upgrade skips hyper's
/// dynamic IO.
pub(crate) fn spawn_upgraded<T>(app: &Arc<App>, accepted: Accepted, on_upgrade: OnUpgrade)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let task_app = Arc::clone(app);
    spawn(app, accepted.endpoint, accepted.peer, async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(error = %err, "upgrade failed");
                return;
            }
        };
        match upgraded.downcast::<TokioIo<T>>() {
            Ok(parts) => {
                // Copied out and dropped now: the bytes share hyper's whole read buffer.
                let hyper::upgrade::Parts { io, read_buf, .. } = parts;
                let read = read_buf.to_vec();
                drop(read_buf);
                // A stream over TCP (TLS) is shut down before it is dropped, so that it says
                // goodbye (TLS's close_notify); a bare socket closes by being dropped.
                let shut_down =
                    std::any::TypeId::of::<T>() != std::any::TypeId::of::<tokio::net::TcpStream>();
                run(io.into_inner(), read, accepted, &task_app, shut_down).await;
            }
            Err(upgraded) => {
                run(
                    TokioIo::new(upgraded),
                    Vec::new(),
                    accepted,
                    &task_app,
                    true,
                )
                .await;
            }
        }
    });
}

/// Runs an accepted connection on a stream already upgraded (the test kit's pipe), in a task
/// of its own.
#[cfg_attr(not(feature = "test"), allow(dead_code))]
pub(crate) fn spawn_on<IO>(app: &Arc<App>, accepted: Accepted, io: IO)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let task_app = Arc::clone(app);
    spawn(app, accepted.endpoint, accepted.peer, async move {
        run(io, Vec::new(), accepted, &task_app, false).await;
    });
}

/// Spawns a connection's task, registered with the server's registry (for graceful shutdown
/// and `max_connections`) and in a `ws` span with its endpoint, peer and id.
fn spawn(
    app: &Arc<App>,
    endpoint: &'static str,
    peer: std::net::SocketAddr,
    connection: impl Future<Output = ()> + Send + 'static,
) {
    let id = app.registry.next_id();
    let span = tracing::debug_span!("ws", endpoint, %peer, id);
    app.registry.spawn(id, connection.instrument(span));
}

/// The size of tungstenite's read buffer: what an idle connection keeps for reading, and the
/// most a frame read takes from `LeanIo` at once.
const READ_BUFFER: usize = 1 << 10;

/// The connection loop over an upgraded stream; `read` holds bytes already read past the
/// HTTP request. `shut_down`: shut the stream down at the end, rather than only drop it.
async fn run<IO>(io: IO, read: Vec<u8>, accepted: Accepted, app: &App, shut_down: bool)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    tracing::debug!("websocket open");
    let config = &app.config;
    // tungstenite's read buffer is allocated and zero-filled up front (128 KiB by default),
    // and caps each read: it is kept small, and `LeanIo` reads the socket up to 64 KiB at a
    // time through a buffer shared by the thread's connections. Writes collect in the write
    // buffer until the driver flushes once per batch, or 64 KiB pile up.
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(64 << 10)
        .max_message_size(Some(accepted.max_message_size))
        .max_frame_size(Some(accepted.max_frame_size));
    let ws = WebSocket::from_raw_socket(LeanIo::new(io, read), Role::Server, Some(ws_config));
    let timing = Timing {
        close_timeout: config.close_timeout,
        ping_interval: config.ping_interval,
        idle_timeout: config.idle_timeout,
    };
    let mut ws = drive(ws, accepted, app.registry.shutdown(), timing).await;
    if shut_down {
        let io = ws.get_mut().get_mut();
        let goodbye = poll_fn(|cx| Pin::new(&mut *io).poll_shutdown(cx));
        let _ = tokio::time::timeout(config.close_timeout, goodbye).await;
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's.
    Closing,
    /// No more frames will be read; at most a final flush remains.
    Closed,
}

/// The connection's clocks.
#[derive(Clone, Copy)]
struct Timing {
    /// How long a closing connection waits for the peer.
    close_timeout: Duration,
    /// Silence after which the server pings.
    ping_interval: Duration,
    /// Silence after which the server gives up on the peer.
    idle_timeout: Duration,
}

struct Driver<S> {
    /// The codec over the socket; its reads and writes return `WouldBlock` instead of
    /// waiting, having registered this task (see `LeanIo`).
    ws: WebSocket<LeanIo<S>>,
    shared: Arc<Shared>,
    /// The endpoint's code, until it completes.
    user: Option<Code>,
    /// Messages taken from the queue, not yet handed to the socket.
    pending: VecDeque<tungstenite::Message>,
    /// A close asked for, sent once `pending` is written.
    close: Option<(CloseCode, String)>,
    phase: Phase,
    need_flush: bool,
    /// The socket took only part of the write buffer: flush before queueing more.
    write_blocked: bool,
    /// When a closing connection stops waiting on its peer.
    close_by: Option<Instant>,
    /// The timer for `close_by`, made once the connection has to wait for it.
    deadline: Option<Pin<Box<Sleep>>>,
    timing: Timing,
    /// When the peer was last known to be alive, as of the last keep-alive check.
    last_heard: Instant,
    /// Frames read so far, and as of the last check: counting is cheaper than reading the
    /// clock for every frame.
    frames_read: u64,
    frames_at_check: u64,
    /// Fires at the next keep-alive check; re-armed lazily, not on every frame.
    keepalive: Pin<Box<Sleep>>,
    /// `keepalive` was polled since its last reset, so the timer holds this task's waker:
    /// until it fires, checking it is a load, not a poll.
    keepalive_armed: bool,
    shutdown_seen: bool,
    /// The shutdown signal was polled once, so this task's waker is registered with it.
    shutdown_registered: bool,
    /// The close code that ended the connection, for the log.
    code: Option<u16>,
    /// The ready code has run (said once, to whoever waits for it).
    ready: bool,
}

async fn drive<S>(
    ws: WebSocket<LeanIo<S>>,
    accepted: Accepted,
    shutdown: &Shutdown,
    timing: Timing,
) -> WebSocket<LeanIo<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let connection = accepted.connection;
    let shared = Arc::clone(&connection.shared);
    let mut driver = Driver {
        ws,
        shared: Arc::clone(&shared),
        user: Some(connection.code),
        pending: VecDeque::new(),
        close: None,
        phase: Phase::Open,
        need_flush: false,
        write_blocked: false,
        close_by: None,
        deadline: None,
        timing,
        last_heard: Instant::now(),
        frames_read: 0,
        frames_at_check: 0,
        keepalive: Box::pin(tokio::time::sleep(timing.ping_interval)),
        keepalive_armed: false,
        shutdown_seen: false,
        shutdown_registered: false,
        code: None,
        ready: false,
    };
    let signal = shutdown.signal();
    let mut signal = std::pin::pin!(signal);
    poll_fn(|cx| driver.poll(cx, shutdown, signal.as_mut())).await;
    shared.finish();
    tracing::debug!(code = driver.code, "websocket closed");
    driver.ws
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        shutdown: &Shutdown,
        mut signal: Pin<&mut impl Future>,
    ) -> Poll<()> {
        self.ws.get_mut().set_waker(cx.waker());
        loop {
            let mut progress = false;

            if let Some(user) = &mut self.user {
                // A panic in ready code or `on_close` ends this connection only.
                let polled = std::panic::catch_unwind(AssertUnwindSafe(|| user.as_mut().poll(cx)));
                let finished = match polled {
                    Ok(Poll::Pending) => None,
                    Ok(Poll::Ready(result)) => Some(Ok(result)),
                    Err(panic) => Some(Err(panic)),
                };
                match finished {
                    None => {}
                    Some(result) => {
                        self.user = None;
                        progress = true;
                        self.user_finished(result);
                    }
                }
                if !self.ready && (self.user.is_none() || self.shared.wants_message()) {
                    self.ready = true;
                    self.shared.set_ready();
                }
            }

            // The signal is polled once, to register the task's waker; after that an atomic
            // load tells, which keeps the signal's lock off the per-message path.
            let shut = !self.shutdown_seen
                && if self.shutdown_registered {
                    shutdown.is_triggered()
                } else {
                    self.shutdown_registered = true;
                    signal.as_mut().poll(cx).is_ready()
                };
            if shut {
                self.shutdown_seen = true;
                self.shared
                    .close(CloseCode::GOING_AWAY, "server shutting down");
            }

            if self.shared.is_closing() {
                // Bounds the whole ending: writing what is queued, the close frame, the peer's.
                self.arm_deadline();
                if self.shared.is_abandoned() && !self.pending.is_empty() {
                    self.pending.clear();
                }
            }
            progress |= self.poll_write();
            progress |= self.poll_read();

            if !progress {
                // Checked once per wake-up, not per message: polling a timer is not free.
                if self.phase == Phase::Open && self.keepalive_fired(cx) {
                    self.keep_alive();
                    continue;
                }
                if self.need_flush {
                    self.flush();
                }
                if self.user.is_none() && self.phase == Phase::Closed && !self.need_flush {
                    return Poll::Ready(());
                }
                if self.deadline_passed(cx) {
                    tracing::debug!("the connection did not finish closing in time: dropping it");
                    self.give_up();
                    continue;
                }
                // Before sleeping, a last look at the outbound queue, which registers this
                // task to be woken by the next write. Writes made while the task runs (the
                // endpoint's, in this very poll) wake nothing: this look finds them.
                if self.phase == Phase::Open && self.pending.is_empty() && !self.shared.park(cx) {
                    continue;
                }
                return Poll::Pending;
            }
        }
    }

    /// Whether the keep-alive timer fired. It is polled only when it holds no waker of ours.
    fn keepalive_fired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.keepalive_armed && !self.keepalive.is_elapsed() {
            return false;
        }
        self.keepalive_armed = true;
        self.keepalive.as_mut().poll(cx).is_ready()
    }

    /// Writes out what the codec holds; `need_flush` stays set while the socket is full.
    fn flush(&mut self) {
        match self.ws.flush() {
            Ok(()) | Err(WsError::ConnectionClosed) => {
                self.need_flush = false;
                self.write_blocked = false;
            }
            Err(WsError::Io(err)) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => self.broken(&err),
        }
    }

    /// Hands a message to the codec, which writes it out once 64 KiB are buffered or at
    /// the next flush.
    fn write(&mut self, message: tungstenite::Message) {
        self.need_flush = true;
        match self.ws.write(message) {
            Ok(()) => {}
            // Buffered: the socket is full, so the rest waits for a flush.
            Err(WsError::Io(err)) if err.kind() == std::io::ErrorKind::WouldBlock => {
                self.write_blocked = true;
            }
            Err(err) => self.broken(&err),
        }
    }

    /// The keep-alive timer fired: ping a silent peer, close one silent for too long.
    fn keep_alive(&mut self) {
        let now = Instant::now();
        if self.frames_read != self.frames_at_check {
            self.frames_at_check = self.frames_read;
            self.last_heard = now;
        }
        if !self.shared.wants_message() {
            // The endpoint is busy in a section: the socket is not read, so silence proves
            // nothing. Count from now.
            self.last_heard = now;
        }
        let silent = now.saturating_duration_since(self.last_heard);
        if silent >= self.timing.idle_timeout {
            tracing::debug!(?silent, "peer silent for too long: closing");
            self.shared.close(CloseCode::GOING_AWAY, "idle timeout");
            // From here the close timer bounds the connection; the keep-alive rests.
            self.keepalive
                .as_mut()
                .reset(now + self.timing.idle_timeout);
            self.keepalive_armed = false;
            return;
        }
        if silent >= self.timing.ping_interval {
            self.write(tungstenite::Message::Ping(Default::default()));
            if self.phase == Phase::Closed {
                return;
            }
        }
        let next_ping = self.last_heard + self.timing.ping_interval;
        let next = if next_ping > now {
            next_ping
        } else {
            now + self.timing.ping_interval
        };
        let next = next.min(self.last_heard + self.timing.idle_timeout);
        self.keepalive.as_mut().reset(next);
        self.keepalive_armed = false;
    }

    fn user_finished(&mut self, result: std::thread::Result<Result<(), Error>>) {
        let endpoint = self.shared.endpoint;
        match result {
            Ok(Ok(())) => self.shared.close(CloseCode::NORMAL, ""),
            Ok(Err(error)) => {
                tracing::error!(endpoint, %error, "endpoint failed; closing with 1011");
                self.shared
                    .close(CloseCode::INTERNAL_ERROR, "internal error");
            }
            Err(panic) => {
                let panic = panic_message(&*panic);
                tracing::error!(endpoint, panic, "endpoint panicked; closing with 1011");
                self.shared
                    .close(CloseCode::INTERNAL_ERROR, "internal error");
            }
        }
    }

    /// Moves queued messages into the codec's write buffer, then any close asked for.
    ///
    /// Returns whether the connection changed phase (a close was sent, or the socket
    /// failed), which the endpoint and the reader must see. Writing messages alone is not
    /// progress: nothing else waits on it, and the queue is looked at again before parking.
    fn poll_write(&mut self) -> bool {
        loop {
            if self.pending.is_empty() {
                if self.phase != Phase::Open {
                    return false;
                }
                let close = self.shared.drain(&mut self.pending);
                if self.pending.is_empty() && close.is_none() {
                    return false;
                }
                self.close = close.or(self.close.take());
            }
            while !self.pending.is_empty() {
                if self.write_blocked {
                    self.flush();
                    if self.phase == Phase::Closed {
                        return true;
                    }
                    if self.write_blocked {
                        return false;
                    }
                }
                let message = self.pending.pop_front().expect("checked non-empty");
                self.write(message);
                if self.phase == Phase::Closed {
                    return true;
                }
            }
            if let Some((code, reason)) = self.close.take() {
                self.send_close(code, &reason);
                if self.phase != Phase::Closed {
                    self.phase = Phase::Closing;
                }
                return true;
            }
        }
    }

    fn poll_read(&mut self) -> bool {
        let wanted = match self.phase {
            Phase::Open => self.shared.wants_message(),
            Phase::Closing => true,
            Phase::Closed => false,
        };
        if !wanted {
            return false;
        }
        match self.ws.read() {
            Ok(message) => {
                self.frames_read += 1;
                self.received(message);
                true
            }
            Err(WsError::Io(err)) if err.kind() == std::io::ErrorKind::WouldBlock => false,
            // The close handshake is over (the codec wrote its last frame), or the stream
            // ended.
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                self.phase = Phase::Closed;
                self.need_flush = false;
                self.shared.finish();
                true
            }
            Err(err) => {
                self.read_failed(err);
                true
            }
        }
    }

    fn received(&mut self, message: tungstenite::Message) {
        match message {
            tungstenite::Message::Close(frame) => {
                self.code = Some(frame.as_ref().map_or(1005, |f| u16::from(f.code)));
                if self.phase == Phase::Open {
                    // tungstenite queued the echo of the client's close; flush it, then stop.
                    self.need_flush = true;
                    self.arm_deadline();
                } else {
                    self.need_flush = false;
                }
                self.phase = Phase::Closed;
                self.pending.clear();
                self.shared.finish();
            }
            // tungstenite queued the pong; it goes out with the next flush.
            tungstenite::Message::Ping(_) => self.need_flush = true,
            tungstenite::Message::Pong(_) | tungstenite::Message::Frame(_) => {}
            data => {
                if self.phase == Phase::Open
                    && let Some(message) = Message::from_tungstenite(data)
                {
                    self.shared.deliver(message);
                }
                // While closing, data frames are read and dropped (RFC 6455 §1.4).
            }
        }
    }

    fn read_failed(&mut self, err: WsError) {
        let (code, reason) = match &err {
            WsError::ConnectionClosed
            | WsError::AlreadyClosed
            | WsError::Io(_)
            | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                tracing::debug!(error = %err, "websocket connection ended");
                self.phase = Phase::Closed;
                self.need_flush = false;
                self.shared.finish();
                return;
            }
            WsError::Capacity(e) => (CloseCode::TOO_BIG, e.to_string()),
            WsError::Utf8(_) => (
                CloseCode::INVALID_PAYLOAD,
                "invalid UTF-8 in a text message".into(),
            ),
            WsError::Protocol(e) => (CloseCode::PROTOCOL, e.to_string()),
            other => (CloseCode::PROTOCOL, other.to_string()),
        };
        tracing::debug!(code = code.as_u16(), %reason, "closing on a bad frame");
        self.pending.clear();
        self.close = None;
        self.shared.finish();
        if self.phase == Phase::Open {
            self.send_close(code, &reason);
        }
        // The stream cannot be read after an error: don't wait for the peer's close frame.
        self.phase = Phase::Closed;
    }

    fn send_close(&mut self, code: CloseCode, reason: &str) {
        self.code = Some(code.as_u16());
        let frame = CloseFrame {
            code: code.as_u16().into(),
            reason: reason.into(),
        };
        self.write(tungstenite::Message::Close(Some(frame)));
        self.arm_deadline();
    }

    /// Starts the close timer, unless it runs already.
    fn arm_deadline(&mut self) {
        if self.close_by.is_none() {
            self.close_by = Some(Instant::now() + self.timing.close_timeout);
        }
    }

    /// Whether the close timer ran out. Its timer is made only here, when the connection
    /// waits on its peer while closing: most closes finish at once and never need one.
    fn deadline_passed(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(close_by) = self.close_by else {
            return false;
        };
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(close_by)));
        if deadline.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.deadline = None;
        self.close_by = None;
        true
    }

    /// The socket failed: nothing more can be written or read.
    fn broken(&mut self, err: &WsError) {
        if !matches!(err, WsError::ConnectionClosed | WsError::AlreadyClosed) {
            tracing::debug!(error = %err, "websocket write failed");
        }
        self.give_up();
    }

    /// Ends the connection where it stands: nothing more is written or read.
    fn give_up(&mut self) {
        self.phase = Phase::Closed;
        self.need_flush = false;
        self.pending.clear();
        self.close = None;
        self.shared.finish();
    }
}
