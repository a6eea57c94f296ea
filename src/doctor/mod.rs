//! `tailgate doctor`: what on this host is and is not ready for a pinned
//! busy-poll gateway on `--iface` and `--core`, one line per item with the
//! value found and the fix (a `scripts/tune-host.sh` line or a boot
//! parameter). Read-only by default: with `--probe` it also binds an AF_XDP
//! socket to the queue for a moment (zero-copy first), which on some NICs
//! reconfigures that queue, so it is never done unasked.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

use crate::backend::xdp::xsk::{BindMode, Xsk, XskConfig, ZeroCopy};
use crate::runtime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    /// Not applicable or not knowable here; says why.
    Info,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub item: &'static str,
    pub status: Status,
    pub found: String,
    /// What to do; empty for OK.
    pub fix: String,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub iface: String,
    /// The loops' cores and queues, in pairs (one loop per queue).
    pub cores: Vec<usize>,
    pub queues: Vec<u32>,
    /// Bind an AF_XDP socket to find out zero-copy, need_wakeup and the
    /// busy-poll options for real.
    pub probe: bool,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The bracketed choice of a sysfs "a [b] c" file.
fn bracketed(v: &str) -> &str {
    v.split_whitespace().find(|w| w.starts_with('[')).map(|w| w.trim_matches(|c| c == '[' || c == ']')).unwrap_or(v)
}

fn f(item: &'static str, status: Status, found: impl Into<String>, fix: impl Into<String>) -> Finding {
    let fix = if status == Status::Ok { String::new() } else { fix.into() };
    Finding { item, status, found: found.into(), fix }
}

/// `ethtool ARGS IF` output, run in network namespace `ns` if given, if
/// ethtool runs.
fn ethtool(ns: Option<&str>, args: &[&str], iface: &str) -> Option<String> {
    let mut c = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "ethtool"]);
            c
        }
        None => Command::new("ethtool"),
    };
    let out = c.args(args).arg(iface).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

/// `name=value` for every nonzero counter of `ethtool -S` output whose
/// name says drop or miss.
fn nonzero_drops(stats: &str) -> Vec<String> {
    stats
        .lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            let n = v.trim().parse::<u64>().ok()?;
            (n > 0 && (k.contains("drop") || k.contains("miss"))).then(|| format!("{k}={n}"))
        })
        .collect()
}

/// `feature: on|off` from `ethtool -k`.
fn feature<'a>(k: &'a str, name: &str) -> Option<&'a str> {
    k.lines().find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':')?.split_whitespace().next())
}

/// Drivers with native (driver-mode) XDP and with AF_XDP zero-copy, as of
/// Linux 6.x. Used when not probing; a driver missing here may still have them.
const NATIVE_XDP: &[&str] = &[
    "veth",
    "virtio_net",
    "tun",
    "ixgbe",
    "ixgbevf",
    "i40e",
    "ice",
    "igb",
    "igc",
    "mlx4_en",
    "mlx5_core",
    "bnxt_en",
    "nfp",
    "ena",
    "qede",
    "thunder",
    "stmmac",
    "fec",
    "mvneta",
    "mvpp2",
    "sfc",
    "hv_netvsc",
    "netdevsim",
    "idpf",
];
const ZERO_COPY: &[&str] = &["i40e", "ice", "ixgbe", "igc", "mlx5_core", "stmmac", "idpf", "virtio_net"];

fn kernel_version() -> (u32, u32) {
    let r = read("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = r.split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Run every check.
mod interface;
use interface::interface;

pub fn run(o: &Options) -> Vec<Finding> {
    let mut v = Vec::new();
    let ifdir = format!("/sys/class/net/{}", o.iface);
    let list = |v: &[String]| v.join(",");
    let cores = list(&o.cores.iter().map(usize::to_string).collect::<Vec<_>>());
    let queues = list(&o.queues.iter().map(u32::to_string).collect::<Vec<_>>());
    let tune = format!("scripts/tune-host.sh --iface {} --core {cores} --apply", o.iface);
    let kv = kernel_version();
    v.push(f(
        "kernel",
        Status::Info,
        format!("{}.{}", kv.0, kv.1),
        "AF_XDP need_wakeup needs 5.4, SO_PREFER_BUSY_POLL 5.11",
    ));

    // The interface.
    if !Path::new(&ifdir).exists() {
        v.push(f(
            "interface",
            Status::Fail,
            format!("{}: no such interface in this network namespace", o.iface),
            "check the name (ip link); in the lab run doctor inside the namespace: ip netns exec tg_gw tailgate doctor ...",
        ));
    } else {
        interface(o, &ifdir, &tune, kv, &mut v);
    }

    // The cores, one per queue.
    let online = runtime::parse_cpu_list(&read("/sys/devices/system/cpu/online").unwrap_or_default());
    if o.cores.len() != o.queues.len() {
        v.push(f(
            "loops",
            Status::Fail,
            format!("--queue {queues} and --core {cores}: {} queue(s), {} core(s)", o.queues.len(), o.cores.len()),
            "one core per queue, in the same order (each queue gets a loop pinned to its core)",
        ));
    }
    for &c in &o.cores {
        if !online.contains(&c) {
            v.push(f(
                "core",
                Status::Fail,
                format!("cpu{c} is not online (online: {online:?})"),
                "pick an online core for --core",
            ));
        } else {
            core(c, &o.cores, &online, &tune, &mut v);
        }
    }
    if !o.iface.is_empty() && Path::new(&ifdir).exists() {
        queue_irqs(o, &mut v);
    }

    // Memory.
    let thp = read("/sys/kernel/mm/transparent_hugepage/enabled");
    match thp.as_deref().map(bracketed) {
        Some("never") => v.push(f("transparent hugepages", Status::Ok, "never", "")),
        Some(t @ "madvise") => v.push(f(
            "transparent hugepages",
            Status::Warn,
            t,
            format!("only madvised memory collapses, but khugepaged still scans: never ({tune}, group thp)"),
        )),
        Some(t) => v.push(f(
            "transparent hugepages",
            Status::Warn,
            t,
            format!("collapse and compaction stalls: never ({tune})"),
        )),
        None => v.push(f("transparent hugepages", Status::Info, "not present", "")),
    }
    let free = read("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").and_then(|s| s.parse::<u64>().ok());
    let umem_pages = (XskConfig::default().frames as u64 * XskConfig::default().frame_size as u64) >> 21;
    match free {
        Some(n) if n >= umem_pages => v.push(f("2 MiB hugepages", Status::Ok, format!("{n} free"), "")),
        Some(n) => v.push(f(
            "2 MiB hugepages",
            Status::Warn,
            format!("{n} free, the UMEM needs {umem_pages}"),
            format!("the UMEM falls back to 4 KiB pages (more TLB misses): {tune} (group hugepages)"),
        )),
        None => v.push(f("2 MiB hugepages", Status::Info, "no 2 MiB hugepage pool", "")),
    }
    let memlock = rustix::process::getrlimit(rustix::process::Resource::Memlock).current;
    let cap_ipc_lock = capability(14);
    let need = umem_pages.max(8) << 21;
    match (cap_ipc_lock, memlock) {
        (true, _) => v.push(f("memlock", Status::Ok, "CAP_IPC_LOCK", "")),
        (false, None) => v.push(f("memlock", Status::Ok, "unlimited", "")),
        (false, Some(n)) if n >= need => v.push(f("memlock", Status::Ok, format!("{} KiB", n >> 10), "")),
        (false, Some(n)) => v.push(f(
            "memlock",
            Status::Fail,
            format!("{} KiB, no CAP_IPC_LOCK", n >> 10),
            format!("the UMEM ({} MiB) is locked memory: ulimit -l unlimited, or run as root", need >> 20),
        )),
    }
    let mounts = read("/proc/mounts").unwrap_or_default();
    if mounts.lines().any(|l| l.split_whitespace().nth(2) == Some("bpf")) {
        v.push(f("bpffs", Status::Ok, "mounted", ""));
    } else {
        v.push(f(
            "bpffs",
            Status::Warn,
            "not mounted",
            "tailgate pins nothing and runs without it, but bpftool and pinned maps need it: mount -t bpf bpf /sys/fs/bpf",
        ));
    }
    match read("/proc/sys/kernel/sched_rt_runtime_us").as_deref() {
        Some("-1") => v.push(f("RT throttling", Status::Ok, "off (-1)", "")),
        Some(n) => v.push(f(
            "RT throttling",
            Status::Warn,
            format!("sched_rt_runtime_us={n}"),
            format!("a SCHED_FIFO loop is paused when it uses its quota: -1 ({tune}, group sysctl)"),
        )),
        None => v.push(f("RT throttling", Status::Info, "not present", "")),
    }
    match read("/proc/sys/net/core/busy_poll") {
        Some(n) if n != "0" => v.push(f("net.core.busy_poll", Status::Ok, n, "")),
        Some(n) => v.push(f(
            "net.core.busy_poll",
            Status::Warn,
            n,
            format!("poll/select do not busy-poll (the socket options still do): 50 ({tune}, group sysctl)"),
        )),
        None => v.push(f("net.core.busy_poll", Status::Info, "not visible in this network namespace (host-wide)", "")),
    }
    // /dev/cpu_dma_latency: the gateway holds it at 0 while it runs.
    let dma = Path::new("/dev/cpu_dma_latency");
    if !dma.exists() {
        v.push(f(
            "cpu_dma_latency",
            Status::Info,
            "no /dev/cpu_dma_latency",
            "C-states are the firmware's or the hypervisor's",
        ));
    } else if std::fs::OpenOptions::new().write(true).open(dma).is_ok() {
        v.push(f("cpu_dma_latency", Status::Ok, "writable: tailgate serve holds it at 0 while it runs", ""));
    } else {
        v.push(f(
            "cpu_dma_latency",
            Status::Warn,
            "not writable",
            "deep C-state exits add tens of us: run the gateway as root, or hold /dev/cpu_dma_latency at 0 (tuned's latency-performance profile)",
        ));
    }
    v
}

/// The IRQs of each queue of the list (named after the interface and the
/// queue in /proc/interrupts, as NIC drivers name them: eth1-TxRx-0,
/// mlx5_comp0@pci:...): they should land on a housekeeping core, not on
/// a loop's.
fn queue_irqs(o: &Options, v: &mut Vec<Finding>) {
    let table = read("/proc/interrupts").unwrap_or_default();
    for &q in &o.queues {
        let irqs: Vec<String> = table
            .lines()
            .filter(|l| {
                let name = l.split_whitespace().last().unwrap_or("");
                name.starts_with(o.iface.as_str())
                    && name.rsplit(['-', '_']).next().and_then(|n| n.parse::<u32>().ok()) == Some(q)
            })
            .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
            .collect();
        if irqs.is_empty() {
            v.push(f(
                "queue IRQs",
                Status::Info,
                format!(
                    "queue {q}: no IRQ named after {} (a virtual device, or a driver naming them otherwise)",
                    o.iface
                ),
                "",
            ));
            continue;
        }
        let on_loop: Vec<&String> = irqs
            .iter()
            .filter(|n| {
                read(&format!("/proc/irq/{n}/smp_affinity_list"))
                    .is_some_and(|l| runtime::parse_cpu_list(&l).iter().any(|c| o.cores.contains(c)))
            })
            .collect();
        if on_loop.is_empty() {
            v.push(f(
                "queue IRQs",
                Status::Ok,
                format!("queue {q}: IRQ(s) {} off the loops' cores", irqs.join(",")),
                "",
            ));
        } else {
            v.push(f(
                "queue IRQs",
                Status::Warn,
                format!("queue {q}: IRQ(s) {} may land on a loop's core", on_loop.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")),
                "steer each queue's IRQ to a housekeeping core: scripts/tune-host.sh --iface IF --core LIST --queue LIST --apply",
            ));
        }
    }
}

fn core(c: usize, loops: &[usize], online: &[usize], tune: &str, v: &mut Vec<Finding>) {
    if runtime::core_isolated(c) {
        v.push(f("core isolated", Status::Ok, format!("cpu{c} in isolcpus/nohz_full"), ""));
    } else {
        v.push(f(
            "core isolated",
            Status::Warn,
            format!("cpu{c} is not isolated"),
            format!("boot with isolcpus=managed_irq,domain,{c} nohz_full={c} rcu_nocbs={c}"),
        ));
    }
    if online.iter().all(|c| loops.contains(c)) {
        v.push(f(
            "core free of IRQs",
            Status::Info,
            format!("cpu{c}: every online CPU runs a loop, nowhere else for IRQs"),
            "",
        ));
    } else {
        let mut on_core = Vec::new();
        if let Ok(d) = std::fs::read_dir("/proc/irq") {
            for e in d.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().to_string();
                if !name.chars().all(|ch| ch.is_ascii_digit()) {
                    continue;
                }
                if let Some(list) = read(&format!("/proc/irq/{name}/smp_affinity_list")) {
                    if runtime::parse_cpu_list(&list).contains(&c) {
                        on_core.push(name);
                    }
                }
            }
        }
        on_core.sort_by_key(|n| n.parse::<u32>().unwrap_or(0));
        if on_core.is_empty() {
            v.push(f("core free of IRQs", Status::Ok, format!("no IRQ may land on cpu{c}"), ""));
        } else {
            v.push(f(
                "core free of IRQs",
                Status::Warn,
                format!("{} IRQ(s) may land on cpu{c}: {}", on_core.len(), on_core.join(",")),
                format!("{tune} (group irq; stops irqbalance too)"),
            ));
        }
    }
    let gov = format!("/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor");
    match read(&gov) {
        Some(g) if g == "performance" => v.push(f("governor", Status::Ok, g, "")),
        Some(g) => v.push(f(
            "governor",
            Status::Warn,
            g,
            format!("frequency ramps add latency: performance ({tune}, group governor)"),
        )),
        None => v.push(f("governor", Status::Info, "no cpufreq (a VM, or a fixed frequency)", "")),
    }
}

/// The other end of a veth, when it is in this network namespace
/// (interface indexes are per namespace, so a peer elsewhere, which `ip`
/// shows as `link-netns`, must not be matched by index here).
/// Returns the peer's namespace (None: this one) and name.
fn veth_peer(ifdir: &str) -> Option<(Option<String>, String)> {
    let name = Path::new(ifdir).file_name()?.to_string_lossy().to_string();
    let peer = read(&format!("{ifdir}/iflink"))?;
    let out = Command::new("ip").args(["-o", "link", "show", "dev", &name]).output().ok()?;
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    if let Some(ns) = line.split_whitespace().skip_while(|w| *w != "link-netns").nth(1) {
        // `ip -n NS -o link`: "IDX: NAME@ifX: ..."
        let out = Command::new("ip").args(["-n", ns, "-o", "link", "show"]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let pname = text.lines().find_map(|l| {
            let (idx, rest) = l.split_once(": ")?;
            (idx == peer).then(|| rest.split(['@', ':']).next().unwrap_or("").to_string())
        })?;
        return Some((Some(ns.to_string()), pname));
    }
    std::fs::read_dir("/sys/class/net").ok()?.filter_map(Result::ok).find_map(|e| {
        let other = e.file_name().to_string_lossy().to_string();
        let idx = read(&format!("{}/ifindex", e.path().display()))?;
        (idx == peer && other != name).then_some((None, other))
    })
}

/// Is capability `bit` in this process's effective set?
fn capability(bit: u32) -> bool {
    read("/proc/self/status")
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapEff:").map(|x| x.trim().to_string())))
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .is_some_and(|caps| caps & (1 << bit) != 0)
}

/// The table for a terminal.
pub fn render(v: &[Finding]) -> String {
    let mut o = String::new();
    for x in v {
        let st = match x.status {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Info => "INFO",
        };
        o += &format!("{st:<5} {:<25} {}\n", x.item, x.found);
        if !x.fix.is_empty() && x.status != Status::Ok {
            let label = if x.status == Status::Info { "note" } else { "fix" };
            o += &format!("      {:<25} {label}: {}\n", "", x.fix);
        }
    }
    let n = |s| v.iter().filter(|x| x.status == s).count();
    o += &format!("doctor: {} ok, {} warn, {} fail\n", n(Status::Ok), n(Status::Warn), n(Status::Fail));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonzero_drop_and_miss_counters_are_named() {
        let t = "NIC statistics:\n     peer_ifindex: 3\n     rx_queue_0_drops: 1493\n     rx_queue_0_xdp_drops: 0\n     rx_missed_errors: 2\n     rx_packets: 99\n";
        assert_eq!(nonzero_drops(t), ["rx_queue_0_drops=1493", "rx_missed_errors=2"]);
    }

    #[test]
    fn parsing_helpers() {
        assert_eq!(bracketed("always [madvise] never"), "madvise");
        assert_eq!(bracketed("performance"), "performance");
        let k =
            "Features for x:\nrx-checksumming: off [fixed]\ntx-checksumming: on\nlarge-receive-offload: off [fixed]\n";
        assert_eq!(feature(k, "rx-checksumming"), Some("off"));
        assert_eq!(feature(k, "tx-checksumming"), Some("on"));
        assert_eq!(feature(k, "large-receive-offload"), Some("off"));
        assert_eq!(feature(k, "nope"), None);
    }

    #[test]
    fn a_missing_interface_or_core_fails_with_a_fix() {
        let v = run(&Options { iface: "nosuch0".into(), cores: vec![100_000], queues: vec![0], probe: false });
        let iface = v.iter().find(|x| x.item == "interface").unwrap();
        assert_eq!(iface.status, Status::Fail);
        assert!(iface.fix.contains("ip link"), "{iface:?}");
        let core = v.iter().find(|x| x.item == "core").unwrap();
        assert_eq!(core.status, Status::Fail);
        // Every WARN and FAIL carries a fix.
        for x in &v {
            if matches!(x.status, Status::Warn | Status::Fail) {
                assert!(!x.fix.is_empty(), "{x:?}");
            }
        }
        assert!(render(&v).contains("FAIL  interface"));
    }

    #[test]
    fn queue_and_core_lists_must_pair_up_and_every_core_is_checked() {
        let o = Options { iface: "nosuch0".into(), cores: vec![0, 100_000], queues: vec![0], probe: false };
        let v = run(&o);
        let loops = v.iter().find(|x| x.item == "loops").expect("a loops finding");
        assert_eq!(loops.status, Status::Fail);
        assert!(loops.found.contains("1 queue(s), 2 core(s)"), "{loops:?}");
        // cpu0 is checked, and the missing cpu100000 fails.
        assert!(v.iter().any(|x| x.item == "core isolated" && x.found.contains("cpu0")), "{v:?}");
        assert!(v.iter().any(|x| x.item == "core" && x.status == Status::Fail && x.found.contains("cpu100000")));
        let paired = Options { cores: vec![0], ..o };
        assert!(!run(&paired).iter().any(|x| x.item == "loops"));
    }
}
