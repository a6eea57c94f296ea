//! Records held for their reply's ACK, and, when that ACK waited for a
//! retransmission, for a little longer: for word that the retransmission
//! was spurious (the peer had the reply; only its ACK was late).

use std::collections::VecDeque;

use super::super::Sample;

/// Records held for their reply's ACK, at most. A record that finds no
/// free slot is recorded at once, without its ACK (`ack_untracked`).
pub const HELD_CAP: usize = 4096;

/// The longest a record is held for its reply's ACK; then it is recorded
/// with [`cause::ACK_LATE`](super::super::cause::ACK_LATE). Longer than a kernel peer's first RTO
/// retransmission (200 ms at least) plus its delayed ACK (200 ms at most).
pub const ACK_DEADLINE_NS: u64 = 1_000_000_000;

/// How long a record whose reply's ACK waited for a retransmission is
/// kept after that ACK, for word that the retransmission was spurious: the
/// peer reports the copy as a duplicate (D-SACK) as soon as it arrives,
/// within a round trip of the copy leaving, which was before the ACK.
pub const VERDICT_NS: u64 = 20_000_000;

/// Records awaiting that word, at most; beyond, a record is recorded at
/// once as retransmitted.
pub const VERDICT_CAP: usize = 256;

const NIL: u32 = u32::MAX;

/// One held record's bookkeeping.
#[derive(Debug, Clone, Copy)]
pub(super) struct Held {
    /// The reply's end in the connection's output (bytes).
    pub(super) end: u64,
    since: u64,
    /// Next held record of the same connection (FIFO), or [`NIL`].
    next: u32,
    conn: u32,
    live: bool,
}

/// Records waiting for their reply's ACK: a ring of slots, allocated in
/// order and freed in any order (an ACK completes a connection's oldest
/// records), with one FIFO list per connection. The oldest live slot is
/// always the head of its connection's list, so the deadline only ever
/// looks at the ring's tail.
pub(super) struct HeldPool {
    records: Vec<Sample>,
    meta: Vec<Held>,
    /// Slots ever allocated, and the oldest that may still be live.
    head: u64,
    tail: u64,
    pub(super) live: usize,
    /// Per connection id: (first, last) slot of its list.
    lists: Vec<(u32, u32)>,
    /// (connection, watch on/off) for the transport.
    pub(super) watch: Vec<(u32, bool)>,
    /// [`ACK_DEADLINE_NS`] (shorter in tests).
    pub(super) deadline: u64,
    /// Acknowledged records awaiting the verdict on their retransmission,
    /// each with the time it is recorded without one, oldest first.
    verdicts: VecDeque<(Sample, u64)>,
}

impl HeldPool {
    pub(super) fn new() -> HeldPool {
        HeldPool {
            records: vec![Sample::default(); HELD_CAP],
            meta: vec![Held { end: 0, since: 0, next: NIL, conn: 0, live: false }; HELD_CAP],
            head: 0,
            tail: 0,
            live: 0,
            lists: vec![(NIL, NIL); 1024],
            // At most one request per hold and per release in an
            // iteration: never grown on the loop.
            watch: Vec::with_capacity(2 * (HELD_CAP + VERDICT_CAP)),
            deadline: ACK_DEADLINE_NS,
            verdicts: VecDeque::with_capacity(VERDICT_CAP),
        }
    }

    /// Hold `s` until `end` bytes of its connection are acknowledged;
    /// false if no slot is free.
    pub(super) fn hold(&mut self, s: &Sample, end: u64, now: u64) -> bool {
        let i = (self.head % HELD_CAP as u64) as usize;
        if self.meta[i].live {
            return false;
        }
        let c = s.conn as usize;
        if c >= self.lists.len() {
            // A connection id beyond any seen: grows with the server's own
            // connection table, not per message.
            self.lists.resize(c + 1, (NIL, NIL));
        }
        self.records[i] = *s;
        self.meta[i] = Held { end, since: now, next: NIL, conn: s.conn, live: true };
        let (first, last) = self.lists[c];
        if first == NIL {
            self.lists[c] = (i as u32, i as u32);
            self.watch.push((s.conn, true));
        } else {
            self.meta[last as usize].next = i as u32;
            self.lists[c].1 = i as u32;
        }
        self.head += 1;
        self.live += 1;
        true
    }

    /// Take the oldest held record of `conn` (its list's head), if any and
    /// if `take` says so.
    pub(super) fn pop_front(&mut self, conn: u32, take: impl Fn(&Held) -> bool) -> Option<Sample> {
        let c = conn as usize;
        let (first, _) = *self.lists.get(c)?;
        if first == NIL || !take(&self.meta[first as usize]) {
            return None;
        }
        let m = &mut self.meta[first as usize];
        m.live = false;
        let next = m.next;
        self.live -= 1;
        if next == NIL {
            self.lists[c] = (NIL, NIL);
            if !self.awaits_verdict(conn) {
                self.watch.push((conn, false));
            }
        } else {
            self.lists[c].0 = next;
        }
        Some(self.records[first as usize])
    }

    /// The oldest live record, if it was held since before `before`.
    pub(super) fn pop_expired(&mut self, before: u64) -> Option<Sample> {
        while self.tail < self.head {
            let i = (self.tail % HELD_CAP as u64) as usize;
            let m = self.meta[i];
            if !m.live {
                self.tail += 1;
                continue;
            }
            if m.since >= before {
                return None;
            }
            self.tail += 1;
            return self.pop_front(m.conn, |h| h.since < before);
        }
        None
    }

    /// Records held or awaiting a verdict.
    pub(super) fn busy(&self) -> bool {
        self.live > 0 || !self.verdicts.is_empty()
    }

    fn awaits_verdict(&self, conn: u32) -> bool {
        !self.verdicts.is_empty() && self.verdicts.iter().any(|(s, _)| s.conn == conn)
    }

    /// Keep the acknowledged record `s` until `until` for the verdict on
    /// its retransmission (its connection stays watched); false if
    /// [`VERDICT_CAP`] records already wait.
    pub(super) fn await_verdict(&mut self, s: &Sample, until: u64) -> bool {
        if self.verdicts.len() >= VERDICT_CAP {
            return false;
        }
        let c = s.conn;
        if !self.awaits_verdict(c) && self.lists.get(c as usize).is_none_or(|l| l.0 == NIL) {
            // The ACK that emptied its list has just asked to unwatch it.
            if self.watch.last() == Some(&(c, false)) {
                self.watch.pop();
            } else {
                self.watch.push((c, true));
            }
        }
        self.verdicts.push_back((*s, until));
        true
    }

    /// Take the oldest record awaiting its verdict that `pick` (given the
    /// record and its time limit) chooses; its connection is unwatched
    /// when nothing else of it waits.
    pub(super) fn take_verdict(&mut self, pick: impl Fn(&Sample, u64) -> bool) -> Option<Sample> {
        if self.verdicts.is_empty() {
            return None;
        }
        let i = self.verdicts.iter().position(|(s, until)| pick(s, *until))?;
        let (s, _) = self.verdicts.remove(i)?;
        self.released(s.conn);
        Some(s)
    }

    /// The oldest record awaiting its verdict, if its time is over at
    /// `now` (records wait in the order of their ACKs, so only the front
    /// is looked at).
    pub(super) fn take_expired_verdict(&mut self, now: u64) -> Option<Sample> {
        let &(_, until) = self.verdicts.front()?;
        if until > now {
            return None;
        }
        let (s, _) = self.verdicts.pop_front()?;
        self.released(s.conn);
        Some(s)
    }

    fn released(&mut self, conn: u32) {
        if !self.awaits_verdict(conn) && self.lists.get(conn as usize).is_none_or(|l| l.0 == NIL) {
            self.watch.push((conn, false));
        }
    }
}
