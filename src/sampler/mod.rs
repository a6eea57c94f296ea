//! Per-message samples for latency attribution (docs/ATTRIBUTION.md).
//!
//! ```text
//! ring.rs         the lock-free single-producer ring a pinned loop writes into
//! tracer/         the loop side: stage timestamps, sampling decision, push
//! policy.rs       sampling rates per message type, auto-halving, tail bias
//! inject.rs       fault injection (stall, slow handler; loss lives in XDP)
//! store.rs        the sample log: fixed-size records behind a header, as a ring
//! reporter.rs     the reporter thread (never pinned): histograms, metrics, log
//! endpoint.rs     the HTTP endpoint for /metrics and /samples (hyper)
//! attribution/    the tail-attribution report (its rules, the report)
//! ```

pub mod attribution;
pub mod buckets;
#[cfg(test)]
mod deploy_tests;
pub mod endpoint;
pub mod inject;
mod metrics;
pub mod offcpu;
pub mod policy;
pub mod reporter;
pub mod ring;
pub mod store;
pub mod tracer;

/// Cause flags a record can carry (bit set in [`Sample::cause`]). Each is
/// an observation made on the data path, not a verdict; the report turns
/// observations and timestamps into a cause (docs/ATTRIBUTION.md).
pub mod cause {
    use crate::transport::signal;

    /// The connection saw an out-of-order or repeated TCP segment since it
    /// was last read: a segment was lost and retransmitted (xdp backend).
    pub const RETRANSMIT: u32 = signal::RETRANSMIT;
    /// The peer advertised a zero receive window since it was last read.
    pub const ZERO_WINDOW: u32 = signal::ZERO_WINDOW;
    /// The reply did not fit the connection's send buffer at once.
    pub const TX_FULL: u32 = 1 << 2;
    /// The TX ring had no room, or the TX kick found the kernel busy.
    pub const KICK_WAIT: u32 = signal::KICK_WAIT;
    /// The fill ring was starved (the kernel had few frames to receive into).
    pub const FILL_RING_STARVED: u32 = signal::FILL_RING_STARVED;
    /// The previous iteration spent long in the sampler itself.
    pub const SAMPLER: u32 = 1 << 5;
    /// Recorded because it was slower than the tail threshold, whatever the
    /// rate of its type (tail bias).
    pub const TAIL_BIAS: u32 = 1 << 6;
    /// The poll that found it had blocked (slept in epoll_wait or poll(2)).
    pub const SLEPT: u32 = signal::SLEPT;
    /// A fault injector (`--inject`) touched this message: its handler was
    /// slowed, or it waited through an injected loop stall. Ground truth for
    /// checking the report on a machine with noise of its own.
    pub const INJECTED: u32 = 1 << 8;
    /// The connection retransmitted while the reply waited for its ACK: the
    /// reply, or a segment before it, went out again.
    pub const REPLY_RETX: u32 = signal::REPLY_RETX;
    /// The reply's ACK had not come when the record was held for its
    /// longest ([`crate::sampler::tracer::ACK_DEADLINE_NS`]).
    pub const ACK_LATE: u32 = 1 << 10;
    /// The reply's retransmission was spurious: the peer reported our copy
    /// as a duplicate (D-SACK), or acknowledged the original before the
    /// copy left. The peer had the reply before our copy reached it (or the
    /// network reordered the two); its ACK was late, and our retransmission
    /// timer fired too early.
    pub const REPLY_SPURIOUS: u32 = 1 << 11;

    /// Names, in bit order, for reports.
    pub const NAMES: [&str; 12] = [
        "retransmit",
        "zero_window",
        "tx_full",
        "kick_wait",
        "fill_ring_starved",
        "sampler",
        "tail_bias",
        "slept",
        "injected",
        "reply_retx",
        "ack_late",
        "reply_spurious",
    ];
}

/// Message kinds a sample can carry (`Sample::msg_type`).
pub mod kind {
    pub const OTHER: u8 = 0;
    pub const LOGON: u8 = 1;
    pub const HEARTBEAT: u8 = 2;
    pub const LIMIT: u8 = 3;
    pub const MARKET: u8 = 4;
    pub const CANCEL: u8 = 5;
    pub const LOGOUT: u8 = 6;
    /// A message the gateway could not decode (rejected before handling).
    pub const INVALID: u8 = 7;
    /// One sockperf ping.
    pub const PING: u8 = 8;
    /// The exchange's answer to an order (Order Accepted or Rejected), read
    /// on the upstream connection: its record also carries the order's own
    /// arrival and the time it was sent on (see `Sample::upstream`).
    pub const EXCHANGE: u8 = 9;
    /// Not a message: a reporter-thread busy period (`t_rx_frame` to
    /// `t_handled`, on `core`), recorded so the report can see interference.
    pub const REPORTER: u8 = 255;
    /// Not a message: an interval in which a loop's thread was off its core
    /// or interrupted, or the core's steal time rose (`offcpu::record`).
    pub const OFFCPU: u8 = 254;
    /// Number of message kinds with a rate (0..COUNT).
    pub const COUNT: usize = 10;
    pub const NAMES: [&str; COUNT] =
        ["other", "logon", "heartbeat", "limit", "market", "cancel", "logout", "invalid", "ping", "exchange"];

    pub fn name(k: u8) -> &'static str {
        NAMES.get(usize::from(k)).copied().unwrap_or(if k == REPORTER { "reporter" } else { "other" })
    }

    pub fn parse(s: &str) -> Option<u8> {
        NAMES.iter().position(|n| *n == s).map(|i| i as u8)
    }
}

/// One message's path through the gateway, and its reply's ACK: 128 bytes,
/// two cache lines. Timestamps are monotonic nanoseconds (CLOCK_MONOTONIC);
/// 0 means "not seen by this backend".
#[repr(C, align(64))]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Order id (client order id), sockperf sequence number, or 0.
    pub trace_id: u64,
    /// The frame carrying it arrived: stamped by the XDP program (xdp) or
    /// the kernel's receive timestamp (SO_TIMESTAMPNS, kernel backend).
    pub t_rx_frame: u64,
    /// Read from the transport and handed to the application.
    pub t_delivered: u64,
    /// Parsed by the protocol codec.
    pub t_parsed: u64,
    /// Handled (reply produced).
    pub t_handled: u64,
    /// Reply handed to the transport (`send` returned).
    pub t_tx_queued: u64,
    /// Reply frames on the TX ring and kicked (xdp); 0 on the kernel backend.
    pub t_tx_done: u64,
    /// Event-loop iteration that handled it.
    pub loop_iter: u64,
    /// The peer acknowledged the reply's last byte (the xdp stack's view of
    /// the ACK, or the kernel's `SOF_TIMESTAMPING_TX_ACK`); 0: no reply, no
    /// ACK tracking, or none came in time (flag [`cause::ACK_LATE`]).
    pub t_acked: u64,
    pub conn: u32,
    /// From the poll's return in this iteration to `t_delivered`.
    pub queue_ns: u32,
    /// Handler time spent earlier in this iteration, before `t_delivered`.
    pub iter_handler_ns: u32,
    /// Previous iteration: its time not spent in known work (the poll,
    /// servicing inputs, the flush, the sampler): what a stall leaves.
    pub prev_busy_ns: u32,
    /// Previous iteration: time spent in handlers.
    pub prev_handler_ns: u32,
    /// Previous iteration: its whole length, from its poll's return to its end.
    pub prev_iter_ns: u32,
    /// Bit set of [`cause`] flags.
    pub cause: u16,
    /// Messages handled earlier in this iteration (saturates at 255).
    pub batch_pos: u8,
    /// Messages handled in the previous iteration (saturates at 255).
    pub prev_msgs: u8,
    pub core: u8,
    /// A [`kind`].
    pub msg_type: u8,
    /// 0: accepted; otherwise the reject reason code (docs/PROTOCOL.md).
    pub status: u8,
    pub payload_len: u8,
    /// The first 24 bytes of the message.
    pub payload: [u8; PAYLOAD_BYTES],
}

/// Message bytes a record keeps.
pub const PAYLOAD_BYTES: usize = 24;

/// The order behind an exchange's answer (see [`Sample::upstream`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Upstream {
    /// The order's frame arrived at the gateway.
    pub order_in: u64,
    /// The gateway had handled it: its Enter Order was queued.
    pub sent: u64,
    pub flags: u8,
}

impl Upstream {
    /// From its Enter Order queued to the exchange's answer arriving: the
    /// network both ways and the exchange (0 when a stamp is missing).
    pub fn leg_ns(&self, answer_arrival: u64) -> u64 {
        if self.sent == 0 || answer_arrival < self.sent {
            0
        } else {
            answer_arrival - self.sent
        }
    }
}

/// [`Upstream::flags`] bits.
pub mod upstream_flag {
    /// The order was entered again after the session to the exchange was
    /// lost and logged in again: its answer waited for the reconnect.
    pub const RESENT: u8 = 1;
}

const _: () = assert!(std::mem::size_of::<Sample>() == 128);

/// Size of one record in the sample log (the in-memory layout, little-endian).
pub const RECORD_SIZE: usize = 128;

/// Stages of a message, in path order (docs/ATTRIBUTION.md). The last,
/// `ack`, is after the gateway: from the reply leaving to the peer's ACK of
/// it. It is not part of the gateway's latency.
pub const STAGES: [&str; 7] = ["wait", "queue", "parse", "handler", "tx", "tx_done", "ack"];

/// Index of the `ack` stage in [`STAGES`].
pub const ACK_STAGE: usize = 6;

/// `loop_iter` carries the loop's index (one loop per NIC queue) in its
/// top byte, so the iterations of different loops never mix in the report.
pub const LOOP_SHIFT: u32 = 56;

impl Sample {
    /// The index of the loop that recorded this sample (0 with one loop).
    pub fn loop_index(&self) -> u8 {
        (self.loop_iter >> LOOP_SHIFT) as u8
    }

    /// The iteration of its loop.
    pub fn iteration(&self) -> u64 {
        self.loop_iter & ((1 << LOOP_SHIFT) - 1)
    }

    /// Arrival time: the frame's timestamp, else the poll that found it.
    pub fn arrival(&self) -> u64 {
        if self.t_rx_frame != 0 && self.t_rx_frame <= self.t_delivered {
            self.t_rx_frame
        } else {
            self.t_poll()
        }
    }

    /// The poll return of the iteration that delivered it.
    pub fn t_poll(&self) -> u64 {
        self.t_delivered.saturating_sub(u64::from(self.queue_ns))
    }

    /// The last timestamp on its path.
    pub fn end(&self) -> u64 {
        [self.t_tx_done, self.t_tx_queued, self.t_handled, self.t_parsed, self.t_delivered]
            .into_iter()
            .find(|&t| t != 0)
            .unwrap_or(0)
    }

    /// Time in the gateway: arrival to the last timestamp. For the
    /// exchange's answer to an order, from the order's own arrival: the
    /// gateway both ways and the exchange leg between.
    pub fn latency_ns(&self) -> u64 {
        match self.upstream() {
            Some(u) if u.order_in != 0 && u.order_in <= self.end() => self.end() - u.order_in,
            _ => self.end().saturating_sub(self.arrival()),
        }
    }

    /// Time in the gateway itself, for any record: arrival to the last
    /// timestamp (for the exchange's answers, its way back only).
    pub fn gateway_ns(&self) -> u64 {
        self.end().saturating_sub(self.arrival())
    }

    /// The exchange leg of a record of kind [`kind::EXCHANGE`], whose
    /// payload holds the order's stamps instead of message bytes (its
    /// `payload_len` is 0): bytes 0-7 the order's arrival, 8-15 when the
    /// gateway had handled it (its Enter Order queued for the exchange),
    /// 16 flags ([`upstream_flag`]).
    pub fn upstream(&self) -> Option<Upstream> {
        if self.msg_type != kind::EXCHANGE {
            return None;
        }
        let at = |i: usize| u64::from_le_bytes(self.payload[i..i + 8].try_into().unwrap_or([0; 8]));
        Some(Upstream { order_in: at(0), sent: at(8), flags: self.payload[16] })
    }

    /// Set the order's stamps on a record of kind [`kind::EXCHANGE`].
    pub fn set_upstream(&mut self, u: Upstream) {
        self.payload = [0; PAYLOAD_BYTES];
        self.payload[0..8].copy_from_slice(&u.order_in.to_le_bytes());
        self.payload[8..16].copy_from_slice(&u.sent.to_le_bytes());
        self.payload[16] = u.flags;
        self.payload_len = 0;
    }

    /// Nanoseconds in each of [`STAGES`]: wait (arrival to the poll that
    /// found it: rings, stack, loop busy elsewhere), queue (poll to
    /// delivery: other connections first), parse, handler, tx (handled to
    /// send returned), tx_done (send to frames kicked), ack (the gateway's
    /// last stamp to the peer's ACK of the reply; 0 without one).
    pub fn stages(&self) -> [u64; 7] {
        let d = |a: u64, b: u64| if a != 0 && b != 0 { b.saturating_sub(a) } else { 0 };
        [
            self.t_poll().saturating_sub(self.arrival()),
            u64::from(self.queue_ns),
            d(self.t_delivered, self.t_parsed),
            d(self.t_parsed, self.t_handled),
            d(self.t_handled, self.t_tx_queued),
            d(self.t_tx_queued, self.t_tx_done),
            self.ack_ns(),
        ]
    }

    /// The ACK stage: from the gateway's last stamp to the peer's ACK of
    /// the reply (0 without an ACK).
    pub fn ack_ns(&self) -> u64 {
        if self.t_acked == 0 {
            return 0;
        }
        self.t_acked.saturating_sub(self.end())
    }

    /// The record as stored in the sample log.
    pub fn to_bytes(&self) -> [u8; RECORD_SIZE] {
        let mut b = [0u8; RECORD_SIZE];
        let mut w = Writer { b: &mut b, at: 0 };
        for v in [
            self.trace_id,
            self.t_rx_frame,
            self.t_delivered,
            self.t_parsed,
            self.t_handled,
            self.t_tx_queued,
            self.t_tx_done,
            self.loop_iter,
            self.t_acked,
        ] {
            w.put(&v.to_le_bytes());
        }
        for v in
            [self.conn, self.queue_ns, self.iter_handler_ns, self.prev_busy_ns, self.prev_handler_ns, self.prev_iter_ns]
        {
            w.put(&v.to_le_bytes());
        }
        w.put(&self.cause.to_le_bytes());
        w.put(&[self.batch_pos, self.prev_msgs, self.core, self.msg_type, self.status, self.payload_len]);
        w.put(&self.payload);
        b
    }

    /// Parse a record written by [`Sample::to_bytes`]; `None` if short.
    pub fn from_bytes(b: &[u8]) -> Option<Sample> {
        let b: &[u8; RECORD_SIZE] = b.get(..RECORD_SIZE)?.try_into().ok()?;
        let u64_at = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default());
        let u16_at = |o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap_or_default());
        let mut payload = [0u8; PAYLOAD_BYTES];
        payload.copy_from_slice(&b[104..128]);
        Some(Sample {
            trace_id: u64_at(0),
            t_rx_frame: u64_at(1),
            t_delivered: u64_at(2),
            t_parsed: u64_at(3),
            t_handled: u64_at(4),
            t_tx_queued: u64_at(5),
            t_tx_done: u64_at(6),
            loop_iter: u64_at(7),
            t_acked: u64_at(8),
            conn: u32_at(72),
            queue_ns: u32_at(76),
            iter_handler_ns: u32_at(80),
            prev_busy_ns: u32_at(84),
            prev_handler_ns: u32_at(88),
            prev_iter_ns: u32_at(92),
            cause: u16_at(96),
            batch_pos: b[98],
            prev_msgs: b[99],
            core: b[100],
            msg_type: b[101],
            status: b[102],
            payload_len: b[103],
            payload,
        })
    }
}

struct Writer<'a> {
    b: &'a mut [u8; RECORD_SIZE],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, v: &[u8]) {
        self.b[self.at..self.at + v.len()].copy_from_slice(v);
        self.at += v.len();
    }
}

/// Saturating u64 to u32 (nanosecond durations in records).
pub fn sat32(v: u64) -> u32 {
    v.min(u64::from(u32::MAX)) as u32
}

/// Application counters for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AppCounters {
    pub messages_in: u64,
    pub messages_out: u64,
    /// By reject reason code.
    pub rejects: crate::proto::ReasonCounts,
    pub framing_errors: u64,
    /// Gauges of the order gateway (0 for other applications): sessions
    /// logged on now; the exchange session ([`UpstreamState`]); accounts killed
    /// by name now, and the whole gateway's kill (0 or 1), as this loop
    /// sees them.
    pub sessions: u64,
    pub upstream: UpstreamState,
    pub killed_accounts: u64,
    pub kill_all: u64,
}

/// The state of a loop's session to the exchange.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamState {
    /// The application has none.
    #[default]
    None,
    Down,
    Up,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Sample {
        let mut payload = [0u8; PAYLOAD_BYTES];
        for (i, b) in payload.iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        Sample {
            trace_id: 0x0102_0304_0506_0708,
            t_rx_frame: 1_000,
            t_delivered: 5_000,
            t_parsed: 5_100,
            t_handled: 5_400,
            t_tx_queued: 5_900,
            t_tx_done: 6_500,
            loop_iter: 77,
            t_acked: 9_000,
            conn: 3,
            cause: (cause::RETRANSMIT | cause::TX_FULL) as u16,
            queue_ns: 1_000,
            iter_handler_ns: 250,
            prev_busy_ns: 9,
            prev_handler_ns: 10,
            prev_iter_ns: 11,
            batch_pos: 2,
            prev_msgs: 4,
            core: 1,
            msg_type: kind::LIMIT,
            status: 5,
            payload_len: PAYLOAD_BYTES as u8,
            payload,
        }
    }

    #[test]
    fn record_round_trips_every_field() {
        let s = full();
        assert_eq!(Sample::from_bytes(&s.to_bytes()), Some(s));
        assert_eq!(Sample::from_bytes(&s.to_bytes()[..127]), None);
    }

    #[test]
    fn stages_add_up_to_the_latency() {
        let s = full();
        // wait: arrival 1000 to poll 4000; queue 1000; parse 100; handler
        // 300; tx 500; tx_done 600; the ACK 2500 after the kick.
        assert_eq!(s.stages(), [3_000, 1_000, 100, 300, 500, 600, 2_500]);
        // The ACK stage is after the gateway: not in its latency.
        assert_eq!(s.stages()[..ACK_STAGE].iter().sum::<u64>(), s.latency_ns());
        assert_eq!(Sample { t_acked: 0, ..full() }.stages()[ACK_STAGE], 0);
        // Kernel backend: no kick stamp, the ACK stage starts at send.
        assert_eq!(Sample { t_tx_done: 0, ..full() }.ack_ns(), 3_100);
        // No frame timestamp: the poll is the arrival.
        let s = Sample { t_rx_frame: 0, ..full() };
        assert_eq!(s.stages()[0], 0);
        assert_eq!(s.latency_ns(), 2_500);
        // No TX completion (kernel backend): ends at send.
        let s = Sample { t_tx_done: 0, ..full() };
        assert_eq!(s.latency_ns(), 4_900);
    }

    #[test]
    fn kind_names_parse_back() {
        for k in 0..kind::COUNT as u8 {
            assert_eq!(kind::parse(kind::name(k)), Some(k));
        }
        assert_eq!(kind::name(kind::REPORTER), "reporter");
        assert_eq!(kind::parse("nope"), None);
    }
}
