//! Loading and attaching `bpf/redirect.bpf.c`.
//!
//! The program is attached through a bpf_link: when the process exits, by any
//! means including SIGKILL, the kernel drops the link and the interface goes
//! back to the kernel. There is no pinning, so nothing is left behind.

use std::mem::offset_of;
use std::net::Ipv4Addr;

use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, Object, ObjectBuilder};

use crate::sys::bpfobj::{percpu_sum, put, set_rodata};
use crate::transport::Counters;

/// The compiled program (build.rs).
const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/redirect.bpf.o"));

use crate::sys::skel::types::rodata as Rodata;

/// The program's counters, summed over CPUs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct XdpCounters {
    pub seen: u64,
    pub redirected: u64,
    pub passed: u64,
    pub malformed: u64,
    /// Dropped by `--inject loss`.
    pub injected_drops: u64,
    /// For the stack's own address (it owns it), dropped by reason: TCP or
    /// UDP to a port of nobody's, ICMP echo requests over the rate, other
    /// ICMP, IP fragments, other IP protocols.
    pub dropped_port: u64,
    pub dropped_icmp_rate: u64,
    pub dropped_icmp_other: u64,
    pub dropped_fragment: u64,
    pub dropped_proto: u64,
}

impl XdpCounters {
    /// Add them to a counter list, under the names the exit line and the
    /// metrics use.
    pub fn fill(&self, out: &mut Counters) {
        out.event("xdp_seen", self.seen);
        out.event("xdp_redirected", self.redirected);
        out.event("xdp_passed", self.passed);
        out.event("xdp_malformed", self.malformed);
        out.drop("injected_drops", self.injected_drops);
        out.drop("xdp_dropped_port", self.dropped_port);
        out.drop("xdp_dropped_icmp_rate", self.dropped_icmp_rate);
        out.drop("xdp_dropped_icmp_other", self.dropped_icmp_other);
        out.drop("xdp_dropped_fragment", self.dropped_fragment);
        out.drop("xdp_dropped_proto", self.dropped_proto);
    }
}

/// Where the program stamps each redirected frame's arrival time (its
/// `stamp_rx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// Not at all: a frame's arrival is the loop's poll time.
    Off = 0,
    /// In the XDP metadata in front of the frame (`bpf_xdp_adjust_meta`).
    Meta = 1,
    /// Over the frame's destination MAC address, which the stack puts back
    /// ([`take_mac_stamp`](super::device::take_mac_stamp)): for kernels
    /// whose verifier refuses `bpf_xdp_adjust_meta` to XDP programs.
    DstMac = 2,
}

/// What the program redirects.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    pub ip: Ipv4Addr,
    /// Inclusive local port range for outbound connections (0, 0: none).
    pub local_ports: (u16, u16),
    /// The stack owns `ip` outright (the kernel has no such address).
    pub own_address: bool,
    /// Where to stamp each redirected frame's arrival time.
    pub stamp: Stamp,
    /// Drop every N-th TCP data segment (fault injection); 0: never.
    pub drop_every: u32,
    /// ICMP echo requests redirected per second per CPU (0: none), when
    /// the stack owns its address.
    pub icmp_echo_per_sec: u32,
}

/// The loaded and attached program.
pub struct XdpProgram {
    // Drop order: the link first (the program is detached: no frame is
    // redirected any more), then the map handles, then the object.
    _link: Link,
    xsks: MapHandle,
    ports: MapHandle,
    counters: MapHandle,
    _obj: Object,
    pub ifindex: u32,
    /// Where the loaded program stamps arrival times.
    pub stamp: Stamp,
}

fn err(what: &str, e: libbpf_rs::Error) -> String {
    format!("{what}: {e}")
}

impl XdpProgram {
    /// Load the program with `filter` baked into its read-only data and
    /// attach it to `ifindex`.
    ///
    /// Some kernels' verifiers refuse `bpf_xdp_adjust_meta` to an XDP
    /// program ("program of this type cannot use helper"). Asked for
    /// [`Stamp::Meta`], the program is then loaded with [`Stamp::DstMac`]
    /// instead, with one log line; [`XdpProgram::stamp`] says which holds.
    pub fn attach(ifindex: u32, filter: Filter) -> Result<XdpProgram, String> {
        if filter.stamp != Stamp::Meta {
            return Self::load_and_attach(ifindex, filter);
        }
        // Quietly: a refusal here is answered by the retry below, which
        // prints the verifier's log if it fails too.
        let print = libbpf_rs::set_print(None);
        let meta = Self::load_and_attach(ifindex, filter);
        libbpf_rs::set_print(print);
        match meta {
            Ok(p) => Ok(p),
            Err(e) => {
                let p = Self::load_and_attach(ifindex, Filter { stamp: Stamp::DstMac, ..filter })?;
                crate::log_warn!(
                    "xdp: the kernel refused the XDP program's metadata stamp ({e}): frames carry their arrival time \
                     in their destination MAC address instead, which the stack puts back"
                );
                Ok(p)
            }
        }
    }

    fn load_and_attach(ifindex: u32, filter: Filter) -> Result<XdpProgram, String> {
        let mut open = ObjectBuilder::default().open_memory(OBJECT).map_err(|e| err("opening the XDP program", e))?;
        let what = "the XDP program";
        set_rodata(&mut open, what, |ro| {
            put(ro, offset_of!(Rodata, stack_ip), &u32::from_ne_bytes(filter.ip.octets()).to_ne_bytes(), what)?;
            put(ro, offset_of!(Rodata, local_port_lo), &filter.local_ports.0.to_ne_bytes(), what)?;
            put(ro, offset_of!(Rodata, local_port_hi), &filter.local_ports.1.to_ne_bytes(), what)?;
            put(ro, offset_of!(Rodata, own_address), &[u8::from(filter.own_address)], what)?;
            put(ro, offset_of!(Rodata, stamp_rx), &[filter.stamp as u8], what)?;
            put(ro, offset_of!(Rodata, drop_every), &filter.drop_every.to_ne_bytes(), what)?;
            put(ro, offset_of!(Rodata, icmp_echo_per_sec), &filter.icmp_echo_per_sec.to_ne_bytes(), what)?;
            let burst = (filter.icmp_echo_per_sec / 5).clamp(1, 1000);
            put(ro, offset_of!(Rodata, icmp_echo_burst), &burst.to_ne_bytes(), what)
        })?;
        let obj = open.load().map_err(|e| err("loading the XDP program (needs root or CAP_BPF+CAP_NET_ADMIN)", e))?;
        let map = |name: &str| -> Result<MapHandle, String> {
            let m = obj.maps().find(|m| m.name() == name).ok_or(format!("the XDP program has no map {name}"))?;
            MapHandle::try_from(&m).map_err(|e| err(&format!("opening map {name}"), e))
        };
        let (xsks, ports, counters) = (map("xsks")?, map("ports")?, map("counters")?);
        let link = obj
            .progs_mut()
            .find(|p| p.name() == "tailgate_redirect")
            .ok_or("the XDP program has no tailgate_redirect")?
            .attach_xdp(ifindex as i32)
            .map_err(|e| err(&format!("attaching XDP to ifindex {ifindex}"), e))?;
        Ok(XdpProgram { _link: link, xsks, ports, counters, _obj: obj, ifindex, stamp: filter.stamp })
    }

    /// Handles on the socket and port maps for another thread (a loop of
    /// several registering its own socket).
    pub fn maps(&self) -> Result<ProgMaps, String> {
        let dup =
            |m: &MapHandle, what: &str| MapHandle::try_from(m).map_err(|e| err(&format!("duplicating {what}"), e));
        Ok(ProgMaps { xsks: dup(&self.xsks, "the socket map")?, ports: dup(&self.ports, "the port map")? })
    }

    /// Read the per-CPU counters, summed (one system call per counter).
    pub fn counters(&self) -> XdpCounters {
        read_counters(&self.counters)
    }

    /// A reader of the counters for another thread (its own handle on the
    /// map), so the pinned loop makes no system call for them.
    pub fn counter_reader(&self) -> Result<CounterReader, String> {
        MapHandle::try_from(&self.counters)
            .map(|map| CounterReader { map })
            .map_err(|e| err("duplicating the counters map", e))
    }
}

/// The program's socket and port maps, held by a loop of several (its own
/// file descriptors on the maps; the program stays with the thread that
/// attached it).
#[derive(Debug)]
pub struct ProgMaps {
    xsks: MapHandle,
    ports: MapHandle,
}

impl ProgMaps {
    /// Steer queue `queue` to the AF_XDP socket `fd`.
    pub fn register_socket(&self, queue: u32, fd: i32) -> Result<(), String> {
        self.xsks
            .update(&queue.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| err(&format!("registering the AF_XDP socket for queue {queue}"), e))
    }

    /// Redirect TCP/UDP to this port (a listening port).
    pub fn add_port(&self, port: u16) -> Result<(), String> {
        self.ports
            .update(&port.to_ne_bytes(), &[1u8], MapFlags::ANY)
            .map_err(|e| err(&format!("adding port {port} to the XDP filter"), e))
    }
}

/// The program's counters, readable from any thread.
#[derive(Debug)]
pub struct CounterReader {
    map: MapHandle,
}

impl CounterReader {
    pub fn read(&self) -> XdpCounters {
        read_counters(&self.map)
    }
}

fn read_counters(map: &impl MapCore) -> XdpCounters {
    let mut v = [0u64; 10];
    for (i, slot) in v.iter_mut().enumerate() {
        *slot = percpu_sum(map, i as u32);
    }
    XdpCounters {
        seen: v[0],
        redirected: v[1],
        passed: v[2],
        malformed: v[3],
        injected_drops: v[4],
        dropped_port: v[5],
        dropped_icmp_rate: v[6],
        dropped_icmp_other: v[7],
        dropped_fragment: v[8],
        dropped_proto: v[9],
    }
}
