//! A connection's time: the keep-alive clock (ping a silent peer, give up on one silent for
//! too long, send the heartbeats `Server::heartbeat` asks for), the close deadline (how long
//! a closing connection waits for its peer), and the budget of one wake-up (how much work the
//! task does before it lets the others run).
//!
//! The timer itself is the server's sweep (`crate::sweep`): the clock writes when it is due
//! into the mailbox, and the sweep wakes the connection once it passed.

use std::future::Future;
use std::task::Context;
use std::time::Duration;

use tokio::time::Instant;

use crate::mailbox::Mailbox;
use crate::sweep::Sweep;

/// The connection's settings for time.
#[derive(Clone, Copy)]
pub(super) struct Timing {
    /// How long a closing connection waits for the peer.
    pub(super) close_timeout: Duration,
    /// Silence after which the server pings.
    pub(super) ping_interval: Duration,
    /// Silence after which the server gives up on the peer.
    pub(super) idle_timeout: Duration,
    /// The time between two heartbeats (empty text messages), when the server sends them.
    pub(super) heartbeat: Option<Duration>,
}

/// What a keep-alive check found.
pub(super) enum Check {
    /// The peer was heard recently enough.
    Alive,
    /// The peer is silent: ping it.
    Ping,
    /// The peer was silent for this long, past the idle timeout: close.
    Idle(Duration),
}

/// Where the connection's one timer is kept: its due time in the mailbox, on the sweep's
/// clock.
#[derive(Clone, Copy)]
pub(super) struct Timer<'a> {
    pub(super) mailbox: &'a Mailbox,
    pub(super) sweep: &'a Sweep,
}

impl Timer<'_> {
    fn set(self, at: Instant) {
        self.mailbox.set_timer(self.sweep.due(at));
    }

    /// Whether the sweep found the timer due: a load, not a look at the clock.
    fn fired(self) -> bool {
        self.mailbox.timer_fired()
    }
}

/// The keep-alive and close timers, on one timer: the keep-alive's while the connection is
/// open, the close deadline's once it closes (an ending connection pings no one).
pub(super) struct Clock {
    /// When the peer was last known to be alive, as of the last keep-alive check.
    last_heard: Instant,
    /// Frames read as of the last check: counting frames is cheaper than reading the clock
    /// for every frame.
    frames_at_check: u64,
    /// When the next heartbeat is due, when the server sends them.
    next_beat: Option<Instant>,
    /// The timer is the close deadline.
    closing: bool,
}

impl Clock {
    /// The clock, its timer set to the first keep-alive check (or heartbeat).
    pub(super) fn new(timing: Timing, timer: Timer<'_>) -> Self {
        let now = Instant::now();
        let next_beat = timing.heartbeat.map(|interval| now + interval);
        let first = now + timing.ping_interval;
        timer.set(next_beat.map_or(first, |beat| beat.min(first)));
        Clock {
            last_heard: now,
            frames_at_check: 0,
            next_beat,
            closing: false,
        }
    }

    /// Whether the keep-alive timer fired (never, once the connection closes).
    pub(super) fn keepalive_fired(&self, timer: Timer<'_>) -> bool {
        !self.closing && timer.fired()
    }

    /// The keep-alive timer fired: is the peer alive? `frames_read` counts the frames read so
    /// far; `reading` says whether the connection reads its socket at all now (while the
    /// endpoint is busy in a section it does not, so silence proves nothing). Sets the timer
    /// for the next check. The second value says whether a heartbeat is due.
    pub(super) fn check(
        &mut self,
        frames_read: u64,
        reading: bool,
        timing: Timing,
        timer: Timer<'_>,
    ) -> (Check, bool) {
        let now = Instant::now();
        let beat = self.next_beat.is_some_and(|at| at <= now);
        if let (true, Some(interval)) = (beat, timing.heartbeat) {
            self.next_beat = Some(now + interval);
        }
        (
            self.check_peer(now, frames_read, reading, timing, timer),
            beat,
        )
    }

    fn check_peer(
        &mut self,
        now: Instant,
        frames_read: u64,
        reading: bool,
        timing: Timing,
        timer: Timer<'_>,
    ) -> Check {
        if frames_read != self.frames_at_check || !reading {
            self.frames_at_check = frames_read;
            self.last_heard = now;
        }
        let silent = now.saturating_duration_since(self.last_heard);
        if silent >= timing.idle_timeout {
            // The close that follows sets the timer to its deadline.
            return Check::Idle(silent);
        }
        let next_ping = self.last_heard + timing.ping_interval;
        let next = if next_ping > now {
            next_ping
        } else {
            now + timing.ping_interval
        };
        let next = next.min(self.last_heard + timing.idle_timeout);
        timer.set(self.next_beat.map_or(next, |beat| beat.min(next)));
        if silent >= timing.ping_interval {
            Check::Ping
        } else {
            Check::Alive
        }
    }

    /// Starts the close deadline, unless it runs already.
    pub(super) fn arm_close(&mut self, timing: Timing, timer: Timer<'_>) {
        if !self.closing {
            self.restart_close(timing, timer);
        }
    }

    /// Starts the close deadline afresh (for the goodbye after the close handshake).
    pub(super) fn restart_close(&mut self, timing: Timing, timer: Timer<'_>) {
        self.closing = true;
        timer.set(Instant::now() + timing.close_timeout);
    }

    /// Whether the close deadline passed: said once per deadline.
    pub(super) fn close_passed(&mut self, timer: Timer<'_>) -> bool {
        if !self.closing || !timer.fired() {
            return false;
        }
        self.closing = false;
        timer.mailbox.clear_timer();
        true
    }
}

/// How much one wake-up of the connection may do before it yields to the scheduler: a turn
/// of its loop costs one unit, framing a message one, and compressing one more per KiB
/// (compressing is the dearest work a connection does: 256 KiB take about half a
/// millisecond). tokio's own budget bounds the socket's reads and writes; this bounds
/// everything else, so that no connection, whatever state it is in, keeps its thread from
/// the other connections for long.
const WORK_PER_WAKE: usize = 256;

/// The work done in one wake-up.
#[derive(Default)]
pub(super) struct Budget {
    /// In units of `WORK_PER_WAKE`.
    work: usize,
    /// The budget ran out (tokio's or ours): yield once the work at hand is written; the
    /// task is already woken to run again.
    spent: bool,
}

impl Budget {
    /// A new wake-up.
    pub(super) fn start(&mut self) {
        self.work = 0;
    }

    /// Counts `units` of work; once the budget is spent, the task is woken to go on after
    /// the others had their turn.
    #[inline(always)]
    pub(super) fn spend(&mut self, cx: &mut Context<'_>, units: usize) {
        self.work += units;
        if self.work >= WORK_PER_WAKE && !self.spent {
            self.spent = true;
            // Woken as tokio's own budget wakes a task: after the scheduler has looked for
            // sockets that became ready, so the others run before this connection goes on.
            let yielded = std::pin::pin!(tokio::task::yield_now());
            let _ = yielded.poll(cx);
        }
    }

    pub(super) fn is_spent(&self) -> bool {
        self.spent
    }

    /// Yielding now: the next wake-up has a whole budget.
    pub(super) fn yielded(&mut self) {
        self.spent = false;
    }
}
