//! `--app udp-echo`: UDP echo straight from the AF_XDP rings, no TCP and no
//! smoltcp. It is the floor: the cost of AF_XDP itself on this machine, so
//! the benchmarks can show the stack's own cost above it. It runs on the
//! xdp backend's frame loop (`backend::xdp::frames`).
//!
//! It answers ARP for its address, echoes every UDP datagram sent to its
//! port back to the sender with addresses and ports swapped (which leaves
//! both checksums valid), and clears sockperf's client flag (bit 0x0001 of
//! the u16 at payload offset 8) so `sockperf ping-pong` (UDP) can measure
//! it; the UDP checksum is then recomputed. Everything else is dropped and
//! counted. Frames are read through smoltcp's checked wire views.

use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, UdpPacket,
};

use super::floor::{answer_arp, clear_sockperf_client_flag, floor_may_answer};
use crate::backend::xdp::frames::FrameHandler;

/// Counters, printed at exit.
#[derive(Debug, Default, Clone, Copy)]
pub struct UdpEchoStats {
    pub echoed: u64,
    pub arp_replies: u64,
    pub dropped: u64,
}

/// The echo: our address, hardware address and port.
#[derive(Debug)]
pub struct UdpEcho {
    pub ip: Ipv4Address,
    pub mac: [u8; 6],
    pub port: u16,
    pub stats: UdpEchoStats,
}

impl UdpEcho {
    pub fn new(ip: Ipv4Address, mac: [u8; 6], port: u16) -> Self {
        UdpEcho { ip, mac, port, stats: UdpEchoStats::default() }
    }

    /// Turn the frame in `buf` into its reply in place. Returns false to drop.
    pub fn reply_in_place(&mut self, buf: &mut [u8]) -> bool {
        let ok = match EthernetFrame::new_checked(&buf[..]).map(|e| e.ethertype()) {
            Ok(EthernetProtocol::Arp) => {
                let ok = answer_arp(buf, self.ip, self.mac);
                self.stats.arp_replies += ok as u64;
                ok
            }
            Ok(EthernetProtocol::Ipv4) => self.udp(buf),
            _ => false,
        };
        if !ok {
            self.stats.dropped += 1;
        }
        ok
    }

    /// A datagram to our port goes back where it came from.
    fn udp(&mut self, buf: &mut [u8]) -> bool {
        if !floor_may_answer(buf, self.ip, self.port) {
            return false;
        }
        let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
        let peer_mac = eth.src_addr();
        let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) else { return false };
        if ip.version() != 4 || ip.next_header() != IpProtocol::Udp || ip.dst_addr() != self.ip {
            return false;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let Ok(mut udp) = UdpPacket::new_checked(ip.payload_mut()) else { return false };
        if udp.dst_port() != self.port {
            return false;
        }
        let (sport, dport) = (udp.src_port(), udp.dst_port());
        udp.set_src_port(dport);
        udp.set_dst_port(sport);
        if clear_sockperf_client_flag(udp.payload_mut()) {
            udp.fill_checksum(&IpAddress::Ipv4(dst), &IpAddress::Ipv4(src));
        }
        // Swapping addresses and ports leaves both checksums valid.
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        eth.set_dst_addr(peer_mac);
        eth.set_src_addr(EthernetAddress(self.mac));
        self.stats.echoed += 1;
        true
    }
}

impl FrameHandler for UdpEcho {
    fn reply(&mut self, frame: &mut [u8]) -> Option<usize> {
        self.reply_in_place(frame).then_some(frame.len())
    }

    fn summary(&self) -> String {
        format!(
            "udp-echo: echoed={} arp_replies={} dropped={}",
            self.stats.echoed, self.stats.arp_replies, self.stats.dropped
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetRepr, Ipv4Repr, UdpRepr};

    const IP: Ipv4Address = Ipv4Address::new(198, 18, 0, 1);
    const PEER: Ipv4Address = Ipv4Address::new(198, 18, 0, 2);
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn udp_frame(payload: &[u8], dport: u16) -> Vec<u8> {
        udp_frame_from(PEER, 5555, payload, dport)
    }

    fn udp_frame_from(src: Ipv4Address, sport: u16, payload: &[u8], dport: u16) -> Vec<u8> {
        let udp = UdpRepr { src_port: sport, dst_port: dport };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: IP,
            next_header: IpProtocol::Udp,
            payload_len: udp.header_len() + payload.len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress(PEER_MAC),
            dst_addr: EthernetAddress(MAC),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut buf = vec![0u8; 14 + 20 + 8 + payload.len()];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut f);
        let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
        ip.emit(&mut p, &ChecksumCapabilities::default());
        let mut u = UdpPacket::new_unchecked(p.payload_mut());
        udp.emit(
            &mut u,
            &IpAddress::Ipv4(src),
            &IpAddress::Ipv4(IP),
            payload.len(),
            |b| b.copy_from_slice(payload),
            &ChecksumCapabilities::default(),
        );
        buf
    }

    fn checksums_ok(f: &[u8]) -> bool {
        crate::stack::frame::checksums_ok(f)
    }

    #[test]
    fn echoes_udp_and_clears_the_sockperf_flag() {
        let mut payload = vec![0u8; 64];
        payload[9] = 0x03;
        let mut f = udp_frame(&payload, 7777);
        assert!(checksums_ok(&f));
        let mut e = UdpEcho::new(IP, MAC, 7777);
        assert!(e.reply_in_place(&mut f));
        assert_eq!(&f[0..6], &PEER_MAC);
        assert_eq!(&f[26..30], &IP.octets(), "source is now us");
        assert_eq!(&f[30..34], &PEER.octets());
        assert_eq!(u16::from_be_bytes([f[34], f[35]]), 7777);
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 5555);
        assert_eq!(f[42 + 9], 0x02, "client flag cleared");
        assert!(checksums_ok(&f), "checksums valid after the echo");
        assert_eq!(e.stats.echoed, 1);
    }

    #[test]
    fn drops_other_ports_garbage_and_short_frames() {
        let mut e = UdpEcho::new(IP, MAC, 7777);
        let mut f = udp_frame(&[1, 2, 3], 9999);
        assert!(!e.reply_in_place(&mut f));
        let mut f = udp_frame(&[1, 2, 3], 7777);
        f[16..18].copy_from_slice(&1000u16.to_be_bytes()); // total length beyond the frame
        assert!(!e.reply_in_place(&mut f));
        for n in 0..40 {
            let mut short = udp_frame(&[0; 8], 7777);
            short.truncate(n);
            assert!(!e.reply_in_place(&mut short), "len {n}");
        }
        assert_eq!(e.stats.dropped, 42);
    }

    #[test]
    fn answers_no_sender_but_one_unicast_host_other_than_itself_and_no_bad_checksum() {
        let mut e = UdpEcho::new(IP, MAC, 7777);
        let mut bad_sum = udp_frame(b"floor", 7777);
        *bad_sum.last_mut().unwrap() ^= 1;
        assert!(!e.reply_in_place(&mut bad_sum), "a bad checksum");
        assert!(!e.reply_in_place(&mut udp_frame_from(IP, 5555, b"floor", 7777)), "our own address");
        assert!(!e.reply_in_place(&mut udp_frame_from(PEER, 7777, b"floor", 7777)), "our own port: another floor");
        let mcast = Ipv4Address::new(224, 0, 0, 1);
        assert!(!e.reply_in_place(&mut udp_frame_from(mcast, 5555, b"floor", 7777)), "a multicast source");
        let mut group_mac = udp_frame(b"floor", 7777);
        group_mac[6] |= 1;
        assert!(!e.reply_in_place(&mut group_mac), "a group source MAC");
        assert!(e.reply_in_place(&mut udp_frame(b"floor", 7777)), "the one good datagram");
        assert_eq!((e.stats.dropped, e.stats.echoed), (5, 1));
    }

    #[test]
    fn answers_arp_for_its_address_only() {
        let req = |target: Ipv4Address| {
            let arp = ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                source_hardware_addr: EthernetAddress(PEER_MAC),
                source_protocol_addr: PEER,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: target,
            };
            let eth = EthernetRepr {
                src_addr: EthernetAddress(PEER_MAC),
                dst_addr: EthernetAddress([0xff; 6]),
                ethertype: EthernetProtocol::Arp,
            };
            let mut buf = vec![0u8; 14 + arp.buffer_len()];
            let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
            eth.emit(&mut f);
            arp.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
            buf
        };
        let mut e = UdpEcho::new(IP, MAC, 7777);
        assert!(!e.reply_in_place(&mut req(Ipv4Address::new(198, 18, 0, 9))));
        let mut f = req(IP);
        assert!(e.reply_in_place(&mut f));
        assert_eq!(&f[0..6], &PEER_MAC);
        assert_eq!(f[21], 2, "ARP reply");
        assert_eq!(&f[22..28], &MAC);
        assert_eq!(&f[28..32], &IP.octets());
        assert_eq!(&f[32..38], &PEER_MAC);
        assert_eq!(e.stats.arp_replies, 1);
        let mut from_group = req(IP);
        from_group[6] |= 1;
        assert!(!e.reply_in_place(&mut from_group), "a request from a group address is not answered");
    }
}
