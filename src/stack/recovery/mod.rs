//! Loss recovery below smoltcp, at the time scale of the link.
//!
//! smoltcp 0.14 retransmits after a 1 s minimum RTO, samples RTT in whole
//! milliseconds, has no tail-loss probe and ignores the SACK blocks it
//! receives. This layer sits between smoltcp and the link and sees every
//! TCP segment both ways, so it keeps what smoltcp cannot:
//!
//! - **A copy of every data segment in flight** (payload or FIN), taken as
//!   smoltcp transmits it ([`Tap`](super::tap::Tap)), in a pool of fixed-size slots
//!   allocated at start-up. A flow holds at most [`MAX_SLOTS_PER_FLOW`];
//!   beyond that, or when the pool is empty, a segment is not copied
//!   (`retx_untracked`) and smoltcp's own RTO covers it.
//! - **RTT in nanoseconds** per flow, from the first transmission of a
//!   segment to the ACK that covers it (Karn: never from a retransmitted
//!   one), and from the handshake. SRTT and RTTVAR as in RFC 6298, the
//!   minimum RTT, and the **ACK delay** the peer adds (how far samples run
//!   above the minimum: a peer that delays its ACKs, or piggybacks them on
//!   its next request, shows it here), which rises at once and decays by
//!   1/16 per sample; and the **hold**, an allowance for the peer's
//!   delayed-ACK timer. A request/response peer ACKs a reply with its next
//!   request, or after its delayed-ACK timer (Linux: 40 ms at least): a
//!   timer cannot tell that silence from a loss before then. So a flow
//!   starts with a hold of [`DELAYED_ACK_NS`] ([`FIRST_HOLD_NS`] until its
//!   first data sample), and drops it after
//!   [`PROMPT_SAMPLES`] prompt samples in a row (within twice the minimum
//!   RTT plus [`PROMPT_SLACK_NS`]: a peer that ACKs at once, as a ping-pong
//!   client does with its next message). A timer retransmission that turns
//!   out spurious anyway (the peer had the original and was holding its
//!   ACK) sets the hold to four times what the copy waited, and at least
//!   [`DELAYED_ACK_NS`], for good; it decays by 1/4096 per sample. Losses
//!   followed by more traffic do not wait for the timer: SACK finds them
//!   within one round trip.
//! - **A timer for the oldest unacknowledged segment** (in the spirit of
//!   RACK-TLP's probe timeout, RFC 8985): overdue after
//!   `max(SRTT + 4 RTTVAR, min RTT + max(ACK delay, hold)) + floor`. A
//!   retransmission that goes unanswered means a silent peer, not one lost
//!   segment: the next waits at least [`DELAYED_ACK_NS`], and each after
//!   that twice as long (at most [`MAX_TIMEOUT_NS`]); progress resets it.
//! - **SACK-driven loss detection** (RACK, RFC 8985 section 6.2): a segment
//!   sent before one the peer has selectively acknowledged, and older than
//!   the minimum RTT plus a reordering window (min RTT / 4, widened by every
//!   retransmission found spurious), is lost and goes again at once.
//! - **Spurious retransmissions** are found by D-SACK (RFC 2883: the peer
//!   reports a block below its cumulative ACK; Linux sends them by default)
//!   or by an ACK covering a retransmitted segment that arrived (by the
//!   link's receive stamp) before the copy left. Not by an ACK that comes
//!   "too soon" after the copy: the measured RTT is only an upper bound of
//!   the path's (a peer that delays its ACKs inflates every sample), so it
//!   cannot tell. A spurious timer retransmission teaches the flow that its
//!   peer holds ACKs at least twice as long as the copy waited.
//!
//! A retransmission is the frame smoltcp sent, byte for byte, with the ACK
//! number and window brought up to date (and the TCP checksum with them):
//! TCP allows an identical retransmission at any time, and smoltcp then
//! sees the ACK as usual. smoltcp's own retransmissions still happen (after
//! 3 duplicate ACKs, or its RTO); they are seen and counted by kind.
//!
//! Flows are keyed by their 4-tuple. A flow's state goes when the stack
//! frees its socket ([`Recovery::forget`]), or, for a handshake that never
//! completed, after [`HANDSHAKE_IDLE_NS`]; a flow with nothing in flight
//! and no traffic for [`IDLE_NS`] goes too (a slow sweep, a few flows
//! every 50 us). No allocation after start-up: slots, the flow table and the timer
//! heap are sized by [`Recovery::new`].
//!
//! ```text
//! mod.rs    Recovery: the flow table, copies, timers, retransmission
//! flow.rs   one flow's state: RTT estimates, timeouts, its copies' records
//! ack.rs    what an inbound ACK (and its SACK blocks) tells recovery
//! ```

mod ack;
mod flow;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::link::Link;
use slab::Slab;
use smoltcp::wire::{EthernetFrame, IpAddress, Ipv4Packet, TcpPacket};

pub use self::flow::{Estimate, RetxStats};
use self::flow::{Flow, Kind, LastRetx, Slot, SrttSummary, Syn};
use super::flow::FlowBuild;
use super::frame::Tcp;
use super::seq::{seq_le, seq_lt};
use crate::transport::Counters;

/// Bytes per slot: an Ethernet frame of a 1500-byte MTU fits.
pub const SLOT_BYTES: usize = 1536;

/// Segments one flow may hold copies of.
pub const MAX_SLOTS_PER_FLOW: u16 = 128;

/// The longest a backed-off retransmission waits (RFC 6298 2.5: a bound,
/// if any, of at least 60 s). smoltcp's own RTO sends nothing this layer
/// holds a copy of, so the schedule doubles up to here.
pub const MAX_TIMEOUT_NS: u64 = 60_000_000_000;

/// Timeout before a flow has any RTT sample.
pub const INITIAL_TIMEOUT_NS: u64 = 10_000_000;

/// The handshake round trip assumed for a connection opened by SYN cookie
/// whose SYN-ACK time the front door no longer held (a flood overwrote it).
pub const ASSUMED_RTT_NS: u64 = 1_000_000;

/// The most ACK delay a flow learns (Linux holds ACKs 200 ms at most).
pub const MAX_ACK_DELAY_NS: u64 = 500_000_000;

/// The least a peer caught holding its ACKs is assumed to hold them: the
/// Linux delayed-ACK timer's minimum (`TCP_DELACK_MIN`, 40 ms), plus the
/// jiffies it is rounded up to (seen on the lab: first ACKs held 40-42 ms).
pub const DELAYED_ACK_NS: u64 = 50_000_000;

/// The allowance before a flow's first data sample: Linux's longest
/// delayed ACK (`TCP_DELACK_MAX`).
pub const FIRST_HOLD_NS: u64 = 200_000_000;

/// A sample within twice the minimum RTT plus this is prompt.
pub const PROMPT_SLACK_NS: u64 = 100_000;

/// Prompt samples in a row that show a peer does not hold its ACKs: more
/// than the 16 quick ACKs Linux grants a new connection before it starts
/// delaying them.
pub const PROMPT_SAMPLES: u8 = 32;

/// A flow with nothing in flight and no traffic this long is forgotten.
pub const IDLE_NS: u64 = 120_000_000_000;

/// A handshake that carried no data this long after its SYN is forgotten.
pub const HANDSHAKE_IDLE_NS: u64 = 5_000_000_000;

/// The idle sweep walks [`SWEEP_FLOWS`] entries of the flow table this
/// often: a 9,216-entry table (4,096 connections) in about 30 ms.
const SWEEP_EVERY_NS: u64 = 50_000;
const SWEEP_FLOWS: usize = 16;

/// Default floor added to every timeout: scheduling jitter of a busy host.
pub const FLOOR_NS_DEFAULT: u64 = 200_000;

const NIL: u32 = u32::MAX;

/// The loss-recovery state of every flow. See the module docs.
pub struct Recovery {
    /// Slots used so far (a free list holds those given back); at most
    /// `cap`, reserved at start-up and written only when first used, so an
    /// idle stack's memory holds none of them.
    slots: Vec<Slot>,
    cap: usize,
    pool: Vec<u8>,
    free: u32,
    free_count: usize,
    flows: Slab<Flow>,
    index: HashMap<u64, usize, FlowBuild>,
    max_flows: usize,
    heap: BinaryHeap<Reverse<(u64, usize, u64)>>,
    lost: Vec<usize>,
    next_gen: u64,
    floor: u64,
    sweep_at: usize,
    /// When the sweep next walks (monotonic ns).
    sweep_next: u64,
    /// Smoothed RTTs seen by the sweep in progress, and by the last full one.
    srtt_acc: SrttSummary,
    srtt_done: SrttSummary,
    pub stats: RetxStats,
}

impl Recovery {
    /// Room for `slots` copied segments and `max_flows` flows; `floor_ns`
    /// is added to every timeout.
    pub fn new(slots: usize, max_flows: usize, floor_ns: u64) -> Recovery {
        let slots = slots.min(NIL as usize - 1);
        let mut index = HashMap::with_hasher(FlowBuild::default());
        index.reserve(max_flows);
        Recovery {
            slots: Vec::with_capacity(slots),
            cap: slots,
            pool: vec![0u8; slots * SLOT_BYTES],
            free: NIL,
            free_count: 0,
            flows: Slab::with_capacity(max_flows),
            index,
            max_flows,
            heap: BinaryHeap::with_capacity(max_flows * 2 + 64),
            lost: Vec::with_capacity(max_flows),
            next_gen: 1,
            floor: floor_ns,
            sweep_at: 0,
            sweep_next: 0,
            srtt_acc: SrttSummary::default(),
            srtt_done: SrttSummary::default(),
            stats: RetxStats::default(),
        }
    }

    /// Copies held now.
    pub fn slots_in_use(&self) -> usize {
        self.slots.len() - self.free_count
    }

    /// Data segments flow `key` has sent again so far, by smoltcp or by
    /// this layer (0 for a flow not tracked). Tracing compares two reads
    /// to tell whether an ACK waited for a retransmission.
    pub fn retransmissions(&self, key: u64) -> u32 {
        self.index.get(&key).map_or(0, |&i| self.flows[i].retransmissions)
    }

    /// Retransmissions on flow `key` found spurious so far.
    pub fn spurious(&self, key: u64) -> u32 {
        self.index.get(&key).map_or(0, |&i| self.flows[i].spurious)
    }

    /// Retransmissions found spurious on every flow: when it has not moved,
    /// no flow's [`Recovery::spurious`] has.
    pub fn spurious_total(&self) -> u64 {
        self.stats.spurious
    }

    /// What recovery knows of flow `key` (None: not tracked).
    pub fn estimate(&self, key: u64) -> Option<Estimate> {
        let f = &self.flows[*self.index.get(&key)?];
        Some(Estimate {
            srtt_ns: f.srtt,
            rttvar_ns: f.rttvar,
            min_rtt_ns: f.min_rtt,
            ack_delay_ns: f.ack_delay,
            hold_ns: f.hold,
            samples: f.samples,
            timeout_ns: f.base_timeout(self.floor),
            in_flight: f.count,
        })
    }

    /// Counters for the exit line and `/metrics`, with a summary of the
    /// flows' smoothed RTTs (min / mean / max, microseconds) as of the last
    /// full sweep of the table (gathered a few flows every 50 us, so the loop
    /// never walks every flow at once).
    pub fn counters(&self, out: &mut Counters) {
        let s = &self.stats;
        out.event("retx_timer", s.timer);
        out.event("retx_sack", s.sack);
        out.event("retx_rto", s.rto);
        out.event("retx_rto_withheld", s.rto_withheld);
        out.event("retx_fast", s.fast);
        out.event("retx_spurious", s.spurious);
        out.event("retx_untracked", s.untracked);
        out.event("retx_heap_compactions", s.heap_compactions);
        out.event("retx_reneged", s.reneged);
        out.gauge("retx_heap", self.heap.len() as u64);
        let r = &self.srtt_done;
        if let Some(mean) = r.sum.checked_div(r.n) {
            out.gauge("srtt_min_us", r.min / 1000);
            out.gauge("srtt_mean_us", mean / 1000);
            out.gauge("srtt_max_us", r.max / 1000);
        }
    }

    fn gen(&mut self) -> u64 {
        self.next_gen += 1;
        self.next_gen
    }

    fn flow_or_new(&mut self, key: u64, now: u64) -> Option<usize> {
        if let Some(&i) = self.index.get(&key) {
            return Some(i);
        }
        if self.flows.len() >= self.max_flows {
            return None;
        }
        let gen = self.gen();
        let i = self.flows.insert(Flow::new(key, gen, now));
        self.index.insert(key, i);
        Some(i)
    }

    fn free_slots_of(&mut self, i: usize) {
        let mut s = self.flows[i].head;
        while s != NIL {
            let next = self.slots[s as usize].next;
            self.release(s);
            s = next;
        }
        let f = &mut self.flows[i];
        f.head = NIL;
        f.tail = NIL;
        f.count = 0;
    }

    fn release(&mut self, s: u32) {
        self.slots[s as usize].next = self.free;
        self.free = s;
        self.free_count += 1;
    }

    /// Drop a flow's state and copies (its socket is gone).
    pub fn forget(&mut self, key: u64) {
        if let Some(i) = self.index.remove(&key) {
            self.free_slots_of(i);
            self.flows.remove(i);
        }
    }

    /// Put `(deadline, flow)` on the heap unless an earlier one is there.
    fn arm(&mut self, i: usize, deadline: u64) {
        let f = &mut self.flows[i];
        if f.armed != 0 && f.armed <= deadline {
            return;
        }
        self.next_gen += 1;
        f.gen = self.next_gen;
        f.armed = deadline;
        let entry = Reverse((deadline, i, f.gen));
        if self.heap.len() == self.heap.capacity() {
            // Full of entries made stale by an earlier deadline or a flow
            // gone (each flow has one live entry at most): drop those rather
            // than grow, so the heap stays at its start-up size.
            let flows = &self.flows;
            self.heap.retain(|Reverse((d, i, g))| flows.get(*i).is_some_and(|f| f.gen == *g && f.armed == *d));
            self.stats.heap_compactions += 1;
        }
        self.heap.push(entry);
    }

    /// The oldest copy the peer has not selectively acknowledged.
    fn first_unsacked(&self, i: usize) -> u32 {
        let mut s = self.flows[i].head;
        while s != NIL && self.slots[s as usize].sacked {
            s = self.slots[s as usize].next;
        }
        s
    }

    /// When copy `s` of flow `i` is overdue. A FIN waits at least
    /// [`FIRST_HOLD_NS`]: a Linux peer that gets our FIN enters CLOSE-WAIT in
    /// ping-pong mode and delays its ACK until its application closes too
    /// (on the lab, a load generator closing 1000 connections held them
    /// past 100 ms), and a close is not on the latency path.
    fn deadline(&self, i: usize, s: u32) -> u64 {
        let sl = &self.slots[s as usize];
        let t = self.flows[i].timeout(self.floor);
        sl.last_tx + if sl.fin { t.max(FIRST_HOLD_NS) } else { t }
    }

    /// The copy flow `i`'s timer watches: the oldest the peer has not
    /// selectively acknowledged, or, when it has SACKed every copy it has
    /// not acknowledged, the oldest (the peer may renege on a SACK, RFC
    /// 2018: a timeout then resends from SND.UNA, RFC 6675 5.1).
    fn timed_copy(&self, i: usize) -> u32 {
        let s = self.first_unsacked(i);
        if s == NIL {
            self.flows[i].head
        } else {
            s
        }
    }

    fn arm_head(&mut self, i: usize) {
        let s = self.timed_copy(i);
        if s != NIL {
            let d = self.deadline(i, s);
            self.arm(i, d);
        }
    }

    /// Forget what the peer selectively acknowledged on flow `i` (it kept
    /// none of it after all).
    fn clear_sacks(&mut self, i: usize) {
        let mut s = self.flows[i].head;
        while s != NIL {
            let sl = &mut self.slots[s as usize];
            sl.sacked = false;
            s = sl.next;
        }
    }

    /// A connection the front door opened by SYN cookie: our ISN `iss`
    /// is acknowledged at `now`. `rtt`: the handshake's round trip, if the
    /// door still knew when its SYN-ACK left; without it the flow starts
    /// from [`ASSUMED_RTT_NS`] (its timers are then ruled by the first
    /// hold, [`FIRST_HOLD_NS`], until a data sample comes).
    pub fn adopt(&mut self, key: u64, iss: u32, rtt: Option<u64>, now: u64) {
        let Some(i) = self.flow_or_new(key, now) else { return };
        let f = &mut self.flows[i];
        f.syn = None;
        f.snd_una = iss.wrapping_add(1);
        f.snd_max = f.snd_una;
        f.last_active = now;
        f.sample(rtt.unwrap_or(ASSUMED_RTT_NS));
    }

    /// smoltcp transmitted `frame` at `now` (ours to copy if it carries
    /// data).
    ///
    /// False: withhold it. A retransmission by smoltcp's own timer (not its
    /// fast retransmit, not a window probe) of bytes this layer holds
    /// copies of is not sent: those bytes have one schedule, ours, which
    /// doubles (RFC 6298 5.5); smoltcp's 1 s RTO firing between our
    /// retransmissions would break it.
    pub(super) fn on_egress(&mut self, t: &Tcp, frame: &[u8], now: u64) -> bool {
        let key = t.key;
        if t.rst {
            // An abort: nothing of the flow goes again. (A RST smoltcp sends
            // in answer to a bad segment while its SYN is out is not one.)
            if self.index.get(&key).is_none_or(|&i| self.flows[i].syn.is_none()) {
                self.forget(key);
            }
            return true;
        }
        if t.syn {
            let Some(i) = self.flow_or_new(key, now) else { return true };
            let f = &mut self.flows[i];
            let again = f.syn.is_some_and(|s| s.iss == t.seq);
            let sent = if again { f.syn.map_or(now, |s| s.sent) } else { now };
            f.syn = Some(Syn { iss: t.seq, sent, again });
            f.snd_una = t.seq;
            f.snd_max = t.seq.wrapping_add(1);
            f.last_active = now;
            return true;
        }
        let len = t.payload + u32::from(t.fin);
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None if len > 0 => {
                let Some(i) = self.flow_or_new(key, now) else {
                    self.stats.untracked += 1;
                    return true;
                };
                self.flows[i].snd_una = t.seq;
                self.flows[i].snd_max = t.seq;
                i
            }
            None => return true,
        };
        let f = &mut self.flows[i];
        f.last_active = now;
        if let Some(a) = t.ack {
            f.ack_out = a;
            f.win_out = t.window;
            f.ack_known = true;
        }
        if len == 0 {
            return true;
        }
        let end = t.seq.wrapping_add(len);
        if seq_lt(t.seq, f.snd_max) {
            // smoltcp sends these bytes again.
            let fast = f.dup_acks >= 3;
            if !fast && !f.zero_window && self.covered(i, t.seq, end) {
                self.stats.rto_withheld += 1;
                return false;
            }
            let f = &mut self.flows[i];
            f.retransmissions = f.retransmissions.wrapping_add(1);
            if fast {
                self.stats.fast += 1;
            } else {
                self.stats.rto += 1;
            }
            let mut s = f.head;
            while s != NIL {
                let sl = &mut self.slots[s as usize];
                if seq_lt(sl.seq, end) && seq_lt(t.seq, sl.end) {
                    sl.tx = sl.tx.saturating_add(1);
                    sl.last_tx = now;
                    sl.lost = false;
                }
                s = sl.next;
            }
            if seq_le(end, self.flows[i].snd_max) {
                return true;
            }
        }
        let f = &mut self.flows[i];
        f.snd_max = end;
        let full = self.free == NIL && self.slots.len() >= self.cap;
        if f.count >= MAX_SLOTS_PER_FLOW || full || frame.len() > SLOT_BYTES {
            self.stats.untracked += 1;
            return true;
        }
        let s = if self.free != NIL {
            let s = self.free;
            self.free = self.slots[s as usize].next;
            self.free_count -= 1;
            s
        } else {
            // Within the capacity reserved at start-up: no allocation.
            self.slots.push(Slot::EMPTY);
            (self.slots.len() - 1) as u32
        };
        self.slots[s as usize] = Slot {
            next: NIL,
            seq: t.seq,
            end,
            first_tx: now,
            last_tx: now,
            tx: 1,
            sacked: false,
            lost: false,
            len: frame.len() as u16,
            fin: t.fin,
        };
        let off = s as usize * SLOT_BYTES;
        self.pool[off..off + frame.len()].copy_from_slice(frame);
        let f = &mut self.flows[i];
        f.count += 1;
        if f.tail == NIL {
            f.head = s;
            f.tail = s;
            self.arm_head(i);
        } else {
            self.slots[f.tail as usize].next = s;
            f.tail = s;
        }
        true
    }

    /// Do flow `i`'s copies cover `[seq, end)` without a gap?
    fn covered(&self, i: usize, seq: u32, end: u32) -> bool {
        let mut need = seq;
        let mut s = self.flows[i].head;
        while s != NIL {
            let sl = &self.slots[s as usize];
            if seq_le(sl.seq, need) && seq_lt(need, sl.end) {
                need = sl.end;
                if seq_le(end, need) {
                    return true;
                }
            } else if seq_lt(need, sl.seq) {
                return false;
            }
            s = sl.next;
        }
        false
    }
}

impl Recovery {
    /// Retransmit what is due at `now` on `dev`: copies found lost by SACK,
    /// then flows whose oldest copy is overdue. Returns frames queued.
    pub fn recover<D: Link>(&mut self, now: u64, dev: &mut D) -> usize {
        let mut sent = 0;
        while let Some(i) = self.lost.pop() {
            let Some(f) = self.flows.get_mut(i) else { continue };
            f.lost_pending = false;
            let mut s = f.head;
            while s != NIL {
                let next = self.slots[s as usize].next;
                if self.slots[s as usize].lost {
                    if !self.send_copy(i, s, now, dev, Kind::Sack) {
                        // No room on the link: the timer takes it.
                        self.arm(i, now + 10_000);
                        return sent;
                    }
                    sent += 1;
                }
                s = next;
            }
        }
        while let Some(&Reverse((d, i, gen))) = self.heap.peek() {
            if d > now {
                break;
            }
            self.heap.pop();
            let floor = self.floor;
            let Some(f) = self.flows.get_mut(i) else { continue };
            if f.gen != gen {
                continue;
            }
            f.armed = 0;
            let s = self.timed_copy(i);
            if s == NIL {
                continue;
            }
            let f = &self.flows[i];
            let due = self.deadline(i, s);
            if due > now {
                self.arm(i, due);
                continue;
            }
            if f.zero_window {
                // The peer has no room: smoltcp's window probes take over.
                let t = f.timeout(floor);
                self.arm(i, now + t);
                continue;
            }
            if !self.send_copy(i, s, now, dev, Kind::Timer) {
                self.arm(i, now + 10_000);
                break;
            }
            if self.slots[s as usize].sacked {
                // Every copy left was SACKed and is still unacknowledged
                // a timeout later: the peer dropped them; they go again.
                self.clear_sacks(i);
                self.stats.reneged += 1;
            }
            sent += 1;
            let f = &mut self.flows[i];
            f.backoff = f.backoff.saturating_add(1);
            let t = f.timeout(floor);
            self.arm(i, now + t);
        }
        self.sweep(now);
        sent
    }

    /// Queue slot `s` of flow `i` on `dev` with the flow's current ACK and
    /// window. False if the link has no room.
    fn send_copy<D: Link>(&mut self, i: usize, s: u32, now: u64, dev: &mut D, kind: Kind) -> bool {
        let f = &mut self.flows[i];
        let sl = &mut self.slots[s as usize];
        let off = s as usize * SLOT_BYTES;
        let src = &self.pool[off..off + usize::from(sl.len)];
        let (ack, win, known) = (f.ack_out, f.win_out, f.ack_known);
        // Counted as sent only if the link queued it.
        let queued = dev.send_with(src.len(), &mut |buf| {
            buf.copy_from_slice(src);
            if known {
                refresh(buf, ack, win);
            }
            true
        });
        if !queued {
            return false;
        }
        sl.tx = sl.tx.saturating_add(1);
        sl.last_tx = now;
        sl.lost = false;
        f.retransmissions = f.retransmissions.wrapping_add(1);
        f.last_retx = Some(LastRetx { seq: sl.seq, end: sl.end, at: now, first_tx: sl.first_tx, kind });
        match kind {
            Kind::Timer => self.stats.timer += 1,
            Kind::Sack => self.stats.sack += 1,
        }
        true
    }

    /// Forget a few idle flows (a slow walk over the table): [`SWEEP_FLOWS`]
    /// every [`SWEEP_EVERY_NS`], so a spinning loop's idle poll pays one
    /// comparison, not a walk.
    fn sweep(&mut self, now: u64) {
        if now < self.sweep_next {
            return;
        }
        self.sweep_next = now + SWEEP_EVERY_NS;
        let cap = self.flows.capacity().max(1);
        for _ in 0..SWEEP_FLOWS {
            self.sweep_at += 1;
            if self.sweep_at >= cap {
                self.sweep_at = 0;
                self.srtt_done = std::mem::take(&mut self.srtt_acc);
            }
            let Some(f) = self.flows.get(self.sweep_at) else { continue };
            let idle = now.saturating_sub(f.last_active);
            let stale_syn = f.syn.is_some() && f.count == 0 && idle > HANDSHAKE_IDLE_NS;
            if stale_syn || (f.count == 0 && idle > IDLE_NS) {
                let key = f.key;
                self.forget(key);
            } else if f.samples > 0 {
                self.srtt_acc.add(f.srtt);
            }
        }
    }
}

/// Bring a copied frame's ACK number and window up to date and fix its
/// TCP checksum.
fn refresh(buf: &mut [u8], ack: u32, win: u16) {
    let Ok(mut eth) = EthernetFrame::new_checked(&mut *buf) else { return };
    let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) else { return };
    let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
    let Ok(mut t) = TcpPacket::new_checked(ip.payload_mut()) else { return };
    t.set_ack_number(smoltcp::wire::TcpSeqNumber(ack as i32));
    t.set_window_len(win);
    t.fill_checksum(&src, &dst);
}
