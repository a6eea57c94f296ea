//! Connection guards below smoltcp: what RFC 5961 and RFC 793's TIME-WAIT
//! ask of a stack, which smoltcp 0.14 does not do.
//!
//! The guard sees every TCP segment smoltcp sends (through the stack's
//! `Tap`) and every segment that arrives, before smoltcp does. Per
//! connection it keeps a small record: the next sequence number it
//! expects (`rcv_nxt`, from in-order arrivals and from the ACKs smoltcp
//! sends), the highest it sent (`snd_nxt`), and its last ACK and window.
//! With that it judges an arriving segment of a synchronized connection:
//!
//! - **RST** (RFC 5961 section 3): exactly at `rcv_nxt` it goes to smoltcp
//!   and resets the connection; elsewhere in the receive window it draws a
//!   challenge ACK and the connection lives; outside the window it is
//!   dropped.
//! - **SYN** (section 4): a challenge ACK, never to smoltcp (no reset, no
//!   SYN-ACK).
//! - **ACK of data never sent** (section 5): dropped and answered with an
//!   ACK.
//! - Challenge ACKs are rate-limited (section 7): [`CHALLENGE_ACKS_PER_SEC`]
//!   per stack, as Linux's `tcp_challenge_ack_limit`.
//!
//! **TIME-WAIT.** When a socket that finished its close handshake is freed,
//! its record stays as a compact TIME-WAIT record for [`TIME_WAIT_NS`]:
//! the final ACK is sent if smoltcp has not sent it yet, a retransmitted
//! FIN (or data) is ACKed again, a RST is ignored (RFC 1337), a new SYN on
//! the same 4-tuple ends the record. The records are bounded (the oldest
//! goes first).
//!
//! Replies the stack crafts itself (challenge ACKs, TIME-WAIT ACKs, the
//! RST for a refused connection or an expired linger) are [`Reply`]s
//! ([`super::reply`]). Everything is sized at start-up.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;

use super::flow::FlowHasher;
use super::frame::{flow_key, tcp_flags, FrameKey, Tcp};
pub use super::reply::Reply;
use super::seq::{in_window, seq_lt};
use crate::transport::Counters;

/// How long a TIME-WAIT record answers for its 4-tuple (Linux: 60 s).
pub const TIME_WAIT_NS: u64 = 60_000_000_000;

/// Challenge ACKs (and TIME-WAIT re-ACKs) the stack sends per second at
/// most (Linux's `tcp_challenge_ack_limit` default).
pub const CHALLENGE_ACKS_PER_SEC: u32 = 1000;

/// What to do with an arriving segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// smoltcp takes it.
    Pass,
    /// Nobody takes it.
    Drop,
    /// Nobody takes it; send this instead.
    Answer(Reply),
}

/// Why a socket was freed (see [`Guard::released`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The close handshake completed with the peer's FIN: TIME-WAIT.
    TimeWait,
    /// Closed or reset: nothing to answer for.
    Gone,
    /// Given up (the linger expired): reset the peer.
    Abort,
}

#[derive(Debug, Clone, Copy)]
struct Rec {
    iss: u32,
    rcv_nxt: u32,
    rcv_known: bool,
    synced: bool,
    snd_nxt: u32,
    ack_out: u32,
    win_out: u16,
    /// 0: a live connection; else the end of its TIME-WAIT.
    tw_until: u64,
    /// The peer's hardware address (for replies after the socket is gone).
    mac: [u8; 6],
    /// The wire's sequence numbers less smoltcp's (a connection opened by
    /// SYN cookie; 0 otherwise). Records hold the wire's numbers.
    off: u32,
}

/// Counters of the guard.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GuardStats {
    /// RSTs in the window but not at `rcv_nxt` (section 3): challenged.
    pub rst_challenged: u64,
    /// RSTs outside the window: dropped.
    pub rst_outside_window: u64,
    /// SYNs on synchronized connections (section 4): challenged.
    pub syn_challenged: u64,
    /// ACKs of data never sent (section 5): dropped and answered.
    pub ack_unsent: u64,
    /// Challenge ACKs not sent: over [`CHALLENGE_ACKS_PER_SEC`].
    pub challenge_limited: u64,
    /// Segments answered from a TIME-WAIT record.
    pub time_wait_acks: u64,
    /// TIME-WAIT records ended early to make room.
    pub time_wait_evicted: u64,
    /// Connections whose record did not fit (no guard for them).
    pub untracked: u64,
}

/// The guard: records by flow key, TIME-WAIT expiry order, rate limit.
pub struct Guard {
    recs: HashMap<u64, Rec, BuildHasherDefault<FlowHasher>>,
    /// TIME-WAIT records in expiry order: (flow key, end).
    tw: VecDeque<(u64, u64)>,
    live_cap: usize,
    tw_cap: usize,
    /// The receive window's bound (the socket receive buffer).
    window: u32,
    tokens: u32,
    tokens_until: u64,
    /// The offset of the flow the last `on_ingress` passed (0: none).
    off_in: u32,
    /// Whether the last `on_ingress` found a live record for its flow.
    known_in: bool,
    pub stats: GuardStats,
}

impl Guard {
    /// Room for `live` connections and `time_wait` TIME-WAIT records;
    /// `window` bounds the receive window (bytes).
    pub fn new(live: usize, time_wait: usize, window: u32) -> Guard {
        let mut recs = HashMap::default();
        recs.reserve(live + time_wait);
        Guard {
            recs,
            tw: VecDeque::with_capacity(time_wait),
            live_cap: live,
            tw_cap: time_wait,
            window,
            tokens: 0,
            tokens_until: 0,
            off_in: 0,
            known_in: false,
            stats: GuardStats::default(),
        }
    }

    /// Is anything known of flow `key` (a live connection or TIME-WAIT)?
    pub fn knows(&self, key: u64) -> bool {
        self.recs.contains_key(&key)
    }

    /// Of the segment the last [`Guard::on_ingress`] judged: whether its
    /// flow has a live record, and the offset to subtract from its
    /// acknowledgment numbers before smoltcp sees it.
    pub fn last_ingress(&self) -> (bool, u32) {
        (self.known_in, self.off_in)
    }

    /// Is there room for one more live connection?
    pub fn has_room(&self) -> bool {
        self.recs.len() - self.tw.len() < self.live_cap
    }

    /// A connection the front door opened by SYN cookie: our ISN `iss`,
    /// the peer's next sequence number `rcv_nxt`, wire less smoltcp
    /// sequence numbers `off`.
    pub fn adopt(&mut self, key: u64, iss: u32, rcv_nxt: u32, off: u32, window: u16, mac: [u8; 6]) {
        self.recs.insert(
            key,
            Rec {
                iss,
                rcv_nxt,
                rcv_known: true,
                synced: true,
                snd_nxt: iss.wrapping_add(1),
                ack_out: rcv_nxt,
                win_out: window,
                tw_until: 0,
                mac,
                off,
            },
        );
    }

    pub fn counters(&self, out: &mut Counters) {
        let s = &self.stats;
        out.event("rst_challenged", s.rst_challenged);
        out.drop("rst_outside_window", s.rst_outside_window);
        out.event("syn_challenged", s.syn_challenged);
        out.event("ack_unsent", s.ack_unsent);
        out.drop("challenge_limited", s.challenge_limited);
        out.event("time_wait_acks", s.time_wait_acks);
        out.event("time_wait_evicted", s.time_wait_evicted);
        out.drop("guard_untracked", s.untracked);
        out.gauge("time_wait", self.tw.len() as u64);
    }

    /// One more challenge ACK allowed now?
    fn allow(&mut self, now: u64) -> bool {
        if now >= self.tokens_until {
            self.tokens_until = now + 1_000_000_000;
            self.tokens = CHALLENGE_ACKS_PER_SEC;
        }
        if self.tokens == 0 {
            self.stats.challenge_limited += 1;
            return false;
        }
        self.tokens -= 1;
        true
    }

    fn challenge(&mut self, key: u64, now: u64) -> Verdict {
        let Some(&r) = self.recs.get(&key) else { return Verdict::Drop };
        if !self.allow(now) {
            return Verdict::Drop;
        }
        Verdict::Answer(Reply::Ack { seq: r.snd_nxt, ack: r.rcv_nxt, window: r.win_out })
    }

    /// Judge segment `k` arriving at `now`, before smoltcp sees it.
    pub fn on_ingress(&mut self, k: &FrameKey, now: u64) -> Verdict {
        self.known_in = false;
        self.off_in = 0;
        if self.recs.is_empty() {
            return Verdict::Pass;
        }
        let Some((ip, rp, lp)) = k.tuple else { return Verdict::Pass };
        let key = flow_key(ip, rp, lp);
        let Some(r) = self.recs.get_mut(&key) else { return Verdict::Pass };
        if r.tw_until == 0 {
            self.known_in = true;
            self.off_in = r.off;
        }
        let has = |bit: u8| k.flags & bit != 0;
        let (syn, rst, ack, fin) = (has(tcp_flags::SYN), has(tcp_flags::RST), has(tcp_flags::ACK), has(tcp_flags::FIN));
        if r.tw_until != 0 {
            if now >= r.tw_until || (syn && !ack) {
                // Expired, or a new connection on the 4-tuple.
                self.recs.remove(&key);
                return Verdict::Pass;
            }
            if rst || !(fin || k.payload > 0) {
                // RFC 1337: a reset does not end TIME-WAIT early; a bare
                // ACK needs no answer.
                return Verdict::Drop;
            }
            let r = *r;
            if !self.allow(now) {
                return Verdict::Drop;
            }
            self.stats.time_wait_acks += 1;
            return Verdict::Answer(Reply::Ack { seq: r.snd_nxt, ack: r.rcv_nxt, window: r.win_out });
        }
        if !r.synced {
            // The handshake is smoltcp's; it ends when our SYN is acked.
            if ack && !rst && k.ack == r.iss.wrapping_add(1) {
                if syn {
                    r.rcv_nxt = k.seq.wrapping_add(1);
                    r.rcv_known = true;
                }
                r.synced = r.rcv_known;
            }
            if !r.synced || syn {
                return Verdict::Pass;
            }
        }
        if rst {
            if k.seq == r.rcv_nxt {
                return Verdict::Pass;
            }
            if in_window(k.seq, r.rcv_nxt, self.window) {
                self.stats.rst_challenged += 1;
                return self.challenge(key, now);
            }
            self.stats.rst_outside_window += 1;
            return Verdict::Drop;
        }
        if syn {
            self.stats.syn_challenged += 1;
            return self.challenge(key, now);
        }
        if ack && seq_lt(r.snd_nxt, k.ack) {
            self.stats.ack_unsent += 1;
            return self.challenge(key, now);
        }
        if k.seq == r.rcv_nxt {
            r.rcv_nxt = r.rcv_nxt.wrapping_add(u32::from(k.payload) + u32::from(fin));
        }
        Verdict::Pass
    }

    /// smoltcp sent segment `t`, in frame `buf`. A connection opened by
    /// SYN cookie has its segment moved into the wire's sequence space
    /// first (`buf` and `t` both).
    pub(super) fn on_egress(&mut self, t: &mut Tcp, buf: &mut [u8]) {
        if t.syn {
            match self.recs.get(&t.key) {
                // The SYN-ACK of a cookie connection again (smoltcp did not
                // take the ACK that opened it): into the wire's numbers.
                Some(r) if r.tw_until == 0 && r.off != 0 => {
                    if super::frame::shift_tcp(buf, r.off, 0) {
                        t.seq = t.seq.wrapping_add(r.off);
                    }
                    return;
                }
                // Our SYN or SYN-ACK again.
                Some(r) if r.tw_until == 0 && r.iss == t.seq => return,
                // A new connection on a 4-tuple we hold: replaced below.
                Some(_) => {}
                None if self.recs.len() - self.tw.len() >= self.live_cap => {
                    self.stats.untracked += 1;
                    return;
                }
                None if self.recs.len() >= self.live_cap + self.tw_cap => self.evict_oldest(),
                None => {}
            }
            let (rcv_nxt, rcv_known) = t.ack.map_or((0, false), |a| (a, true));
            self.recs.insert(
                t.key,
                Rec {
                    iss: t.seq,
                    rcv_nxt,
                    rcv_known,
                    synced: false,
                    snd_nxt: t.seq.wrapping_add(1),
                    ack_out: rcv_nxt,
                    win_out: t.window,
                    tw_until: 0,
                    mac: t.peer_mac,
                    off: 0,
                },
            );
            return;
        }
        let Some(r) = self.recs.get_mut(&t.key) else { return };
        if r.tw_until != 0 {
            return;
        }
        if r.off != 0 && super::frame::shift_tcp(buf, r.off, 0) {
            t.seq = t.seq.wrapping_add(r.off);
        }
        if t.rst {
            self.recs.remove(&t.key);
            return;
        }
        if let Some(a) = t.ack {
            r.ack_out = a;
            r.win_out = t.window;
            if r.rcv_known && seq_lt(r.rcv_nxt, a) {
                r.rcv_nxt = a;
            }
        }
        let end = t.seq.wrapping_add(t.payload + u32::from(t.fin));
        if seq_lt(r.snd_nxt, end) {
            r.snd_nxt = end;
        }
    }

    /// The socket of flow `key` was freed at `now`, for `why`. Returns the
    /// segment owed to the peer, if any, and the peer's hardware address:
    /// the final ACK smoltcp did not send before its socket went, or the
    /// RST of an abort.
    pub fn released(&mut self, key: u64, why: Release, now: u64) -> Option<(Reply, [u8; 6])> {
        let r = *self.recs.get(&key)?;
        if r.tw_until != 0 {
            return None;
        }
        match why {
            Release::TimeWait if r.synced => {
                self.expire(now);
                if self.tw.len() >= self.tw_cap {
                    self.evict_oldest();
                }
                if self.tw_cap == 0 {
                    self.recs.remove(&key);
                    return None;
                }
                let until = now + TIME_WAIT_NS;
                if let Some(rec) = self.recs.get_mut(&key) {
                    rec.tw_until = until;
                }
                self.tw.push_back((key, until));
                (r.ack_out != r.rcv_nxt)
                    .then_some((Reply::Ack { seq: r.snd_nxt, ack: r.rcv_nxt, window: r.win_out }, r.mac))
            }
            Release::Abort if r.synced => {
                self.recs.remove(&key);
                Some((Reply::Rst { seq: r.snd_nxt, ack: r.rcv_nxt }, r.mac))
            }
            _ => {
                self.recs.remove(&key);
                None
            }
        }
    }

    /// End TIME-WAIT records whose time is up.
    pub fn expire(&mut self, now: u64) {
        while let Some(&(key, until)) = self.tw.front() {
            if until > now {
                break;
            }
            self.tw.pop_front();
            if self.recs.get(&key).is_some_and(|r| r.tw_until == until) {
                self.recs.remove(&key);
            }
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((key, until)) = self.tw.pop_front() {
            if self.recs.get(&key).is_some_and(|r| r.tw_until == until) {
                self.recs.remove(&key);
                self.stats.time_wait_evicted += 1;
                return;
            }
        }
    }
}
