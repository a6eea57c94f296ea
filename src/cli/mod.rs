//! The subcommands, one file each; this module holds what serve and load
//! share: the backend flags, mapped onto the launcher's configuration.

pub(crate) mod accounts;
pub(crate) mod admin;
pub(crate) mod config;
pub(crate) mod doctor;
pub(crate) mod exchange;
pub(crate) mod fix;
pub(crate) mod journal;
pub(crate) mod list;
pub(crate) mod load;
pub(crate) mod report;
pub(crate) mod serve;
pub(crate) mod storm;
pub(crate) mod upstream;

use std::net::Ipv4Addr;
use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};

use tailgate::backend::kernel::KernelConfig;
use tailgate::backend::xdp::xsk::ZeroCopy;
use tailgate::backend::xdp::XdpConfig;
use tailgate::launch::{BackendChoice, Places};
use tailgate::log_warn;
use tailgate::transport::WaitMode;

use config::{CAPTURE, CONNECTIONS, LOOPS, XDP};
pub(crate) use list::{parse_list, List};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BackendArg {
    /// xdp when --iface is given and AF_XDP works, else kernel; the reason is logged in one line.
    Auto,
    /// Kernel TCP sockets over epoll.
    Kernel,
    /// XDP redirect + AF_XDP socket + user-space TCP stack (smoltcp); needs --iface and root.
    Xdp,
}

impl BackendArg {
    pub(crate) fn choice(self) -> BackendChoice {
        match self {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::Kernel => BackendChoice::Kernel,
            BackendArg::Xdp => BackendChoice::Xdp,
        }
    }
}

/// The loops' queues (`--queue`) and cores (`--core`).
pub(crate) fn places(x: &XdpArgs, core: Option<&List>) -> Places {
    Places {
        queues: x.queue.0.iter().map(|&q| q as u32).collect(),
        cores: core.map(|l| l.0.clone()).unwrap_or_default(),
    }
}

/// Flags of the xdp backend, shared by serve and load.
#[derive(Args, Clone)]
pub(crate) struct XdpArgs {
    /// Interface for the xdp backend (the stack answers ARP for its address there).
    #[arg(long, help_heading = XDP)]
    pub(crate) iface: Option<String>,
    /// NIC queue(s) the AF_XDP socket(s) bind (xdp backend): one queue (default 0), or a list
    /// such as 0,1 or 0-3 for `serve`: one socket, one stack and one busy-poll loop per queue,
    /// each pinned to the matching --core (docs/ARCHITECTURE.md, "One loop per queue").
    #[arg(long, default_value = "0", value_parser = parse_list, help_heading = LOOPS)]
    pub(crate) queue: List,
    /// AF_XDP zero-copy (xdp backend): on tries zero-copy and falls back to copy mode (the mode in
    /// use is logged); off asks for copy mode only. `auto` is the old spelling of on.
    #[arg(long, value_name = "on|off", default_value = "on", num_args = 0..=1, default_missing_value = "on",
          action = ArgAction::Set, value_parser = parse_zero_copy, help_heading = XDP)]
    pub(crate) zero_copy: bool,
    /// Frames of 2 KiB in each loop's UMEM (xdp backend; a power of two, 256-65536). The UMEM is
    /// pinned in memory as a whole when the socket binds: the default, 16384, is 32 MiB per loop,
    /// room for 8192-entry rings (bursts of that many frames queued without a drop). Each ring
    /// gets half of the frames, at most 8192; the fill ring gets as many frames as it has entries
    /// and the rest are for sending: fewer frames cost less memory and absorb smaller bursts.
    #[arg(long, default_value_t = 16384, value_parser = parse_umem_frames, help_heading = XDP)]
    pub(crate) umem_frames: u32,
    /// Prefix length of the stack's address (xdp backend).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(8..=32), help_heading = XDP)]
    pub(crate) prefix: u8,
    /// Most open connections (both backends); one more is reset at once, counted
    /// (tailgate_drops_total{reason="conn_refused"}) and logged at a bounded rate.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000), help_heading = CONNECTIONS)]
    pub(crate) max_conns: u64,
    /// How long a closed connection may take to deliver what it queued and finish its FIN
    /// handshake before it is reset, in milliseconds (xdp backend; counted as
    /// tailgate_drops_total{reason="linger_expired"}). The kernel backend leaves that to the
    /// kernel (net.ipv4.tcp_orphan_retries, tcp_fin_timeout).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=3_600_000), help_heading = CONNECTIONS)]
    pub(crate) linger_ms: u64,
    /// ICMP echo requests to the stack's address answered per second at most (xdp backend, when
    /// the stack owns the address): by the XDP program per CPU, and by each loop; the rest are
    /// dropped and counted (xdp_dropped_icmp_rate, icmp_echo_limited). 0: none answered.
    #[arg(long, default_value_t = tailgate::stack::limit::ECHO_PER_SEC_DEFAULT, value_parser = clap::value_parser!(u32).range(0..=100_000), help_heading = XDP)]
    pub(crate) icmp_echo_rate: u32,
    /// Capture every frame the xdp backend's stack receives and sends into this file (pcap,
    /// ns timestamps; read it with tcpdump -r or tshark -r): tcpdump on the interface cannot see
    /// frames XDP redirected. Copied on the loop into a bounded ring and written by a thread off
    /// the loop's core; a full ring drops frames, counted as pcap_dropped.
    #[arg(long, value_name = "FILE", help_heading = CAPTURE)]
    pub(crate) pcap: Option<std::path::PathBuf>,
    /// Bytes kept of each captured frame.
    #[arg(long, default_value_t = 1514, value_parser = clap::value_parser!(u64).range(64..=1514), help_heading = CAPTURE)]
    pub(crate) pcap_snaplen: u64,
    /// Rotate the capture when its file reaches this many MB (0: never): FILE becomes FILE.1,
    /// FILE.1 becomes FILE.2, and so on.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000), help_heading = CAPTURE)]
    pub(crate) pcap_max_mb: u64,
    /// Capture files kept when rotating, FILE included (the oldest goes).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1000), help_heading = CAPTURE)]
    pub(crate) pcap_files: u64,
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

/// What the xdp backend's XDP program does besides redirecting.
#[derive(Clone, Copy, Default)]
pub(crate) struct XdpExtras {
    /// The transport makes outbound connections (load): give it the local
    /// port range, which the XDP program then also redirects. A server
    /// makes none, so kernel flows on a shared address keep those ports.
    pub(crate) outbound: bool,
    pub(crate) stamp_rx: bool,
    pub(crate) drop_every: u32,
    pub(crate) tx_drop_every: u32,
    /// The loop's core and a housekeeping core (`--reporter-core`): where
    /// the capture writer must not run, and where it may be pinned.
    pub(crate) place: (Option<usize>, Option<usize>),
}

/// The xdp backend's configuration from the flags, or why there is none
/// (no `--iface`: `--backend auto` then runs the kernel's).
pub(crate) fn xdp_plan(
    x: &XdpArgs,
    ip: Ipv4Addr,
    wait: WaitMode,
    busy_poll_us: u32,
    extras: XdpExtras,
) -> Result<XdpConfig, String> {
    let iface = x.iface.as_deref().ok_or("no --iface given for the xdp backend")?;
    let mut c = XdpConfig::new(iface, ip);
    c.stack.prefix = x.prefix;
    c.stack.wait = wait;
    c.stack.max_conns = x.max_conns as usize;
    c.stack.linger_ns = x.linger_ms * 1_000_000;
    c.stack.icmp_echo_per_sec = x.icmp_echo_rate;
    c.xsk.queue = x.queue.first() as u32;
    if extras.outbound {
        // A loop of several gets its own queue in the table (the launcher).
        c.xsk.queue = x.queue.first() as u32;
        c.open_connections();
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
    c.xsk.zero_copy = if x.zero_copy { ZeroCopy::Auto } else { ZeroCopy::Off };
    c.xsk.frames = x.umem_frames;
    c.xsk.ring_size = (x.umem_frames / 2).min(8192);
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

/// `on` or `off`: the one spelling of a boolean flag (`--X` alone is on).
pub(crate) fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("'{s}': expected on or off")),
    }
}

fn parse_zero_copy(s: &str) -> Result<bool, String> {
    if s == "auto" {
        return Ok(true);
    }
    parse_on_off(s)
}

const PCAP_KERNEL: &str = "--pcap captures the frames the xdp backend bypasses the kernel with; the kernel \
                           backend's traffic is visible to tcpdump -i IFACE -w FILE";

/// `--pcap` with a backend that cannot capture: an error with `--backend
/// kernel`; with `auto` and no `--iface` (the kernel's then), a warning.
pub(crate) fn check_pcap(backend: BackendArg, x: &XdpArgs) -> Result<(), String> {
    if x.pcap.is_none() {
        return Ok(());
    }
    match backend {
        BackendArg::Kernel => Err(PCAP_KERNEL.into()),
        BackendArg::Auto if x.iface.is_none() => {
            log_warn!("no capture is written: {PCAP_KERNEL}");
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `--umem-frames`: a power of two from 256 to 65536.
fn parse_umem_frames(v: &str) -> Result<u32, String> {
    let n: u32 = v.parse().map_err(|_| format!("{v:?}: not a number of frames"))?;
    if !(256..=65536).contains(&n) || !n.is_power_of_two() {
        return Err(format!("{n}: the UMEM's frames must be a power of two from 256 to 65536"));
    }
    Ok(n)
}
