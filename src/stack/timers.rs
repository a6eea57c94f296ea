//! When each shard's smoltcp needs polling again on its own (its
//! retransmission timer, a SYN or window probe, a neighbour it waits for):
//! the earliest `Interface::poll_at` of the shard's sockets, taken after
//! each egress of the shard, kept in a heap. A shard whose time has come is
//! put on the egress list whatever else the loop is doing, and a blocking
//! loop sleeps no longer than the earliest time. (Loss recovery's timers
//! are its own: `recovery`.)
//!
//! Each shard has at most one live entry, the earliest; an entry made
//! stale by an earlier one is skipped when it comes up, and the heap drops
//! stale entries rather than grow past its start-up size.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Deadlines of the shards' smoltcp timers.
pub(super) struct ShardTimers {
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    /// Each shard's live deadline (ns; 0: none).
    at: Vec<u64>,
}

impl ShardTimers {
    pub(super) fn new(shards: usize) -> ShardTimers {
        ShardTimers { heap: BinaryHeap::with_capacity(4 * shards), at: vec![0; shards] }
    }

    /// Shard `si` needs polling at `deadline` (ns), unless it already does
    /// earlier.
    pub(super) fn arm(&mut self, si: usize, deadline: u64) {
        let deadline = deadline.max(1);
        let cur = self.at[si];
        if cur != 0 && cur <= deadline {
            return;
        }
        self.at[si] = deadline;
        if self.heap.len() == self.heap.capacity() {
            let at = &self.at;
            self.heap.retain(|Reverse((d, s))| at[*s] == *d);
        }
        self.heap.push(Reverse((deadline, si)));
    }

    /// The next shard due by `now`, if any (its entry is consumed).
    pub(super) fn pop_due(&mut self, now: u64) -> Option<usize> {
        while let Some(&Reverse((d, si))) = self.heap.peek() {
            if d > now {
                return None;
            }
            self.heap.pop();
            if self.at[si] == d {
                self.at[si] = 0;
                return Some(si);
            }
        }
        None
    }

    /// The earliest live deadline (ns), if any.
    pub(super) fn next(&mut self) -> Option<u64> {
        while let Some(&Reverse((d, si))) = self.heap.peek() {
            if self.at[si] == d {
                return Some(d);
            }
            self.heap.pop();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_come_due_in_order_once_each_at_their_earliest_time() {
        let mut t = ShardTimers::new(4);
        t.arm(2, 300);
        t.arm(1, 100);
        t.arm(2, 200); // earlier: replaces 300
        t.arm(1, 500); // later: 100 stands
        assert_eq!(t.next(), Some(100));
        assert_eq!(t.pop_due(99), None);
        assert_eq!(t.pop_due(250), Some(1));
        assert_eq!(t.pop_due(250), Some(2));
        assert_eq!(t.pop_due(1000), None, "the stale 300 of shard 2 is not due again");
        assert_eq!(t.next(), None);
    }

    #[test]
    fn the_heap_never_grows_past_its_size() {
        let mut t = ShardTimers::new(2);
        let cap = t.heap.capacity();
        for d in (1..10_000u64).rev() {
            t.arm((d % 2) as usize, d);
        }
        assert!(t.heap.capacity() == cap, "{} > {cap}", t.heap.capacity());
        assert_eq!((t.pop_due(1), t.pop_due(2)), (Some(1), Some(0)));
    }
}
