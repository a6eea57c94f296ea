//! The subcommands, one file each; this module holds what serve and load
//! share: the backend flags and the choice of transport.

pub(crate) mod doctor;
pub(crate) mod load;
pub(crate) mod load_loops;
pub(crate) mod loops;
pub(crate) mod multi;
pub(crate) mod report;
pub(crate) mod serve;
pub(crate) mod storm;

use std::net::Ipv4Addr;
use std::time::Duration;

use clap::{Args, ValueEnum};

use tailgate::backend::kernel::{KernelConfig, KernelTransport};
use tailgate::backend::xdp::xsk::ZeroCopy;
use tailgate::backend::xdp::{XdpConfig, XdpTransport};
use tailgate::transport::WaitMode;
use tailgate::{log_info, log_warn};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BackendArg {
    /// xdp when --iface is given and AF_XDP works, else kernel; the reason is logged in one line.
    Auto,
    /// Kernel TCP sockets over epoll.
    Kernel,
    /// XDP redirect + AF_XDP socket + user-space TCP stack (smoltcp); needs --iface and root.
    Xdp,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ZeroCopyArg {
    /// Try zero-copy, fall back to copy mode (the mode in use is logged).
    Auto,
    /// Copy mode only.
    Off,
}

/// Flags of the xdp backend, shared by serve and load.
#[derive(Args, Clone)]
pub(crate) struct XdpArgs {
    /// Interface for the xdp backend (the stack answers ARP for its address there).
    #[arg(long)]
    pub(crate) iface: Option<String>,
    /// NIC queue(s) the AF_XDP socket(s) bind (xdp backend): one queue (default 0), or a list
    /// such as 0,1 or 0-3 for `serve`: one socket, one stack and one busy-poll loop per queue,
    /// each pinned to the matching --core (docs/ARCHITECTURE.md, "One loop per queue").
    #[arg(long, default_value = "0", value_parser = parse_list)]
    pub(crate) queue: List,
    /// AF_XDP zero-copy policy (xdp backend).
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) zero_copy: ZeroCopyArg,
    /// Prefix length of the stack's address (xdp backend).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(8..=32))]
    pub(crate) prefix: u8,
    /// Most open connections (both backends); one more is reset at once, counted
    /// (tailgate_drops_total{reason="conn_refused"}) and logged at a bounded rate.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) max_conns: u64,
    /// How long a closed connection may take to deliver what it queued and finish its FIN
    /// handshake before it is reset, in milliseconds (xdp backend; counted as
    /// tailgate_drops_total{reason="linger_expired"}). The kernel backend leaves that to the
    /// kernel (net.ipv4.tcp_orphan_retries, tcp_fin_timeout).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub(crate) linger_ms: u64,
    /// ICMP echo requests to the stack's address answered per second at most (xdp backend, when
    /// the stack owns the address): by the XDP program per CPU, and by each loop; the rest are
    /// dropped and counted (xdp_dropped_icmp_rate, icmp_echo_limited). 0: none answered.
    #[arg(long, default_value_t = tailgate::stack::limit::ECHO_PER_SEC_DEFAULT, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub(crate) icmp_echo_rate: u32,
    /// Capture every frame the xdp backend's stack receives and sends into this file (pcap,
    /// ns timestamps; read it with tcpdump -r or tshark -r): tcpdump on the interface cannot see
    /// frames XDP redirected. Copied on the loop into a bounded ring and written by a thread off
    /// the loop's core; a full ring drops frames, counted as pcap_dropped.
    #[arg(long, value_name = "FILE")]
    pub(crate) pcap: Option<std::path::PathBuf>,
    /// Bytes kept of each captured frame.
    #[arg(long, default_value_t = 1514, value_parser = clap::value_parser!(u64).range(64..=1514))]
    pub(crate) pcap_snaplen: u64,
    /// Rotate the capture when its file reaches this many MB (0: never): FILE becomes FILE.1,
    /// FILE.1 becomes FILE.2, and so on.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub(crate) pcap_max_mb: u64,
    /// Capture files kept when rotating, FILE included (the oldest goes).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(crate) pcap_files: u64,
}

/// A list of small numbers: `2`, `0,1`, `0-3`, `0,2-3`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct List(pub(crate) Vec<usize>);

impl List {
    pub(crate) fn first(&self) -> usize {
        self.0[0]
    }
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
    pub(crate) fn show(&self) -> String {
        let v: Vec<String> = self.0.iter().map(usize::to_string).collect();
        v.join(",")
    }
}

pub(crate) fn parse_list(s: &str) -> Result<List, String> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let num = |x: &str| -> Result<usize, String> {
            x.trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n < 1 << 20)
                .ok_or_else(|| format!("'{x}' in '{s}' is not a number"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("'{part}' in '{s}': the range runs backwards"));
                }
                v.extend(a..=b);
            }
            None => v.push(num(part)?),
        }
    }
    let mut sorted = v.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != v.len() {
        return Err(format!("'{s}' names an entry twice"));
    }
    if v.len() > 64 {
        return Err(format!("'{s}': at most 64 entries"));
    }
    Ok(List(v))
}

pub(crate) fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !(v.is_finite() && v > 0.0 && v <= 100_000_000.0) {
        return Err(format!("'{s}' must be in (0, 100000000] messages per second"));
    }
    Ok(v)
}

pub(crate) fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
        return Err(format!("'{s}' must be in (0, 86400] seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// The transport chosen by `--backend`.
pub(crate) enum Chosen {
    Kernel(Box<KernelTransport>),
    Xdp(Box<XdpTransport>),
}

/// What the xdp backend's XDP program does besides redirecting.
#[derive(Clone, Copy, Default)]
pub(crate) struct XdpExtras {
    /// The transport makes outbound connections (load): give it the local
    /// port range, which the XDP program then also redirects. A server
    /// makes none, so kernel flows on a shared address keep those ports.
    pub(crate) outbound: bool,
    /// listen(2) backlog of the kernel backend (serve; see `--backlog`).
    pub(crate) backlog: usize,
    pub(crate) stamp_rx: bool,
    pub(crate) drop_every: u32,
    pub(crate) tx_drop_every: u32,
    /// The loop's core and a housekeeping core (`--reporter-core`): where
    /// the capture writer must not run, and where it may be pinned.
    pub(crate) place: (Option<usize>, Option<usize>),
}

pub(crate) fn xdp_config(
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
    c.stack.max_conns = x.max_conns as usize;
    c.stack.linger_ns = x.linger_ms * 1_000_000;
    c.stack.icmp_echo_per_sec = x.icmp_echo_rate;
    c.xsk.queue = x.queue.first() as u32;
    if extras.outbound {
        // A loop of several sets its own queue in the table (cli/load.rs).
        c.stack.rss = tailgate::backend::xdp::device_rss(iface).map(|r| tailgate::stack::rss::RssTable {
            key: r.key,
            indirection: r.indirection,
            queue: c.xsk.queue,
        });
    } else {
        c.stack.local_ports = (0, 0);
    }
    if let Some(path) = &x.pcap {
        let mut p = tailgate::capture::CaptureConfig::new(path);
        p.snaplen = x.pcap_snaplen as usize;
        p.max_bytes = x.pcap_max_mb * 1_000_000;
        p.files = x.pcap_files as u32;
        p.place = extras.place;
        c.capture = Some(p);
    }
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

/// The kernel backend's configuration from the shared flags.
pub(crate) fn kernel_config(x: &XdpArgs, wait: WaitMode, busy_poll_us: u32, backlog: usize) -> KernelConfig {
    KernelConfig {
        wait,
        busy_poll_us,
        max_conns: x.max_conns as usize,
        backlog: backlog.max(1),
        ..KernelConfig::default()
    }
}

/// Build the transport for `--backend`; `auto` falls back to the kernel with
/// the reason in one line.
pub(crate) fn choose(
    backend: BackendArg,
    x: &XdpArgs,
    stack_ip: Option<Ipv4Addr>,
    wait: WaitMode,
    busy_poll_us: u32,
    extras: XdpExtras,
) -> Result<Chosen, String> {
    let kernel = || {
        KernelTransport::new(kernel_config(x, wait, busy_poll_us, extras.backlog))
            .map(|t| Chosen::Kernel(Box::new(t)))
            .map_err(|e| format!("kernel backend: {e}"))
    };
    let xdp = || -> Result<Chosen, String> {
        let ip = stack_ip.ok_or("--backend xdp needs an IPv4 address for the stack")?;
        let cfg = xdp_config(x, ip, wait, busy_poll_us, extras)?;
        XdpTransport::new(cfg).map(|t| Chosen::Xdp(Box::new(t))).map_err(|e| format!("xdp backend: {e}"))
    };
    const PCAP_KERNEL: &str = "--pcap captures the frames the xdp backend bypasses the kernel with; the kernel \
                               backend's traffic is visible to tcpdump -i IFACE -w FILE";
    match backend {
        BackendArg::Kernel if x.pcap.is_some() => Err(PCAP_KERNEL.into()),
        BackendArg::Kernel => kernel(),
        BackendArg::Xdp => xdp(),
        BackendArg::Auto => {
            let fallback = |why: String| {
                log_warn!("{why}");
                if x.pcap.is_some() {
                    log_warn!("no capture is written: {PCAP_KERNEL}");
                }
                kernel()
            };
            if x.iface.is_none() {
                if x.pcap.is_none() {
                    log_info!("backend auto: kernel (no --iface given for the xdp backend)");
                    return kernel();
                }
                return fallback("backend auto: kernel (no --iface given for the xdp backend)".into());
            }
            match xdp() {
                Ok(t) => Ok(t),
                Err(e) => fallback(format!("backend auto: kernel, because the xdp backend failed: {e}")),
            }
        }
    }
}
