//! `tailgate storm`: a connection storm, a SYN flood, or a ping or UDP flood
//! against a listening echo server, from kernel TCP clients
//! (src/load/storm.rs).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::parse_secs;
use tailgate::load::storm;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("case").required(true).args(["conns", "flood"])))]
pub(crate) struct StormArgs {
    /// Server address (198.18.0.0/15 or loopback only).
    #[arg(long)]
    pub(crate) ip: Ipv4Addr,
    /// Server port (an echo server: serve --app echo).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) port: u16,
    /// Connection storm: open this many connections at once, echo once on each, and report the
    /// time until all were established and echoed, and the client's SYN retransmissions.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub(crate) conns: Option<u64>,
    /// SYN flood: send this many SYNs from --flood-src (raw socket, needs CAP_NET_RAW) and,
    /// half-way through, connect one legitimate client and echo once; report its times and SYN
    /// retransmissions.
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..=10_000_000))]
    pub(crate) flood: Option<u64>,
    /// The flood's spoofed source address (198.18.0.0/15 only; an address nobody answers for).
    #[arg(long, default_value = "198.18.0.77")]
    pub(crate) flood_src: Ipv4Addr,
    /// What --flood sends: syn (spoofed SYNs, a legitimate client connecting half-way), icmp (echo
    /// requests) or udp (datagrams to pseudo-random ports); for icmp and udp an established
    /// session echoes back to back for a second before the flood and during it, and its round
    /// trips are reported (calm_* and flood_*, microseconds).
    #[arg(long, value_enum, default_value = "syn")]
    pub(crate) flood_kind: FloodKindArg,
    /// Give up after this many seconds.
    #[arg(long, default_value = "20", value_parser = parse_secs)]
    pub(crate) timeout: Duration,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum FloodKindArg {
    Syn,
    Icmp,
    Udp,
}

pub(crate) fn run(a: StormArgs) -> Result<ExitCode, String> {
    let dst = SocketAddr::new(a.ip.into(), a.port);
    if let Some(n) = a.conns {
        let r = storm::storm(dst, n as usize, a.timeout).map_err(|e| format!("storm: {e}"))?;
        println!(
            "storm conns={} established={} echoed={} established_s={:.4} echoed_s={:.4} syn_retrans={}",
            r.conns, r.established, r.echoed, r.established_s, r.echoed_s, r.syn_retrans
        );
        return Ok(if r.echoed == r.conns { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let n = a.flood.unwrap_or(0) as usize;
    let kind = match a.flood_kind {
        FloodKindArg::Syn => storm::FloodKind::Syn,
        FloodKindArg::Icmp => storm::FloodKind::Icmp,
        FloodKindArg::Udp => storm::FloodKind::Udp,
    };
    if kind != storm::FloodKind::Syn {
        let r = storm::reflect_flood(dst, kind, n, a.timeout).map_err(|e| format!("flood: {e}"))?;
        let (c, f) = (r.calm, r.flooded);
        println!(
            "flood kind={} sent={} flood_s={:.4} calm_n={} calm_p50_us={:.1} calm_p99_us={:.1} calm_p999_us={:.1} \
             calm_max_us={:.1} flood_n={} flood_p50_us={:.1} flood_p99_us={:.1} flood_p999_us={:.1} flood_max_us={:.1}",
            if kind == storm::FloodKind::Icmp { "icmp" } else { "udp" },
            r.sent,
            r.flood_s,
            c.n,
            c.p50_us,
            c.p99_us,
            c.p999_us,
            c.max_us,
            f.n,
            f.p50_us,
            f.p99_us,
            f.p999_us,
            f.max_us
        );
        return Ok(ExitCode::SUCCESS);
    }
    let r = storm::flood(dst, a.flood_src, n, a.timeout).map_err(|e| format!("flood: {e}"))?;
    println!(
        "flood syns={} flood_s={:.4} connect_ms={:.3} served_ms={:.3} syn_retrans={} syns_after={}",
        r.syns,
        r.flood_s,
        r.connect_s * 1e3,
        r.served_s * 1e3,
        r.syn_retrans,
        r.syns_after
    );
    Ok(ExitCode::SUCCESS)
}
