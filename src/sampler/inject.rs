//! Fault injection, to prove that attribution names the right cause.
//!
//! * `stall:EVERY_MS:DURATION_US`: every EVERY_MS the poll loop spins for
//!   DURATION_US at the end of an iteration, as a preemption or a page
//!   fault would stall it.
//! * `slow-handler:EVERY_N:DURATION_US`: every EVERY_N-th message spins for
//!   DURATION_US between being parsed and being handled.
//! * `page-faults:EVERY_N:PAGES`: every EVERY_N-th message's handler maps
//!   PAGES fresh anonymous pages, writes one byte into each (a page fault
//!   each) and unmaps them: a page-fault storm, for the off-CPU trace.
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
    /// (every N messages, pages)
    pub page_faults: Option<(u64, u64)>,
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
            ["page-faults", every_n, pages] => {
                let pages = num(pages, "PAGES")?;
                if pages > 65_536 {
                    return Err(format!("--inject {spec:?}: PAGES must be at most 65536 (256 MiB)"));
                }
                self.page_faults = Some((num(every_n, "EVERY_N")?, pages));
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
                     page-faults:EVERY_N:PAGES, loss:EVERY_N or tx-loss:EVERY_N"
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
        if let Some((n, pages)) = self.page_faults {
            v.push(format!("a storm of {pages} page faults in every {n}th message's handler"));
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
        self.stall.is_some()
            || self.slow_handler.is_some()
            || self.page_faults.is_some()
            || self.loss_every.is_some()
            || self.tx_loss_every.is_some()
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
    pub fault_storms: u64,
}

impl Injector {
    pub fn new(cfg: InjectConfig) -> Self {
        Injector { cfg, ..Injector::default() }
    }

    pub fn active(&self) -> bool {
        self.cfg.stall.is_some() || self.cfg.slow_handler.is_some() || self.cfg.page_faults.is_some()
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
        if self.cfg.slow_handler.is_none() && self.cfg.page_faults.is_none() {
            return false;
        }
        self.messages += 1;
        let mut slowed = false;
        if let Some((every, dur)) = self.cfg.slow_handler.filter(|(every, _)| self.messages % every == 0) {
            let _ = every;
            self.slow_handlers += 1;
            spin_for(dur);
            slowed = true;
        }
        if let Some((_, pages)) = self.cfg.page_faults.filter(|(every, _)| self.messages % every == 0) {
            self.fault_storms += 1;
            fault_storm(pages as usize);
            slowed = true;
        }
        slowed
    }
}

/// Map `pages` fresh anonymous pages, write into each (the kernel faults
/// each one in, zeroed) and unmap them.
fn fault_storm(pages: usize) {
    if let Ok(mut m) = memmap2::MmapMut::map_anon(pages * 4096) {
        for p in m.chunks_mut(4096) {
            p[0] = 1;
        }
        std::hint::black_box(&m);
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
        c.apply("page-faults:40:1000").unwrap();
        assert_eq!(c.page_faults, Some((40, 1000)));
        assert!(c.apply("page-faults:40:100000").unwrap_err().contains("at most 65536"));
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

#[cfg(test)]
mod storm {
    #[test]
    fn a_storm_maps_touches_and_unmaps_its_pages() {
        let mut i = super::Injector::new(super::InjectConfig { page_faults: Some((2, 64)), ..Default::default() });
        assert!(i.active());
        assert!(!i.maybe_slow_handler(), "the first message is not the 2nd");
        assert!(i.maybe_slow_handler());
        assert_eq!(i.fault_storms, 1);
    }
}
