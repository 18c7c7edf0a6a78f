//! The open connections of one server, however they arrived (the accept loop, the tower
//! `Service`, the test kit): counted for `max_connections`, and closed by a graceful shutdown.
//!
//! Each WebSocket connection runs in a task of its own, entered here when it is spawned and
//! removed when the task ends, by a guard inside the task, so no sweep is ever needed. A
//! shutdown triggers the signal every connection watches (each then closes with 1001 and
//! runs its `on_close`), waits for the count to reach zero, and past the deadline aborts the
//! tasks still running.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;

use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::shutdown::Shutdown;

#[derive(Default)]
pub(crate) struct Registry {
    shutdown: Shutdown,
    /// Running connection tasks by id; `None` until the task's abort handle is known.
    open: Mutex<HashMap<u64, Option<AbortHandle>>>,
    /// `open.len()`, readable without the lock.
    count: AtomicUsize,
    /// TCP connections of the accept loop still in their handshake (TLS and HTTP).
    handshakes: AtomicUsize,
    /// Notified whenever the last open connection ends.
    idle: Notify,
    next_id: AtomicU64,
}

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

    /// Runs a connection in a task of its own, entered until the task ends.
    pub(crate) fn spawn<F>(self: &Arc<Self>, id: u64, connection: F)
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
        open.insert(id, Some(task.abort_handle()));
    }

    /// Triggers the shutdown (every connection closes with 1001 and runs its `on_close`),
    /// then waits until no connection is left, or until `timeout` passed, when it aborts
    /// what still runs.
    pub(crate) async fn drain(&self, timeout: Duration) {
        self.shutdown.trigger();
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
        for task in open.values().flatten() {
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
        open.remove(&self.id);
        let before = registry.count.fetch_sub(1, Ordering::Relaxed);
        drop(open);
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
        let quick = Arc::clone(&registry);
        registry.spawn(registry.next_id(), async move {
            quick.shutdown().signal().await;
        });
        registry.spawn(registry.next_id(), std::future::pending());
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
        // Nothing open: draining again returns at once.
        registry.drain(Duration::from_secs(10)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
