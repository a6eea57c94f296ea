//! TCP sequence-number arithmetic (RFC 793's modulo-2^32 comparisons).

/// Is `a` before `b`?
pub fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// Is `a` before `b`, or `b`?
pub fn seq_le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

/// Is `seq` within `[lo, lo + len)`?
pub fn in_window(seq: u32, lo: u32, len: u32) -> bool {
    seq_le(lo, seq) && seq.wrapping_sub(lo) < len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_test_wraps() {
        assert!(in_window(5, u32::MAX - 4, 100));
        assert!(!in_window(u32::MAX - 5, u32::MAX - 4, 100));
        assert!(!in_window(96, u32::MAX - 4, 100));
    }
}
