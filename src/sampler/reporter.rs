//! The reporter: a thread that never runs on the gateway's pinned core. It
//! drains the loop's sample ring every 10 ms into the sample store
//! (file or memory) and the latency histograms, turns the counters the loop
//! publishes every 100 ms into Prometheus counters, and (with `--metrics`)
//! serves them over HTTP from a second unpinned thread (`endpoint.rs`):
//!
//! * `GET /metrics`: Prometheus text exposition (prometheus-client crate);
//! * `GET /samples`: the stored samples in the sample-log format, which is
//!   what `tailgate report --live` reads.
//!
//! Its own work is recorded too: a drain that takes longer than 20 us is
//! stored as a `kind::REPORTER` record with the core it ran on, so the
//! report can tell when the reporter interfered with the loop.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::endpoint::{Content, EndpointStats};
use super::ring::Consumer;
use super::store::Store;
use super::tracer::TracerStats;
use super::AppCounters;
use super::{kind, Sample, ACK_STAGE, STAGES};
use crate::clock;
use crate::transport::{CounterKind, CounterReader, Counters, TransportStats};

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

/// Shared between the loop (which publishes with `try_lock`, never
/// waiting) and the reporter.
#[derive(Debug, Default)]
pub struct Published {
    snapshot: Mutex<Option<Snapshot>>,
}

impl Published {
    /// Publish from the loop: skipped (not waited for) if the reporter
    /// holds the lock; the next publish carries the newer values anyway.
    pub fn publish(&self, s: Snapshot) {
        if let Ok(mut g) = self.snapshot.try_lock() {
            *g = Some(s);
        }
    }

    fn take(&self) -> Option<Snapshot> {
        self.snapshot.lock().ok().and_then(|mut g| g.take())
    }
}

pub struct ReporterConfig {
    pub metrics: Option<SocketAddr>,
    pub sample_log: Option<PathBuf>,
    /// Records kept (file or memory window).
    pub records: u64,
    /// The pinned loop's core, which the reporter must not use.
    pub avoid_core: Option<usize>,
    /// Pin the reporter and metrics threads to this core (a housekeeping
    /// core); otherwise they may use any core but `avoid_core`.
    pub core: Option<usize>,
    /// Counters that take a system call (the XDP program's, the AF_XDP
    /// sockets'), read by the reporter when the loops publish their own;
    /// loops add theirs once they have built their transport.
    pub syscall_counters: SyscallCounters,
}

/// Readers of counters that take a system call, each with the loop whose
/// counters it reads (`None`: the device's, such as the XDP program's,
/// which sees every queue).
pub type SyscallCounters = Arc<Mutex<Vec<(Option<usize>, CounterReader)>>>;

type Labels = Vec<(String, String)>;

/// The `loop` label of counters that belong to no one loop (the XDP
/// program's, which sees every queue).
const DEVICE_LABEL: &str = "all";

/// How often the reporter drains the ring: rarely enough that its wake-ups
/// stay out of the way of whatever shares its CPU, often enough that the
/// default ring (65536 records) holds 6.5 M messages/s between drains.
const DRAIN_EVERY: Duration = Duration::from_millis(10);
/// Records handled per histogram update.
const DRAIN_BATCH: usize = 1024;

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Histogram buckets: 1 us to 1.048576 s, doubling, then +Inf (the ACK
/// stage of a retransmitted reply runs to hundreds of milliseconds).
const BUCKETS: usize = 21;
/// The seven stages, "exchange" (the exchange leg of the exchange's
/// answers: from the Enter Order queued to the answer's arrival) and "total".
const HIST_STAGES: usize = STAGES.len() + 2;

/// One histogram as plain counters (one writer: the reporter thread).
#[derive(Debug, Clone, Copy, Default)]
struct Hist {
    /// Per bucket (not cumulative); the last is +Inf.
    buckets: [u64; BUCKETS + 1],
    sum_ns: u64,
    count: u64,
}

impl Hist {
    #[inline]
    fn observe(&mut self, ns: u64) {
        self.buckets[bucket_of(ns)] += 1;
        self.sum_ns = self.sum_ns.wrapping_add(ns);
        self.count += 1;
    }
}

/// The bucket of `ns`: the first upper bound 1000 * 2^i ns it does not exceed.
fn bucket_of(ns: u64) -> usize {
    if ns <= 1000 {
        return 0;
    }
    ((64 - ((ns - 1) / 1000).leading_zeros()) as usize).min(BUCKETS)
}

/// `tailgate_latency_seconds`: [kind][stage] histograms kept as plain
/// counters, updated under one lock per drain (prometheus-client's own
/// Histogram takes a lock per observation, seven per sample, which made the
/// reporter cost about 150 ns per sample), and encoded at scrape time.
#[derive(Debug, Default)]
struct LatencyHistograms {
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
        let mut bounds = [0f64; BUCKETS + 1];
        for (i, b) in bounds.iter_mut().enumerate().take(BUCKETS) {
            *b = 1e-6 * f64::from(1u32 << i);
        }
        bounds[BUCKETS] = f64::INFINITY;
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
                let buckets: Vec<(f64, u64)> = bounds.iter().copied().zip(h.buckets.iter().copied()).collect();
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

struct Metrics {
    registry: Registry,
    latency: Arc<LatencyHistograms>,
    /// One family per counter name (see [`COUNTERS`]).
    counters: std::collections::HashMap<&'static str, Family<Labels, Counter>>,
    /// The backend's gauges, by name.
    gauges: Family<Labels, Gauge>,
    shift: Gauge,
    overflow: Gauge,
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
        "Sampled replies held for their ACK: acked, ack_late (no ACK by the deadline), ack_untracked (held pool full)",
        "outcome",
        &["acked", "ack_late", "ack_untracked"],
    ),
    ("tailgate_injected_faults", "Faults injected with --inject", "fault", &["stall", "slow_handler"]),
];

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let latency =
            Arc::new(LatencyHistograms { rows: Mutex::new(vec![[Hist::default(); HIST_STAGES]; kind::COUNT]) });
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
        Metrics {
            registry,
            latency,
            counters,
            gauges,
            shift,
            overflow,
            last: Vec::new(),
            overflow_windows: 0,
            drops_warned: 0,
        }
    }

    /// Record a drained batch (one lock for the whole batch).
    fn observe(&self, batch: &[Sample]) {
        let Ok(mut rows) = self.latency.rows.lock() else { return };
        for s in batch {
            let Some(row) = rows.get_mut(usize::from(s.msg_type)) else { continue };
            let st = s.stages();
            for (i, (h, ns)) in row.iter_mut().zip(st).enumerate() {
                // Only a reply whose ACK was seen has an ACK stage.
                if i != ACK_STAGE || s.t_acked != 0 {
                    h.observe(ns);
                }
            }
            if let Some(u) = s.upstream() {
                row[STAGES.len()].observe(u.leg_ns(s.arrival()));
            }
            row[HIST_STAGES - 1].observe(s.latency_ns());
        }
    }

    /// Take snapshot `s` of slot `slot`; with several loops every series
    /// carries `loop="N"` (`loop="all"` for the XDP program's counters,
    /// which see every queue). One loop: no loop label.
    fn update(&mut self, slot: usize, loop_label: Option<&str>, s: &Snapshot) {
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
        if loop_label != Some(DEVICE_LABEL) {
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

    fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

struct Inner {
    store: Store,
    metrics: Metrics,
}

/// The running reporter; dropping it (or [`Reporter::stop`]) drains what is
/// left and joins the threads.
pub struct Reporter {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Where each loop publishes its counters (one per loop).
    pub published: Vec<Arc<Published>>,
    /// The address `/metrics` is served on (the OS picks the port for :0).
    pub metrics_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reporter {{ metrics: {:?} }}", self.metrics_addr)
    }
}

impl Reporter {
    /// Start the reporter over the sample rings of `loops` loops
    /// (`consumers`: empty when sampling is off, counters only).
    pub fn start(cfg: ReporterConfig, consumers: Vec<Consumer>, loops: usize) -> io::Result<Reporter> {
        let store = Store::create(cfg.sample_log.as_deref(), cfg.records)?;
        let listener = match cfg.metrics {
            Some(a) => Some(super::endpoint::bind(a)?),
            None => None,
        };
        let metrics_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let inner = Arc::new(Mutex::new(Inner { store, metrics: Metrics::new() }));
        let stop = Arc::new(AtomicBool::new(false));
        let published: Vec<Arc<Published>> = (0..loops.max(1)).map(|_| Arc::new(Published::default())).collect();
        let mut threads = Vec::new();
        {
            let (inner, stop, published) = (inner.clone(), stop.clone(), published.clone());
            let consumer = consumers;
            let avoid_core = (cfg.avoid_core, cfg.core);
            let readers = cfg.syscall_counters;
            threads.push(
                std::thread::Builder::new()
                    .name("tg-reporter".into())
                    .spawn(move || drain_loop(inner, consumer, published, readers, stop, avoid_core))?,
            );
        }
        if let Some(listener) = listener {
            let (inner, stop) = (inner.clone(), stop.clone());
            let avoid_core = (cfg.avoid_core, cfg.core);
            let stats = Arc::new(EndpointStats::default());
            threads.push(std::thread::Builder::new().name("tg-metrics".into()).spawn(move || {
                crate::runtime::place_helper(avoid_core, "reporter");
                super::endpoint::serve(listener, Arc::new(Served(inner)), stop, stats);
            })?);
        }
        Ok(Reporter { stop, threads, published, metrics_addr })
    }

    /// Drain what is left and stop.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn drain_loop(
    inner: Arc<Mutex<Inner>>,
    mut consumers: Vec<Consumer>,
    published: Vec<Arc<Published>>,
    readers: SyscallCounters,
    stop: Arc<AtomicBool>,
    avoid_core: (Option<usize>, Option<usize>),
) {
    crate::runtime::place_helper(avoid_core, "reporter");
    let mut batch: Vec<Sample> = Vec::with_capacity(DRAIN_BATCH);
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let t0 = clock::mono_ns();
        let mut n = 0;
        if let Ok(mut g) = inner.lock() {
            let Inner { store, metrics } = &mut *g;
            for c in consumers.iter_mut() {
                loop {
                    batch.clear();
                    while batch.len() < DRAIN_BATCH {
                        match c.pop() {
                            Some(s) => batch.push(s),
                            None => break,
                        }
                    }
                    if batch.is_empty() {
                        break;
                    }
                    metrics.observe(&batch);
                    for s in &batch {
                        store.append(s);
                    }
                    n += batch.len() as u64;
                }
            }
            if !consumers.is_empty() {
                store.set_dropped(consumers.iter().map(Consumer::dropped).sum());
            }
            let several = published.len() > 1;
            let readers = readers.lock().ok();
            // One loop: every reader's counters are that loop's.
            let read = |of: Option<usize>, into: &mut Counters| {
                for (l, r) in readers.iter().flat_map(|v| v.iter()) {
                    if !several || *l == of {
                        into.extend(&r());
                    }
                }
            };
            let mut fresh = false;
            for (i, p) in published.iter().enumerate() {
                let Some(mut snap) = p.take() else { continue };
                fresh = true;
                if several {
                    read(Some(i), &mut snap.backend);
                    metrics.update(i, Some(&i.to_string()), &snap);
                } else {
                    read(None, &mut snap.backend);
                    metrics.update(0, None, &snap);
                }
            }
            if several && fresh && readers.iter().flat_map(|v| v.iter()).any(|(l, _)| l.is_none()) {
                let mut snap = Snapshot::default();
                read(None, &mut snap.backend);
                metrics.update(published.len(), Some(DEVICE_LABEL), &snap);
            }
            drop(readers);
            let t1 = clock::mono_ns();
            if n > 0 && t1 - t0 >= super::tracer::SAMPLER_SLOW_NS {
                store.append(&Sample {
                    t_rx_frame: t0,
                    t_delivered: t0,
                    t_handled: t1,
                    trace_id: n,
                    core: rustix::thread::sched_getcpu() as u8,
                    msg_type: kind::REPORTER,
                    ..Sample::default()
                });
            }
            store.commit();
        }
        if stopping {
            break;
        }
        std::thread::sleep(DRAIN_EVERY);
    }
}

/// The endpoint's view of the reporter's state.
struct Served(Arc<Mutex<Inner>>);

impl Content for Served {
    fn metrics(&self) -> Result<Vec<u8>, String> {
        let g = self.0.lock().map_err(|_| "reporter state poisoned".to_string())?;
        Ok(g.metrics.render().into_bytes())
    }
    fn samples(&self) -> Result<Vec<u8>, String> {
        let g = self.0.lock().map_err(|_| "reporter state poisoned".to_string())?;
        Ok(g.store.snapshot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_bounds_from_1us_doubling() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1000), 0);
        assert_eq!(bucket_of(1001), 1);
        assert_eq!(bucket_of(2000), 1);
        assert_eq!(bucket_of(2001), 2);
        assert_eq!(bucket_of(4000), 2);
        assert_eq!(bucket_of(8_192_000), 13);
        assert_eq!(bucket_of(1_048_576_000), 20);
        assert_eq!(bucket_of(1_048_576_001), BUCKETS);
        assert_eq!(bucket_of(u64::MAX), BUCKETS);
    }

    #[test]
    fn histograms_encode_cumulatively_for_kinds_seen() {
        let m = Metrics::new();
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
        assert!(text.contains(&format!("{} 2\n", line("0.008192"))), "{text}");
        assert!(text.contains(&format!("{} 3\n", line("+Inf"))), "{text}");
        // Only the acknowledged reply has an ACK stage: 300 ms.
        let ack = |le: &str| format!("tailgate_latency_seconds_bucket{{le=\"{le}\",stage=\"ack\",type=\"limit\"}}");
        assert!(text.contains(&format!("{} 0\n", ack("0.262144"))), "{text}");
        assert!(text.contains(&format!("{} 1\n", ack("0.524288"))), "{text}");
        assert!(text.contains("tailgate_latency_seconds_count{stage=\"ack\",type=\"limit\"} 1"), "{text}");
        assert!(text.contains("tailgate_latency_seconds_count{stage=\"total\",type=\"limit\"} 3"), "{text}");
        assert!(!text.contains("type=\"market\""), "kinds never seen are not exported");
    }
}
