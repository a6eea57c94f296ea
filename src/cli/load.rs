//! `tailgate load`: drive a gateway or echo server and report round-trip
//! latency.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use hdrhistogram::Histogram;

use super::{
    kernel_config, parse_list, parse_rate, parse_secs, places, xdp_plan, BackendArg, List, XdpArgs, XdpExtras,
};
use tailgate::launch::{launch, Job, LaunchConfig, LoopCtx, Started};
use tailgate::load::{LoadApp, LoadConfig, LoadGen, LoopShare, Mode, Report, Together};
use tailgate::transport::{CounterKind, Transport, WaitMode};
use tailgate::{log_info, log_warn, runtime};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LoadAppArg {
    /// Logon, then a mix of limit, market and cancel messages.
    Orders,
    /// Fixed-size messages with a sequence, timestamp and checked payload.
    Echo,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProtocolArg {
    /// The gateway's binary order protocol (docs/PROTOCOL.md).
    Binary,
    /// FIX 4.4 (docs/FIX.md): give the gateway's --fix-port as --port.
    Fix,
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
    /// Orders: the protocol to speak. FIX sessions log on as the accounts (SenderCompID = account,
    /// ResetSeqNumFlag=Y) and send the same orders and cancels.
    #[arg(long, value_enum, default_value = "binary")]
    pub(crate) protocol: ProtocolArg,
    /// With --protocol fix: the gateway's CompID (TargetCompID, serve's --fix-comp-id).
    #[arg(long, value_name = "ID", default_value = "TAILGATE")]
    pub(crate) fix_comp_id: String,
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
    /// How long to wait for outstanding replies after the run, in milliseconds (the unit in the
    /// name, as serve's --drain-ms); the sessions send heartbeats meanwhile.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub(crate) drain_ms: u64,
    /// The old spelling, in seconds (deprecated: say --drain-ms).
    #[arg(long, hide = true, value_parser = parse_secs)]
    pub(crate) drain: Option<Duration>,
    /// Orders: price this percent of limit orders through the other side of the book, so that
    /// with an exchange behind the gateway they execute against resting orders (market orders,
    /// a fifth of the orders, take liquidity too). Other limit orders rest without meeting.
    #[arg(long, value_name = "PERCENT", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub(crate) cross: u8,
    /// Orders: log on as these accounts (NAME[,NAME...], one per connection, round robin);
    /// default LG0, LG1, ... (one per connection).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub(crate) account: Vec<String>,
    /// Orders: the accounts' password, read from this file (its first line); sent in a version-3
    /// Logon. Default: no password.
    #[arg(long, value_name = "FILE")]
    pub(crate) password_file: Option<std::path::PathBuf>,
    /// Orders: when the run ends, append `ACCOUNT CL_ORD_ID` for every order acknowledged to
    /// this file (to check a journal against).
    #[arg(long, value_name = "FILE")]
    pub(crate) acked_log: Option<std::path::PathBuf>,
    /// Write the report as JSON to this file as well.
    #[arg(long)]
    pub(crate) json: Option<std::path::PathBuf>,
    /// Write the round trips' distribution to this file in HdrHistogram's percentile-distribution
    /// text (microseconds), which HdrHistogram's plotter and wrk2's tools read.
    #[arg(long, value_name = "FILE")]
    pub(crate) hgrm: Option<std::path::PathBuf>,
    /// Draw the round trips' percentile distribution (HdrHistogram style, on a log axis of 90%,
    /// 99%, 99.9%, 99.99%) into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) plot: Option<std::path::PathBuf>,
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
    if a.protocol == ProtocolArg::Fix && app != LoadApp::Orders {
        return Err("--protocol fix applies to --app orders only".into());
    }
    let comp_ok = (1..=32).contains(&a.fix_comp_id.len()) && a.fix_comp_id.bytes().all(|b| b.is_ascii_graphic());
    if !comp_ok {
        return Err(format!("--fix-comp-id {:?}: 1 to 32 printable ASCII characters, no spaces", a.fix_comp_id));
    }
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
    if a.drain.is_some() {
        log_warn!("--drain SECS is deprecated: say --drain-ms MS");
    }
    let stop = runtime::stop_flag().map_err(|e| format!("installing signal handlers: {e}"))?;
    let cfg = LoadConfig {
        addr: SocketAddr::new(a.ip, a.port),
        app,
        conns: a.conns as usize,
        mode,
        duration: a.duration,
        size: a.size.unwrap_or(64) as usize,
        drain: a.drain.unwrap_or(Duration::from_millis(a.drain_ms)),
        progress: a.duration > Duration::from_secs(2),
        logon_timeout: Duration::from_secs(10),
        burst: a.burst.map(|(n, ms)| (n, ms * 1_000_000)),
        cross: a.cross,
        logon: logon_spec(&a)?,
        fix: (a.protocol == ProtocolArg::Fix).then(|| a.fix_comp_id.clone()),
        together: None,
    };
    let backend = if a.backend == BackendArg::Auto && a.local_ip.is_none() { BackendArg::Kernel } else { a.backend };
    let places = places(&a.xdp, a.core.as_ref());
    // The loops the launcher will run (it refuses the places it cannot, naming the flags).
    let loops = tailgate::launch::plan::plan(backend != BackendArg::Kernel, &places, false)?.len();
    if loops > 1 && (a.conns as usize) < loops {
        return Err(format!(
            "--conns {}: fewer connections than the {loops} loops; give at least one per loop",
            a.conns
        ));
    }
    let xdp = match a.local_ip {
        Some(ip) => xdp_plan(
            &a.xdp,
            ip,
            WaitMode::Spin,
            0,
            XdpExtras { outbound: true, place: (a.core.as_ref().map(List::first), None), ..XdpExtras::default() },
        ),
        None => Err("--backend xdp needs --local-ip, the address the load generator's stack owns".into()),
    };
    let lcfg = LaunchConfig {
        backend: backend.choice(),
        places,
        xdp,
        kernel: kernel_config(&a.xdp, WaitMode::Spin, 0, 1),
        observe: None,
    };
    let arrived = Arc::new(AtomicUsize::new(0));
    let job = LoadJob { cfg, arrived };
    let ended = launch(lcfg, &job, &stop)?;
    let n = ended.loops.len();
    let mut parts = Vec::with_capacity(n);
    let mut shares = Vec::with_capacity(n);
    let mut errors = Vec::new();
    for e in ended.loops {
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
    // Every loop's round trips in one histogram (the same bounds: add cannot fail).
    let merged = parts.iter().map(|(_, h)| h).fold(None::<hdrhistogram::Histogram<u64>>, |acc, h| match acc {
        None => Some(h.clone()),
        Some(mut m) => {
            let _ = m.add(h);
            Some(m)
        }
    });
    let report = if n == 1 {
        parts.pop().map(|(r, _)| r).ok_or("load: no loop ran")?
    } else {
        let mut r = Report::combine(parts, shares).ok_or("load: no loop ran")?;
        r.mode = match job.cfg.mode {
            Mode::Rate(rate) => format!("rate {rate} msg/s"),
            Mode::PingPong => "pingpong".to_string(),
        };
        r
    };
    println!("{}", report.render());
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| format!("--json: {e}"))?;
        std::fs::write(path, text + "\n").map_err(|e| format!("--json {}: {e}", path.display()))?;
    }
    if let (Some(path), Some(h)) = (&a.plot, &merged) {
        let title = format!(
            "tailgate load, {}: {} round trips, p50 {} us, p99 {} us, p99.9 {} us",
            report.mode,
            h.len(),
            report.rtt_us.p50,
            report.rtt_us.p99,
            report.rtt_us.p999
        );
        let svg = tailgate::plot::svg(&title, &[tailgate::plot::Series::from_hist_ns("round trip", h)], &[]);
        std::fs::write(path, svg).map_err(|e| format!("--plot {}: {e}", path.display()))?;
    }
    if let (Some(path), Some(h)) = (&a.hgrm, &merged) {
        std::fs::write(path, tailgate::load::hgrm::percentile_distribution(h))
            .map_err(|e| format!("--hgrm {}: {e}", path.display()))?;
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

/// `total` split over `n` parts: part `i`'s share (the first `total % n`
/// parts get one more).
fn share(total: u64, n: usize, i: usize) -> u64 {
    total / n as u64 + u64::from((i as u64) < total % n as u64)
}

/// Each loop drives its share of the connections, the rate and the bursts;
/// with several, their measured runs start together.
/// `--account` and `--password-file`, checked.
fn logon_spec(a: &LoadArgs) -> Result<tailgate::load::LogonSpec, String> {
    let mut accounts = Vec::new();
    for name in &a.account {
        let code = tailgate::proto::Code8::new(name)
            .filter(|c| c.as_str() == name && name.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| format!("--account {name:?}: 1 to 8 printable ASCII characters, no spaces"))?;
        accounts.push(code);
    }
    let password = match &a.password_file {
        None => tailgate::proto::Password::NONE,
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("--password-file {}: {e}", p.display()))?;
            let line = text.lines().next().unwrap_or_default();
            tailgate::proto::Password::new(line).filter(|p| !p.is_empty()).ok_or_else(|| {
                format!(
                    "--password-file {}: the first line must be 1 to {} printable ASCII characters",
                    p.display(),
                    tailgate::proto::PASSWORD_LEN
                )
            })?
        }
    };
    Ok(tailgate::load::LogonSpec { accounts, password, first: 0, acked_log: a.acked_log.clone() })
}

struct LoadJob {
    cfg: LoadConfig,
    arrived: Arc<AtomicUsize>,
}

impl LoadJob {
    /// Loop `i` of `n`'s share.
    fn share_of(&self, i: usize, n: usize) -> LoadConfig {
        if n == 1 {
            return self.cfg.clone();
        }
        let cfg = &self.cfg;
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
        let first = (0..i).map(|j| share(cfg.conns as u64, n, j) as usize).sum();
        LoadConfig {
            conns: conns as usize,
            mode,
            burst,
            logon: tailgate::load::LogonSpec { first, ..cfg.logon.clone() },
            progress: false,
            together: Some(Together { arrived: self.arrived.clone(), of: n }),
            ..cfg.clone()
        }
    }
}

impl Job for LoadJob {
    type End = (Report, Histogram<u64>, LoopShare);

    fn run<T: Transport>(&self, t: T, cx: LoopCtx<'_>) -> Result<Self::End, String> {
        let cfg = self.share_of(cx.index, cx.loops);
        let conns = cfg.conns;
        cx.ready();
        let who = if cx.loops > 1 { format!("loop {}: ", cx.index) } else { String::new() };
        let o = LoadGen::new(t, cfg).and_then(|g| g.run_full(cx.stop)).map_err(|e| format!("{who}{e}"))?;
        let c = o.transport.counters();
        // What the generator's own transport lost: a loss here is the
        // client's, not the gateway's (and its retransmissions slow both).
        let lost: Vec<String> = c
            .iter()
            .filter(|k| {
                k.value > 0
                    && (k.kind == CounterKind::Drop
                        || ["retx_timer", "retx_sack", "retx_rto", "retx_fast", "retx_reneged"].contains(&k.name))
            })
            .map(|k| format!("{}={}", k.name, k.value))
            .collect();
        if !lost.is_empty() {
            log_warn!("load: {who}the load generator's own transport: {}", lost.join(" "));
        }
        let r = o.report;
        let s = LoopShare {
            index: cx.index,
            place: cx.place.clone(),
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

    fn ready(&self, s: &Started) {
        if s.loops > 1 {
            log_info!(
                "load: {} loops ({}, {}), {} connections split {}",
                s.loops,
                s.backend,
                s.places,
                self.cfg.conns,
                (0..s.loops)
                    .map(|i| share(self.cfg.conns as u64, s.loops, i).to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            );
        }
    }
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
