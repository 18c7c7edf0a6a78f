//! The state one connection shares between its `Out` handles, its inbox and its driver.
//!
//! Two small mutexes, each held for a few instructions: the outbound queue (written by any
//! task holding an `Out`, drained by the driver) and the inbound slot (a hand-off between the
//! driver and the endpoint code, which run in the same task).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Waker};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite;

use crate::{CloseCode, Message};

pub(crate) struct Shared {
    pub(crate) endpoint: &'static str,
    limit: usize,
    /// A close was asked for (or the connection ended): the driver starts its close timer.
    /// An atomic, so the driver can check it on every turn without taking the lock.
    closing: AtomicBool,
    /// The client is not reading (queue overflow): what is still unwritten may be dropped.
    abandoned: AtomicBool,
    out: Mutex<Outbound>,
    /// Senders waiting in `Out::send` for room in the queue.
    room: Notify,
    inbound: Mutex<Slot>,
}

struct Outbound {
    queue: VecDeque<tungstenite::Message>,
    /// A close asked for and not yet taken by the driver: sent once the queue is written.
    close: Option<(CloseCode, String)>,
    /// No more messages are accepted: a close was asked for, or the connection ended.
    shut: bool,
    /// Tasks parked in `Out::send`, so the driver only notifies when someone waits.
    waiting: usize,
    /// The driver, parked because the queue was empty.
    driver: Option<Waker>,
}

/// The inbound hand-off: the endpoint waits, the driver fills.
#[derive(Default)]
struct Slot {
    /// A received message the endpoint has not taken yet. It is handed over even if the
    /// connection ends meanwhile: a message that arrived is always handled.
    message: Option<Message>,
    /// The endpoint waits for a message: the driver reads the socket.
    waiting: bool,
    /// No more messages will come.
    ended: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding these locks; poisoning would only come from a bug.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(endpoint: &'static str, limit: usize) -> Self {
        Shared {
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
            room: Notify::new(),
            inbound: Mutex::new(Slot::default()),
        }
    }

    /// Queues a message; a full queue means the client does not keep up, and closes with 1008.
    pub(crate) fn push(&self, message: tungstenite::Message) {
        let mut out = lock(&self.out);
        if out.shut {
            return;
        }
        if out.queue.len() < self.limit {
            out.queue.push_back(message);
            wake_driver(out);
            return;
        }
        drop(out);
        tracing::warn!(
            endpoint = self.endpoint,
            limit = self.limit,
            "outbound queue full: the client does not read fast enough; closing with 1008"
        );
        self.close_now(CloseCode::POLICY, "outbound queue full");
    }

    /// Queues a message, waiting for room.
    pub(crate) async fn push_wait(
        &self,
        message: tungstenite::Message,
    ) -> Result<(), crate::Closed> {
        loop {
            // Registered before the check, so a drain right after the check still wakes us.
            let notified = self.room.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let mut out = lock(&self.out);
                if out.shut {
                    return Err(crate::Closed);
                }
                if out.queue.len() < self.limit {
                    out.queue.push_back(message);
                    wake_driver(out);
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
        out.close = Some((code, truncate_reason(reason)));
        self.closing.store(true, Ordering::Release);
        wake_driver(out);
        // Senders waiting for room now get `Closed` instead of waiting for a drain.
        self.room.notify_waiters();
    }

    /// Drops the queued messages and asks for a close at once (slow consumer).
    fn close_now(&self, code: CloseCode, reason: &str) {
        let mut out = lock(&self.out);
        out.queue.clear();
        out.queue.shrink_to_fit();
        out.shut = true;
        out.close = Some((code, truncate_reason(reason)));
        self.closing.store(true, Ordering::Release);
        self.abandoned.store(true, Ordering::Release);
        wake_driver(out);
        self.room.notify_waiters();
    }

    /// The driver takes every queued message into `into` (which must be empty), and any close
    /// asked for. With nothing to take, it registers to be woken by the next write.
    pub(crate) fn drain(
        &self,
        cx: &Context<'_>,
        into: &mut VecDeque<tungstenite::Message>,
    ) -> Option<(CloseCode, String)> {
        debug_assert!(into.is_empty());
        let mut out = lock(&self.out);
        if out.queue.is_empty() && out.close.is_none() {
            match &out.driver {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => out.driver = Some(cx.waker().clone()),
            }
            return None;
        }
        // Swapping keeps both buffers' capacity: no allocation once warmed up.
        std::mem::swap(&mut out.queue, into);
        let close = out.close.take();
        let notify = out.waiting > 0;
        drop(out);
        if notify {
            self.room.notify_waiters();
        }
        close
    }

    /// The connection is over: writes become no-ops and waiting senders get `Closed`.
    pub(crate) fn finish(&self) {
        self.closing.store(true, Ordering::Release);
        let mut out = lock(&self.out);
        out.shut = true;
        out.queue = VecDeque::new();
        out.close = None;
        out.driver = None;
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
        lock(&self.inbound).waiting
    }

    pub(crate) fn deliver(&self, message: Message) {
        let mut slot = lock(&self.inbound);
        slot.message = Some(message);
        slot.waiting = false;
    }

    /// No more messages will arrive (one already delivered is still taken).
    pub(crate) fn end_inbound(&self) {
        let mut slot = lock(&self.inbound);
        slot.ended = true;
        slot.waiting = false;
    }

    /// The endpoint takes a delivered message (`Some(Some(_))`), learns that none will come
    /// (`Some(None)`), or starts waiting (`None`).
    pub(crate) fn take_message(&self) -> Option<Option<Message>> {
        let mut slot = lock(&self.inbound);
        if let Some(message) = slot.message.take() {
            return Some(Some(message));
        }
        if slot.ended {
            return Some(None);
        }
        slot.waiting = true;
        None
    }
}

/// Wakes the driver if it is parked on an empty queue, after releasing the lock.
fn wake_driver(mut out: MutexGuard<'_, Outbound>) {
    let driver = out.driver.take();
    drop(out);
    if let Some(driver) = driver {
        driver.wake();
    }
}

struct WaitingGuard<'a>(&'a Shared);

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
