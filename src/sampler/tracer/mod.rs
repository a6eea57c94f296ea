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
//!   end_input(tx_flags, reply_end) after the replies went to `send`
//! end_iteration(flush, t_tx_done, flags)   after the transport's flush
//! ```
//!
//! With ACK tracking (the transport reports the peer's ACKs, see
//! [`Transport::acks`](crate::transport::Transport::acks)), a record whose
//! message produced a reply is not pushed at the end of its iteration but
//! held, in a pool of [`HELD_CAP`] records allocated at start-up, until the
//! ACK covering the reply's last byte comes ([`Tracer::on_acks`]), the
//! connection closes ([`Tracer::conn_closed`]) or [`ACK_DEADLINE_NS`]
//! passes (flag [`cause::ACK_LATE`]). The server passes the tracer's watch
//! requests ([`Tracer::take_watch_requests`]) on to the transport, so only
//! connections with held records report their ACKs.
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

mod held;
mod stats;
use held::HeldPool;
pub use held::{ACK_DEADLINE_NS, HELD_CAP, VERDICT_CAP, VERDICT_NS};
pub use stats::TracerStats;

use super::inject::{InjectConfig, Injector};
use super::policy::{Decision, Policy, SamplingConfig};
use super::ring::{ring, Consumer, Producer};
use super::{cause, sat32, Sample, PAYLOAD_BYTES};
use crate::clock::{self, FastClock};
use crate::transport::AckEvent;
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
/// iteration's messages the [`cause::SAMPLER`] flag, if it was also at
/// least half of that iteration.
pub const SAMPLER_SLOW_NS: u64 = 20_000;

pub struct Tracer {
    on: bool,
    producer: Option<Producer>,
    policy: Policy,
    inject: Injector,
    core: u8,
    pending: Vec<Sample>,
    /// Each pending message's reply end in its connection's output (0: it
    /// produced no reply).
    pending_end: Vec<u64>,
    /// Records waiting for their reply's ACK (ACK tracking on).
    held: Option<Box<HeldPool>>,
    want_acks: bool,
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
    /// The loop's index in the top byte of every record's `loop_iter`.
    loop_tag: u64,
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
            pending_end: Vec::with_capacity(if cfg.enabled { PENDING_CAP } else { 0 }),
            held: None,
            want_acks: cfg.acks,
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
            loop_tag: 0,
            #[cfg(test)]
            clock_reads: 0,
        };
        Ok((t, consumer))
    }

    /// The loop is pinned to the core given to [`Tracer::new`].
    pub fn set_pinned(&mut self, pinned: bool) {
        self.pinned = pinned;
    }

    /// This tracer's loop is loop `index` of several (one per NIC queue).
    pub fn set_loop(&mut self, index: u8) {
        self.loop_tag = u64::from(index) << super::LOOP_SHIFT;
    }

    /// Does the configuration ask for the ACK stage (`--sample-acks`)?
    pub fn wants_acks(&self) -> bool {
        self.on && self.want_acks
    }

    /// The transport reports the peer's ACKs: hold records for them (when
    /// sampling is on and the ACK stage wanted; the pool is allocated here,
    /// at start-up).
    pub fn set_ack_tracking(&mut self, on: bool) {
        self.held = if on && self.wants_acks() { Some(Box::new(HeldPool::new())) } else { None };
    }

    /// Records are held for their reply's ACK.
    #[inline]
    pub fn tracks_acks(&self) -> bool {
        self.held.is_some()
    }

    /// Hand `f` each connection whose ACKs the transport should report
    /// from now on (`true`) or no longer (`false`), in order; call after
    /// every iteration.
    #[inline]
    pub fn take_watch_requests(&mut self, mut f: impl FnMut(u32, bool)) {
        if let Some(h) = self.held.as_mut() {
            for (c, on) in h.watch.drain(..) {
                f(c, on);
            }
        }
    }

    /// ACKs the transport saw: complete the held records they cover. A
    /// record whose ACK waited for a retransmission awaits, for up to
    /// [`VERDICT_NS`], word that the retransmission was spurious
    /// ([`cause::REPLY_SPURIOUS`]: the peer had the reply). Each spurious
    /// copy the transport reports goes to one ACK's records: the oldest
    /// still awaiting their verdict on the connection, else this ACK's.
    pub fn on_acks(&mut self, acks: &[AckEvent]) {
        let Some(h) = self.held.as_mut() else { return };
        let mut pushed = false;
        for a in acks {
            let conn = a.conn.0 as u32;
            let mut copies = a.spurious;
            while copies > 0 {
                // The oldest waiting ACK's records (one ACK: one time).
                let Some(first) = h.take_verdict(|s, _| s.conn == conn) else { break };
                copies -= 1;
                let mut s = first;
                loop {
                    s.cause |= cause::REPLY_SPURIOUS as u16;
                    self.stats.spurious += 1;
                    pushed |= push(&mut self.producer, &s);
                    match h.take_verdict(|v, _| v.conn == conn && v.t_acked == first.t_acked) {
                        Some(next) => s = next,
                        None => break,
                    }
                }
            }
            while let Some(mut s) = h.pop_front(conn, |m| m.end <= a.acked) {
                s.t_acked = a.at_ns;
                if a.retransmitted {
                    s.cause |= cause::REPLY_RETX as u16;
                    if copies > 0 {
                        s.cause |= cause::REPLY_SPURIOUS as u16;
                        self.stats.spurious += 1;
                        pushed |= push(&mut self.producer, &s);
                        continue;
                    } else if h.await_verdict(&s, a.at_ns.saturating_add(VERDICT_NS)) {
                        continue;
                    }
                }
                self.stats.acked += 1;
                pushed |= push(&mut self.producer, &s);
            }
        }
        publish(&mut self.producer, pushed);
    }

    /// `conn` is closing: record what it still held, without an ACK (and
    /// what awaited a verdict, as retransmitted).
    pub fn conn_closed(&mut self, conn: u32) {
        let Some(h) = self.held.as_mut() else { return };
        let mut pushed = false;
        while let Some(s) = h.take_verdict(|s, _| s.conn == conn) {
            self.stats.acked += 1;
            pushed |= push(&mut self.producer, &s);
        }
        while let Some(s) = h.pop_front(conn, |_| true) {
            pushed |= push(&mut self.producer, &s);
        }
        publish(&mut self.producer, pushed);
    }

    /// Record what was held past [`ACK_DEADLINE_NS`] at `now`, flagged
    /// [`cause::ACK_LATE`], and what awaited a verdict past its time, as
    /// retransmitted. Returns whether anything was pushed.
    fn expire(&mut self, now: u64) -> bool {
        let Some(h) = self.held.as_mut() else { return false };
        let mut pushed = false;
        while let Some(s) = h.take_expired_verdict(now) {
            self.stats.acked += 1;
            pushed |= push(&mut self.producer, &s);
        }
        let before = now.saturating_sub(h.deadline);
        while let Some(mut s) = h.pop_expired(before) {
            s.cause |= cause::ACK_LATE as u16;
            self.stats.ack_late += 1;
            pushed |= push(&mut self.producer, &s);
        }
        pushed
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
        s.dropped_ring_full = self.producer.as_ref().map_or(0, |p| p.dropped());
        s.shift = self.policy.shift;
        s.injected_stalls = self.inject.stalls;
        (s.injected_slow_handlers, s.injected_fault_storms) = (self.inject.slow_handlers, self.inject.fault_storms);
        s.ack_held = self.held.as_ref().map_or(0, |h| h.live as u64);
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
        self.iter = (iter & ((1 << super::LOOP_SHIFT) - 1)) | self.loop_tag;
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
            let n = bytes.len().min(PAYLOAD_BYTES);
            let mut payload = [0u8; PAYLOAD_BYTES];
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
            self.pending_end.push(0);
            self.open = true;
        }
        if self.inject.maybe_slow_handler() && recorded {
            if let Some(s) = self.pending.last_mut() {
                s.cause |= cause::INJECTED as u16;
            }
        }
    }

    /// The current input's arrival: its frame's stamp, else the poll that
    /// found it (0 when sampling is off).
    #[inline]
    pub fn arrival(&self) -> u64 {
        if !self.on {
            0
        } else if self.in_arrival != 0 && self.in_arrival <= self.in_delivered {
            self.in_arrival
        } else {
            self.t_poll
        }
    }

    /// The message just parsed is the exchange's answer to the order `u`
    /// describes (kind [`super::kind::EXCHANGE`]).
    #[inline]
    pub fn upstream(&mut self, u: super::Upstream) {
        if self.open {
            if let Some(s) = self.pending.last_mut() {
                s.set_upstream(u);
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
    /// whether they all fit ([`cause::TX_FULL`]); `reply_end`: where the
    /// replies end in the connection's output, counted in bytes from the
    /// first (0: the input produced no reply). The input's messages wait
    /// for the ACK of that byte.
    #[inline]
    pub fn end_input(&mut self, tx_flags: u32, reply_end: u64) {
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
        for e in &mut self.pending_end[self.in_start..] {
            *e = reply_end;
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
        if !self.pending.is_empty() || self.held.as_ref().is_some_and(|h| h.busy()) {
            let t0 = if flush.1 != 0 { flush.1 } else { self.now() };
            let mut pushed = self.expire(t0);
            for (s, &end) in self.pending.iter_mut().zip(&self.pending_end) {
                s.t_tx_done = t_tx_done;
                s.cause |= flags as u16;
                self.stats.messages += 1;
                // Tail bias on the gateway's own time: an exchange answer's
                // leg is the exchange's, and would record every one.
                match self.policy.decide(s.msg_type, s.gateway_ns()) {
                    Decision::Skip => {
                        self.stats.skipped += 1;
                        continue;
                    }
                    Decision::Record => self.stats.recorded += 1,
                    Decision::Tail => {
                        self.stats.tail_bias += 1;
                        s.cause |= cause::TAIL_BIAS as u16;
                    }
                }
                if end != 0 {
                    if let Some(h) = self.held.as_mut() {
                        if h.hold(s, end, t0) {
                            continue;
                        }
                        self.stats.ack_untracked += 1;
                    }
                }
                pushed |= push(&mut self.producer, s);
            }
            publish(&mut self.producer, pushed);
            let n = self.pending.len();
            self.pending.clear();
            self.pending_end.clear();
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
        // The sampler is named only where it was a large part of the
        // iteration: recording a burst's thousand messages takes tens of
        // microseconds, but the burst's own service took far more.
        self.prev_flags = if sampler_ns >= SAMPLER_SLOW_NS && sampler_ns * 2 >= busy { cause::SAMPLER } else { 0 };
        // The next iteration delivers what waited through the injected stall.
        if stalled {
            self.prev_flags |= cause::INJECTED;
        }
    }
}

/// Push `s` into the ring, if sampling has one; whether it went in.
#[inline]
fn push(p: &mut Option<Producer>, s: &Sample) -> bool {
    p.as_mut().is_some_and(|p| p.push(s))
}

/// Make what was pushed visible to the reporter (once per batch).
#[inline]
fn publish(p: &mut Option<Producer>, pushed: bool) {
    if let (true, Some(p)) = (pushed, p.as_mut()) {
        p.publish();
    }
}

#[cfg(test)]
mod tests;
