//! A connection's life, from the upgraded socket to its end: one task per connection.
//!
//! The driver owns the WebSocket stream and polls, in one task and without channels: the
//! endpoint's future (ready code, sections, `on_close`), the outbound queue, the socket and
//! the shutdown signal. It reads the socket only while the endpoint waits for a message, so
//! messages are handled one at a time and a busy endpoint pushes back on the client through
//! TCP. It writes everything queued before flushing once, after reading every frame already
//! buffered, so a burst of messages costs one write system call.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::ReadBuf;
use tokio::time::{Instant, Sleep};
use tracing::Instrument;

use crate::app::App;
use crate::codec::deflate::{self, Contexts, Deflate};
use crate::codec::frame::OpCode;
use crate::codec::read::{Event, Limits, Reader};
use crate::codec::socket::Socket;
use crate::codec::write::Writer;
use crate::codec::{Outgoing, Published};
use crate::dispatch::Accepted;
use crate::endpoint::{Code, panic_message};
use crate::error::Error;
use crate::message::{CloseCode, Message};
use crate::shared::{self, Shared};
use crate::shutdown::Shutdown;

/// Runs an accepted connection on the socket hyper hands over after the 101, in a task of its
/// own. `T` is the socket type hyper served: taking it back from the upgrade skips hyper's
/// dynamic IO.
pub(crate) fn spawn_upgraded<T>(app: &Arc<App>, accepted: Accepted, on_upgrade: OnUpgrade)
where
    T: Socket + Send + 'static,
{
    let task_app = Arc::clone(app);
    let (endpoint, peer) = (accepted.endpoint, accepted.peer);
    // Captured boxed: an async block keeps room for what it captures for its whole life (as
    // long as the connection), while a local's room is shared with what is awaited later.
    let accepted = Box::new(accepted);
    spawn(app, endpoint, peer, async move {
        let accepted = unbox(accepted);
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
                run(io.into_inner(), read, accepted, task_app, shut_down).await;
            }
            Err(upgraded) => {
                run(TokioIo::new(upgraded), Vec::new(), accepted, task_app, true).await;
            }
        }
    });
}

/// Moves a value out of its box and frees the box now (`*boxed` in an async block frees it
/// only when the block ends).
#[allow(clippy::boxed_local)]
fn unbox<T>(boxed: Box<T>) -> T {
    *boxed
}

/// Runs an accepted connection on a stream already upgraded (the test kit's pipe), in a task
/// of its own.
#[cfg_attr(not(feature = "test"), allow(dead_code))]
pub(crate) fn spawn_on<IO>(app: &Arc<App>, accepted: Accepted, io: IO)
where
    IO: Socket + Send + 'static,
{
    let (endpoint, peer) = (accepted.endpoint, accepted.peer);
    let running = run(io, Vec::new(), accepted, Arc::clone(app), false);
    spawn(app, endpoint, peer, running);
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

/// A payload at least this long still to come is read straight into its message.
const DIRECT_MIN: usize = 8 << 10;

/// How much one wake-up of the driver may do before it yields to the scheduler: a turn of
/// its loop costs one unit, framing a message one, and compressing one more per KiB
/// (compressing is the dearest work a connection does: 256 KiB take about half a
/// millisecond). tokio's own budget bounds the socket's reads and writes; this bounds
/// everything else, so that no connection, whatever state it is in, keeps its thread from
/// the other connections for long.
const WORK_PER_WAKE: usize = 256;

thread_local! {
    /// Where socket reads land, shared by the thread's connections: an idle connection owns
    /// no read buffer; a busy one keeps a view of what it read and has not parsed yet, and
    /// the bytes of a frame not yet whole. Messages in whole frames are slices of it: once
    /// they are all dropped (written out, say), a read reuses the same memory, so reading
    /// allocates nothing.
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// The connection loop over an upgraded stream; `read` holds bytes already read past the
/// HTTP request. `shut_down`: shut the stream down at the end, rather than only drop it.
///
/// The driver is made here, before the loop's future: the future holds the boxed driver and
/// not, besides it, the stream and the rest it was made of.
fn run<IO: Socket>(
    io: IO,
    read: Vec<u8>,
    accepted: Accepted,
    app: Arc<App>,
    shut_down: bool,
) -> impl Future<Output = ()> {
    let config = &app.config;
    let timing = Timing {
        close_timeout: config.close_timeout,
        ping_interval: config.ping_interval,
        idle_timeout: config.idle_timeout,
    };
    let limits = Limits {
        max_frame: accepted.max_frame_size,
        max_message: accepted.max_message_size,
    };
    let mut driver = Driver::new(io, read, accepted, limits, timing);
    async move {
        tracing::debug!("websocket open");
        drive(&mut driver, app.registry.shutdown()).await;
        if shut_down {
            let goodbye = poll_fn(|cx| Pin::new(&mut driver.io).poll_shutdown(cx));
            let _ = tokio::time::timeout(app.config.close_timeout, goodbye).await;
        }
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
    io: S,
    reader: Reader,
    writer: Writer,
    /// What was read and not parsed yet: a view of the thread's read buffer (or of the bytes
    /// the client sent right behind its HTTP request), parsed a message at a time. Empty, and
    /// holding nothing, whenever the connection has taken everything it read.
    input: BytesMut,
    /// Compression agreed with the client, if any (the endpoint allowing it).
    deflate: Option<Deflate>,
    /// The compression contexts kept between messages, with context takeover.
    contexts: Contexts,
    shared: Arc<Shared>,
    /// The endpoint's code, until it completes.
    user: Option<Code>,
    /// Messages taken from the queue, not yet framed.
    pending: VecDeque<Outgoing>,
    /// A close asked for, sent once `pending` is written.
    close: Option<(CloseCode, String)>,
    phase: Phase,
    /// The socket took only part of what was written: write it out before framing more, so
    /// that a client that does not read fills the outbound queue (and meets its limit).
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
    /// Inline: the driver lives in a box it never leaves (see `Driver::new`), so the timer
    /// is pinned there.
    keepalive: Sleep,
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
    /// The work done in this wake-up, in units of `WORK_PER_WAKE`.
    work: usize,
    /// The budget for this wake-up ran out (tokio's or ours): yield once the work at hand is
    /// written; the task is already woken to run again.
    out_of_budget: bool,
    /// The socket had nothing to read in this wake-up: the task is woken when it has, so
    /// asking again before then is a wasted look.
    drained: bool,
    /// The client stopped reading and what it had not started to get was dropped.
    abandoned: bool,
}

/// Why reading stopped.
enum ReadEnd {
    /// The peer broke the protocol: close with this code and reason.
    Fail(CloseCode, &'static str),
    /// The stream ended or failed: nothing more can be read.
    Gone(Option<io::Error>),
}

async fn drive<S: Socket>(driver: &mut Driver<S>, shutdown: &Shutdown) {
    let signal = shutdown.signal();
    let mut signal = std::pin::pin!(signal);
    poll_fn(|cx| driver.poll(cx, shutdown, signal.as_mut())).await;
    driver.shared.finish();
    tracing::debug!(code = driver.code, "websocket closed");
}

impl<S: Socket> Driver<S> {
    /// The driver, in the box it stays in: its keep-alive timer is pinned there. (Boxed, the
    /// task's future also holds a pointer rather than the driver once per await point.)
    fn new(io: S, read: Vec<u8>, accepted: Accepted, limits: Limits, timing: Timing) -> Box<Self> {
        let connection = accepted.connection;
        Box::new(Driver {
            io,
            reader: Reader::new(true, limits, accepted.deflate),
            writer: Writer::default(),
            input: BytesMut::from(&read[..]),
            deflate: accepted.deflate,
            contexts: Contexts::default(),
            shared: connection.shared,
            user: Some(connection.code),
            pending: VecDeque::new(),
            close: None,
            phase: Phase::Open,
            write_blocked: false,
            close_by: None,
            deadline: None,
            timing,
            last_heard: Instant::now(),
            frames_read: 0,
            frames_at_check: 0,
            keepalive: tokio::time::sleep(timing.ping_interval),
            keepalive_armed: false,
            shutdown_seen: false,
            shutdown_registered: false,
            code: None,
            ready: false,
            work: 0,
            out_of_budget: false,
            drained: false,
            abandoned: false,
        })
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        shutdown: &Shutdown,
        mut signal: Pin<&mut impl Future>,
    ) -> Poll<()> {
        self.work = 0;
        self.drained = false;
        loop {
            let mut progress = false;
            self.spend(cx, 1);

            // An endpoint whose code waits in `serve` is called in place for each message:
            // polling its code again changes nothing until no more messages come.
            if let Some(user) = &mut self.user
                && !self.shared.serves()
            {
                // The endpoint's own writes go straight to `pending` meanwhile.
                let pending: *mut VecDeque<Outgoing> = &mut self.pending;
                // A panic in ready code or `on_close` ends this connection only.
                let polled = shared::running(&self.shared, pending, || {
                    std::panic::catch_unwind(AssertUnwindSafe(|| user.as_mut().poll(cx)))
                });
                let finished = match polled {
                    Ok(Poll::Pending) => None,
                    Ok(Poll::Ready(result)) => Some(Ok(result)),
                    Err(panic) => Some(Err(panic)),
                };
                if let Some(result) = finished {
                    self.user = None;
                    progress = true;
                    self.user_finished(result);
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
                if self.shared.is_abandoned() && !self.abandoned {
                    // The client stopped reading: what it has not started to get is dropped,
                    // and the close (1008) goes next.
                    self.abandoned = true;
                    self.pending.clear();
                    self.writer.drop_unstarted();
                }
            }
            progress |= self.poll_write(cx);
            progress |= self.poll_read(cx);

            if !progress || self.out_of_budget {
                // Checked once per wake-up, not per message: polling a timer is not free.
                if self.phase == Phase::Open && self.keepalive_fired(cx) {
                    self.keep_alive();
                    continue;
                }
                // One write for everything this wake-up produced.
                if !self.writer.is_empty() {
                    self.flush(cx);
                }
                if self.user.is_none() && self.phase == Phase::Closed && self.writer.is_empty() {
                    return Poll::Ready(());
                }
                if self.deadline_passed(cx) {
                    tracing::debug!("the connection did not finish closing in time: dropping it");
                    self.give_up();
                    continue;
                }
                if self.out_of_budget {
                    // This task is woken again once the others had their turn.
                    self.out_of_budget = false;
                    return Poll::Pending;
                }
                // Before sleeping, a last look at the outbound queue, which registers this
                // task to be woken by the next write. Writes made while the task runs (the
                // endpoint's, in this very poll) wake nothing: this look finds them. While the
                // socket is full, only a close wakes it (messages wait for the socket).
                if self.phase == Phase::Open {
                    let parked = if self.write_blocked && !self.abandoned {
                        // Waiting for the socket: a close known already waits behind what is
                        // queued (the close timer bounds it); only a new one must wake us.
                        self.shared.is_closing() || self.shared.park_until_close(cx)
                    } else if !self.pending.is_empty() {
                        // The socket took what blocked the last turn's framing: go on framing.
                        false
                    } else {
                        self.shared.park(cx)
                    };
                    if !parked {
                        continue;
                    }
                }
                return Poll::Pending;
            }
        }
    }

    fn keepalive(&mut self) -> Pin<&mut Sleep> {
        // SAFETY: the driver is made in a box (`Driver::new`) and never moved out of it, so
        // the timer inside it never moves once polled.
        unsafe { Pin::new_unchecked(&mut self.keepalive) }
    }

    /// Whether the keep-alive timer fired. It is polled only when it holds no waker of ours.
    fn keepalive_fired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.keepalive_armed && !self.keepalive.is_elapsed() {
            return false;
        }
        self.keepalive_armed = true;
        self.keepalive().poll(cx).is_ready()
    }

    /// Counts `units` of this wake-up's work; once the budget is spent, the driver writes out
    /// what it framed and yields, woken at once to go on after the others had their turn.
    fn spend(&mut self, cx: &mut Context<'_>, units: usize) {
        self.work += units;
        if self.work >= WORK_PER_WAKE && !self.out_of_budget {
            self.out_of_budget = true;
            // Woken as tokio's own budget wakes a task: after the scheduler has looked for
            // sockets that became ready, so the others run before this connection goes on.
            let yielded = std::pin::pin!(tokio::task::yield_now());
            let _ = yielded.poll(cx);
        }
    }

    /// Writes out what is framed; what the socket does not take now waits for it (this task
    /// is woken when it can take more).
    fn flush(&mut self, cx: &mut Context<'_>) {
        match self.writer.poll_flush(&mut self.io, cx) {
            Poll::Ready(Ok(())) => self.write_blocked = false,
            Poll::Pending => self.write_blocked = true,
            Poll::Ready(Err(error)) => {
                tracing::debug!(%error, "websocket write failed");
                self.give_up();
            }
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
            let idle_timeout = self.timing.idle_timeout;
            self.keepalive().reset(now + idle_timeout);
            self.keepalive_armed = false;
            return;
        }
        if silent >= self.timing.ping_interval {
            self.writer.push(OpCode::Ping, false, Bytes::new());
        }
        let next_ping = self.last_heard + self.timing.ping_interval;
        let next = if next_ping > now {
            next_ping
        } else {
            now + self.timing.ping_interval
        };
        let next = next.min(self.last_heard + self.timing.idle_timeout);
        self.keepalive().reset(next);
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

    /// Frames queued messages, as many as this wake-up's budget allows, then any close asked
    /// for.
    ///
    /// Returns whether the connection changed phase (a close was sent, or the socket
    /// failed), which the endpoint and the reader must see. Nothing else counts as progress:
    /// framing messages is not (nothing else waits on it, and the queue is looked at again
    /// before parking), and neither is a write the socket did not take, whatever phase the
    /// connection is in (the task parks until the socket can take more).
    fn poll_write(&mut self, cx: &mut Context<'_>) -> bool {
        let phase = self.phase;
        self.write(cx);
        self.phase != phase
    }

    fn write(&mut self, cx: &mut Context<'_>) {
        if self.write_blocked && !self.abandoned {
            // The socket was full: write what waits before taking more from the queue.
            self.flush(cx);
            if self.write_blocked || self.phase == Phase::Closed {
                return;
            }
        }
        if self.pending.is_empty() {
            if self.phase != Phase::Open {
                return;
            }
            let close = self.shared.drain(&mut self.pending);
            if self.pending.is_empty() && close.is_none() {
                return;
            }
            self.close = close.or(self.close.take());
        }
        while !self.out_of_budget
            && let Some(outgoing) = self.pending.pop_front()
        {
            let units = self.frame(outgoing);
            self.spend(cx, units);
        }
        if self.pending.is_empty()
            && let Some((code, reason)) = self.close.take()
        {
            self.send_close(code, &reason);
            if self.phase != Phase::Closed {
                self.phase = Phase::Closing;
            }
        }
    }

    /// Frames one message: compressed when compression was agreed and the message is long
    /// enough; a published message is compressed once for all its subscribers. Returns the
    /// work it took, in units of `WORK_PER_WAKE`.
    fn frame(&mut self, outgoing: Outgoing) -> usize {
        let (message, published) = match outgoing {
            Outgoing::Message(message) => (message, None),
            Outgoing::Published(published) => (published.message.clone(), Some(published)),
        };
        let (opcode, payload) = match message {
            Message::Text(text) => (OpCode::Text, text.into_bytes()),
            Message::Binary(bytes) => (OpCode::Binary, bytes),
        };
        let Some(deflate) = self
            .deflate
            .as_ref()
            .filter(|d| payload.len() >= d.threshold)
        else {
            self.writer.push(opcode, false, payload);
            return 1;
        };
        let units = 1 + payload.len() / 1024;
        let compressed = match published {
            Some(published) if !deflate.server_takeover => deflated(&published, deflate, &payload),
            _ => deflate::compress(&payload, deflate, &mut self.contexts),
        };
        match compressed {
            Some(compressed) => self.writer.push(opcode, true, compressed),
            None => self.writer.push(opcode, false, payload),
        }
        units
    }

    /// Reads what the endpoint waits for. Messages for a synchronous handler are handled one
    /// after the other, as long as they come and the budget lasts; anything else (a message
    /// for the endpoint's future, a control frame, the end) is one step.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        loop {
            let wanted = match self.phase {
                Phase::Open => self.shared.wants_message(),
                Phase::Closing => true,
                Phase::Closed => false,
            };
            // Each event read costs a unit of this wake-up's budget: a client that never
            // stops sending cannot keep its thread to itself.
            if !wanted || self.out_of_budget {
                return progress;
            }
            self.spend(cx, 1);
            match self.read_event(cx) {
                Poll::Pending => return progress,
                Poll::Ready(Ok(Event::Message(message)))
                    if self.phase == Phase::Open && self.shared.serves() =>
                {
                    self.frames_read += 1;
                    self.serve(message);
                    progress = true;
                }
                Poll::Ready(Ok(event)) => {
                    self.frames_read += 1;
                    self.received(event);
                    return true;
                }
                Poll::Ready(Err(ReadEnd::Fail(code, reason))) => {
                    self.read_failed(code, reason);
                    return true;
                }
                Poll::Ready(Err(ReadEnd::Gone(error))) => {
                    match error {
                        Some(error) => tracing::debug!(%error, "websocket connection ended"),
                        None => tracing::debug!("the peer ended the connection"),
                    }
                    self.give_up();
                    return true;
                }
            }
        }
    }

    /// The next event: from bytes already read, or from the socket.
    fn read_event(&mut self, cx: &mut Context<'_>) -> Poll<Result<Event, ReadEnd>> {
        let fail = |error: crate::codec::read::Error| {
            let (code, reason) = error.close();
            ReadEnd::Fail(code, reason)
        };
        loop {
            if !self.input.is_empty() {
                let event = self.reader.feed_from(&mut self.input).map_err(fail)?;
                if self.input.is_empty() {
                    // Lets go of the read buffer, which the next read may then reuse.
                    self.input = BytesMut::new();
                }
                if let Some(event) = event {
                    if matches!(event, Event::Close(_)) {
                        // Nothing after a close frame is read.
                        self.input = BytesMut::new();
                    }
                    return Poll::Ready(Ok(event));
                }
                continue;
            }
            // A large payload under way: read it straight into its message.
            if let Some((buf, want)) = self.reader.direct(DIRECT_MIN) {
                let spare = &mut buf.spare_capacity_mut()[..want];
                let mut read = ReadBuf::uninit(spare);
                match Pin::new(&mut self.io).poll_read(cx, &mut read) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(ReadEnd::Gone(Some(error)))),
                    Poll::Ready(Ok(())) => {}
                }
                let n = read.filled().len();
                if n == 0 {
                    return Poll::Ready(Err(ReadEnd::Gone(None)));
                }
                // SAFETY: the read initialized these `n` bytes of spare capacity.
                unsafe { buf.set_len(buf.len() + n) };
                if let Some(event) = self.reader.filled(n).map_err(fail)? {
                    return Poll::Ready(Ok(event));
                }
                continue;
            }
            if self.drained {
                return Poll::Pending;
            }
            let io = &mut self.io;
            let read = SCRATCH.with_borrow_mut(|chunk| match io.poll_read_into(cx, chunk) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(error)) => Poll::Ready(Err(ReadEnd::Gone(Some(error)))),
                Poll::Ready(Ok(0)) => Poll::Ready(Err(ReadEnd::Gone(None))),
                // This connection's view of what it read; the buffer keeps its room.
                Poll::Ready(Ok(_)) => Poll::Ready(Ok(chunk.split())),
            });
            match read {
                Poll::Ready(Ok(read)) => self.input = read,
                Poll::Ready(Err(end)) => return Poll::Ready(Err(end)),
                Poll::Pending => {
                    self.drained = true;
                    return Poll::Pending;
                }
            }
        }
    }

    fn received(&mut self, event: Event) {
        match event {
            Event::Close(frame) => {
                self.code = Some(frame.as_ref().map_or(1005, |(code, _)| code.as_u16()));
                if self.phase == Phase::Open {
                    // The answer echoes the client's code and reason (none for none); then
                    // the connection ends.
                    let payload = match &frame {
                        Some((code, reason)) => {
                            let mut payload = code.as_u16().to_be_bytes().to_vec();
                            payload.extend_from_slice(reason.as_bytes());
                            Bytes::from(payload)
                        }
                        None => Bytes::new(),
                    };
                    self.pending.clear();
                    self.writer.push(OpCode::Close, false, payload);
                    self.arm_deadline();
                }
                self.phase = Phase::Closed;
                self.pending.clear();
                self.shared.finish();
            }
            Event::Ping(payload) => self.writer.push(OpCode::Pong, false, payload),
            Event::Pong(_) => {}
            Event::Message(message) => {
                // While closing, data frames are read and dropped (RFC 6455 §1.4).
                if self.phase != Phase::Open {
                } else if self.shared.serves() {
                    self.serve(message);
                } else {
                    self.shared.deliver(message);
                }
            }
        }
    }

    /// Calls the endpoint's synchronous handler with `message`, in place.
    fn serve(&mut self, message: Message) {
        let handler = self.shared.handler();
        let pending: *mut VecDeque<Outgoing> = &mut self.pending;
        let handled = shared::running(&self.shared, pending, || {
            // SAFETY: registered by the `Serve` future the endpoint's code waits in, which
            // keeps it valid until it withdraws it; that code is not being polled now, and
            // nothing else calls the handler. `serves()` said it is registered.
            unsafe { (*(*handler).call)(message) }
        });
        self.shared.handled(handled);
    }

    fn read_failed(&mut self, code: CloseCode, reason: &str) {
        tracing::debug!(code = code.as_u16(), %reason, "closing on a bad frame");
        self.pending.clear();
        self.close = None;
        self.shared.finish();
        if self.phase == Phase::Open {
            self.send_close(code, reason);
        }
        // The stream cannot be read after an error: don't wait for the peer's close frame.
        self.phase = Phase::Closed;
    }

    fn send_close(&mut self, code: CloseCode, reason: &str) {
        self.code = Some(code.as_u16());
        let mut payload = Vec::with_capacity(2 + reason.len());
        payload.extend_from_slice(&code.as_u16().to_be_bytes());
        payload.extend_from_slice(reason.as_bytes());
        self.writer.push(OpCode::Close, false, payload.into());
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

    /// Ends the connection where it stands: nothing more is written or read.
    fn give_up(&mut self) {
        self.phase = Phase::Closed;
        self.writer.clear();
        self.write_blocked = false;
        self.pending.clear();
        self.close = None;
        self.shared.finish();
    }
}

/// A published message's compressed payload for this connection's window: made by the
/// first subscriber that needs it, shared by the others.
fn deflated(published: &Published, deflate: &Deflate, payload: &Bytes) -> Option<Bytes> {
    published.deflated(deflate.window, || {
        deflate::compress(payload, deflate, &mut Contexts::default())
    })
}
