//! What the server counts, through the `metrics` facade (feature `metrics`): whatever recorder
//! the application installs receives it (Prometheus with the feature `prometheus`, see
//! [`Prometheus`](crate::Prometheus)). Without the feature every item here is empty and
//! compiles to nothing.
//!
//! A connection counts its messages and bytes in plain fields ([`Tally`]) and hands them to
//! the facade once per wake-up of its task ([`Connection::flush`]), not once per message.
//! Everything else (handshakes, closes, publishes) is counted as it happens.
//!
//! Labels are bounded: endpoint names (one per route), status codes, close codes (the codes
//! of RFC 6455 by number, applications' codes as `3xxx` or `4xxx`) and fixed words. No
//! topic name, path or user data is ever a label.
//!
//! To add a counter: a name in [`names`] (with its description in `describe`), and a
//! function here with an empty twin for the build without the feature.

/// The metric names, as Prometheus shows them.
#[cfg(feature = "metrics")]
pub mod names {
    /// Gauge: open WebSocket connections; label `endpoint`.
    pub const CONNECTIONS_OPEN: &str = "wsock_connections_open";
    /// Counter: handshakes answered; labels `status` (`101` when accepted) and `reason`
    /// (`accepted`, or a word for why it was refused: `busy`, `host`, `not_found`,
    /// `bad_path`, `method`, `not_websocket`, `bad_request`, `origin`, `protocol`,
    /// `shutting_down`, `resume`, `rejected` (a guard's refusal), `internal`).
    pub const HANDSHAKES: &str = "wsock_handshakes_total";
    /// Histogram: seconds from the request's arrival in `dispatch` to its answer (checks
    /// and extractors included); label `status`.
    pub const HANDSHAKE_DURATION: &str = "wsock_handshake_duration_seconds";
    /// Counter: messages received; labels `endpoint`, `compression` (`on` when the
    /// connection agreed on permessage-deflate, else `off`).
    pub const MESSAGES_RECEIVED: &str = "wsock_messages_received_total";
    /// Counter: messages sent; labels `endpoint`, `compression`.
    pub const MESSAGES_SENT: &str = "wsock_messages_sent_total";
    /// Counter: payload bytes received, as the endpoint sees them (inflated); labels
    /// `endpoint`, `compression`.
    pub const BYTES_RECEIVED: &str = "wsock_received_bytes_total";
    /// Counter: payload bytes sent, as the endpoint wrote them (before compression); labels
    /// `endpoint`, `compression`.
    pub const BYTES_SENT: &str = "wsock_sent_bytes_total";
    /// Counter: connections ended; labels `endpoint`, `code` (the close code; `1006` when no
    /// close frame was exchanged), `side` (`server` or `client`: who sent the first close
    /// frame; `none` for 1006).
    pub const CLOSES: &str = "wsock_closes_total";
    /// Counter: connections closed with 1008 because their outbound queue was full (a client
    /// too slow to read); label `endpoint`.
    pub const SLOW_CONSUMER_CLOSES: &str = "wsock_slow_consumer_closes_total";
    /// Gauge: the longest outbound queue a connection had (messages waiting for a slow
    /// client), over the server's life; label `endpoint`.
    pub const QUEUE_HIGH_WATER: &str = "wsock_outbound_queue_high_water";
    /// Counter: messages published to topics (on this node).
    pub const TOPIC_PUBLISHES: &str = "wsock_topic_publishes_total";
    /// Counter: published messages queued for a subscriber (one per subscriber).
    pub const TOPIC_DELIVERIES: &str = "wsock_topic_deliveries_total";
    /// Counter: subscriptions of resumable connections, by `outcome`: `recovered` (what the
    /// client missed was replayed, or it missed nothing), `not_recovered` (the gap could not
    /// be filled: it was told so), `live` (it gave no position for the topic).
    pub const RESUMES: &str = "wsock_resumes_total";
    /// Counter: published messages a subscription's delivery mode did not deliver; label
    /// `why`: `replaced` (a latest-only subscription had a newer one), `dropped` (a droppable
    /// subscription's queue was full, or a latest-only one held too many keys), `filtered` (a
    /// filter said no, or the subscription was paused). Per topic: `Topics::delivery_counts`.
    pub const TOPIC_SKIPPED: &str = "wsock_topic_skipped_total";
    /// Gauge: the members of every presence as this node sees them (its own and, with a
    /// broker, the other nodes'), summed over the presences; no presence name as a label.
    pub const PRESENCE_MEMBERS: &str = "wsock_presence_members";
    /// Counter: messages handed to the broker for the other nodes.
    pub const BROKER_PUBLISHES: &str = "wsock_broker_publishes_total";
    /// Counter: messages the broker did not take (unreachable, full).
    pub const BROKER_ERRORS: &str = "wsock_broker_errors_total";
    /// Gauge: 1 when the broker took the last message published on this node (or refused it
    /// only for its backlog), 0 when it could not reach its backend; absent without a broker.
    pub const BROKER_UP: &str = "wsock_broker_up";
}

#[cfg(feature = "metrics")]
pub(crate) use on::*;

#[cfg(not(feature = "metrics"))]
pub(crate) use off::*;

/// Who sent the first close frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Server,
    Client,
    /// None did: the connection dropped (1006).
    None,
}

impl Side {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn word(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Client => "client",
            Side::None => "none",
        }
    }
}

/// A close code as a bounded label: the codes of RFC 6455 by number, an application's as
/// `3xxx` or `4xxx`, anything else `other`.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn code_label(code: u16) -> &'static str {
    const KNOWN: [&str; 16] = [
        "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010",
        "1011", "1012", "1013", "1014", "1015",
    ];
    match code {
        1000..=1015 => KNOWN[usize::from(code - 1000)],
        3000..=3999 => "3xxx",
        4000..=4999 => "4xxx",
        _ => "other",
    }
}

#[cfg(feature = "metrics")]
mod on {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use metrics::{Counter, Gauge, counter, gauge, histogram};

    use super::{Side, code_label, names};

    /// Messages and bytes one way, counted by the connection until its next flush.
    #[derive(Default)]
    pub(crate) struct Tally {
        messages: u64,
        bytes: u64,
    }

    impl Tally {
        #[inline(always)]
        pub(crate) fn add(&mut self, bytes: usize) {
            self.messages += 1;
            self.bytes += bytes as u64;
        }
    }

    /// An endpoint's series for one compression setting: the recorder's handles, taken by the
    /// endpoint's first connection and shared by the others (a connection holds a pointer,
    /// not its own handles: an idle connection stays small).
    struct Series {
        endpoint: &'static str,
        open: Gauge,
        messages_in: Counter,
        messages_out: Counter,
        bytes_in: Counter,
        bytes_out: Counter,
        /// The endpoint's high-water mark, shared by its two series.
        high_water: &'static HighWater,
    }

    /// The longest outbound queue an endpoint's connections had, and its gauge.
    struct HighWater {
        highest: AtomicUsize,
        gauge: Gauge,
    }

    /// The series of `endpoint`: made once per endpoint and compression setting (a bounded
    /// number, kept for the process's life).
    fn series(endpoint: &'static str, compressed: bool) -> &'static Series {
        static ALL: Mutex<Vec<(&'static str, bool, &'static Series)>> = Mutex::new(Vec::new());
        let mut all = ALL.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, series)) = all
            .iter()
            .find(|(name, on, _)| *name == endpoint && *on == compressed)
        {
            return series;
        }
        let high_water = match all.iter().find(|(name, _, _)| *name == endpoint) {
            Some((_, _, other)) => other.high_water,
            None => Box::leak(Box::new(HighWater {
                highest: AtomicUsize::new(0),
                gauge: gauge!(names::QUEUE_HIGH_WATER, "endpoint" => endpoint),
            })),
        };
        let compression = if compressed { "on" } else { "off" };
        let labels = [("endpoint", endpoint), ("compression", compression)];
        let series: &'static Series = Box::leak(Box::new(Series {
            endpoint,
            open: gauge!(names::CONNECTIONS_OPEN, "endpoint" => endpoint),
            messages_in: counter!(names::MESSAGES_RECEIVED, &labels),
            messages_out: counter!(names::MESSAGES_SENT, &labels),
            bytes_in: counter!(names::BYTES_RECEIVED, &labels),
            bytes_out: counter!(names::BYTES_SENT, &labels),
            high_water,
        }));
        all.push((endpoint, compressed, series));
        series
    }

    /// One connection's place in its endpoint's series; the open gauge goes down when it
    /// drops. The recorder must be installed before the endpoint's first connection.
    pub(crate) struct Connection(&'static Series);

    impl Connection {
        pub(crate) fn open(endpoint: &'static str, compressed: bool) -> Self {
            let series = series(endpoint, compressed);
            series.open.increment(1.0);
            Connection(series)
        }

        /// Notes how many messages wait in the outbound queue, for the high-water gauge.
        #[inline(always)]
        pub(crate) fn queued(&mut self, depth: usize) {
            let high_water = self.0.high_water;
            if depth > high_water.highest.load(Ordering::Relaxed)
                && depth > high_water.highest.fetch_max(depth, Ordering::Relaxed)
            {
                high_water.gauge.set(depth as f64);
            }
        }

        /// Hands what was counted since the last flush to the recorder.
        #[inline]
        pub(crate) fn flush(&mut self, received: &mut Tally, sent: &mut Tally) {
            let series = self.0;
            if received.messages != 0 {
                series.messages_in.increment(received.messages);
                series.bytes_in.increment(received.bytes);
                *received = Tally::default();
            }
            if sent.messages != 0 {
                series.messages_out.increment(sent.messages);
                series.bytes_out.increment(sent.bytes);
                *sent = Tally::default();
            }
        }

        /// The connection ended with `code` (`None`: no close frame), the first close sent
        /// by `side`.
        pub(crate) fn closed(&self, code: Option<u16>, side: Side) {
            let code = code_label(code.unwrap_or(1006));
            let labels = [
                ("endpoint", self.0.endpoint),
                ("code", code),
                ("side", side.word()),
            ];
            counter!(names::CLOSES, &labels).increment(1);
        }
    }

    impl Drop for Connection {
        fn drop(&mut self) {
            self.0.open.decrement(1.0);
        }
    }

    /// When a handshake started, for its duration.
    pub(crate) struct Started(Instant);

    impl Started {
        pub(crate) fn now() -> Self {
            Started(Instant::now())
        }
    }

    /// A handshake answered with `status`, for `reason` (`accepted` for a 101).
    pub(crate) fn handshake(started: Started, status: u16, reason: &'static str) {
        let status = status.to_string();
        counter!(names::HANDSHAKES, "status" => status.clone(), "reason" => reason).increment(1);
        histogram!(names::HANDSHAKE_DURATION, "status" => status)
            .record(started.0.elapsed().as_secs_f64());
    }

    /// A connection of `endpoint` closed with 1008 for a full outbound queue.
    pub(crate) fn slow_consumer(endpoint: &'static str) {
        counter!(names::SLOW_CONSUMER_CLOSES, "endpoint" => endpoint).increment(1);
    }

    /// A message published on this node.
    pub(crate) fn published() {
        counter!(names::TOPIC_PUBLISHES).increment(1);
    }

    /// A message queued for `deliveries` subscribers of this node.
    pub(crate) fn delivered(deliveries: usize) {
        counter!(names::TOPIC_DELIVERIES).increment(deliveries as u64);
    }

    /// A resumable connection subscribed, with this `outcome`.
    pub(crate) fn resumed(outcome: &'static str) {
        counter!(names::RESUMES, "outcome" => outcome).increment(1);
    }

    /// A published message a delivery mode did not deliver, and `why`.
    pub(crate) fn skipped(why: &'static str) {
        counter!(names::TOPIC_SKIPPED, "why" => why).increment(1);
    }

    /// A presence gained (`true`) or lost a member.
    pub(crate) fn presence_member(joined: bool) {
        let members = gauge!(names::PRESENCE_MEMBERS);
        if joined {
            members.increment(1.0);
        } else {
            members.decrement(1.0);
        }
    }

    /// A message handed to the broker: taken (`Ok`), refused for its backlog (`Some(false)`:
    /// reachable but behind) or unreachable (`Some(true)`).
    pub(crate) fn broker_publish(refused: Option<bool>) {
        counter!(names::BROKER_PUBLISHES).increment(1);
        if refused.is_some() {
            counter!(names::BROKER_ERRORS).increment(1);
        }
        let up = refused != Some(true);
        gauge!(names::BROKER_UP).set(if up { 1.0 } else { 0.0 });
    }

    /// Gives the recorder each metric's unit and description (Prometheus's `# HELP`).
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub(crate) fn describe() {
        use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
        describe_gauge!(names::CONNECTIONS_OPEN, "Open WebSocket connections");
        describe_counter!(
            names::HANDSHAKES,
            "Handshakes answered, by status and reason"
        );
        describe_histogram!(
            names::HANDSHAKE_DURATION,
            Unit::Seconds,
            "Time to answer a handshake"
        );
        describe_counter!(names::MESSAGES_RECEIVED, "Messages received");
        describe_counter!(names::MESSAGES_SENT, "Messages sent");
        describe_counter!(names::BYTES_RECEIVED, Unit::Bytes, "Payload bytes received");
        describe_counter!(names::BYTES_SENT, Unit::Bytes, "Payload bytes sent");
        describe_counter!(names::CLOSES, "Connections ended, by close code and side");
        describe_counter!(
            names::SLOW_CONSUMER_CLOSES,
            "Connections closed with 1008 for a full outbound queue"
        );
        describe_gauge!(
            names::QUEUE_HIGH_WATER,
            "Longest outbound queue a connection had"
        );
        describe_counter!(names::TOPIC_PUBLISHES, "Messages published to topics");
        describe_counter!(
            names::TOPIC_DELIVERIES,
            "Published messages queued for subscribers"
        );
        describe_counter!(names::RESUMES, "Resumable subscriptions, by outcome");
        describe_gauge!(
            names::PRESENCE_MEMBERS,
            "Members of every presence, as this node sees them"
        );
        describe_counter!(
            names::TOPIC_SKIPPED,
            "Published messages a delivery mode did not deliver, by why"
        );
        describe_counter!(names::BROKER_PUBLISHES, "Messages handed to the broker");
        describe_counter!(names::BROKER_ERRORS, "Messages the broker did not take");
        describe_gauge!(names::BROKER_UP, "1 while the broker's link is up");
    }
}

#[cfg(not(feature = "metrics"))]
mod off {
    use super::Side;

    /// Empty without the feature (braced, so that it is made as the counting one is).
    #[derive(Default)]
    pub(crate) struct Tally {}

    impl Tally {
        #[inline(always)]
        pub(crate) fn add(&mut self, _bytes: usize) {}
    }

    pub(crate) struct Connection;

    impl Connection {
        #[inline(always)]
        pub(crate) fn open(_endpoint: &'static str, _compressed: bool) -> Self {
            Connection
        }
        #[inline(always)]
        pub(crate) fn queued(&mut self, _depth: usize) {}
        #[inline(always)]
        pub(crate) fn flush(&mut self, _received: &mut Tally, _sent: &mut Tally) {}
        #[inline(always)]
        pub(crate) fn closed(&self, _code: Option<u16>, _side: Side) {}
    }

    pub(crate) struct Started;

    impl Started {
        #[inline(always)]
        pub(crate) fn now() -> Self {
            Started
        }
    }

    #[inline(always)]
    pub(crate) fn handshake(_started: Started, _status: u16, _reason: &'static str) {}
    #[inline(always)]
    pub(crate) fn slow_consumer(_endpoint: &'static str) {}
    #[inline(always)]
    pub(crate) fn published() {}
    #[inline(always)]
    pub(crate) fn delivered(_deliveries: usize) {}
    #[inline(always)]
    pub(crate) fn resumed(_outcome: &'static str) {}
    #[inline(always)]
    pub(crate) fn skipped(_why: &'static str) {}
    #[inline(always)]
    pub(crate) fn presence_member(_joined: bool) {}
    #[inline(always)]
    pub(crate) fn broker_publish(_refused: Option<bool>) {}
}
