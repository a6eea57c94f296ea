//! `--app tcp-floor`: the floor for TCP. A stateless TCP echo straight from
//! the AF_XDP rings, on the xdp backend's frame loop like `udp-echo`, so a
//! benchmark can split the xdp gateway's distance from the UDP floor into
//! what TCP costs on the lab (the client's kernel TCP, the longer header)
//! and what our stack adds.
//!
//! It is not a TCP implementation and keeps no state at all:
//! * a SYN to its port gets a SYN-ACK (no options: no window scaling, SACK
//!   or timestamps are agreed, so the peer sends none), its sequence number
//!   derived from the SYN's;
//! * a segment with data is echoed: sequence number = the segment's
//!   acknowledgment (in a ping-pong the peer has acknowledged everything
//!   echoed before), acknowledgment = the segment's sequence number plus
//!   its length, sockperf's client flag cleared as `udp-echo` does;
//! * a FIN gets a FIN-ACK; a bare ACK, a RST and anything else get nothing.
//!
//! So nothing is retransmitted: a lost segment stalls its connection. It
//! serves `sockperf ping-pong --tcp` on the lab and nothing else.

use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Address, Ipv4Packet};
use smoltcp::wire::{TcpPacket, TcpSeqNumber};

use super::udp_echo::answer_arp;
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
/// Our initial sequence number is the peer's, mixed with this: stateless,
/// and the FIN-ACK and echoes need only the peer's acknowledgment.
const ISN_MIX: u32 = 0x5f3c_9a71;
const ETH: usize = 14;
/// sockperf's header and the byte of its client flag, as in `udp_echo`.
const SOCKPERF_HEADER: usize = 14;
const SOCKPERF_FLAGS_LO: usize = 9;

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
        let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
        let peer_mac = eth.src_addr();
        let mut ip = Ipv4Packet::new_checked(eth.payload_mut()).ok()?;
        let ip_hl = ip.header_len() as usize;
        if ip.version() != 4 || ip.next_header() != IpProtocol::Tcp || ip.dst_addr() != self.ip || ip_hl != 20 {
            return None;
        }
        if ip.more_frags() || ip.frag_offset() != 0 {
            return None;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let mut tcp = TcpPacket::new_checked(ip.payload_mut()).ok()?;
        if tcp.dst_port() != self.port || tcp.rst() {
            return None;
        }
        let hl = tcp.header_len() as usize;
        let data = tcp.payload_mut().len();
        let (seq, ack) = (tcp.seq_number(), tcp.ack_number());
        let (syn, fin, has_ack) = (tcp.syn(), tcp.fin(), tcp.ack());
        let (our_seq, their_next, answer_data) = if syn && !has_ack {
            self.stats.syns += 1;
            (TcpSeqNumber((seq.0 as u32 ^ ISN_MIX) as i32), seq + 1, 0)
        } else if has_ack && !syn && (data > 0 || fin) {
            if data > 0 {
                self.stats.echoed += 1;
            }
            if fin {
                self.stats.fins += 1;
            }
            (ack, seq + data + fin as usize, data)
        } else {
            return None;
        };
        // The answer's header has no options: the data moves up over them.
        let buf = tcp.into_inner();
        buf.copy_within(hl..hl + answer_data, 20);
        let payload = &mut buf[20..20 + answer_data];
        if payload.len() >= SOCKPERF_HEADER {
            payload[SOCKPERF_FLAGS_LO] &= !1;
        }
        let mut tcp = TcpPacket::new_unchecked(&mut buf[..20 + answer_data]);
        let (sport, dport) = (tcp.src_port(), tcp.dst_port());
        tcp.set_src_port(dport);
        tcp.set_dst_port(sport);
        tcp.set_seq_number(our_seq);
        tcp.set_ack_number(their_next);
        tcp.set_header_len(20);
        tcp.clear_flags();
        tcp.set_ack(true);
        tcp.set_syn(syn);
        tcp.set_fin(fin);
        tcp.set_psh(answer_data > 0);
        tcp.set_window_len(WINDOW);
        tcp.set_urgent_at(0);
        tcp.fill_checksum(&IpAddress::Ipv4(dst), &IpAddress::Ipv4(src));
        let ip_len = 20 + 20 + answer_data;
        let mut ip = Ipv4Packet::new_unchecked(&mut eth.payload_mut()[..ip_len]);
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_total_len(ip_len as u16);
        ip.set_hop_limit(64);
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
    use smoltcp::wire::{EthernetRepr, Ipv4Repr, TcpControl, TcpRepr};

    const IP: Ipv4Address = Ipv4Address::new(198, 18, 0, 1);
    const PEER: Ipv4Address = Ipv4Address::new(198, 18, 0, 2);
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

    /// A segment from the peer to `dport`, with a timestamp-sized option
    /// block when `options` (as a kernel's SYN carries).
    fn segment(control: TcpControl, seq: u32, ack: Option<u32>, payload: &[u8], dport: u16) -> Vec<u8> {
        let mut tcp = TcpRepr {
            src_port: 40000,
            dst_port: dport,
            control,
            seq_number: TcpSeqNumber(seq as i32),
            ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: 512,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        if control == TcpControl::Syn {
            tcp.max_seg_size = Some(1460);
            tcp.window_scale = Some(7);
            tcp.sack_permitted = true;
        }
        let ip = Ipv4Repr {
            src_addr: PEER,
            dst_addr: IP,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
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
        tcp.emit(&mut TcpPacket::new_unchecked(p.payload_mut()), &IpAddress::Ipv4(PEER), &IpAddress::Ipv4(IP), &caps);
        buf
    }

    /// The answer, parsed back with its checksums verified.
    fn parse(f: &[u8]) -> (TcpControl, u32, u32, Vec<u8>) {
        assert!(crate::stack::frame::checksums_ok(f), "checksums valid");
        assert_eq!(&f[0..6], &PEER_MAC);
        let ip = Ipv4Packet::new_checked(&f[ETH..]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (IP, PEER));
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((t.src_port(), t.dst_port()), (7777, 40000));
        let r =
            TcpRepr::parse(&t, &IpAddress::Ipv4(IP), &IpAddress::Ipv4(PEER), &ChecksumCapabilities::default()).unwrap();
        assert_eq!(r.window_scale, None, "no options");
        assert_eq!(r.timestamp, None);
        (r.control, r.seq_number.0 as u32, r.ack_number.unwrap().0 as u32, r.payload.to_vec())
    }

    #[test]
    fn a_syn_gets_a_syn_ack_without_options() {
        let mut fl = TcpFloor::new(IP, MAC, 7777);
        let mut f = segment(TcpControl::Syn, 1000, None, &[], 7777);
        let n = fl.reply_in_place(&mut f).expect("answered");
        assert_eq!(n, ETH + 40, "options stripped");
        let (c, seq, ack, data) = parse(&f[..n]);
        assert_eq!(c, TcpControl::Syn);
        assert_eq!(ack, 1001);
        assert_eq!(seq, 1000 ^ ISN_MIX);
        assert!(data.is_empty());
        assert_eq!(fl.stats.syns, 1);
    }

    #[test]
    fn data_is_echoed_at_the_peers_acknowledgment_with_the_client_flag_cleared() {
        let mut fl = TcpFloor::new(IP, MAC, 7777);
        let mut msg = vec![0u8; 64];
        msg[9] = 0x03;
        msg[63] = 0xaa;
        let mut f = segment(TcpControl::Psh, 5000, Some(9000), &msg, 7777);
        let n = fl.reply_in_place(&mut f).expect("echoed");
        let (c, seq, ack, data) = parse(&f[..n]);
        assert_eq!(c, TcpControl::Psh);
        assert_eq!((seq, ack), (9000, 5064));
        assert_eq!(data.len(), 64);
        assert_eq!(data[9], 0x02, "client flag cleared");
        assert_eq!(data[63], 0xaa);
        assert_eq!(fl.stats.echoed, 1);
    }

    #[test]
    fn a_fin_gets_a_fin_ack_and_bare_acks_rsts_and_strangers_nothing() {
        let mut fl = TcpFloor::new(IP, MAC, 7777);
        let mut f = segment(TcpControl::Fin, 5000, Some(9000), &[], 7777);
        let n = fl.reply_in_place(&mut f).expect("FIN answered");
        let (c, seq, ack, _) = parse(&f[..n]);
        assert_eq!((c, seq, ack), (TcpControl::Fin, 9000, 5001));
        assert!(fl.reply_in_place(&mut segment(TcpControl::None, 5001, Some(9001), &[], 7777)).is_none());
        assert!(fl.reply_in_place(&mut segment(TcpControl::Rst, 5001, Some(9001), &[], 7777)).is_none());
        assert!(fl.reply_in_place(&mut segment(TcpControl::Psh, 1, Some(1), b"x", 7778)).is_none());
        let mut bad_len = segment(TcpControl::Psh, 1, Some(1), b"xyz", 7777);
        bad_len[ETH + 2..ETH + 4].copy_from_slice(&2000u16.to_be_bytes());
        assert!(fl.reply_in_place(&mut bad_len).is_none());
        for n in 0..ETH + 40 {
            let mut short = segment(TcpControl::Psh, 1, Some(1), b"xyz", 7777);
            short.truncate(n);
            assert!(fl.reply_in_place(&mut short).is_none(), "len {n}");
        }
        assert_eq!(fl.stats.unanswered, 4 + (ETH + 40) as u64);
        assert_eq!(fl.stats.fins, 1);
    }
}
