//! Segments the stack writes itself, below smoltcp: challenge ACKs,
//! TIME-WAIT ACKs, the RST of a refused or aborted connection, and the
//! SYN-ACK of a SYN cookie. Written into a frame of the link without
//! allocation.

use std::net::Ipv4Addr;

use smoltcp::wire::{TcpControl, TcpRepr, TcpSeqNumber};

/// A segment the stack sends on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A bare ACK.
    Ack { seq: u32, ack: u32, window: u16 },
    /// RST with ACK (answering a SYN, or aborting after the linger).
    Rst { seq: u32, ack: u32 },
    /// The SYN-ACK of a SYN cookie ([`super::door`]), with its options.
    SynAck { seq: u32, ack: u32, window: u16, mss: u16, ws: Option<u8>, sack: bool },
}

/// Write `reply` from (`mac`, `ip`, `port`) to (`peer_mac`, `peer_ip`,
/// `peer_port`) into `buf` ([`reply_len`] bytes), checksums filled.
#[allow(clippy::too_many_arguments)]
pub fn write_reply(
    buf: &mut [u8],
    mac: [u8; 6],
    ip: Ipv4Addr,
    port: u16,
    peer_mac: [u8; 6],
    peer_ip: Ipv4Addr,
    peer_port: u16,
    reply: Reply,
) {
    let tcp = reply_repr(reply, port, peer_port);
    super::frame::emit_tcp(buf, mac, peer_mac, ip, peer_ip, &tcp);
}

/// Bytes of the frame of `reply` ([`write_reply`]).
pub fn reply_len(reply: Reply) -> usize {
    super::frame::tcp_frame_len(&reply_repr(reply, 0, 0))
}

fn reply_repr(reply: Reply, port: u16, peer_port: u16) -> TcpRepr<'static> {
    let (control, seq, ack, window) = match reply {
        Reply::Ack { seq, ack, window } => (TcpControl::None, seq, ack, window),
        Reply::Rst { seq, ack } => (TcpControl::Rst, seq, ack, 0),
        Reply::SynAck { seq, ack, window, .. } => (TcpControl::Syn, seq, ack, window),
    };
    let (mss, ws, sack) = match reply {
        Reply::SynAck { mss, ws, sack, .. } => (Some(mss), ws, sack),
        _ => (None, None, false),
    };
    TcpRepr {
        src_port: port,
        dst_port: peer_port,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: Some(TcpSeqNumber(ack as i32)),
        window_len: window,
        window_scale: ws,
        max_seg_size: mss,
        sack_permitted: sack,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload: &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::frame::tcp_flags;

    #[test]
    fn a_reply_is_a_valid_frame() {
        let reply = Reply::Rst { seq: 9, ack: 10 };
        let mut buf = vec![0u8; reply_len(reply)];
        let ip = Ipv4Addr::new(198, 18, 0, 1);
        let peer = Ipv4Addr::new(198, 18, 0, 2);
        write_reply(&mut buf, [2; 6], ip, 7777, [4; 6], peer, 40000, reply);
        let k = crate::stack::frame::classify(&buf);
        assert!(k.valid);
        assert_eq!(k.tuple, Some((u32::from(ip), 7777, 40000)));
        assert_eq!((k.seq, k.ack, k.flags), (9, 10, tcp_flags::RST | tcp_flags::ACK));
    }
}
