//! `tailgate serve`: run the gateway (or the echo / sockperf servers) on a
//! backend, with sampling, metrics and fault injection.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use clap::{Args, ValueEnum};

use super::{choose, xdp_config, BackendArg, Chosen, XdpArgs, XdpExtras};
use tailgate::app::echo::Echo;
use tailgate::app::orders::{Orders, OrdersConfig};
use tailgate::app::sockperf::Sockperf;
use tailgate::app::App;
use tailgate::sampler::inject::InjectConfig;
use tailgate::sampler::policy::SamplingConfig;
use tailgate::sampler::reporter::{Reporter, ReporterConfig};
use tailgate::sampler::store;
use tailgate::sampler::tracer::{Tracer, TracerStats};
use tailgate::server::{Server, ServerConfig, ServerStats};
use tailgate::transport::{Transport, TransportStats, WaitMode};
use tailgate::{log_info, log_warn, runtime};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ServeApp {
    /// The order-entry gateway (docs/PROTOCOL.md).
    Orders,
    /// Plain byte echo; after the peer's FIN, finishes echoing and closes.
    Echo,
    /// Echo for `sockperf ping-pong --tcp` (14-byte sockperf header).
    Sockperf,
    /// UDP echo straight from the AF_XDP rings, no TCP (xdp backend only): the floor.
    UdpEcho,
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Backend: auto, kernel or xdp.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) backend: BackendArg,
    /// Address to listen on; with the xdp backend, the address the stack owns.
    #[arg(long)]
    pub(crate) ip: IpAddr,
    /// TCP (or UDP, for udp-echo) port to listen on.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) port: u16,
    /// Application to serve.
    #[arg(long, value_enum, default_value = "orders")]
    pub(crate) app: ServeApp,
    /// Pin the event loop to this CPU; or a list (0,1 or 2-3): one loop per core, each pinned,
    /// sharing nothing. With --backend xdp the list gives one core per --queue, in order; with the
    /// kernel backend each loop has its own SO_REUSEPORT listener with SO_INCOMING_CPU set to its
    /// core.
    #[arg(long, value_parser = super::parse_list)]
    pub(crate) core: Option<super::List>,
    /// Busy-poll: never sleep (epoll_wait or poll with zero timeout), and set SO_BUSY_POLL.
    #[arg(long)]
    pub(crate) spin: bool,
    /// SO_BUSY_POLL value in microseconds with --spin (0 to leave it unset).
    #[arg(long, default_value_t = tailgate::transport::BUSY_POLL_US_DEFAULT, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub(crate) busy_poll_us: u32,
    /// Gateway heartbeat interval in milliseconds (orders).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(10..=3_600_000))]
    pub(crate) heartbeat_ms: u32,
    /// Log a session out after this long without a message from it, in milliseconds (orders).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(10..=3_600_000))]
    pub(crate) idle_timeout_ms: u32,
    /// Open limit orders allowed per session (orders).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub(crate) max_open_orders: u64,
    /// Per-connection receive buffer in bytes (the smaller of --rx-buf and --tx-buf is the largest
    /// sockperf message accepted).
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1024..=16_777_216))]
    pub(crate) rx_buf: u64,
    /// Per-connection send buffer in bytes.
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1024..=16_777_216))]
    pub(crate) tx_buf: u64,
    /// Do not hold /dev/cpu_dma_latency at 0 while serving (by default the gateway does, when it
    /// may, so no core enters a deep C-state whose exit costs tens of microseconds).
    #[arg(long)]
    pub(crate) no_cpu_dma_latency: bool,
    /// On SIGTERM or SIGINT: stop accepting, send every orders session a Logout (reason
    /// Shutdown), flush queued replies, send FIN, and wait up to this long (milliseconds) for the
    /// peers; then exit with counts of what was flushed and what was abandoned.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub(crate) drain_ms: u64,
    /// SYN backlog of the kernel backend: its listen(2) backlog (capped by net.core.somaxconn).
    /// The xdp backend keeps no half-open state to bound: it answers every SYN with a SYN
    /// cookie, and a connection exists (and counts against --max-conns) once its handshake
    /// completes.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub(crate) backlog: u64,
    #[command(flatten)]
    pub(crate) xdp: XdpArgs,
    #[command(flatten)]
    pub(crate) obs: ObserveArgs,
}

/// Sampling, metrics and fault injection (docs/ATTRIBUTION.md).
#[derive(Args)]
pub(crate) struct ObserveArgs {
    /// Serve Prometheus metrics (GET /metrics) and the recent samples (GET /samples, read by
    /// `tailgate report --live`) on this address, from an unpinned thread.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<SocketAddr>,
    /// Keep samples in this file: fixed-size binary records behind a header, a bounded ring on
    /// disk written by the reporter thread; read it with `tailgate report --log FILE`.
    #[arg(long, value_name = "FILE")]
    pub(crate) sample_log: Option<std::path::PathBuf>,
    /// Pin the reporter and metrics threads to this core, a housekeeping core (default: any core
    /// but --core). Each drain (every 10 ms) delays whatever else runs on that core.
    #[arg(long, value_name = "N")]
    pub(crate) reporter_core: Option<usize>,
    /// Records kept in the sample log (and in memory for /samples).
    #[arg(long, default_value_t = store::DEFAULT_RECORDS, value_parser = clap::value_parser!(u64).range(1..=1 << 26))]
    pub(crate) sample_log_records: u64,
    /// Sampling rates: off, on, or KIND=PERCENT[,...] with KIND one of all, logon, heartbeat,
    /// limit, market, cancel, logout, invalid, ping (e.g. all=10,market=100). Default: every
    /// message when --metrics or --sample-log is given, else off.
    #[arg(long, value_name = "SPEC")]
    pub(crate) sample: Option<String>,
    /// Sampling configuration file (TOML, [sampling] table); flags override it.
    #[arg(long, value_name = "FILE")]
    pub(crate) sample_config: Option<std::path::PathBuf>,
    /// Tail bias: messages slower than this (microseconds in the gateway) are always recorded,
    /// whatever their rate; 0 turns it off. Default 100.
    #[arg(long, value_name = "US")]
    pub(crate) sample_tail_us: Option<u64>,
    /// Above this many messages per second the sampling rates halve (per doubling above it),
    /// and come back below it; 0 never halves. Default 0.
    #[arg(long, value_name = "MSGS")]
    pub(crate) sample_max_rate: Option<u64>,
    /// Sample ring capacity in records (a power of two). Default 65536.
    #[arg(long, value_name = "N")]
    pub(crate) sample_ring: Option<usize>,
    /// Hold each sampled reply's record until the peer acknowledges the reply (the `ack`
    /// stage: xdp from the stack's own view, kernel from SO_TIMESTAMPING TX_ACK reports on the
    /// error queue, two more recvmsg per reply on the loop). Default on.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub(crate) sample_acks: Option<bool>,
    /// Inject a fault (repeatable): stall:EVERY_MS:DURATION_US (the poll loop spins),
    /// slow-handler:EVERY_N:DURATION_US (every N-th message's handler spins), loss:EVERY_N
    /// (the XDP program drops every N-th TCP data segment; xdp backend only), tx-loss:EVERY_N (the
    /// stack drops every N-th TCP data segment it sends, so it must retransmit; xdp backend only).
    #[arg(long, value_name = "SPEC")]
    pub(crate) inject: Vec<String>,
}

impl ObserveArgs {
    pub(crate) fn sampling(&self) -> Result<SamplingConfig, String> {
        let mut c = match &self.sample_config {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| format!("--sample-config {}: {e}", p.display()))?;
                SamplingConfig::from_toml(&text, &format!("--sample-config {}", p.display()))?
            }
            None => SamplingConfig {
                enabled: self.metrics.is_some() || self.sample_log.is_some(),
                ..SamplingConfig::default()
            },
        };
        if let Some(spec) = &self.sample {
            c.apply_spec(spec)?;
        }
        if let Some(t) = self.sample_tail_us {
            c.tail_ns = t.saturating_mul(1000);
        }
        if let Some(m) = self.sample_max_rate {
            c.max_rate = m;
        }
        if let Some(r) = self.sample_ring {
            c.ring = r;
        }
        if let Some(a) = self.sample_acks {
            c.acks = a;
        }
        c.validate().map_err(|e| format!("--sample-ring: {e}"))?;
        Ok(c)
    }

    pub(crate) fn inject(&self) -> Result<InjectConfig, String> {
        let mut c = InjectConfig::default();
        for spec in &self.inject {
            c.apply(spec)?;
        }
        Ok(c)
    }
}

impl ServeArgs {
    /// The one loop's core (the first of a list).
    fn core1(&self) -> Option<usize> {
        self.core.as_ref().map(super::List::first)
    }

    /// What the XDP program and stack of a server do besides serving:
    /// stamps for sampling, injected drops, the loop's core (`core`) and the
    /// reporter's for a capture writer.
    pub(crate) fn xdp_extras(
        &self,
        sampling: &SamplingConfig,
        inject: &InjectConfig,
        core: Option<usize>,
    ) -> XdpExtras {
        XdpExtras {
            outbound: false,
            backlog: self.backlog as usize,
            stamp_rx: sampling.enabled,
            drop_every: inject.loss_every.unwrap_or(0),
            tx_drop_every: inject.tx_loss_every.unwrap_or(0),
            place: (core, self.obs.reporter_core),
        }
    }

    /// The server's buffers and drain time.
    pub(crate) fn server_config(&self) -> ServerConfig {
        ServerConfig {
            rx_buf: self.rx_buf as usize,
            tx_buf: self.tx_buf as usize,
            drain_ns: self.drain_ms * 1_000_000,
            ..ServerConfig::default()
        }
    }

    /// The order gateway's session limits.
    pub(crate) fn orders_config(&self) -> OrdersConfig {
        OrdersConfig {
            heartbeat_ms: self.heartbeat_ms,
            idle_timeout_ms: self.idle_timeout_ms,
            max_open_orders: self.max_open_orders as usize,
        }
    }

    /// Loops asked for: one per --queue with the xdp backend, one per
    /// --core with the kernel backend.
    fn loops(&self) -> usize {
        self.xdp.queue.len().max(self.core.as_ref().map_or(1, super::List::len))
    }
}

pub(crate) fn run(a: ServeArgs) -> Result<ExitCode, String> {
    let stop = runtime::stop_flag().map_err(|e| format!("installing signal handlers: {e}"))?;
    if a.loops() > 1 {
        return super::loops::run(&a, &stop);
    }
    if let Some(core) = a.core1() {
        runtime::pin_to_core(core)?;
        if !runtime::core_isolated(core) {
            log_warn!("core {core} is not isolated (isolcpus/nohz_full): expect scheduler noise in the tail");
        }
    }
    let wait = if a.spin { WaitMode::Spin } else { WaitMode::Block };
    // Held open for the whole run: the kernel keeps the request while the
    // file is open and drops it when the process exits, however it exits.
    let _dma_latency = if a.no_cpu_dma_latency { None } else { runtime::hold_cpu_dma_latency_zero() };
    let sampling = a.obs.sampling()?;
    let inject = a.obs.inject()?;
    let extras = a.xdp_extras(&sampling, &inject, a.core1());
    let needs_xdp = inject.loss_every.is_some() || inject.tx_loss_every.is_some();
    if needs_xdp && a.backend == BackendArg::Kernel {
        return Err(
            "--inject loss:N or tx-loss:N needs --backend xdp: the drops live in the XDP program and the stack".into(),
        );
    }
    let stack_ip = match a.ip {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    };
    if a.app == ServeApp::UdpEcho {
        if a.backend == BackendArg::Kernel {
            return Err("--app udp-echo runs on the xdp backend only (it echoes from the AF_XDP rings)".into());
        }
        let ip = stack_ip.ok_or("--app udp-echo: --ip must be IPv4")?;
        if sampling.enabled || inject.any() || a.obs.metrics.is_some() {
            return Err("--app udp-echo has no sampling, metrics or injection (it is the bare floor)".into());
        }
        let cfg = xdp_config(&a.xdp, ip, wait, a.busy_poll_us, XdpExtras::default())?;
        let mac = tailgate::backend::xdp::mac_of(&cfg.iface).map_err(|e| e.to_string())?;
        let mut echo = tailgate::app::udp_echo::UdpEcho::new(ip, mac, a.port);
        return tailgate::backend::xdp::frames::run(cfg, a.port, &mut echo, &stop).map(|_| ExitCode::SUCCESS);
    }
    let chosen = choose(a.backend, &a.xdp, stack_ip, wait, a.busy_poll_us, extras)?;
    let obs = Observe { sampling, inject };
    match chosen {
        Chosen::Kernel(t) => {
            if needs_xdp {
                return Err(
                    "--inject loss:N and tx-loss:N need the xdp backend, and the kernel backend was chosen".into()
                );
            }
            serve_on(*t, &a, &obs, &stop)
        }
        Chosen::Xdp(t) => serve_on(*t, &a, &obs, &stop),
    }
}

/// Sampling and injection, resolved from the flags.
pub(crate) struct Observe {
    pub(crate) sampling: SamplingConfig,
    pub(crate) inject: InjectConfig,
}

pub(crate) fn serve_on<T: Transport>(
    t: T,
    a: &ServeArgs,
    obs: &Observe,
    stop: &AtomicBool,
) -> Result<ExitCode, String> {
    let addr = SocketAddr::new(a.ip, a.port);
    let scfg = a.server_config();
    let what = format!(
        "backend={} ({}) core={}",
        t.name(),
        if a.spin { "spin" } else { "blocking" },
        a.core1().map(|c| c.to_string()).unwrap_or_else(|| "unpinned".into())
    );
    match a.app {
        ServeApp::Orders => run_server(Server::new(t, Orders::new(a.orders_config()), scfg), addr, &what, a, obs, stop),
        ServeApp::Echo => run_server(Server::new(t, Echo::default(), scfg), addr, &what, a, obs, stop),
        ServeApp::Sockperf => run_server(
            Server::new(t, Sockperf::for_buffers(a.rx_buf as usize, a.tx_buf as usize), scfg),
            addr,
            &what,
            a,
            obs,
            stop,
        ),
        ServeApp::UdpEcho => Err("--app udp-echo runs on the xdp backend only".into()),
    }
}

pub(crate) fn run_server<T: Transport, A: App>(
    mut s: Server<T, A>,
    addr: SocketAddr,
    what: &str,
    a: &ServeArgs,
    obs: &Observe,
    stop: &AtomicBool,
) -> Result<ExitCode, String> {
    s.listen(addr).map_err(|e| format!("--ip/--port {addr}: cannot listen: {e}"))?;
    let core = a.core1().map_or(0, |c| c.min(255) as u8);
    if let Some(rc) = a.obs.reporter_core {
        let online = runtime::online_cpus();
        if !online.contains(&rc) {
            return Err(format!("--reporter-core {rc}: not an online CPU (online: {online:?})"));
        }
    }
    if a.obs.reporter_core.is_some() && a.obs.reporter_core == a.core1() {
        log_warn!("--reporter-core {}: the loop's own core; every drain will stall the loop", core);
    }
    let (mut tracer, consumer) = Tracer::new(&obs.sampling, obs.inject, core)?;
    tracer.set_pinned(a.core.is_some());
    let consumer: Vec<_> = consumer.into_iter().collect();
    let reporter = if obs.sampling.enabled || a.obs.metrics.is_some() || a.obs.sample_log.is_some() {
        let rcfg = ReporterConfig {
            metrics: a.obs.metrics,
            sample_log: a.obs.sample_log.clone(),
            records: a.obs.sample_log_records,
            avoid_core: a.core1(),
            core: a.obs.reporter_core,
            syscall_counters: s.transport.counter_reader(),
        };
        let r = Reporter::start(rcfg, consumer, 1).map_err(|e| format!("reporter: {e}"))?;
        s.set_published(r.published[0].clone());
        Some(r)
    } else {
        None
    };
    s.set_tracer(tracer);
    if let Some(m) = reporter.as_ref().and_then(|r| r.metrics_addr) {
        log_info!("metrics on http://{m}/metrics, samples on http://{m}/samples");
    }
    if obs.inject.any() {
        log_warn!("fault injection on: {}", obs.inject.describe());
    }
    log_info!("serving {} on {addr} {what}; {}", s.app.name(), obs.sampling.describe());
    let r = s.run(stop);
    s.publish();
    if let Some(rep) = reporter {
        rep.stop();
    }
    let st = s.stats;
    let ts = s.transport.stats();
    log_info!("stopped: {}", stopped_fields(&st, &ts));
    if let Some(extra) = s.transport.report() {
        log_info!("{extra}");
    }
    log_info!("{}", s.app.summary());
    if s.tracer.active() {
        log_info!("sampler: {}", sampler_fields(&s.tracer.stats()));
    }
    r.map_err(|e| format!("event loop: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// The exit line's connection and loop counters.
pub(crate) fn stopped_fields(st: &ServerStats, ts: &TransportStats) -> String {
    format!(
        "connections opened={} closed={} aborted={} io_errors={} flush_timeouts={} drained={} abandoned={} \
         abandoned_bytes={} bytes_in={} bytes_out={} polls_useful={} polls_idle={}",
        st.opened,
        st.closed,
        st.aborted,
        st.io_errors,
        st.flush_timeouts,
        st.drained,
        st.abandoned,
        st.abandoned_bytes,
        ts.bytes_in,
        ts.bytes_out,
        ts.polls_useful,
        ts.polls_idle
    )
}

/// The exit line's sampler counters.
pub(crate) fn sampler_fields(t: &TracerStats) -> String {
    format!(
        "messages={} recorded={} tail_bias={} skipped={} dropped_ring_full={} injected_stalls={} \
         injected_slow_handlers={} acked={} ack_late={} ack_untracked={} ack_held={}",
        t.messages,
        t.recorded,
        t.tail,
        t.skipped,
        t.dropped,
        t.injected_stalls,
        t.injected_slow_handlers,
        t.acked,
        t.ack_late,
        t.ack_untracked,
        t.held
    )
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("'{s}': expected on or off")),
    }
}
