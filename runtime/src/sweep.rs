//! One timer for all the connections of a server: the sweep.
//!
//! A connection's timers (its keep-alive checks and heartbeats, its close deadline) are one
//! due time in its mailbox, a number of milliseconds of the sweep's clock, not a timer of its
//! own (a tokio `Sleep` is 112 bytes, more than the rest of an idle connection's timers
//! together). One task per server, the sweep, wakes every `tick` and wakes the connections
//! whose due time passed, through their mailbox's waker; each then does what its timer says.
//! A timer so fires no earlier than it is due, and at most a tick (and a millisecond) later.
//!
//! The sweep runs while the server has open connections: it starts with the first (again
//! after it stopped), and ends at the first tick that finds none, or the registry gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, Weak};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use crate::config::Config;
use crate::registry::Registry;

/// The shortest tick: finer would spend a core walking many connections.
const MIN_TICK: Duration = Duration::from_millis(5);
/// The longest tick, the precision of the default settings (close timeout 5 s).
const MAX_TICK: Duration = Duration::from_millis(250);
/// The tick is this fraction of the shortest timer setting.
const TICKS_PER_TIMEOUT: u32 = 10;

/// The sweep's clock, and whether its task runs.
#[derive(Default)]
pub(crate) struct Sweep {
    /// The sweep's time 0: due times count milliseconds from it. Set by the first use, in
    /// the runtime (whose clock may be paused in tests).
    epoch: OnceLock<Instant>,
    /// The sweep task runs (changed under the registry's lock).
    running: AtomicBool,
}

impl Sweep {
    fn epoch(&self) -> Instant {
        *self.epoch.get_or_init(Instant::now)
    }

    /// `at` in the sweep's time, rounded up to the millisecond (a timer is never early);
    /// never 0 or 1, which mean no timer and a fired one.
    pub(crate) fn due(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch());
        let millis = since.as_nanos().div_ceil(1_000_000);
        u64::try_from(millis).unwrap_or(u64::MAX - 2) + 2
    }

    /// Now in the sweep's time, rounded down: what is due at or before it has passed.
    fn now(&self) -> u64 {
        let since = Instant::now().saturating_duration_since(self.epoch());
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX - 2) + 2
    }

    /// Whether the sweep task runs; the registry starts it when not.
    pub(crate) fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Marks the task as running (under the registry's lock); `false` if it already ran.
    pub(crate) fn start(&self) -> bool {
        !self.running.swap(true, Ordering::AcqRel)
    }

    /// Marks the task as ended (under the registry's lock, having found no connection).
    pub(crate) fn stop(&self) {
        self.running.store(false, Ordering::Release);
    }
}

/// The tick for a server's settings: a tenth of its shortest timer (ping interval, idle
/// timeout, close timeout, heartbeat), within 5 to 250 ms.
pub(crate) fn tick(config: &Config) -> Duration {
    let shortest = [
        config.ping_interval,
        config.idle_timeout,
        config.close_timeout,
    ]
    .into_iter()
    .chain(config.heartbeat)
    .min()
    .unwrap_or(MAX_TICK);
    (shortest / TICKS_PER_TIMEOUT).clamp(MIN_TICK, MAX_TICK)
}

/// The sweep task: each tick, wakes the connections whose timer is due. Holds the registry
/// weakly, between ticks, so that it never keeps a server alive.
pub(crate) async fn run(registry: Weak<Registry>, tick: Duration) {
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut due = Vec::new();
    // Dropped with the task, however it ends (its runtime may shut down first).
    let mut running = Running(registry);
    loop {
        ticks.tick().await;
        let Some(registry) = running.0.upgrade() else {
            return;
        };
        let now = registry.sweep().now();
        if !registry.due_connections(now, &mut due) {
            // Said stopped already, under the registry's lock.
            running.0 = Weak::new();
            return;
        }
        // Woken outside the registry's lock.
        for mailbox in due.drain(..) {
            mailbox.wake_driver();
        }
    }
}

/// The sweep's task runs: a task dropped before it found no connection (with its runtime)
/// says it stopped, so that the next connection starts another.
struct Running(Weak<Registry>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(registry) = self.0.upgrade() {
            registry.sweep_dropped();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_follows_the_shortest_timer() {
        let mut config = Config::default();
        // Defaults: the close timeout (5 s) is the shortest; a tenth is over the longest tick.
        assert_eq!(tick(&config), MAX_TICK);
        config.idle_timeout = Duration::from_millis(600);
        assert_eq!(tick(&config), Duration::from_millis(60));
        config.heartbeat = Some(Duration::from_millis(200));
        assert_eq!(tick(&config), Duration::from_millis(20));
        config.ping_interval = Duration::from_millis(1);
        assert_eq!(tick(&config), MIN_TICK);
    }

    /// Due times round up and now rounds down, so a timer never fires early.
    #[tokio::test(start_paused = true)]
    async fn due_is_never_early() {
        let sweep = Sweep::default();
        let start = Instant::now();
        assert_eq!(sweep.due(start), 2);
        let due = sweep.due(start + Duration::from_micros(1500));
        assert_eq!(due, 4);
        tokio::time::advance(Duration::from_micros(1999)).await;
        assert!(sweep.now() < due);
        tokio::time::advance(Duration::from_micros(1)).await;
        assert_eq!(sweep.now(), due);
    }
}
