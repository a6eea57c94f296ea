//! A map from u64 keys with a capacity fixed when it is made: open
//! addressing, linear probing, and backward-shift deletion, so that no
//! removal leaves a tombstone and no insertion ever rehashes or allocates.
//!
//! A general hash map (std's) leaves tombstones behind removals in full
//! groups and, once they use up its spare room, rehashes every entry, or
//! grows: a stall and an allocation on the pinned loop, at a moment set by
//! the order flow. This one keeps at most half its slots full, so a probe
//! is short, and refuses an insertion beyond its capacity instead. Keys
//! (a client's `cl_ord_id`s among them) are hashed with a seed drawn per
//! map, so that no client can choose keys that all fall in one run.

use std::hash::BuildHasher;

#[derive(Debug)]
pub struct FixedMap<V> {
    slots: Vec<Option<(u64, V)>>,
    hasher: foldhash::quality::RandomState,
    shift: u32,
    len: usize,
    cap: usize,
}

impl<V> FixedMap<V> {
    /// Room for `cap` entries (the slots: the power of two at or above 2 x cap).
    pub fn with_capacity(cap: usize) -> Self {
        let n = (2 * cap.max(1)).next_power_of_two();
        let mut slots = Vec::with_capacity(n);
        slots.resize_with(n, || None);
        FixedMap {
            slots,
            hasher: foldhash::quality::RandomState::default(),
            shift: 64 - n.trailing_zeros(),
            len: 0,
            cap,
        }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn len(&self) -> usize {
        self.len
    }

    #[allow(dead_code)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn home(&self, k: u64) -> usize {
        (self.hasher.hash_one(k) >> self.shift) as usize
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn find(&self, k: u64) -> Option<usize> {
        let mut i = self.home(k);
        loop {
            match &self.slots[i] {
                None => return None,
                Some((key, _)) if *key == k => return Some(i),
                Some(_) => i = (i + 1) & self.mask(),
            }
        }
    }

    pub fn get(&self, k: u64) -> Option<&V> {
        self.find(k).and_then(|i| self.slots[i].as_ref().map(|(_, v)| v))
    }

    pub fn get_mut(&mut self, k: u64) -> Option<&mut V> {
        self.find(k).and_then(|i| self.slots[i].as_mut().map(|(_, v)| v))
    }

    pub fn contains_key(&self, k: u64) -> bool {
        self.find(k).is_some()
    }

    /// Insert or replace. False (nothing changed) when `k` is new and the
    /// map holds its capacity already.
    pub fn insert(&mut self, k: u64, v: V) -> bool {
        let mut i = self.home(k);
        loop {
            match &mut self.slots[i] {
                Some((key, old)) if *key == k => {
                    *old = v;
                    return true;
                }
                Some(_) => i = (i + 1) & self.mask(),
                None => {
                    if self.len >= self.cap {
                        return false;
                    }
                    self.slots[i] = Some((k, v));
                    self.len += 1;
                    return true;
                }
            }
        }
    }

    /// Remove `k`, shifting back the entries after it that probed past its
    /// slot, so that every probe still ends at an empty slot.
    pub fn remove(&mut self, k: u64) -> Option<V> {
        let mut hole = self.find(k)?;
        let (_, v) = self.slots[hole].take()?;
        self.len -= 1;
        let mut i = (hole + 1) & self.mask();
        while let Some((key, _)) = &self.slots[i] {
            let home = self.home(*key);
            // Move it into the hole if its home is not in (hole, i]: the
            // distance from home to i is at least the distance from hole to i.
            if (i.wrapping_sub(home) & self.mask()) >= (i.wrapping_sub(hole) & self.mask()) {
                self.slots[hole] = self.slots[i].take();
                hole = i;
            }
            i = (i + 1) & self.mask();
        }
        Some(v)
    }

    pub fn clear(&mut self) {
        if self.len > 0 {
            self.slots.iter_mut().for_each(|s| *s = None);
            self.len = 0;
        }
    }

    /// Every entry, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.slots.iter().filter_map(|s| s.as_ref().map(|(k, v)| (*k, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn behaves_as_a_map_under_churn_without_growing() {
        let mut m = FixedMap::with_capacity(1000);
        let mut model = HashMap::new();
        let slots = m.slots.capacity();
        let mut x = 1u64;
        for step in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Sequential keys (as tokens are) and random ones, mixed.
            let k = if step % 3 == 0 { x % 5000 } else { step / 2 };
            if x % 5 < 2 {
                assert_eq!(m.remove(k), model.remove(&k), "remove {k}");
            } else if model.len() < 1000 || model.contains_key(&k) {
                assert!(m.insert(k, step));
                model.insert(k, step);
            } else {
                assert!(!m.insert(k, step), "full");
            }
            assert_eq!(m.len(), model.len());
            if step % 997 == 0 {
                for (k, v) in &model {
                    assert_eq!(m.get(*k), Some(v));
                }
                assert_eq!(m.iter().count(), model.len());
            }
        }
        assert_eq!(m.slots.capacity(), slots, "never reallocated");
        m.clear();
        assert!(m.is_empty() && m.get(1).is_none());
    }
}
