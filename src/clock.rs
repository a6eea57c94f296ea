//! Time sources. The event loop reads the clock once per iteration and passes
//! the value down; nothing below it reads a clock on its own.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock nanoseconds since the Unix epoch (CLOCK_REALTIME, vDSO).
/// Used for the gateway's receive/send timestamps in Ack messages.
#[inline]
pub fn realtime_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Monotonic nanoseconds (CLOCK_MONOTONIC through the vDSO, no `Instant`
/// arithmetic). Used for intervals, timers and latency.
#[inline]
pub fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(t.tv_nsec as u64)
}
