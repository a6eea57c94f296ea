//! Connection guards below smoltcp: what RFC 5961 and RFC 793's TIME-WAIT
//! ask of a stack, which smoltcp 0.14 does not do.
//!
//! The guard sees every TCP segment smoltcp sends (through the stack's
//! `Tap`) and every segment that arrives, before smoltcp does. Per
//! connection it keeps a small record: the next sequence number it
//! expects (`rcv_nxt`: what smoltcp accepted, read from the socket after
//! each segment ([`Guard::accepted`]), and the ACKs smoltcp sends), the
//! highest it sent (`snd_nxt`), and its last ACK and window. With that it
//! judges an arriving segment of a synchronized connection:
//!
//! - **RST** (RFC 5961 section 3): exactly at `rcv_nxt` it goes to smoltcp
//!   and resets the connection; elsewhere in the receive window it draws a
//!   challenge ACK and the connection lives; outside the window it is
//!   dropped.
//! - **SYN** (section 4): a challenge ACK, never to smoltcp (no reset, no
//!   SYN-ACK).
//! - **ACK of data never sent** (section 5): dropped and answered with an
//!   ACK.
//! - Anything else goes to smoltcp, and the guard says whether smoltcp
//!   will accept it ([`Guard::acceptable`]: the ACK flag, a sequence number
//!   in the receive window); loss recovery and tracing look only at
//!   segments that are, so a forged segment with the right 4-tuple and a
//!   guessed sequence number steers nothing.
//! - Challenge ACKs are rate-limited (section 7) per connection, one per
//!   [`CHALLENGE_INTERVAL_NS`] (Linux's `tcp_invalid_ratelimit`), and by
//!   nothing shared: any global count is one an off-path attacker can
//!   spend, with a connection of its own or a thousand, and then tell from
//!   the challenge ACKs it gets back whether a spoofed segment drew one,
//!   which gives away a session's 4-tuple and then its sequence numbers
//!   (CVE-2016-5696; Linux has had its global limit off by default since
//!   6.0). One connection's challenges never change what another
//!   connection gets. What a flood can draw is bounded anyway: two a
//!   second per connection or TIME-WAIT record, each of which the attacker
//!   must know.
//!
//! **TIME-WAIT.** When a socket that finished its close handshake is freed,
//! its record stays as a compact TIME-WAIT record for [`TIME_WAIT_NS`]:
//! the final ACK is sent if smoltcp has not sent it yet, a retransmitted
//! FIN (or data) is ACKed again, a RST is ignored (RFC 1337) but for one:
//! the answer of a client whose SYN the record refused (below), at exactly
//! the record's `rcv_nxt`, which ends the record, as Linux's does, so the
//! client's next SYN gets in. A new SYN on
//! the same 4-tuple ends the record only if its initial sequence number is
//! above the old connection's sequence space (RFC 1122 4.2.2.13, RFC 6191;
//! the stack sees no timestamps): any other SYN is answered as an
//! unacceptable segment, with the record's ACK. The records are bounded
//! (the oldest goes first), and so is their expiry queue; the `time_wait`
//! gauge counts live records exactly.
//!
//! Replies the stack crafts itself (challenge ACKs, TIME-WAIT ACKs, the
//! RST for a refused connection or an expired linger) are [`Reply`]s
//! ([`super::reply`]). Everything is sized at start-up.

use std::collections::{HashMap, VecDeque};

use smoltcp::iface::SocketHandle;

use super::flow::FlowBuild;
use super::frame::{flow_key, tcp_flags, FrameKey, Tcp};
pub use super::reply::Reply;
use super::seq::{in_window, seq_le, seq_lt};
use crate::transport::Counters;

/// How long a TIME-WAIT record answers for its 4-tuple (Linux: 60 s).
pub const TIME_WAIT_NS: u64 = 60_000_000_000;

/// One connection (or TIME-WAIT record) sends at most one challenge ACK
/// in this long (Linux's `tcp_invalid_ratelimit`, 500 ms).
pub const CHALLENGE_INTERVAL_NS: u64 = 500_000_000;

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
    /// The connection's socket in its shard, once the stack said
    /// ([`Guard::bind`]): `rcv_nxt` then follows what smoltcp accepted.
    sock: Option<SocketHandle>,
    /// When this record last sent a challenge ACK (0: never).
    challenged_at: u64,
    /// A TIME-WAIT record that refused a SYN (its exact RST may end it).
    syn_refused: bool,
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
    /// Challenge ACKs not sent: over the connection's rate.
    pub challenge_limited: u64,
    /// Segments answered from a TIME-WAIT record.
    pub time_wait_acks: u64,
    /// SYNs on a TIME-WAIT 4-tuple that did not end it: their ISN was not
    /// above the old connection's sequence space.
    pub time_wait_syn_refused: u64,
    /// TIME-WAIT records ended by the exact RST of a client whose SYN one
    /// refused.
    pub time_wait_reset: u64,
    /// TIME-WAIT records ended early to make room.
    pub time_wait_evicted: u64,
    /// Connections whose record did not fit (no guard for them).
    pub untracked: u64,
    /// Segments of a connection smoltcp will not accept (no ACK flag, or
    /// outside the receive window): smoltcp answers them; loss recovery and
    /// tracing ignore them.
    pub unacceptable: u64,
}

/// The guard: records by flow key, TIME-WAIT expiry order, rate limits.
pub struct Guard {
    recs: HashMap<u64, Rec, FlowBuild>,
    /// TIME-WAIT records in expiry order: (flow key, end). May hold entries
    /// of records that ended early (a SYN, a new connection); never more
    /// than `tw_cap` (stale ones are dropped first).
    tw: VecDeque<(u64, u64)>,
    /// Live TIME-WAIT records (exact).
    tw_live: usize,
    live_cap: usize,
    tw_cap: usize,
    /// The receive window's bound (the socket receive buffer).
    window: u32,
    /// The secret of our connections' initial sequence numbers ([`isn`]).
    isn_key: (u64, u64),
    /// The offset of the flow the last `on_ingress` passed (0: none).
    off_in: u32,
    /// Whether the last `on_ingress` found a live record for its flow.
    known_in: bool,
    /// Whether smoltcp will accept the segment the last `on_ingress`
    /// passed (see [`Guard::acceptable`]).
    acceptable_in: bool,
    /// The socket of the last `on_ingress`'s flow, if bound, and its
    /// `rcv_nxt` then.
    sock_in: Option<SocketHandle>,
    rcv_in: u32,
    pub stats: GuardStats,
}

impl Guard {
    /// Room for `live` connections and `time_wait` TIME-WAIT records;
    /// `window` bounds the receive window (bytes); `key` (secret) keys our
    /// initial sequence numbers.
    pub fn new(live: usize, time_wait: usize, window: u32, key: (u64, u64)) -> Guard {
        let mut recs = HashMap::with_hasher(FlowBuild::default());
        recs.reserve(live + time_wait);
        Guard {
            recs,
            tw: VecDeque::with_capacity(time_wait),
            tw_live: 0,
            live_cap: live,
            tw_cap: time_wait,
            window,
            isn_key: (key.1, key.0 ^ 0x5157_4e5f_4953_4e21),
            off_in: 0,
            known_in: false,
            acceptable_in: true,
            sock_in: None,
            rcv_in: 0,
            stats: GuardStats::default(),
        }
    }

    /// Is flow `key` a live connection (not TIME-WAIT)?
    pub fn is_live(&self, key: u64) -> bool {
        self.recs.get(&key).is_some_and(|r| r.tw_until == 0)
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

    /// Will smoltcp accept the segment the last [`Guard::on_ingress`]
    /// passed? For a synchronized connection: it has the ACK flag and its
    /// sequence number is in the receive window (RFC 793's acceptability
    /// test, with the receive buffer as the window). True for segments of
    /// flows the guard has no live record of (a handshake; smoltcp judges).
    pub fn acceptable(&self) -> bool {
        self.acceptable_in
    }

    /// The socket of the last passed segment's flow, if bound: the stack
    /// reads what smoltcp accepted from it ([`Guard::accepted`]).
    pub fn last_socket(&self) -> Option<SocketHandle> {
        self.sock_in
    }

    /// Is there room for one more live connection?
    pub fn has_room(&self) -> bool {
        self.recs.len().saturating_sub(self.tw_live) < self.live_cap
    }

    /// A connection the front door opened by SYN cookie: our ISN `iss`,
    /// the peer's next sequence number `rcv_nxt`, wire less smoltcp
    /// sequence numbers `off`, its socket `sock`.
    #[allow(clippy::too_many_arguments)]
    pub fn adopt(&mut self, key: u64, iss: u32, rcv_nxt: u32, off: u32, window: u16, mac: [u8; 6], sock: SocketHandle) {
        let rec = Rec {
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
            sock: Some(sock),
            challenged_at: 0,
            syn_refused: false,
        };
        self.insert(key, rec);
        // The segment that opened it goes to smoltcp next: what it takes is
        // counted from here (`accepted`).
        self.sock_in = Some(sock);
        self.rcv_in = rcv_nxt;
    }

    /// Connection `key` lives on socket `sock`: from now on its `rcv_nxt`
    /// follows what smoltcp accepts ([`Guard::accepted`]). The socket's
    /// flow must be released ([`Guard::released`]) before the socket goes.
    pub fn bind(&mut self, key: u64, sock: SocketHandle) {
        if let Some(r) = self.recs.get_mut(&key).filter(|r| r.tw_until == 0) {
            r.sock = Some(sock);
        }
    }

    /// smoltcp took the last passed segment of flow `key` and moved its
    /// receive sequence `bytes` on (in-order data, and 1 for a FIN): what
    /// it accepted, and only that, is acknowledged by the guard's replies.
    /// (An ACK smoltcp sent while it took the segment has told the guard
    /// already: the count is from where the segment found `rcv_nxt`.)
    pub fn accepted(&mut self, key: u64, bytes: u32) {
        if bytes == 0 {
            return;
        }
        let to = self.rcv_in.wrapping_add(bytes);
        if let Some(r) = self.recs.get_mut(&key).filter(|r| r.tw_until == 0 && r.rcv_known) {
            if seq_lt(r.rcv_nxt, to) {
                r.rcv_nxt = to;
            }
        }
    }

    pub fn counters(&self, out: &mut Counters) {
        let s = &self.stats;
        out.event("rst_challenged", s.rst_challenged);
        out.drop("rst_outside_window", s.rst_outside_window);
        out.event("syn_challenged", s.syn_challenged);
        out.event("ack_unsent", s.ack_unsent);
        out.drop("challenge_limited", s.challenge_limited);
        out.event("time_wait_acks", s.time_wait_acks);
        out.drop("time_wait_syn_refused", s.time_wait_syn_refused);
        out.event("time_wait_reset", s.time_wait_reset);
        out.event("time_wait_evicted", s.time_wait_evicted);
        out.drop("guard_untracked", s.untracked);
        out.event("unacceptable", s.unacceptable);
        out.gauge("time_wait", self.tw_live as u64);
    }

    /// Record `rec` for `key`, replacing (and counting out) a TIME-WAIT
    /// record there.
    fn insert(&mut self, key: u64, rec: Rec) {
        if self.recs.insert(key, rec).is_some_and(|old| old.tw_until != 0) {
            self.tw_live -= 1;
        }
    }

    /// Forget `key`'s record (counting a TIME-WAIT one out).
    fn remove(&mut self, key: u64) {
        if self.recs.remove(&key).is_some_and(|old| old.tw_until != 0) {
            self.tw_live -= 1;
        }
    }

    /// May record `key` send a challenge ACK (or a TIME-WAIT ACK) now? At
    /// most one per [`CHALLENGE_INTERVAL_NS`] per record.
    fn allow(&mut self, key: u64, now: u64) -> bool {
        let Some(r) = self.recs.get_mut(&key) else { return false };
        if r.challenged_at != 0 && now < r.challenged_at + CHALLENGE_INTERVAL_NS {
            self.stats.challenge_limited += 1;
            return false;
        }
        r.challenged_at = now.max(1);
        true
    }

    fn challenge(&mut self, key: u64, now: u64) -> Verdict {
        if !self.allow(key, now) {
            return Verdict::Drop;
        }
        let Some(r) = self.recs.get(&key) else { return Verdict::Drop };
        Verdict::Answer(Reply::Ack { seq: r.snd_nxt, ack: r.rcv_nxt, window: r.win_out })
    }

    /// Judge segment `k` arriving at `now`, before smoltcp sees it.
    pub fn on_ingress(&mut self, k: &FrameKey, now: u64) -> Verdict {
        self.known_in = false;
        self.off_in = 0;
        self.acceptable_in = true;
        self.sock_in = None;
        if self.recs.is_empty() {
            return Verdict::Pass;
        }
        let Some((ip, rp, lp)) = k.tuple else { return Verdict::Pass };
        let key = flow_key(ip, rp, lp);
        let Some(r) = self.recs.get_mut(&key) else { return Verdict::Pass };
        if r.tw_until != 0 {
            return self.time_wait(key, k, now);
        }
        self.known_in = true;
        self.off_in = r.off;
        let has = |bit: u8| k.flags & bit != 0;
        let (syn, rst, ack, fin) = (has(tcp_flags::SYN), has(tcp_flags::RST), has(tcp_flags::ACK), has(tcp_flags::FIN));
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
        self.sock_in = r.sock;
        self.rcv_in = r.rcv_nxt;
        self.acceptable_in =
            ack && seg_acceptable(k.seq, u32::from(k.payload) + u32::from(fin), r.rcv_nxt, self.window);
        if !self.acceptable_in {
            self.stats.unacceptable += 1;
        }
        Verdict::Pass
    }

    /// Segment `k` for TIME-WAIT record `key`, at `now`.
    fn time_wait(&mut self, key: u64, k: &FrameKey, now: u64) -> Verdict {
        let Some(&r) = self.recs.get(&key) else { return Verdict::Pass };
        let has = |bit: u8| k.flags & bit != 0;
        let (syn, rst, ack, fin) = (has(tcp_flags::SYN), has(tcp_flags::RST), has(tcp_flags::ACK), has(tcp_flags::FIN));
        if now >= r.tw_until {
            self.remove(key);
            return Verdict::Pass;
        }
        if syn && !ack && !rst {
            if seq_lt(r.rcv_nxt, k.seq) {
                // A new connection, past everything the old one sent.
                self.remove(key);
                return Verdict::Pass;
            }
            // An old duplicate, or a peer reusing the 4-tuple too early:
            // not acceptable here; the record's ACK tells the peer.
            self.stats.time_wait_syn_refused += 1;
            if let Some(rec) = self.recs.get_mut(&key) {
                rec.syn_refused = true;
            }
        } else if rst && r.syn_refused && k.seq == r.rcv_nxt {
            // The refused client's answer to that ACK (its SYN-SENT sends a
            // RST at our ACK number): it means to reconnect, so let it.
            self.stats.time_wait_reset += 1;
            self.remove(key);
            return Verdict::Drop;
        } else if rst || !(fin || k.payload > 0) {
            // RFC 1337: a reset does not end TIME-WAIT early; a bare
            // ACK needs no answer.
            return Verdict::Drop;
        }
        if !self.allow(key, now) {
            return Verdict::Drop;
        }
        self.stats.time_wait_acks += 1;
        Verdict::Answer(Reply::Ack { seq: r.snd_nxt, ack: r.rcv_nxt, window: r.win_out })
    }

    /// smoltcp sent segment `t`, in frame `buf`, at `now`. A connection
    /// whose wire sequence numbers are not smoltcp's (opened by SYN cookie,
    /// or by us with an RFC 6528 ISN) has its segment moved into the wire's
    /// sequence space first (`buf` and `t` both).
    pub(super) fn on_egress(&mut self, t: &mut Tcp, buf: &mut [u8], now: u64) {
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
                None if !self.has_room() => {
                    self.stats.untracked += 1;
                    return;
                }
                None if self.recs.len() >= self.live_cap + self.tw_cap => self.evict_oldest(),
                None => {}
            }
            let (rcv_nxt, rcv_known) = t.ack.map_or((0, false), |a| (a, true));
            // Our own SYN: its ISN on the wire is RFC 6528's, a keyed hash
            // of the 4-tuple plus a 4 us clock (smoltcp draws its own from
            // a PRNG seeded with the configured seed); the record keeps the
            // offset, as for a cookie connection.
            let mut off = 0;
            if t.ack.is_none() {
                off = isn(self.isn_key, t.key, now).wrapping_sub(t.seq);
                if off != 0 && super::frame::shift_tcp(buf, off, 0) {
                    t.seq = t.seq.wrapping_add(off);
                } else {
                    off = 0;
                }
            }
            let rec = Rec {
                iss: t.seq,
                rcv_nxt,
                rcv_known,
                synced: false,
                snd_nxt: t.seq.wrapping_add(1),
                ack_out: rcv_nxt,
                win_out: t.window,
                tw_until: 0,
                mac: t.peer_mac,
                off,
                sock: None,
                challenged_at: 0,
                syn_refused: false,
            };
            self.insert(t.key, rec);
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
            // smoltcp resets when it aborts (its socket then closes, and the
            // stack releases the record), and also answers a bad segment
            // with a RST while its socket lives on (SYN-SENT, given an ACK of
            // something else): the record, with its sequence offset, stays.
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
            Release::TimeWait if r.synced && self.tw_cap > 0 => {
                self.expire(now);
                self.make_tw_room();
                let until = now + TIME_WAIT_NS;
                if let Some(rec) = self.recs.get_mut(&key) {
                    rec.tw_until = until;
                    rec.sock = None;
                    rec.challenged_at = 0;
                }
                self.tw_live += 1;
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

    /// Is `(key, until)` of the expiry queue a live TIME-WAIT record?
    fn is_tw(&self, key: u64, until: u64) -> bool {
        self.recs.get(&key).is_some_and(|r| r.tw_until == until)
    }

    /// Room in the expiry queue for one more entry: stale entries go first
    /// (front, then all of them), then the oldest live record.
    fn make_tw_room(&mut self) {
        while let Some(&(k, u)) = self.tw.front() {
            if self.is_tw(k, u) {
                break;
            }
            self.tw.pop_front();
        }
        if self.tw.len() >= self.tw_cap && self.tw_live < self.tw.len() {
            let recs = &self.recs;
            self.tw.retain(|&(k, u)| recs.get(&k).is_some_and(|r| r.tw_until == u));
        }
        if self.tw.len() >= self.tw_cap {
            self.evict_oldest();
        }
    }

    /// End TIME-WAIT records whose time is up.
    pub fn expire(&mut self, now: u64) {
        while let Some(&(key, until)) = self.tw.front() {
            if until > now {
                break;
            }
            self.tw.pop_front();
            if self.is_tw(key, until) {
                self.remove(key);
            }
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((key, until)) = self.tw.pop_front() {
            if self.is_tw(key, until) {
                self.remove(key);
                self.stats.time_wait_evicted += 1;
                return;
            }
        }
    }
}

/// RFC 6528's initial sequence number for our connection `flow` at `now`
/// (ns): a 4 us clock plus a keyed hash (SipHash-2-4) of the 4-tuple, so an
/// off-path attacker can predict neither, and a connection reusing a
/// 4-tuple starts above its predecessor's sequence space.
pub fn isn(key: (u64, u64), flow: u64, now: u64) -> u32 {
    use std::hash::Hasher;
    let mut h = siphasher::sip::SipHasher24::new_with_keys(key.0, key.1);
    h.write_u64(flow);
    ((now / 4000) as u32).wrapping_add(h.finish() as u32)
}

/// RFC 793's acceptability test, with `wnd` for the receive window: a
/// segment taking `len` sequence numbers from `seq` overlaps
/// `[rcv_nxt, rcv_nxt + wnd)` (an empty one starts in it).
fn seg_acceptable(seq: u32, len: u32, rcv_nxt: u32, wnd: u32) -> bool {
    if len == 0 {
        return in_window(seq, rcv_nxt, wnd.max(1));
    }
    let last = seq.wrapping_add(len - 1);
    in_window(seq, rcv_nxt, wnd) || in_window(last, rcv_nxt, wnd) || (seq_lt(seq, rcv_nxt) && seq_le(rcv_nxt, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isns_follow_rfc_6528() {
        let (k, flow) = ((1, 2), 0xc612_0001_9c40_1e61);
        let t = 7_000_000_000;
        // The 4 us clock: a second later, 250 000 more.
        assert_eq!(isn(k, flow, t + 1_000_000_000).wrapping_sub(isn(k, flow, t)), 250_000);
        // Another key or another 4-tuple: nothing in common.
        assert_ne!(isn((1, 3), flow, t), isn(k, flow, t));
        assert_ne!(isn(k, flow + 1, t).wrapping_sub(isn(k, flow, t)), 0);
        let spread = (0..64u64).map(|p| isn(k, flow + (p << 16), t) >> 28).collect::<std::collections::HashSet<_>>();
        assert!(spread.len() >= 12, "the top bits of 64 flows' ISNs: {spread:?}");
    }

    #[test]
    fn acceptability_follows_rfc_793_across_the_wrap() {
        let nxt = u32::MAX - 9;
        for (seq, len, ok) in [
            (nxt, 0, true),
            (nxt.wrapping_add(99), 0, true),
            (nxt.wrapping_add(100), 0, false),
            (nxt.wrapping_sub(1), 0, false),
            // Data: any overlap with the window.
            (nxt.wrapping_sub(5), 10, true),
            (nxt.wrapping_sub(10), 10, false),
            (nxt.wrapping_add(95), 10, true),
            (nxt.wrapping_add(100), 10, false),
            (nxt.wrapping_add(1 << 30), 10, false),
            // A segment wider than the window, around it.
            (nxt.wrapping_sub(50), 300, true),
        ] {
            assert_eq!(seg_acceptable(seq, len, nxt, 100), ok, "seq {seq} len {len}");
        }
    }
}
