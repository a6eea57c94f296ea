//! The sampler's ring: the crate's single-producer ring ([`crate::ring`]) of
//! [`Sample`]s, one per pinned loop, drained by the reporter thread.

use super::Sample;

/// Default capacity of a loop's ring.
pub const DEFAULT_CAPACITY: usize = 65536;

/// A loop's writing end.
pub type Producer = crate::ring::Producer<Sample>;
/// The reporter's reading end.
pub type Consumer = crate::ring::Consumer<Sample>;

/// A ring of `capacity` samples (a power of two, at least 2).
pub fn ring(capacity: usize) -> Result<(Producer, Consumer), String> {
    crate::ring::ring_of(capacity)
}
