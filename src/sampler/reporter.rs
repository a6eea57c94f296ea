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

use super::endpoint::{Content, EndpointStats};
pub use super::metrics::Snapshot;
use super::metrics::{Metrics, DEVICE_LABEL};
use super::offcpu::{self, OffCpu};
use super::ring::Consumer;
use super::store::Store;
use super::{kind, Sample};
use crate::clock;
use crate::transport::{CounterReader, Counters};

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
    /// The SLA (ns): exact histogram edges around it (0: none).
    pub sla_ns: u64,
    /// Sampled messages at least this slow (ns, in the gateway and as the
    /// client saw it) are counted by cause (`tailgate_tail_total`); the
    /// sampler records every one of them (tail bias). 0: none.
    pub tail_ns: u64,
    /// Trace what takes the loops' cores (`offcpu`): the loops tell their
    /// thread ids through [`Reporter::offcpu`]. Its thread runs off
    /// `loop_cores` (or on `core`).
    pub offcpu: bool,
    pub loop_cores: Vec<usize>,
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

/// How often the reporter drains the ring: rarely enough that its wake-ups
/// stay out of the way of whatever shares its CPU, often enough that the
/// default ring (65536 records) holds 6.5 M messages/s between drains.
const DRAIN_EVERY: Duration = Duration::from_millis(10);
/// Records handled per histogram update.
const DRAIN_BATCH: usize = 1024;

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
    /// The off-CPU tracer (stopped before the reporter's last drain).
    offcpu: Option<OffCpu>,
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
        let inner = Arc::new(Mutex::new(Inner { store, metrics: Metrics::new(cfg.sla_ns, cfg.tail_ns) }));
        let offcpu = if cfg.offcpu {
            match OffCpu::start(cfg.loop_cores.clone(), cfg.core) {
                Ok(t) => {
                    crate::log_info!(
                        "off-CPU tracing on: what takes a loop's core (preemption, IRQs, softirqs, page faults, steal) is \
                         recorded beside the samples"
                    );
                    Some(t)
                }
                Err(e) => {
                    crate::log_warn!(
                        "off-CPU tracing is off ({e}): the report names a stall loop_stall without saying what took the core"
                    );
                    None
                }
            }
        } else {
            None
        };
        let stop = Arc::new(AtomicBool::new(false));
        let published: Vec<Arc<Published>> = (0..loops.max(1)).map(|_| Arc::new(Published::default())).collect();
        let mut threads = Vec::new();
        {
            let (inner, stop, published) = (inner.clone(), stop.clone(), published.clone());
            let consumer = consumers;
            let avoid_core = (cfg.avoid_core, cfg.core);
            let readers = cfg.syscall_counters;
            let traced = offcpu.as_ref().map(|t| t.shared.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("tg-reporter".into())
                    .spawn(move || drain_loop(inner, consumer, published, readers, traced, stop, avoid_core))?,
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
        Ok(Reporter { stop, threads, published, metrics_addr, offcpu })
    }

    /// Where a loop tells its thread id for off-CPU tracing (`None`: off).
    pub fn offcpu(&self) -> Option<Arc<offcpu::Shared>> {
        self.offcpu.as_ref().map(|t| t.shared.clone())
    }

    /// Drain what is left and stop.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // The tracer first: its last drain of the ring goes to the shared
        // list, which the reporter's own last drain then stores.
        drop(self.offcpu.take());
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
    traced: Option<Arc<offcpu::Shared>>,
    stop: Arc<AtomicBool>,
    avoid_core: (Option<usize>, Option<usize>),
) {
    crate::runtime::place_helper(avoid_core, "reporter");
    let mut batch: Vec<Sample> = Vec::with_capacity(DRAIN_BATCH);
    let mut intervals: Vec<Sample> = Vec::new();
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
            if let Some(t) = &traced {
                intervals.clear();
                t.take(&mut intervals);
                for s in &intervals {
                    store.append(s);
                }
                metrics.offcpu(&intervals, &t.stats);
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
