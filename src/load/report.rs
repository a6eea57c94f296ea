//! The load generator's end-of-run report (also the `--json` document).

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{LoadApp, MAX_BACKLOG};

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
    pub mean: f64,
    pub samples: u64,
}

impl Percentiles {
    pub(super) fn from_hist(h: &Histogram<u64>) -> Self {
        let us = |v: u64| v as f64 / 1000.0;
        Percentiles {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            p9999: us(h.value_at_quantile(0.9999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
            samples: h.len(),
        }
    }
}

/// The end-of-run report (also the `--json` document).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub backend: String,
    pub app: LoadApp,
    pub mode: String,
    pub conns: usize,
    pub duration_s: f64,
    pub sent: u64,
    pub answered: u64,
    pub throughput_msgs_per_s: f64,
    pub rtt_us: Percentiles,
    pub unanswered: u64,
    pub rejected: u64,
    pub out_of_sequence: u64,
    pub unexpected: u64,
    pub corrupted: u64,
    pub disconnected: u64,
    pub schedule_overruns: u64,
    /// Sessions the gateway logged out for its shutdown (Logout reason
    /// Shutdown): an orderly end, not a failure.
    pub shutdown_logouts: u64,
    /// Requests unanswered on those sessions when the Logout came (sent
    /// after the gateway stopped reading; not failures).
    pub after_shutdown: u64,
    /// With several loops (one per queue or core): each one's share.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub loops: Vec<LoopShare>,
    /// Orders: acks, fills, cancels and rejects by reason, and the round
    /// trip to the first Fill.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<super::Lifecycle>,
}

/// One loop's share of a run with several loops.
#[derive(Debug, Clone, Serialize)]
pub struct LoopShare {
    pub index: usize,
    /// "queue Q, core C" or "core C".
    pub place: String,
    pub conns: usize,
    pub sent: u64,
    pub answered: u64,
    pub failures: u64,
    pub throughput_msgs_per_s: f64,
    pub p99_us: f64,
    /// Frames that reached this loop's queue for another loop's connection,
    /// passed on (xdp backend).
    pub handoff_forwarded: u64,
    /// Frames another loop passed to this one (shared ARP replies included).
    pub handoff_received: u64,
}

impl Report {
    /// One report of several loops' runs: counts summed, histograms merged,
    /// the run as long as the longest loop's; `shares` become `loops`.
    pub fn combine(parts: Vec<(Report, Histogram<u64>)>, shares: Vec<LoopShare>) -> Option<Report> {
        let mut it = parts.into_iter();
        let (mut r, mut h) = it.next()?;
        for (p, ph) in it {
            // Same bounds on both sides (the generator's), so add cannot fail.
            let _ = h.add(&ph);
            r.conns += p.conns;
            r.duration_s = r.duration_s.max(p.duration_s);
            r.sent += p.sent;
            r.answered += p.answered;
            r.unanswered += p.unanswered;
            r.rejected += p.rejected;
            r.out_of_sequence += p.out_of_sequence;
            r.unexpected += p.unexpected;
            r.corrupted += p.corrupted;
            r.disconnected += p.disconnected;
            r.schedule_overruns += p.schedule_overruns;
            r.shutdown_logouts += p.shutdown_logouts;
            r.after_shutdown += p.after_shutdown;
            match (&mut r.lifecycle, &p.lifecycle) {
                (Some(a), Some(b)) => a.add(b),
                (None, Some(b)) => r.lifecycle = Some(b.clone()),
                _ => {}
            }
        }
        r.throughput_msgs_per_s = if r.duration_s > 0.0 { r.answered as f64 / r.duration_s } else { 0.0 };
        r.rtt_us = Percentiles::from_hist(&h);
        r.loops = shares;
        Some(r)
    }

    /// Problems that make the exit status non-zero.
    pub fn failures(&self) -> u64 {
        self.unanswered + self.rejected + self.out_of_sequence + self.unexpected + self.corrupted + self.disconnected
    }

    /// Human-readable table.
    pub fn render(&self) -> String {
        let r = &self.rtt_us;
        let mut s = String::new();
        s.push_str(&format!(
            "load backend {}  app {}  mode {}  conns {}  duration {:.1} s\n",
            self.backend,
            serde_json::to_string(&self.app).unwrap_or_default().trim_matches('"'),
            self.mode,
            self.conns,
            self.duration_s
        ));
        s.push_str(&format!(
            "sent {}  answered {}  throughput {:.0} msg/s\n",
            self.sent, self.answered, self.throughput_msgs_per_s
        ));
        s.push_str("round trip (us)      p50      p90      p99    p99.9   p99.99      max\n");
        s.push_str(&format!(
            "                {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}\n",
            r.p50, r.p90, r.p99, r.p999, r.p9999, r.max
        ));
        s.push_str(&format!(
            "unanswered {}  rejected {}  out_of_sequence {}  unexpected {}  corrupted {}  disconnected {}",
            self.unanswered, self.rejected, self.out_of_sequence, self.unexpected, self.corrupted, self.disconnected
        ));
        if let Some(l) = &self.lifecycle {
            s.push('\n');
            s.push_str(&l.render());
        }
        for l in &self.loops {
            s.push_str(&format!(
                "\nloop {} ({}): conns {}  sent {}  answered {}  failures {}  throughput {:.0} msg/s  p99 {:.1} us  \
                 handoff forwarded {} received {}",
                l.index,
                l.place,
                l.conns,
                l.sent,
                l.answered,
                l.failures,
                l.throughput_msgs_per_s,
                l.p99_us,
                l.handoff_forwarded,
                l.handoff_received
            ));
        }
        if self.shutdown_logouts > 0 {
            s.push_str(&format!(
                "\ngateway shutdown: {} sessions logged out (reason Shutdown); {} requests sent after it \
                 went unanswered (not failures)",
                self.shutdown_logouts, self.after_shutdown
            ));
        }
        if self.schedule_overruns > 0 {
            s.push_str(&format!(
                "\nwarning: {} messages found their connection's output backlog over {} bytes: \
                 the target rate exceeds what the path can carry",
                self.schedule_overruns, MAX_BACKLOG
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(conns: usize, secs: f64, rtts_us: &[u64], unanswered: u64) -> (Report, Histogram<u64>) {
        let mut h = Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for &us in rtts_us {
            h.record(us * 1000).unwrap();
        }
        let r = Report {
            backend: "xdp".into(),
            app: LoadApp::Orders,
            mode: "pingpong".into(),
            conns,
            duration_s: secs,
            sent: rtts_us.len() as u64 + unanswered,
            answered: rtts_us.len() as u64,
            throughput_msgs_per_s: 0.0,
            rtt_us: Percentiles::from_hist(&h),
            unanswered,
            rejected: 0,
            out_of_sequence: 0,
            unexpected: 0,
            corrupted: 0,
            disconnected: 0,
            schedule_overruns: 0,
            shutdown_logouts: 0,
            after_shutdown: 0,
            loops: Vec::new(),
            lifecycle: None,
        };
        (r, h)
    }

    #[test]
    fn loops_combine_into_one_report_with_merged_percentiles() {
        // Loop 0: 99 fast round trips; loop 1: one slow one and one unanswered.
        let a = part(3, 1.0, &[10; 99], 0);
        let b = part(2, 2.0, &[5000], 1);
        let r = Report::combine(vec![a, b], Vec::new()).unwrap();
        assert_eq!((r.conns, r.sent, r.answered, r.unanswered), (5, 101, 100, 1));
        assert_eq!(r.failures(), 1);
        assert_eq!(r.duration_s, 2.0, "the longest loop's run");
        assert_eq!(r.throughput_msgs_per_s, 50.0);
        assert_eq!(r.rtt_us.samples, 100);
        assert!((r.rtt_us.p50 - 10.0).abs() < 0.1, "{:?}", r.rtt_us);
        assert!(r.rtt_us.max >= 4990.0, "the slow loop's tail survives the merge: {:?}", r.rtt_us);
        assert!(Report::combine(Vec::new(), Vec::new()).is_none());
    }
}
