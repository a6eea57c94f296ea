//! The `tailgate` command line.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use tailgate::app::echo::Echo;
use tailgate::app::orders::{Orders, OrdersConfig};
use tailgate::app::sockperf::Sockperf;
use tailgate::app::App;
use tailgate::backend::kernel::{KernelConfig, KernelTransport};
use tailgate::backend::xdp::xsk::ZeroCopy;
use tailgate::backend::xdp::{XdpConfig, XdpTransport};
use tailgate::load::{LoadApp, LoadConfig, LoadGen, Mode};
use tailgate::sampler::attribution::{self, Options};
use tailgate::sampler::endpoint::http_get;
use tailgate::sampler::inject::InjectConfig;
use tailgate::sampler::policy::SamplingConfig;
use tailgate::sampler::reporter::{Reporter, ReporterConfig};
use tailgate::sampler::store;
use tailgate::sampler::tracer::Tracer;
use tailgate::server::{Server, ServerConfig};
use tailgate::transport::{Transport, WaitMode};
use tailgate::{log_info, log_warn, runtime};

#[derive(Parser)]
#[command(name = "tailgate", version, about = "Kernel-bypass TCP stack and order gateway", long_about = None)]
struct Cli {
    /// More log lines (-v: connection events).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway (or the echo / sockperf servers) on a backend.
    Serve(ServeArgs),
    /// Drive a gateway or echo server and report round-trip latency.
    Load(LoadArgs),
    /// Attribute the slow tail of a gateway's samples to causes (docs/ATTRIBUTION.md).
    Report(ReportArgs),
    /// Check that this host is ready for a pinned busy-poll gateway: OK / WARN / FAIL per item,
    /// with the fix (docs/TUNING.md). Exits 1 on any FAIL.
    Doctor(DoctorArgs),
}

#[derive(Args)]
struct DoctorArgs {
    /// The gateway's interface.
    #[arg(long)]
    iface: String,
    /// The core the gateway's loop will be pinned to.
    #[arg(long)]
    core: usize,
    /// The NIC queue the AF_XDP socket will bind.
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// Also bind an AF_XDP socket to the queue for a moment, to find out zero-copy, need_wakeup and
    /// the busy-poll options for real (on some NICs this reconfigures the queue: not on a live one).
    #[arg(long)]
    probe: bool,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    /// xdp when --iface is given and AF_XDP works, else kernel; the reason is logged in one line.
    Auto,
    /// Kernel TCP sockets over epoll.
    Kernel,
    /// XDP redirect + AF_XDP socket + user-space TCP stack (smoltcp); needs --iface and root.
    Xdp,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ServeApp {
    /// The order-entry gateway (docs/PROTOCOL.md).
    Orders,
    /// Plain byte echo; after the peer's FIN, finishes echoing and closes.
    Echo,
    /// Echo for `sockperf ping-pong --tcp` (14-byte sockperf header).
    Sockperf,
    /// UDP echo straight from the AF_XDP rings, no TCP (xdp backend only): the floor.
    UdpEcho,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LoadAppArg {
    /// Logon, then a mix of limit, market and cancel messages.
    Orders,
    /// Fixed-size messages with a sequence, timestamp and checked payload.
    Echo,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ZeroCopyArg {
    /// Try zero-copy, fall back to copy mode (the mode in use is logged).
    Auto,
    /// Copy mode only.
    Off,
}

/// Flags of the xdp backend, shared by serve and load.
#[derive(Args, Clone)]
struct XdpArgs {
    /// Interface for the xdp backend (the stack answers ARP for its address there).
    #[arg(long)]
    iface: Option<String>,
    /// NIC queue the AF_XDP socket binds (xdp backend).
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// AF_XDP zero-copy policy (xdp backend).
    #[arg(long, value_enum, default_value = "auto")]
    zero_copy: ZeroCopyArg,
    /// Prefix length of the stack's address (xdp backend).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(8..=32))]
    prefix: u8,
    /// Listening sockets per port, spread over the 64 socket shards with at least one per shard;
    /// refilled after every SYN (xdp backend).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=65536))]
    backlog: u64,
    /// Most open connections (both backends); one more is reset at once, counted
    /// (tailgate_drops_total{reason="conn_refused"}) and logged at a bounded rate.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_conns: u64,
}

#[derive(Args)]
struct ServeArgs {
    /// Backend: auto, kernel or xdp.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// Address to listen on; with the xdp backend, the address the stack owns.
    #[arg(long)]
    ip: IpAddr,
    /// TCP (or UDP, for udp-echo) port to listen on.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// Application to serve.
    #[arg(long, value_enum, default_value = "orders")]
    app: ServeApp,
    /// Pin the event loop to this CPU.
    #[arg(long)]
    core: Option<usize>,
    /// Busy-poll: never sleep (epoll_wait or poll with zero timeout), and set SO_BUSY_POLL.
    #[arg(long)]
    spin: bool,
    /// SO_BUSY_POLL value in microseconds with --spin (0 to leave it unset).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    busy_poll_us: u32,
    /// Gateway heartbeat interval in milliseconds (orders).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(10..=3_600_000))]
    heartbeat_ms: u32,
    /// Log a session out after this long without a message from it, in milliseconds (orders).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(10..=3_600_000))]
    idle_timeout_ms: u32,
    /// Open limit orders allowed per session (orders).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_open_orders: u64,
    /// Per-connection receive buffer in bytes (the smaller of --rx-buf and --tx-buf is the largest
    /// sockperf message accepted).
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1024..=16_777_216))]
    rx_buf: u64,
    /// Per-connection send buffer in bytes.
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1024..=16_777_216))]
    tx_buf: u64,
    /// Do not hold /dev/cpu_dma_latency at 0 while serving (by default the gateway does, when it
    /// may, so no core enters a deep C-state whose exit costs tens of microseconds).
    #[arg(long)]
    no_cpu_dma_latency: bool,
    #[command(flatten)]
    xdp: XdpArgs,
    #[command(flatten)]
    obs: ObserveArgs,
}

/// Sampling, metrics and fault injection (docs/ATTRIBUTION.md).
#[derive(Args)]
struct ObserveArgs {
    /// Serve Prometheus metrics (GET /metrics) and the recent samples (GET /samples, read by
    /// `tailgate report --live`) on this address, from an unpinned thread.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Keep samples in this file: fixed-size binary records behind a header, a bounded ring on
    /// disk written by the reporter thread; read it with `tailgate report --log FILE`.
    #[arg(long, value_name = "FILE")]
    sample_log: Option<std::path::PathBuf>,
    /// Pin the reporter and metrics threads to this core, a housekeeping core (default: any core
    /// but --core). Each drain (every 10 ms) delays whatever else runs on that core.
    #[arg(long, value_name = "N")]
    reporter_core: Option<usize>,
    /// Records kept in the sample log (and in memory for /samples).
    #[arg(long, default_value_t = store::DEFAULT_RECORDS, value_parser = clap::value_parser!(u64).range(1..=1 << 26))]
    sample_log_records: u64,
    /// Sampling rates: off, on, or KIND=PERCENT[,...] with KIND one of all, logon, heartbeat,
    /// limit, market, cancel, logout, invalid, ping (e.g. all=10,market=100). Default: every
    /// message when --metrics or --sample-log is given, else off.
    #[arg(long, value_name = "SPEC")]
    sample: Option<String>,
    /// Sampling configuration file (TOML, [sampling] table); flags override it.
    #[arg(long, value_name = "FILE")]
    sample_config: Option<std::path::PathBuf>,
    /// Tail bias: messages slower than this (microseconds in the gateway) are always recorded,
    /// whatever their rate; 0 turns it off. Default 100.
    #[arg(long, value_name = "US")]
    sample_tail_us: Option<u64>,
    /// Above this many messages per second the sampling rates halve (per doubling above it),
    /// and come back below it; 0 never halves. Default 0.
    #[arg(long, value_name = "MSGS")]
    sample_max_rate: Option<u64>,
    /// Sample ring capacity in records (a power of two). Default 65536.
    #[arg(long, value_name = "N")]
    sample_ring: Option<usize>,
    /// Inject a fault (repeatable): stall:EVERY_MS:DURATION_US (the poll loop spins),
    /// slow-handler:EVERY_N:DURATION_US (every N-th message's handler spins), loss:EVERY_N
    /// (the XDP program drops every N-th TCP data segment; xdp backend only), tx-loss:EVERY_N (the
    /// stack drops every N-th TCP data segment it sends, so it must retransmit; xdp backend only).
    #[arg(long, value_name = "SPEC")]
    inject: Vec<String>,
}

impl ObserveArgs {
    fn sampling(&self) -> Result<SamplingConfig, String> {
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
        c.validate().map_err(|e| format!("--sample-ring: {e}"))?;
        Ok(c)
    }

    fn inject(&self) -> Result<InjectConfig, String> {
        let mut c = InjectConfig::default();
        for spec in &self.inject {
            c.apply(spec)?;
        }
        Ok(c)
    }
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["live", "log"])))]
struct ReportArgs {
    /// A running gateway's --metrics address: read its recent samples over HTTP.
    #[arg(long, value_name = "ADDR")]
    live: Option<String>,
    /// A sample log written with --sample-log.
    #[arg(long, value_name = "FILE")]
    log: Option<std::path::PathBuf>,
    /// The tail is every message at least this slow (microseconds in the gateway).
    /// Default: the p99.9 of the samples.
    #[arg(long, value_name = "US")]
    threshold_us: Option<f64>,
    /// A stage or loop interval counts towards a cause from this long (microseconds).
    #[arg(long, default_value_t = 20.0, value_name = "US")]
    significant_us: f64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// List every tail message with its cause, stages and flags.
    #[arg(long)]
    messages: bool,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["rate", "pingpong"])))]
struct LoadArgs {
    /// Backend: auto, kernel or xdp.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// Gateway address.
    #[arg(long)]
    ip: IpAddr,
    /// Gateway port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// The load generator's own address (xdp backend: the address its stack owns on --iface).
    #[arg(long)]
    local_ip: Option<Ipv4Addr>,
    /// What to speak: the order protocol or plain echo.
    #[arg(long, value_enum, default_value = "orders")]
    app: LoadAppArg,
    /// Number of connections.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    conns: u64,
    /// Open loop: total messages per second across all connections, with
    /// coordinated-omission correction (latency counts from the scheduled send time).
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Closed loop: one message in flight per connection.
    #[arg(long)]
    pingpong: bool,
    /// Length of the measured run in seconds (fractions allowed).
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    duration: Duration,
    /// Echo message size in bytes (16..=65536; --app echo only, orders have fixed sizes).
    #[arg(long, value_parser = clap::value_parser!(u64).range(16..=65536))]
    size: Option<u64>,
    /// Seconds to wait for outstanding replies after the run.
    #[arg(long, default_value = "2", value_parser = parse_secs)]
    drain: Duration,
    /// Write the report as JSON to this file as well.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Pin the load generator to this CPU.
    #[arg(long)]
    core: Option<usize>,
    #[command(flatten)]
    xdp: XdpArgs,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !(v.is_finite() && v > 0.0 && v <= 100_000_000.0) {
        return Err(format!("'{s}' must be in (0, 100000000] messages per second"));
    }
    Ok(v)
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
        return Err(format!("'{s}' must be in (0, 86400] seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// The transport chosen by `--backend`.
enum Chosen {
    Kernel(Box<KernelTransport>),
    Xdp(Box<XdpTransport>),
}

/// What the xdp backend's XDP program does besides redirecting.
#[derive(Clone, Copy, Default)]
struct XdpExtras {
    /// The transport makes outbound connections (load): give it the local
    /// port range, which the XDP program then also redirects. A server
    /// makes none, so kernel flows on a shared address keep those ports.
    outbound: bool,
    stamp_rx: bool,
    drop_every: u32,
    tx_drop_every: u32,
}

fn xdp_config(
    x: &XdpArgs,
    ip: Ipv4Addr,
    wait: WaitMode,
    busy_poll_us: u32,
    extras: XdpExtras,
) -> Result<XdpConfig, String> {
    let iface = x.iface.as_deref().ok_or("--backend xdp needs --iface")?;
    let mut c = XdpConfig::new(iface, ip);
    c.stack.prefix = x.prefix;
    c.stack.wait = wait;
    c.stack.backlog = x.backlog as usize;
    c.stack.max_conns = x.max_conns as usize;
    if !extras.outbound {
        c.stack.local_ports = (0, 0);
    }
    c.xsk.queue = x.queue;
    c.stamp_rx = extras.stamp_rx;
    c.drop_every = extras.drop_every;
    c.tx_drop_every = extras.tx_drop_every;
    c.xsk.busy_poll_us = busy_poll_us;
    c.xsk.zero_copy = match x.zero_copy {
        ZeroCopyArg::Auto => ZeroCopy::Auto,
        ZeroCopyArg::Off => ZeroCopy::Off,
    };
    Ok(c)
}

/// Build the transport for `--backend`; `auto` falls back to the kernel with
/// the reason in one line.
fn choose(
    backend: BackendArg,
    x: &XdpArgs,
    stack_ip: Option<Ipv4Addr>,
    wait: WaitMode,
    busy_poll_us: u32,
    extras: XdpExtras,
) -> Result<Chosen, String> {
    let kernel = || {
        KernelTransport::new(KernelConfig {
            wait,
            busy_poll_us,
            max_conns: x.max_conns as usize,
            ..KernelConfig::default()
        })
        .map(|t| Chosen::Kernel(Box::new(t)))
        .map_err(|e| format!("kernel backend: {e}"))
    };
    let xdp = || -> Result<Chosen, String> {
        let ip = stack_ip.ok_or("--backend xdp needs an IPv4 address for the stack")?;
        let cfg = xdp_config(x, ip, wait, busy_poll_us, extras)?;
        XdpTransport::new(cfg).map(|t| Chosen::Xdp(Box::new(t))).map_err(|e| format!("xdp backend: {e}"))
    };
    match backend {
        BackendArg::Kernel => kernel(),
        BackendArg::Xdp => xdp(),
        BackendArg::Auto => {
            if x.iface.is_none() {
                log_info!("backend auto: kernel (no --iface given for the xdp backend)");
                return kernel();
            }
            match xdp() {
                Ok(t) => Ok(t),
                Err(e) => {
                    log_warn!("backend auto: kernel, because the xdp backend failed: {e}");
                    kernel()
                }
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tailgate::log::set_level(if cli.quiet { 0 } else { 1 + cli.verbose });
    // The event loops (serve, load) log through a queue, never blocking on stderr.
    if matches!(cli.cmd, Cmd::Serve(_) | Cmd::Load(_)) {
        if let Err(e) = tailgate::log::start() {
            eprintln!("tailgate: warn: no log thread ({e}); logging writes stderr directly");
        }
    }
    if let Some(n) = runtime::raise_fd_limit() {
        if n < 4096 {
            log_warn!("open-file limit is {n}: raise it (ulimit -n) for more connections");
        }
    }
    let result = match cli.cmd {
        Cmd::Serve(a) => serve(a),
        Cmd::Load(a) => run_load(a),
        Cmd::Report(a) => report(a),
        Cmd::Doctor(a) => doctor(a),
    };
    tailgate::log::flush();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tailgate: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(a: ServeArgs) -> Result<ExitCode, String> {
    let stop = runtime::stop_flag().map_err(|e| format!("installing signal handlers: {e}"))?;
    if let Some(core) = a.core {
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
    let extras = XdpExtras {
        outbound: false,
        stamp_rx: sampling.enabled,
        drop_every: inject.loss_every.unwrap_or(0),
        tx_drop_every: inject.tx_loss_every.unwrap_or(0),
    };
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
struct Observe {
    sampling: SamplingConfig,
    inject: InjectConfig,
}

fn serve_on<T: Transport>(t: T, a: &ServeArgs, obs: &Observe, stop: &AtomicBool) -> Result<ExitCode, String> {
    let addr = SocketAddr::new(a.ip, a.port);
    let scfg = ServerConfig { rx_buf: a.rx_buf as usize, tx_buf: a.tx_buf as usize, ..ServerConfig::default() };
    let what = format!(
        "backend={} ({}) core={}",
        t.name(),
        if a.spin { "spin" } else { "blocking" },
        a.core.map(|c| c.to_string()).unwrap_or_else(|| "unpinned".into())
    );
    match a.app {
        ServeApp::Orders => {
            let cfg = OrdersConfig {
                heartbeat_ms: a.heartbeat_ms,
                idle_timeout_ms: a.idle_timeout_ms,
                max_open_orders: a.max_open_orders as usize,
            };
            run_server(Server::new(t, Orders::new(cfg), scfg), addr, &what, a, obs, stop)
        }
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

fn run_server<T: Transport, A: App>(
    mut s: Server<T, A>,
    addr: SocketAddr,
    what: &str,
    a: &ServeArgs,
    obs: &Observe,
    stop: &AtomicBool,
) -> Result<ExitCode, String> {
    s.listen(addr).map_err(|e| format!("--ip/--port {addr}: cannot listen: {e}"))?;
    let core = a.core.map_or(0, |c| c.min(255) as u8);
    if let Some(rc) = a.obs.reporter_core {
        let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
        let online = runtime::parse_cpu_list(online.trim());
        if !online.contains(&rc) {
            return Err(format!("--reporter-core {rc}: not an online CPU (online: {online:?})"));
        }
    }
    if a.obs.reporter_core.is_some() && a.obs.reporter_core == a.core {
        log_warn!("--reporter-core {}: the loop's own core; every drain will stall the loop", core);
    }
    let (mut tracer, consumer) = Tracer::new(&obs.sampling, obs.inject, core)?;
    tracer.set_pinned(a.core.is_some());
    let reporter = if obs.sampling.enabled || a.obs.metrics.is_some() || a.obs.sample_log.is_some() {
        let rcfg = ReporterConfig {
            metrics: a.obs.metrics,
            sample_log: a.obs.sample_log.clone(),
            records: a.obs.sample_log_records,
            avoid_core: a.core,
            core: a.obs.reporter_core,
            syscall_counters: s.transport.counter_reader(),
        };
        let r = Reporter::start(rcfg, consumer).map_err(|e| format!("reporter: {e}"))?;
        s.set_published(r.published.clone());
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
    log_info!(
        "stopped: connections opened={} closed={} aborted={} io_errors={} bytes_in={} bytes_out={} polls_useful={} polls_idle={}",
        st.opened,
        st.closed,
        st.aborted,
        st.io_errors,
        ts.bytes_in,
        ts.bytes_out,
        ts.polls_useful,
        ts.polls_idle
    );
    if let Some(extra) = s.transport.report() {
        log_info!("{extra}");
    }
    log_info!("{}", s.app.summary());
    if s.tracer.active() {
        let t = s.tracer.stats();
        log_info!(
            "sampler: messages={} recorded={} tail_bias={} skipped={} dropped_ring_full={} injected_stalls={} \
             injected_slow_handlers={}",
            t.messages,
            t.recorded,
            t.tail,
            t.skipped,
            t.dropped,
            t.injected_stalls,
            t.injected_slow_handlers
        );
    }
    r.map_err(|e| format!("event loop: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

fn run_load(a: LoadArgs) -> Result<ExitCode, String> {
    let app = match a.app {
        LoadAppArg::Orders => LoadApp::Orders,
        LoadAppArg::Echo => LoadApp::Echo,
    };
    if app == LoadApp::Orders && a.size.is_some() {
        return Err("--size applies to --app echo only: order messages have fixed sizes".into());
    }
    let mode = match (a.rate, a.pingpong) {
        (Some(r), false) => Mode::Rate(r),
        (None, true) => Mode::PingPong,
        _ => return Err("give exactly one of --rate or --pingpong".into()),
    };
    if a.backend == BackendArg::Xdp && a.local_ip.is_none() {
        return Err("--backend xdp needs --local-ip, the address the load generator's stack owns".into());
    }
    if let Some(core) = a.core {
        runtime::pin_to_core(core)?;
    }
    let stop = runtime::stop_flag().map_err(|e| format!("installing signal handlers: {e}"))?;
    let cfg = LoadConfig {
        addr: SocketAddr::new(a.ip, a.port),
        app,
        conns: a.conns as usize,
        mode,
        duration: a.duration,
        size: a.size.unwrap_or(64) as usize,
        drain: a.drain,
        progress: a.duration > Duration::from_secs(2),
        logon_timeout: Duration::from_secs(10),
    };
    let backend = if a.backend == BackendArg::Auto && a.local_ip.is_none() { BackendArg::Kernel } else { a.backend };
    let report = match choose(
        backend,
        &a.xdp,
        a.local_ip,
        WaitMode::Spin,
        0,
        XdpExtras { outbound: true, ..XdpExtras::default() },
    )? {
        Chosen::Kernel(t) => LoadGen::new(*t, cfg).and_then(|g| g.run(&stop)),
        Chosen::Xdp(t) => LoadGen::new(*t, cfg).and_then(|g| g.run(&stop)),
    }
    .map_err(|e| format!("load: {e}"))?;
    println!("{}", report.render());
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| format!("--json: {e}"))?;
        std::fs::write(path, text + "\n").map_err(|e| format!("--json {}: {e}", path.display()))?;
    }
    if report.failures() > 0 {
        eprintln!(
            "tailgate: load: {} failures (unanswered, rejected, out of sequence, unexpected, corrupted or disconnected)",
            report.failures()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn us_to_ns(v: f64, flag: &str) -> Result<u64, String> {
    if !(v.is_finite() && (0.0..=1e9).contains(&v)) {
        return Err(format!("{flag} {v}: must be between 0 and 1e9 microseconds"));
    }
    Ok((v * 1000.0) as u64)
}

fn report(a: ReportArgs) -> Result<ExitCode, String> {
    let (header, samples) = match (&a.live, &a.log) {
        (Some(addr), _) => {
            let body = http_get(addr, "/samples")?;
            store::parse(&body).map_err(|e| format!("--live {addr}: {e}"))?
        }
        (None, Some(path)) => store::read(path)?,
        (None, None) => return Err("give --live ADDR or --log FILE".into()),
    };
    let opts = Options {
        threshold_ns: a.threshold_us.map(|t| us_to_ns(t, "--threshold-us")).transpose()?,
        significant_ns: us_to_ns(a.significant_us, "--significant-us")?,
        messages: a.messages,
    };
    let r = attribution::analyse(&samples, header.dropped, opts);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).map_err(|e| format!("--json: {e}"))?);
    } else {
        print!("{}", r.render());
    }
    Ok(ExitCode::SUCCESS)
}

fn doctor(a: DoctorArgs) -> Result<ExitCode, String> {
    let opts = tailgate::doctor::Options { iface: a.iface, core: a.core, queue: a.queue, probe: a.probe };
    let v = tailgate::doctor::run(&opts);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v).map_err(|e| format!("--json: {e}"))?);
    } else {
        print!("{}", tailgate::doctor::render(&v));
    }
    let fail = v.iter().any(|x| x.status == tailgate::doctor::Status::Fail);
    Ok(if fail { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
