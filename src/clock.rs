//! Time sources. The event loop reads the clock once per iteration and passes
//! the value down; nothing below it reads a clock on its own.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock nanoseconds since the Unix epoch (CLOCK_REALTIME, vDSO).
/// Used for the gateway's receive/send timestamps in Ack messages.
#[inline]
pub fn realtime_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Monotonic nanoseconds since the first call in this process
/// (CLOCK_MONOTONIC, vDSO). Used for intervals, timers and latency.
#[inline]
pub fn mono_ns() -> u64 {
    base().elapsed().as_nanos() as u64
}
