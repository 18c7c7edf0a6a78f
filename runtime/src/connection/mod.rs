//! A connection's life, from the upgraded socket to its end: one task per connection.
//!
//! The driver owns the WebSocket stream and polls, in one task and without channels: the
//! endpoint's future (ready code, sections, `on_close`), the mailbox (outbound queue and close
//! requests, a server shutdown's among them) and the socket. It reads the socket only while the endpoint waits for a message, so
//! messages are handled one at a time and a busy endpoint pushes back on the client through
//! TCP. It writes everything queued before flushing once, after reading every frame already
//! buffered, so a burst of messages costs one write system call.

mod clock;
mod input;
mod output;

use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::Either;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::Instrument;

use crate::app::App;
use crate::codec::frame::OpCode;
use crate::codec::read::{Incoming, Limits};
use crate::codec::socket::Socket;
use crate::connection::clock::{Budget, Check, Clock, Timer, Timing};
use crate::connection::input::{Input, ReadEnd};
use crate::connection::output::Output;
use crate::dispatch::Accepted;
use crate::endpoint::Code;
use crate::error::{Error, panic_message};
use crate::mailbox::{self, Handled, Mailbox, Writes};
use crate::message::{CloseCode, Message};
use crate::ratelimit::RateLimit;
use crate::stats;

/// Runs an accepted connection on the socket hyper hands over after the 101, in a task of its
/// own. `T` is the socket type hyper served: taking it back from the upgrade skips hyper's
/// dynamic IO.
pub(crate) fn spawn_upgraded<T>(app: &Arc<App>, accepted: Accepted, on_upgrade: OnUpgrade)
where
    T: Socket + Send + 'static,
{
    let (endpoint, peer) = (accepted.endpoint, accepted.peer);
    let mailbox = Arc::clone(&accepted.prepared.mailbox);
    // Captured boxed: an async block keeps room for what it captures for its whole life (as
    // long as the connection), while a local's room is shared with what is awaited later.
    // Unboxed only once the upgrade is done, so that room is not held while waiting for it.
    let start = Box::new((accepted, Arc::clone(app)));
    spawn(app, endpoint, peer, &mailbox, async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(error = %err, "upgrade failed");
                return;
            }
        };
        let (accepted, app) = unbox(start);
        // The connection's future is made in the match and awaited after it, so the task
        // does not keep room for hyper's upgrade parts while the connection runs.
        let running = match upgraded.downcast::<TokioIo<T>>() {
            Ok(parts) => {
                // Copied out and dropped now: the bytes share hyper's whole read buffer.
                let hyper::upgrade::Parts { io, read_buf, .. } = parts;
                let read = BytesMut::from(&read_buf[..]);
                drop(read_buf);
                Either::Left(run(
                    io.into_inner(),
                    read,
                    accepted,
                    app,
                    says_goodbye::<T>(),
                ))
            }
            Err(upgraded) => Either::Right(run(
                TokioIo::new(upgraded),
                BytesMut::new(),
                accepted,
                app,
                true,
            )),
        };
        running.await;
    });
}

/// Moves a value out of its box and frees the box now (`*boxed` in an async block frees it
/// only when the block ends).
#[allow(clippy::boxed_local)]
fn unbox<T>(boxed: Box<T>) -> T {
    *boxed
}

/// Whether a stream of type `T` is shut down before it is dropped, so that it says goodbye:
/// a stream over TCP (TLS, its close_notify); a bare socket closes by being dropped.
pub(crate) fn says_goodbye<T: 'static>() -> bool {
    std::any::TypeId::of::<T>() != std::any::TypeId::of::<tokio::net::TcpStream>()
}

/// Runs an accepted connection on a stream already upgraded (by the built-in listener without
/// hyper, or the test kit's pipe), in a task of its own. `read`: bytes the client sent right
/// behind its request; `shut_down`: shut the stream down at the end, rather than only drop it.
pub(crate) fn spawn_on<IO>(
    app: &Arc<App>,
    accepted: Accepted,
    io: IO,
    read: BytesMut,
    shut_down: bool,
) where
    IO: Socket + Send + 'static,
{
    let (endpoint, peer) = (accepted.endpoint, accepted.peer);
    let mailbox = Arc::clone(&accepted.prepared.mailbox);
    let running = run(io, read, accepted, Arc::clone(app), shut_down);
    spawn(app, endpoint, peer, &mailbox, running);
}

/// Spawns a connection's task, registered with the server's registry (for graceful shutdown,
/// which closes `mailbox`, and `max_connections`) and in a `ws` span with its endpoint, peer
/// and id (when the subscriber takes debug spans).
fn spawn(
    app: &Arc<App>,
    endpoint: &'static str,
    peer: std::net::SocketAddr,
    mailbox: &Arc<Mailbox>,
    connection: impl Future<Output = ()> + Send + 'static,
) {
    let id = app.registry.next_id();
    let span = tracing::debug_span!("ws", endpoint, %peer, id);
    // Without a subscriber that wants it, the span is not entered on every wake-up.
    match span.is_disabled() {
        true => app.registry.spawn(id, mailbox, connection),
        false => app.registry.spawn(id, mailbox, connection.instrument(span)),
    }
    // The connection's timers are the server's sweep.
    app.registry.keep_time(crate::sweep::tick(&app.config));
}

/// The connection's timer: its due time in `mailbox`, kept by `app`'s sweep.
fn timer<'a>(mailbox: &'a Mailbox, app: &'a App) -> Timer<'a> {
    Timer {
        mailbox,
        sweep: app.registry.sweep(),
    }
}

/// The connection loop over an upgraded stream; `read` holds bytes already read past the
/// HTTP request. `shut_down`: shut the stream down at the end, rather than only drop it.
///
/// The driver is made here, before the loop's future: the future holds the boxed driver and
/// not, besides it, the stream and the rest it was made of. The connection's one timer is a
/// due time in its mailbox, which the server's sweep wakes it for: the task's future holds
/// no timer, and stays small.
fn run<IO: Socket>(
    io: IO,
    read: BytesMut,
    accepted: Accepted,
    app: Arc<App>,
    shut_down: bool,
) -> impl Future<Output = ()> {
    let limits = Limits {
        max_frame: accepted.max_frame_size,
        max_message: accepted.max_message_size,
    };
    let mut driver = Driver::new(io, read, accepted, limits, app);
    async move {
        tracing::debug!("websocket open");
        drive(&mut driver).await;
        if shut_down {
            // Bounded by the close timeout, afresh.
            let timing = driver.timing();
            let timer = timer(&driver.mailbox, &driver.app);
            driver.clock.restart_close(timing, timer);
            poll_fn(|cx| {
                let said = Pin::new(&mut driver.io).poll_shutdown(cx).is_ready();
                // The sweep wakes the task through the waker `drive` registered.
                if said || driver.clock.close_passed(timer) {
                    return Poll::Ready(());
                }
                Poll::Pending
            })
            .await;
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

/// One connection: its socket, the parts that read it, write it and keep its time, and the
/// endpoint's code with the mailbox it shares with that code.
struct Driver<S> {
    io: S,
    input: Input,
    output: Output,
    clock: Clock,
    budget: Budget,
    mailbox: Arc<Mailbox>,
    /// The server's settings (the timers' durations).
    app: Arc<App>,
    /// The endpoint's code, until it completes.
    user: Option<Code>,
    phase: Phase,
    /// The close code that ended the connection: the first close frame's.
    code: Option<u16>,
    /// Who sent the first close frame.
    side: stats::Side,
    /// This connection's handles on the metrics, and what it counted since the last flush.
    stats: stats::Connection,
    /// The ready code has run (said once, to whoever waits for it).
    ready: bool,
    /// Neither the endpoint nor the server set a message limit: the inbound type's applies.
    limit_by_type: bool,
    /// The endpoint takes the server's heartbeats (unless it said `heartbeat = false`).
    heartbeat: bool,
}

async fn drive<S: Socket>(driver: &mut Driver<S>) {
    let mut watching = false;
    poll_fn(|cx| {
        if !watching {
            // The sweep wakes the connection through this waker, in whatever state it is;
            // the task's waker stays the same for its whole life.
            driver.mailbox.watch_timer(cx);
            watching = true;
        }
        let polled = driver.poll(cx);
        // What this wake-up counted goes to the metrics at once, not per message.
        driver
            .stats
            .flush(&mut driver.input.received, &mut driver.output.sent);
        polled
    })
    .await;
    driver.mailbox.finish();
    tracing::debug!(code = driver.code, "websocket closed");
    driver.stats.closed(driver.code, driver.side);
    if driver.code.is_none() {
        log_close(
            driver.mailbox.endpoint,
            "the connection dropped without a close frame (1006)",
        );
    }
}

impl<S: Socket> Driver<S> {
    /// The driver, boxed: the task's future holds a pointer rather than the driver once per
    /// await point.
    fn new(io: S, read: BytesMut, accepted: Accepted, limits: Limits, app: Arc<App>) -> Box<Self> {
        let prepared = accepted.prepared;
        let clock = Clock::new(
            Self::timing_of(&app, accepted.heartbeat),
            timer(&prepared.mailbox, &app),
        );
        Box::new(Driver {
            io,
            input: Input::new(read, limits, accepted.deflate),
            output: Output::new(accepted.deflate),
            clock,
            budget: Budget::default(),
            mailbox: prepared.mailbox,
            app,
            user: Some(prepared.code),
            phase: Phase::Open,
            code: None,
            side: stats::Side::None,
            stats: stats::Connection::open(accepted.endpoint, accepted.deflate.is_some()),
            ready: false,
            limit_by_type: accepted.limit_by_type,
            heartbeat: accepted.heartbeat,
        })
    }

    /// The timers' durations, from the server's settings.
    fn timing(&self) -> Timing {
        Self::timing_of(&self.app, self.heartbeat)
    }

    /// `heartbeat`: the endpoint takes the server's heartbeats, if it sends them.
    fn timing_of(app: &App, heartbeat: bool) -> Timing {
        let config = &app.config;
        Timing {
            close_timeout: config.close_timeout,
            ping_interval: config.ping_interval,
            idle_timeout: config.idle_timeout,
            heartbeat: config.heartbeat.filter(|_| heartbeat),
        }
    }

    /// One wake-up: turns of the loop (the endpoint's code, writing, reading) until nothing
    /// moves or the budget is spent; then the timers, one write of everything framed, and a
    /// last look at the queue before sleeping.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.budget.start();
        self.input.woken();
        loop {
            let mut progress = false;
            self.budget.spend(cx, 1);

            // An endpoint whose code waits in `serve` is called in place for each message:
            // polling its code again changes nothing until no more messages come.
            if let Some(user) = &mut self.user
                && !self.mailbox.serves()
            {
                // The endpoint's own writes go straight to the output meanwhile.
                let output = NonNull::from(&mut self.output as &mut dyn Writes);
                // A panic in ready code or `on_close` ends this connection only.
                let polled = mailbox::running(&self.mailbox, output, || {
                    std::panic::catch_unwind(AssertUnwindSafe(|| user.as_mut().poll(cx)))
                });
                self.budget.spend(cx, std::mem::take(&mut self.output.owed));
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
                if !self.ready && (self.user.is_none() || self.mailbox.wants_message()) {
                    self.ready = true;
                    self.mailbox.set_ready();
                    // Nothing is read before the endpoint first waits for a message: the
                    // limit its code asked for holds from the first message on.
                    if self.limit_by_type
                        && let Some(limit) = self.mailbox.message_limit()
                    {
                        self.input.set_max_message(limit);
                    }
                }
            }

            // A close asked for (by the endpoint, a slow consumer's queue, the server's
            // shutdown) bounds the whole ending: writing what is queued, the close frame, the
            // peer's.
            if self.mailbox.is_closing() {
                self.clock
                    .arm_close(self.timing(), timer(&self.mailbox, &self.app));
                if self.mailbox.is_abandoned() && !self.output.abandoned {
                    // The client stopped reading: what it has not started to get is dropped,
                    // and the close (1008) goes next.
                    self.output.abandon();
                }
            }
            progress |= self.poll_write(cx);
            progress |= self.poll_read(cx);

            if !progress || self.budget.is_spent() {
                // Checked once per wake-up, not per message: polling a timer is not free.
                if self.phase == Phase::Open
                    && self.clock.keepalive_fired(timer(&self.mailbox, &self.app))
                {
                    self.keep_alive();
                    continue;
                }
                // One write for everything this wake-up produced.
                if !self.output.is_written() {
                    self.flush(cx);
                }
                if self.user.is_none() && self.phase == Phase::Closed && self.output.is_written() {
                    return Poll::Ready(());
                }
                if self.clock.close_passed(timer(&self.mailbox, &self.app)) {
                    tracing::debug!("the connection did not finish closing in time: dropping it");
                    self.give_up();
                    continue;
                }
                if self.budget.is_spent() {
                    // This task is woken again once the others had their turn.
                    self.budget.yielded();
                    return Poll::Pending;
                }
                // Before sleeping, a last look at the outbound queue, which registers this
                // task to be woken by the next write. Writes made while the task runs (the
                // endpoint's, in this very poll) wake nothing: this look finds them. While the
                // socket is full, only a close wakes it (messages wait for the socket).
                if self.phase == Phase::Open {
                    let parked = if self.output.blocked && !self.output.abandoned {
                        // Waiting for the socket: a close known already waits behind what is
                        // queued (the close timer bounds it); only a new one must wake us.
                        self.mailbox.is_closing() || self.mailbox.park_until_close(cx)
                    } else if !self.output.pending.is_empty() {
                        // The socket took what blocked the last turn's framing: go on framing.
                        false
                    } else {
                        // A sleeping connection holds no list of messages to frame.
                        mailbox::give_back(&mut self.output.pending);
                        self.mailbox.park(cx)
                    };
                    if !parked {
                        continue;
                    }
                }
                return Poll::Pending;
            }
        }
    }

    /// Writes out what is framed; a failed write ends the connection.
    fn flush(&mut self, cx: &mut Context<'_>) {
        if let Err(error) = self.output.flush(&mut self.io, cx) {
            tracing::debug!(%error, "websocket write failed");
            self.give_up();
        }
    }

    /// The keep-alive timer fired: ping a silent peer, close one silent for too long, send
    /// the heartbeat when one is due.
    fn keep_alive(&mut self) {
        let reading = self.mailbox.wants_message();
        let timing = self.timing();
        let (check, beat) = self.clock.check(
            self.input.frames_read,
            reading,
            timing,
            timer(&self.mailbox, &self.app),
        );
        if beat {
            // An empty text message, which page code sees (browsers hide pings from it) and
            // which no JSON message can be; a whole message in one frame, never between the
            // frames of another.
            self.output.control(OpCode::Text, Bytes::new());
        }
        match check {
            Check::Alive => {}
            Check::Ping => self.output.control(OpCode::Ping, Bytes::new()),
            Check::Idle(silent) => {
                tracing::debug!(?silent, "peer silent for too long: closing");
                self.mailbox.close(CloseCode::GOING_AWAY, "idle timeout");
            }
        }
    }

    fn user_finished(&mut self, result: std::thread::Result<Result<(), Error>>) {
        let endpoint = self.mailbox.endpoint;
        match result {
            Ok(Ok(())) => self.mailbox.close(CloseCode::NORMAL, ""),
            Ok(Err(error)) => {
                tracing::error!(endpoint, %error, "endpoint failed; closing with 1011");
                self.mailbox
                    .close(CloseCode::INTERNAL_ERROR, "internal error");
            }
            Err(panic) => {
                let panic = panic_message(&*panic);
                tracing::error!(endpoint, panic, "endpoint panicked; closing with 1011");
                self.mailbox
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
        self.output.framed_at_once = 0;
        if self.output.blocked && !self.output.abandoned {
            // The socket was full: write what waits before taking more from the queue.
            self.flush(cx);
            if self.output.blocked || self.phase == Phase::Closed {
                return;
            }
        }
        if self.output.pending.is_empty() {
            if self.phase != Phase::Open {
                return;
            }
            let close = self.mailbox.drain(&mut self.output.pending);
            self.stats.queued(self.output.pending.len());
            if self.output.pending.is_empty() && close.is_none() {
                return;
            }
            self.output.close = close.or(self.output.close.take());
        }
        while !self.budget.is_spent()
            && let Some(outgoing) = self.output.pending.pop_front()
        {
            let units = self.output.frame(outgoing);
            self.budget.spend(cx, units);
        }
        if self.output.pending.is_empty()
            && let Some(close) = self.output.close.take()
        {
            let (code, reason) = *close;
            self.send_close(code, &reason);
            if self.phase != Phase::Closed {
                self.phase = Phase::Closing;
            }
        }
    }

    /// Reads what the endpoint waits for. Messages for a synchronous handler are handled one
    /// after the other, as long as they come and the budget lasts; anything else (a message
    /// for the endpoint's future, a control frame, the end) is one step.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        // The last message went to the synchronous handler, which handled it: the handler
        // still takes messages (only its own failure, or the driver, ends them; and only
        // the endpoint's code, not polled meanwhile, withdraws it).
        let mut serving = false;
        loop {
            let wanted = match self.phase {
                Phase::Open => serving || self.mailbox.wants_message(),
                Phase::Closing => true,
                Phase::Closed => false,
            };
            // Each event read costs a unit of this wake-up's budget: a client that never
            // stops sending cannot keep its thread to itself.
            if !wanted || self.budget.is_spent() {
                return progress;
            }
            self.budget.spend(cx, 1);
            match self.input.next(&mut self.io, cx) {
                Poll::Pending => return progress,
                Poll::Ready(Ok(Incoming::Message(message)))
                    if self.phase == Phase::Open && (serving || self.mailbox.serves()) =>
                {
                    serving = self.serve(message, cx);
                    progress = true;
                }
                Poll::Ready(Ok(event)) => {
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

    fn received(&mut self, event: Incoming) {
        match event {
            Incoming::Close(frame) => {
                let code = frame.as_ref().map_or(1005, |(code, _)| code.as_u16());
                if self.code.is_none() {
                    self.code = Some(code);
                    self.side = stats::Side::Client;
                    if let Some((_, reason)) = frame.as_ref().filter(|_| abnormal(code)) {
                        let code = in_words(code);
                        log_close(
                            self.mailbox.endpoint,
                            format_args!("the client closed with {code}: {reason}"),
                        );
                    }
                }
                if self.phase == Phase::Open {
                    // What the endpoint answered to the messages read before the close goes
                    // out first; then the answer, which echoes the client's code and reason
                    // (none for none); then the connection ends.
                    self.output.frame_pending();
                    match &frame {
                        Some((code, reason)) => self.output.close_frame(*code, reason),
                        None => self.output.control(OpCode::Close, Bytes::new()),
                    }
                    self.clock
                        .arm_close(self.timing(), timer(&self.mailbox, &self.app));
                }
                self.phase = Phase::Closed;
                self.output.pending.clear();
                self.mailbox.finish();
            }
            Incoming::Ping(payload) => self.output.control(OpCode::Pong, payload),
            Incoming::Pong(_) => {}
            Incoming::Message(message) => {
                // For the endpoint's future: a synchronous handler's messages are served in
                // `poll_read`. While closing, data frames are read and dropped (RFC 6455
                // §1.4).
                if self.phase == Phase::Open {
                    self.mailbox.deliver(message);
                }
            }
        }
    }

    /// Calls the endpoint's synchronous handler with `message`, in place. Whether the
    /// section handled it (rather than failed, or refused an undecodable message).
    #[inline(always)]
    fn serve(&mut self, message: Message, cx: &mut Context<'_>) -> bool {
        let handler = self.mailbox.handler();
        let output = NonNull::from(&mut self.output as &mut dyn Writes);
        let handled = mailbox::running(&self.mailbox, output, || {
            // SAFETY: registered by the `Serve` future the endpoint's code waits in, which
            // keeps it valid until it withdraws it; that code is not being polled now, and
            // nothing else calls the handler. `serves()` said it is registered.
            unsafe { (*(*handler).call)(message) }
        });
        let done = matches!(handled, Handled::Done);
        self.mailbox.handled(handled);
        let owed = std::mem::take(&mut self.output.owed);
        self.budget.spend(cx, owed);
        done
    }

    fn read_failed(&mut self, code: CloseCode, reason: &str) {
        tracing::debug!(code = code.as_u16(), %reason, "closing on a bad frame");
        self.output.close = None;
        self.mailbox.finish();
        if self.phase == Phase::Open {
            // The answers to the good messages before the bad frame go out before the close.
            self.output.frame_pending();
            if code == CloseCode::TOO_BIG {
                // Which limit: the client's developer reads it in the close reason.
                let limits = self.input.limits();
                let limit = match reason.starts_with("frame") {
                    true => limits.max_frame,
                    false => limits.max_message,
                };
                self.send_close(code, &format!("{reason} of {}", bytes_in_words(limit)));
            } else {
                self.send_close(code, reason);
            }
        }
        self.output.pending.clear();
        // The stream cannot be read after an error: don't wait for the peer's close frame.
        self.phase = Phase::Closed;
    }

    fn send_close(&mut self, code: CloseCode, reason: &str) {
        if self.code.is_none() {
            self.code = Some(code.as_u16());
            self.side = stats::Side::Server;
            // A section's error or panic (1011) and a slow consumer (1008, the client stopped
            // reading) were logged where they happened.
            let logged = code == CloseCode::INTERNAL_ERROR
                || (code == CloseCode::POLICY && self.mailbox.is_abandoned());
            if abnormal(code.as_u16()) && !logged {
                let code = in_words(code.as_u16());
                log_close(
                    self.mailbox.endpoint,
                    format_args!("closed with {code}: {reason}"),
                );
            }
        }
        self.output.close_frame(code, reason);
        self.clock
            .arm_close(self.timing(), timer(&self.mailbox, &self.app));
    }

    /// Ends the connection where it stands: nothing more is written or read.
    fn give_up(&mut self) {
        self.phase = Phase::Closed;
        self.output.clear();
        self.mailbox.finish();
    }
}

/// One line at the default level for a connection that did not end normally, with the
/// reason in words; at most one a second, with the count of the others.
fn log_close(endpoint: &'static str, what: impl std::fmt::Display) {
    static CLOSES: RateLimit = RateLimit::new(Duration::from_secs(1));
    match CLOSES.check() {
        None => {}
        Some(0) => tracing::info!(endpoint, "{what}"),
        Some(skipped) => tracing::info!(
            endpoint,
            "{what} ({skipped} more abnormal closes since the last such line)"
        ),
    }
}

/// A close code with its meaning: `1009 (message too big)`.
fn in_words(code: u16) -> String {
    match meaning(code) {
        Some(meaning) => format!("{code} ({meaning})"),
        None => code.to_string(),
    }
}

/// A close code that says something went wrong: not 1000, nor 1001 (going away, a server's
/// shutdown or a page left) or 1005 (no code), nor an application's own (3000 and up).
fn abnormal(code: u16) -> bool {
    !matches!(code, 1000 | 1001 | 1005 | 3000..)
}

/// What a close code of RFC 6455 means, in a few words.
fn meaning(code: u16) -> Option<&'static str> {
    Some(match code {
        1002 => "protocol error",
        1003 => "unsupported data",
        1007 => "invalid payload",
        1008 => "policy violation",
        1009 => "message too big",
        1010 => "extension required",
        1011 => "internal error",
        1012 => "service restart",
        1013 => "try again later",
        1014 => "bad gateway",
        _ => return None,
    })
}

/// A size as people say it: `1 KiB`, `64 MiB`, `1000 bytes`.
fn bytes_in_words(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    match bytes {
        0 => "0 bytes".to_owned(),
        b if b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}
