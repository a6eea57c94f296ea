//! `tailgate load` with several loops: one per NIC queue (xdp backend) or
//! one per core (kernel backend), each pinned to its core with its own
//! transport and its share of the connections and the rate. The xdp loops
//! share the one XDP program and the handoff rings; each picks local ports
//! whose replies the NIC's RSS brings back to its own queue when the device
//! says how it hashes (`backend::xdp::device_rss`), and otherwise takes
//! every n-th port and relies on the handoff for replies that land on
//! another loop's queue (docs/ARCHITECTURE.md, "One loop per queue").

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use hdrhistogram::Histogram;

use super::load::LoadArgs;
use super::multi::{plan_loops, Attached, LoopBackend};
use super::{kernel_config, xdp_config, BackendArg, XdpExtras};
use tailgate::backend::kernel::KernelTransport;
use tailgate::backend::xdp::XdpTransport;
use tailgate::load::{LoadConfig, LoadGen, LoopShare, Mode, Report, Together};
use tailgate::transport::{Transport, WaitMode};
use tailgate::{log_info, runtime};

/// A loop's report, its histogram (merged into the totals) and its share.
type LoopEnd = Result<(Report, Histogram<u64>, LoopShare), String>;

struct Spec {
    index: usize,
    core: usize,
    place: String,
    backend: LoopBackend,
    cfg: LoadConfig,
}

/// `total` split over `n` parts: part `i`'s share (the first `total % n`
/// parts get one more).
fn share(total: u64, n: usize, i: usize) -> u64 {
    total / n as u64 + u64::from((i as u64) < total % n as u64)
}

/// Run one generator per loop and combine their reports.
pub(crate) fn run(
    a: &LoadArgs,
    backend: BackendArg,
    cfg: LoadConfig,
    stop: &Arc<AtomicBool>,
) -> Result<Report, String> {
    let queues = &a.xdp.queue;
    let xdp = match backend {
        BackendArg::Xdp => true,
        BackendArg::Kernel => false,
        BackendArg::Auto => a.local_ip.is_some(),
    };
    let cores = plan_loops(xdp, &a.xdp, a.core.as_ref())?;
    let n = cores.len();
    if (cfg.conns as u64) < n as u64 {
        return Err(format!("--conns {}: fewer connections than the {n} loops; give at least one per loop", cfg.conns));
    }

    // The XDP program is attached once, here, with every queue's socket
    // registered by its loop; it is detached when `attached` drops, after
    // every loop has stopped.
    let mut attached = if xdp {
        let cfg = a
            .local_ip
            .ok_or_else(|| "--backend xdp needs --local-ip, the address the load generator's stack owns".to_string())
            .and_then(|ip| {
                xdp_config(&a.xdp, ip, WaitMode::Spin, 0, XdpExtras { outbound: true, ..XdpExtras::default() })
            });
        // On a failure, auto runs one kernel loop per core given.
        Attached::attach(cfg, queues, backend == BackendArg::Auto)?
    } else {
        None
    };
    let xdp = attached.is_some();

    let arrived = Arc::new(AtomicUsize::new(0));
    let mut specs = Vec::with_capacity(n);
    for (i, &core) in cores.iter().enumerate() {
        let conns = share(cfg.conns as u64, n, i);
        let mode = match cfg.mode {
            // The rate per connection stays the same on every loop.
            Mode::Rate(r) => Mode::Rate(r * conns as f64 / cfg.conns as f64),
            Mode::PingPong => Mode::PingPong,
        };
        let burst = cfg.burst.and_then(|(count, every)| {
            let mine = share(u64::from(count), n, i) as u32;
            (mine > 0).then_some((mine, every))
        });
        let lcfg = LoadConfig {
            conns: conns as usize,
            mode,
            burst,
            progress: false,
            together: Some(Together { arrived: arrived.clone(), of: n }),
            ..cfg.clone()
        };
        let (backend, place) = match attached.as_mut() {
            Some(x) => {
                let (b, q) = x.next_loop()?;
                (b, format!("queue {q}, core {core}"))
            }
            None => (LoopBackend::Kernel(kernel_config(&a.xdp, WaitMode::Spin, 0, 1)), format!("core {core}")),
        };
        specs.push(Spec { index: i, core, place, backend, cfg: lcfg });
    }
    log_info!(
        "load: {n} loops ({}), {} connections split {}",
        if xdp {
            format!(
                "xdp, queues {} on cores {}",
                queues.show(),
                a.core.as_ref().map(super::List::show).unwrap_or_default()
            )
        } else {
            format!("kernel, cores {}", a.core.as_ref().map(super::List::show).unwrap_or_default())
        },
        cfg.conns,
        specs.iter().map(|s| s.cfg.conns.to_string()).collect::<Vec<_>>().join("/")
    );

    let stop: &AtomicBool = stop;
    let ends: Vec<LoopEnd> = std::thread::scope(|sc| {
        let handles: Vec<_> = specs
            .into_iter()
            .map(|spec| {
                let name = format!("tg-load{}", spec.index);
                std::thread::Builder::new().name(name).spawn_scoped(sc, move || one_loop(spec, stop))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().unwrap_or_else(|_| Err("a loop panicked".into())),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    Err(format!("starting a loop thread: {e}"))
                }
            })
            .collect()
    });
    drop(attached);
    let mut parts = Vec::with_capacity(n);
    let mut shares = Vec::with_capacity(n);
    let mut errors = Vec::new();
    for e in ends {
        match e {
            Ok((r, h, s)) => {
                parts.push((r, h));
                shares.push(s);
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(format!("load: {}", errors.join("; ")));
    }
    let mut r = Report::combine(parts, shares).ok_or("load: no loop ran")?;
    r.mode = match cfg.mode {
        Mode::Rate(rate) => format!("rate {rate} msg/s"),
        Mode::PingPong => "pingpong".to_string(),
    };
    Ok(r)
}

/// One loop's thread: pin, build the transport, run its generator. An
/// error stops every loop.
fn one_loop(spec: Spec, stop: &AtomicBool) -> LoopEnd {
    let i = spec.index;
    let r = (|| {
        runtime::pin_to_core(spec.core)?;
        match spec.backend {
            LoopBackend::Xdp(c, of) => {
                let t = XdpTransport::for_loop(*c, of).map_err(|e| format!("loop {i}: xdp backend: {e}"))?;
                generate(t, spec.index, spec.place, spec.cfg, stop)
            }
            LoopBackend::Kernel(c) => {
                let t = KernelTransport::new(c).map_err(|e| format!("loop {i}: kernel backend: {e}"))?;
                generate(t, spec.index, spec.place, spec.cfg, stop)
            }
        }
    })();
    if r.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
    r
}

fn generate<T: Transport>(t: T, index: usize, place: String, cfg: LoadConfig, stop: &AtomicBool) -> LoopEnd {
    let conns = cfg.conns;
    let o = LoadGen::new(t, cfg).and_then(|g| g.run_full(stop)).map_err(|e| format!("loop {index}: {e}"))?;
    let c = o.transport.counters();
    let r = o.report;
    let s = LoopShare {
        index,
        place,
        conns,
        sent: r.sent,
        answered: r.answered,
        failures: r.failures(),
        throughput_msgs_per_s: r.throughput_msgs_per_s,
        p99_us: r.rtt_us.p99,
        handoff_forwarded: c.get("handoff_forwarded").unwrap_or(0),
        handoff_received: c.get("handoff_received").unwrap_or(0),
    };
    Ok((r, o.hist, s))
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        for (total, n) in [(200u64, 2usize), (7, 3), (3, 3), (1000, 7)] {
            let parts: Vec<u64> = (0..n).map(|i| share(total, n, i)).collect();
            assert_eq!(parts.iter().sum::<u64>(), total, "{parts:?}");
            assert!(parts.iter().max().unwrap() - parts.iter().min().unwrap() <= 1, "{parts:?}");
        }
    }
}
