//! Log lines that can come by the thousand (every subscriber of a busy topic on a bad network
//! closed with 1008 at once, a broker that stays behind): the first is logged, the others
//! within the interval are counted, and the next line logged says how many there were.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One kind of log line, logged at most once per interval.
pub(crate) struct RateLimit {
    interval: Duration,
    /// When it was last logged, in milliseconds since `epoch()`; `NEVER` before the first.
    last: AtomicU64,
    /// Lines skipped since the last one logged.
    skipped: AtomicU64,
}

const NEVER: u64 = u64::MAX;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl RateLimit {
    pub(crate) const fn new(interval: Duration) -> Self {
        RateLimit {
            interval,
            last: AtomicU64::new(NEVER),
            skipped: AtomicU64::new(0),
        }
    }

    /// Whether to log this line now: `Some(skipped)`, the lines skipped since the last one
    /// logged; `None` to skip it (it is counted).
    pub(crate) fn check(&self) -> Option<u64> {
        let now = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(NEVER - 1);
        let last = self.last.load(Ordering::Relaxed);
        let due = last == NEVER || now.saturating_sub(last) >= self.interval.as_millis() as u64;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.skipped.swap(0, Ordering::Relaxed));
        }
        self.skipped.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_then_one_per_interval_with_the_count_of_the_others() {
        let limit = RateLimit::new(Duration::from_millis(50));
        assert_eq!(limit.check(), Some(0));
        for _ in 0..99 {
            assert_eq!(limit.check(), None);
        }
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(limit.check(), Some(99));
        assert_eq!(limit.check(), None);
    }
}
