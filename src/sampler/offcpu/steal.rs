//! The loops' cores' steal time (/proc/stat, the 8th value of each `cpuN`
//! line, in clock ticks): time the hypervisor gave this virtual CPU's
//! physical one to something else. A rise is written as an interval of
//! kind [`What::Steal`] over the window it rose in, with the steal time.

use super::record::{Interval, What};

/// Watched cores, and their last reading.
#[derive(Debug, Default)]
pub struct Steal {
    /// (core, steal ticks, when read (monotonic ns)).
    last: Vec<(usize, Option<u64>, u64)>,
}

/// Nanoseconds per clock tick: /proc/stat counts in USER_HZ, which the
/// kernel's ABI fixes at 100 on x86 and arm64, whatever HZ it runs at.
const TICK_NS: u64 = 10_000_000;

/// Core `core`'s steal ticks in `/proc/stat`'s text.
pub fn steal_of(stat: &str, core: usize) -> Option<u64> {
    let name = format!("cpu{core}");
    let line = stat.lines().find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    line.split_whitespace().nth(8)?.parse().ok()
}

impl Steal {
    pub fn watch(&mut self, core: usize) {
        if !self.last.iter().any(|(c, ..)| *c == core) {
            self.last.push((core, None, 0));
        }
    }

    /// Read /proc/stat at `now`: an interval for each watched core whose
    /// steal time rose since the last reading.
    pub fn read(&mut self, now: u64) -> Vec<Interval> {
        if self.last.is_empty() {
            return Vec::new();
        }
        let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return Vec::new() };
        self.update(&stat, now, TICK_NS)
    }

    fn update(&mut self, stat: &str, now: u64, tick: u64) -> Vec<Interval> {
        let mut out = Vec::new();
        for (core, last, at) in self.last.iter_mut() {
            let Some(ticks) = steal_of(stat, *core) else { continue };
            if let Some(prev) = *last {
                if ticks > prev {
                    out.push(Interval {
                        start_ns: *at,
                        end_ns: now,
                        tid: 0,
                        cpu: *core as u32,
                        what: What::Steal,
                        id: (ticks - prev) * tick,
                        switches: 0,
                        name: [0; 16],
                    });
                }
            }
            (*last, *at) = (Some(ticks), now);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  10 0 20 300 0 0 1 9 0 0\n\
                        cpu0 5 0 10 150 0 0 0 4 0 0\n\
                        cpu1 5 0 10 150 0 0 1 5 0 0\n\
                        intr 12345\n";

    #[test]
    fn a_rise_of_a_watched_cores_steal_is_an_interval() {
        assert_eq!(steal_of(STAT, 1), Some(5));
        assert_eq!(steal_of(STAT, 7), None);
        let mut s = Steal::default();
        s.watch(1);
        s.watch(1);
        assert!(s.update(STAT, 1_000, 10_000_000).is_empty(), "the first reading is the baseline");
        let later = STAT.replace("cpu1 5 0 10 150 0 0 1 5", "cpu1 5 0 10 150 0 0 1 7");
        let got = s.update(&later, 11_000_000, 10_000_000);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].start_ns, got[0].end_ns, got[0].cpu, got[0].id), (1_000, 11_000_000, 1, 20_000_000));
        assert!(s.update(&later, 21_000_000, 10_000_000).is_empty(), "no rise, no interval");
    }
}
