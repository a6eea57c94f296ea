//! `--app tcp-floor`: the floor for TCP. A stateless TCP echo straight from
//! the AF_XDP rings, on the xdp backend's frame loop like `udp-echo`, so a
//! benchmark can split the xdp gateway's distance from the UDP floor into
//! what TCP costs on the lab (the client's kernel TCP, the longer header)
//! and what our stack adds.
//!
//! It is not a TCP implementation and keeps no state at all:
//! * a SYN to its port gets a SYN-ACK whose sequence number is the SYN's
//!   plus a constant, with one option, an MSS of 1460 (no window scaling,
//!   SACK or timestamps are agreed, so the peer sends none);
//! * a segment with data is echoed at its own sequence number plus the
//!   same constant, so our stream mirrors the peer's byte for byte however
//!   it is cut into segments, acknowledging the data; sockperf's client
//!   flag (byte 9 of a segment's data) is cleared as `udp-echo` does;
//! * a FIN gets a FIN-ACK; a bare ACK, a RST, a SYN with a FIN and
//!   anything else get nothing; so do frames with a bad checksum or from a
//!   sender that is not one unicast host other than us
//!   ([`floor_may_answer`]).
//!
//! So nothing is retransmitted: a lost segment stalls its connection. It
//! serves `sockperf ping-pong --tcp` on the lab with messages of at most
//! 1460 bytes (one segment each: the flag is cleared per segment), and
//! nothing else.

use smoltcp::wire::TcpPacket;
use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Address, Ipv4Packet};

use super::floor::{answer_arp, clear_sockperf_client_flag, floor_may_answer};
use crate::backend::xdp::frames::FrameHandler;

/// Counters, printed at exit.
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpFloorStats {
    pub syns: u64,
    pub echoed: u64,
    pub fins: u64,
    pub arp_replies: u64,
    /// Frames given no answer: bare ACKs, RSTs, other ports, garbage.
    pub unanswered: u64,
}

/// The floor: our address, hardware address and port.
#[derive(Debug)]
pub struct TcpFloor {
    pub ip: Ipv4Address,
    pub mac: [u8; 6],
    pub port: u16,
    pub stats: TcpFloorStats,
}

/// The window every answer advertises (no scaling is agreed).
const WINDOW: u16 = 65535;
/// Our sequence number for any byte is the peer's for the same byte plus
/// this: our initial one is the SYN's plus it, and each echo goes at the
/// segment's own sequence number plus it. Stateless.
const SEQ_OFFSET: usize = 0x5f3c_9a71;
/// The MSS the SYN-ACK offers (option kind 2, length 4), when the SYN left
/// room for it: a 1500-byte MTU.
const MSS_OPTION: [u8; 4] = [2, 4, 0x05, 0xb4];
const ETH: usize = 14;

impl TcpFloor {
    pub fn new(ip: Ipv4Address, mac: [u8; 6], port: u16) -> Self {
        TcpFloor { ip, mac, port, stats: TcpFloorStats::default() }
    }

    /// Turn the frame in `buf` into its answer in place: the answer's
    /// length (never more than the frame's), or None for no answer.
    pub fn reply_in_place(&mut self, buf: &mut [u8]) -> Option<usize> {
        let n = match EthernetFrame::new_checked(&buf[..]).map(|e| e.ethertype()) {
            Ok(EthernetProtocol::Arp) => {
                let ok = answer_arp(buf, self.ip, self.mac);
                self.stats.arp_replies += ok as u64;
                ok.then_some(buf.len())
            }
            Ok(EthernetProtocol::Ipv4) => self.tcp(buf),
            _ => None,
        };
        if n.is_none() {
            self.stats.unanswered += 1;
        }
        n
    }

    fn tcp(&mut self, buf: &mut [u8]) -> Option<usize> {
        // What the segment is, read-only first.
        let (hl, data, seq, syn, fin) = {
            let eth = EthernetFrame::new_unchecked(&buf[..]);
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.version() != 4 || ip.next_header() != IpProtocol::Tcp || ip.dst_addr() != self.ip {
                return None;
            }
            if ip.header_len() != 20 || ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
            if tcp.dst_port() != self.port || tcp.rst() {
                return None;
            }
            let data = tcp.payload().len();
            let (syn, fin, ack) = (tcp.syn(), tcp.fin(), tcp.ack());
            let opening = syn && !ack && !fin;
            let echoing = ack && !syn && (data > 0 || fin);
            if !(opening || echoing) || !floor_may_answer(buf, self.ip, self.port) {
                return None;
            }
            (tcp.header_len() as usize, data, tcp.seq_number(), syn, fin)
        };
        // A SYN-ACK carries the MSS option when the SYN left room for it;
        // an echo carries no option, its data moved up over the peer's.
        let (answer_data, thl) = if syn { (0, if hl >= 24 { 24 } else { 20 }) } else { (data, 20) };
        if syn {
            self.stats.syns += 1;
        } else {
            self.stats.echoed += (data > 0) as u64;
            self.stats.fins += fin as u64;
        }
        let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
        let peer_mac = eth.src_addr();
        let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let seg = ip.payload_mut();
        seg.copy_within(hl..hl + answer_data, thl);
        seg[20..thl].copy_from_slice(&MSS_OPTION[..thl - 20]);
        clear_sockperf_client_flag(&mut seg[thl..thl + answer_data]);
        let mut tcp = TcpPacket::new_unchecked(&mut seg[..thl + answer_data]);
        let (sport, dport) = (tcp.src_port(), tcp.dst_port());
        tcp.set_src_port(dport);
        tcp.set_dst_port(sport);
        tcp.set_seq_number(seq + SEQ_OFFSET);
        tcp.set_ack_number(seq + data + (syn || fin) as usize);
        tcp.set_header_len(thl as u8);
        tcp.clear_flags();
        tcp.set_ack(true);
        tcp.set_syn(syn);
        tcp.set_fin(fin);
        tcp.set_psh(answer_data > 0);
        tcp.set_window_len(WINDOW);
        tcp.set_urgent_at(0);
        tcp.fill_checksum(&IpAddress::Ipv4(dst), &IpAddress::Ipv4(src));
        // The TTL stays as it came: a loop through a router dies.
        let ip_len = 20 + thl + answer_data;
        let mut ip = Ipv4Packet::new_unchecked(&mut eth.payload_mut()[..ip_len]);
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_total_len(ip_len as u16);
        ip.fill_checksum();
        eth.set_dst_addr(peer_mac);
        eth.set_src_addr(EthernetAddress(self.mac));
        Some(ETH + ip_len)
    }
}

impl FrameHandler for TcpFloor {
    fn reply(&mut self, frame: &mut [u8]) -> Option<usize> {
        self.reply_in_place(frame)
    }

    fn summary(&self) -> String {
        let s = &self.stats;
        format!(
            "tcp-floor: syns={} echoed={} fins={} arp_replies={} unanswered={}",
            s.syns, s.echoed, s.fins, s.arp_replies, s.unanswered
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{EthernetRepr, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber};

    const IP: Ipv4Address = Ipv4Address::new(198, 18, 0, 1);
    const PEER: Ipv4Address = Ipv4Address::new(198, 18, 0, 2);
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

    /// A segment from PEER:40000 to `dport`; a SYN carries the options a
    /// kernel's does (MSS, window scale, SACK permitted).
    fn segment(control: TcpControl, seq: u32, ack: Option<u32>, payload: &[u8], dport: u16) -> Vec<u8> {
        segment_from(PEER, 40000, control, seq, ack, payload, dport)
    }

    fn segment_from(
        src: Ipv4Address,
        sport: u16,
        control: TcpControl,
        seq: u32,
        ack: Option<u32>,
        payload: &[u8],
        dport: u16,
    ) -> Vec<u8> {
        let syn = control == TcpControl::Syn;
        let tcp = TcpRepr {
            src_port: sport,
            dst_port: dport,
            control,
            seq_number: TcpSeqNumber(seq as i32),
            ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: 512,
            window_scale: syn.then_some(7),
            max_seg_size: syn.then_some(1460),
            sack_permitted: syn,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: IP,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 61,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress(PEER_MAC),
            dst_addr: EthernetAddress(MAC),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut buf = vec![0u8; ETH + 20 + tcp.buffer_len()];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut f);
        let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
        let caps = ChecksumCapabilities::default();
        ip.emit(&mut p, &caps);
        tcp.emit(&mut TcpPacket::new_unchecked(p.payload_mut()), &IpAddress::Ipv4(src), &IpAddress::Ipv4(IP), &caps);
        buf
    }

    /// The answer, parsed back with its checksums verified: control,
    /// sequence and acknowledgment numbers, MSS option, data.
    fn parse(f: &[u8]) -> (TcpControl, u32, u32, Option<u16>, Vec<u8>) {
        assert!(crate::stack::frame::checksums_ok(f), "checksums valid");
        assert_eq!(&f[0..6], &PEER_MAC);
        let ip = Ipv4Packet::new_checked(&f[ETH..]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (IP, PEER));
        assert_eq!(ip.hop_limit(), 61, "the TTL is kept");
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((t.src_port(), t.dst_port()), (7777, 40000));
        let r =
            TcpRepr::parse(&t, &IpAddress::Ipv4(IP), &IpAddress::Ipv4(PEER), &ChecksumCapabilities::default()).unwrap();
        assert_eq!((r.window_scale, r.sack_permitted, r.timestamp), (None, false, None), "no other option");
        (r.control, r.seq_number.0 as u32, r.ack_number.unwrap().0 as u32, r.max_seg_size, r.payload.to_vec())
    }

    const OFF: u32 = SEQ_OFFSET as u32;

    #[test]
    fn a_syn_gets_a_syn_ack_offering_an_mss_and_nothing_else() {
        let mut fl = TcpFloor::new(IP, MAC, 7777);
        let mut f = segment(TcpControl::Syn, 1000, None, &[], 7777);
        let n = fl.reply_in_place(&mut f).expect("answered");
        assert_eq!(n, ETH + 20 + 24, "the peer's options replaced by one MSS");
        let (c, seq, ack, mss, data) = parse(&f[..n]);
        assert_eq!((c, seq, ack, mss), (TcpControl::Syn, 1000u32.wrapping_add(OFF), 1001, Some(1460)));
        assert!(data.is_empty());
        assert_eq!(fl.stats.syns, 1);
    }

    #[test]
    fn data_is_echoed_at_its_own_place_with_the_client_flag_cleared() {
        let mut fl = TcpFloor::new(IP, MAC, 7777);
        let mut msg = vec![0u8; 64];
        msg[9] = 0x03;
        msg[63] = 0xaa;
        let mut f = segment(TcpControl::Psh, 5000, Some(9000), &msg, 7777);
        let n = fl.reply_in_place(&mut f).expect("echoed");
        let (c, seq, ack, mss, data) = parse(&f[..n]);
        assert_eq!((c, seq, ack, mss), (TcpControl::Psh, 5000u32.wrapping_add(OFF), 5064, None));
        assert_eq!(data.len(), 64);
        assert_eq!(data[9], 0x02, "client flag cleared");
        assert_eq!(data[63], 0xaa);
        // Two segments sent back to back (whatever the peer's ACK says) are
        // echoed one after the other, not over each other.
        let mut a = segment(TcpControl::None, 7000, Some(9000), &[1; 8], 7777);
        let mut b = segment(TcpControl::None, 7008, Some(9000), &[2; 8], 7777);
        let (na, nb) = (fl.reply_in_place(&mut a).unwrap(), fl.reply_in_place(&mut b).unwrap());
        let (sa, sb) = (parse(&a[..na]).1, parse(&b[..nb]).1);
        assert_eq!(sb.wrapping_sub(sa), 8);
        assert_eq!(fl.stats.echoed, 3);
    }

    #[test]
    fn a_fin_gets_a_fin_ack_and_bare_acks_rsts_and_strangers_nothing() {
        let mut fl = TcpFloor::new(IP, MAC, 7777);
        let mut f = segment(TcpControl::Fin, 5000, Some(9000), &[], 7777);
        let n = fl.reply_in_place(&mut f).expect("FIN answered");
        let (c, seq, ack, _, _) = parse(&f[..n]);
        assert_eq!((c, seq, ack), (TcpControl::Fin, 5000u32.wrapping_add(OFF), 5001));
        let mut unanswered = 0;
        let mut none = |mut f: Vec<u8>, why: &str| {
            assert!(fl.reply_in_place(&mut f).is_none(), "{why} was answered");
            unanswered += 1;
        };
        none(segment(TcpControl::None, 5001, Some(9001), &[], 7777), "a bare ACK");
        none(segment(TcpControl::Rst, 5001, Some(9001), &[], 7777), "a RST");
        none(segment(TcpControl::Psh, 1, Some(1), b"x", 7778), "another port");
        let mut bad_len = segment(TcpControl::Psh, 1, Some(1), b"xyz", 7777);
        bad_len[ETH + 2..ETH + 4].copy_from_slice(&2000u16.to_be_bytes());
        none(bad_len, "a total length past the frame");
        let mut bad_sum = segment(TcpControl::Psh, 1, Some(1), b"xyz", 7777);
        *bad_sum.last_mut().unwrap() ^= 1;
        none(bad_sum, "a bad TCP checksum");
        let mut syn_fin = segment(TcpControl::Syn, 1, None, &[], 7777);
        syn_fin[ETH + 20 + 13] |= 0x01;
        TcpPacket::new_unchecked(&mut syn_fin[ETH + 20..]).fill_checksum(&IpAddress::Ipv4(PEER), &IpAddress::Ipv4(IP));
        assert!(crate::stack::frame::checksums_ok(&syn_fin));
        none(syn_fin, "a SYN with a FIN");
        none(segment_from(IP, 40000, TcpControl::Psh, 1, Some(1), b"x", 7777), "our own address");
        none(segment_from(PEER, 7777, TcpControl::Psh, 1, Some(1), b"x", 7777), "our own port (another floor)");
        let bcast = Ipv4Address::new(255, 255, 255, 255);
        none(segment_from(bcast, 40000, TcpControl::Psh, 1, Some(1), b"x", 7777), "a broadcast source");
        let mut group_mac = segment(TcpControl::Psh, 1, Some(1), b"x", 7777);
        group_mac[6] |= 1;
        none(group_mac, "a group source MAC");
        for len in 0..ETH + 40 {
            let mut short = segment(TcpControl::Psh, 1, Some(1), b"xyz", 7777);
            short.truncate(len);
            none(short, "a short frame");
        }
        assert_eq!(fl.stats.unanswered, unanswered);
        assert_eq!((fl.stats.fins, fl.stats.syns, fl.stats.echoed), (1, 0, 0));
    }
}
