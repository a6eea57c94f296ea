//! The report as text for a terminal.

use std::fmt::Write as _;

use super::{seen_ns, Delayed, Example, Report};
use crate::plot::{self, Series};
use crate::sampler::{kind, Sample, STAGES};

/// The report as a picture (`report --plot`): each stage's percentile
/// distribution over the messages (a stage no message spent time in is
/// left out), their total as the client saw it, and the tail's causes.
pub fn plot(samples: &[Sample], r: &Report) -> String {
    let msgs: Vec<&Sample> =
        samples.iter().filter(|s| s.msg_type != kind::REPORTER && s.msg_type != kind::OFFCPU).collect();
    let mut series = Vec::new();
    for (i, name) in STAGES.iter().enumerate() {
        let mut v: Vec<u64> = msgs.iter().map(|s| s.stages()[i]).collect();
        v.sort_unstable();
        if v.last().is_some_and(|&m| m > 0) {
            series.push(Series::from_sorted_ns(name, &v));
        }
    }
    let mut total: Vec<u64> = msgs.iter().map(|s| seen_ns(s)).collect();
    total.sort_unstable();
    series.push(Series::from_sorted_ns("total", &total));
    let mut causes: Vec<(String, usize)> = r.causes.iter().map(|(c, n)| (c.to_string(), *n)).collect();
    causes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let title = format!(
        "{} messages: p50 {} us, p99 {} us, p99.9 {} us; tail {} from {} us",
        r.samples, r.p50_us, r.p99_us, r.p999_us, r.tail, r.threshold_us
    );
    plot::svg(&title, &series, &causes)
}

pub(super) fn describe(e: &Example) -> String {
    format!(
        "loop {} conn {} {} id {} iter {}: {} us, flags [{}], payload {}",
        e.loop_index,
        e.conn,
        e.msg_type,
        e.trace_id,
        e.loop_iter,
        e.latency_us,
        e.flags.join(","),
        e.payload_hex
    )
}

impl Report {
    /// The table for a terminal.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "samples {}: p50 {} us, p99 {} us, p99.9 {} us, max {} us",
            self.samples, self.p50_us, self.p99_us, self.p999_us, self.max_us
        );
        if self.sampler_dropped > 0 {
            let _ = writeln!(
                o,
                "WARNING: the sampler ring overflowed and dropped {} records; the tail may be incomplete",
                self.sampler_dropped
            );
        }
        if self.reporter_periods > 0 {
            let cores: Vec<String> = self.reporter_cores.iter().map(|c| c.to_string()).collect();
            let _ = writeln!(
                o,
                "reporter: {} busy periods over 20 us, on cores {}",
                self.reporter_periods,
                cores.join(",")
            );
        }
        let _ = writeln!(
            o,
            "tail: {} messages at or above {} us ({}); top cause: {}",
            self.tail, self.threshold_us, self.threshold_from, self.top_cause
        );
        if !self.delayed.is_empty() {
            let mut by: Vec<(&str, Delayed)> = self.delayed.iter().map(|(c, d)| (*c, *d)).collect();
            by.sort_by(|a, b| (b.1.direct + b.1.queued).cmp(&(a.1.direct + a.1.queued)).then(a.0.cmp(b.0)));
            let by: Vec<String> = by
                .iter()
                .map(|(c, d)| {
                    format!("{c} {} ({} direct, {} through the queue)", d.direct + d.queued, d.direct, d.queued)
                })
                .collect();
            let _ = writeln!(o, "causes: {}", by.join(", "));
        }
        if !self.stalls.is_empty() {
            let n: usize = self.stalls.values().sum();
            let mut by: Vec<(&String, &usize)> = self.stalls.iter().collect();
            by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let by: Vec<String> = by.iter().map(|(w, k)| format!("{w} {k}")).collect();
            let _ = writeln!(o, "loop stalls ({n}), what took the core: {}", by.join(", "));
        } else if !self.offcpu_traced && self.causes.contains_key("loop_stall") {
            let _ = writeln!(
                o,
                "loop stalls: no off-CPU trace in this log (serve ran with --offcpu off, or the tracing program could \
                 not load: its log says why), so what took the core is not named"
            );
        }
        if let Some(sp) = &self.spurious {
            let _ = writeln!(
                o,
                "late_peer_ack: {} replies retransmitted for nothing (the peer had them; its ACK came {} us after, \
                 at most {} us, and our timer fired first); not counted in the latency above",
                sp.replies, sp.ack_p50_us, sp.ack_max_us
            );
        }
        if let Some(i) = &self.injected {
            let by: Vec<String> = i.causes.iter().map(|(c, n)| format!("{c} {n}")).collect();
            let _ = writeln!(o, "injected: {} tail messages touched by --inject, named: {}", i.tail, by.join(", "));
        }
        if self.rows.is_empty() {
            return o;
        }
        let _ = write!(o, "{:<21} {:<6} {:<8} {:>6} {:>6}", "cause", "via", "stage", "count", "share");
        for s in STAGES {
            let _ = write!(o, " {:>17}", format!("{s} p50/max us"));
        }
        o.push('\n');
        for r in &self.rows {
            let _ = write!(o, "{:<21} {:<6} {:<8} {:>6} {:>5.1}%", r.cause, r.via, r.stage, r.count, r.share * 100.0);
            for s in STAGES {
                let st = r.stages[s];
                let _ = write!(o, " {:>17}", format!("{}/{}", st.p50_us, st.max_us));
            }
            o.push('\n');
            let _ = writeln!(o, "  e.g. {}", describe(&r.example));
        }
        if !self.messages.is_empty() {
            let _ = writeln!(o, "tail messages:");
            for m in &self.messages {
                let _ = write!(o, "  {:<21} {:<6} {:<8} {}", m.cause, m.via, m.stage, describe(&m.message));
                if let Some(w) = &m.stall {
                    let _ = write!(o, " ({w})");
                }
                o.push('\n');
            }
        }
        o
    }
}
