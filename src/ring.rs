//! A bounded single-producer single-consumer ring of fixed-size records
//! (any `Copy` record): the sampler's samples ([`crate::sampler::ring`]),
//! the packet capture's frames ([`crate::capture`]), the frames one loop
//! hands another ([`crate::stack::handoff`]).
//!
//! The producer is the pinned event loop: `push` never blocks, allocates or
//! formats. When the ring is full the sample is dropped and counted; the
//! consumer (the reporter thread, never on a pinned core) reads the count to
//! report overflow. Indices are free-running u64s; slot = index & mask.
//!
//! Memory ordering, in the manner of rtrb: the producer writes a slot, then
//! publishes `head` with Release; the consumer reads `head` with Acquire
//! (pairs with that Release) before reading the slot. The consumer frees a
//! slot by publishing `tail` with Release; the producer reads `tail` with
//! Acquire (pairs with it) before overwriting the slot. Each side caches the
//! other's index and reloads it only when the cached value says full (or
//! empty), so the common case touches one shared cache line.

#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

struct Shared<T> {
    slots: Box<[UnsafeCell<T>]>,
    mask: u64,
    /// Next index the producer writes. Written by the producer only.
    head: CachePadded<AtomicU64>,
    /// Next index the consumer reads. Written by the consumer only.
    tail: CachePadded<AtomicU64>,
    /// Records dropped because the ring was full. Written by the producer
    /// only (Relaxed: a statistic, not a synchronisation point).
    dropped: CachePadded<AtomicU64>,
}

// SAFETY: slots are only accessed under the head/tail protocol above: a slot
// is written by the producer only while it is outside [tail, head) and read
// by the consumer only while inside it, so no slot is ever accessed by both
// threads at once. `T` is `Copy` plain data.
unsafe impl<T: Copy + Send> Sync for Shared<T> {}
// SAFETY: as above; the shared state owns plain data only.
unsafe impl<T: Copy + Send> Send for Shared<T> {}

/// The writing end; one per pinned loop.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    head: u64,
    cached_tail: u64,
    dropped: u64,
}

/// The reading end; owned by the reporter thread.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    tail: u64,
    cached_head: u64,
}

impl<T: Copy> std::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Producer {{ capacity: {}, head: {}, dropped: {} }}", self.capacity(), self.head, self.dropped)
    }
}

impl<T: Copy> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Consumer {{ tail: {}, waiting: {} }}", self.tail, self.len())
    }
}

/// A ring of `capacity` records of type `T` (a power of two, at least 2).
pub fn ring_of<T: Copy + Default + Send>(capacity: usize) -> Result<(Producer<T>, Consumer<T>), String> {
    if !capacity.is_power_of_two() || capacity < 2 {
        return Err(format!("ring capacity {capacity}: must be a power of two >= 2"));
    }
    let slots: Box<[UnsafeCell<T>]> = (0..capacity).map(|_| UnsafeCell::new(T::default())).collect();
    let shared = Arc::new(Shared {
        slots,
        mask: capacity as u64 - 1,
        head: CachePadded::new(AtomicU64::new(0)),
        tail: CachePadded::new(AtomicU64::new(0)),
        dropped: CachePadded::new(AtomicU64::new(0)),
    });
    Ok((
        Producer { shared: shared.clone(), head: 0, cached_tail: 0, dropped: 0 },
        Consumer { shared, tail: 0, cached_head: 0 },
    ))
}

impl<T: Copy> Producer<T> {
    /// Record `s`; false (and counted) if the ring is full. The sample
    /// becomes visible to the consumer at the next [`Producer::publish`]
    /// (the loop calls it once per iteration: one shared-line store per
    /// iteration instead of one per sample).
    #[inline]
    pub fn push(&mut self, s: &T) -> bool {
        self.push_with(|slot| *slot = *s)
    }

    /// Record what `fill` writes into the next slot, in place (a large
    /// record is not built and copied); false (and counted) if the ring is
    /// full, and `fill` is not called.
    #[inline]
    pub fn push_with(&mut self, fill: impl FnOnce(&mut T)) -> bool {
        let cap = self.shared.mask + 1;
        if self.head - self.cached_tail == cap {
            self.cached_tail = self.shared.tail.load(Ordering::Acquire);
            if self.head - self.cached_tail == cap {
                self.dropped += 1;
                self.shared.dropped.store(self.dropped, Ordering::Relaxed);
                self.publish();
                return false;
            }
        }
        let slot = &self.shared.slots[(self.head & self.shared.mask) as usize];
        // SAFETY: head - tail < capacity, so this slot is outside [tail, head):
        // the consumer does not read it until `head` is published below, so
        // `fill` holds the only reference to it while it runs.
        fill(unsafe { &mut *slot.get() });
        self.head += 1;
        true
    }

    /// Make every pushed sample visible to the consumer.
    #[inline]
    pub fn publish(&mut self) {
        self.shared.head.store(self.head, Ordering::Release);
    }

    /// Samples dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn capacity(&self) -> usize {
        self.shared.slots.len()
    }
}

impl<T: Copy> Consumer<T> {
    /// Take the oldest sample, if any.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        self.pop_with(|s| *s)
    }

    /// Read the oldest record in place with `read`, then free its slot.
    #[inline]
    pub fn pop_with<R>(&mut self, read: impl FnOnce(&T) -> R) -> Option<R> {
        if self.tail == self.cached_head {
            self.cached_head = self.shared.head.load(Ordering::Acquire);
            if self.tail == self.cached_head {
                return None;
            }
        }
        let slot = &self.shared.slots[(self.tail & self.shared.mask) as usize];
        // SAFETY: tail < head (Acquire above): the producer wrote this slot
        // and will not touch it again until `tail` moves past it below, so
        // `read` holds a shared reference nobody writes through.
        let r = read(unsafe { &*slot.get() });
        self.tail += 1;
        self.shared.tail.store(self.tail, Ordering::Release);
        Some(r)
    }

    /// As [`Consumer::pop_with`], with the slot mutable: `read` may clear
    /// what it held (a password) before the producer reuses it.
    #[inline]
    pub fn pop_with_mut<R>(&mut self, read: impl FnOnce(&mut T) -> R) -> Option<R> {
        if self.tail == self.cached_head {
            self.cached_head = self.shared.head.load(Ordering::Acquire);
            if self.tail == self.cached_head {
                return None;
            }
        }
        let slot = &self.shared.slots[(self.tail & self.shared.mask) as usize];
        // SAFETY: as in `pop_with`: the producer will not touch this slot
        // until `tail` moves past it below, so `read` holds the only
        // reference to it.
        let r = read(unsafe { &mut *slot.get() });
        self.tail += 1;
        self.shared.tail.store(self.tail, Ordering::Release);
        Some(r)
    }

    /// Samples the producer has dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Samples waiting to be read.
    pub fn len(&self) -> usize {
        (self.shared.head.load(Ordering::Acquire) - self.tail) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record whose every word is derived from `n`, so a torn record
    /// (words from two different writes) is detectable.
    type Rec = [u64; 12];
    fn sample(n: u64) -> Rec {
        std::array::from_fn(|i| if i == 0 { n } else { n.wrapping_mul(2 * i as u64 + 1) ^ i as u64 })
    }

    fn ring(capacity: usize) -> Result<(Producer<Rec>, Consumer<Rec>), String> {
        ring_of(capacity)
    }

    #[test]
    fn capacity_must_be_a_power_of_two() {
        assert!(ring(1000).unwrap_err().contains("1000"));
        assert!(ring(1).is_err());
        assert!(ring(65536).is_ok());
    }

    #[test]
    fn wraps_around_in_order() {
        let (mut p, mut c) = ring(8).unwrap();
        let mut next_in = 0u64;
        let mut next_out = 0u64;
        for round in 0..200u64 {
            for _ in 0..(round % 8) + 1 {
                assert!(p.push(&sample(next_in)));
                next_in += 1;
            }
            p.publish();
            while let Some(s) = c.pop() {
                assert_eq!(s, sample(next_out));
                next_out += 1;
            }
        }
        assert_eq!(next_in, next_out);
        assert!(next_in > 8 * 10, "wrapped many times");
        assert_eq!(p.dropped(), 0);
    }

    #[test]
    fn overflow_drops_and_counts() {
        let (mut p, mut c) = ring(4).unwrap();
        let accepted = (0..10).filter(|&n| p.push(&sample(n))).count();
        p.publish();
        assert_eq!(accepted, 4);
        assert_eq!(p.dropped(), 6);
        assert_eq!(c.dropped(), 6);
        assert_eq!(c.len(), 4);
        assert_eq!(c.pop(), Some(sample(0)));
        assert_eq!(c.pop(), Some(sample(1)));
        assert!(p.push(&sample(100)));
        assert!(p.push(&sample(101)));
        p.publish();
        assert!(!p.push(&sample(102)));
        assert_eq!(c.dropped(), 7);
        let rest: Vec<u64> = std::iter::from_fn(|| c.pop()).map(|s| s[0]).collect();
        assert_eq!(rest, vec![2, 3, 100, 101]);
    }

    /// A writer and a reader on two threads: every record read is one that
    /// was written whole, in order, and read + dropped == written.
    #[test]
    fn concurrent_writer_and_reader_never_tear() {
        const N: u64 = 2_000_000;
        let (mut p, mut c) = ring(1024).unwrap();
        let writer = std::thread::spawn(move || {
            let mut written = 0u64;
            for n in 0..N {
                if p.push(&sample(n)) {
                    written += 1;
                }
                if n % 16 == 0 {
                    p.publish(); // as a loop would, once per iteration
                }
            }
            p.publish();
            (written, p.dropped())
        });
        let mut read = 0u64;
        let mut last: Option<u64> = None;
        loop {
            match c.pop() {
                Some(s) => {
                    assert_eq!(s, sample(s[0]), "torn record");
                    if let Some(l) = last {
                        assert!(s[0] > l, "out of order: {} after {l}", s[0]);
                    }
                    last = Some(s[0]);
                    read += 1;
                }
                None if writer.is_finished() && c.is_empty() => break,
                None => std::hint::spin_loop(),
            }
        }
        let (written, dropped) = writer.join().unwrap();
        assert_eq!(read, written);
        assert_eq!(written + dropped, N);
    }
}
