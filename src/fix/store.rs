//! The application messages a FIX session sent, kept by sequence number
//! for its ResendRequests: the bodies (after the standard header) in a
//! byte ring and an index ring, both of a size fixed when the store is
//! made. The oldest messages make room for new ones; one asked for after
//! it left the store is gap-filled, and counted.

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

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    seq: u32,
    at: u32,
    len: u32,
    msg_type: u8,
    sent_ns: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct Store {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    head: usize,
    count: usize,
    write: usize,
    /// Messages dropped to make room.
    pub evicted: u64,
}

impl Store {
    /// Room for `bytes` of bodies and `entries` messages (each at least 1).
    pub fn new(bytes: usize, entries: usize) -> Store {
        Store {
            bytes: vec![0; bytes.clamp(1, u32::MAX as usize)],
            entries: vec![Entry::default(); entries.max(1)],
            head: 0,
            count: 0,
            write: 0,
            evicted: 0,
        }
    }

    /// Forget every message (a sequence reset).
    pub fn clear(&mut self) {
        self.head = 0;
        self.count = 0;
        self.write = 0;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn entry(&self, i: usize) -> &Entry {
        &self.entries[(self.head + i) % self.entries.len()]
    }

    fn pop(&mut self) {
        self.head = (self.head + 1) % self.entries.len();
        self.count -= 1;
        self.evicted += 1;
    }

    /// Keep message `seq` (above every stored one). False if its body is
    /// larger than the whole store, or `seq` is not above the last.
    pub fn put(&mut self, seq: u32, msg_type: u8, sent_ns: u64, body: &[u8]) -> bool {
        let cap = self.bytes.len();
        let len = body.len();
        if len > cap || (self.count > 0 && self.entry(self.count - 1).seq >= seq) {
            return false;
        }
        if self.count == self.entries.len() {
            self.pop();
        }
        // Live bytes run from the oldest entry to `write` (around the end
        // of the ring when `write` is below it); find room after `write`.
        loop {
            if self.count == 0 {
                self.write = 0;
                break;
            }
            let tail = self.entry(0).at as usize;
            if self.write > tail {
                if cap - self.write >= len {
                    break;
                }
                if tail >= len {
                    self.write = 0;
                    break;
                }
            } else if self.write < tail && tail - self.write >= len {
                break;
            }
            self.pop();
        }
        let at = self.write;
        self.bytes[at..at + len].copy_from_slice(body);
        self.write = at + len;
        let i = (self.head + self.count) % self.entries.len();
        self.entries[i] = Entry { seq, at: at as u32, len: len as u32, msg_type, sent_ns };
        self.count += 1;
        true
    }

    /// The oldest stored message with a sequence number at or above `seq`.
    pub fn at_or_after(&self, seq: u32) -> Option<Stored<'_>> {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.entry(mid).seq < seq {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo < self.count).then(|| {
            let e = self.entry(lo);
            Stored {
                seq: e.seq,
                msg_type: e.msg_type,
                sent_ns: e.sent_ns,
                body: &self.bytes[e.at as usize..(e.at + e.len) as usize],
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_messages_in_order_and_drops_the_oldest_for_room() {
        let mut s = Store::new(100, 8);
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
        assert!(s.evicted > 0);
        assert!(!s.put(30, b'8', 0, b"x"), "a sequence number must rise");
        assert!(!s.put(31, b'8', 0, &[0; 101]), "larger than the store");
        assert_eq!(s.at_or_after(31), None);
    }

    #[test]
    fn finds_the_first_at_or_after_a_gap() {
        let mut s = Store::new(1000, 16);
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
}
