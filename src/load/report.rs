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
}

impl Report {
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
