//! Flow observations for tracing: what the stack sees of each TCP flow's
//! inbound segments before smoltcp does, so a message held in smoltcp's
//! reassembly buffer behind a lost segment still shows when it arrived and
//! that the stream waited for a retransmission.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::frame::tcp_flags::{RST, SYN};
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
}

impl Flow {
    /// One segment of this flow arrived at `ts`.
    pub fn segment(&mut self, seq: u32, payload: u16, window: u16, tcp_flags: u8, ts: u64) {
        if tcp_flags & SYN != 0 {
            *self = Flow { next: seq.wrapping_add(1), seq_known: true, ..Flow::default() };
            return;
        }
        if tcp_flags & RST != 0 {
            return;
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

/// Multiplicative hash for flow keys (already well mixed 64-bit values).
#[derive(Default)]
pub struct FlowHasher(u64);

impl Hasher for FlowHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub type FlowMap = HashMap<u64, Flow, BuildHasherDefault<FlowHasher>>;

pub fn flow_key(remote: u32, remote_port: u16, local_port: u16) -> u64 {
    (u64::from(remote) << 32) | (u64::from(remote_port) << 16) | u64::from(local_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_tracking_flags_gaps_and_repeats_only() {
        let mut f = Flow::default();
        f.segment(999, 0, 100, 0x02, 1); // SYN: next is 1000
        f.segment(1000, 100, 100, 0x18, 10);
        f.segment(1100, 100, 100, 0x18, 20);
        assert_eq!((f.flags, f.first_rx, f.last_rx, f.next), (0, 10, 20, 1200));
        // 1200..1300 lost: 1300 arrives first.
        f.segment(1300, 100, 100, 0x18, 30);
        assert_eq!(f.flags, signal::RETRANSMIT);
        f.flags = 0;
        // The retransmission of 1200 is behind `next`.
        f.segment(1200, 100, 100, 0x18, 40);
        assert_eq!((f.flags, f.next), (signal::RETRANSMIT, 1400));
        // Pure ACKs and resets change nothing; a zero window is noted.
        let mut g = Flow::default();
        g.segment(5, 0, 100, 0x10, 1);
        g.segment(5, 0, 0, 0x14, 1);
        assert_eq!(g.flags, 0);
        g.segment(5, 0, 0, 0x10, 1);
        assert_eq!(g.flags, signal::ZERO_WINDOW);
        // Sequence numbers wrap.
        let mut w = Flow::default();
        w.segment(u32::MAX - 9, 0, 1, 0x02, 1);
        w.segment(u32::MAX - 8, 20, 1, 0x18, 2);
        w.segment(11, 5, 1, 0x18, 3);
        assert_eq!((w.flags, w.next), (0, 16));
    }
}
