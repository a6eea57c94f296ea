//! Connections the application has closed while their socket finishes the
//! close handshake (delivers what was queued, exchanges FINs), until the
//! linger deadline.
//!
//! Each shard keeps its own list, looked at only when the shard was touched
//! (its state can change only then); the deadlines are kept in one queue in
//! the order they were set (every deadline is now plus the same linger, so
//! the queue is in deadline order), so expiry looks at the front only. An
//! entry of the queue whose connection left early is skipped when it comes
//! up. At most `cap` connections close at once: past that, the one nearest
//! its deadline goes first.

use std::collections::VecDeque;

use smoltcp::iface::SocketHandle;

/// One closing connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Zombie {
    pub handle: SocketHandle,
    pub deadline: u64,
    /// The local port it holds (0: none), and its flow key.
    pub port: u16,
    pub flow: u64,
}

pub(super) struct Closing {
    shards: Vec<Vec<Zombie>>,
    /// (deadline, shard, handle), in deadline order.
    order: VecDeque<(u64, usize, SocketHandle)>,
    len: usize,
    cap: usize,
}

impl Closing {
    /// For `shards` shards, at most `cap` at once.
    pub(super) fn new(shards: usize, cap: usize) -> Closing {
        Closing {
            shards: (0..shards).map(|_| Vec::new()).collect(),
            order: VecDeque::with_capacity(cap.min(1 << 16) + 1),
            len: 0,
            cap: cap.max(1),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_full(&self) -> bool {
        self.len >= self.cap
    }

    pub(super) fn push(&mut self, si: usize, z: Zombie) {
        if self.order.len() >= self.cap {
            // Room in the queue: drop the entries of connections gone.
            let shards = &self.shards;
            self.order.retain(|&(d, s, h)| shards[s].iter().any(|z| z.handle == h && z.deadline == d));
        }
        self.shards[si].push(z);
        self.order.push_back((z.deadline, si, z.handle));
        self.len += 1;
    }

    /// The closing connections of shard `si`.
    pub(super) fn of(&self, si: usize) -> &[Zombie] {
        &self.shards[si]
    }

    /// Remove `h` from shard `si`'s list, if there.
    pub(super) fn remove(&mut self, si: usize, h: SocketHandle) -> Option<Zombie> {
        let list = &mut self.shards[si];
        let i = list.iter().position(|z| z.handle == h)?;
        self.len -= 1;
        Some(list.swap_remove(i))
    }

    /// The closing connection whose deadline is the earliest, if it is due
    /// by `now` (or `now` is `u64::MAX`: the earliest, due or not).
    pub(super) fn pop_due(&mut self, now: u64) -> Option<(usize, Zombie)> {
        while let Some(&(d, si, h)) = self.order.front() {
            let live = self.shards[si].iter().any(|z| z.handle == h && z.deadline == d);
            if !live {
                self.order.pop_front();
                continue;
            }
            if d > now {
                return None;
            }
            self.order.pop_front();
            return self.remove(si, h).map(|z| (si, z));
        }
        None
    }

    /// Every closing connection, by shard.
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &Zombie)> {
        self.shards.iter().enumerate().flat_map(|(si, l)| l.iter().map(move |z| (si, z)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(i: usize, deadline: u64) -> Zombie {
        Zombie { handle: SocketHandle::default(), deadline, port: i as u16, flow: i as u64 }
    }

    #[test]
    fn expiry_takes_the_earliest_live_one_and_skips_those_gone() {
        let mut c = Closing::new(4, 10);
        // Handles differ by shard here (the default handle in each).
        c.push(0, z(0, 100));
        c.push(1, z(1, 200));
        c.push(2, z(2, 300));
        assert_eq!(c.len(), 3);
        // Shard 1's left early.
        assert!(c.remove(1, SocketHandle::default()).is_some());
        assert_eq!(c.pop_due(150).map(|(s, z)| (s, z.deadline)), Some((0, 100)));
        assert_eq!(c.pop_due(250), None, "shard 1's is gone, shard 2's not due");
        assert_eq!(c.pop_due(u64::MAX).map(|(s, _)| s), Some(2));
        assert_eq!(c.len(), 0);
    }
}
