//! `tailgate serve`: run the gateway (or the echo / sockperf servers) on a
//! backend, with sampling, metrics and fault injection.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use clap::{ArgAction, Args, ValueEnum};

use super::config::{CONFIG, CONNECTIONS, INJECT, LISTEN, LOOPS, SAMPLING};
use super::{check_pcap, kernel_config, parse_on_off, places, xdp_plan, BackendArg, XdpArgs, XdpExtras};
use tailgate::app::echo::Echo;
use tailgate::app::orders::{Orders, OrdersConfig};
use tailgate::app::sockperf::Sockperf;
use tailgate::app::App;
use tailgate::launch::{launch, Job, LaunchConfig, LoopCtx, Observe, Started};
use tailgate::sampler::inject::InjectConfig;
use tailgate::sampler::policy::SamplingConfig;
use tailgate::sampler::store;
use tailgate::sampler::tracer::TracerStats;
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
    /// Stateless TCP echo from the AF_XDP rings, no stack (xdp backend only):
    /// the floor for `sockperf --tcp`; no retransmission, benchmarks only.
    TcpFloor,
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Backend: auto, kernel or xdp.
    #[arg(long, value_enum, default_value = "auto", help_heading = LISTEN)]
    pub(crate) backend: BackendArg,
    /// Address to listen on; with the xdp backend, the address the stack owns.
    /// Required, here or in the config file.
    #[arg(long, help_heading = LISTEN)]
    pub(crate) ip: Option<IpAddr>,
    /// TCP (or UDP, for udp-echo) port to listen on. Required, here or in the config file.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..), help_heading = LISTEN)]
    pub(crate) port: Option<u16>,
    /// Application to serve.
    #[arg(long, value_enum, default_value = "orders", help_heading = LISTEN)]
    pub(crate) app: ServeApp,
    #[command(flatten)]
    pub(crate) fix: super::fix::FixArgs,
    /// Pin the event loop to this CPU; or a list (0,1 or 2-3): one loop per core, each pinned,
    /// sharing nothing. With --backend xdp the list gives one core per --queue, in order; with the
    /// kernel backend each loop has its own SO_REUSEPORT listener with SO_INCOMING_CPU set to its
    /// core.
    #[arg(long, value_parser = super::parse_list, help_heading = LOOPS)]
    pub(crate) core: Option<super::List>,
    /// Busy-poll: never sleep (epoll_wait or poll with zero timeout), and set SO_BUSY_POLL.
    #[arg(long, value_name = "on|off", default_value = "off", num_args = 0..=1, default_missing_value = "on",
          action = ArgAction::Set, value_parser = parse_on_off, help_heading = LOOPS)]
    pub(crate) spin: bool,
    /// SO_BUSY_POLL value in microseconds with --spin (0 to leave it unset).
    #[arg(long, default_value_t = tailgate::transport::BUSY_POLL_US_DEFAULT, value_parser = clap::value_parser!(u32).range(0..=10_000), help_heading = LOOPS)]
    pub(crate) busy_poll_us: u32,
    /// Gateway heartbeat interval in milliseconds (orders).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(10..=3_600_000), help_heading = LISTEN)]
    pub(crate) heartbeat_ms: u32,
    /// Log a session out after this long without a message from it, in milliseconds (orders);
    /// its working orders are then cancelled at the exchange. Default: two heartbeat intervals.
    #[arg(long, value_parser = clap::value_parser!(u32).range(10..=3_600_000), help_heading = LISTEN)]
    pub(crate) idle_timeout_ms: Option<u32>,
    /// Open limit orders allowed per session (orders).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000), help_heading = LISTEN)]
    pub(crate) max_open_orders: u64,
    /// Per-connection receive buffer in bytes (the smaller of --rx-buf and --tx-buf is the largest
    /// sockperf message accepted).
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1024..=16_777_216), help_heading = CONNECTIONS)]
    pub(crate) rx_buf: u64,
    /// Per-connection send buffer in bytes.
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1024..=16_777_216), help_heading = CONNECTIONS)]
    pub(crate) tx_buf: u64,
    /// Hold /dev/cpu_dma_latency at 0 while serving, when the gateway may, so no core enters a
    /// deep C-state whose exit costs tens of microseconds; off leaves it alone.
    #[arg(long, value_name = "on|off", default_value = "on", num_args = 0..=1, default_missing_value = "on",
          action = ArgAction::Set, value_parser = parse_on_off, help_heading = LOOPS)]
    pub(crate) cpu_dma_latency: bool,
    /// The old spelling of --cpu-dma-latency off (deprecated).
    #[arg(long, hide = true)]
    pub(crate) no_cpu_dma_latency: bool,
    /// On SIGTERM or SIGINT: stop accepting, send every orders session a Logout (reason
    /// Shutdown), flush queued replies, send FIN, and wait up to this long (milliseconds) for the
    /// peers; then exit with counts of what was flushed and what was abandoned.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=600_000), help_heading = CONNECTIONS)]
    pub(crate) drain_ms: u64,
    /// SYN backlog of the kernel backend: its listen(2) backlog (capped by net.core.somaxconn).
    /// The xdp backend keeps no half-open state to bound: it answers every SYN with a SYN
    /// cookie, and a connection exists (and counts against --max-conns) once its handshake
    /// completes.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=65536), help_heading = CONNECTIONS)]
    pub(crate) backlog: u64,
    #[command(flatten)]
    pub(crate) upstream: super::upstream::UpstreamArgs,
    #[command(flatten)]
    pub(crate) admin: super::admin::AdminArgs,
    #[command(flatten)]
    pub(crate) journal: super::journal::JournalArgs,
    #[command(flatten)]
    pub(crate) xdp: XdpArgs,
    #[command(flatten)]
    pub(crate) obs: ObserveArgs,
    /// Read serve's flags from this TOML file: each flag is a key, its name without `--`, in the
    /// table of its heading here ([listen], [upstream], [admin], [journal], [xdp], [loops],
    /// [connections], [capture], [sampling], [inject]); flags given here override it. Its [[accounts]], [limits]
    /// and [prices] tables are the accounts and risk limits (docs/CONFIG.md).
    #[arg(long, value_name = "FILE", help_heading = CONFIG)]
    pub(crate) config: Option<std::path::PathBuf>,
    /// Print the effective configuration (flags over --config over defaults) as a config file,
    /// and exit without serving.
    #[arg(long, help_heading = CONFIG)]
    pub(crate) print_config: bool,
}

/// Sampling, metrics and fault injection (docs/ATTRIBUTION.md).
#[derive(Args)]
pub(crate) struct ObserveArgs {
    /// Serve Prometheus metrics (GET /metrics) and the recent samples (GET /samples, read by
    /// `tailgate report --live`) on this address, from an unpinned thread.
    #[arg(long, value_name = "ADDR", help_heading = SAMPLING)]
    pub(crate) metrics: Option<SocketAddr>,
    /// Keep samples in this file: fixed-size binary records behind a header, a bounded ring on
    /// disk written by the reporter thread; read it with `tailgate report --log FILE`.
    #[arg(long, value_name = "FILE", help_heading = SAMPLING)]
    pub(crate) sample_log: Option<std::path::PathBuf>,
    /// Pin the reporter and metrics threads to this core, a housekeeping core (default: any core
    /// but --core). Each drain (every 10 ms) delays whatever else runs on that core.
    #[arg(long, value_name = "N", help_heading = SAMPLING)]
    pub(crate) reporter_core: Option<usize>,
    /// The latency SLA in milliseconds: every latency histogram gets exact bucket edges at it
    /// and on a 1-2-5 series around it (SLA x 0.1, 0.2, 0.5, 1, 2, 5), so an alert on
    /// `le="0.008"` is exact; 0: none (powers of two only).
    #[arg(long, value_name = "MS", default_value_t = tailgate::sampler::buckets::DEFAULT_SLA_MS,
          value_parser = clap::value_parser!(u64).range(0..=60_000), help_heading = SAMPLING)]
    pub(crate) sla_ms: u64,
    /// Trace what takes the loops' cores (an eBPF program on sched_switch, the IRQ and softirq
    /// tracepoints and page faults, filtered to the loops' threads; needs BTF and CAP_BPF +
    /// CAP_PERFMON), so the report names what a loop stall was: preempted by COMM, irq NAME,
    /// softirq NET_RX, page fault, host steal. On with sampling; off, or when it cannot load
    /// (said in one line), a stall stays `loop_stall`.
    #[arg(long, value_name = "on|off", num_args = 0..=1, default_missing_value = "on",
          value_parser = parse_on_off, help_heading = SAMPLING)]
    pub(crate) offcpu: Option<bool>,
    /// Records kept in the sample log (and in memory for /samples).
    #[arg(long, default_value_t = store::DEFAULT_RECORDS, value_parser = clap::value_parser!(u64).range(1..=1 << 26), help_heading = SAMPLING)]
    pub(crate) sample_log_records: u64,
    /// Sampling rates: off, on, or KIND=PERCENT[,...] with KIND one of all, logon, heartbeat,
    /// limit, market, cancel, logout, invalid, ping, exchange (e.g. all=10,market=100). Default: every
    /// message when --metrics or --sample-log is given, else off.
    #[arg(long, value_name = "SPEC", help_heading = SAMPLING)]
    pub(crate) sample: Option<String>,
    /// Deprecated: the sampling keys now live in --config FILE's [sampling] table (docs/CONFIG.md).
    /// Still read: a TOML file with a [sampling] table (enabled, default_rate, rates, max_rate,
    /// tail_us, ring, acks); flags override it.
    #[arg(long, value_name = "FILE", help_heading = CONFIG)]
    pub(crate) sample_config: Option<std::path::PathBuf>,
    /// Tail bias: messages slower than this (microseconds in the gateway) are always recorded,
    /// whatever their rate; 0 turns it off. Default 100.
    #[arg(long, value_name = "US", help_heading = SAMPLING)]
    pub(crate) sample_tail_us: Option<u64>,
    /// Above this many messages per second the sampling rates halve (per doubling above it),
    /// and come back below it; 0 never halves. Default 0.
    #[arg(long, value_name = "MSGS", help_heading = SAMPLING)]
    pub(crate) sample_max_rate: Option<u64>,
    /// Sample ring capacity in records (a power of two). Default 65536.
    #[arg(long, value_name = "N", help_heading = SAMPLING)]
    pub(crate) sample_ring: Option<usize>,
    /// Hold each sampled reply's record until the peer acknowledges the reply (the `ack`
    /// stage: xdp from the stack's own view, kernel from SO_TIMESTAMPING TX_ACK reports on the
    /// error queue, two more recvmsg per reply on the loop). Default on.
    #[arg(long, value_name = "on|off", num_args = 0..=1, default_missing_value = "on",
          value_parser = parse_on_off, help_heading = SAMPLING)]
    pub(crate) sample_acks: Option<bool>,
    /// Inject a fault (repeatable): stall:EVERY_MS:DURATION_US (the poll loop spins),
    /// slow-handler:EVERY_N:DURATION_US (every N-th message's handler spins),
    /// page-faults:EVERY_N:PAGES (every N-th handler faults PAGES fresh pages in), loss:EVERY_N
    /// (the XDP program drops every N-th TCP data segment; xdp backend only), tx-loss:EVERY_N (the
    /// stack drops every N-th TCP data segment it sends, so it must retransmit; xdp backend only).
    #[arg(long, value_name = "SPEC", help_heading = INJECT)]
    pub(crate) inject: Vec<String>,
}

impl ObserveArgs {
    pub(crate) fn sampling(&self) -> Result<SamplingConfig, String> {
        let mut c = match &self.sample_config {
            Some(p) => {
                log_warn!(
                    "--sample-config is deprecated: put its keys in --config FILE's [sampling] table (docs/CONFIG.md)"
                );
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
            // The upstream sessions are outbound connections.
            outbound: self.upstream.upstream != "none",
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

    pub(crate) fn orders_config(&self) -> OrdersConfig {
        OrdersConfig {
            heartbeat_ms: self.heartbeat_ms,
            idle_timeout_ms: self.idle_timeout_ms.unwrap_or(self.heartbeat_ms.saturating_mul(2)),
            max_open_orders: self.max_open_orders as usize,
            max_live_orders: self.upstream.max_live_orders as usize,
        }
    }

    fn wait(&self) -> WaitMode {
        if self.spin {
            WaitMode::Spin
        } else {
            WaitMode::Block
        }
    }
}

pub(crate) fn run(a: ServeArgs) -> Result<ExitCode, String> {
    let stop = runtime::stop_flag().map_err(|e| format!("installing signal handlers: {e}"))?;
    let wait = a.wait();
    // Held open for the whole run: the kernel keeps the request while the
    // file is open and drops it when the process exits, however it exits.
    if a.no_cpu_dma_latency {
        log_warn!("--no-cpu-dma-latency is deprecated: say --cpu-dma-latency off");
    }
    let _dma_latency =
        if a.cpu_dma_latency && !a.no_cpu_dma_latency { runtime::hold_cpu_dma_latency_zero() } else { None };
    if let Some(c) = &a.config {
        log_info!("configuration from {} (flags override it)", c.display());
    }
    // Both are given: checked when the command line and the file were merged (cli/config.rs).
    let (ip, port) = (a.ip.ok_or("no --ip")?, a.port.ok_or("no --port")?);
    check_pcap(a.backend, &a.xdp)?;
    let sampling = a.obs.sampling()?;
    let inject = a.obs.inject()?;
    let needs_xdp = inject.loss_every.is_some() || inject.tx_loss_every.is_some();
    if needs_xdp && a.backend == BackendArg::Kernel {
        return Err(
            "--inject loss:N or tx-loss:N needs --backend xdp: the drops live in the XDP program and the stack".into(),
        );
    }
    let stack_ip = match ip {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    };
    let one_core = a.core.as_ref().filter(|l| l.len() == 1).map(super::List::first);
    let upstream = a.upstream.plan()?;
    if upstream.is_some() && a.app != ServeApp::Orders {
        return Err("--upstream applies to --app orders only".into());
    }
    if a.app == ServeApp::Orders && upstream.is_none() {
        log_warn!(
            "--upstream none: orders are acknowledged by the gateway itself (a test mode: nothing reaches an exchange)"
        );
    }
    if matches!(a.app, ServeApp::UdpEcho | ServeApp::TcpFloor) {
        return frame_floor(&a, port, stack_ip, wait, &sampling, &inject, one_core, &stop);
    }
    let risk = std::sync::Arc::new(super::accounts::load(a.config.as_deref())?);
    if a.app == ServeApp::Orders && !risk.needs_passwords() {
        log_warn!(
            "no [[accounts]] in --config: any client may log on as any account, without a password (a test mode)"
        );
    }
    let loops = a.core.as_ref().map_or(1, |c| c.len()).max(a.xdp.queue.len()).max(1);
    let cores: Vec<usize> = a.core.as_ref().map(|c| c.0.clone()).unwrap_or_default();
    let auth = super::accounts::Auth::start(&risk, loops, cores.clone(), a.obs.reporter_core)?;
    let _admin = a.admin.start(&risk, cores.clone(), a.obs.reporter_core)?;
    if a.journal.journal.is_some() && a.app != ServeApp::Orders {
        return Err("--journal applies to --app orders only".into());
    }
    a.fix.check(a.app == ServeApp::Orders, port, loops)?;
    let journal = super::journal::Journal::open(&a.journal, loops, cores, a.obs.reporter_core)?;
    let fix = a.fix.open(a.journal.journal.as_deref())?;
    // Sources the verifier makes wait are refused as they connect.
    let gate = auth.verifier.as_ref().map(|v| v.gate.clone());
    let cfg = LaunchConfig {
        backend: a.backend.choice(),
        places: places(&a.xdp, a.core.as_ref()),
        xdp: match stack_ip {
            Some(ip) => {
                xdp_plan(&a.xdp, ip, wait, a.busy_poll_us, a.xdp_extras(&sampling, &inject, one_core)).map(|mut x| {
                    x.stack.gate = gate.clone();
                    x
                })
            }
            None => Err("--backend xdp needs an IPv4 address for the stack".into()),
        },
        kernel: tailgate::backend::kernel::KernelConfig {
            gate,
            ..kernel_config(&a.xdp, wait, a.busy_poll_us, a.backlog as usize)
        },
        observe: Some(Observe {
            sampling,
            inject,
            metrics: a.obs.metrics,
            sample_log: a.obs.sample_log.clone(),
            sample_log_records: a.obs.sample_log_records,
            reporter_core: a.obs.reporter_core,
            sla_ns: a.obs.sla_ms * 1_000_000,
            offcpu: a.obs.offcpu.unwrap_or(true),
        }),
    };
    let describe = cfg.observe.as_ref().map(|o| (o.sampling.describe(), o.inject.any().then(|| o.inject.describe())));
    let job = ServeJob {
        a: &a,
        addr: SocketAddr::new(ip, port),
        describe: describe.unwrap_or_default(),
        upstream: upstream.as_ref(),
        risk: risk.clone(),
        auth: &auth,
        journal: &journal,
        fix: &fix,
    };
    let keeper_stop = std::sync::Arc::new(AtomicBool::new(false));
    let keeper = upstream.as_ref().map(|p| p.keeper(keeper_stop.clone())).transpose()?;
    let ended = launch(cfg, &job, &stop);
    journal.close();
    fix.close();
    if let Some(k) = keeper {
        // A last write of the sessions' numbers, after every loop stopped.
        keeper_stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = k.join();
    }
    let ended = ended?;
    if needs_xdp && ended.backend != "xdp" {
        return Err("--inject loss:N and tx-loss:N need the xdp backend, and the kernel backend was chosen".into());
    }
    let several = ended.loops.len() > 1;
    let (mut st, mut ts) = (ServerStats::default(), TransportStats::default());
    let mut errors = Vec::new();
    for (i, end) in ended.loops.iter().enumerate() {
        match end {
            Ok(e) => {
                if several {
                    log_info!("loop {i} ({}): {}", e.place, stopped_fields(&e.st, &e.ts));
                } else {
                    log_info!("stopped: {}", stopped_fields(&e.st, &e.ts));
                }
                let prefix = if several { format!("loop {i} ") } else { String::new() };
                for l in &e.lines {
                    log_info!("{prefix}{l}");
                }
                st.add(&e.st);
                ts.add(&e.ts);
                errors.extend(e.error.clone());
            }
            Err(e) => errors.push(e.clone()),
        }
    }
    if several {
        log_info!("stopped: loops={} {}", ended.loops.len(), stopped_fields(&st, &ts));
    }
    if let Some(c) = ended.program {
        log_info!("xdp program: {}", c.line());
    }
    if let Some(v) = &auth.verifier {
        log_info!("logons: {}", v.counters.line());
    }
    for line in super::accounts::exposure_lines(&risk) {
        log_info!("{line}");
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

/// `--app udp-echo` and `--app tcp-floor`: no stack, no transport, one loop
/// on the AF_XDP rings.
#[allow(clippy::too_many_arguments)]
fn frame_floor(
    a: &ServeArgs,
    port: u16,
    stack_ip: Option<std::net::Ipv4Addr>,
    wait: WaitMode,
    sampling: &SamplingConfig,
    inject: &InjectConfig,
    core: Option<usize>,
    stop: &AtomicBool,
) -> Result<ExitCode, String> {
    let app = app_name(a.app);
    if a.backend == BackendArg::Kernel {
        return Err(format!("--app {app} runs on the xdp backend only (it echoes from the AF_XDP rings)"));
    }
    if a.xdp.queue.len() > 1 || a.core.as_ref().is_some_and(|l| l.len() > 1) {
        return Err(format!("--app {app} runs one loop (give one --queue and one --core)"));
    }
    let ip = stack_ip.ok_or_else(|| format!("--app {app}: --ip must be IPv4"))?;
    if sampling.enabled || inject.any() || a.obs.metrics.is_some() {
        return Err(format!("--app {app} has no sampling, metrics or injection (it is a bare floor)"));
    }
    if let Some(core) = core {
        runtime::pin_to_core(core)?;
    }
    let cfg = xdp_plan(&a.xdp, ip, wait, a.busy_poll_us, XdpExtras::default())?;
    let mac = tailgate::backend::xdp::mac_of(&cfg.iface).map_err(|e| e.to_string())?;
    let run = if a.app == ServeApp::TcpFloor {
        tailgate::backend::xdp::frames::run(
            cfg,
            port,
            &mut tailgate::app::tcp_floor::TcpFloor::new(ip, mac, port),
            stop,
        )
    } else {
        tailgate::backend::xdp::frames::run(cfg, port, &mut tailgate::app::udp_echo::UdpEcho::new(ip, mac, port), stop)
    };
    run.map(|_| ExitCode::SUCCESS)
}

/// What a serve loop leaves: its place, counters and exit lines (its
/// transport's report, the app's summary, the sampler's).
pub(crate) struct ServeEnd {
    place: String,
    st: ServerStats,
    ts: TransportStats,
    lines: Vec<String>,
    error: Option<String>,
}

/// Each loop serves the app on its transport.
struct ServeJob<'a> {
    a: &'a ServeArgs,
    addr: SocketAddr,
    /// The sampling and injection, described for the start line.
    describe: (String, Option<String>),
    /// The exchange sessions, one per loop.
    upstream: Option<&'a super::upstream::UpstreamPlan>,
    /// Accounts and limits, shared by every loop, and the logon verifier.
    risk: std::sync::Arc<tailgate::risk::Risk>,
    auth: &'a super::accounts::Auth,
    journal: &'a super::journal::Journal,
    fix: &'a super::fix::FixState,
}

impl Job for ServeJob<'_> {
    type End = ServeEnd;

    fn run<T: Transport>(&self, t: T, cx: LoopCtx<'_>) -> Result<ServeEnd, String> {
        let a = self.a;
        let scfg = a.server_config();
        match a.app {
            ServeApp::Orders => {
                let app = match self.upstream {
                    None => Orders::new(a.orders_config()),
                    Some(p) => {
                        if p.sessions.len() != cx.loops {
                            return Err(format!(
                                "--upstream-user: {} given for {} loops (each loop needs its own session)",
                                p.sessions.len(),
                                cx.loops
                            ));
                        }
                        Orders::with_upstream(a.orders_config(), p.sessions[cx.index].clone())
                    }
                };
                let mut app = app.with_risk(self.risk.clone(), self.auth.port(cx.index));
                if let Some(port) = a.fix.fix_port {
                    let cfg = a.fix.config(port);
                    let region = self.fix.take().ok_or("--fix-port: the FIX sessions' slots were taken")?;
                    let (with, found) = app.with_fix_region(cfg, region);
                    super::fix::log_restored(&found);
                    app = with;
                }
                if let Some(w) = self.journal.writer(cx.index) {
                    app = app.with_journal(w);
                }
                self.drive(Server::new(t, app, scfg), cx)
            }
            ServeApp::Echo => self.drive(Server::new(t, Echo::default(), scfg), cx),
            ServeApp::Sockperf => {
                self.drive(Server::new(t, Sockperf::for_buffers(a.rx_buf as usize, a.tx_buf as usize), scfg), cx)
            }
            ServeApp::UdpEcho | ServeApp::TcpFloor => {
                Err(format!("--app {} runs on the xdp backend only", app_name(a.app)))
            }
        }
    }

    fn ready(&self, s: &Started) {
        if let Some(m) = s.metrics {
            log_info!("metrics on http://{m}/metrics, samples on http://{m}/samples");
        }
        if let Some(inj) = &self.describe.1 {
            log_warn!("fault injection on: {inj}");
        }
        if let Some(p) = self.upstream {
            let users: Vec<&str> = p.sessions.iter().map(|s| s.username.as_str()).collect();
            log_info!("upstream {}: one session per loop, as {}", p.addr, users.join(", "));
        }
        let mode = if self.a.spin { "spin" } else { "blocking" };
        if s.loops == 1 {
            log_info!(
                "serving {} on {} backend={} ({mode}) core={}; {}",
                app_name(self.a.app),
                self.addr,
                s.backend,
                self.a.core.as_ref().map(|c| c.first().to_string()).unwrap_or_else(|| "unpinned".into()),
                self.describe.0
            );
        } else {
            log_info!(
                "serving {} on {} backend={} ({mode}) loops={} ({}); {}",
                app_name(self.a.app),
                self.addr,
                s.backend,
                s.loops,
                s.places,
                self.describe.0
            );
        }
    }
}

impl ServeJob<'_> {
    fn drive<T: Transport, A: App>(&self, mut s: Server<T, A>, mut cx: LoopCtx<'_>) -> Result<ServeEnd, String> {
        let who = if cx.loops > 1 { format!("loop {}: ", cx.index) } else { String::new() };
        let addr = self.addr;
        s.listen(addr).map_err(|e| format!("{who}--ip/--port {addr}: cannot listen: {e}"))?;
        if let Some(port) = self.a.fix.fix_port.filter(|_| self.a.app == ServeApp::Orders) {
            let fix = SocketAddr::new(addr.ip(), port);
            s.listen(fix).map_err(|e| format!("{who}--fix-port {fix}: cannot listen: {e}"))?;
        }
        let r = cx.serve(&mut s);
        let mut lines = Vec::new();
        if let Some(extra) = s.transport.report() {
            lines.push(extra);
        }
        lines.push(s.app.summary());
        if s.tracer.active() {
            lines.push(format!("sampler: {}", sampler_fields(&s.tracer.stats())));
        }
        let error = r.err().map(|e| format!("{who}event loop: {e}"));
        Ok(ServeEnd { place: cx.place, st: s.stats, ts: s.transport.stats(), lines, error })
    }
}

pub(crate) fn app_name(app: ServeApp) -> &'static str {
    match app {
        ServeApp::Orders => "orders",
        ServeApp::Echo => "echo",
        ServeApp::Sockperf => "sockperf",
        ServeApp::UdpEcho => "udp-echo",
        ServeApp::TcpFloor => "tcp-floor",
    }
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
         injected_slow_handlers={} injected_fault_storms={} acked={} ack_late={} ack_untracked={} ack_spurious={} ack_held={}",
        t.messages,
        t.recorded,
        t.tail_bias,
        t.skipped,
        t.dropped_ring_full,
        t.injected_stalls,
        t.injected_slow_handlers,
        t.injected_fault_storms,
        t.acked,
        t.ack_late,
        t.ack_untracked,
        t.spurious,
        t.ack_held
    )
}
