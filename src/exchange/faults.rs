//! The faults a test asks the simulator for (`tailgate exchange --inject`):
//!
//! * `slow:EVERY_K:US`: every K-th order is answered US microseconds late
//!   (the matching engine spins: every session waits, as behind a slow venue);
//! * `reject:EVERY_K`: every K-th order is rejected (reason Other);
//! * `drop:AFTER_N`: the session that sends the N-th order is reset;
//! * `mute`: no server heartbeats.

/// What to do with the order just counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    Reject,
    Drop,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    pub slow: Option<(u64, u64)>,
    pub reject_every: Option<u64>,
    pub drop_after: Option<u64>,
    pub mute: bool,
    /// Orders seen, and faults carried out.
    pub orders: u64,
    pub slowed: u64,
    pub rejected: u64,
    pub dropped: u64,
}

impl Faults {
    /// Add one `--inject` spec.
    pub fn apply(&mut self, spec: &str) -> Result<(), String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let num = |s: &str, what: &str| -> Result<u64, String> {
            s.parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("--inject {spec}: {what} must be a positive number"))
        };
        match parts.as_slice() {
            ["slow", k, us] => self.slow = Some((num(k, "EVERY_K")?, num(us, "US")?.min(1_000_000))),
            ["reject", k] => self.reject_every = Some(num(k, "EVERY_K")?),
            ["drop", n] => self.drop_after = Some(num(n, "AFTER_N")?),
            ["mute"] => self.mute = true,
            _ => {
                return Err(format!("--inject {spec}: expected slow:EVERY_K:US, reject:EVERY_K, drop:AFTER_N or mute"))
            }
        }
        Ok(())
    }

    pub fn any(&self) -> bool {
        self.slow.is_some() || self.reject_every.is_some() || self.drop_after.is_some() || self.mute
    }

    /// Count an order and carry out what is due (a slow answer spins here).
    pub fn on_order(&mut self) -> Action {
        self.orders += 1;
        let n = self.orders;
        if let Some((k, us)) = self.slow {
            if n % k == 0 {
                self.slowed += 1;
                let until = crate::clock::mono_ns() + us * 1000;
                while crate::clock::mono_ns() < until {
                    std::hint::spin_loop();
                }
            }
        }
        if self.drop_after == Some(n) {
            self.dropped += 1;
            return Action::Drop;
        }
        if self.reject_every.is_some_and(|k| n % k == 0) {
            self.rejected += 1;
            return Action::Reject;
        }
        Action::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_fire_on_their_orders() {
        let mut f = Faults::default();
        f.apply("reject:3").unwrap();
        f.apply("drop:5").unwrap();
        f.apply("mute").unwrap();
        f.apply("slow:2:1").unwrap();
        let got: Vec<Action> = (0..6).map(|_| f.on_order()).collect();
        use Action::*;
        assert_eq!(got, vec![None, None, Reject, None, Drop, Reject]);
        assert_eq!((f.slowed, f.rejected, f.dropped), (3, 2, 1));
        assert!(f.mute && f.any());
        for bad in ["slow:0:5", "reject", "drop:x", "late:1", "slow:1"] {
            assert!(Faults::default().apply(bad).unwrap_err().contains(bad), "{bad}");
        }
    }
}
