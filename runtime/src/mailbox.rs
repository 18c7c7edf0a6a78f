//! A connection's mailbox: what its `Out` handles, its endpoint's code and its driver share.
//! The outbound queue, the close asked for, the inbound slot for an endpoint that awaits its
//! messages, the synchronous handler of one that does not, and the guards the connection
//! holds (its subscriptions).
//!
//! Two small mutexes, each held for a few instructions: the outbound queue (written by any
//! task holding an `Out`, drained by the driver) and the inbound slot (a hand-off between the
//! driver and the endpoint code, which run in the same task). Atomic flags beside them answer
//! the driver's frequent questions (anything queued? does the endpoint wait?) without a lock.
//! Writes made by the connection's own code skip the queue (see `running`).

use std::cell::Cell;
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Waker};
use std::time::Duration;

use tokio::sync::Notify;

use crate::codec::Outgoing;
use crate::error::{Closed, Failure, panic_message};
use crate::message::{CloseCode, Message};
use crate::ratelimit::RateLimit;
use crate::resume::Resume;
use crate::stats;

/// The most queue room (in messages) a drained buffer keeps for the next messages.
const KEEP_QUEUED: usize = 64;

/// The endpoint name of a topic listener's mailbox (server code reading a topic, no
/// connection), for its logs.
pub(crate) const LISTENER: &str = "topic listener";

pub(crate) struct Mailbox {
    pub(crate) endpoint: &'static str,
    limit: usize,
    /// A close was asked for (or the connection ended): the driver starts its close timer.
    /// An atomic, so the driver can check it on every turn without taking the lock.
    closing: AtomicBool,
    /// The client is not reading (queue overflow): what is still unwritten may be dropped.
    abandoned: AtomicBool,
    out: Mutex<Outbound>,
    /// Something may be in the outbound queue (a message or a close): set under the lock by
    /// writers, cleared under it by the driver. When it is clear, draining takes no lock.
    queued: AtomicBool,
    /// The driver sleeps and waits for a write: the next one wakes it. Set under the queue's
    /// lock; while the driver runs it is clear, and writes wake nothing, as the driver looks
    /// at the queue again before it sleeps.
    parked: AtomicU8,
    /// Wakes senders waiting in `Out::send` for room in the queue, and whoever waits for
    /// `ready` (the test kit): one list for both, as each waiter checks again what it waits
    /// for when woken.
    room: Notify,
    /// The received message, handed from the driver to the endpoint.
    inbound: Mutex<Option<Message>>,
    /// The ready code has run: the endpoint waits for its first message, or its code ended.
    ready: AtomicBool,
    /// What the connection holds until it ends (its topic subscriptions: dropping one leaves
    /// the topic), by key; `None` once the connection ended.
    held: Mutex<Option<Vec<(usize, Held)>>>,
    /// The inbound slot's state (`WAITING`, `FULL`, `ENDED`): changed under the slot's lock,
    /// except by the endpoint starting to wait on an empty slot, so that asking whether the
    /// endpoint waits, or starting to wait, takes no lock.
    inbound_state: AtomicU8,
    /// The endpoint's synchronous message handler, while its code waits in
    /// [`Inbox::serve`](crate::endpoint::Inbox::serve): the driver calls it for each message,
    /// in place. Set and cleared by that future, read by the driver: both only in the
    /// connection's own task.
    handler: AtomicPtr<Handler>,
    /// The message limit the endpoint's inbound type asks for, when the endpoint and the
    /// server set none; 0 for none. Said by the endpoint's code before its first message.
    message_limit: AtomicUsize,
    /// For an endpoint whose connections resume their topics (`resume = true`): where the
    /// client was in them, if it said.
    resume: Option<Box<Resume>>,
    /// The driver's timer, kept by the server's sweep (see `crate::sweep`): `NO_TIMER`,
    /// `FIRED` (the sweep found it due and woke the driver), or when it is due, as counted by
    /// the sweep's clock.
    timer: AtomicU64,
}

/// What handling one message came to.
#[doc(hidden)]
pub enum Handled {
    /// Handled; the connection goes on.
    Done,
    /// The section failed (an `Err` or a panic): the connection closes with 1011.
    Failed(Failure),
    /// The message did not decode and no `on_error` took it: the connection closes with the
    /// error's code.
    Rejected(crate::message::DecodeError),
}

/// A synchronous message handler, as registered by [`Inbox::serve`].
pub(crate) struct Handler {
    /// The handler closure, its lifetime erased: valid while the `Serve` future that holds
    /// it is alive (it clears the registration when dropped), which is pinned in the
    /// endpoint's code for as long as it waits.
    pub(crate) call: *mut (dyn FnMut(Message) -> Handled + 'static),
}

// SAFETY: the pointer points into the endpoint's code (the `Serve` future that holds the
// handler), which is `Send` as a whole (a connection's code must be), so calling the handler
// on whatever thread that code's task runs is sound.
unsafe impl Send for Handler {}

thread_local! {
    /// The connection whose endpoint code runs on this thread right now (its driver calls a
    /// section, or polls the endpoint's code), and its driver's output. An `Out::write` on that
    /// connection goes to the output directly: no lock, no wake-up, no queue.
    static RUNNING: Cell<Running> = const {
        Cell::new(Running {
            mailbox: std::ptr::null(),
            output: None,
        })
    };
}

/// A driver's output, as the connection's own code sees it: what that code writes is handed
/// to it directly (see `running`), to be framed at once or listed behind what waits.
pub(crate) trait Writes {
    /// Takes a message the connection's own code wrote; `false` when `limit` messages wait
    /// already (the client does not keep up).
    fn take(&mut self, message: Outgoing, limit: usize) -> bool;
}

thread_local! {
    /// An empty buffer for a driver's list of messages to frame, lent to the next driver of
    /// this thread that drains its queue: a connection holds one only while it has something
    /// to frame, and one that sleeps holds none (its queue keeps its own).
    static SPARE: Cell<VecDeque<Outgoing>> = const { Cell::new(VecDeque::new()) };
}

/// Gives `list` the thread's spare buffer if it has none: no allocation when one is spare.
fn lend_spare(list: &mut VecDeque<Outgoing>) {
    if list.capacity() == 0 {
        *list = SPARE.take();
    }
}

/// The driver of an emptied `list` goes to sleep: its buffer goes back to the thread, to be
/// lent to the next driver that drains its queue (one that a backlog grew past
/// `KEEP_QUEUED` is freed instead). The thread keeps one spare.
#[inline]
pub(crate) fn give_back(list: &mut VecDeque<Outgoing>) {
    debug_assert!(list.is_empty());
    if list.capacity() == 0 {
        return;
    }
    let buffer = std::mem::take(list);
    if buffer.capacity() <= KEEP_QUEUED {
        drop(SPARE.replace(buffer));
    }
}

#[derive(Clone, Copy)]
struct Running {
    mailbox: *const Mailbox,
    output: Option<NonNull<dyn Writes>>,
}

/// Runs `code` (a section, or a poll of the endpoint's code) as the connection `mailbox`'s own
/// code: its writes go straight to `output`, which nothing else may touch meanwhile.
pub(crate) fn running<R>(
    mailbox: &Arc<Mailbox>,
    output: NonNull<dyn Writes>,
    code: impl FnOnce() -> R,
) -> R {
    struct Restore(Running);
    impl Drop for Restore {
        fn drop(&mut self) {
            RUNNING.set(self.0);
        }
    }
    let running = Running {
        mailbox: Arc::as_ptr(mailbox),
        output: Some(output),
    };
    let _restore = Restore(RUNNING.replace(running));
    code()
}

/// The driver runs (or will): writes need not wake it.
const AWAKE: u8 = 0;
/// The driver sleeps until the next write or close.
const PARKED: u8 = 1;
/// The driver waits for its socket to take what it wrote; only a close wakes it.
const PARKED_FOR_CLOSE: u8 = 2;

/// The endpoint waits for a message: the driver reads the socket.
const WAITING: u8 = 1;
/// The slot holds a message the endpoint has not taken yet. It is handed over even if the
/// connection ends meanwhile: a message that arrived is always handled.
const FULL: u8 = 2;
/// No more messages will come.
const ENDED: u8 = 4;

/// A guard the connection keeps until it ends, or until it is released.
pub(crate) type Held = Box<dyn Send + Sync>;

/// A close asked for: its code and reason. Boxed, as it is rare and the connection's state
/// holds room for one from its first moment to its last.
pub(crate) type CloseRequest = Box<(CloseCode, String)>;

struct Outbound {
    queue: VecDeque<Outgoing>,
    /// A close asked for and not yet taken by the driver: sent once the queue is written.
    close: Option<CloseRequest>,
    /// No more messages are accepted: a close was asked for, or the connection ended.
    shut: bool,
    /// Tasks parked in `Out::send`, so the driver only notifies when someone waits.
    waiting: usize,
    /// The driver's task, kept so that parking again does not clone it.
    driver: Option<Waker>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding these locks; poisoning would only come from a bug.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Mailbox {
    pub(crate) fn new(endpoint: &'static str, limit: usize) -> Self {
        Mailbox {
            endpoint,
            limit: limit.max(1),
            closing: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            out: Mutex::new(Outbound {
                queue: VecDeque::new(),
                close: None,
                shut: false,
                waiting: 0,
                driver: None,
            }),
            queued: AtomicBool::new(false),
            parked: AtomicU8::new(AWAKE),
            room: Notify::new(),
            inbound: Mutex::new(None),
            held: Mutex::new(Some(Vec::new())),
            ready: AtomicBool::new(false),
            inbound_state: AtomicU8::new(0),
            handler: AtomicPtr::new(std::ptr::null_mut()),
            message_limit: AtomicUsize::new(0),
            resume: None,
            timer: AtomicU64::new(NO_TIMER),
        }
    }

    /// The mailbox of a connection that resumes its topics (`Some`), with where the client
    /// was in them.
    pub(crate) fn resuming(mut self, resume: Option<Box<Resume>>) -> Self {
        self.resume = resume;
        self
    }

    /// Whether the connection resumes its topics, and where the client was in them.
    pub(crate) fn resume(&self) -> Option<&Resume> {
        self.resume.as_deref()
    }

    /// How many messages a replay may queue: the queue's room, less one for the notice.
    pub(crate) fn replay_room(&self) -> usize {
        self.limit - 1
    }

    /// The message limit of the endpoint's inbound type (`FromMessage::MAX_MESSAGE_SIZE`).
    pub(crate) fn set_message_limit(&self, limit: usize) {
        self.message_limit.store(limit, Ordering::Relaxed);
    }

    /// The message limit the endpoint's inbound type asked for, if any.
    pub(crate) fn message_limit(&self) -> Option<usize> {
        Some(self.message_limit.load(Ordering::Relaxed)).filter(|limit| *limit > 0)
    }

    /// The ready code has run (the driver says so once).
    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
        self.room.notify_waiters();
    }

    /// Completes once the ready code has run.
    #[cfg_attr(not(feature = "test"), allow(dead_code))]
    pub(crate) async fn ready(&self) {
        loop {
            let notified = self.room.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a `set_ready` in between is not missed.
            notified.as_mut().enable();
            if self.ready.load(Ordering::Acquire) {
                return;
            }
            // Woken by `set_ready`, or by room in the queue (which says nothing of ready).
            notified.await;
        }
    }

    /// Keeps the guard `make` returns until the connection ends or `release(key)`; `make` runs
    /// under the lock that the end takes, so nothing is held by a connection that ended. Does
    /// nothing (and returns `false`) once the connection ended or `key` is held already.
    pub(crate) fn hold(&self, key: usize, make: impl FnOnce() -> Held) -> bool {
        let mut held = lock(&self.held);
        match held.as_mut() {
            Some(list) if !list.iter().any(|(k, _)| *k == key) => {
                list.push((key, make()));
                true
            }
            _ => false,
        }
    }

    /// Drops the guard held under `key`, if any.
    pub(crate) fn release(&self, key: usize) {
        let released = {
            let mut held = lock(&self.held);
            let list = held.as_mut();
            list.and_then(|list| {
                let at = list.iter().position(|(k, _)| *k == key)?;
                Some(list.swap_remove(at))
            })
        };
        drop(released);
    }

    /// Queues a message; a full queue means the client does not keep up, and closes with 1008.
    #[inline]
    pub(crate) fn push(&self, message: Outgoing) {
        // A closing connection takes nothing more; asked without the lock (a topic skips its
        // closed subscribers cheaply).
        if self.closing.load(Ordering::Acquire) {
            return;
        }
        // Written by the connection's own code, while nothing waits in the shared queue (which
        // must go first): straight to the driver's output.
        let running = RUNNING.get();
        if std::ptr::eq(running.mailbox, self)
            && let Some(mut output) = running.output
            && !self.queued.load(Ordering::Acquire)
        {
            // SAFETY: `running` set this pointer to the driver's output for the duration of
            // the code that runs now, on this thread, and the driver does not touch it
            // meanwhile.
            if !unsafe { output.as_mut() }.take(message, self.limit) {
                self.overflow();
            }
            return;
        }
        self.push_shared(message);
    }

    /// Queues a message in the shared queue, under its lock, waking the driver if it sleeps.
    fn push_shared(&self, message: Outgoing) {
        let mut out = lock(&self.out);
        if out.shut {
            return;
        }
        if out.queue.len() < self.limit {
            out.queue.push_back(message);
            self.announce(out, false);
            return;
        }
        drop(out);
        self.overflow();
    }

    /// Queues a message if the queue has room now (a droppable subscription): `false` when
    /// it has none, and the message is not queued. Never closes the connection. A closing
    /// connection takes nothing, and says `true` (nothing was dropped for being slow).
    pub(crate) fn try_push(&self, message: Outgoing) -> bool {
        if self.closing.load(Ordering::Acquire) {
            return true;
        }
        let mut out = lock(&self.out);
        if out.shut {
            return true;
        }
        if out.queue.len() >= self.limit {
            return false;
        }
        out.queue.push_back(message);
        self.announce(out, false);
        true
    }

    /// Queues what a latest-only subscription holds, whatever the queue's length: each such
    /// subscription has at most one waiting (it is taken when framed), so these stay bounded
    /// by the connection's subscriptions, and a slow client is never closed for them.
    pub(crate) fn push_newest(&self, message: Outgoing) {
        if self.closing.load(Ordering::Acquire) {
            return;
        }
        let mut out = lock(&self.out);
        if out.shut {
            return;
        }
        out.queue.push_back(message);
        self.announce(out, false);
    }

    /// The queue is full: the client does not read fast enough. Closes with 1008, and says
    /// so.
    fn overflow(&self) {
        // At most a line a second, however many slow clients a busy topic finds at once.
        static SLOW_CONSUMERS: RateLimit = RateLimit::new(Duration::from_secs(1));
        if self.endpoint != LISTENER {
            stats::slow_consumer(self.endpoint);
        }
        if self.endpoint == LISTENER {
            tracing::warn!(
                limit = self.limit,
                "slow topic listener: its queue is full, the code reading it does not keep up; \
                 it is dropped from the topic (its next recv says Lagged)"
            );
        } else if let Some(others) = SLOW_CONSUMERS.check() {
            tracing::warn!(
                endpoint = self.endpoint,
                limit = self.limit,
                "slow consumer: the outbound queue is full, the client does not read fast \
                 enough; closing with 1008{}",
                if others > 0 {
                    format!(" (and {others} more connections since the last such line)")
                } else {
                    String::new()
                }
            );
        }
        self.close_now(CloseCode::POLICY, "outbound queue full");
    }

    /// Queues a message, waiting for room.
    pub(crate) async fn push_wait(&self, message: Outgoing) -> Result<(), Closed> {
        loop {
            // Registered before the check, so a drain right after the check still wakes us.
            let notified = self.room.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let mut out = lock(&self.out);
                if out.shut {
                    return Err(Closed);
                }
                if out.queue.len() < self.limit {
                    out.queue.push_back(message);
                    self.announce(out, false);
                    return Ok(());
                }
                // Counted under the same lock as the check, so the driver sees us waiting.
                out.waiting += 1;
            }
            let _waiting = WaitingGuard(self);
            notified.await;
        }
    }

    /// Asks for a close after the queued messages are written; later writes are dropped.
    pub(crate) fn close(&self, code: CloseCode, reason: &str) {
        let mut out = lock(&self.out);
        if out.shut {
            return;
        }
        out.shut = true;
        out.close = Some(Box::new((code, truncate_reason(reason))));
        self.closing.store(true, Ordering::Release);
        self.announce(out, true);
        // Senders waiting for room now get `Closed` instead of waiting for a drain.
        self.room.notify_waiters();
    }

    /// Drops the queued messages and asks for a close at once (slow consumer).
    fn close_now(&self, code: CloseCode, reason: &str) {
        let mut out = lock(&self.out);
        out.queue.clear();
        out.queue.shrink_to_fit();
        out.shut = true;
        out.close = Some(Box::new((code, truncate_reason(reason))));
        self.closing.store(true, Ordering::Release);
        self.abandoned.store(true, Ordering::Release);
        self.announce(out, true);
        self.room.notify_waiters();
    }

    /// The driver takes every queued message into `into` (which must be empty), and any close
    /// asked for. The driver runs: writes need not wake it until it parks again.
    pub(crate) fn drain(&self, into: &mut VecDeque<Outgoing>) -> Option<CloseRequest> {
        debug_assert!(into.is_empty());
        self.parked.store(AWAKE, Ordering::Relaxed);
        if !self.queued.load(Ordering::Acquire) {
            return None;
        }
        let mut out = lock(&self.out);
        self.queued.store(false, Ordering::Relaxed);
        if out.queue.is_empty() && out.close.is_none() {
            return None;
        }
        // Swapping keeps both buffers' capacity: no allocation once warmed up (the driver's
        // side is the thread's spare, which it gives back when it sleeps). A buffer a
        // backlog grew past `KEEP_QUEUED` goes, though: a subscriber that fell behind once
        // does not keep room for that backlog for the rest of its life.
        lend_spare(into);
        std::mem::swap(&mut out.queue, into);
        if out.queue.capacity() > KEEP_QUEUED {
            out.queue = VecDeque::new();
        }
        let close = out.close.take();
        let notify = out.waiting > 0;
        drop(out);
        if notify {
            self.room.notify_waiters();
        }
        close
    }

    /// Something was queued (a message, or a close when `close`): says so to the driver, and
    /// wakes it if it is parked for it, after releasing the lock.
    fn announce(&self, out: MutexGuard<'_, Outbound>, close: bool) {
        self.queued.store(true, Ordering::Release);
        let wakes = match self.parked.load(Ordering::Relaxed) {
            AWAKE => false,
            PARKED => true,
            _ => close,
        };
        if !wakes || self.parked.swap(AWAKE, Ordering::Relaxed) == AWAKE {
            return;
        }
        let driver = out.driver.clone();
        drop(out);
        if let Some(driver) = driver {
            driver.wake();
        }
    }

    /// The driver is about to sleep: with nothing queued, it registers to be woken by the next
    /// write and returns `true`; otherwise it must drain first, and `false` says so.
    pub(crate) fn park(&self, cx: &Context<'_>) -> bool {
        let mut out = lock(&self.out);
        if !out.queue.is_empty() || out.close.is_some() {
            return false;
        }
        match &out.driver {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => out.driver = Some(cx.waker().clone()),
        }
        self.parked.store(PARKED, Ordering::Relaxed);
        true
    }

    /// The driver is about to sleep until its socket takes more: it registers to be woken by
    /// a close asked for (a full queue, 1008), not by messages, which wait for the socket;
    /// `false` if a close is waiting already.
    pub(crate) fn park_until_close(&self, cx: &Context<'_>) -> bool {
        let mut out = lock(&self.out);
        if out.close.is_some() {
            return false;
        }
        match &out.driver {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => out.driver = Some(cx.waker().clone()),
        }
        self.parked.store(PARKED_FOR_CLOSE, Ordering::Relaxed);
        true
    }

    /// The connection is over: writes become no-ops and waiting senders get `Closed`; what it
    /// held is dropped (it leaves its topics).
    pub(crate) fn finish(&self) {
        let held = lock(&self.held).take();
        drop(held);
        self.closing.store(true, Ordering::Release);
        let mut out = lock(&self.out);
        out.shut = true;
        out.queue = VecDeque::new();
        out.close = None;
        // The driver's waker stays: its close deadline still wakes it through it (the
        // registry forgets it when the task ends).
        self.parked.store(AWAKE, Ordering::Relaxed);
        self.queued.store(false, Ordering::Relaxed);
        drop(out);
        self.room.notify_waiters();
        self.end_inbound();
    }

    /// Whether a close was asked for, or the connection ended.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Whether the client stopped reading: unwritten messages may be dropped.
    pub(crate) fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    pub(crate) fn is_shut(&self) -> bool {
        lock(&self.out).shut
    }

    /// Whether the endpoint waits for a message (the driver then reads the socket).
    pub(crate) fn wants_message(&self) -> bool {
        self.inbound_state.load(Ordering::Acquire) & WAITING != 0 || self.serves()
    }

    /// Whether a synchronous handler is registered and messages still come.
    pub(crate) fn serves(&self) -> bool {
        !self.handler.load(Ordering::Acquire).is_null() && !self.inbound_ended()
    }

    /// Registers (or, with null, withdraws) the endpoint's synchronous handler.
    pub(crate) fn set_handler(&self, handler: *const Handler) {
        self.handler.store(handler.cast_mut(), Ordering::Release);
    }

    /// The registered handler, for the driver to call.
    pub(crate) fn handler(&self) -> *mut Handler {
        self.handler.load(Ordering::Acquire)
    }

    /// Whether no more messages will come.
    pub(crate) fn inbound_ended(&self) -> bool {
        self.inbound_state.load(Ordering::Acquire) & ENDED != 0
    }

    /// Acts on how handling a message ended: a failure closes with 1011, a message that did
    /// not decode with its code; either way no more messages are taken.
    #[inline]
    pub(crate) fn handled(&self, handled: Handled) {
        if !matches!(handled, Handled::Done) {
            self.failed(handled);
        }
    }

    #[cold]
    fn failed(&self, handled: Handled) {
        match handled {
            Handled::Done => {}
            Handled::Failed(failure) => {
                let endpoint = self.endpoint;
                match failure {
                    Failure::Error(error) => {
                        tracing::error!(endpoint, %error, "section failed; closing with 1011")
                    }
                    Failure::Panic(panic) => {
                        let panic = panic_message(&*panic);
                        tracing::error!(endpoint, panic, "section panicked; closing with 1011")
                    }
                }
                self.close(CloseCode::INTERNAL_ERROR, "internal error");
                self.end_inbound();
            }
            Handled::Rejected(error) => {
                tracing::debug!(endpoint = self.endpoint, %error, "undecodable message");
                self.close(error.close_code(), error.message());
                self.end_inbound();
            }
        }
    }

    /// Hands a received message to the endpoint, which waits for it.
    pub(crate) fn deliver(&self, message: Message) {
        let mut slot = lock(&self.inbound);
        *slot = Some(message);
        let state = self.inbound_state.load(Ordering::Relaxed);
        self.inbound_state
            .store((state & !WAITING) | FULL, Ordering::Release);
    }

    /// No more messages will arrive (one already delivered is still taken).
    pub(crate) fn end_inbound(&self) {
        let _slot = lock(&self.inbound);
        let state = self.inbound_state.load(Ordering::Relaxed);
        self.inbound_state
            .store((state & !WAITING) | ENDED, Ordering::Release);
    }

    /// The endpoint takes a delivered message (`Some(Some(_))`), learns that none will come
    /// (`Some(None)`), or starts waiting (`None`).
    pub(crate) fn take_message(&self) -> Option<Option<Message>> {
        let state = self.inbound_state.load(Ordering::Acquire);
        if state & (FULL | ENDED) == 0 {
            // Nothing to take: start waiting, unless the driver just delivered or ended.
            if state & WAITING != 0
                || self
                    .inbound_state
                    .compare_exchange(state, state | WAITING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                return None;
            }
        }
        let mut slot = lock(&self.inbound);
        let state = self.inbound_state.load(Ordering::Relaxed);
        if let Some(message) = slot.take() {
            self.inbound_state.store(state & !FULL, Ordering::Release);
            return Some(Some(message));
        }
        if state & ENDED != 0 {
            return Some(None);
        }
        self.inbound_state.store(state | WAITING, Ordering::Release);
        None
    }
}

struct WaitingGuard<'a>(&'a Mailbox);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.0.out).waiting -= 1;
    }
}

/// Close reasons are limited to 123 bytes (RFC 6455 §5.5: control payloads ≤ 125 bytes).
fn truncate_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

/// What can subscribe to a `Topic<T>`: an `Out<T>` of the same `T`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot subscribe to a `Topic<{T}>`",
    label = "not an `Out<{T}>`",
    note = "a topic carries one message type: subscribe an `Out<{T}>`, or take the topic as \
            `topics.topic::<..>(name)` with this `Out`'s message type"
)]
pub trait Subscriber<T>: Sealed {
    #[doc(hidden)]
    fn recipient(&self) -> Recipient<'_>;
}

/// Only wsock's types subscribe.
pub trait Sealed {}

/// The connection a subscriber delivers to; not public API.
#[doc(hidden)]
pub struct Recipient<'a>(pub(crate) &'a Arc<Mailbox>);

/// No timer set.
const NO_TIMER: u64 = 0;
/// The timer was found due by the sweep, which woke the driver.
const FIRED: u64 = 1;

/// The driver's timer, kept by the server's sweep rather than by a timer of its own.
impl Mailbox {
    /// Sets the driver's timer to `due`, in the sweep's time (see `Sweep::due`, never 0 or
    /// 1), replacing any other; the sweep wakes the driver once it passed.
    pub(crate) fn set_timer(&self, due: u64) {
        debug_assert!(due > FIRED);
        self.timer.store(due, Ordering::Release);
    }

    /// Clears the driver's timer.
    pub(crate) fn clear_timer(&self) {
        self.timer.store(NO_TIMER, Ordering::Release);
    }

    /// Whether the sweep found the driver's timer due (and woke it): a load, no clock.
    pub(crate) fn timer_fired(&self) -> bool {
        self.timer.load(Ordering::Acquire) == FIRED
    }

    /// For the sweep: whether the driver's timer is due at `now` (in the sweep's time); if it
    /// is, it is marked fired, so that it is said once.
    pub(crate) fn timer_due(&self, now: u64) -> bool {
        let due = self.timer.load(Ordering::Acquire);
        due > FIRED
            && due <= now
            && self
                .timer
                .compare_exchange(due, FIRED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Registers the driver's task, so that the sweep can wake it in whatever state the
    /// connection is (`park` registers the same task).
    pub(crate) fn watch_timer(&self, cx: &Context<'_>) {
        let mut out = lock(&self.out);
        match &out.driver {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => out.driver = Some(cx.waker().clone()),
        }
    }

    /// For the sweep: wakes the driver, whose timer fired.
    pub(crate) fn wake_driver(&self) {
        let driver = lock(&self.out).driver.clone();
        if let Some(driver) = driver {
            driver.wake();
        }
    }

    /// The driver's task ended: its waker goes (it would keep the task's memory).
    pub(crate) fn forget_driver(&self) {
        let driver = lock(&self.out).driver.take();
        drop(driver);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn text(s: &str) -> Outgoing {
        Outgoing::Message(Message::text(s))
    }

    /// A backlog's room is not kept: once drained twice (the driver hands its buffer back at
    /// the next drain), the mailbox holds no more than `KEEP_QUEUED` messages' room, while a
    /// small queue keeps its buffers (no allocation per message once warmed up).
    #[test]
    fn a_drained_backlog_gives_its_room_back() {
        let mailbox = Mailbox::new("test", 1024);
        let mut pending = VecDeque::new();
        for i in 0..300 {
            mailbox.push(text(&i.to_string()));
        }
        assert!(mailbox.drain(&mut pending).is_none());
        assert_eq!(pending.len(), 300);
        pending.clear();
        mailbox.push(text("one"));
        mailbox.drain(&mut pending);
        assert_eq!(texts(&mut pending), ["one"]);
        assert!(lock(&mailbox.out).queue.capacity() <= KEEP_QUEUED);
        // A small queue keeps both buffers.
        let small = Mailbox::new("test", 1024);
        let mut pending = VecDeque::with_capacity(8);
        small.push(text("a"));
        small.drain(&mut pending);
        pending.clear();
        small.push(text("b"));
        small.drain(&mut pending);
        assert!(lock(&small.out).queue.capacity() >= 1);
    }

    /// Two subscribers drained one after the other, each sleeping in between (as drivers of
    /// one thread do), share the thread's spare list: a sleeping driver holds none, and each
    /// queue keeps its own buffer.
    #[test]
    fn sleeping_drivers_hold_no_list() {
        let subscribers = [Mailbox::new("a", 16), Mailbox::new("b", 16)];
        let mut lists = [VecDeque::new(), VecDeque::new()];
        for round in 0..4 {
            for (mailbox, list) in subscribers.iter().zip(&mut lists) {
                mailbox.push(text(&round.to_string()));
                assert!(mailbox.drain(list).is_none());
                assert_eq!(texts(list), [round.to_string()]);
                give_back(list);
                assert_eq!(list.capacity(), 0, "a sleeping driver holds no list");
                // Once the thread has a spare (after the first drain), each queue keeps a
                // buffer of its own.
                assert!(
                    round == 0 || lock(&mailbox.out).queue.capacity() >= 1,
                    "the queue keeps its own"
                );
            }
        }
        // A list a backlog grew is freed rather than kept as the spare.
        let mut grown = VecDeque::with_capacity(KEEP_QUEUED + 1);
        give_back(&mut grown);
        assert!(SPARE.take().capacity() <= KEEP_QUEUED);
    }

    /// The text of queued messages, to compare them.
    fn texts(queue: &mut VecDeque<Outgoing>) -> Vec<String> {
        queue
            .drain(..)
            .map(|outgoing| match outgoing {
                Outgoing::Message(Message::Text(text)) => text.as_str().to_owned(),
                _ => panic!("a text message"),
            })
            .collect()
    }

    /// A parked driver is woken by the next write, once; writes made while it runs (after it
    /// drained) wake nothing, and the queue it drains holds them all, in order.
    #[test]
    fn writes_wake_a_parked_driver_only() {
        let mailbox = Mailbox::new("/t", 16);
        let count = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&count));
        let cx = Context::from_waker(&waker);
        let mut pending = VecDeque::new();

        // Running: the driver drained, so its own writes do not wake it.
        assert!(mailbox.drain(&mut pending).is_none());
        mailbox.push(text("a"));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        // It must not sleep with a message queued.
        assert!(!mailbox.park(&cx));
        assert!(mailbox.drain(&mut pending).is_none());
        assert_eq!(texts(&mut pending), ["a"]);

        // Parked: the first write wakes it, the second does not (it is no longer parked).
        assert!(mailbox.park(&cx));
        mailbox.push(text("b"));
        mailbox.push(text("c"));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(mailbox.drain(&mut pending).is_none());
        assert_eq!(texts(&mut pending), ["b", "c"]);

        // A close asked for wakes a parked driver too, and is handed over once.
        assert!(mailbox.park(&cx));
        mailbox.close(CloseCode::NORMAL, "bye");
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        let close = mailbox.drain(&mut pending).expect("the close");
        assert_eq!((close.0.as_u16(), close.1.as_str()), (1000, "bye"));
        assert!(mailbox.drain(&mut pending).is_none());
    }

    /// The inbound slot: the endpoint waits, the driver delivers; a message delivered before
    /// the end is still handed over, and after it the endpoint learns that none will come.
    #[test]
    fn inbound_hand_off() {
        let mailbox = Mailbox::new("/t", 16);
        assert!(!mailbox.wants_message());
        assert!(mailbox.take_message().is_none());
        assert!(mailbox.wants_message());
        // Waiting again changes nothing.
        assert!(mailbox.take_message().is_none());

        mailbox.deliver(Message::Text("one".into()));
        assert!(!mailbox.wants_message());
        let Some(Some(Message::Text(one))) = mailbox.take_message() else {
            panic!("the delivered message");
        };
        assert_eq!(one, "one");
        assert!(!mailbox.wants_message());

        assert!(mailbox.take_message().is_none());
        mailbox.deliver(Message::Text("two".into()));
        mailbox.end_inbound();
        assert!(!mailbox.wants_message());
        assert!(matches!(
            mailbox.take_message(),
            Some(Some(Message::Text(_)))
        ));
        assert!(matches!(mailbox.take_message(), Some(None)));
        assert!(!mailbox.wants_message());
    }
}
