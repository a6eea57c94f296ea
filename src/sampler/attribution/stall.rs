//! What took the core in a loop stall: a tail message named `loop_stall`
//! is joined with the off-CPU intervals (`offcpu`, recorded beside the
//! samples) on its core that overlap its time in the gateway, from its
//! arrival to its last stamp. The one that covers most of it (from the
//! significance threshold) names it:
//!
//! * "preempted by COMM" (the task that ran longest meanwhile);
//! * "irq NAME", "softirq NET_RX" (and the other vectors);
//! * "page fault" (a burst of faults in the wait, when nothing covers it);
//! * "host steal" (nothing in the guest covers it, but the core's steal
//!   time rose);
//! * "blocked (the loop slept)" (a blocking loop's own wait);
//! * "unexplained" (the trace ran, and saw nothing that explains it).
//!
//! Without any interval in the log (the tracer did not run) nothing is
//! named, and the report says why a stall's cause is missing.

use std::collections::BTreeMap;

use crate::sampler::offcpu::record::{Interval, What};
use crate::sampler::{kind, Sample};

/// A cover counts when it is at least this share of the message's time in
/// the gateway (and at least the significance threshold): as the rules'
/// own "covers", at least half.
const COVER_SHARE: f64 = 0.5;

/// The off-CPU intervals of a sample log, by core, in start order.
#[derive(Debug, Default)]
pub struct Stalls {
    by_core: BTreeMap<u32, Vec<Interval>>,
    /// The longest interval on each core: where a scan for overlaps starts.
    longest: BTreeMap<u32, u64>,
    any: bool,
}

impl Stalls {
    /// From every record of a log (only kind `OFFCPU` is kept).
    pub fn new(records: &[Sample]) -> Stalls {
        let mut by_core: BTreeMap<u32, Vec<Interval>> = BTreeMap::new();
        for i in records.iter().filter(|s| s.msg_type == kind::OFFCPU).filter_map(Interval::from_sample) {
            by_core.entry(i.cpu).or_default().push(i);
        }
        let mut longest = BTreeMap::new();
        for (c, v) in by_core.iter_mut() {
            v.sort_by_key(|i| i.start_ns);
            longest.insert(*c, v.iter().map(Interval::len_ns).max().unwrap_or(0));
        }
        let any = !by_core.is_empty();
        Stalls { by_core, longest, any }
    }

    /// Did the log hold any interval (did the tracer run)?
    pub fn traced(&self) -> bool {
        self.any
    }

    /// The intervals on `core` that may overlap `[from, to)`: they start in
    /// order, before `to`, and no earlier than the longest one's length
    /// before `from`.
    fn around(&self, core: u8, from: u64, to: u64) -> &[Interval] {
        let Some(ivs) = self.by_core.get(&u32::from(core)) else { return &[] };
        let longest = self.longest.get(&u32::from(core)).copied().unwrap_or(0);
        let first = ivs.partition_point(|i| i.start_ns.saturating_add(longest) < from);
        let end = ivs.partition_point(|i| i.start_ns < to);
        &ivs[first..end.max(first)]
    }

    /// The intervals on `s`'s core over its time in the gateway (arrival
    /// to its last stamp): the kind that covers most of it, with how much
    /// (faults and steal apart), whether a fault burst or a steal rise
    /// touched it, and the window's length.
    fn cover(&self, s: &Sample) -> (Option<(String, u64, What)>, bool, bool, u64) {
        let (from, to) = (s.arrival(), s.end().max(s.arrival()));
        let mut cover: BTreeMap<String, (u64, What)> = BTreeMap::new();
        let (mut faults, mut steal) = (false, false);
        for i in self.around(s.core, from, to) {
            let overlap = i.end_ns.min(to).saturating_sub(i.start_ns.max(from));
            let touches = i.end_ns >= from;
            match i.what {
                What::Fault if touches => faults = true,
                What::Steal if touches => steal = true,
                What::Fault | What::Steal => {}
                w if overlap > 0 => cover.entry(i.describe()).or_insert((0, w)).0 += overlap,
                _ => {}
            }
        }
        let best = cover.into_iter().max_by_key(|(_, (ns, _))| *ns).map(|(n, (ns, w))| (n, ns, w));
        (best, faults, steal, to - from)
    }

    /// What took the core while `s`, a loop stall (by the rules, the
    /// trace, or queued behind one), was in the gateway: what covers most
    /// of its time, from `sig` (the significance threshold, ns); `None`
    /// without a trace.
    pub fn name(&self, s: &Sample, sig: u64) -> Option<String> {
        if !self.any {
            return None;
        }
        let (best, faults, steal, _) = self.cover(s);
        Some(match best {
            Some((what, ns, _)) if ns >= sig => what,
            _ if faults => "page fault".into(),
            _ if steal => "host steal".into(),
            _ => "unexplained".into(),
        })
    }

    /// A slow handler, or one that lost its core? True when, inside `s`'s
    /// handler stage (parsed to handled), preemptions and interrupts cover
    /// at least `sig` and leave less than `sig` of its own work (it was
    /// slow only because the thread was off its core), or bursts of page
    /// faults cover at least `sig` and half of it (it was in the kernel's
    /// fault path).
    pub fn preempted_handler(&self, s: &Sample, sig: u64) -> bool {
        let (from, to) = (s.t_parsed, s.t_handled.max(s.t_parsed));
        let (mut off, mut faults) = (0, 0);
        for i in self.around(s.core, from, to) {
            let overlap = i.end_ns.min(to).saturating_sub(i.start_ns.max(from));
            match i.what {
                What::Steal | What::Blocked => {}
                What::Fault => faults += overlap,
                _ => off += overlap,
            }
        }
        // Off its core: nearly all of the stage. Faulting: most of it (the
        // storm's own mapping and unmapping are the handler's too).
        (off >= sig && (to - from).saturating_sub(off) < sig) || (faults >= sig && 2 * faults >= to - from)
    }

    /// The kernel's own word over the rules' guess: when the loop's thread
    /// was preempted or interrupted for most of `s`'s time (at least `sig`
    /// and half), that is what delayed it, whatever the sampler's view
    /// suggested (a burst queued behind, a slow receive path, a slow
    /// handler or send). A blocking loop's sleep is not that.
    pub fn took_core(&self, s: &Sample, sig: u64) -> Option<String> {
        match self.cover(s) {
            (Some((what, ns, w)), _, _, window)
                if w != What::Blocked && ns >= sig && ns as f64 >= COVER_SHARE * window as f64 =>
            {
                Some(what)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn iv(what: What, cpu: u32, start: u64, end: u64, name: &str) -> Sample {
        let mut n = [0u8; 16];
        n[..name.len()].copy_from_slice(name.as_bytes());
        Interval { start_ns: start, end_ns: end, tid: 7, cpu, what, id: 3, switches: 1, name: n }.to_sample()
    }

    fn waited(core: u8, from: u64, to: u64) -> Sample {
        Sample { t_rx_frame: from, t_delivered: to, core, msg_type: kind::LIMIT, ..Sample::default() }
    }

    #[test]
    fn the_interval_that_covers_the_wait_names_the_stall() {
        let log = [
            iv(What::Preempted, 1, 100 * MS, 107 * MS, "hog"),
            iv(What::Irq, 1, 107 * MS, 107 * MS + 30_000, "virtio0-input.0"),
            iv(What::Preempted, 0, 100 * MS, 110 * MS, "other-core"),
            iv(What::Softirq, 1, 200 * MS, 206 * MS, ""),
            iv(What::Fault, 1, 300 * MS, 300 * MS + 500_000, ""),
            iv(What::Steal, 1, 400 * MS, 410 * MS, ""),
            waited(1, 0, 0),
        ];
        let st = Stalls::new(&log);
        assert!(st.traced());
        let sig = 20_000;
        assert_eq!(st.name(&waited(1, 99 * MS, 108 * MS), sig).unwrap(), "preempted by hog");
        assert_eq!(st.name(&waited(1, 201 * MS, 207 * MS), sig).unwrap(), "softirq NET_RX");
        assert_eq!(st.name(&waited(1, 299 * MS, 302 * MS), sig).unwrap(), "page fault");
        assert_eq!(st.name(&waited(1, 401 * MS, 405 * MS), sig).unwrap(), "host steal");
        assert_eq!(st.name(&waited(1, 500 * MS, 505 * MS), sig).unwrap(), "unexplained");
        assert_eq!(st.name(&waited(2, 99 * MS, 108 * MS), sig).unwrap(), "unexplained", "another core's trace");
        // A stall named so by the rules takes what covers most of it.
        assert_eq!(st.name(&waited(1, 106 * MS, 130 * MS), sig).unwrap(), "preempted by hog");
        // A cover below the significance threshold explains nothing.
        assert_eq!(st.name(&waited(1, 107 * MS + 40_000, 107 * MS + 300_000), sig).unwrap(), "unexplained");
        // The kernel's word over the rules': a preemption that covers the
        // message's time takes it; a blocking loop's sleep, or nothing, not.
        assert_eq!(st.took_core(&waited(1, 99 * MS, 108 * MS), sig).unwrap(), "preempted by hog");
        assert_eq!(st.took_core(&waited(1, 500 * MS, 505 * MS), sig), None);
        let slept = [iv(What::Blocked, 1, 0, 10 * MS, "")];
        assert_eq!(Stalls::new(&slept).took_core(&waited(1, MS, 9 * MS), sig), None);
        // No trace at all: nothing is named.
        assert_eq!(Stalls::new(&[waited(1, 0, 1)]).name(&waited(1, 99 * MS, 108 * MS), sig), None);
    }
}
