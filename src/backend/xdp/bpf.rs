//! Loading and attaching `bpf/redirect.bpf.c`.
//!
//! The program is attached through a bpf_link: when the process exits, by any
//! means including SIGKILL, the kernel drops the link and the interface goes
//! back to the kernel. There is no pinning, so nothing is left behind.

use std::mem::MaybeUninit;
use std::net::Ipv4Addr;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, OpenObject};

#[allow(
    unsafe_code,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks,
    missing_docs,
    non_camel_case_types
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/redirect.skel.rs"));
}

use skel::{RedirectSkel, RedirectSkelBuilder};

/// The program's counters, summed over CPUs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct XdpCounters {
    pub seen: u64,
    pub redirected: u64,
    pub passed: u64,
    pub malformed: u64,
    /// Dropped by `--inject loss`.
    pub injected_drops: u64,
}

/// What the program redirects.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    pub ip: Ipv4Addr,
    /// Inclusive local port range for outbound connections (0, 0: none).
    pub local_ports: (u16, u16),
    /// The stack owns `ip` outright (the kernel has no such address).
    pub own_address: bool,
    /// Stamp each frame's arrival time into its XDP metadata.
    pub stamp_rx: bool,
    /// Drop every N-th TCP data segment (fault injection); 0: never.
    pub drop_every: u32,
}

/// The loaded and attached program.
pub struct XdpProgram {
    // The link first: dropping it detaches the program before the maps go.
    _link: Link,
    skel: RedirectSkel<'static>,
    pub ifindex: u32,
}

fn err(what: &str, e: libbpf_rs::Error) -> String {
    format!("{what}: {e}")
}

impl XdpProgram {
    /// Load the program with `filter` baked into its read-only data and
    /// attach it to `ifindex`.
    pub fn attach(ifindex: u32, filter: Filter) -> Result<XdpProgram, String> {
        // The skeleton borrows its object storage for its whole life; one
        // program per process, so the storage lives as long as the process.
        let storage: &'static mut MaybeUninit<OpenObject> = Box::leak(Box::new(MaybeUninit::uninit()));
        let open = RedirectSkelBuilder::default().open(storage).map_err(|e| err("opening the XDP program", e))?;
        let mut open = open;
        let ro = open.maps.rodata_data.as_deref_mut().ok_or("the XDP program has no read-only data section")?;
        ro.stack_ip = u32::from_ne_bytes(filter.ip.octets());
        ro.local_port_lo = filter.local_ports.0;
        ro.local_port_hi = filter.local_ports.1;
        ro.own_address = u8::from(filter.own_address);
        ro.stamp_rx = u8::from(filter.stamp_rx);
        ro.drop_every = filter.drop_every;
        let skel = open.load().map_err(|e| err("loading the XDP program (needs root or CAP_BPF+CAP_NET_ADMIN)", e))?;
        let link = skel
            .progs
            .tailgate_redirect
            .attach_xdp(ifindex as i32)
            .map_err(|e| err(&format!("attaching XDP to ifindex {ifindex}"), e))?;
        Ok(XdpProgram { _link: link, skel, ifindex })
    }

    /// Steer queue `queue` to the AF_XDP socket `fd`.
    pub fn register_socket(&mut self, queue: u32, fd: i32) -> Result<(), String> {
        self.skel
            .maps
            .xsks
            .update(&queue.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| err(&format!("registering the AF_XDP socket for queue {queue}"), e))
    }

    /// Redirect TCP/UDP to this port (used when the address is shared).
    pub fn add_port(&mut self, port: u16) -> Result<(), String> {
        self.skel
            .maps
            .ports
            .update(&port.to_ne_bytes(), &[1u8], MapFlags::ANY)
            .map_err(|e| err(&format!("adding port {port} to the XDP filter"), e))
    }

    /// Read the per-CPU counters, summed (one system call per counter).
    pub fn counters(&self) -> XdpCounters {
        read_counters(&self.skel.maps.counters)
    }

    /// A reader of the counters for another thread (its own handle on the
    /// map), so the pinned loop makes no system call for them.
    pub fn counter_reader(&self) -> Result<CounterReader, String> {
        MapHandle::try_from(&self.skel.maps.counters)
            .map(|map| CounterReader { map })
            .map_err(|e| err("duplicating the counters map", e))
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
    let mut v = [0u64; 5];
    for (i, slot) in v.iter_mut().enumerate() {
        let key = (i as u32).to_ne_bytes();
        if let Ok(Some(per_cpu)) = map.lookup_percpu(&key, MapFlags::ANY) {
            *slot =
                per_cpu.iter().filter_map(|b| b.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_ne_bytes)).sum();
        }
    }
    XdpCounters { seen: v[0], redirected: v[1], passed: v[2], malformed: v[3], injected_drops: v[4] }
}
