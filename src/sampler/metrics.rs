//! The gateway's Prometheus metrics, kept by the reporter thread: the
//! latency histograms (on the edges of `buckets.rs`), the counters and
//! gauges the loops publish, and the tail's causes.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::buckets::{self, Bounds};
use super::offcpu::record::{Interval, What};
use super::offcpu::OffCpuStats;
use super::tracer::TracerStats;
use super::{attribution, AppCounters, UpstreamState};
use super::{kind, Sample, ACK_STAGE, STAGES};
use crate::clock;
use crate::transport::{CounterKind, Counters, TransportStats};

/// Counters the loop publishes for the reporter.
#[derive(Debug, Default, Clone, Copy)]
pub struct Snapshot {
    pub transport: TransportStats,
    /// The backend's named counters (the reporter adds those its
    /// `CounterReader` reads).
    pub backend: Counters,
    pub app: AppCounters,
    pub tracer: TracerStats,
}

type Labels = Vec<(String, String)>;

/// The `loop` label of counters that belong to no one loop (the XDP
/// program's, which sees every queue).
pub(super) const DEVICE_LABEL: &str = "all";

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The seven stages, "exchange" (the exchange leg of the exchange's
/// answers: from the Enter Order queued to the answer's arrival) and "total".
const HIST_STAGES: usize = STAGES.len() + 2;

/// One histogram as plain counters (one writer: the reporter thread), on
/// the edges of [`Bounds`].
#[derive(Debug, Clone, Copy)]
struct Hist {
    /// Per bucket (not cumulative); the one after the last edge is +Inf.
    buckets: [u64; buckets::MAX + 1],
    sum_ns: u64,
    count: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist { buckets: [0; buckets::MAX + 1], sum_ns: 0, count: 0 }
    }
}

impl Hist {
    #[inline]
    fn observe(&mut self, bounds: &Bounds, ns: u64) {
        self.buckets[bounds.bucket_of(ns)] += 1;
        self.sum_ns = self.sum_ns.wrapping_add(ns);
        self.count += 1;
    }
}

/// `tailgate_latency_seconds`: [kind][stage] histograms kept as plain
/// counters, updated under one lock per drain (prometheus-client's own
/// Histogram takes a lock per observation, seven per sample, which made the
/// reporter cost about 150 ns per sample), and encoded at scrape time.
#[derive(Debug)]
struct LatencyHistograms {
    bounds: Bounds,
    rows: Mutex<Vec<[Hist; HIST_STAGES]>>,
}

impl Collector for LatencyHistograms {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.rows.lock().map_err(|_| std::fmt::Error)?;
        let mut m = enc.encode_descriptor(
            "tailgate_latency_seconds",
            "Time per stage of a sampled message (wait, queue, parse, handler, tx, tx_done, ack: the reply's ACK) and in total (in the gateway, without ack)",
            None,
            MetricType::Histogram,
        )?;
        let bounds = self.bounds.seconds();
        let n = self.bounds.len();
        for (k, row) in rows.iter().enumerate() {
            if row[HIST_STAGES - 1].count == 0 {
                continue; // a kind never seen is not exported
            }
            for (si, h) in row.iter().enumerate() {
                if si == STAGES.len() && h.count == 0 {
                    continue; // the exchange leg, for the kinds that have one
                }
                let stage = match si {
                    i if i < STAGES.len() => STAGES[i],
                    i if i == STAGES.len() => "exchange",
                    _ => "total",
                };
                let labels = l(&[("stage", stage), ("type", kind::name(k as u8))]);
                let buckets: Vec<(f64, u64)> = bounds.iter().copied().zip(h.buckets[..=n].iter().copied()).collect();
                m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                    h.sum_ns as f64 * 1e-9,
                    h.count,
                    &buckets,
                    None,
                )?;
            }
        }
        Ok(())
    }
}

pub(super) struct Metrics {
    registry: Registry,
    latency: Arc<LatencyHistograms>,
    /// One family per counter name (see [`COUNTERS`]).
    counters: std::collections::HashMap<&'static str, Family<Labels, Counter>>,
    /// The backend's gauges, by name.
    gauges: Family<Labels, Gauge>,
    shift: Gauge,
    overflow: Gauge,
    /// The order gateway's gauges: sessions logged on, the exchange
    /// session, the kill switch (by `scope`).
    app_gauges: AppGauges,
    /// Sampled messages at least `tail_ns` slow, by direct cause.
    tail: Family<Labels, Counter>,
    /// Time the loops' threads spent off their cores or interrupted, by
    /// kind (ns, shown in seconds), and the tracer's dropped intervals.
    offcpu: Family<Labels, Counter<f64>>,
    offcpu_dropped: Counter,
    offcpu_dropped_seen: u64,
    tail_ns: u64,
    /// The last snapshot of each loop, and of the XDP program's counters
    /// (the last slot) when there are several loops.
    last: Vec<Snapshot>,
    /// Consecutive 100 ms windows with ring drops.
    overflow_windows: u32,
    /// When drop counters were last named in a warning (monotonic ns).
    drops_warned: u64,
}

/// Counter names (exposed with `_total`), help, and their label sets.
const COUNTERS: &[(&str, &str, &str, &[&str])] = &[
    ("tailgate_messages", "Order-protocol messages, by direction", "direction", &["in", "out"]),
    ("tailgate_rejects", "Rejects sent, by reason", "reason", &[]),
    ("tailgate_protocol_errors", "Connections closed for a protocol error, by kind", "kind", &["framing"]),
    ("tailgate_bytes", "Payload bytes, by direction", "direction", &["in", "out"]),
    (
        "tailgate_drops",
        "Frames or connections dropped or refused, by reason (the backend's drop counters)",
        "reason",
        &["conn_refused"],
    ),
    ("tailgate_backend", "The backend's counters, by the name the exit line gives them", "counter", &[]),
    (
        "tailgate_connections",
        "Connections, by event: opened (accepted or connected) and closed",
        "event",
        &["opened", "closed"],
    ),
    ("tailgate_loop_iterations", "Poll-loop iterations: useful (events) or idle", "kind", &["useful", "idle"]),
    (
        "tailgate_sampler_records",
        "Sampler outcomes per message",
        "outcome",
        &["recorded", "tail_bias", "skipped", "dropped_ring_full"],
    ),
    (
        "tailgate_sampler_acks",
        "Sampled replies held for their ACK, one outcome each: acked, spurious (acked after a retransmission the peer \
         did not need), ack_late (no ACK by the deadline), ack_untracked (held pool full)",
        "outcome",
        &["acked", "ack_late", "ack_untracked", "spurious"],
    ),
    ("tailgate_injected_faults", "Faults injected with --inject", "fault", &["stall", "slow_handler", "page_faults"]),
];

/// Gauges of the order gateway (see [`AppCounters`]).
struct AppGauges {
    sessions: Family<Labels, Gauge>,
    upstream_up: Family<Labels, Gauge>,
    kill_switch: Family<Labels, Gauge>,
}

impl AppGauges {
    fn register(registry: &mut Registry) -> AppGauges {
        let g =
            AppGauges { sessions: Family::default(), upstream_up: Family::default(), kill_switch: Family::default() };
        registry.register("tailgate_sessions", "Client sessions logged on now", g.sessions.clone());
        registry.register(
            "tailgate_upstream_up",
            "1 while the loop's session to the exchange is logged in, else 0 (only with --upstream)",
            g.upstream_up.clone(),
        );
        registry.register(
            "tailgate_kill_switch",
            "The kill switch now: scope=\"all\" 1 while the whole gateway is killed; scope=\"accounts\" the accounts killed by name",
            g.kill_switch.clone(),
        );
        g
    }

    fn set(&self, labels: impl Fn(&[(&str, &str)]) -> Labels, a: &AppCounters) {
        let v = |n: u64| n.min(i64::MAX as u64) as i64;
        self.sessions.get_or_create(&labels(&[])).set(v(a.sessions));
        let up = match a.upstream {
            UpstreamState::None => None,
            UpstreamState::Down => Some(0),
            UpstreamState::Up => Some(1),
        };
        if let Some(u) = up {
            self.upstream_up.get_or_create(&labels(&[])).set(u);
        }
        self.kill_switch.get_or_create(&labels(&[("scope", "all")])).set(v(a.kill_all));
        self.kill_switch.get_or_create(&labels(&[("scope", "accounts")])).set(v(a.killed_accounts));
    }
}

impl Metrics {
    /// With exact bucket edges around `sla_ns` (0: none), counting the
    /// causes of messages at least `tail_ns` slow (0: none).
    pub(super) fn new(sla_ns: u64, tail_ns: u64) -> Metrics {
        let mut registry = Registry::default();
        let latency = Arc::new(LatencyHistograms {
            bounds: Bounds::new(sla_ns),
            rows: Mutex::new(vec![[Hist::default(); HIST_STAGES]; kind::COUNT]),
        });
        registry.register_collector(Box::new(latency.clone()));
        let mut counters = std::collections::HashMap::new();
        for (name, help, key, values) in COUNTERS {
            let fam = Family::<Labels, Counter>::default();
            // Every known series exists from the start, at 0.
            for v in *values {
                let _ = fam.get_or_create(&l(&[(key, v)]));
            }
            registry.register(*name, *help, fam.clone());
            counters.insert(*name, fam);
        }
        let shift = Gauge::default();
        registry.register(
            "tailgate_sampler_rate_halvings",
            "How many times the sampling rates are halved now (0: as configured)",
            shift.clone(),
        );
        let overflow = Gauge::default();
        registry.register(
            "tailgate_sampler_overflow",
            "1 while the sample ring has dropped records in each of the last 10 windows (sustained overflow)",
            overflow.clone(),
        );
        let gauges = Family::<Labels, Gauge>::default();
        registry.register(
            "tailgate_backend_gauge",
            "The backend's current values, by the name the exit line gives them (srtt_*_us: smoothed RTT over flows)",
            gauges.clone(),
        );
        let app_gauges = AppGauges::register(&mut registry);
        let tail = Family::<Labels, Counter>::default();
        registry.register(
            "tailgate_tail",
            "Sampled messages at least --sample-tail-us slow (in the gateway, and as the client saw it), by their direct cause (docs/ATTRIBUTION.md)",
            tail.clone(),
        );
        let offcpu = Family::<Labels, Counter<f64>>::default();
        registry.register(
            "tailgate_offcpu_seconds",
            "Time the loops' threads were off their cores or interrupted, by kind: preempted, blocked (a blocking loop's sleep), irq, softirq, page_fault (bursts of faults, first to last), host_steal (the cores' steal time); needs the off-CPU tracer",
            offcpu.clone(),
        );
        let offcpu_dropped = Counter::default();
        registry.register(
            "tailgate_offcpu_dropped",
            "Off-CPU intervals the reporter had no room for",
            offcpu_dropped.clone(),
        );
        Metrics {
            registry,
            latency,
            counters,
            gauges,
            shift,
            overflow,
            app_gauges,
            tail,
            offcpu,
            offcpu_dropped,
            offcpu_dropped_seen: 0,
            tail_ns,
            last: Vec::new(),
            overflow_windows: 0,
            drops_warned: 0,
        }
    }

    /// Record a drained batch (one lock for the whole batch).
    pub(super) fn observe(&self, batch: &[Sample]) {
        let b = &self.latency.bounds;
        let Ok(mut rows) = self.latency.rows.lock() else { return };
        for s in batch {
            let Some(row) = rows.get_mut(usize::from(s.msg_type)) else { continue };
            let st = s.stages();
            for (i, (h, ns)) in row.iter_mut().zip(st).enumerate() {
                // Only a reply whose ACK was seen has an ACK stage.
                if i != ACK_STAGE || s.t_acked != 0 {
                    h.observe(b, ns);
                }
            }
            if let Some(u) = s.upstream() {
                row[STAGES.len()].observe(b, u.leg_ns(s.arrival()));
            }
            row[HIST_STAGES - 1].observe(b, s.latency_ns());
        }
        drop(rows);
        if self.tail_ns == 0 {
            return;
        }
        for s in batch.iter().filter(|s| s.msg_type != kind::REPORTER && attribution::seen_ns(s) >= self.tail_ns) {
            let (c, _) = attribution::classify(s, attribution::Options::default().significant_ns, &[]);
            self.tail.get_or_create(&l(&[("cause", attribution::CAUSES[c])])).inc();
        }
    }

    /// Off-CPU intervals read since the last drain (records of kind
    /// `OFFCPU`), and the tracer's counters.
    pub(super) fn offcpu(&mut self, records: &[Sample], stats: &OffCpuStats) {
        for i in records.iter().filter_map(Interval::from_sample) {
            let ns = if i.what == What::Steal { i.id } else { i.len_ns() };
            self.offcpu.get_or_create(&l(&[("kind", i.what.label())])).inc_by(ns as f64 * 1e-9);
        }
        let dropped = stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
        self.offcpu_dropped.inc_by(dropped.saturating_sub(self.offcpu_dropped_seen));
        self.offcpu_dropped_seen = dropped;
    }

    /// Take snapshot `s` of slot `slot`; with several loops every series
    /// carries `loop="N"` (`loop="all"` for the XDP program's counters,
    /// which see every queue). One loop: no loop label.
    pub(super) fn update(&mut self, slot: usize, loop_label: Option<&str>, s: &Snapshot) {
        if self.last.len() <= slot {
            self.last.resize(slot + 1, Snapshot::default());
        }
        let p = self.last[slot];
        let counters = &self.counters;
        let labelled = |labels: &[(&str, &str)]| {
            let mut v = l(labels);
            if let Some(n) = loop_label {
                v.push(("loop".to_string(), n.to_string()));
            }
            v
        };
        let add = |name: &str, labels: &[(&str, &str)], new: u64, old: u64| {
            if let Some(f) = counters.get(name) {
                f.get_or_create(&labelled(labels)).inc_by(new.saturating_sub(old));
            }
        };
        add("tailgate_messages", &[("direction", "in")], s.app.messages_in, p.app.messages_in);
        add("tailgate_messages", &[("direction", "out")], s.app.messages_out, p.app.messages_out);
        for (i, (n, o)) in s.app.rejects.iter().zip(p.app.rejects.iter()).enumerate() {
            if n > o {
                let reason = crate::proto::RejectReason::from_u8(i as u8).map_or("unknown", |r| r.label());
                add("tailgate_rejects", &[("reason", reason)], *n, *o);
            }
        }
        add("tailgate_protocol_errors", &[("kind", "framing")], s.app.framing_errors, p.app.framing_errors);
        add("tailgate_bytes", &[("direction", "in")], s.transport.bytes_in, p.transport.bytes_in);
        add("tailgate_bytes", &[("direction", "out")], s.transport.bytes_out, p.transport.bytes_out);
        for c in s.backend.iter() {
            let old = p.backend.get(c.name).unwrap_or(0);
            match c.kind {
                CounterKind::Drop => add("tailgate_drops", &[("reason", c.name)], c.value, old),
                CounterKind::Event => add("tailgate_backend", &[("counter", c.name)], c.value, old),
                CounterKind::Gauge => {
                    self.gauges.get_or_create(&labelled(&[("name", c.name)])).set(c.value.min(i64::MAX as u64) as i64);
                }
            }
        }
        add(
            "tailgate_connections",
            &[("event", "opened")],
            s.transport.accepted + s.transport.connected,
            p.transport.accepted + p.transport.connected,
        );
        add("tailgate_connections", &[("event", "closed")], s.transport.closed, p.transport.closed);
        add("tailgate_loop_iterations", &[("kind", "useful")], s.transport.polls_useful, p.transport.polls_useful);
        add("tailgate_loop_iterations", &[("kind", "idle")], s.transport.polls_idle, p.transport.polls_idle);
        let (t, pt) = (s.tracer, p.tracer);
        add("tailgate_sampler_records", &[("outcome", "recorded")], t.recorded, pt.recorded);
        add("tailgate_sampler_records", &[("outcome", "tail_bias")], t.tail_bias, pt.tail_bias);
        add("tailgate_sampler_records", &[("outcome", "skipped")], t.skipped, pt.skipped);
        add("tailgate_sampler_records", &[("outcome", "dropped_ring_full")], t.dropped_ring_full, pt.dropped_ring_full);
        add("tailgate_sampler_acks", &[("outcome", "acked")], t.acked, pt.acked);
        add("tailgate_sampler_acks", &[("outcome", "ack_late")], t.ack_late, pt.ack_late);
        add("tailgate_sampler_acks", &[("outcome", "ack_untracked")], t.ack_untracked, pt.ack_untracked);
        add("tailgate_sampler_acks", &[("outcome", "spurious")], t.spurious, pt.spurious);
        self.gauges
            .get_or_create(&labelled(&[("name", "sampler_ack_held")]))
            .set(t.ack_held.min(i64::MAX as u64) as i64);
        add("tailgate_injected_faults", &[("fault", "stall")], t.injected_stalls, pt.injected_stalls);
        add(
            "tailgate_injected_faults",
            &[("fault", "slow_handler")],
            t.injected_slow_handlers,
            pt.injected_slow_handlers,
        );
        add("tailgate_injected_faults", &[("fault", "page_faults")], t.injected_fault_storms, pt.injected_fault_storms);
        if loop_label != Some(DEVICE_LABEL) {
            self.app_gauges.set(labelled, &s.app);
            self.shift.set(i64::from(t.shift));
            self.overflow_windows =
                if t.dropped_ring_full > pt.dropped_ring_full { self.overflow_windows + 1 } else { 0 };
            self.overflow.set(i64::from(self.overflow_windows >= 10));
        }
        self.name_drops(s, &p);
        self.last[slot] = *s;
    }

    /// Name the drop counters that moved since the last snapshot, in one
    /// warning at most every 10 s: a drop in our own path (a ring that
    /// overflowed, a refused connection) is news to the operator.
    fn name_drops(&mut self, s: &Snapshot, p: &Snapshot) {
        use std::fmt::Write as _;
        let mut moved = String::new();
        for c in s.backend.iter().filter(|c| c.kind == CounterKind::Drop) {
            let old = p.backend.get(c.name).unwrap_or(0);
            if c.value > old {
                let _ = write!(moved, " {}+{}", c.name, c.value - old);
            }
        }
        let now = clock::mono_ns();
        if !moved.is_empty() && (self.drops_warned == 0 || now - self.drops_warned >= 10_000_000_000) {
            self.drops_warned = now;
            crate::log_warn!("drops in the last 100 ms:{moved} (tailgate_drops_total; docs/TUNING.md#drops)");
        }
    }

    pub(super) fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_encode_cumulatively_for_kinds_seen() {
        let m = Metrics::new(8_000_000, 0);
        let s = |stage_ns: u64| Sample {
            t_rx_frame: 1_000_000,
            t_delivered: 1_000_000 + stage_ns,
            t_parsed: 1_000_000 + stage_ns,
            t_handled: 1_000_000 + stage_ns,
            t_tx_queued: 1_000_000 + stage_ns,
            msg_type: kind::LIMIT,
            ..Sample::default()
        };
        // wait = delivered - arrival (queue_ns 0): 500 ns, 3 us, 20 ms; the
        // last one's reply was acknowledged 300 ms after it left.
        let acked = Sample { t_acked: 321_000_000, ..s(20_000_000) };
        m.observe(&[s(500), s(3_000), acked]);
        let text = m.render();
        let line = |le: &str| format!("tailgate_latency_seconds_bucket{{le=\"{le}\",stage=\"wait\",type=\"limit\"}}");
        assert!(text.contains(&format!("{} 1\n", line("0.000001"))), "{text}");
        assert!(text.contains(&format!("{} 2\n", line("0.000004"))), "{text}");
        assert!(text.contains(&format!("{} 2\n", line("0.008"))), "{text}");
        assert!(text.contains(&format!("{} 2\n", line("0.008192"))), "{text}");
        assert!(text.contains(&format!("{} 3\n", line("0.04"))), "the SLA's 5x edge: {text}");
        assert!(text.contains(&format!("{} 3\n", line("+Inf"))), "{text}");
        // Only the acknowledged reply has an ACK stage: 300 ms.
        let ack = |le: &str| format!("tailgate_latency_seconds_bucket{{le=\"{le}\",stage=\"ack\",type=\"limit\"}}");
        assert!(text.contains(&format!("{} 0\n", ack("0.262144"))), "{text}");
        assert!(text.contains(&format!("{} 1\n", ack("0.524288"))), "{text}");
        assert!(text.contains("tailgate_latency_seconds_count{stage=\"ack\",type=\"limit\"} 1"), "{text}");
        assert!(text.contains("tailgate_latency_seconds_count{stage=\"total\",type=\"limit\"} 3"), "{text}");
        assert!(!text.contains("type=\"market\""), "kinds never seen are not exported");
    }

    #[test]
    fn the_gateways_gauges_and_the_tails_causes_are_exported() {
        let mut m = Metrics::new(8_000_000, 100_000);
        let app =
            AppCounters { sessions: 3, upstream: UpstreamState::Up, killed_accounts: 1, ..AppCounters::default() };
        m.update(0, None, &Snapshot { app, ..Snapshot::default() });
        // A limit order whose handler took 2 ms; one of 50 us is below the tail.
        let slow = |handler_ns: u64| Sample {
            t_rx_frame: 1_000_000,
            t_delivered: 1_000_000,
            t_parsed: 1_000_000,
            t_handled: 1_000_000 + handler_ns,
            t_tx_queued: 1_000_000 + handler_ns,
            msg_type: kind::LIMIT,
            ..Sample::default()
        };
        m.observe(&[slow(2_000_000), slow(50_000)]);
        let text = m.render();
        for line in [
            "tailgate_sessions{} 3\n",
            "tailgate_upstream_up{} 1\n",
            "tailgate_kill_switch{scope=\"all\"} 0\n",
            "tailgate_kill_switch{scope=\"accounts\"} 1\n",
            "tailgate_tail_total{cause=\"slow_handler\"} 1\n",
        ] {
            assert!(text.contains(line), "no {line:?} in {text}");
        }
        // An application with no exchange session exports no upstream gauge.
        let mut m = Metrics::new(8_000_000, 100_000);
        m.update(0, None, &Snapshot::default());
        assert!(!m.render().contains("tailgate_upstream_up{"), "{}", m.render());
    }
}
