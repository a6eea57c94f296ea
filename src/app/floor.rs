//! What the frame floors (`udp_echo`, `tcp_floor`) share: the ARP answer,
//! the check on whom they may answer, and sockperf's client flag.

use smoltcp::wire::{
    ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol, Ipv4Address, Ipv4Packet,
};

/// An ARP request (oper 1) for `ip` becomes its reply in place, from `mac`.
/// False for anything else, and for a request from a group (broadcast or
/// multicast) hardware address, whose reply would go to the whole segment.
pub fn answer_arp(buf: &mut [u8], ip: Ipv4Address, mac: [u8; 6]) -> bool {
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    if !eth.src_addr().is_unicast() {
        return false;
    }
    let Ok(mut a) = ArpPacket::new_checked(eth.payload_mut()) else { return false };
    if a.operation() != ArpOperation::Request
        || a.protocol_type() != EthernetProtocol::Ipv4
        || a.hardware_len() != 6
        || a.protocol_len() != 4
        || a.target_protocol_addr() != ip.octets()
    {
        return false;
    }
    let sha = EthernetAddress::from_bytes(a.source_hardware_addr());
    let mut spa = [0u8; 4];
    spa.copy_from_slice(a.source_protocol_addr());
    if !sha.is_unicast() {
        return false;
    }
    a.set_operation(ArpOperation::Reply);
    a.set_target_hardware_addr(sha.as_bytes());
    a.set_target_protocol_addr(&spa);
    a.set_source_hardware_addr(&mac);
    a.set_source_protocol_addr(&ip.octets());
    eth.set_dst_addr(sha);
    eth.set_src_addr(EthernetAddress(mac));
    true
}

/// May a floor answer this IPv4 frame's sender? Its checksums must hold (as
/// the stack requires, `stack::frame::classify`), and the sender must be one
/// unicast host that is not us nor on our own port (the source port is the
/// first field of TCP and UDP alike): no answer to a broadcast or multicast
/// source, to a forged frame from our own address, or to another floor's
/// port (two floors would answer each other forever).
pub fn floor_may_answer(frame: &[u8], our_ip: Ipv4Address, our_port: u16) -> bool {
    let eth = EthernetFrame::new_unchecked(frame);
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else { return false };
    let src = ip.src_addr();
    let Some(sport) = ip.payload().get(..2).map(|p| u16::from_be_bytes([p[0], p[1]])) else { return false };
    eth.src_addr().is_unicast()
        && src != our_ip
        && !(src.is_multicast() || src.is_broadcast() || src.is_unspecified() || src.is_loopback())
        && sport != our_port
        && crate::stack::frame::checksums_ok(frame)
}

/// sockperf's header in the payload: the flags u16 at offset 8, and its
/// client bit.
const SOCKPERF_HEADER: usize = 14;
const SOCKPERF_FLAGS_LO: usize = 9;

/// Clear sockperf's client flag in a message that starts at `payload`'s
/// first byte, as its own server does; true if it was set.
pub fn clear_sockperf_client_flag(payload: &mut [u8]) -> bool {
    let set = payload.len() >= SOCKPERF_HEADER && payload[SOCKPERF_FLAGS_LO] & 1 != 0;
    if set {
        payload[SOCKPERF_FLAGS_LO] &= !1;
    }
    set
}
