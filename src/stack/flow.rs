//! Flow observations for tracing: what the stack sees of each TCP flow's
//! inbound segments before smoltcp does, so a message held in smoltcp's
//! reassembly buffer behind a lost segment still shows when it arrived and
//! that the stream waited for a retransmission.

use std::collections::HashMap;

use super::frame::tcp_flags::{ACK, RST, SYN};
use crate::transport::signal;

/// What tracing knows about one TCP flow, kept from its frames as they
/// arrive (before smoltcp), so a message held in smoltcp's reassembly
/// buffer behind a lost segment still shows when it arrived.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flow {
    /// Arrival of the oldest payload not yet read by the application.
    pub first_rx: u64,
    /// Arrival of the newest payload.
    pub last_rx: u64,
    /// Next sequence number expected (valid once `seq_known`).
    pub next: u32,
    pub seq_known: bool,
    /// [`signal`] bits since the application last read.
    pub flags: u32,
    /// The highest ACK number the peer sent, and when it first arrived
    /// (valid once `ack_known`): the time of a reply's ACK.
    pub ack: u32,
    pub ack_at: u64,
    pub ack_known: bool,
}

impl Flow {
    /// One segment of this flow arrived at `ts`.
    pub fn segment(&mut self, seq: u32, ack: u32, payload: u16, window: u16, tcp_flags: u8, ts: u64) {
        if tcp_flags & SYN != 0 {
            *self = Flow { next: seq.wrapping_add(1), seq_known: true, ..Flow::default() };
            return;
        }
        if tcp_flags & RST != 0 {
            return;
        }
        if tcp_flags & ACK != 0 && (!self.ack_known || (ack.wrapping_sub(self.ack) as i32) > 0) {
            self.ack = ack;
            self.ack_at = ts;
            self.ack_known = true;
        }
        if window == 0 {
            self.flags |= signal::ZERO_WINDOW;
        }
        if payload == 0 {
            return;
        }
        if self.first_rx == 0 {
            self.first_rx = ts;
        }
        self.last_rx = ts;
        let end = seq.wrapping_add(u32::from(payload));
        if self.seq_known {
            // Ahead of what we expect: a segment before it was lost. Behind
            // it: the peer sent these bytes again. Either way the stream
            // waited for a retransmission.
            if seq != self.next {
                self.flags |= signal::RETRANSMIT;
            }
            if (end.wrapping_sub(self.next) as i32) > 0 {
                self.next = end;
            }
        } else {
            self.next = end;
            self.seq_known = true;
        }
    }
}

/// The hasher of every flow table on the packet path: foldhash, seeded at
/// random per table. A flow key's low bits are its local port, the same for
/// every flow to one listening port; a hash whose low bits depend only on
/// the key's (a multiplication) would start every such flow's probe in one
/// bucket. foldhash's `fast` variant spread these keys poorly for some seeds
/// (1,250-1,950 distinct low 12 bits for 4,000 flows, in the test below);
/// the `quality` variant's extra folded multiply gives what chance gives.
pub type FlowBuild = foldhash::quality::RandomState;

pub type FlowMap = HashMap<u64, Flow, FlowBuild>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::frame::flow_key;
    use std::hash::BuildHasher;

    /// hashbrown picks a flow's bucket group from the hash's low bits: 4000
    /// clients of one listening port must not share them (with `key * C`
    /// they all did, and every lookup walked one chain).
    #[test]
    fn flows_to_one_port_spread_over_the_low_bits() {
        let b = FlowBuild::default();
        let mut seen = std::collections::HashSet::new();
        for i in 0..4000u32 {
            let key = flow_key(0xc612_0000 + i / 16, 40_000 + (i % 16) as u16, 7777);
            seen.insert(b.hash_one(key) & 0xfff);
        }
        // 4000 keys into 4096 values: about 2500 distinct by chance.
        assert!(seen.len() > 2000, "{} distinct low-bit values", seen.len());
        // Two tables, two seeds.
        assert_ne!(FlowBuild::default().hash_one(42u64), FlowBuild::default().hash_one(42u64));
    }

    #[test]
    fn flow_tracking_flags_gaps_and_repeats_only() {
        let mut f = Flow::default();
        f.segment(999, 0, 0, 100, 0x02, 1); // SYN: next is 1000
        f.segment(1000, 0, 100, 100, 0x18, 10);
        f.segment(1100, 0, 100, 100, 0x18, 20);
        assert_eq!((f.flags, f.first_rx, f.last_rx, f.next), (0, 10, 20, 1200));
        // 1200..1300 lost: 1300 arrives first.
        f.segment(1300, 0, 100, 100, 0x18, 30);
        assert_eq!(f.flags, signal::RETRANSMIT);
        f.flags = 0;
        // The retransmission of 1200 is behind `next`.
        f.segment(1200, 0, 100, 100, 0x18, 40);
        assert_eq!((f.flags, f.next), (signal::RETRANSMIT, 1400));
        // Pure ACKs and resets change nothing; a zero window is noted.
        let mut g = Flow::default();
        g.segment(5, 0, 0, 100, 0x10, 1);
        g.segment(5, 0, 0, 0, 0x14, 1);
        assert_eq!(g.flags, 0);
        g.segment(5, 0, 0, 0, 0x10, 1);
        assert_eq!(g.flags, signal::ZERO_WINDOW);
        // Sequence numbers wrap.
        let mut w = Flow::default();
        w.segment(u32::MAX - 9, 0, 0, 1, 0x02, 1);
        w.segment(u32::MAX - 8, 0, 20, 1, 0x18, 2);
        w.segment(11, 0, 5, 1, 0x18, 3);
        assert_eq!((w.flags, w.next), (0, 16));
    }

    #[test]
    fn the_time_of_the_highest_ack_is_kept() {
        let mut f = Flow::default();
        f.segment(10, 100, 0, 10, 0x10, 5);
        f.segment(10, 150, 0, 10, 0x10, 7);
        // A reordered older ACK, or a repeat, keeps the first arrival.
        f.segment(10, 120, 0, 10, 0x10, 9);
        f.segment(10, 150, 20, 10, 0x18, 11);
        assert_eq!((f.ack, f.ack_at), (150, 7));
        // Across the wrap.
        f.segment(10, 150u32.wrapping_sub(200), 0, 10, 0x10, 13);
        assert_eq!((f.ack, f.ack_at), (150, 7));
        let mut g = Flow::default();
        g.segment(10, u32::MAX - 5, 0, 10, 0x10, 14);
        g.segment(10, 3, 0, 10, 0x10, 15);
        // No ACK flag: not an ACK.
        g.segment(10, 9, 0, 10, 0x00, 16);
        assert_eq!((g.ack, g.ack_at), (3, 15));
    }
}
