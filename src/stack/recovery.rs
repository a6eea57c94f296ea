//! Loss recovery below smoltcp, at the time scale of the link.
//!
//! smoltcp 0.14 retransmits after a 1 s minimum RTO, samples RTT in whole
//! milliseconds, has no tail-loss probe and ignores the SACK blocks it
//! receives. This layer sits between smoltcp and the link and sees every
//! TCP segment both ways, so it keeps what smoltcp cannot:
//!
//! - **A copy of every data segment in flight** (payload or FIN), taken as
//!   smoltcp transmits it ([`Tap`]), in a pool of fixed-size slots
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
//! and no traffic for [`IDLE_NS`] goes too (a slow sweep, a few flows per
//! poll). No allocation after start-up: slots, the flow table and the timer
//! heap are sized by [`Recovery::new`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasherDefault;

use slab::Slab;
use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetFrame, IpAddress, Ipv4Packet, TcpPacket};

use super::flow::{flow_key, FlowHasher};
use super::frame::{tcp_flags, FrameKey};
use super::guard::Guard;
use crate::transport::Counters;

/// Bytes per slot: an Ethernet frame of a 1500-byte MTU fits.
pub const SLOT_BYTES: usize = 1536;

/// Segments one flow may hold copies of.
pub const MAX_SLOTS_PER_FLOW: u16 = 128;

/// The longest a backed-off retransmission waits (smoltcp's own RTO, 1 s
/// at least, also runs).
pub const MAX_TIMEOUT_NS: u64 = 1_000_000_000;

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

/// Default floor added to every timeout: scheduling jitter of a busy host.
pub const FLOOR_NS_DEFAULT: u64 = 200_000;

const NIL: u32 = u32::MAX;

pub(super) fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
pub(super) fn seq_le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

/// Why a segment went out again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Our timer: the ACK was overdue.
    Timer,
    /// Our SACK-driven detection: a later segment arrived.
    Sack,
}

/// One copied segment in flight.
#[derive(Debug, Clone, Copy)]
struct Slot {
    next: u32,
    seq: u32,
    /// `seq` + payload + FIN.
    end: u32,
    first_tx: u64,
    last_tx: u64,
    /// Transmissions so far (smoltcp's and ours).
    tx: u8,
    sacked: bool,
    lost: bool,
    len: u16,
    /// Carries our FIN.
    fin: bool,
}

/// A handshake in flight: our SYN or SYN-ACK.
#[derive(Debug, Clone, Copy)]
struct Syn {
    iss: u32,
    sent: u64,
    again: bool,
}

/// Our last retransmission on a flow, to judge it spurious later.
#[derive(Debug, Clone, Copy)]
struct LastRetx {
    seq: u32,
    end: u32,
    at: u64,
    first_tx: u64,
    kind: Kind,
}

#[derive(Debug, Clone)]
struct Flow {
    key: u64,
    gen: u64,
    head: u32,
    tail: u32,
    count: u16,
    snd_una: u32,
    snd_max: u32,
    syn: Option<Syn>,
    /// ACK number and raw window of our latest segment.
    ack_out: u32,
    win_out: u16,
    ack_known: bool,
    srtt: u64,
    rttvar: u64,
    min_rtt: u64,
    ack_delay: u64,
    /// How long the peer has been seen to hold an ACK (learned from
    /// spurious timer retransmissions; decays by 1/4096 per RTT sample).
    hold: u64,
    /// Consecutive prompt samples (within twice the minimum RTT plus
    /// [`PROMPT_SLACK_NS`]).
    prompt: u8,
    /// `hold` came from a spurious retransmission (prompt samples do not
    /// release it; it decays).
    hold_learned: bool,
    samples: u32,
    /// Reordering window, in quarters of the minimum RTT.
    reo_quarters: u8,
    backoff: u8,
    /// Deadline the heap holds for this flow (0: none).
    armed: u64,
    dup_acks: u8,
    zero_window: bool,
    lost_pending: bool,
    last_retx: Option<LastRetx>,
    last_active: u64,
    /// Data segments sent again on this flow (smoltcp's and ours).
    retransmissions: u32,
}

impl Flow {
    fn new(key: u64, gen: u64, now: u64) -> Flow {
        Flow {
            key,
            gen,
            head: NIL,
            tail: NIL,
            count: 0,
            snd_una: 0,
            snd_max: 0,
            syn: None,
            ack_out: 0,
            win_out: 0,
            ack_known: false,
            srtt: 0,
            rttvar: 0,
            min_rtt: 0,
            ack_delay: 0,
            hold: DELAYED_ACK_NS,
            prompt: 0,
            hold_learned: false,
            samples: 0,
            reo_quarters: 1,
            backoff: 0,
            armed: 0,
            dup_acks: 0,
            zero_window: false,
            lost_pending: false,
            last_retx: None,
            last_active: now,
            retransmissions: 0,
        }
    }

    /// How long the oldest segment may go unacknowledged, before backoff.
    fn base_timeout(&self, floor: u64) -> u64 {
        if self.samples == 0 {
            return INITIAL_TIMEOUT_NS;
        }
        // Before the first data sample (only the handshake's), the peer's
        // delayed-ACK timer may run its longest: a client busy opening many
        // connections held its first ACKs past 50 ms on the lab.
        let hold = if self.samples <= 1 { self.hold.max(FIRST_HOLD_NS) } else { self.hold };
        (self.srtt + 4 * self.rttvar).max(self.min_rtt + self.ack_delay.max(hold)) + floor
    }

    /// With backoff: the first retransmission waits the base timeout; if
    /// it goes unanswered the peer is silent (stalled, or the path is
    /// down), not missing one segment, so the next waits at least
    /// [`DELAYED_ACK_NS`], and each after that twice as long.
    fn timeout(&self, floor: u64) -> u64 {
        let b = self.backoff.min(20);
        let t = self.base_timeout(floor) << b;
        let t = if b == 0 { t } else { t.max(DELAYED_ACK_NS << (b - 1)) };
        t.min(MAX_TIMEOUT_NS)
    }

    fn reo_wnd(&self) -> u64 {
        self.min_rtt / 4 * u64::from(self.reo_quarters)
    }

    /// One RTT sample, `rtt` ns.
    fn sample(&mut self, rtt: u64) {
        let rtt = rtt.max(1);
        if self.samples == 0 {
            self.srtt = rtt;
            self.rttvar = rtt / 2;
            self.min_rtt = rtt;
        } else {
            let err = self.srtt.abs_diff(rtt);
            self.rttvar = (3 * self.rttvar + err) / 4;
            self.srtt = (7 * self.srtt + rtt) / 8;
            self.min_rtt = self.min_rtt.min(rtt);
            let excess = rtt - self.min_rtt;
            self.ack_delay = if excess >= self.ack_delay {
                excess.min(MAX_ACK_DELAY_NS)
            } else {
                self.ack_delay - (self.ack_delay - excess) / 16
            };
        }
        if self.samples > 0 && rtt <= 2 * self.min_rtt + PROMPT_SLACK_NS {
            self.prompt = self.prompt.saturating_add(1);
            if self.prompt >= PROMPT_SAMPLES && !self.hold_learned {
                // This peer answers at once: no delayed-ACK allowance.
                self.hold = 0;
            }
        } else {
            self.prompt = 0;
        }
        self.hold -= self.hold / 4096;
        self.samples = self.samples.saturating_add(1);
    }
}

/// One flow's estimates, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub srtt_ns: u64,
    pub rttvar_ns: u64,
    pub min_rtt_ns: u64,
    /// How long the peer holds its ACKs beyond the minimum RTT: from RTT
    /// samples, and from retransmissions found spurious.
    pub ack_delay_ns: u64,
    pub hold_ns: u64,
    pub samples: u32,
    /// When the oldest segment in flight is overdue (before backoff).
    pub timeout_ns: u64,
    /// Copies held.
    pub in_flight: u16,
}

/// Minimum, maximum, sum and count of smoothed RTTs (ns).
#[derive(Debug, Clone, Copy)]
struct SrttSummary {
    min: u64,
    max: u64,
    sum: u64,
    n: u64,
}

impl Default for SrttSummary {
    fn default() -> Self {
        SrttSummary { min: u64::MAX, max: 0, sum: 0, n: 0 }
    }
}

impl SrttSummary {
    fn add(&mut self, srtt: u64) {
        self.min = self.min.min(srtt);
        self.max = self.max.max(srtt);
        self.sum += srtt;
        self.n += 1;
    }
}

/// Retransmission counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetxStats {
    /// Ours: the ACK was overdue.
    pub timer: u64,
    /// Ours: a later segment was selectively acknowledged.
    pub sack: u64,
    /// smoltcp's, after its RTO.
    pub rto: u64,
    /// smoltcp's, after three duplicate ACKs.
    pub fast: u64,
    /// Retransmissions found unnecessary.
    pub spurious: u64,
    /// Data segments sent without a copy (flow or pool full).
    pub untracked: u64,
}

/// The loss-recovery state of every flow. See the module docs.
pub struct Recovery {
    slots: Vec<Slot>,
    pool: Vec<u8>,
    free: u32,
    free_count: usize,
    flows: Slab<Flow>,
    index: HashMap<u64, usize, BuildHasherDefault<FlowHasher>>,
    max_flows: usize,
    heap: BinaryHeap<Reverse<(u64, usize, u64)>>,
    lost: Vec<usize>,
    next_gen: u64,
    floor: u64,
    sweep_at: usize,
    /// Smoothed RTTs seen by the sweep in progress, and by the last full one.
    srtt_acc: SrttSummary,
    srtt_done: SrttSummary,
    pub stats: RetxStats,
}

/// A TCP segment smoltcp sent (inbound ones are read once, by
/// `frame::classify`).
pub(super) struct Tcp {
    /// The flow key: the remote end is the destination.
    pub key: u64,
    pub seq: u32,
    pub ack: Option<u32>,
    pub window: u16,
    /// Payload bytes.
    pub payload: u32,
    pub fin: bool,
    pub syn: bool,
    pub rst: bool,
    /// The destination's hardware address.
    pub peer_mac: [u8; 6],
}

pub(super) fn parse(frame: &[u8]) -> Option<Tcp> {
    let (ip, t) = super::frame::tcp_segment(frame)?;
    let mut peer_mac = [0u8; 6];
    peer_mac.copy_from_slice(&frame[..6]);
    Some(Tcp {
        key: flow_key(u32::from(ip.dst_addr()), t.dst_port(), t.src_port()),
        seq: t.seq_number().0 as u32,
        ack: t.ack().then(|| t.ack_number().0 as u32),
        window: t.window_len(),
        payload: t.payload().len() as u32,
        fin: t.fin(),
        syn: t.syn(),
        rst: t.rst(),
        peer_mac,
    })
}

impl Recovery {
    /// Room for `slots` copied segments and `max_flows` flows; `floor_ns`
    /// is added to every timeout.
    pub fn new(slots: usize, max_flows: usize, floor_ns: u64) -> Recovery {
        let slots = slots.min(NIL as usize - 1);
        let mut s = Vec::with_capacity(slots);
        for i in 0..slots {
            s.push(Slot {
                next: if i + 1 < slots { (i + 1) as u32 } else { NIL },
                seq: 0,
                end: 0,
                first_tx: 0,
                last_tx: 0,
                tx: 0,
                sacked: false,
                lost: false,
                len: 0,
                fin: false,
            });
        }
        let mut index = HashMap::default();
        index.reserve(max_flows);
        Recovery {
            slots: s,
            pool: vec![0u8; slots * SLOT_BYTES],
            free: if slots > 0 { 0 } else { NIL },
            free_count: slots,
            flows: Slab::with_capacity(max_flows),
            index,
            max_flows,
            heap: BinaryHeap::with_capacity(max_flows * 2 + 64),
            lost: Vec::with_capacity(max_flows),
            next_gen: 1,
            floor: floor_ns,
            sweep_at: 0,
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
    /// full sweep of the table (gathered a few flows per poll, so the loop
    /// never walks every flow at once).
    pub fn counters(&self, out: &mut Counters) {
        let s = &self.stats;
        out.event("retx_timer", s.timer);
        out.event("retx_sack", s.sack);
        out.event("retx_rto", s.rto);
        out.event("retx_fast", s.fast);
        out.event("retx_spurious", s.spurious);
        out.event("retx_untracked", s.untracked);
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
        self.heap.push(Reverse((deadline, i, f.gen)));
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

    fn arm_head(&mut self, i: usize) {
        let s = self.first_unsacked(i);
        if s != NIL {
            let d = self.deadline(i, s);
            self.arm(i, d);
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
    pub(super) fn on_egress(&mut self, t: &Tcp, frame: &[u8], now: u64) {
        let key = t.key;
        if t.rst {
            self.forget(key);
            return;
        }
        if t.syn {
            let Some(i) = self.flow_or_new(key, now) else { return };
            let f = &mut self.flows[i];
            let again = f.syn.is_some_and(|s| s.iss == t.seq);
            let sent = if again { f.syn.map_or(now, |s| s.sent) } else { now };
            f.syn = Some(Syn { iss: t.seq, sent, again });
            f.snd_una = t.seq;
            f.snd_max = t.seq.wrapping_add(1);
            f.last_active = now;
            return;
        }
        let len = t.payload + u32::from(t.fin);
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None if len > 0 => {
                let Some(i) = self.flow_or_new(key, now) else {
                    self.stats.untracked += 1;
                    return;
                };
                self.flows[i].snd_una = t.seq;
                self.flows[i].snd_max = t.seq;
                i
            }
            None => return,
        };
        let f = &mut self.flows[i];
        f.last_active = now;
        if let Some(a) = t.ack {
            f.ack_out = a;
            f.win_out = t.window;
            f.ack_known = true;
        }
        if len == 0 {
            return;
        }
        let end = t.seq.wrapping_add(len);
        if seq_lt(t.seq, f.snd_max) {
            // smoltcp sends these bytes again.
            f.retransmissions = f.retransmissions.wrapping_add(1);
            if f.dup_acks >= 3 {
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
            if seq_le(end, f.snd_max) {
                return;
            }
        }
        let f = &mut self.flows[i];
        f.snd_max = end;
        if f.count >= MAX_SLOTS_PER_FLOW || self.free == NIL || frame.len() > SLOT_BYTES {
            self.stats.untracked += 1;
            return;
        }
        let s = self.free;
        self.free = self.slots[s as usize].next;
        self.free_count -= 1;
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
    }

    /// A frame from the peer, as `frame::classify` read it, arrived at `at`
    /// (before smoltcp sees it).
    pub fn on_ingress(&mut self, t: &FrameKey, at: u64) {
        if self.index.is_empty() {
            return;
        }
        let Some((ip, rp, lp)) = t.tuple else { return };
        let Some(&i) = self.index.get(&flow_key(ip, rp, lp)) else { return };
        if t.flags & tcp_flags::ACK == 0 || t.flags & tcp_flags::RST != 0 {
            return;
        }
        let (ack, fin, syn) = (t.ack, t.flags & tcp_flags::FIN != 0, t.flags & tcp_flags::SYN != 0);
        let f = &mut self.flows[i];
        f.last_active = at;
        f.zero_window = t.window == 0 && !syn;
        if let Some(s) = f.syn {
            if ack == s.iss.wrapping_add(1) {
                if !s.again {
                    f.sample(at.saturating_sub(s.sent));
                }
                f.syn = None;
                f.snd_una = ack;
            }
        }
        let f = &mut self.flows[i];
        let mut delivered = 0u64;
        let mut sacked_now = false;
        let mut sample = None;
        let mut progressed = false;
        if seq_lt(f.snd_una, ack) && seq_le(ack, f.snd_max) {
            progressed = true;
            let mut s = f.head;
            let mut freed = 0u16;
            while s != NIL {
                let sl = self.slots[s as usize];
                if !seq_le(sl.end, ack) {
                    break;
                }
                if sl.tx == 1 {
                    sample = Some(at.saturating_sub(sl.first_tx));
                } else if at <= sl.last_tx {
                    // The ACK arrived before the copy left: it answers the
                    // original, and the copy was not needed.
                    self.stats.spurious += 1;
                    self.learn(i, sl.seq, sl.end);
                }
                if unambiguous(&sl) {
                    delivered = delivered.max(sl.last_tx);
                }
                let next = sl.next;
                self.release(s);
                freed += 1;
                s = next;
            }
            let f = &mut self.flows[i];
            f.head = s;
            if s == NIL {
                f.tail = NIL;
            }
            f.count -= freed;
            f.snd_una = ack;
            f.backoff = 0;
            f.dup_acks = 0;
        } else if ack == f.snd_una && t.payload == 0 && !fin && !syn && f.count > 0 {
            f.dup_acks = f.dup_acks.saturating_add(1);
        }
        // SACK blocks: D-SACK (below the cumulative ACK, or the first block
        // inside the second) reports a duplicate; the rest mark copies
        // delivered.
        for (n, b) in t.sack.iter().enumerate() {
            let Some((l, r)) = *b else { continue };
            let dsack = seq_le(r, ack) || (n == 0 && t.sack[1].is_some_and(|(l2, r2)| seq_le(l2, l) && seq_le(r, r2)));
            if dsack {
                self.dsack(i, l, r);
                continue;
            }
            // Copies are in sequence order: stop past the block.
            let mut s = self.flows[i].head;
            while s != NIL {
                let sl = &mut self.slots[s as usize];
                if !seq_lt(sl.seq, r) {
                    break;
                }
                if !sl.sacked && seq_le(l, sl.seq) && seq_le(sl.end, r) {
                    sl.sacked = true;
                    sacked_now = true;
                    if unambiguous(sl) {
                        delivered = delivered.max(sl.last_tx);
                    }
                }
                s = sl.next;
            }
        }
        if let Some(rtt) = sample {
            self.flows[i].sample(rtt);
        }
        // RACK: a copy sent before a delivered one, and older than the
        // minimum RTT plus the reordering window, is lost. Only a SACK can
        // show that: the copies left are all above the cumulative ACK, and
        // first transmissions go out in sequence order.
        if sacked_now && delivered > 0 && self.flows[i].count > 0 {
            let f = &self.flows[i];
            let (wait, reo) = (f.min_rtt + f.reo_wnd(), f.reo_wnd());
            let mut s = f.head;
            let mut any = false;
            let mut earliest = u64::MAX;
            while s != NIL {
                let sl = &mut self.slots[s as usize];
                if sl.tx == 1 && sl.last_tx + reo > delivered {
                    // This one and every first transmission after it left
                    // after the delivered copy.
                    break;
                }
                if !sl.sacked && !sl.lost && sl.last_tx + reo <= delivered {
                    if at >= sl.last_tx + wait {
                        sl.lost = true;
                        any = true;
                    } else {
                        earliest = earliest.min(sl.last_tx + wait);
                    }
                }
                s = sl.next;
            }
            if any && !self.flows[i].lost_pending {
                self.flows[i].lost_pending = true;
                self.lost.push(i);
            }
            if earliest != u64::MAX {
                self.arm(i, earliest);
            }
        }
        if progressed {
            self.arm_head(i);
        }
    }

    /// The peer reported `[l, r)` twice (D-SACK): if that was our last
    /// copy, it was spurious.
    fn dsack(&mut self, i: usize, l: u32, r: u32) {
        if self.learn(i, l, r) {
            self.stats.spurious += 1;
        }
    }

    /// Our last retransmission on flow `i`, if it overlaps `[l, r)`, was
    /// not needed: learn from it (once). True if it overlapped.
    fn learn(&mut self, i: usize, l: u32, r: u32) -> bool {
        let f = &mut self.flows[i];
        let Some(x) = f.last_retx else { return false };
        if !(seq_lt(l, x.end) && seq_lt(x.seq, r)) {
            return false;
        }
        f.last_retx = None;
        match x.kind {
            // The peer had the original and holds its ACKs: for as long as
            // a delayed-ACK timer (Linux: 40 ms at least), and at least four
            // times what this copy waited. One surprise per flow, not a
            // doubling search.
            Kind::Timer => {
                let held = x.at.saturating_sub(x.first_tx);
                f.hold = f.hold.max(4 * held).clamp(DELAYED_ACK_NS, MAX_ACK_DELAY_NS);
                f.hold_learned = true;
                f.backoff = 0;
            }
            // The original was reordered, not lost: widen the window.
            Kind::Sack => f.reo_quarters = (f.reo_quarters + 1).min(16),
        }
        true
    }

    /// Retransmit what is due at `now` on `dev`: copies found lost by SACK,
    /// then flows whose oldest copy is overdue. Returns frames queued.
    pub fn recover<D: Device>(&mut self, now: u64, dev: &mut D) -> usize {
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
            let s = self.first_unsacked(i);
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
    fn send_copy<D: Device>(&mut self, i: usize, s: u32, now: u64, dev: &mut D, kind: Kind) -> bool {
        let Some(tok) = dev.transmit(Instant::from_micros((now / 1000) as i64)) else {
            return false;
        };
        let f = &mut self.flows[i];
        let sl = &mut self.slots[s as usize];
        let off = s as usize * SLOT_BYTES;
        let src = &self.pool[off..off + usize::from(sl.len)];
        let (ack, win, known) = (f.ack_out, f.win_out, f.ack_known);
        phy::TxToken::consume(tok, src.len(), |buf| {
            buf.copy_from_slice(src);
            if known {
                refresh(buf, ack, win);
            }
        });
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

    /// Forget a few idle flows (a slow walk over the table).
    fn sweep(&mut self, now: u64) {
        let cap = self.flows.capacity().max(1);
        for _ in 0..4 {
            self.sweep_at = (self.sweep_at + 1) % cap;
            if self.sweep_at == 0 {
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

/// May a delivered copy stand for "sent at `last_tx`" in RACK (RFC 8985
/// section 6.2 step 2)? Only one sent once: an ACK for a retransmitted one
/// may answer an earlier transmission. RFC 8985 accepts it when the ACK
/// comes later than the minimum RTT after the copy; without timestamps that
/// is not enough under load: with a queue on the path, the ACK of the
/// original arrives long after the minimum RTT, and taking it for the copy's
/// marks every segment sent in between lost (a cascade of spurious copies,
/// seen at 800k orders/s on the lab). A lost retransmission is left to the
/// timer.
fn unambiguous(sl: &Slot) -> bool {
    sl.tx == 1
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

/// The stack's link as smoltcp sees it: every frame smoltcp transmits is
/// shown to [`Recovery::on_egress`] and [`Guard::on_egress`] after it is
/// written.
pub struct Tap<'a, D: Device> {
    pub dev: &'a mut D,
    pub rec: &'a mut Recovery,
    pub guard: &'a mut Guard,
    pub now: u64,
}

pub struct TapTx<'a, T> {
    inner: T,
    rec: &'a mut Recovery,
    guard: &'a mut Guard,
    now: u64,
}

impl<T: phy::TxToken> phy::TxToken for TapTx<'_, T> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let (rec, guard, now) = (self.rec, self.guard, self.now);
        self.inner.consume(len, |buf| {
            let r = f(buf);
            if let Some(mut t) = parse(buf) {
                // The guard first: it moves a cookie connection's segment
                // into the wire's sequence space, which recovery keeps.
                guard.on_egress(&mut t, buf);
                rec.on_egress(&t, buf, now);
            }
            r
        })
    }

    fn set_meta(&mut self, meta: phy::PacketMeta) {
        self.inner.set_meta(meta);
    }
}

impl<D: Device> Device for Tap<'_, D> {
    type RxToken<'b>
        = D::RxToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = TapTx<'b, D::TxToken<'b>>
    where
        Self: 'b;

    fn receive(&mut self, ts: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (rx, tx) = self.dev.receive(ts)?;
        Some((rx, TapTx { inner: tx, rec: &mut *self.rec, guard: &mut *self.guard, now: self.now }))
    }

    fn transmit(&mut self, ts: Instant) -> Option<Self::TxToken<'_>> {
        let tx = self.dev.transmit(ts)?;
        Some(TapTx { inner: tx, rec: &mut *self.rec, guard: &mut *self.guard, now: self.now })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.dev.capabilities()
    }
}
