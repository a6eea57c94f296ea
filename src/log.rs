//! Minimal logging to stderr: one line per event, prefixed with the level.
//! Never used on the per-message hot path, only for connection-level events
//! (open, close with reason) and start-up/shutdown.

use std::sync::atomic::{AtomicU8, Ordering};

/// 0 = errors and warnings only, 1 = info, 2 = debug.
static LEVEL: AtomicU8 = AtomicU8::new(1);

pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

pub fn enabled(level: u8) -> bool {
    LEVEL.load(Ordering::Relaxed) >= level
}

#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => { eprintln!("tailgate: warn: {}", format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { if $crate::log::enabled(1) { eprintln!("tailgate: {}", format_args!($($arg)*)) } };
}

#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)*) => { if $crate::log::enabled(2) { eprintln!("tailgate: debug: {}", format_args!($($arg)*)) } };
}
