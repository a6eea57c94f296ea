//! Local ports for outbound connections.

/// Local ports held by outbound connections, live or closing (one bit a
/// port), and where the next search starts: a port is handed out again only
/// once its socket is gone.
pub struct PortSet {
    bits: Vec<u64>,
    next: u16,
}

impl PortSet {
    pub fn new(first: u16) -> Self {
        PortSet { bits: vec![0; 65536 / 64], next: first }
    }

    /// Mark `port` held (or free). Port 0 (an accepted connection) is never held.
    pub fn set(&mut self, port: u16, held: bool) {
        if port == 0 {
            return;
        }
        let (w, b) = (usize::from(port) / 64, 1u64 << (port % 64));
        if held {
            self.bits[w] |= b;
        } else {
            self.bits[w] &= !b;
        }
    }

    pub fn is_held(&self, port: u16) -> bool {
        self.bits[usize::from(port) / 64] & (1u64 << (port % 64)) != 0
    }

    /// The first port not held, from where the last search ended, wrapping
    /// within `lo..=hi`; the search then moves past it.
    pub fn next_free(&mut self, lo: u16, hi: u16) -> Option<u16> {
        self.next_free_where(lo, hi, |_| true)
    }

    /// The same, among the ports `mine` accepts (one loop of several takes
    /// only its share of the range, so two loops never open the same
    /// 4-tuple).
    pub fn next_free_where(&mut self, lo: u16, hi: u16, mine: impl Fn(u16) -> bool) -> Option<u16> {
        let span = u32::from(hi.checked_sub(lo)?) + 1;
        let mut port = self.next.clamp(lo, hi);
        for _ in 0..span {
            let following = if port >= hi { lo } else { port + 1 };
            if !self.is_held(port) && mine(port) {
                self.next = following;
                return Some(port);
            }
            port = following;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `connect` cycled local ports without checking them, so
    /// past 4,536 outbound connections a live 4-tuple was reused. A held
    /// port is skipped; when all are held, there is none (an error, not a
    /// duplicate); a freed port comes back.
    #[test]
    fn local_ports_are_never_handed_out_twice_while_held() {
        let (lo, hi) = (61000u16, 61009u16);
        let mut held = PortSet::new(lo);
        let mut got = Vec::new();
        while let Some(p) = held.next_free(lo, hi) {
            held.set(p, true);
            got.push(p);
            assert!(got.len() <= 10, "handed out more ports than the range has: {got:?}");
        }
        assert_eq!(got, (lo..=hi).collect::<Vec<_>>());
        // Free two in the middle: exactly those come back, in order from
        // where the search stopped.
        held.set(61003, false);
        held.set(61007, false);
        assert_eq!(held.next_free(lo, hi), Some(61003));
        held.set(61003, true);
        assert_eq!(held.next_free(lo, hi), Some(61007));
        held.set(61007, true);
        assert_eq!(held.next_free(lo, hi), None);
        // The full default range, 4536 ports, then one more: none.
        let mut held = PortSet::new(61000);
        for _ in 0..4536 {
            let p = held.next_free(61000, 65535).unwrap();
            held.set(p, true);
        }
        assert_eq!(held.next_free(61000, 65535), None);
    }
}
