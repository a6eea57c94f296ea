//! The `tailgate` command line.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use tailgate::app::echo::Echo;
use tailgate::app::orders::{Orders, OrdersConfig};
use tailgate::app::sockperf::Sockperf;
use tailgate::app::App;
use tailgate::backend::kernel::{KernelConfig, KernelTransport};
use tailgate::load::{LoadApp, LoadConfig, LoadGen, Mode};
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
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    /// Best backend available; today that is always the kernel backend, and the reason is logged.
    Auto,
    /// Kernel TCP sockets over epoll.
    Kernel,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ServeApp {
    /// The order-entry gateway (docs/PROTOCOL.md).
    Orders,
    /// Plain byte echo; after the peer's FIN, finishes echoing and closes.
    Echo,
    /// Echo for `sockperf ping-pong --tcp` (14-byte sockperf header).
    Sockperf,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LoadAppArg {
    /// Logon, then a mix of limit, market and cancel messages.
    Orders,
    /// Fixed-size messages with a sequence, timestamp and checked payload.
    Echo,
}

#[derive(Args)]
struct ServeArgs {
    /// Backend: auto or kernel.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// Address to listen on (IPv4 or IPv6).
    #[arg(long)]
    ip: IpAddr,
    /// TCP port to listen on.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// Application to serve.
    #[arg(long, value_enum, default_value = "orders")]
    app: ServeApp,
    /// Pin the event loop to this CPU.
    #[arg(long)]
    core: Option<usize>,
    /// Busy-poll: never sleep in epoll_wait, and set SO_BUSY_POLL on sockets.
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
    /// Per-connection receive buffer in bytes (also the largest sockperf message accepted).
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1024..=16_777_216))]
    rx_buf: u64,
    /// Per-connection send buffer in bytes.
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1024..=16_777_216))]
    tx_buf: u64,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["rate", "pingpong"])))]
struct LoadArgs {
    /// Backend: auto or kernel.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// Gateway address.
    #[arg(long)]
    ip: IpAddr,
    /// Gateway port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
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

/// Resolve `--backend`, logging the reason when `auto` falls back.
fn resolve_backend(b: BackendArg) -> &'static str {
    match b {
        BackendArg::Kernel => "kernel",
        BackendArg::Auto => {
            log_info!("backend auto: using kernel (no kernel-bypass backend in this build)");
            "kernel"
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tailgate::log::set_level(if cli.quiet { 0 } else { 1 + cli.verbose });
    let result = match cli.cmd {
        Cmd::Serve(a) => serve(a),
        Cmd::Load(a) => run_load(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tailgate: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(a: ServeArgs) -> Result<ExitCode, String> {
    let backend = resolve_backend(a.backend);
    let addr = SocketAddr::new(a.ip, a.port);
    let stop = runtime::stop_flag().map_err(|e| format!("installing signal handlers: {e}"))?;
    if let Some(core) = a.core {
        runtime::pin_to_core(core)?;
        if !runtime::core_isolated(core) {
            log_warn!("core {core} is not isolated (isolcpus/nohz_full): expect scheduler noise in the tail");
        }
    }
    let wait = if a.spin { WaitMode::Spin } else { WaitMode::Block };
    let kcfg = KernelConfig { wait, busy_poll_us: a.busy_poll_us, ..KernelConfig::default() };
    let scfg = ServerConfig { rx_buf: a.rx_buf as usize, tx_buf: a.tx_buf as usize, ..ServerConfig::default() };
    debug_assert_eq!(backend, "kernel");
    let t = KernelTransport::new(kcfg).map_err(|e| format!("kernel backend: {e}"))?;
    let what = format!(
        "backend={backend} ({}) core={}",
        if a.spin { "spin" } else { "blocking epoll" },
        a.core.map(|c| c.to_string()).unwrap_or_else(|| "unpinned".into())
    );
    match a.app {
        ServeApp::Orders => {
            let cfg = OrdersConfig {
                heartbeat_ms: a.heartbeat_ms,
                idle_timeout_ms: a.idle_timeout_ms,
                max_open_orders: a.max_open_orders as usize,
            };
            run_server(Server::new(t, Orders::new(cfg), scfg), addr, &what, &stop)
        }
        ServeApp::Echo => run_server(Server::new(t, Echo::default(), scfg), addr, &what, &stop),
        ServeApp::Sockperf => {
            let app = Sockperf::new(a.rx_buf as usize);
            run_server(Server::new(t, app, scfg), addr, &what, &stop)
        }
    }
}

fn run_server<T: Transport, A: App>(
    mut s: Server<T, A>,
    addr: SocketAddr,
    what: &str,
    stop: &AtomicBool,
) -> Result<ExitCode, String> {
    s.listen(addr).map_err(|e| format!("--ip/--port {addr}: cannot listen: {e}"))?;
    log_info!("serving {} on {addr} {what}", s.app.name());
    let r = s.run(stop);
    let st = s.stats;
    let ts = s.transport.stats();
    log_info!(
        "stopped: connections opened={} closed={} aborted={} io_errors={} bytes_in={} bytes_out={} polls_useful={} polls_idle={}",
        st.opened, st.closed, st.aborted, st.io_errors, ts.bytes_in, ts.bytes_out, ts.polls_useful, ts.polls_idle
    );
    log_info!("{}", s.app.summary());
    r.map_err(|e| format!("event loop: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

fn run_load(a: LoadArgs) -> Result<ExitCode, String> {
    let backend = resolve_backend(a.backend);
    debug_assert_eq!(backend, "kernel");
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
    let t = KernelTransport::new(KernelConfig { wait: WaitMode::Spin, busy_poll_us: 0, ..KernelConfig::default() })
        .map_err(|e| format!("kernel backend: {e}"))?;
    let report = LoadGen::new(t, cfg).and_then(|g| g.run(&stop)).map_err(|e| format!("load: {e}"))?;
    println!("{}", report.render());
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| format!("--json: {e}"))?;
        std::fs::write(path, text + "\n").map_err(|e| format!("--json {}: {e}", path.display()))?;
    }
    if report.failures() > 0 {
        eprintln!("tailgate: load: {} failures (unanswered, rejected, out of sequence, unexpected, corrupted or disconnected)", report.failures());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
