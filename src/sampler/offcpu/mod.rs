//! What took a loop's core, measured off the hot path: bpf/offcpu.bpf.c
//! (loaded with libbpf-rs, attached to `sched_switch`, the IRQ and softirq
//! tracepoints and `page_fault_user`, filtered to the loops' thread ids)
//! writes each interval in which a loop's thread was off its CPU or
//! interrupted into a BPF ring buffer; a thread of its own (`tg-offcpu`,
//! off the loops' cores) reads it, and reads the loops' cores' steal time
//! from /proc/stat (every 50 ms and 100 ms: the program writes without
//! waking it), and
//! hands both to the reporter as records of the sample store ([`record`]).
//! The loops only tell their thread ids once, at start.
//!
//! Without the program (an older kernel, no BTF, no CAP_BPF) [`OffCpu::start`]
//! says why in one line and the report falls back to the sampler's causes.

pub mod record;
mod steal;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use libbpf_rs::{Link, MapCore, MapFlags, ObjectBuilder, RingBufferBuilder};

use self::record::{Interval, What};
use crate::sampler::Sample;
use crate::sys::bpfobj::{percpu_sum, put, set_rodata};

/// The compiled program (build.rs).
const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/offcpu.bpf.o"));

use crate::sys::offcpu_skel::types::rodata as Rodata;

/// Intervals shorter than this are not written (a loop's tail is made of
/// tens of microseconds and more; shorter ones would only fill the ring).
pub const MIN_NS: u64 = 2_000;
/// Records held for the reporter between its drains (10 ms); more are
/// dropped and counted.
const HELD: usize = 65_536;
/// How often the thread drains the ring buffer (the program writes
/// without waking it: see bpf/offcpu.bpf.c). Each wake-up of this thread
/// costs whatever shares its core (sockperf's p99.9 showed it at 10 ms);
/// the 1 MiB ring holds some 20,000 intervals meanwhile.
const EVERY: Duration = Duration::from_millis(50);
/// The steal time is read every this many turns (100 ms).
const STEAL_EVERY: u32 = 2;
/// A blocking loop's sleep shorter than this is counted, not stored.
const BLOCKED_KEPT_NS: u64 = 1_000_000;

/// Counters of the tracer.
#[derive(Debug, Default)]
pub struct OffCpuStats {
    pub intervals: AtomicU64,
    /// Intervals the reporter had no room for, or the ring buffer.
    pub dropped: AtomicU64,
    /// Off-CPU time by [`What`] (ns), index `What as usize`.
    pub ns: [AtomicU64; 7],
}

/// What the loops, the tracer's thread and the reporter share.
#[derive(Debug, Default)]
pub struct Shared {
    /// The loops' thread ids and cores, told once by each loop at start.
    threads: Mutex<Vec<(u32, Option<usize>)>>,
    /// Records read, for the reporter to take.
    out: Mutex<Vec<Sample>>,
    pub stats: OffCpuStats,
}

impl Shared {
    /// A loop's thread, on `core` (if pinned), is to be watched.
    pub fn watch(&self, tid: u32, core: Option<usize>) {
        if let Ok(mut t) = self.threads.lock() {
            t.push((tid, core));
        }
    }

    /// Move the records read since the last call into `into`.
    pub fn take(&self, into: &mut Vec<Sample>) {
        if let Ok(mut o) = self.out.lock() {
            into.append(&mut o);
        }
    }

    fn put(&self, s: Sample) {
        match self.out.lock() {
            Ok(mut o) if o.len() < HELD => o.push(s),
            _ => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The running tracer: stopped (and detached) when dropped.
pub struct OffCpu {
    pub shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for OffCpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OffCpu {{ intervals: {} }}", self.shared.stats.intervals.load(Ordering::Relaxed))
    }
}

impl OffCpu {
    /// Load and attach the program on a thread of its own, on `pin` or off
    /// every loop's core (`loop_cores`). `Err`: why it cannot run here.
    pub fn start(loop_cores: Vec<usize>, pin: Option<usize>) -> Result<OffCpu, String> {
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = sync_channel::<Result<(), String>>(1);
        let (sh, st) = (shared.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("tg-offcpu".into())
            .spawn(move || {
                crate::runtime::place_helper_off(&loop_cores, pin, "off-CPU tracer");
                match Loaded::load() {
                    Ok(l) => {
                        let _ = tx.send(Ok(()));
                        run(l, &sh, &st);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| format!("starting the off-CPU tracer's thread: {e}"))?;
        match rx.recv() {
            Ok(Ok(())) => Ok(OffCpu { shared, stop, thread: Some(thread) }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err("the off-CPU tracer's thread ended".into())
            }
        }
    }
}

impl Drop for OffCpu {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The loaded program: its links (dropped first: detached), its maps.
struct Loaded {
    _links: Vec<Link>,
    watched: libbpf_rs::MapHandle,
    intervals: libbpf_rs::MapHandle,
    lost: libbpf_rs::MapHandle,
    _obj: libbpf_rs::Object,
}

impl Loaded {
    /// Load and attach every program; if that fails, again without the
    /// page-fault program (`page_fault_user` is x86's tracepoint), saying
    /// so: the rest is worth having.
    fn load() -> Result<Loaded, String> {
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            return Err("the kernel has no BTF (/sys/kernel/btf/vmlinux)".into());
        }
        match Loaded::load_with(true) {
            Ok(l) => Ok(l),
            Err(all) => {
                let l = Loaded::load_with(false).map_err(|_| all.clone())?;
                crate::log_warn!("off-CPU tracer: page faults are not traced ({all})");
                Ok(l)
            }
        }
    }

    fn load_with(faults: bool) -> Result<Loaded, String> {
        let err = |what: &str, e: libbpf_rs::Error| format!("{what}: {e}");
        let mut open = ObjectBuilder::default().open_memory(OBJECT).map_err(|e| err("opening the program", e))?;
        let what = "the off-CPU program";
        set_rodata(&mut open, what, |ro| put(ro, std::mem::offset_of!(Rodata, min_ns), &MIN_NS.to_ne_bytes(), what))?;
        if !faults {
            for mut p in open.progs_mut().filter(|p| p.name() == FAULT_PROG) {
                p.set_autoload(false);
            }
        }
        // Quietly: the caller says in one line why it failed.
        let print = libbpf_rs::set_print(None);
        let obj = open.load();
        libbpf_rs::set_print(print);
        let obj = obj.map_err(|e| err("loading (needs CAP_BPF and CAP_PERFMON, or root)", e))?;
        let mut links = Vec::new();
        for p in obj.progs_mut().filter(|p| faults || p.name() != FAULT_PROG) {
            let name = p.name().to_string_lossy().into_owned();
            links.push(p.attach().map_err(|e| err(&format!("attaching {name}"), e))?);
        }
        let map = |name: &str| -> Result<libbpf_rs::MapHandle, String> {
            let m = obj.maps().find(|m| m.name() == name).ok_or(format!("the program has no map {name}"))?;
            libbpf_rs::MapHandle::try_from(&m).map_err(|e| err(&format!("opening map {name}"), e))
        };
        let (watched, intervals, lost) = (map("watched")?, map("intervals")?, map("lost")?);
        Ok(Loaded { _links: links, watched, intervals, lost, _obj: obj })
    }
}

/// The page-fault program, the one that may be left out.
const FAULT_PROG: &str = "tg_fault";

/// The thread: watch the loops' threads as they tell them, read the ring
/// buffer and the steal time every [`EVERY`], until `stop`.
fn run(l: Loaded, shared: &Arc<Shared>, stop: &AtomicBool) {
    let sh = shared.clone();
    let mut rb = RingBufferBuilder::new();
    let added = rb.add(&l.intervals, move |b: &[u8]| {
        if let Some(i) = Interval::from_wire(b) {
            sh.stats.intervals.fetch_add(1, Ordering::Relaxed);
            sh.stats.ns[i.what as usize].fetch_add(i.len_ns(), Ordering::Relaxed);
            // A blocking loop sleeps between messages: only a long sleep is
            // worth a record of the sample log (it would crowd messages out).
            if i.what != What::Blocked || i.len_ns() >= BLOCKED_KEPT_NS {
                sh.put(i.to_sample());
            }
        }
        0
    });
    let built = match added {
        Ok(_) => rb.build(),
        Err(e) => Err(e),
    };
    let ring = match built {
        Ok(r) => r,
        Err(e) => {
            crate::log_warn!("off-CPU tracer: reading its ring buffer: {e}: no intervals");
            return;
        }
    };
    let mut watched = 0;
    let mut ring_lost_seen = 0;
    let mut turn = 0u32;
    let mut steal = steal::Steal::default();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if let Ok(t) = shared.threads.lock() {
            for &(tid, core) in &t[watched..] {
                if let Err(e) = l.watched.update(&tid.to_ne_bytes(), &[1u8], MapFlags::ANY) {
                    crate::log_warn!("off-CPU tracer: watching thread {tid}: {e}");
                }
                if let Some(c) = core {
                    steal.watch(c);
                }
            }
            watched = t.len();
        }
        let _ = ring.consume();
        // /proc/stat costs tens of microseconds to make (the kernel walks
        // every CPU and IRQ): every other turn. Its steal counts in 10 ms
        // ticks anyway.
        turn += 1;
        if turn % STEAL_EVERY == 0 || stopping {
            for i in steal.read(crate::clock::mono_ns()) {
                shared.stats.ns[What::Steal as usize].fetch_add(i.id, Ordering::Relaxed);
                shared.put(i.to_sample());
            }
        }
        let lost = percpu_sum(&l.lost, 0);
        if lost > ring_lost_seen {
            shared.stats.dropped.fetch_add(lost - ring_lost_seen, Ordering::Relaxed);
            ring_lost_seen = lost;
        }
        if stopping {
            break;
        }
        std::thread::sleep(EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root: a thread that sleeps shows blocked intervals, and one that
    /// spins beside a competing thread on its core shows preemptions that
    /// name the competitor.
    #[test]
    fn a_competitor_on_the_watched_threads_core_is_named() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: the off-CPU tracer needs root");
            return;
        }
        let t = OffCpu::start(vec![], None).expect("the off-CPU tracer loads as root");
        let core = rustix::thread::sched_getcpu();
        crate::runtime::pin_to_core(core).unwrap();
        t.shared.watch(rustix::thread::gettid().as_raw_nonzero().get() as u32, Some(core));
        // The tracer watches it from its next turn (every 50 ms).
        std::thread::sleep(EVERY * 3);
        std::thread::sleep(Duration::from_millis(5));
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let hog = std::thread::Builder::new()
            .name("tg-test-hog".into())
            .spawn(move || {
                crate::runtime::pin_to_core(core).unwrap();
                while !s.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
            .unwrap();
        let until = crate::clock::mono_ns() + 300_000_000;
        while crate::clock::mono_ns() < until {
            std::hint::spin_loop();
        }
        stop.store(true, Ordering::Relaxed);
        hog.join().unwrap();
        std::thread::sleep(EVERY * 3); // drained
        let mut got = Vec::new();
        t.shared.take(&mut got);
        let iv: Vec<Interval> = got.iter().filter_map(Interval::from_sample).collect();
        assert!(iv.iter().any(|i| i.what == What::Blocked && i.len_ns() >= 4_000_000), "{iv:?}");
        let by_hog = iv.iter().filter(|i| i.what == What::Preempted && i.describe() == "preempted by tg-test-hog");
        assert!(by_hog.count() >= 3, "{:?}", iv.iter().map(|i| (i.describe(), i.len_ns())).collect::<Vec<_>>());
    }
}
