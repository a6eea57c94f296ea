//! `tailgate load`: drive a gateway or echo server and report round-trip
//! latency.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{choose, parse_list, parse_rate, parse_secs, BackendArg, Chosen, List, XdpArgs, XdpExtras};
use tailgate::load::{LoadApp, LoadConfig, LoadGen, Mode};
use tailgate::runtime;
use tailgate::transport::WaitMode;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LoadAppArg {
    /// Logon, then a mix of limit, market and cancel messages.
    Orders,
    /// Fixed-size messages with a sequence, timestamp and checked payload.
    Echo,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["rate", "pingpong"])))]
pub(crate) struct LoadArgs {
    /// Backend: auto, kernel or xdp.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) backend: BackendArg,
    /// Gateway address.
    #[arg(long)]
    pub(crate) ip: IpAddr,
    /// Gateway port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) port: u16,
    /// The load generator's own address (xdp backend: the address its stack owns on --iface).
    #[arg(long)]
    pub(crate) local_ip: Option<Ipv4Addr>,
    /// What to speak: the order protocol or plain echo.
    #[arg(long, value_enum, default_value = "orders")]
    pub(crate) app: LoadAppArg,
    /// Number of connections.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(crate) conns: u64,
    /// Open loop: total messages per second across all connections, with
    /// coordinated-omission correction (latency counts from the scheduled send time).
    #[arg(long, value_parser = parse_rate)]
    pub(crate) rate: Option<f64>,
    /// Closed loop: one message in flight per connection.
    #[arg(long)]
    pub(crate) pingpong: bool,
    /// With --rate: every EVERY_MS milliseconds, COUNT more messages at once
    /// on top of the rate, spread over the connections (a burst beyond the
    /// gateway's per-message pace; each counts from the burst's time).
    #[arg(long, value_name = "COUNT:EVERY_MS", value_parser = parse_burst)]
    pub(crate) burst: Option<(u32, u64)>,
    /// Length of the measured run in seconds (fractions allowed).
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    pub(crate) duration: Duration,
    /// Echo message size in bytes (16..=65536; --app echo only, orders have fixed sizes).
    #[arg(long, value_parser = clap::value_parser!(u64).range(16..=65536))]
    pub(crate) size: Option<u64>,
    /// Seconds to wait for outstanding replies after the run.
    #[arg(long, default_value = "2", value_parser = parse_secs)]
    pub(crate) drain: Duration,
    /// Write the report as JSON to this file as well.
    #[arg(long)]
    pub(crate) json: Option<std::path::PathBuf>,
    /// Pin the load generator to this CPU; a list (0,1 or 0-3) runs one loop per core, each with
    /// its share of --conns and --rate: with the xdp backend one per --queue (in the same
    /// order), with the kernel backend one per core.
    #[arg(long, value_parser = parse_list)]
    pub(crate) core: Option<List>,
    #[command(flatten)]
    pub(crate) xdp: XdpArgs,
}

pub(crate) fn run(a: LoadArgs) -> Result<ExitCode, String> {
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
    if a.burst.is_some() && a.pingpong {
        return Err("--burst applies to --rate only: a closed loop keeps one message in flight".into());
    }
    if a.backend == BackendArg::Xdp && a.local_ip.is_none() {
        return Err("--backend xdp needs --local-ip, the address the load generator's stack owns".into());
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
        burst: a.burst.map(|(n, ms)| (n, ms * 1_000_000)),
        together: None,
    };
    let backend = if a.backend == BackendArg::Auto && a.local_ip.is_none() { BackendArg::Kernel } else { a.backend };
    let cores = a.core.as_ref().map(|l| l.0.clone()).unwrap_or_default();
    let report = if a.xdp.queue.len() > 1 || cores.len() > 1 {
        super::load_loops::run(&a, backend, cfg, &stop)?
    } else {
        if let Some(&core) = cores.first() {
            runtime::pin_to_core(core)?;
        }
        match choose(
            backend,
            &a.xdp,
            a.local_ip,
            WaitMode::Spin,
            0,
            XdpExtras { outbound: true, place: (cores.first().copied(), None), ..XdpExtras::default() },
        )? {
            Chosen::Kernel(t) => LoadGen::new(*t, cfg).and_then(|g| g.run(&stop)),
            Chosen::Xdp(t) => LoadGen::new(*t, cfg).and_then(|g| g.run(&stop)),
        }
        .map_err(|e| format!("load: {e}"))?
    };
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

/// `COUNT:EVERY_MS`: 1..=100000 messages every 1..=60000 ms.
fn parse_burst(s: &str) -> Result<(u32, u64), String> {
    let (n, ms) = s.split_once(':').ok_or_else(|| format!("--burst {s}: expected COUNT:EVERY_MS, e.g. 200:100"))?;
    let n: u32 = n.parse().map_err(|_| format!("--burst {s}: COUNT '{n}' is not a number"))?;
    let ms: u64 = ms.parse().map_err(|_| format!("--burst {s}: EVERY_MS '{ms}' is not a number"))?;
    if !(1..=100_000).contains(&n) || !(1..=60_000).contains(&ms) {
        return Err(format!("--burst {s}: COUNT must be 1..=100000 and EVERY_MS 1..=60000"));
    }
    Ok((n, ms))
}
