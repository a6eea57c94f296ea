//! What `serve` and `load` with several loops share: the plan of the loops
//! from `--queue` and `--core`, what each loop runs on, and the XDP program
//! attached once for all of them (docs/ARCHITECTURE.md, "One loop per
//! queue").

use tailgate::backend::kernel::KernelConfig;
use tailgate::backend::xdp::bpf::XdpProgram;
use tailgate::backend::xdp::{attach, LoopOf, XdpConfig};
use tailgate::log_warn;
use tailgate::stack::handoff::{ring_of_loops, Handoff, HANDOFF_SLOTS};

use super::{List, XdpArgs};

/// The loops that `--queue` and `--core` lists ask for (serve and load):
/// one per queue on the xdp backend, one per core on the kernel backend;
/// their cores, in order, or the refusal that names the flags.
pub(crate) fn plan_loops(xdp: bool, x: &XdpArgs, core: Option<&List>) -> Result<Vec<usize>, String> {
    let queues = &x.queue;
    if x.pcap.is_some() {
        return Err("--pcap captures one loop's frames: give one --queue and one --core to capture".into());
    }
    let cores: Vec<usize> = core.map(|l| l.0.clone()).unwrap_or_default();
    let shown = || core.map(List::show).unwrap_or_default();
    if !xdp && queues.len() > 1 {
        return Err(format!(
            "--queue {}: queue lists are for the xdp backend; the kernel backend runs one loop per --core",
            queues.show()
        ));
    }
    if xdp && queues.len() == 1 {
        return Err(format!(
            "--core {}: several cores for one --queue; the xdp backend runs one loop per queue (e.g. --queue 0,1 \
             --core 2,3)",
            shown()
        ));
    }
    let n = if xdp { queues.len() } else { cores.len() };
    if cores.len() != n {
        return Err(format!(
            "--queue {} gives {n} loops, one per queue: --core needs {n} cores, one per loop in the same order (got {})",
            queues.show(),
            if cores.is_empty() { "none".to_string() } else { shown() }
        ));
    }
    let online = tailgate::runtime::online_cpus();
    if let Some(c) = cores.iter().find(|c| !online.contains(c)) {
        return Err(format!("--core {c}: not an online CPU (online: {online:?})"));
    }
    Ok(cores)
}

/// What one loop runs on.
pub(crate) enum LoopBackend {
    Xdp(Box<XdpConfig>, LoopOf),
    Kernel(KernelConfig),
}

/// The XDP program attached once for every loop (detached when this drops,
/// after every loop has stopped), and what each loop takes of it: its
/// queue's configuration, the program's maps and its ends of the handoff
/// rings.
pub(crate) struct Attached {
    pub(crate) prog: XdpProgram,
    base: XdpConfig,
    own_address: bool,
    queues: Vec<u32>,
    handoffs: std::vec::IntoIter<Handoff>,
}

impl Attached {
    /// Attach the program for `cfg` (built by the caller) on `queues`, and
    /// wire one handoff ring per loop. With `fall_back` (`--backend auto`)
    /// a failure is logged and gives `None`: the caller runs kernel loops.
    pub(crate) fn attach(
        cfg: Result<XdpConfig, String>,
        queues: &List,
        fall_back: bool,
    ) -> Result<Option<Self>, String> {
        let attempt = || -> Result<Self, String> {
            let base = cfg?;
            let queues: Vec<u32> = queues.0.iter().map(|&q| q as u32).collect();
            let (prog, own_address) =
                attach(&base, base.stack.local_ports, &queues).map_err(|e| format!("xdp backend: {e}"))?;
            let handoffs = ring_of_loops(queues.len(), HANDOFF_SLOTS)?.into_iter();
            Ok(Attached { prog, base, own_address, queues, handoffs })
        };
        match attempt() {
            Ok(a) => Ok(Some(a)),
            Err(e) if fall_back => {
                log_warn!("backend auto: kernel, because the xdp backend failed: {e}");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The next loop's backend, in queue order: the configuration with its
    /// queue (also the queue its RSS table steers replies to), and its
    /// share of the program; and the queue.
    pub(crate) fn next_loop(&mut self) -> Result<(LoopBackend, u32), String> {
        let handoff = self.handoffs.next().ok_or("one handoff end per loop")?;
        let q = self.queues[handoff.index];
        let mut c = self.base.clone();
        c.xsk.queue = q;
        if let Some(t) = c.stack.rss.as_mut() {
            t.queue = q;
        }
        let of = LoopOf { maps: self.prog.maps()?, ifindex: self.prog.ifindex, own_address: self.own_address, handoff };
        Ok((LoopBackend::Xdp(Box::new(c), of), q))
    }
}
