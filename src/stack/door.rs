//! The front door: every passive open goes through SYN cookies (RFC 4987
//! section 3.6), below smoltcp.
//!
//! A SYN for a listening port is answered at once with a SYN-ACK whose
//! initial sequence number is a cookie: a keyed hash (SipHash-2-4) of the
//! 4-tuple, the peer's ISN and a time slot, with the peer's options (MSS,
//! window scale, SACK permitted) folded in. Nothing is kept: a half-open
//! connection costs no memory, so a SYN flood has no queue to fill and a
//! SYN costs a hash and one frame (Linux with `tcp_syncookies=2` does the
//! same). smoltcp, whose listener would give each half-open connection a
//! whole socket with its buffers, never sees a SYN for a listening port.
//!
//! When an ACK arrives for a 4-tuple the stack does not know, on a
//! listening port, its acknowledgment number must be a valid cookie plus
//! one. Then, and only then, the connection gets its socket: a fresh smoltcp
//! socket in Listen is handed a replay of the peer's SYN (with the options
//! the cookie carried) on a private one-socket set, its SYN-ACK is caught
//! there (never sent), and the socket moves to its shard. smoltcp chose its
//! own ISN, so the connection's sequence space on the wire is offset from
//! smoltcp's by `cookie - smoltcp's ISN`: the stack adds it to every
//! segment smoltcp sends and subtracts it from every acknowledgment (and
//! SACK block) it receives (`frame::shift_tcp`, checksums updated
//! incrementally). The guard, loss recovery and tracing see only the wire's
//! numbers. Then the ACK itself (with any data it carries) goes to smoltcp
//! and the connection is established.
//!
//! Cookie layout (32 bits, before whitening by a keyed hash of the 4-tuple):
//! the low 2 bits of the time slot (a slot is 2^36 ns, about 69 s; a cookie
//! is good in its slot and the next), 2 bits of MSS (536, 1300, 1440 or 1460
//! bytes, the largest not above the peer's), 4 bits of window scale (15:
//! none), 1 bit of SACK permitted, and 23 bits of MAC. The MAC covers the
//! whole slot counter, which the check rebuilds from its own clock (the
//! current slot or the one before, whichever has the cookie's low bits), so
//! a cookie dies after two slots for good: one captured from a `--pcap` file
//! or the wire cannot open a connection minutes later, as Linux's cookies
//! (which MAC the full counter too) cannot. A blind attacker needs about
//! 2^23 guesses per 4-tuple to open a connection.
//!
//! What cookies give up, as in Linux: the stack does not retransmit its
//! SYN-ACK (the peer retransmits its SYN, answered with the same cookie);
//! if the peer's final ACK is lost and the peer waits for the server to
//! speak first, the connection is never seen until the peer sends. Every
//! protocol this gateway serves has the client speak first.

use std::hash::Hasher;
use std::net::Ipv4Addr;

use siphasher::sip::SipHasher24;
use smoltcp::iface::SocketHandle;
use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::time::Instant;
use smoltcp::wire::{ArpOperation, TcpControl, TcpRepr, TcpSeqNumber};

use super::frame::{emit_arp, emit_tcp, flow_key, tcp_frame_len, FrameKey, ARP_FRAME_LEN};
use super::guard::{Reply, Verdict};
use super::{shard_of, AckWatch, Conn, Link, Stack};
use crate::transport::Counters;

/// MSS values a cookie can carry (Linux's table).
pub const COOKIE_MSS: [u16; 4] = [536, 1300, 1440, 1460];

/// log2 of a cookie time slot in ns (about 69 s).
const SLOT_SHIFT: u32 = 36;

const MAC_BITS: u32 = 23;
const MAC_MASK: u32 = (1 << MAC_BITS) - 1;

/// The options of a SYN a cookie carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynOpts {
    /// The peer's MSS, rounded down to [`COOKIE_MSS`].
    pub mss: u16,
    /// The peer's window scale (RFC 7323), if it offered one.
    pub ws: Option<u8>,
    pub sack: bool,
}

impl SynOpts {
    /// What a cookie keeps of a SYN's options.
    pub fn of_syn(mss: Option<u16>, ws: Option<u8>, sack: bool) -> SynOpts {
        let mss = mss.unwrap_or(536);
        let i = COOKIE_MSS.iter().rposition(|&m| m <= mss).unwrap_or(0);
        SynOpts { mss: COOKIE_MSS[i], ws: ws.map(|w| w.min(14)), sack }
    }

    fn bits(self) -> u32 {
        let i = COOKIE_MSS.iter().position(|&m| m == self.mss).unwrap_or(0) as u32;
        i | (u32::from(self.ws.unwrap_or(15)) << 2) | (u32::from(self.sack) << 6)
    }

    fn from_bits(b: u32) -> Option<SynOpts> {
        let ws = ((b >> 2) & 15) as u8;
        if ws != 15 && ws > 14 {
            return None;
        }
        Some(SynOpts { mss: COOKIE_MSS[(b & 3) as usize], ws: (ws != 15).then_some(ws), sack: b & 64 != 0 })
    }
}

/// Making and checking SYN cookies with a secret key.
pub struct Cookies {
    k0: u64,
    k1: u64,
}

impl Cookies {
    pub fn new(k0: u64, k1: u64) -> Cookies {
        Cookies { k0, k1 }
    }

    /// The keyed hash of a flow, its peer's ISN, a cookie's data bits and
    /// the full time slot counter.
    fn hash(&self, flow: u64, peer_isn: u32, data: u32, slot: u64) -> u64 {
        let mut h = SipHasher24::new_with_keys(self.k0, self.k1);
        h.write_u64(flow);
        h.write_u32(peer_isn);
        h.write_u32(data);
        h.write_u64(slot);
        h.finish()
    }

    /// The whitening of flow `flow`: cookies of different flows share no
    /// visible structure.
    fn white(&self, flow: u64, peer_isn: u32) -> u32 {
        (self.hash(flow, peer_isn, u32::MAX, u64::MAX) >> 32) as u32
    }

    /// The cookie (our ISN) for a SYN of flow `flow` with ISN `peer_isn`
    /// and options `o`, at `now` (ns).
    pub fn make(&self, flow: u64, peer_isn: u32, o: SynOpts, now: u64) -> u32 {
        let slot = now >> SLOT_SHIFT;
        let data = (slot as u32 & 3) << 7 | o.bits();
        let mac = self.hash(flow, peer_isn, data, slot) as u32 & MAC_MASK;
        ((data << MAC_BITS) | mac).wrapping_add(self.white(flow, peer_isn))
    }

    /// The options of `cookie` if it is one this key made for flow `flow`
    /// and peer ISN `peer_isn`, in the time slot of `now` or the one before.
    /// The cookie carries only the slot's low 2 bits: the full counter is
    /// the current slot or the previous one, whichever has those bits, and
    /// the MAC must hold for it.
    pub fn check(&self, flow: u64, peer_isn: u32, cookie: u32, now: u64) -> Option<SynOpts> {
        let raw = cookie.wrapping_sub(self.white(flow, peer_isn));
        let data = raw >> MAC_BITS;
        let cur = now >> SLOT_SHIFT;
        let slot = [cur, cur.wrapping_sub(1)].into_iter().find(|s| (*s as u32 & 3) == data >> 7)?;
        if self.hash(flow, peer_isn, data, slot) as u32 & MAC_MASK != raw & MAC_MASK {
            return None;
        }
        SynOpts::from_bits(data & 127)
    }
}

/// Counters of the front door.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DoorStats {
    /// SYNs for a listening port, answered with a cookie.
    pub syn_received: u64,
    /// Connections opened by a valid cookie.
    pub cookies_accepted: u64,
    /// ACKs for an unknown 4-tuple whose cookie did not hold: answered
    /// with a RST.
    pub cookies_invalid: u64,
    /// Cookies that held but whose replay smoltcp did not answer as
    /// expected (none, in every test): the peer is reset.
    pub replay_failed: u64,
    /// SYNs from a source at the gate (its failed logons made it wait):
    /// answered with a RST, no cookie made.
    pub gated: u64,
}

/// The window scale smoltcp gives a socket with `rx_cap` bytes of receive
/// buffer (and which the cookie's SYN-ACK must therefore announce).
pub fn win_shift(rx_cap: usize) -> u8 {
    let log2 = usize::BITS - rx_cap.leading_zeros();
    log2.saturating_sub(16) as u8
}

/// The front door's state: the key, the replay device, counters.
pub(super) struct Door {
    pub cookies: Cookies,
    pub replay: Replay,
    /// Listening ports.
    pub ports: Vec<u16>,
    /// A private socket set for replays (one socket at a time).
    pub nursery: smoltcp::iface::SocketSet<'static>,
    /// When recent SYN-ACKs left, for the handshake's RTT sample: (flow,
    /// ns), direct-mapped by flow, [`SENT_SLOTS`] entries; a flood
    /// overwrites them (then the connection starts without a sample).
    sent: Vec<(u64, u64)>,
    pub stats: DoorStats,
}

/// Entries of the SYN-ACK time table (a power of two): 64 KiB.
pub const SENT_SLOTS: usize = 4096;

fn sent_slot(flow: u64) -> usize {
    (flow.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SENT_SLOTS.trailing_zeros())) as usize
}

impl Door {
    pub fn new(k0: u64, k1: u64, mtu: usize) -> Door {
        Door {
            cookies: Cookies::new(k0, k1),
            replay: Replay::new(mtu),
            ports: Vec::new(),
            nursery: smoltcp::iface::SocketSet::new(Vec::with_capacity(1)),
            sent: vec![(0, 0); SENT_SLOTS],
            stats: DoorStats::default(),
        }
    }

    /// The round trip of flow `flow`'s handshake completing at `now`, if
    /// its SYN-ACK's time is still held (taken: a second ACK gets none).
    fn handshake_rtt(&mut self, flow: u64, now: u64) -> Option<u64> {
        let e = &mut self.sent[sent_slot(flow)];
        let (f, at) = std::mem::take(e);
        (f == flow && at != 0 && at <= now).then(|| now - at)
    }

    pub fn listening(&self, port: u16) -> bool {
        self.ports.contains(&port)
    }

    pub fn counters(&self, out: &mut Counters) {
        let s = &self.stats;
        out.event("syn_received", s.syn_received);
        out.event("syn_cookies_accepted", s.cookies_accepted);
        out.drop("syn_cookies_invalid", s.cookies_invalid);
        out.drop("syn_replay_failed", s.replay_failed);
        out.drop("conn_refused_throttled", s.gated);
    }
}

/// A one-shot device for replays: it hands smoltcp an ARP reply (so the
/// peer's address is in its neighbour cache) and the peer's SYN, and keeps
/// the last frame smoltcp sends. Buffers are sized at start-up.
pub(super) struct Replay {
    arp: Vec<u8>,
    syn: Vec<u8>,
    syn_len: usize,
    /// Frames still to hand over: 2, 1, 0 (ARP first, then the SYN).
    left: u8,
    out: Vec<u8>,
    out_len: usize,
    mtu: usize,
}

impl Replay {
    fn new(mtu: usize) -> Replay {
        Replay {
            arp: vec![0; ARP_FRAME_LEN],
            syn: vec![0; 128],
            syn_len: 0,
            left: 0,
            out: vec![0; mtu],
            out_len: 0,
            mtu,
        }
    }

    /// The SYN-ACK smoltcp sent, if the last frame was one: (ISN, window
    /// scale).
    fn synack(&self) -> Option<(u32, Option<u8>)> {
        let (_, t) = super::frame::tcp_segment(&self.out[..self.out_len])?;
        if !(t.syn() && t.ack()) {
            return None;
        }
        let ws = t.options_summary().ok()?.window_scale;
        Some((t.seq_number().0 as u32, ws))
    }
}

pub(super) struct ReplayRx<'a>(&'a [u8]);

pub(super) struct ReplayTx<'a> {
    out: &'a mut [u8],
    len: &'a mut usize,
}

impl phy::RxToken for ReplayRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for ReplayTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(self.out.len());
        *self.len = len;
        f(&mut self.out[..len])
    }
}

impl Device for Replay {
    type RxToken<'a> = ReplayRx<'a>;
    type TxToken<'a> = ReplayTx<'a>;

    fn receive(&mut self, _ts: Instant) -> Option<(ReplayRx<'_>, ReplayTx<'_>)> {
        let frame = match self.left {
            2 => &self.arp[..],
            1 => &self.syn[..self.syn_len],
            _ => return None,
        };
        self.left -= 1;
        Some((ReplayRx(frame), ReplayTx { out: &mut self.out, len: &mut self.out_len }))
    }

    fn transmit(&mut self, _ts: Instant) -> Option<ReplayTx<'_>> {
        Some(ReplayTx { out: &mut self.out, len: &mut self.out_len })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        super::link::capabilities(self.mtu)
    }
}

/// The segment of a RST answering ACK `k` (RFC 793: its sequence number
/// is the segment's acknowledgment number).
fn rst_for(k: &FrameKey) -> Reply {
    let fin = u32::from(k.flags & super::frame::tcp_flags::FIN != 0);
    Reply::Rst { seq: k.ack, ack: k.seq.wrapping_add(u32::from(k.payload) + fin) }
}

impl<D: Link> Stack<D> {
    /// Answer SYN `k` (for a listening port, of no known flow) with a
    /// cookie. `opts`: its options.
    pub(super) fn door_syn(&mut self, k: &FrameKey, opts: SynOpts) -> Verdict {
        let Some((ip, rp, lp)) = k.tuple else { return Verdict::Drop };
        self.door.stats.syn_received += 1;
        let flow = flow_key(ip, rp, lp);
        let isn = self.door.cookies.make(flow, k.seq, opts, self.now_ns);
        self.door.sent[sent_slot(flow)] = (flow, self.now_ns);
        let rx = self.cfg.sock_rx_buf;
        Verdict::Answer(Reply::SynAck {
            seq: isn,
            ack: k.seq.wrapping_add(1),
            window: rx.min(usize::from(u16::MAX)) as u16,
            mss: self.mss(),
            ws: opts.ws.map(|_| win_shift(rx)),
            sack: opts.sack,
        })
    }

    /// Is the source of `tuple` (a SYN's, or a cookie's ACK's) at the
    /// gate? Counted if so.
    pub(super) fn gated(&mut self, tuple: Option<(u32, u16, u16)>) -> bool {
        let (Some(g), Some((ip, ..))) = (self.cfg.gate.as_ref(), tuple) else { return false };
        let shut = g.refuses(std::net::IpAddr::V4(Ipv4Addr::from(ip)), self.now_ns);
        self.door.stats.gated += u64::from(shut);
        shut
    }

    /// Our MSS: the link's MTU less the Ethernet, IPv4 and TCP headers (as
    /// smoltcp announces it).
    fn mss(&self) -> u16 {
        (self.door.replay.mtu - 14 - 20 - 20).min(usize::from(u16::MAX)) as u16
    }

    /// ACK `k` arrived from `mac` for a listening port and no known flow:
    /// if it carries a valid cookie, open the connection and return the
    /// offset from smoltcp's sequence space to the wire's (the frame then
    /// goes to smoltcp, shifted) and the connection's socket; otherwise
    /// what to answer.
    pub(super) fn door_ack(&mut self, k: &FrameKey, mac: [u8; 6]) -> Result<(u32, SocketHandle), Verdict> {
        let Some((ip, rp, lp)) = k.tuple else { return Err(Verdict::Drop) };
        let flow = flow_key(ip, rp, lp);
        let peer_isn = k.seq.wrapping_sub(1);
        let cookie = k.ack.wrapping_sub(1);
        let Some(opts) = self.door.cookies.check(flow, peer_isn, cookie, self.now_ns) else {
            self.door.stats.cookies_invalid += 1;
            return Err(Verdict::Answer(rst_for(k)));
        };
        if self.established() >= self.cfg.max_conns || !self.guard.has_room() {
            self.note_refused();
            return Err(Verdict::Answer(rst_for(k)));
        }
        // A cookie earned before the source was gated opens nothing after.
        if self.gated(k.tuple) {
            return Err(Verdict::Answer(rst_for(k)));
        }
        // A fresh (or spare) socket replays the SYN on the private set.
        let mut s = self.make_socket();
        if s.listen(lp).is_err() {
            self.free_socket(smoltcp::socket::Socket::Tcp(s));
            self.door.stats.replay_failed += 1;
            return Err(Verdict::Answer(rst_for(k)));
        }
        let h: SocketHandle = self.door.nursery.add(s);
        let own = (self.cfg.mac, self.cfg.ip);
        let r = &mut self.door.replay;
        emit_arp(&mut r.arp, ArpOperation::Reply, mac, Ipv4Addr::from(ip), own.0, own.1);
        let syn = TcpRepr {
            src_port: rp,
            dst_port: lp,
            control: TcpControl::Syn,
            seq_number: TcpSeqNumber(peer_isn as i32),
            ack_number: None,
            window_len: k.window,
            window_scale: opts.ws,
            max_seg_size: Some(opts.mss),
            sack_permitted: opts.sack,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        r.syn_len = tcp_frame_len(&syn);
        emit_tcp(&mut r.syn[..r.syn_len], mac, own.0, Ipv4Addr::from(ip), own.1, &syn);
        r.left = 2;
        r.out_len = 0;
        let now = self.now;
        let _ = self.iface.poll_ingress_single(now, &mut self.door.replay, &mut self.door.nursery);
        let _ = self.iface.poll_ingress_single(now, &mut self.door.replay, &mut self.door.nursery);
        let _ = self.iface.poll_egress(now, &mut self.door.replay, &mut self.door.nursery);
        let got = self.door.replay.synack();
        let s = self.door.nursery.remove(h);
        let expect_ws = opts.ws.map(|_| win_shift(self.cfg.sock_rx_buf));
        let smol_isn = match got {
            Some((isn, ws)) if ws == expect_ws => isn,
            _ => {
                self.free_socket(s);
                self.door.stats.replay_failed += 1;
                return Err(Verdict::Answer(rst_for(k)));
            }
        };
        let off = cookie.wrapping_sub(smol_isn);
        let shard = shard_of(ip, rp, lp);
        let handle = self.shard_add(shard, s);
        let window = self.cfg.sock_rx_buf.min(usize::from(u16::MAX)) as u16;
        self.guard.adopt(flow, cookie, k.seq, off, window, mac, handle);
        let rtt = self.door.handshake_rtt(flow, self.now_ns);
        self.rec.adopt(flow, cookie, rtt, self.now_ns);
        let id = self.conns.insert(Conn {
            shard,
            handle,
            reported: false,
            failed: false,
            active_open: false,
            eof_reported: false,
            want_write: false,
            flow,
            local_port: 0,
            ack: AckWatch::default(),
        });
        self.shards[shard].conns.push(id);
        self.door.stats.cookies_accepted += 1;
        Ok((off, handle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 5 << SLOT_SHIFT;

    fn opts() -> SynOpts {
        SynOpts::of_syn(Some(1460), Some(7), true)
    }

    #[test]
    fn a_cookie_checks_for_its_flow_and_isn_only() {
        let c = Cookies::new(1, 2);
        let k = c.make(42, 1000, opts(), NOW);
        assert_eq!(c.check(42, 1000, k, NOW), Some(opts()));
        assert_eq!(c.check(43, 1000, k, NOW), None, "another flow");
        assert_eq!(c.check(42, 1001, k, NOW), None, "another peer ISN");
        assert_eq!(Cookies::new(1, 3).check(42, 1000, k, NOW), None, "another key");
        let flips = (0..32).filter(|b| c.check(42, 1000, k ^ (1 << b), NOW).is_some()).count();
        assert_eq!(flips, 0, "a one-bit change passed");
    }

    #[test]
    fn a_cookie_lasts_its_slot_and_the_next() {
        let c = Cookies::new(7, 8);
        let k = c.make(1, 2, opts(), NOW);
        let slot = 1u64 << SLOT_SHIFT;
        assert!(c.check(1, 2, k, NOW + slot - 1).is_some());
        assert!(c.check(1, 2, k, NOW + slot).is_some(), "the next slot");
        assert!(c.check(1, 2, k, NOW + 2 * slot).is_none(), "two slots on");
        assert!(c.check(1, 2, k, NOW + 4 * slot).is_none(), "four slots on: the 2 bits it carries match again");
        assert!(c.check(1, 2, k, NOW - 1).is_none(), "before it was made");
    }

    /// A captured cookie must not come back to life when the 2-bit slot
    /// the cookie carries comes round again (4 slots, about 275 s, on), nor
    /// ever after: the MAC covers the full slot counter.
    #[test]
    fn a_cookie_never_holds_again_in_a_later_slot() {
        let c = Cookies::new(7, 8);
        let slot = 1u64 << SLOT_SHIFT;
        for made_at in [NOW, NOW + slot / 2, NOW + slot - 1] {
            for flow in 0..64u64 {
                let k = c.make(flow, 2, opts(), made_at);
                assert!(c.check(flow, 2, k, made_at).is_some());
                for later in [2u64, 3, 4, 5, 8, 9, 100, 101, 1 << 20] {
                    for within in [0, slot / 2, slot - 1] {
                        let at = (made_at & !(slot - 1)) + later * slot + within;
                        assert!(c.check(flow, 2, k, at).is_none(), "flow {flow}: {later} slots later");
                    }
                }
            }
        }
    }

    #[test]
    fn options_round_trip_rounded_down() {
        let c = Cookies::new(3, 4);
        for (mss, ws, sack, want) in [
            (Some(1460), Some(7), true, (1460, Some(7))),
            (Some(1400), None, false, (1300, None)),
            (None, Some(14), true, (536, Some(14))),
            (Some(9000), Some(20), false, (1460, Some(14))),
            (Some(100), Some(0), false, (536, Some(0))),
        ] {
            let o = SynOpts::of_syn(mss, ws, sack);
            assert_eq!((o.mss, o.ws, o.sack), (want.0, want.1, sack));
            let k = c.make(9, 9, o, NOW);
            assert_eq!(c.check(9, 9, k, NOW), Some(o));
        }
    }

    #[test]
    fn blind_guesses_rarely_pass() {
        let c = Cookies::new(11, 12);
        let passed = (0..200_000u32).filter(|&g| c.check(5, 6, g.wrapping_mul(2_654_435_761), NOW).is_some()).count();
        // 2 slots of 2^9 data values with 2^23 MACs: about 1 in 2^22 per guess.
        assert!(passed <= 2, "{passed} of 200000 random guesses passed");
    }

    #[test]
    fn win_shift_matches_smoltcp() {
        assert_eq!(win_shift(65535), 0);
        assert_eq!(win_shift(65536), 1);
        assert_eq!(win_shift(1 << 20), 5);
    }
}
