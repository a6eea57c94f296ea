//! One launcher for one loop or many: the gateway (`serve`), the load
//! generator (`load`), and any application built on the crate run through
//! it.
//!
//! [`launch`] takes a [`LaunchConfig`] (the backend, the loops as queues and
//! cores, each backend's configuration, what to observe) and a [`Job`] (what
//! each loop runs on its transport), and
//!
//! 1. plans the loops (one per queue on the xdp backend, one per core on the
//!    kernel's; [`plan`]) and refuses what does not fit, naming the flags;
//! 2. attaches the XDP program once for every loop (or falls back to the
//!    kernel with `--backend auto`, the reason in one line);
//! 3. makes each loop's tracer, and the reporter that drains them all, when
//!    the job observes;
//! 4. starts one thread per loop, pinned to its core, which builds its
//!    transport (its own AF_XDP socket, UMEM and stack, or its own kernel
//!    listener) and runs the job; waits until every loop is ready (or one
//!    failed: then every loop stops); then tells the job ([`Job::ready`]);
//! 5. when the loops end (at `stop`, or at the first error), stops the
//!    reporter, detaches the program, and hands back what each loop left.
//!
//! One code path for one loop and many: the only differences are the
//! handoff rings (several xdp loops) and `SO_REUSEPORT` (several kernel
//! loops).
//!
//! ```text
//! mod.rs    LaunchConfig, Job, LoopCtx, launch
//! plan.rs   the loops from queues and cores; the XDP program attached once
//! serve.rs  serve: every loop serves one application (what a user calls)
//! ```

pub mod plan;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use self::plan::{Attached, LoopBackend};
pub use self::plan::{BackendChoice, Places, XdpPlan};
pub use self::serve::{serve, Served};
use crate::backend::kernel::{KernelConfig, KernelTransport};
use crate::backend::xdp::XdpTransport;
use crate::sampler::inject::InjectConfig;
use crate::sampler::policy::SamplingConfig;
use crate::sampler::reporter::{Published, Reporter, ReporterConfig, SyscallCounters};
use crate::sampler::tracer::Tracer;
use crate::transport::{CounterReader, Counters, Transport};
use crate::{log_info, log_warn, runtime};

/// What the loops observe: sampling, fault injection, the reporter's
/// outputs (docs/ATTRIBUTION.md).
#[derive(Debug, Clone, Default)]
pub struct Observe {
    pub sampling: SamplingConfig,
    pub inject: InjectConfig,
    /// Prometheus `/metrics` and `/samples` on this address.
    pub metrics: Option<SocketAddr>,
    /// The sample log, and the records it (and `/samples`) keeps.
    pub sample_log: Option<PathBuf>,
    pub sample_log_records: u64,
    /// The reporter's core (default: any core no loop runs on).
    pub reporter_core: Option<usize>,
    /// The latency SLA (ns): exact histogram edges around it (0: none).
    pub sla_ns: u64,
    /// Trace what takes the loops' cores (an eBPF program; off when it
    /// cannot load, said in one line).
    pub offcpu: bool,
}

impl LaunchConfig {
    /// The kernel backend on `places`, observing nothing.
    pub fn kernel(places: Places) -> Self {
        LaunchConfig {
            backend: BackendChoice::Kernel,
            places,
            xdp: Err("the kernel backend was chosen".into()),
            kernel: KernelConfig::default(),
            observe: None,
        }
    }

    /// The xdp backend with `xdp` on `places`, observing nothing.
    pub fn xdp(xdp: crate::backend::xdp::XdpConfig, places: Places) -> Self {
        LaunchConfig { backend: BackendChoice::Xdp, xdp: Ok(xdp), ..LaunchConfig::kernel(places) }
    }
}

impl Observe {
    /// Does anything need the reporter thread?
    fn reporter(&self) -> bool {
        self.sampling.enabled || self.metrics.is_some() || self.sample_log.is_some()
    }
}

/// Everything [`launch`] needs.
#[derive(Debug, Clone)]
pub struct LaunchConfig {
    pub backend: BackendChoice,
    pub places: Places,
    /// The xdp backend's configuration, or why there is none.
    pub xdp: XdpPlan,
    /// The kernel backend's (each loop of several gets `reuse_port`).
    pub kernel: KernelConfig,
    /// None: no tracer, no reporter (the load generator).
    pub observe: Option<Observe>,
}

/// Where one loop runs, and what it runs with.
pub struct LoopCtx<'a> {
    /// This loop's index, and how many there are.
    pub index: usize,
    pub loops: usize,
    /// "queue Q, core C", "core C" or "unpinned".
    pub place: String,
    /// Its tracer (disabled when nothing observes) and where it publishes
    /// its counters for the reporter.
    pub tracer: Tracer,
    pub published: Option<Arc<Published>>,
    pub stop: &'a AtomicBool,
    ready: &'a AtomicUsize,
}

impl LoopCtx<'_> {
    /// The loop serves (listens, or has what it needs): once every loop
    /// has said so, the launcher tells the job ([`Job::ready`]).
    pub fn ready(&self) {
        self.ready.fetch_add(1, Ordering::Release);
    }

    /// The loop's tracer, for its server (a disabled one stays here).
    pub fn take_tracer(&mut self) -> Tracer {
        std::mem::replace(&mut self.tracer, Tracer::disabled())
    }

    /// Stop every loop (this one failed).
    pub fn stop_all(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Run `s` as this loop's server once it listens: its tracer and the
    /// reporter's counters attached, ready said, served until the stop,
    /// counters published a last time; an error stops every loop.
    pub fn serve<T: Transport, A: crate::app::App>(
        &mut self,
        s: &mut crate::server::Server<T, A>,
    ) -> std::io::Result<()> {
        if let Some(p) = self.published.clone() {
            s.set_published(p);
        }
        s.set_tracer(self.take_tracer());
        self.ready();
        let r = s.run(self.stop);
        s.publish();
        if r.is_err() {
            self.stop_all();
        }
        r
    }
}

/// How the loops were placed, for the job's start line.
#[derive(Debug, Clone)]
pub struct Started {
    /// "xdp" or "kernel".
    pub backend: &'static str,
    pub loops: usize,
    /// One loop: its place; several: "queues Q on cores C" or
    /// "SO_REUSEPORT listeners on cores C".
    pub places: String,
    /// The reporter's metrics address, when it serves one.
    pub metrics: Option<SocketAddr>,
}

/// What each loop runs.
pub trait Job: Sync {
    /// What a loop leaves behind.
    type End: Send;
    /// Run loop `cx.index` on transport `t` until `cx.stop`; call
    /// `cx.ready()` once it serves.
    fn run<T: Transport>(&self, t: T, cx: LoopCtx<'_>) -> Result<Self::End, String>;
    /// Every loop is ready (log the start line).
    fn ready(&self, _s: &Started) {}
}

/// What the loops left, in loop order (an error where one failed), and the
/// XDP program's counters at the end (xdp backend).
pub struct Ended<E> {
    pub loops: Vec<Result<E, String>>,
    pub program: Option<Counters>,
    pub backend: &'static str,
}

/// Run `job` on the loops of `cfg` until `stop` (or until a loop fails).
pub fn launch<J: Job>(cfg: LaunchConfig, job: &J, stop: &AtomicBool) -> Result<Ended<J::End>, String> {
    let want_xdp = match cfg.backend {
        BackendChoice::Xdp => true,
        BackendChoice::Kernel => false,
        BackendChoice::Auto => cfg.xdp.is_ok(),
    };
    let pcap = cfg.xdp.as_ref().is_ok_and(|x| x.capture.is_some());
    let cores = plan::plan(want_xdp, &cfg.places, pcap)?;
    let n = cores.len();
    let queues: Vec<u32> = if want_xdp { cfg.places.queues.clone() } else { vec![0; n] };
    let online = runtime::online_cpus();
    if let Some(o) = &cfg.observe {
        if let Some(rc) = o.reporter_core {
            if !online.contains(&rc) {
                return Err(format!("--reporter-core {rc}: not an online CPU (online: {online:?})"));
            }
            if cores.contains(&Some(rc)) {
                log_warn!("--reporter-core {rc}: a loop's core; every drain will stall that loop");
            }
        }
    }
    let mut attached = if want_xdp {
        let fall_back = cfg.backend == BackendChoice::Auto;
        match &cfg.xdp {
            Err(why) if fall_back => {
                log_info!("backend auto: kernel ({why})");
                None
            }
            _ => Attached::attach(cfg.xdp.clone(), &queues, fall_back)?,
        }
    } else {
        if let (BackendChoice::Auto, Err(why)) = (cfg.backend, &cfg.xdp) {
            log_info!("backend auto: kernel ({why})");
        }
        None
    };
    let xdp = attached.is_some();
    if !xdp && pcap {
        log_warn!(
            "no capture is written: --pcap captures the frames the xdp backend bypasses the kernel with; the kernel \
             backend's traffic is visible to tcpdump -i IFACE -w FILE"
        );
    }

    // Tracers and the reporter.
    let mut tracers = Vec::with_capacity(n);
    let mut consumers = Vec::new();
    for (i, &c) in cores.iter().enumerate() {
        let t = match &cfg.observe {
            Some(o) => {
                let (mut t, cons) = Tracer::new(&o.sampling, o.inject, c.unwrap_or(0).min(255) as u8)?;
                t.set_pinned(c.is_some());
                if n > 1 {
                    t.set_loop(i as u8);
                }
                consumers.extend(cons);
                t
            }
            None => Tracer::disabled(),
        };
        tracers.push(t);
    }
    let sinks: SyscallCounters = Arc::default();
    let reporter = match &cfg.observe {
        Some(o) if o.reporter() => {
            if let Some(Ok(r)) = attached.as_ref().map(|a| a.prog.counter_reader()) {
                if let Ok(mut s) = sinks.lock() {
                    s.push((
                        None,
                        Box::new(move || {
                            let mut c = Counters::default();
                            r.read().fill(&mut c);
                            c
                        }),
                    ));
                }
            }
            if o.reporter_core.is_none() && n > 1 && online.iter().all(|c| cores.contains(&Some(*c))) {
                log_warn!(
                    "every online CPU runs a loop: the reporter shares them (give --reporter-core or fewer loops)"
                );
            }
            let rcfg = ReporterConfig {
                metrics: o.metrics,
                sla_ns: o.sla_ns,
                tail_ns: o.sampling.tail_ns,
                offcpu: o.offcpu,
                loop_cores: cores.iter().flatten().copied().collect(),
                sample_log: o.sample_log.clone(),
                records: o.sample_log_records,
                avoid_core: if n == 1 { cores[0] } else { None },
                core: o.reporter_core,
                syscall_counters: sinks.clone(),
            };
            Some(Reporter::start(rcfg, std::mem::take(&mut consumers), n).map_err(|e| format!("reporter: {e}"))?)
        }
        _ => None,
    };

    // Each loop's backend and place.
    let mut specs = Vec::with_capacity(n);
    for ((i, &core), tracer) in cores.iter().enumerate().zip(tracers) {
        let (backend, place) = match attached.as_mut() {
            Some(x) => {
                let (b, q) = x.next_loop()?;
                (b, format!("queue {q}, {}", core.map_or("unpinned".into(), |c| format!("core {c}"))))
            }
            None => {
                let reuse_port = if n > 1 { core } else { None };
                (
                    LoopBackend::Kernel(KernelConfig { reuse_port, ..cfg.kernel.clone() }),
                    core.map_or("unpinned".into(), |c| format!("core {c}")),
                )
            }
        };
        let published = reporter.as_ref().map(|r| r.published[i].clone());
        specs.push((i, core, place, backend, tracer, published));
    }
    let places = match (n, xdp) {
        (1, _) => specs[0].2.clone(),
        (_, true) => format!("queues {} on cores {}", show(&queues), show_cores(&cores)),
        (_, false) => format!("SO_REUSEPORT listeners on cores {}", show_cores(&cores)),
    };

    let offcpu = reporter.as_ref().and_then(|r| r.offcpu());
    let ready = AtomicUsize::new(0);
    let ends: Vec<Result<J::End, String>> = std::thread::scope(|sc| {
        let mut handles = Vec::with_capacity(n);
        for (index, core, place, backend, tracer, published) in specs {
            let ready = &ready;
            let sinks = &sinks;
            let offcpu = offcpu.clone();
            let name = format!("tg-loop{index}");
            let spawned = std::thread::Builder::new().name(name).spawn_scoped(sc, move || {
                let cx = LoopCtx { index, loops: n, place, tracer, published, stop, ready };
                let r = one_loop(job, core, backend, sinks, offcpu, cx);
                if r.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
                r
            });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    log_warn!("starting a loop thread: {e}");
                }
            }
        }
        while ready.load(Ordering::Acquire) < handles.len() && !handles.iter().any(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if ready.load(Ordering::Acquire) == n {
            let metrics = reporter.as_ref().and_then(|r| r.metrics_addr);
            job.ready(&Started { backend: if xdp { "xdp" } else { "kernel" }, loops: n, places, metrics });
        }
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a loop panicked".into()))).collect()
    });
    if let Some(rep) = reporter {
        rep.stop();
    }
    let program = attached.as_ref().map(|a| {
        let mut c = Counters::default();
        a.prog.counters().fill(&mut c);
        c
    });
    drop(attached);
    Ok(Ended { loops: ends, program, backend: if xdp { "xdp" } else { "kernel" } })
}

fn show(v: &[u32]) -> String {
    v.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

fn show_cores(v: &[Option<usize>]) -> String {
    v.iter().map(|c| c.map_or("-".to_string(), |c| c.to_string())).collect::<Vec<_>>().join(",")
}

/// One loop's thread: pin, build its transport, run the job.
fn one_loop<J: Job>(
    job: &J,
    core: Option<usize>,
    backend: LoopBackend,
    sinks: &SyscallCounters,
    offcpu: Option<Arc<crate::sampler::offcpu::Shared>>,
    cx: LoopCtx<'_>,
) -> Result<J::End, String> {
    let (index, several) = (cx.index, cx.loops > 1);
    let who = if several { format!("loop {index}: ") } else { String::new() };
    if let Some(core) = core {
        runtime::pin_to_core(core)?;
        if !runtime::core_isolated(core) {
            log_warn!("{who}core {core} is not isolated (isolcpus/nohz_full): expect scheduler noise in the tail");
        }
    }
    if let Some(o) = offcpu {
        // Once, before serving: the tracer watches this thread from now on.
        o.watch(rustix::thread::gettid().as_raw_nonzero().get() as u32, core);
    }
    let register = |r: Option<CounterReader>| {
        if let (Some(r), Ok(mut s)) = (r, sinks.lock()) {
            s.push((Some(index), r));
        }
    };
    match backend {
        LoopBackend::Xdp(c, of) => {
            let t = XdpTransport::for_loop(*c, of).map_err(|e| format!("{who}xdp backend: {e}"))?;
            register(t.counter_reader());
            job.run(t, cx)
        }
        LoopBackend::Kernel(c) => {
            let t = KernelTransport::new(c).map_err(|e| format!("{who}kernel backend: {e}"))?;
            register(t.counter_reader());
            job.run(t, cx)
        }
    }
}
