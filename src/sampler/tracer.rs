//! The loop side of sampling: stage timestamps for every message, the
//! sampling decision once its path is complete, and the push into the ring.
//!
//! Call order within one loop iteration (the server does all but the two
//! application calls):
//!
//! ```text
//! begin_iteration(iter, t_poll, flags)
//!   begin_input(conn, rx)          per batch of bytes handed to the app
//!     parsed(kind, id, bytes)      per message, by the application
//!     handled(status)              per message, by the application
//!   end_input(tx_flags)            after the replies went to `send`
//! end_iteration(flush, t_tx_done, flags)   after the transport's flush
//! ```
//!
//! The loop's time in an iteration is split into known work (the poll,
//! servicing inputs, the flush, the sampler itself) and the rest; the rest
//! is what a stall (preemption, page fault, an injected spin) looks like,
//! and it is what the next iteration's samples carry as `prev_busy_ns`.
//!
//! Cost when sampling is on: one real clock read per iteration (it anchors
//! the TSC, see [`FastClock`]) and an `rdtsc` for every other stamp: two per
//! message, two per batch, one or two per iteration; when it is off, none.
//! Nothing here allocates after start-up, blocks or formats.

use super::inject::{InjectConfig, Injector};
use super::policy::{Decision, Policy, SamplingConfig};
use super::ring::{ring, Consumer, Producer};
use super::{cause, sat32, Sample};
use crate::clock::{self, FastClock};
pub use crate::transport::RxTrace;

/// Messages buffered per iteration until their TX completes; beyond this a
/// message is recorded without `t_tx_done`.
const PENDING_CAP: usize = 1024;

/// Known work (poll, service outside handlers, flush) excuses at most this
/// much loop time per message handled in the iteration, plus one: a
/// preemption inside the poll or the flush must still show as unexplained
/// time, not as work.
pub const WORK_BUDGET_NS: u64 = 20_000;

/// Up to this many records per iteration, the sampler's own time is not
/// measured (one clock read saved per iteration; it is tens of ns).
const SMALL_BATCH: usize = 4;

/// Time in the sampler itself (one iteration) that earns the next
/// iteration's messages the [`cause::SAMPLER`] flag.
pub const SAMPLER_SLOW_NS: u64 = 20_000;

/// Counters, for metrics and the exit line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TracerStats {
    /// Messages seen (sampling on).
    pub messages: u64,
    /// Recorded by their kind's rate.
    pub recorded: u64,
    /// Recorded by tail bias.
    pub tail: u64,
    /// Not recorded (rate).
    pub skipped: u64,
    /// Lost because the ring was full.
    pub dropped: u64,
    /// Current rate halving (0: configured rates).
    pub shift: u32,
    pub injected_stalls: u64,
    pub injected_slow_handlers: u64,
}

pub struct Tracer {
    on: bool,
    producer: Option<Producer>,
    policy: Policy,
    inject: Injector,
    core: u8,
    pending: Vec<Sample>,
    /// Index in `pending` where the current input batch starts.
    in_start: usize,
    /// When the last input's replies went to `send` (0: none this
    /// iteration); stands for the flush's start when nothing came between.
    last_sent: u64,
    in_conn: u32,
    in_arrival: u64,
    in_flags: u32,
    in_delivered: u64,
    /// The last message was parsed but not yet handled.
    open: bool,
    iter: u64,
    t_poll: u64,
    iter_flags: u32,
    iter_handler: u64,
    /// Poll, input service (delivery to send) and flush time this iteration.
    iter_known: u64,
    iter_msgs: u16,
    prev_busy: u32,
    prev_handler: u32,
    prev_msgs: u16,
    prev_iter: u32,
    prev_flags: u32,
    stats: TracerStats,
    /// In-iteration timestamps from the TSC, anchored by the first read of
    /// each iteration (see [`FastClock`]).
    fc: FastClock,
    anchored: bool,
    /// The loop is pinned to `core`: no need to ask which CPU it is on.
    pinned: bool,
    /// Clock reads made (tests check that sampling off reads none).
    #[cfg(test)]
    clock_reads: u64,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tracer {{ on: {}, stats: {:?} }}", self.on, self.stats)
    }
}

impl Tracer {
    /// A tracer and the consumer end of its ring (none when sampling is
    /// off). `core`: the loop's CPU until the first iteration reads it.
    pub fn new(cfg: &SamplingConfig, inject: InjectConfig, core: u8) -> Result<(Tracer, Option<Consumer>), String> {
        let (producer, consumer) = if cfg.enabled {
            let (p, c) = ring(cfg.ring)?;
            (Some(p), Some(c))
        } else {
            (None, None)
        };
        let t = Tracer {
            on: cfg.enabled,
            producer,
            policy: Policy::new(cfg),
            inject: Injector::new(inject),
            core,
            pending: Vec::with_capacity(if cfg.enabled { PENDING_CAP } else { 0 }),
            in_start: 0,
            last_sent: 0,
            in_conn: 0,
            in_arrival: 0,
            in_flags: 0,
            in_delivered: 0,
            open: false,
            iter: 0,
            t_poll: 0,
            iter_flags: 0,
            iter_handler: 0,
            iter_known: 0,
            iter_msgs: 0,
            prev_busy: 0,
            prev_handler: 0,
            prev_msgs: 0,
            prev_iter: 0,
            prev_flags: 0,
            stats: TracerStats::default(),
            fc: if cfg.enabled { FastClock::calibrate() } else { FastClock::disabled() },
            anchored: false,
            pinned: false,
            #[cfg(test)]
            clock_reads: 0,
        };
        Ok((t, consumer))
    }

    /// The loop is pinned to the core given to [`Tracer::new`].
    pub fn set_pinned(&mut self, pinned: bool) {
        self.pinned = pinned;
    }

    /// Records nothing, injects nothing.
    pub fn disabled() -> Tracer {
        let cfg = SamplingConfig { enabled: false, ..SamplingConfig::default() };
        Tracer::new(&cfg, InjectConfig::default(), 0).map(|(t, _)| t).unwrap_or_else(|_| unreachable!())
    }

    /// Sampling is on: the transport should keep arrival times.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.on
    }

    /// The loop's time now: the first read of an iteration is a real clock
    /// read that anchors the TSC, the others come from the TSC.
    #[inline]
    pub fn now(&mut self) -> u64 {
        #[cfg(test)]
        {
            self.clock_reads += 1;
        }
        if self.anchored {
            self.fc.now()
        } else {
            self.anchored = true;
            self.fc.anchor()
        }
    }

    /// Sampling or injection needs the per-iteration calls.
    #[inline]
    pub fn active(&self) -> bool {
        self.on || self.inject.active()
    }

    pub fn stats(&self) -> TracerStats {
        let mut s = self.stats;
        s.dropped = self.producer.as_ref().map_or(0, |p| p.dropped());
        s.shift = self.policy.shift;
        s.injected_stalls = self.inject.stalls;
        s.injected_slow_handlers = self.inject.slow_handlers;
        s
    }

    /// The poll of iteration `iter` returned at `t_poll` with `events` (or
    /// without: an idle iteration, whose poll found nothing and whose time
    /// is then not split, saving a clock read in the spinning loop);
    /// `flags` are the backend's observations during it (fill ring low, ...).
    #[inline]
    pub fn begin_iteration(&mut self, iter: u64, t_poll: u64, events: bool, flags: u32) {
        if !self.on {
            return;
        }
        self.iter = iter;
        self.t_poll = t_poll;
        self.anchored = false;
        // The CPU this iteration runs on (vDSO getcpu): an unpinned loop
        // moves, and the report matches it against the reporter's CPU.
        if !self.pinned {
            self.core = rustix::thread::sched_getcpu().min(255) as u8;
        }
        self.iter_flags = flags | self.prev_flags;
        self.iter_handler = 0;
        self.iter_msgs = 0;
        self.last_sent = 0;
        // The poll's own work (a user-space stack's ingress) is known work.
        self.iter_known = if events { self.now().saturating_sub(t_poll) } else { 0 };
        self.policy.tick(t_poll);
    }

    /// Bytes of `conn` that arrived as `rx` says go to the application now.
    #[inline]
    pub fn begin_input(&mut self, conn: u32, rx: RxTrace) {
        if !self.on {
            return;
        }
        self.in_start = self.pending.len();
        self.in_conn = conn;
        self.in_arrival = rx.arrival_ns;
        self.in_flags = rx.flags;
        self.in_delivered = self.now();
    }

    /// The application parsed one message (call before handling it).
    /// `bytes`: the message; its first 32 bytes are kept.
    #[inline]
    pub fn parsed(&mut self, kind: u8, trace_id: u64, bytes: &[u8]) {
        let recorded = self.on && self.pending.len() < PENDING_CAP;
        if recorded {
            let t = self.now();
            let n = bytes.len().min(32);
            let mut payload = [0u8; 32];
            payload[..n].copy_from_slice(&bytes[..n]);
            self.pending.push(Sample {
                trace_id,
                t_rx_frame: self.in_arrival,
                t_delivered: self.in_delivered,
                t_parsed: t,
                loop_iter: self.iter,
                conn: self.in_conn,
                cause: (self.in_flags | self.iter_flags) as u16,
                queue_ns: sat32(self.in_delivered.saturating_sub(self.t_poll)),
                iter_handler_ns: sat32(self.iter_handler),
                prev_busy_ns: self.prev_busy,
                prev_handler_ns: self.prev_handler,
                prev_iter_ns: self.prev_iter,
                batch_pos: self.iter_msgs.min(255) as u8,
                prev_msgs: self.prev_msgs.min(255) as u8,
                core: self.core,
                msg_type: kind,
                payload_len: n as u8,
                payload,
                ..Sample::default()
            });
            self.open = true;
        }
        if self.inject.maybe_slow_handler() && recorded {
            if let Some(s) = self.pending.last_mut() {
                s.cause |= cause::INJECTED as u16;
            }
        }
    }

    /// The application handled the message it last parsed; `status` 0 or a
    /// reject reason.
    #[inline]
    pub fn handled(&mut self, status: u8) {
        if !self.open {
            return;
        }
        self.open = false;
        let t = self.now();
        if let Some(s) = self.pending.last_mut() {
            s.t_handled = t;
            s.status = status;
            self.iter_handler += t.saturating_sub(s.t_parsed);
            self.iter_msgs = self.iter_msgs.saturating_add(1);
        }
    }

    /// The replies of the current input went to `send`; `tx_flags` say
    /// whether they all fit ([`cause::TX_FULL`]).
    #[inline]
    pub fn end_input(&mut self, tx_flags: u32) {
        if !self.on || self.pending.len() == self.in_start {
            return;
        }
        let t = self.now();
        self.iter_known += t.saturating_sub(self.in_delivered);
        self.last_sent = t;
        for s in &mut self.pending[self.in_start..] {
            s.t_tx_queued = t;
            s.cause |= tx_flags as u16;
        }
        self.in_start = self.pending.len();
    }

    /// Messages of this iteration wait for [`Tracer::end_iteration`].
    #[inline]
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The time the flush starts: the last send of this iteration when
    /// there was one (nothing runs between it and the flush), else now.
    #[inline]
    pub fn flush_start(&mut self) -> u64 {
        if self.last_sent != 0 {
            self.last_sent
        } else {
            self.now()
        }
    }

    /// After the transport's flush: `flush` is its (start, end) (0, 0 when
    /// there was none), `t_tx_done` when the replies were handed to the NIC
    /// (0 if the backend cannot know), `flags` the backend's TX
    /// observations. Decides, records, and closes the iteration.
    pub fn end_iteration(&mut self, flush: (u64, u64), t_tx_done: u64, flags: u32) {
        if !self.on {
            if self.inject.active() {
                let _ = self.inject.maybe_stall(clock::mono_ns());
            }
            return;
        }
        let mut sampler_ns = 0;
        // The clock after the sampler's work, reused as the iteration's end
        // when nothing is injected after it.
        let mut after = 0;
        self.iter_known += flush.1.saturating_sub(flush.0);
        if !self.pending.is_empty() {
            let t0 = if flush.1 != 0 { flush.1 } else { self.now() };
            let mut pushed = false;
            for s in self.pending.iter_mut() {
                s.t_tx_done = t_tx_done;
                s.cause |= flags as u16;
                self.stats.messages += 1;
                match self.policy.decide(s.msg_type, s.latency_ns()) {
                    Decision::Skip => {
                        self.stats.skipped += 1;
                        continue;
                    }
                    Decision::Record => self.stats.recorded += 1,
                    Decision::Tail => {
                        self.stats.tail += 1;
                        s.cause |= cause::TAIL_BIAS as u16;
                    }
                }
                if let Some(p) = self.producer.as_mut() {
                    pushed |= p.push(s);
                }
            }
            if pushed {
                if let Some(p) = self.producer.as_mut() {
                    p.publish();
                }
            }
            let n = self.pending.len();
            self.pending.clear();
            self.in_start = 0;
            // A few records cost tens of nanoseconds: not worth a clock read
            // (the iteration then ends at the flush). A batch is measured.
            if n > SMALL_BATCH {
                after = self.now();
                sampler_ns = after.saturating_sub(t0);
            } else {
                after = t0;
            }
        }
        let mut stalled = false;
        let t_end = if self.inject.active() {
            stalled = self.inject.maybe_stall(clock::mono_ns());
            clock::mono_ns()
        } else if after != 0 {
            after
        } else {
            self.now()
        };
        let busy = t_end.saturating_sub(self.t_poll);
        // Handlers are inside the service time and excused in full (slow
        // handlers are their own cause); other known work only up to a
        // budget per message; the rest is unexplained.
        let work = self.iter_known.saturating_sub(self.iter_handler);
        let excused = work.min(WORK_BUDGET_NS * (u64::from(self.iter_msgs) + 1));
        self.prev_busy =
            sat32(busy.saturating_sub(self.iter_handler).saturating_sub(excused).saturating_sub(sampler_ns));
        self.prev_handler = sat32(self.iter_handler);
        self.prev_msgs = self.iter_msgs;
        self.prev_iter = sat32(busy);
        self.prev_flags = if sampler_ns >= SAMPLER_SLOW_NS { cause::SAMPLER } else { 0 };
        // The next iteration delivers what waited through the injected stall.
        if stalled {
            self.prev_flags |= cause::INJECTED;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::kind;

    fn tracer(cfg: SamplingConfig, inject: InjectConfig) -> (Tracer, Consumer) {
        let (t, c) = Tracer::new(&cfg, inject, 1).unwrap();
        (t, c.unwrap())
    }

    fn one_message(t: &mut Tracer, iter: u64, conn: u32, arrival: u64) {
        let now = clock::mono_ns();
        t.begin_iteration(iter, now, true, 0);
        t.begin_input(conn, RxTrace { arrival_ns: arrival, flags: cause::RETRANSMIT });
        t.parsed(kind::LIMIT, 42 + iter, b"0123456789012345678901234567890123456789");
        t.handled(0);
        t.end_input(cause::TX_FULL);
        let f0 = clock::mono_ns();
        t.end_iteration((f0, clock::mono_ns()), clock::mono_ns(), 0);
    }

    #[test]
    fn a_message_gets_every_stage_in_order() {
        let (mut t, mut c) = tracer(SamplingConfig::default(), InjectConfig::default());
        let arrival = clock::mono_ns();
        one_message(&mut t, 7, 3, arrival);
        let s = c.pop().expect("recorded");
        assert_eq!((s.trace_id, s.loop_iter, s.conn, s.msg_type), (49, 7, 3, kind::LIMIT));
        assert_eq!(usize::from(s.core), rustix::thread::sched_getcpu().min(255));
        assert_eq!(s.t_rx_frame, arrival);
        let ts = [s.t_rx_frame, s.t_delivered, s.t_parsed, s.t_handled, s.t_tx_queued, s.t_tx_done];
        assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
        assert_eq!(u32::from(s.cause) & (cause::RETRANSMIT | cause::TX_FULL), cause::RETRANSMIT | cause::TX_FULL);
        assert_eq!((s.payload_len, &s.payload[..4]), (32, &b"0123"[..]));
        assert_eq!(t.stats().recorded, 1);
    }

    #[test]
    fn off_records_nothing_and_reads_no_clock_for_messages() {
        let cfg = SamplingConfig { enabled: false, ..SamplingConfig::default() };
        let (mut t, c) = Tracer::new(&cfg, InjectConfig::default(), 0).unwrap();
        assert!(c.is_none());
        one_message(&mut t, 1, 1, 1);
        assert!(!t.has_pending());
        assert_eq!(t.stats().messages, 0);
        assert_eq!(t.clock_reads, 0, "sampling off read the clock");
        // The same message with sampling on reads it (the count can fail).
        let (mut on, _c) = tracer(SamplingConfig::default(), InjectConfig::default());
        one_message(&mut on, 1, 1, 1);
        assert!(on.clock_reads >= 3, "{}", on.clock_reads);
    }

    #[test]
    fn previous_iteration_busy_time_and_handler_time_are_split() {
        let inject = InjectConfig { slow_handler: Some((1, 300_000)), ..Default::default() };
        let (mut t, mut c) = tracer(SamplingConfig::default(), inject);
        one_message(&mut t, 1, 1, 0);
        one_message(&mut t, 2, 1, 0);
        let _first = c.pop().unwrap();
        let second = c.pop().unwrap();
        // The first iteration spent >= 300 us in its (slow) handler, and
        // that is not counted as unexplained loop time.
        assert!(second.prev_handler_ns >= 300_000, "{second:?}");
        assert!(second.prev_busy_ns < 300_000, "{second:?}");
        assert_eq!(second.prev_msgs, 1);
        assert!(second.t_handled - second.t_parsed >= 300_000);
        // The injector marks the messages it slowed.
        assert_ne!(u32::from(second.cause) & cause::INJECTED, 0, "{second:?}");
    }

    #[test]
    fn an_injected_stall_is_unexplained_busy_time() {
        let inject = InjectConfig { stall: Some((1_000, 400_000)), ..Default::default() };
        let (mut t, mut c) = tracer(SamplingConfig::default(), inject);
        // The first iteration arms the stall timer; the second stalls.
        one_message(&mut t, 1, 1, 0);
        std::thread::sleep(std::time::Duration::from_millis(1));
        one_message(&mut t, 2, 1, 0);
        one_message(&mut t, 3, 1, 0);
        let s: Vec<Sample> = std::iter::from_fn(|| c.pop()).collect();
        assert_eq!(s.len(), 3);
        assert!(s[2].prev_busy_ns >= 400_000, "{:?}", s[2]);
        assert!(s[1].prev_busy_ns < 400_000, "{:?}", s[1]);
        assert!(s[2].prev_handler_ns < 400_000);
        // Only the message delivered after the stall is marked as touched.
        let marked: Vec<bool> = s.iter().map(|x| u32::from(x.cause) & cause::INJECTED != 0).collect();
        assert_eq!(marked, vec![false, false, true]);
    }

    #[test]
    fn a_stall_inside_known_work_is_still_unexplained() {
        let (mut t, mut c) = tracer(SamplingConfig::default(), InjectConfig::default());
        one_message(&mut t, 1, 1, 0);
        // Iteration 2: one message, then a flush that took 3 ms (the vCPU
        // was preempted inside it).
        let now = clock::mono_ns();
        t.begin_iteration(2, now, true, 0);
        t.begin_input(1, RxTrace::default());
        t.parsed(kind::LIMIT, 1, b"x");
        t.handled(0);
        t.end_input(0);
        let f0 = t.flush_start();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let f1 = t.now();
        t.end_iteration((f0, f1), f1, 0);
        one_message(&mut t, 3, 1, 0);
        let s: Vec<Sample> = std::iter::from_fn(|| c.pop()).collect();
        // 3 ms of flush, of which 2 x 20 us are excused as work.
        assert!(s[2].prev_busy_ns >= 2_900_000, "{:?}", s[2]);
        assert!(s[1].prev_busy_ns < 1_000_000, "{:?}", s[1]);
    }

    #[test]
    fn a_full_ring_drops_and_counts() {
        let cfg = SamplingConfig { ring: 4, ..SamplingConfig::default() };
        let (mut t, _c) = tracer(cfg, InjectConfig::default());
        for i in 0..10 {
            one_message(&mut t, i, 1, 0);
        }
        let s = t.stats();
        assert_eq!((s.recorded, s.dropped), (10, 6));
    }
}
