//! The echo workload: fixed-size messages carrying a sequence number, their
//! send time and a payload derived from both, checked byte for byte.

use std::collections::VecDeque;

use super::workload::{Replies, Workload};

/// Smallest echo message: u64 sequence + u64 timestamp.
pub const ECHO_MIN_SIZE: usize = 16;

/// Fill byte for echo payloads at `i` of message `seq` (checked on return).
fn echo_fill(seq: u64, i: usize) -> u8 {
    (seq as u8).wrapping_mul(31).wrapping_add(i as u8)
}

#[derive(Default)]
struct Conn {
    next_seq: u64,
    outstanding: VecDeque<u64>,
}

pub struct EchoLoad {
    size: usize,
    conns: Vec<Conn>,
}

impl EchoLoad {
    /// Messages of `size` bytes (at least [`ECHO_MIN_SIZE`]).
    pub fn new(size: usize) -> Self {
        EchoLoad { size: size.max(ECHO_MIN_SIZE), conns: Vec::new() }
    }
}

impl Workload for EchoLoad {
    fn open(&mut self, ci: usize, _tx: &mut Vec<u8>) {
        if self.conns.len() <= ci {
            self.conns.resize_with(ci + 1, Conn::default);
        }
        self.conns[ci].outstanding.reserve(1024);
    }

    fn ready(&self, _ci: usize) -> bool {
        true
    }

    fn request(&mut self, ci: usize, ts: u64, tx: &mut Vec<u8>) {
        let c = &mut self.conns[ci];
        let seq = c.next_seq;
        c.next_seq += 1;
        tx.extend_from_slice(&seq.to_le_bytes());
        tx.extend_from_slice(&ts.to_le_bytes());
        for i in ECHO_MIN_SIZE..self.size {
            tx.push(echo_fill(seq, i));
        }
        c.outstanding.push_back(seq);
    }

    fn replies(&mut self, ci: usize, buf: &[u8], seen: &mut Replies<'_>) -> Result<usize, String> {
        let c = &mut self.conns[ci];
        let mut off = 0;
        for m in buf.chunks_exact(self.size) {
            let mut a = [0u8; 8];
            a.copy_from_slice(&m[0..8]);
            let seq = u64::from_le_bytes(a);
            a.copy_from_slice(&m[8..16]);
            let ts = u64::from_le_bytes(a);
            let intact = (ECHO_MIN_SIZE..self.size).all(|i| m[i] == echo_fill(seq, i));
            match c.outstanding.pop_front() {
                Some(s) if s == seq && intact => seen.answered(ts, false),
                Some(_) => seen.corrupted(),
                None => seen.unexpected(),
            }
            off += self.size;
        }
        Ok(off)
    }

    fn outstanding(&self, ci: usize) -> usize {
        self.conns.get(ci).map_or(0, |c| c.outstanding.len())
    }

    fn max_reply(&self) -> usize {
        self.size
    }
}
