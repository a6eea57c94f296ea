//! `tailgate exchange`: the exchange simulator (src/exchange/), an OUCH 5.0
//! venue over SoupBinTCP 3.0, on one loop of either backend.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use clap::{ArgAction, Args};

use super::{check_pcap, kernel_config, parse_on_off, places, xdp_plan, BackendArg, XdpArgs, XdpExtras};
use tailgate::exchange::faults::Faults;
use tailgate::exchange::{Exchange, ExchangeConfig};
use tailgate::launch::{serve, LaunchConfig};
use tailgate::server::ServerConfig;
use tailgate::transport::WaitMode;
use tailgate::{log_info, log_warn, runtime};

#[derive(Args)]
pub(crate) struct ExchangeArgs {
    /// Backend: auto, kernel or xdp.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) backend: BackendArg,
    /// Address to listen on (with xdp, the address the stack owns).
    #[arg(long)]
    pub(crate) ip: IpAddr,
    /// SoupBinTCP port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) port: u16,
    /// An account, USER:PASSWORD (repeatable; USER at most 6 characters, PASSWORD at most 10).
    #[arg(long = "account", value_name = "USER:PASSWORD", required = true, value_parser = parse_account)]
    pub(crate) accounts: Vec<(String, String)>,
    /// The session id Login Accepted names (at most 10 characters).
    #[arg(long, default_value = "1", value_parser = parse_session)]
    pub(crate) session: String,
    /// Keep each account's sequenced messages in DIR/USER.journal: a restarted simulator
    /// numbers on and replays what it sent before (its books start empty).
    #[arg(long, value_name = "DIR")]
    pub(crate) journal: Option<std::path::PathBuf>,
    /// Pin the loop to this core.
    #[arg(long)]
    pub(crate) core: Option<usize>,
    /// Busy-poll: never sleep.
    #[arg(long, value_name = "on|off", default_value = "off", num_args = 0..=1, default_missing_value = "on",
          action = ArgAction::Set, value_parser = parse_on_off)]
    pub(crate) spin: bool,
    /// A fault (repeatable): slow:EVERY_K:US (every K-th order answered US late), reject:EVERY_K,
    /// drop:AFTER_N (reset the session that sends the N-th order), mute (no heartbeats).
    #[arg(long, value_name = "SPEC")]
    pub(crate) inject: Vec<String>,
    #[command(flatten)]
    pub(crate) xdp: XdpArgs,
}

fn parse_account(s: &str) -> Result<(String, String), String> {
    let (u, p) = s.split_once(':').ok_or_else(|| format!("'{s}': expected USER:PASSWORD"))?;
    let ok = |v: &str, max: usize| !v.is_empty() && v.len() <= max && v.bytes().all(|b| b.is_ascii_graphic());
    if !ok(u, 6) || !ok(p, 10) {
        return Err(format!("'{s}': USER is 1-6 and PASSWORD 1-10 printable characters"));
    }
    Ok((u.to_string(), p.to_string()))
}

fn parse_session(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("'{s}': 1-10 letters or digits"));
    }
    Ok(s.to_string())
}

pub(crate) fn run(a: ExchangeArgs) -> Result<ExitCode, String> {
    let stop = runtime::stop_flag().map_err(|e| format!("installing signal handlers: {e}"))?;
    let mut faults = Faults::default();
    for spec in &a.inject {
        faults.apply(spec)?;
    }
    if faults.any() {
        log_warn!("exchange: fault injection on: {}", a.inject.join(" "));
    }
    check_pcap(a.backend, &a.xdp)?;
    if a.xdp.queue.len() > 1 {
        return Err("--queue: the exchange runs one loop (its books and journals are one process's)".into());
    }
    if let Some(d) = &a.journal {
        std::fs::create_dir_all(d).map_err(|e| format!("--journal {}: {e}", d.display()))?;
    }
    let cfg = ExchangeConfig {
        accounts: a.accounts.clone(),
        session: a.session.clone(),
        faults,
        ..ExchangeConfig::default()
    };
    // Made here, so a journal that cannot be read is an error before any loop starts.
    let app =
        std::sync::Mutex::new(Some(Exchange::new(cfg, a.journal.as_deref()).map_err(|e| format!("--journal: {e}"))?));
    let wait = if a.spin { WaitMode::Spin } else { WaitMode::Block };
    let core = a.core.map(|c| super::List(vec![c]));
    let xdp = match a.ip {
        IpAddr::V4(ip) => xdp_plan(&a.xdp, ip, wait, tailgate::transport::BUSY_POLL_US_DEFAULT, XdpExtras::default()),
        IpAddr::V6(_) => Err("the xdp backend needs an IPv4 --ip".into()),
    };
    let lcfg = LaunchConfig {
        backend: a.backend.choice(),
        places: places(&a.xdp, core.as_ref()),
        xdp,
        kernel: kernel_config(&a.xdp, wait, tailgate::transport::BUSY_POLL_US_DEFAULT, 1024),
        observe: None,
    };
    let addr = SocketAddr::new(a.ip, a.port);
    let server = ServerConfig { tick_ns: 1_000_000, ..ServerConfig::default() };
    let ended = serve(lcfg, addr, server, |_| app.lock().expect("once").take().expect("one loop"), &stop)?;
    let mut errors = Vec::new();
    for l in ended.loops {
        match l {
            Ok(s) => {
                log_info!(
                    "stopped: connections opened={} closed={} aborted={}",
                    s.server.opened,
                    s.server.closed,
                    s.server.aborted
                );
                log_info!("{}", s.summary);
                errors.extend(s.error);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(errors.join("; "))
    }
}
