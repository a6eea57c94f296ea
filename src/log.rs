//! Logging to stderr, one line per event, prefixed with the level.
//!
//! The pinned loop logs connection-level events (idle timeouts, sequence
//! gaps, framing errors, refusals), and a full stderr pipe must never stall
//! it. So, once [`start`] has run, a line is handed to a bounded queue
//! ([`QUEUE_LINES`]) without blocking and written by a `tg-log` thread; a
//! full queue drops the line and counts it. Each call site is also rate
//! limited ([`LINES_PER_SECOND`] lines per second; the rest are counted and
//! not even formatted), so a flood of bad input costs the loop a counter
//! increment. [`flush`] (at exit) waits for the queue and reports the drops.
//! Before [`start`] (and in tests) lines go straight to stderr.

use std::io::Write;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// 0 = errors and warnings only, 1 = info, 2 = debug.
static LEVEL: AtomicU8 = AtomicU8::new(1);

/// Lines the queue holds before it drops.
pub const QUEUE_LINES: usize = 4096;
/// Lines per second one call site may log.
pub const LINES_PER_SECOND: u32 = 20;

static QUEUE: OnceLock<SyncSender<String>> = OnceLock::new();
/// Lines queued and not yet written.
static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);
/// Lines dropped: the queue was full / the call site's rate was exceeded.
static DROPPED_FULL: AtomicU64 = AtomicU64::new(0);
static DROPPED_RATE: AtomicU64 = AtomicU64::new(0);

pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

pub fn enabled(level: u8) -> bool {
    LEVEL.load(Ordering::Relaxed) >= level
}

/// Start the writer thread; from now on logging never blocks the caller.
pub fn start() -> std::io::Result<()> {
    if QUEUE.get().is_some() {
        return Ok(());
    }
    let (tx, rx) = sync_channel::<String>(QUEUE_LINES);
    std::thread::Builder::new().name("tg-log".into()).spawn(move || {
        let stderr = std::io::stderr();
        for line in rx {
            let mut e = stderr.lock();
            let _ = e.write_all(line.as_bytes());
            let _ = e.write_all(b"\n");
            drop(e);
            IN_FLIGHT.fetch_sub(1, Ordering::Release);
        }
    })?;
    let _ = QUEUE.set(tx);
    Ok(())
}

/// (dropped because the queue was full, dropped by the rate limit).
pub fn dropped() -> (u64, u64) {
    (DROPPED_FULL.load(Ordering::Relaxed), DROPPED_RATE.load(Ordering::Relaxed))
}

/// Wait (at most 2 s) until every queued line is written; then say what
/// was dropped, if anything.
pub fn flush() {
    let deadline = Instant::now() + Duration::from_secs(2);
    while IN_FLIGHT.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (full, rate) = dropped();
    if full + rate > 0 {
        eprintln!("tailgate: warn: log: {rate} lines over the rate limit and {full} with the queue full were dropped");
    }
}

/// Hand one line to the writer (or to stderr before [`start`]).
pub fn emit(prefix: &str, args: std::fmt::Arguments<'_>) {
    match QUEUE.get() {
        None => eprintln!("tailgate: {prefix}{args}"),
        Some(q) => {
            IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
            match q.try_send(format!("tailgate: {prefix}{args}")) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
                    DROPPED_FULL.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// One call site's rate limit: [`LINES_PER_SECOND`] per wall second.
#[derive(Debug)]
pub struct RateLimit {
    second: AtomicU64,
    count: AtomicU32,
}

impl RateLimit {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        RateLimit { second: AtomicU64::new(u64::MAX), count: AtomicU32::new(0) }
    }

    /// May this call site log now? Counts the line as dropped if not.
    pub fn allow(&self) -> bool {
        self.allow_at(crate::clock::mono_ns() / 1_000_000_000)
    }

    fn allow_at(&self, second: u64) -> bool {
        if self.second.swap(second, Ordering::Relaxed) != second {
            self.count.store(0, Ordering::Relaxed);
        }
        if self.count.fetch_add(1, Ordering::Relaxed) < LINES_PER_SECOND {
            true
        } else {
            DROPPED_RATE.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => {{
        static RATE: $crate::log::RateLimit = $crate::log::RateLimit::new();
        if RATE.allow() {
            $crate::log::emit("warn: ", format_args!($($arg)*))
        }
    }};
}

#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => {{
        if $crate::log::enabled(1) {
            static RATE: $crate::log::RateLimit = $crate::log::RateLimit::new();
            if RATE.allow() {
                $crate::log::emit("", format_args!($($arg)*))
            }
        }
    }};
}

#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)*) => {{
        if $crate::log::enabled(2) {
            static RATE: $crate::log::RateLimit = $crate::log::RateLimit::new();
            if RATE.allow() {
                $crate::log::emit("debug: ", format_args!($($arg)*))
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_site_logs_at_most_its_rate_per_second_and_counts_the_rest() {
        let r = RateLimit::new();
        let before = dropped().1;
        let allowed = (0..100).filter(|_| r.allow_at(7)).count();
        assert_eq!(allowed, LINES_PER_SECOND as usize);
        assert!(dropped().1 - before >= 100 - u64::from(LINES_PER_SECOND));
        // The next second starts afresh.
        assert!(r.allow_at(8));
    }
}
