//! What the stack reads from an untrusted frame before smoltcp sees it,
//! through smoltcp's checked wire views (`new_checked` bounds every field
//! against the buffer): the checksums, and for an IPv4 TCP segment its
//! 4-tuple, flags, sequence number, payload length and window.

use std::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet,
    IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr, UdpPacket,
};

/// What the stack needs to know about a frame before smoltcp sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameKey {
    /// `(remote address, remote port, local port)` of an IPv4 TCP segment
    /// (first fragment or unfragmented); `None` for anything else.
    pub tuple: Option<(u32, u16, u16)>,
    /// A SYN without ACK: a new inbound connection.
    pub syn: bool,
    /// The TCP flags byte (0 when `tuple` is `None`).
    pub flags: u8,
    /// Checksums hold (see [`checksums_ok`]); smoltcp does not check again.
    pub valid: bool,
    /// TCP sequence number, payload length and advertised window (raw,
    /// unscaled), for tracing; 0 when `tuple` is `None`.
    pub seq: u32,
    pub payload: u16,
    pub window: u16,
    /// Acknowledgment number (meaningful when `flags` has ACK) and SACK
    /// blocks, for loss recovery.
    pub ack: u32,
    pub sack: [Option<(u32, u32)>; 3],
    /// A SYN's options: MSS, window scale, SACK permitted (none for any
    /// other segment).
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_ok: bool,
    /// Arrival time stamped by the link (0: none).
    pub rx_ns: u64,
    /// What an IPv4 packet that is not TCP is, as far as the stack's rate
    /// limits care.
    pub other: Other,
}

/// Non-TCP IPv4 the stack treats apart: it answers echo requests (at a
/// bounded rate) and no UDP at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Other {
    #[default]
    None,
    EchoRequest,
    Udp,
}

/// The largest Ethernet frame the stack sends or takes (1500-byte IP MTU).
pub const ETH_MAX: usize = 1514;

/// The key of a TCP flow, from `(remote address, remote port, local port)`.
pub fn flow_key(remote: u32, remote_port: u16, local_port: u16) -> u64 {
    (u64::from(remote) << 32) | (u64::from(remote_port) << 16) | u64::from(local_port)
}

/// TCP flag bits (the flags byte of the header).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// The IPv4 packet of an Ethernet frame, checked (header and total length
/// within the buffer, version 4); `None` for anything else.
fn ipv4(b: &[u8]) -> Option<Ipv4Packet<&[u8]>> {
    let eth = EthernetFrame::new_checked(b).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(&b[EthernetFrame::<&[u8]>::header_len()..]).ok()?;
    (ip.version() == 4).then_some(ip)
}

/// Is this IPv4 packet a non-first fragment, or a first with more to come?
fn fragmented(ip: &Ipv4Packet<&[u8]>) -> bool {
    ip.more_frags() || ip.frag_offset() != 0
}

/// The flags byte of a TCP header (smoltcp's view exposes the bits one by
/// one; the stack keeps the byte).
pub fn flags_of(t: &TcpPacket<&[u8]>) -> u8 {
    let mut f = 0;
    for (on, bit) in [
        (t.fin(), tcp_flags::FIN),
        (t.syn(), tcp_flags::SYN),
        (t.rst(), tcp_flags::RST),
        (t.psh(), tcp_flags::PSH),
        (t.ack(), tcp_flags::ACK),
    ] {
        if on {
            f |= bit;
        }
    }
    f
}

/// Is this Ethernet frame an ARP reply?
pub fn is_arp_reply(b: &[u8]) -> bool {
    arp_reply_sender(b).is_some()
}

/// The sender's IPv4 address of an ARP reply (None for any other frame).
pub fn arp_reply_sender(b: &[u8]) -> Option<u32> {
    let eth = EthernetFrame::new_checked(b).ok()?;
    if eth.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    let a = ArpPacket::new_checked(eth.payload()).ok()?;
    if a.operation() != ArpOperation::Reply || a.protocol_len() != 4 {
        return None;
    }
    Some(u32::from_be_bytes(a.source_protocol_addr().try_into().ok()?))
}

/// Read the TCP 4-tuple and the rest of [`FrameKey`] from an Ethernet
/// frame, and verify its checksums, in one pass over its headers. Anything
/// that is not a well-formed IPv4 TCP segment gives `tuple: None`.
///
/// Checksums: non-IPv4 frames (ARP) are valid here (smoltcp parses them
/// through its own checked views); for IPv4 the header checksum and, for an
/// unfragmented TCP, UDP or ICMP packet, its own checksum must hold, and a
/// truncated packet is invalid. The stack verifies here, counts failures,
/// and tells smoltcp not to verify again (every sane peer sends full
/// checksums; see the design notes on veth checksum offload).
pub fn classify(b: &[u8]) -> FrameKey {
    let mut key = FrameKey::default();
    let Ok(eth) = EthernetFrame::new_checked(b) else { return key };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        key.valid = true;
        return key;
    }
    let ip = match Ipv4Packet::new_checked(eth.payload()) {
        Ok(ip) if ip.version() == 4 && ip.verify_checksum() => ip,
        _ => return key,
    };
    if fragmented(&ip) {
        key.valid = true; // smoltcp (built without reassembly) drops it
        return key;
    }
    let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
    let l4 = ip.payload();
    match ip.next_header() {
        IpProtocol::Tcp => {
            let Ok(t) = TcpPacket::new_checked(l4) else { return key };
            let opts = if t.syn() { t.options_summary().unwrap_or_default() } else { Default::default() };
            key = FrameKey {
                tuple: Some((u32::from(ip.src_addr()), t.src_port(), t.dst_port())),
                syn: t.syn() && !t.ack(),
                flags: flags_of(&t),
                valid: t.verify_checksum(&src, &dst),
                seq: t.seq_number().0 as u32,
                payload: t.payload().len().min(usize::from(u16::MAX)) as u16,
                window: t.window_len(),
                ack: t.ack_number().0 as u32,
                sack: t.selective_ack_ranges().unwrap_or_default(),
                mss: opts.max_segment_size,
                wscale: opts.window_scale,
                sack_ok: opts.sack_permitted,
                rx_ns: 0,
                other: Other::None,
            };
        }
        IpProtocol::Udp => {
            key.valid = UdpPacket::new_checked(l4).is_ok_and(|u| u.verify_checksum(&src, &dst));
            key.other = Other::Udp;
        }
        IpProtocol::Icmp => {
            let icmp = Icmpv4Packet::new_checked(l4);
            key.valid = icmp.as_ref().is_ok_and(|i| i.verify_checksum());
            if icmp.is_ok_and(|i| i.msg_type() == smoltcp::wire::Icmpv4Message::EchoRequest) {
                key.other = Other::EchoRequest;
            }
        }
        _ => key.valid = true,
    }
    key
}

/// Bytes of an Ethernet frame carrying `tcp` over IPv4 (no IP options).
pub fn tcp_frame_len(tcp: &TcpRepr) -> usize {
    14 + 20 + tcp.buffer_len()
}

/// Write an Ethernet frame carrying `tcp` from (`src_mac`, `src`) to
/// (`dst_mac`, `dst`) into `buf` ([`tcp_frame_len`] bytes), with every
/// checksum filled. For the segments the stack writes itself, and for
/// crafted test frames.
pub fn emit_tcp(buf: &mut [u8], src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, tcp: &TcpRepr) {
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(src_mac),
        dst_addr: EthernetAddress(dst_mac),
        ethertype: EthernetProtocol::Ipv4,
    };
    let caps = ChecksumCapabilities::default();
    let mut f = EthernetFrame::new_unchecked(buf);
    eth.emit(&mut f);
    let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
    ip.emit(&mut p, &caps);
    let mut t = TcpPacket::new_unchecked(p.payload_mut());
    tcp.emit(&mut t, &IpAddress::Ipv4(src), &IpAddress::Ipv4(dst), &caps);
}

/// Rewrite the sequence space of an IPv4 TCP segment in an Ethernet frame
/// in place: add `seq_add` to its sequence number, and subtract `ack_sub`
/// from its acknowledgment number (when it carries ACK) and from both edges
/// of every SACK block. The TCP checksum is updated incrementally (RFC
/// 1624), so a frame whose checksum held still holds. Returns false, and
/// changes nothing, if `b` is not a whole IPv4 TCP segment.
///
/// The stack uses it for connections opened by SYN cookie, whose initial
/// sequence number on the wire is the cookie rather than smoltcp's own.
pub fn shift_tcp(b: &mut [u8], seq_add: u32, ack_sub: u32) -> bool {
    if b.len() < 14 + 20 || b[12..14] != [0x08, 0x00] || b[14] >> 4 != 4 || b[23] != 6 {
        return false;
    }
    let t = 14 + usize::from(b[14] & 0x0f) * 4;
    if b.len() < t + 20 {
        return false;
    }
    let doff = usize::from(b[t + 12] >> 4) * 4;
    if doff < 20 || b.len() < t + doff {
        return false;
    }
    let mut acc = u32::from(!u16::from_be_bytes([b[t + 16], b[t + 17]]));
    let put = |b: &mut [u8], at: usize, new: u32, acc: &mut u32| {
        let old = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        for (o, n) in [(old >> 16, new >> 16), (old & 0xffff, new & 0xffff)] {
            *acc += (!(o as u16)) as u32 + n;
        }
        b[at..at + 4].copy_from_slice(&new.to_be_bytes());
    };
    let read = |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    if seq_add != 0 {
        let seq = read(b, t + 4).wrapping_add(seq_add);
        put(b, t + 4, seq, &mut acc);
    }
    if ack_sub != 0 {
        if b[t + 13] & tcp_flags::ACK != 0 {
            let ack = read(b, t + 8).wrapping_sub(ack_sub);
            put(b, t + 8, ack, &mut acc);
        }
        let mut i = t + 20;
        while i < t + doff {
            match b[i] {
                0 => break,
                1 => i += 1,
                kind => {
                    let Some(&len) = b.get(i + 1) else { break };
                    let len = usize::from(len);
                    if len < 2 || i + len > t + doff {
                        break;
                    }
                    if kind == 5 {
                        let mut e = i + 2;
                        while e + 4 <= i + len {
                            let v = read(b, e).wrapping_sub(ack_sub);
                            put(b, e, v, &mut acc);
                            e += 4;
                        }
                    }
                    i += len;
                }
            }
        }
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    b[t + 16..t + 18].copy_from_slice(&(!(acc as u16)).to_be_bytes());
    true
}

/// Bytes of an Ethernet frame carrying an IPv4 ARP packet.
pub const ARP_FRAME_LEN: usize = 14 + 28;

/// Write an ARP `op` from (`mac`, `ip`) to (`target_mac`, `target_ip`) into
/// `buf` ([`ARP_FRAME_LEN`] bytes); a request goes to the broadcast
/// address, a reply to `target_mac`.
pub fn emit_arp(
    buf: &mut [u8],
    op: ArpOperation,
    mac: [u8; 6],
    ip: Ipv4Addr,
    target_mac: [u8; 6],
    target_ip: Ipv4Addr,
) {
    let eth = EthernetRepr {
        src_addr: EthernetAddress(mac),
        dst_addr: EthernetAddress(if op == ArpOperation::Request { [0xff; 6] } else { target_mac }),
        ethertype: EthernetProtocol::Arp,
    };
    let arp = ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: EthernetAddress(mac),
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress(target_mac),
        target_protocol_addr: target_ip,
    };
    let mut f = EthernetFrame::new_unchecked(buf);
    eth.emit(&mut f);
    arp.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
}

/// Do the frame's checksums hold (see [`classify`])?
pub fn checksums_ok(b: &[u8]) -> bool {
    classify(b).valid
}

/// Checked views of a frame's IPv4 header and TCP segment.
pub type TcpSegment<'a> = (Ipv4Packet<&'a [u8]>, TcpPacket<&'a [u8]>);

/// The IPv4 header and the TCP segment of an Ethernet frame, through
/// checked views, if it carries an unfragmented IPv4 TCP segment
/// (checksums not verified: for frames the stack wrote, or reads back).
pub fn tcp_segment(b: &[u8]) -> Option<TcpSegment<'_>> {
    let ip = ipv4(b)?;
    if ip.next_header() != IpProtocol::Tcp || fragmented(&ip) {
        return None;
    }
    let t = TcpPacket::new_checked(ip.payload()).ok()?;
    Some((ip, t))
}

/// The payload length of an IPv4 TCP segment, or `None` if `b` is not one.
pub fn tcp_payload_len(b: &[u8]) -> Option<usize> {
    tcp_segment(b).map(|(_, t)| t.payload().len())
}

/// A TCP segment smoltcp sent (inbound ones are read once, by
/// `frame::classify`).
pub struct Tcp {
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

/// Read a frame smoltcp wrote (trusted: its own output).
pub fn parse_sent(frame: &[u8]) -> Option<Tcp> {
    let (ip, t) = tcp_segment(frame)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::sim::{tcp_frame, Seg, MAC_A, MAC_B};
    use smoltcp::wire::Ipv4Address;

    const REMOTE: Ipv4Address = Ipv4Address::new(198, 18, 0, 2);
    const LOCAL: Ipv4Address = Ipv4Address::new(198, 18, 0, 1);

    fn frame(flags: u8, payload: &[u8]) -> Vec<u8> {
        let seg = Seg {
            src_port: 40000,
            dst_port: 7777,
            seq: 123_456,
            ack: 0,
            flags,
            window: 512,
            payload: payload.to_vec(),
            ..Seg::default()
        };
        tcp_frame(MAC_B, MAC_A, REMOTE, LOCAL, &seg)
    }

    #[test]
    fn classifies_tcp_and_syn() {
        let remote = u32::from(REMOTE);
        let k = classify(&frame(tcp_flags::SYN, &[]));
        assert_eq!((k.tuple, k.syn, k.valid), (Some((remote, 40000, 7777)), true, true));
        assert!(!classify(&frame(tcp_flags::SYN | tcp_flags::ACK, &[])).syn, "SYN-ACK is not a new connection");
        assert_eq!(classify(&frame(tcp_flags::ACK, &[])).tuple, Some((remote, 40000, 7777)));
    }

    #[test]
    fn reads_seq_payload_and_window() {
        let k = classify(&frame(tcp_flags::ACK | tcp_flags::PSH, &[7u8; 10]));
        assert_eq!((k.seq, k.payload, k.window), (123_456, 10, 512));
        assert_eq!(tcp_payload_len(&frame(tcp_flags::ACK, &[1; 8])), Some(8));
        assert_eq!(tcp_payload_len(&frame(tcp_flags::ACK, &[])), Some(0));
    }

    #[test]
    fn checksums_are_verified() {
        let good = frame(tcp_flags::SYN, &[]);
        assert!(checksums_ok(&good));
        for i in 14..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(!checksums_ok(&bad), "flipped byte {i} passed");
        }
        assert!(!checksums_ok(&good[..40]), "truncated packet passed");
        let mut arp = good.clone();
        arp[13] = 0x06;
        assert!(checksums_ok(&arp), "non-IPv4 is smoltcp's to parse");
        assert!(!checksums_ok(&good[..10]), "a runt is not a frame");
    }

    #[test]
    fn shifting_sequence_space_keeps_the_checksum() {
        let seg = Seg {
            src_port: 40000,
            dst_port: 7777,
            seq: 0xffff_fff0,
            ack: 5,
            flags: tcp_flags::ACK,
            window: 512,
            payload: b"hello".to_vec(),
            sack: vec![(10, 20), (0xffff_fffe, 3)],
            ..Seg::default()
        };
        let mut f = tcp_frame(MAC_B, MAC_A, REMOTE, LOCAL, &seg);
        assert!(shift_tcp(&mut f, 0x20, 7));
        let k = classify(&f);
        assert!(k.valid, "checksum no longer holds");
        assert_eq!((k.seq, k.ack), (0x10, 5u32.wrapping_sub(7)));
        assert_eq!(k.sack[..2], [Some((3, 13)), Some((0xffff_fff7, 0xffff_fffc))]);
        assert_eq!(k.payload, 5);
        // Back again: the original frame, byte for byte.
        assert!(shift_tcp(&mut f, 0u32.wrapping_sub(0x20), 0u32.wrapping_sub(7)));
        assert_eq!(f, tcp_frame(MAC_B, MAC_A, REMOTE, LOCAL, &seg));
        // Not a TCP segment: untouched.
        let mut arp = f.clone();
        arp[13] = 0x06;
        let before = arp.clone();
        assert!(!shift_tcp(&mut arp, 1, 1));
        assert_eq!(arp, before);
        for n in 0..54 {
            assert!(!shift_tcp(&mut f.clone()[..n], 1, 1), "cut at {n}");
        }
    }

    #[test]
    fn anything_else_has_no_tuple() {
        let mut udp = frame(0, &[]);
        udp[23] = 17;
        assert_eq!(classify(&udp).tuple, None);
        let mut frag = frame(0, &[]);
        frag[21] = 1; // a later fragment: no ports
        assert_eq!(classify(&frag).tuple, None);
        let mut arp = frame(0, &[]);
        arp[13] = 0x06;
        assert_eq!(classify(&arp).tuple, None);
        let full = frame(tcp_flags::SYN, &[]);
        for n in 0..full.len() {
            assert_eq!(classify(&full[..n]).tuple, None, "cut at {n}");
        }
        assert!(classify(&full).tuple.is_some());
    }
}
