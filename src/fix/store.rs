//! The application messages a FIX session sent, kept by sequence number
//! for its ResendRequests: the bodies (after the standard header) in a
//! byte ring and an index ring, both of a size fixed when the store is
//! made. The oldest messages make room for new ones; one asked for after
//! it left the store is gap-filled, and counted.

use super::slots::{Entry, Region, RingState, Seqs, Slot};

/// The highest MsgSeqNum a session uses.
pub const MAX_SEQ: u32 = 1 << 31;

/// A cheap checksum of a stored message (it catches a store a power loss
/// tore, not tampering): never zero, as an entry never written is.
fn sum(seq: u32, msg_type: u8, body: &[u8]) -> u32 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15 ^ (u64::from(seq) << 8 | u64::from(msg_type));
    let mut words = body.chunks_exact(8);
    for w in &mut words {
        let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        h = (h ^ v).wrapping_mul(0xbf58_476d_1ce4_e5b9).rotate_left(31);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x94d0_49bb_1331_11eb);
    }
    h = (h ^ body.len() as u64).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((h >> 32) as u32) | 1
}

/// One stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored<'a> {
    pub seq: u32,
    /// MsgType (35), one byte: the gateway's application messages' types are.
    pub msg_type: u8,
    /// When it was first sent (OrigSendingTime of a resend), ns since the epoch.
    pub sent_ns: u64,
    /// Its fields after the standard header, CheckSum excluded.
    pub body: &'a [u8],
}

/// See the module docs. Its ring, its index and its bytes live in a
/// [`Slot`], with the session's sequence numbers.
pub struct Store {
    slot: Slot,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = self.slot.head();
        f.debug_struct("Store").field("seqs", &h.seqs).field("ring", &h.ring).finish()
    }
}

impl Store {
    /// A store of its own (anonymous memory) with room for `bytes` of
    /// bodies and `entries` messages (each at least 1).
    pub fn new(bytes: usize, entries: usize) -> std::io::Result<Store> {
        Ok(Store { slot: Region::one(entries.max(1), bytes.clamp(1, u32::MAX as usize))? })
    }

    /// The store in `slot`, as it was left.
    pub fn from_slot(slot: Slot) -> Store {
        Store { slot }
    }

    /// Give the store to session `comp`: empty, from sequence number 1.
    pub fn claim(&mut self, comp: &[u8], first_exec: u64) {
        self.slot.claim(comp, first_exec);
    }

    /// The session's sequence numbers and next ExecID, kept with its store.
    pub fn seqs(&self) -> Seqs {
        self.slot.head().seqs
    }

    pub fn seqs_mut(&mut self) -> &mut Seqs {
        &mut self.slot.parts().0.seqs
    }

    /// Messages dropped to make room.
    pub fn evicted(&self) -> u64 {
        self.slot.head().ring.evicted
    }

    /// Forget every message (a sequence reset).
    pub fn clear(&mut self) {
        let r = &mut self.slot.parts().0.ring;
        r.head = 0;
        r.count = 0;
        r.write = 0;
    }

    pub fn len(&self) -> usize {
        self.slot.head().ring.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Are the sequence numbers ones this gateway could have left
    /// (1 to 2^31 + 1)?
    pub fn seqs_sane(&self) -> bool {
        let q = self.seqs();
        let ok = |n: u32| (1..=MAX_SEQ + 1).contains(&n);
        ok(q.next_in) && ok(q.next_out)
    }

    /// Is the ring as `put` leaves it (after a restart from a file a power
    /// loss tore)? Every entry's checksum, its place (end to end from the
    /// oldest, wrapping once to 0, the newest ending at the write point),
    /// rising sequence numbers below the next one to send. If not, it is
    /// emptied: false.
    pub fn check(&mut self) -> bool {
        let next_out = self.seqs().next_out;
        let (h, entries, bytes) = self.slot.parts();
        let r = h.ring;
        let (n, cap) = (entries.len() as u64, bytes.len() as u64);
        let mut ok = r.head < n && r.count <= n && r.write <= cap;
        if ok && r.count > 0 {
            let tail = u64::from(entries[r.head as usize].at);
            let (mut end, mut wrapped, mut last) = (tail, false, 0u32);
            for i in 0..r.count {
                let e = entries[((r.head + i) % n) as usize];
                let (at, len) = (u64::from(e.at), u64::from(e.len));
                let placed = if at == end {
                    true
                } else if at == 0 && !wrapped && i > 0 {
                    wrapped = true;
                    true
                } else {
                    false
                };
                let within = at + len <= if wrapped { tail } else { cap };
                ok &= placed
                    && within
                    && len > 0
                    && (i == 0 || e.seq > last)
                    && e.seq < next_out
                    && e.msg_type.is_ascii_alphanumeric()
                    && e.sum == sum(e.seq, e.msg_type, &bytes[at as usize..(at + len).min(cap) as usize]);
                if !ok {
                    break;
                }
                end = at + len;
                last = e.seq;
            }
            ok &= end == r.write;
        }
        if !ok {
            h.ring = RingState { evicted: r.evicted, ..RingState::default() };
        }
        ok
    }

    fn entry(entries: &[Entry], r: &RingState, i: usize) -> Entry {
        entries[(r.head as usize + i) % entries.len()]
    }

    /// Keep message `seq` (above every stored one). False if its body is
    /// larger than the whole store, or `seq` is not above the last.
    pub fn put(&mut self, seq: u32, msg_type: u8, sent_ns: u64, body: &[u8]) -> bool {
        let (h, entries, bytes) = self.slot.parts();
        let r = &mut h.ring;
        let cap = bytes.len();
        let n = entries.len();
        let len = body.len();
        if len > cap || (r.count > 0 && Store::entry(entries, r, r.count as usize - 1).seq >= seq) {
            return false;
        }
        let pop = |r: &mut RingState| {
            r.head = (r.head + 1) % n as u64;
            r.count -= 1;
            r.evicted += 1;
        };
        if r.count as usize == n {
            pop(r);
        }
        // Live bytes run from the oldest entry to `write` (around the end
        // of the ring when `write` is below it); find room after `write`.
        loop {
            if r.count == 0 {
                r.write = 0;
                break;
            }
            let tail = Store::entry(entries, r, 0).at as usize;
            let write = r.write as usize;
            if write > tail {
                if cap - write >= len {
                    break;
                }
                if tail >= len {
                    r.write = 0;
                    break;
                }
            } else if write < tail && tail - write >= len {
                break;
            }
            pop(r);
        }
        let at = r.write as usize;
        bytes[at..at + len].copy_from_slice(body);
        // The body and its entry first, the count last: a process that
        // dies between two stores leaves the ring as it was.
        let i = (r.head as usize + r.count as usize) % n;
        let sum = sum(seq, msg_type, body);
        entries[i] = Entry { seq, at: at as u32, len: len as u32, sum, sent_ns, msg_type, _pad: [0; 7] };
        r.write = (at + len) as u64;
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::Release);
        r.count += 1;
        true
    }

    /// The oldest stored message with a sequence number at or above `seq`.
    pub fn at_or_after(&self, seq: u32) -> Option<Stored<'_>> {
        let r = self.slot.head().ring;
        let (entries, bytes) = self.slot.view();
        let count = r.count as usize;
        let (mut lo, mut hi) = (0, count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if Store::entry(entries, &r, mid).seq < seq {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo < count).then(|| {
            let e = Store::entry(entries, &r, lo);
            Stored {
                seq: e.seq,
                msg_type: e.msg_type,
                sent_ns: e.sent_ns,
                body: &bytes[e.at as usize..(e.at + e.len) as usize],
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_messages_in_order_and_drops_the_oldest_for_room() {
        let mut s = Store::new(100, 8).unwrap();
        for seq in 1..=30u32 {
            let body = vec![seq as u8; 10 + (seq as usize % 7)];
            assert!(s.put(seq, b'8', u64::from(seq), &body));
            // Whatever is stored is whole and in order, up to the newest.
            let mut next = s.at_or_after(0).unwrap().seq;
            let first = next;
            while let Some(m) = s.at_or_after(next) {
                assert_eq!(m.body, &vec![m.seq as u8; 10 + (m.seq as usize % 7)][..]);
                next = m.seq + 1;
            }
            assert_eq!(next, seq + 1);
            assert!(s.len() <= 8 && seq - first < 8);
        }
        assert!(s.evicted() > 0);
        assert!(!s.put(30, b'8', 0, b"x"), "a sequence number must rise");
        assert!(!s.put(31, b'8', 0, &[0; 101]), "larger than the store");
        assert_eq!(s.at_or_after(31), None);
    }

    #[test]
    fn finds_the_first_at_or_after_a_gap() {
        let mut s = Store::new(1000, 16).unwrap();
        for seq in [2u32, 3, 7, 9] {
            s.put(seq, b'8', 0, b"35");
        }
        assert_eq!(s.at_or_after(1).unwrap().seq, 2);
        assert_eq!(s.at_or_after(4).unwrap().seq, 7);
        assert_eq!(s.at_or_after(9).unwrap().seq, 9);
        assert!(s.at_or_after(10).is_none());
        s.clear();
        assert!(s.at_or_after(0).is_none());
    }

    #[test]
    fn a_torn_ring_is_emptied_and_its_sequence_numbers_kept() {
        let mut s = Store::new(1000, 16).unwrap();
        s.seqs_mut().next_out = 9;
        for seq in 2..6u32 {
            s.put(seq, b'8', 0, b"35=8");
        }
        assert!(s.check(), "a ring as put leaves it");
        assert_eq!(s.len(), 4);
        // A power loss wrote the count but not the entry behind it.
        s.slot.parts().1[4] = Entry { seq: 6, at: 16, len: 4, ..Entry::default() };
        s.slot.parts().0.ring.count = 5;
        s.slot.parts().0.ring.write = 20;
        assert!(!s.check());
        assert!(s.is_empty() && s.at_or_after(0).is_none());
        assert_eq!(s.seqs().next_out, 9);
        assert!(s.put(6, b'8', 0, b"35=8"), "and it takes messages again");
    }
}
