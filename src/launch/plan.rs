//! The plan of the loops: which backend runs, how many loops on which
//! queues and cores (checked once, with errors that name the flags), and
//! the XDP program attached once for all of them.

use std::net::Ipv4Addr;

use crate::backend::kernel::KernelConfig;
use crate::backend::xdp::bpf::XdpProgram;
use crate::backend::xdp::{attach, LoopOf, XdpConfig};
use crate::stack::handoff::{ring_of_loops, Handoff, HANDOFF_SLOTS};

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// xdp when an interface is given and AF_XDP works, else kernel; the
    /// reason is logged in one line.
    Auto,
    Kernel,
    Xdp,
}

/// The xdp backend's side of the plan: its configuration (which names its
/// interface), or why there is none (an IPv6 address, no `--iface`).
pub type XdpPlan = Result<XdpConfig, String>;

/// Where the loops run: queues (xdp: one loop per queue) and cores (one
/// per loop, in order; none for one unpinned loop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Places {
    pub queues: Vec<u32>,
    pub cores: Vec<usize>,
}

impl Places {
    /// One loop on queue 0, on `core` if given.
    pub fn one(core: Option<usize>) -> Places {
        Places { queues: vec![0], cores: core.into_iter().collect() }
    }
}

fn show<T: ToString>(v: &[T]) -> String {
    v.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// How many loops `places` asks for on the xdp backend (`xdp`) or the
/// kernel's, with each loop's core (None: one unpinned loop), or the
/// refusal that names the flags. `pcap`: a capture was asked for (one loop
/// only).
pub fn plan(xdp: bool, places: &Places, pcap: bool) -> Result<Vec<Option<usize>>, String> {
    let (queues, cores) = (&places.queues, &places.cores);
    let several = queues.len() > 1 || cores.len() > 1;
    if !several {
        return Ok(vec![cores.first().copied()]);
    }
    if pcap {
        return Err("--pcap captures one loop's frames: give one --queue and one --core to capture".into());
    }
    if !xdp && queues.len() > 1 {
        return Err(format!(
            "--queue {}: queue lists are for the xdp backend; the kernel backend runs one loop per --core",
            show(queues)
        ));
    }
    if xdp && queues.len() == 1 {
        return Err(format!(
            "--core {}: several cores for one --queue; the xdp backend runs one loop per queue (e.g. --queue 0,1 \
             --core 2,3)",
            show(cores)
        ));
    }
    let n = if xdp { queues.len() } else { cores.len() };
    if cores.len() != n {
        return Err(format!(
            "--queue {} gives {n} loops, one per queue: --core needs {n} cores, one per loop in the same order (got {})",
            show(queues),
            if cores.is_empty() { "none".to_string() } else { show(cores) }
        ));
    }
    let online = crate::runtime::online_cpus();
    if let Some(c) = cores.iter().find(|c| !online.contains(c)) {
        return Err(format!("--core {c}: not an online CPU (online: {online:?})"));
    }
    Ok(cores.iter().map(|&c| Some(c)).collect())
}

/// What one loop runs on.
pub enum LoopBackend {
    Xdp(Box<XdpConfig>, LoopOf),
    Kernel(KernelConfig),
}

/// The XDP program attached once for every loop (detached when this drops,
/// after every loop has stopped), and what each loop takes of it: its
/// queue's configuration, the program's maps and, with several loops, its
/// ends of the handoff rings.
pub struct Attached {
    pub prog: XdpProgram,
    base: XdpConfig,
    own_address: bool,
    queues: Vec<u32>,
    handoffs: Option<std::vec::IntoIter<Handoff>>,
    next: usize,
}

impl Attached {
    /// Attach the program for `cfg` on `queues`, and, for several queues,
    /// wire one handoff ring per loop. With `fall_back` (`--backend auto`)
    /// a failure is logged and gives `None`: the caller runs kernel loops.
    pub fn attach(cfg: XdpPlan, queues: &[u32], fall_back: bool) -> Result<Option<Attached>, String> {
        let attempt = || -> Result<Attached, String> {
            let base = cfg?;
            let (prog, own_address) =
                attach(&base, base.stack.local_ports, queues).map_err(|e| format!("xdp backend: {e}"))?;
            let handoffs =
                if queues.len() > 1 { Some(ring_of_loops(queues.len(), HANDOFF_SLOTS)?.into_iter()) } else { None };
            Ok(Attached { prog, base, own_address, queues: queues.to_vec(), handoffs, next: 0 })
        };
        match attempt() {
            Ok(a) => Ok(Some(a)),
            Err(e) if fall_back => {
                crate::log_warn!("backend auto: kernel, because the xdp backend failed: {e}");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The address the stack owns.
    pub fn ip(&self) -> Ipv4Addr {
        self.base.stack.ip
    }

    /// The next loop's backend, in queue order: the configuration with its
    /// queue (also the queue its RSS table steers replies to), and its
    /// share of the program; and the queue.
    pub fn next_loop(&mut self) -> Result<(LoopBackend, u32), String> {
        let i = self.next;
        let q = *self.queues.get(i).ok_or("one queue per loop")?;
        self.next += 1;
        let handoff = match self.handoffs.as_mut() {
            Some(h) => Some(h.next().ok_or("one handoff end per loop")?),
            None => None,
        };
        let mut c = self.base.clone();
        c.xsk.queue = q;
        if let Some(t) = c.stack.rss.as_mut() {
            t.queue = q;
        }
        // Only one loop captures (`plan` refuses --pcap with several).
        if i > 0 {
            c.capture = None;
        }
        let of = LoopOf {
            maps: self.prog.maps()?,
            ifindex: self.prog.ifindex,
            own_address: self.own_address,
            handoff,
            stamp: self.prog.stamp,
        };
        Ok((LoopBackend::Xdp(Box::new(c), of), q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(queues: &[u32], cores: &[usize]) -> Places {
        Places { queues: queues.to_vec(), cores: cores.to_vec() }
    }

    #[test]
    fn one_loop_needs_no_check_and_several_are_refused_by_flag() {
        assert_eq!(plan(true, &places(&[3], &[]), true), Ok(vec![None]));
        assert_eq!(plan(false, &places(&[0], &[1]), false), Ok(vec![Some(1)]));
        let e = plan(false, &places(&[0, 1], &[0, 1]), false).unwrap_err();
        assert!(e.contains("--queue 0,1") && e.contains("kernel"), "{e}");
        let e = plan(true, &places(&[0], &[0, 1]), false).unwrap_err();
        assert!(e.contains("several cores for one --queue"), "{e}");
        let e = plan(true, &places(&[0, 1], &[0]), false).unwrap_err();
        assert!(e.contains("--core needs 2 cores"), "{e}");
        let e = plan(true, &places(&[0, 1], &[0, 1]), true).unwrap_err();
        assert!(e.contains("--pcap"), "{e}");
        let e = plan(false, &places(&[0], &[0, 4096]), false).unwrap_err();
        assert!(e.contains("--core 4096: not an online CPU"), "{e}");
    }
}
