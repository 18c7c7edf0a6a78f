//! What the broker counts (read by [`Redis::stats`](crate::Redis::stats)), and its log lines
//! that could come by the thousand, written at most once an interval.

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Log lines that could come by the thousand are written at most this often.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// What the broker counted since it started; see [`RedisStats`](crate::RedisStats).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) behind: AtomicU64,
    pub(crate) unreachable: AtomicU64,
    pub(crate) unconfirmed: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) disconnections: AtomicU64,
    /// When the last line of each rate-limited kind was logged, and how many were skipped.
    logged: Mutex<[(Option<Instant>, u64); 3]>,
}

/// The rate-limited log lines.
#[derive(Clone, Copy)]
pub(crate) enum Line {
    Behind = 0,
    Unconfirmed = 1,
    /// Redis refusing the subscriber connection: logged once a minute.
    Refused = 2,
}

impl Counters {
    /// Whether to log a line of `kind` now (at most one a second, or a minute for refusals):
    /// `Some(skipped)`.
    pub(crate) fn log(&self, kind: Line) -> Option<u64> {
        let every = match kind {
            Line::Refused => Duration::from_secs(60),
            Line::Behind | Line::Unconfirmed => LOG_EVERY,
        };
        let mut logged = lock(&self.logged);
        let (last, skipped) = &mut logged[kind as usize];
        let now = Instant::now();
        if last.is_some_and(|last| now.duration_since(last) < every) {
            *skipped += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(skipped))
    }
}

/// A mutex's guard, whether or not a thread panicked holding it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
