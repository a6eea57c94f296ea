//! `tailgate serve` with several loops: one per NIC queue (xdp backend) or
//! one per core (kernel backend), each pinned to its own core, sharing
//! nothing but the handoff rings (xdp) and the reporter, which drains every
//! loop's sample ring (docs/ARCHITECTURE.md, "One loop per queue").

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::multi::{plan_loops, Attached, LoopBackend};
use super::serve::{sampler_fields, stopped_fields, ServeApp, ServeArgs};
use super::{kernel_config, xdp_config, BackendArg};
use tailgate::app::echo::Echo;
use tailgate::app::orders::Orders;
use tailgate::app::sockperf::Sockperf;
use tailgate::app::App;
use tailgate::backend::kernel::{KernelConfig, KernelTransport};
use tailgate::backend::xdp::XdpTransport;
use tailgate::sampler::reporter::{Published, Reporter, ReporterConfig};
use tailgate::sampler::tracer::Tracer;
use tailgate::server::{Server, ServerStats};
use tailgate::transport::{CounterReader, Counters, Transport, TransportStats, WaitMode};
use tailgate::{log_info, log_warn, runtime};

struct LoopSpec {
    index: usize,
    core: usize,
    /// "queue Q, core C" or "core C".
    place: String,
    backend: LoopBackend,
    tracer: Tracer,
    published: Option<Arc<Published>>,
}

/// What a loop leaves behind: its exit lines and counters.
#[derive(Default)]
struct LoopEnd {
    lines: Vec<String>,
    st: ServerStats,
    ts: TransportStats,
    error: Option<String>,
}

pub(crate) fn run(a: &ServeArgs, stop: &Arc<AtomicBool>) -> Result<ExitCode, String> {
    let sampling = a.obs.sampling()?;
    let inject = a.obs.inject()?;
    let queues = &a.xdp.queue;
    let xdp = match a.backend {
        BackendArg::Xdp => true,
        BackendArg::Kernel => false,
        BackendArg::Auto => a.xdp.iface.is_some(),
    };
    if a.app == ServeApp::UdpEcho {
        return Err("--app udp-echo runs one loop (give one --queue and one --core)".into());
    }
    let cores = plan_loops(xdp, &a.xdp, a.core.as_ref())?;
    let n = cores.len();
    let online = runtime::online_cpus();
    if let Some(rc) = a.obs.reporter_core {
        if !online.contains(&rc) {
            return Err(format!("--reporter-core {rc}: not an online CPU (online: {online:?})"));
        }
        if cores.contains(&rc) {
            log_warn!("--reporter-core {rc}: a loop's core; every drain will stall that loop");
        }
    }
    let needs_xdp = inject.loss_every.is_some() || inject.tx_loss_every.is_some();
    let wait = if a.spin { WaitMode::Spin } else { WaitMode::Block };
    let _dma_latency = if a.no_cpu_dma_latency { None } else { runtime::hold_cpu_dma_latency_zero() };

    // The XDP program is attached once, here, and detached after every loop
    // has stopped; each loop binds its own socket (and UMEM) to its queue.
    let mut attached = if xdp {
        let cfg = match a.ip {
            IpAddr::V4(ip) => xdp_config(&a.xdp, ip, wait, a.busy_poll_us, a.xdp_extras(&sampling, &inject, None)),
            IpAddr::V6(_) => Err("--backend xdp needs an IPv4 address for the stack".into()),
        };
        Attached::attach(cfg, queues, a.backend == BackendArg::Auto && !needs_xdp)?
    } else {
        None
    };
    let xdp = attached.is_some();
    if !xdp && needs_xdp {
        return Err("--inject loss:N and tx-loss:N need the xdp backend".into());
    }

    let mut tracers = Vec::with_capacity(n);
    let mut consumers = Vec::with_capacity(n);
    for (i, &c) in cores.iter().enumerate() {
        let (mut t, cons) = Tracer::new(&sampling, inject, c.min(255) as u8)?;
        t.set_pinned(true);
        t.set_loop(i as u8);
        tracers.push(t);
        consumers.extend(cons);
    }
    let reporter = if sampling.enabled || a.obs.metrics.is_some() || a.obs.sample_log.is_some() {
        let syscall_counters: Option<CounterReader> = match attached.as_ref().map(|x| x.prog.counter_reader()) {
            Some(Ok(r)) => Some(Box::new(move || {
                let mut c = Counters::default();
                r.read().fill(&mut c);
                c
            })),
            Some(Err(e)) => {
                log_warn!("xdp backend: {e}: the XDP program's counters are not exported");
                None
            }
            None => None,
        };
        let rcfg = ReporterConfig {
            metrics: a.obs.metrics,
            sample_log: a.obs.sample_log.clone(),
            records: a.obs.sample_log_records,
            avoid_core: None,
            core: a.obs.reporter_core,
            syscall_counters,
        };
        if a.obs.reporter_core.is_none() && online.iter().all(|c| cores.contains(c)) {
            log_warn!("every online CPU runs a loop: the reporter shares them (give --reporter-core or fewer loops)");
        }
        Some(Reporter::start(rcfg, consumers, n).map_err(|e| format!("reporter: {e}"))?)
    } else {
        None
    };
    let mut specs = Vec::with_capacity(n);
    for ((i, &core), tracer) in cores.iter().enumerate().zip(tracers) {
        let published = reporter.as_ref().map(|r| r.published[i].clone());
        let (backend, place) = match attached.as_mut() {
            Some(x) => {
                let (b, q) = x.next_loop()?;
                (b, format!("queue {q}, core {core}"))
            }
            None => (
                LoopBackend::Kernel(KernelConfig {
                    reuse_port: Some(core),
                    ..kernel_config(&a.xdp, wait, a.busy_poll_us, a.backlog as usize)
                }),
                format!("core {core}"),
            ),
        };
        specs.push(LoopSpec { index: i, core, place, backend, tracer, published });
    }

    let ready = AtomicUsize::new(0);
    let addr = SocketAddr::new(a.ip, a.port);
    let ends: Vec<LoopEnd> = std::thread::scope(|sc| {
        let mut handles = Vec::with_capacity(n);
        for spec in specs {
            let (ready, stop) = (&ready, &**stop);
            let name = format!("tg-loop{}", spec.index);
            match std::thread::Builder::new().name(name).spawn_scoped(sc, move || one_loop(a, spec, stop, ready)) {
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
            if let Some(m) = reporter.as_ref().and_then(|r| r.metrics_addr) {
                log_info!("metrics on http://{m}/metrics, samples on http://{m}/samples");
            }
            if inject.any() {
                log_warn!("fault injection on: {}", inject.describe());
            }
            log_info!(
                "serving {} on {addr} backend={} ({}) loops={n} ({}); {}",
                app_name(a.app),
                if xdp { "xdp" } else { "kernel" },
                if a.spin { "spin" } else { "blocking" },
                if xdp {
                    format!(
                        "queues {} on cores {}",
                        queues.show(),
                        a.core.as_ref().map(super::List::show).unwrap_or_default()
                    )
                } else {
                    format!(
                        "SO_REUSEPORT listeners on cores {}",
                        a.core.as_ref().map(super::List::show).unwrap_or_default()
                    )
                },
                sampling.describe()
            );
        }
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| LoopEnd { error: Some("a loop panicked".into()), ..LoopEnd::default() })
            })
            .collect()
    });
    if let Some(rep) = reporter {
        rep.stop();
    }
    drop(attached);
    let (mut st, mut ts) = (ServerStats::default(), TransportStats::default());
    let mut errors = Vec::new();
    for e in &ends {
        for l in &e.lines {
            log_info!("{l}");
        }
        st.add(&e.st);
        ts.add(&e.ts);
        errors.extend(e.error.clone());
    }
    log_info!("stopped: loops={} {}", ends.len(), stopped_fields(&st, &ts));
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

fn app_name(app: ServeApp) -> &'static str {
    match app {
        ServeApp::Orders => "orders",
        ServeApp::Echo => "echo",
        ServeApp::Sockperf => "sockperf",
        ServeApp::UdpEcho => "udp-echo",
    }
}

/// One loop's thread: pin, build its transport and server, serve until
/// `stop`. An error stops every loop.
fn one_loop(a: &ServeArgs, spec: LoopSpec, stop: &AtomicBool, ready: &AtomicUsize) -> LoopEnd {
    let (index, core) = (spec.index, spec.core);
    let r = (|| -> Result<LoopEnd, String> {
        runtime::pin_to_core(core)?;
        if !runtime::core_isolated(core) {
            log_warn!(
                "loop {index}: core {core} is not isolated (isolcpus/nohz_full): expect scheduler noise in the tail"
            );
        }
        match spec.backend {
            LoopBackend::Xdp(cfg, of) => {
                let t = XdpTransport::for_loop(*cfg, of).map_err(|e| format!("loop {index}: xdp backend: {e}"))?;
                with_app(t, a, spec.index, spec.place, spec.tracer, spec.published, stop, ready)
            }
            LoopBackend::Kernel(cfg) => {
                let t = KernelTransport::new(cfg).map_err(|e| format!("loop {index}: kernel backend: {e}"))?;
                with_app(t, a, spec.index, spec.place, spec.tracer, spec.published, stop, ready)
            }
        }
    })();
    r.unwrap_or_else(|e| {
        stop.store(true, Ordering::Relaxed);
        LoopEnd { error: Some(e), ..LoopEnd::default() }
    })
}

#[allow(clippy::too_many_arguments)]
fn with_app<T: Transport>(
    t: T,
    a: &ServeArgs,
    index: usize,
    place: String,
    tracer: Tracer,
    published: Option<Arc<Published>>,
    stop: &AtomicBool,
    ready: &AtomicUsize,
) -> Result<LoopEnd, String> {
    let scfg = a.server_config();
    let lp = Loop { index, place, tracer, published, stop, ready };
    match a.app {
        ServeApp::Orders => drive(Server::new(t, Orders::new(a.orders_config()), scfg), a, lp),
        ServeApp::Echo => drive(Server::new(t, Echo::default(), scfg), a, lp),
        ServeApp::Sockperf => {
            drive(Server::new(t, Sockperf::for_buffers(a.rx_buf as usize, a.tx_buf as usize), scfg), a, lp)
        }
        ServeApp::UdpEcho => Err("--app udp-echo runs one loop".into()),
    }
}

struct Loop<'a> {
    index: usize,
    place: String,
    tracer: Tracer,
    published: Option<Arc<Published>>,
    stop: &'a AtomicBool,
    ready: &'a AtomicUsize,
}

fn drive<T: Transport, A: App>(mut s: Server<T, A>, a: &ServeArgs, lp: Loop<'_>) -> Result<LoopEnd, String> {
    let i = lp.index;
    let addr = SocketAddr::new(a.ip, a.port);
    s.listen(addr).map_err(|e| format!("loop {i}: --ip/--port {addr}: cannot listen: {e}"))?;
    if let Some(p) = lp.published {
        s.set_published(p);
    }
    s.set_tracer(lp.tracer);
    lp.ready.fetch_add(1, Ordering::Release);
    let r = s.run(lp.stop);
    s.publish();
    let (st, ts) = (s.stats, s.transport.stats());
    let mut lines = vec![format!("loop {i} ({}): {}", lp.place, stopped_fields(&st, &ts))];
    if let Some(extra) = s.transport.report() {
        lines.push(format!("loop {i} {extra}"));
    }
    lines.push(format!("loop {i} {}", s.app.summary()));
    if s.tracer.active() {
        lines.push(format!("loop {i} sampler: {}", sampler_fields(&s.tracer.stats())));
    }
    let error = r.err().map(|e| format!("loop {i}: event loop: {e}"));
    if error.is_some() {
        lp.stop.store(true, Ordering::Relaxed);
    }
    Ok(LoopEnd { lines, st, ts, error })
}
