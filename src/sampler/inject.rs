//! Fault injection, to prove that attribution names the right cause.
//!
//! * `stall:EVERY_MS:DURATION_US`: every EVERY_MS the poll loop spins for
//!   DURATION_US at the end of an iteration, as a preemption or a page
//!   fault would stall it.
//! * `slow-handler:EVERY_N:DURATION_US`: every EVERY_N-th message spins for
//!   DURATION_US between being parsed and being handled.
//! * `loss:EVERY_N`: the XDP program drops every EVERY_N-th TCP segment that
//!   carries payload to the stack (xdp backend only; the peer retransmits).
//! * `tx-loss:EVERY_N`: the xdp backend drops every EVERY_N-th TCP segment
//!   with payload that it transmits, before the TX ring (the stack, smoltcp,
//!   retransmits: this measures its retransmission timeout).
//!
//! Spinning, not sleeping: the duration is exact and the core stays busy,
//! which is what a stall looks like from the outside. Every injection is
//! counted and printed at exit, so nobody mistakes an injected run for a
//! real one.

/// Parsed `--inject` specs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InjectConfig {
    /// (every ns, duration ns)
    pub stall: Option<(u64, u64)>,
    /// (every N messages, duration ns)
    pub slow_handler: Option<(u64, u64)>,
    /// Drop every N-th data segment (XDP).
    pub loss_every: Option<u32>,
    /// Drop every N-th data segment the stack transmits (xdp backend).
    pub tx_loss_every: Option<u32>,
}

impl InjectConfig {
    /// Add one `--inject` spec.
    pub fn apply(&mut self, spec: &str) -> Result<(), String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let num = |s: &str, what: &str| -> Result<u64, String> {
            match s.parse::<u64>() {
                Ok(0) | Err(_) => Err(format!("--inject {spec:?}: {what} must be a whole number > 0, got {s:?}")),
                Ok(n) => Ok(n),
            }
        };
        match parts.as_slice() {
            ["stall", every_ms, dur_us] => {
                let every = num(every_ms, "EVERY_MS")? * 1_000_000;
                let dur = num(dur_us, "DURATION_US")? * 1000;
                if dur >= every {
                    return Err(format!("--inject {spec:?}: the stall must be shorter than its period"));
                }
                self.stall = Some((every, dur));
            }
            ["slow-handler", every_n, dur_us] => {
                self.slow_handler = Some((num(every_n, "EVERY_N")?, num(dur_us, "DURATION_US")? * 1000));
            }
            [which @ ("loss" | "tx-loss"), every_n] => {
                let n = num(every_n, "EVERY_N")?;
                if n < 2 || n > u64::from(u32::MAX) {
                    return Err(format!("--inject {spec:?}: EVERY_N must be 2..={}", u32::MAX));
                }
                if *which == "loss" {
                    self.loss_every = Some(n as u32);
                } else {
                    self.tx_loss_every = Some(n as u32);
                }
            }
            _ => {
                return Err(format!(
                    "--inject {spec:?}: expected stall:EVERY_MS:DURATION_US, slow-handler:EVERY_N:DURATION_US, \
                     loss:EVERY_N or tx-loss:EVERY_N"
                ))
            }
        }
        Ok(())
    }

    /// One line for the log: what is injected.
    pub fn describe(&self) -> String {
        let mut v = Vec::new();
        if let Some((every, dur)) = self.stall {
            v.push(format!("loop stall of {} us every {} ms", dur / 1000, every / 1_000_000));
        }
        if let Some((n, dur)) = self.slow_handler {
            v.push(format!("slow handler of {} us every {n} messages", dur / 1000));
        }
        if let Some(n) = self.loss_every {
            v.push(format!("loss of every {n}th TCP data segment in (XDP)"));
        }
        if let Some(n) = self.tx_loss_every {
            v.push(format!("loss of every {n}th TCP data segment out (xdp TX)"));
        }
        v.join("; ")
    }

    pub fn any(&self) -> bool {
        self.stall.is_some() || self.slow_handler.is_some() || self.loss_every.is_some() || self.tx_loss_every.is_some()
    }
}

/// The loop-side injector: stall and slow handler.
#[derive(Debug, Default)]
pub struct Injector {
    cfg: InjectConfig,
    next_stall: u64,
    messages: u64,
    pub stalls: u64,
    pub slow_handlers: u64,
}

impl Injector {
    pub fn new(cfg: InjectConfig) -> Self {
        Injector { cfg, ..Injector::default() }
    }

    pub fn active(&self) -> bool {
        self.cfg.stall.is_some() || self.cfg.slow_handler.is_some()
    }

    /// End of a loop iteration at `now`: stall if one is due. True when it
    /// stalled.
    #[inline]
    pub fn maybe_stall(&mut self, now: u64) -> bool {
        let Some((every, dur)) = self.cfg.stall else { return false };
        if self.next_stall == 0 {
            self.next_stall = now + every;
        } else if now >= self.next_stall {
            self.next_stall = now + every;
            self.stalls += 1;
            spin_for(dur);
            return true;
        }
        false
    }

    /// A message was parsed: make its handler slow if it is the N-th. True
    /// when it did.
    #[inline]
    pub fn maybe_slow_handler(&mut self) -> bool {
        let Some((every, dur)) = self.cfg.slow_handler else { return false };
        self.messages += 1;
        if self.messages % every == 0 {
            self.slow_handlers += 1;
            spin_for(dur);
            return true;
        }
        false
    }
}

fn spin_for(ns: u64) {
    let end = crate::clock::mono_ns() + ns;
    while crate::clock::mono_ns() < end {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        let mut c = InjectConfig::default();
        c.apply("stall:50:2000").unwrap();
        c.apply("slow-handler:100:500").unwrap();
        c.apply("loss:20").unwrap();
        c.apply("tx-loss:30").unwrap();
        assert_eq!(c.tx_loss_every, Some(30));
        assert_eq!(c.stall, Some((50_000_000, 2_000_000)));
        assert_eq!(c.slow_handler, Some((100, 500_000)));
        assert_eq!(c.loss_every, Some(20));
        for (bad, says) in [
            ("stall:0:10", "EVERY_MS"),
            ("stall:1:1000", "shorter"),
            ("slow-handler:x:5", "EVERY_N"),
            ("loss:1", "2..="),
            ("loss", "expected"),
            ("jitter:1:2", "expected"),
        ] {
            let e = InjectConfig::default().apply(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn slow_handler_hits_every_nth_message() {
        let mut i = Injector::new(InjectConfig { slow_handler: Some((3, 1)), ..Default::default() });
        let hit: Vec<usize> = (0..10).filter(|_| i.maybe_slow_handler()).collect();
        assert_eq!(i.slow_handlers, 3);
        assert_eq!(hit, vec![2, 5, 8]);
    }

    #[test]
    fn stall_fires_once_per_period() {
        let mut i = Injector::new(InjectConfig { stall: Some((1_000, 1)), ..Default::default() });
        assert!(!i.maybe_stall(10));
        assert!(!i.maybe_stall(500));
        assert_eq!(i.stalls, 0);
        assert!(i.maybe_stall(1_010));
        assert!(!i.maybe_stall(1_020));
        assert_eq!(i.stalls, 1);
    }
}
