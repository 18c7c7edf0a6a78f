//! The open connections of one server, however they arrived (the accept loop, the tower
//! `Service`, the test kit): counted for `max_connections`, and closed by a graceful shutdown.
//!
//! Each WebSocket connection runs in a task of its own, entered here when it is spawned and
//! removed when the task ends, by a guard inside the task, so finding ended ones needs no
//! scan. (The registry's one scan is the timers' sweep, `crate::sweep`, each tick.) A
//! shutdown closes every open connection's mailbox with 1001 (each connection then says
//! goodbye and runs its `on_close`), waits for the count to reach zero, and past the
//! deadline aborts the tasks still running. Connections watch no signal of their own: the
//! mailbox they already wait on is how the shutdown reaches them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;

use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::mailbox::Mailbox;
use crate::message::CloseCode;
use crate::shutdown::Shutdown;
use crate::sweep::{self, Sweep};

#[derive(Default)]
pub(crate) struct Registry {
    shutdown: Shutdown,
    /// Running connection tasks by id.
    open: Mutex<HashMap<u64, Slot>>,
    /// `open.len()`, readable without the lock.
    count: AtomicUsize,
    /// TCP connections of the accept loop still in their handshake (TLS and HTTP).
    handshakes: AtomicUsize,
    /// Notified whenever the last open connection ends.
    idle: Notify,
    next_id: AtomicU64,
    /// The connections' timers (see `crate::sweep`).
    sweep: Sweep,
}

/// A running connection: how to close it, and how to abort it.
struct Slot {
    mailbox: Arc<Mailbox>,
    /// `None` until the task's abort handle is known.
    task: Option<AbortHandle>,
}

/// The close every connection gets when the server shuts down.
const SHUTTING_DOWN: (CloseCode, &str) = (CloseCode::GOING_AWAY, "server shutting down");

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding the lock; poisoning would only come from a bug.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    pub(crate) fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// A fresh connection id, for logs.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The clock of the connections' timers.
    pub(crate) fn sweep(&self) -> &Sweep {
        &self.sweep
    }

    /// Starts the sweep that keeps the connections' timers, with `tick`, unless it runs. Called
    /// after a connection is spawned: the sweep ends once it finds none open.
    pub(crate) fn keep_time(self: &Arc<Self>, tick: Duration) {
        if self.sweep.is_running() {
            return;
        }
        // Under the lock, as the sweep decides to end under it: either it sees the new
        // connection, or it ended before and a new one starts here.
        let open = lock(&self.open);
        let start = self.sweep.start();
        drop(open);
        if start {
            tokio::spawn(sweep::run(Arc::downgrade(self), tick));
        }
    }

    /// For the sweep: the mailboxes of the connections whose timer is due at `now` (marked
    /// fired), into `due`; `false` if no connection is open, and the sweep ends.
    pub(crate) fn due_connections(&self, now: u64, due: &mut Vec<Arc<Mailbox>>) -> bool {
        let open = lock(&self.open);
        if open.is_empty() {
            self.sweep.stop();
            return false;
        }
        // Atomic loads only, under the lock: the waking happens after it.
        due.extend(
            open.values()
                .filter(|slot| slot.mailbox.timer_due(now))
                .map(|slot| Arc::clone(&slot.mailbox)),
        );
        true
    }

    /// The sweep's task was dropped while it ran (its runtime shut down).
    pub(crate) fn sweep_dropped(&self) {
        let open = lock(&self.open);
        self.sweep.stop();
        drop(open);
    }

    /// Open WebSocket connections.
    pub(crate) fn open(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Counts a handshake under way (a request on its way to `dispatch`, from the moment
    /// its connection was accepted) until the guard drops. The guard knows the load it met:
    /// the open connections and the other handshakes.
    pub(crate) fn handshake(self: &Arc<Self>) -> Handshake {
        let before = self.handshakes.fetch_add(1, Ordering::Relaxed);
        let load = before + self.count.load(Ordering::Relaxed);
        Handshake {
            registry: Arc::clone(self),
            load,
        }
    }

    /// Runs a connection in a task of its own, entered until the task ends; a shutdown closes
    /// it through `mailbox`.
    pub(crate) fn spawn<F>(self: &Arc<Self>, id: u64, mailbox: &Arc<Mailbox>, connection: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let entry = Entry {
            registry: Arc::clone(self),
            id,
        };
        // Under the lock, so the task (which removes its entry when it ends) cannot end before
        // its abort handle is recorded.
        let mut open = lock(&self.open);
        self.count.fetch_add(1, Ordering::Relaxed);
        // `map`, not an async block that awaits `connection`: such a block would hold the
        // future twice (as captured, and as awaited), doubling every connection's task.
        let task = tokio::spawn(connection.map(move |()| drop(entry)));
        let slot = Slot {
            mailbox: Arc::clone(mailbox),
            task: Some(task.abort_handle()),
        };
        open.insert(id, slot);
        drop(open);
        // Spawned after `shut_down` looked at the open connections: closed here. (The flag is
        // set before `shut_down` takes the lock, and read here after it was released.)
        if self.shutdown.is_triggered() {
            mailbox.close(SHUTTING_DOWN.0, SHUTTING_DOWN.1);
        }
    }

    /// Starts a shutdown: new connections are refused (`dispatch` reads the signal) and every
    /// open one is closed with 1001.
    pub(crate) fn shut_down(&self) {
        self.shutdown.trigger();
        let open = lock(&self.open);
        for slot in open.values() {
            slot.mailbox.close(SHUTTING_DOWN.0, SHUTTING_DOWN.1);
        }
    }

    /// Triggers the shutdown (every connection closes with 1001 and runs its `on_close`),
    /// then waits until no connection is left, or until `timeout` passed, when it aborts
    /// what still runs.
    pub(crate) async fn drain(&self, timeout: Duration) {
        self.shut_down();
        if tokio::time::timeout(timeout, self.closed()).await.is_err() {
            let remaining = self.abort_all();
            tracing::warn!(
                remaining,
                "shutdown timeout passed: dropping the remaining connections"
            );
            // Aborted tasks end at their next turn on the runtime; their entries go then.
            let _ = tokio::time::timeout(Duration::from_secs(1), self.closed()).await;
        }
    }

    /// Completes once no connection is open.
    pub(crate) async fn closed(&self) {
        loop {
            let idle = self.idle.notified();
            let mut idle = std::pin::pin!(idle);
            // Registered before the check, so an end in between is not missed.
            idle.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Aborts every connection task; returns how many there were.
    pub(crate) fn abort_all(&self) -> usize {
        let open = lock(&self.open);
        for task in open.values().filter_map(|slot| slot.task.as_ref()) {
            task.abort();
        }
        open.len()
    }
}

/// A connection task's place in the registry, left when the task ends (or is aborted).
struct Entry {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let registry = &self.registry;
        let mut open = lock(&registry.open);
        let slot = open.remove(&self.id);
        let before = registry.count.fetch_sub(1, Ordering::Relaxed);
        drop(open);
        if let Some(slot) = slot {
            slot.mailbox.forget_driver();
        }
        if before == 1 {
            registry.idle.notify_waiters();
        }
    }
}

/// A handshake under way, counted against `max_connections` until it ends.
pub(crate) struct Handshake {
    registry: Arc<Registry>,
    /// The open connections and other handshakes when this one began.
    load: usize,
}

impl Handshake {
    pub(crate) fn load(&self) -> usize {
        self.load
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.registry.handshakes.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections are counted while they run; a drain waits for them, and aborts the ones
    /// still running at its deadline.
    #[tokio::test(start_paused = true)]
    async fn drain_waits_then_aborts() {
        let registry = Arc::new(Registry::default());
        let mailboxes = [(); 2].map(|()| Arc::new(Mailbox::new("test", 16)));
        let quick = Arc::clone(&mailboxes[0]);
        registry.spawn(registry.next_id(), &mailboxes[0], async move {
            // Ends once the shutdown closed its mailbox.
            while !quick.is_closing() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        registry.spawn(registry.next_id(), &mailboxes[1], std::future::pending());
        assert_eq!(registry.open(), 2);
        let handshake = registry.handshake();
        assert_eq!(handshake.load(), 2);
        assert_eq!(registry.handshake().load(), 3);
        drop(handshake);
        assert_eq!(registry.handshake().load(), 2);

        let started = tokio::time::Instant::now();
        registry.drain(Duration::from_secs(10)).await;
        assert_eq!(registry.open(), 0);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert!(mailboxes.iter().all(|mailbox| mailbox.is_closing()));
        // Nothing open: draining again returns at once.
        registry.drain(Duration::from_secs(10)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
