//! Time sources. The event loop reads the clock once per iteration and passes
//! the value down; nothing below it reads a clock on its own, except the
//! sampler, which stamps message stages with [`FastClock`].

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock nanoseconds since the Unix epoch (CLOCK_REALTIME, vDSO).
/// Used for the gateway's receive/send timestamps in Ack messages.
#[inline]
pub fn realtime_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// CLOCK_REALTIME - CLOCK_MONOTONIC now (ns, wrapping): add it to a
/// monotonic time for wall-clock time.
#[inline]
pub fn realtime_offset_ns() -> u64 {
    realtime_ns().wrapping_sub(mono_ns())
}

/// Monotonic nanoseconds (CLOCK_MONOTONIC through the vDSO, no `Instant`
/// arithmetic). Used for intervals, timers and latency.
#[inline]
pub fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(t.tv_nsec as u64)
}

/// Cheap timestamps inside one loop iteration, for the sampler: the CPU's
/// time-stamp counter (rdtsc, about 8 ns here against about 21 ns for
/// clock_gettime), converted to CLOCK_MONOTONIC nanoseconds from an anchor
/// the loop sets once per iteration with a real clock read. Re-anchoring
/// every iteration keeps the conversion's error to the rate error over one
/// iteration (nanoseconds), so the stamps compare with arrival times from
/// the XDP program and the kernel. Without an invariant TSC (or off x86_64)
/// every call reads CLOCK_MONOTONIC.
#[derive(Debug, Clone, Copy)]
pub struct FastClock {
    base_ns: u64,
    base_tsc: u64,
    /// Nanoseconds per TSC tick, times 2^32.
    mult: u64,
    tsc: bool,
}

impl FastClock {
    /// Every read is a clock_gettime.
    pub fn disabled() -> FastClock {
        FastClock { base_ns: 0, base_tsc: 0, mult: 0, tsc: false }
    }

    /// Calibrate against CLOCK_MONOTONIC (about 10 ms, once per loop).
    pub fn calibrate() -> FastClock {
        let mut c = FastClock::disabled();
        if !invariant_tsc() {
            return c;
        }
        let (n0, t0) = (mono_ns(), rdtsc());
        std::thread::sleep(std::time::Duration::from_millis(10));
        let (n1, t1) = (mono_ns(), rdtsc());
        let (dn, dt) = (n1.saturating_sub(n0), t1.saturating_sub(t0));
        if dt == 0 || dn == 0 {
            return c;
        }
        c.mult = ((u128::from(dn) << 32) / u128::from(dt)).min(u128::from(u64::MAX)) as u64;
        c.tsc = c.mult != 0;
        c
    }

    /// Uses the TSC (else every read is a clock_gettime).
    pub fn uses_tsc(&self) -> bool {
        self.tsc
    }

    /// Read CLOCK_MONOTONIC and anchor the TSC to it; returns the time.
    #[inline]
    pub fn anchor(&mut self) -> u64 {
        let n = mono_ns();
        if self.tsc {
            self.base_ns = n;
            self.base_tsc = rdtsc();
        }
        n
    }

    /// Monotonic nanoseconds, from the TSC since the last anchor.
    #[inline]
    pub fn now(&self) -> u64 {
        if !self.tsc {
            return mono_ns();
        }
        let d = rdtsc().wrapping_sub(self.base_tsc);
        self.base_ns + ((u128::from(d) * u128::from(self.mult)) >> 32) as u64
    }
}

/// constant_tsc and nonstop_tsc: the TSC ticks at one rate in every state.
fn invariant_tsc() -> bool {
    cfg!(target_arch = "x86_64")
        && std::fs::read_to_string("/proc/cpuinfo")
            .map(|s| {
                s.lines().find(|l| l.starts_with("flags")).is_some_and(|l| {
                    l.split_whitespace().any(|f| f == "constant_tsc")
                        && l.split_whitespace().any(|f| f == "nonstop_tsc")
                })
            })
            .unwrap_or(false)
}

#[inline]
fn rdtsc() -> u64 {
    crate::sys::tsc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_clock_tracks_the_monotonic_clock() {
        let mut c = FastClock::calibrate();
        c.anchor();
        for _ in 0..5 {
            std::thread::sleep(std::time::Duration::from_millis(2));
            let (a, f, b) = (mono_ns(), c.now(), mono_ns());
            // Within 20 us of the real clock 2 ms after the anchor (the
            // calibration error over 2 ms is far smaller).
            assert!(f + 20_000 >= a && f <= b + 20_000, "{a} {f} {b} tsc={}", c.uses_tsc());
            c.anchor();
        }
    }
}
