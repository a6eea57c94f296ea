//! Process-level runtime pieces: core pinning and clean shutdown on signals.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Pin the calling thread to `core`. Fails with a message naming the flag
/// if the core does not exist or the kernel refuses.
pub fn pin_to_core(core: usize) -> Result<(), String> {
    let ids = core_affinity::get_core_ids().ok_or("--core: cannot read the CPU list")?;
    let Some(id) = ids.iter().find(|c| c.id == core) else {
        let avail: Vec<String> = ids.iter().map(|c| c.id.to_string()).collect();
        return Err(format!("--core {core}: no such CPU (available: {})", avail.join(",")));
    };
    if core_affinity::set_for_current(*id) {
        Ok(())
    } else {
        Err(format!("--core {core}: sched_setaffinity refused"))
    }
}

/// Is `core` listed in /sys/devices/system/cpu/isolated?
pub fn core_isolated(core: usize) -> bool {
    std::fs::read_to_string("/sys/devices/system/cpu/isolated")
        .map(|s| parse_cpu_list(s.trim()).contains(&core))
        .unwrap_or(false)
}

/// Parse a kernel CPU list such as `1,3-5`. Bad items are skipped.
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    v.extend(a..=b.min(a + 4096));
                }
            }
            None => {
                if let Ok(a) = part.parse() {
                    v.push(a);
                }
            }
        }
    }
    v
}

/// CPUs online, from /sys (not `available_parallelism`, which counts only
/// the CPUs this thread may use: one, when it inherited the loop's pinning).
pub fn online_cpus() -> Vec<usize> {
    parse_cpu_list(std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default().trim())
}

/// Place a helper thread on `pin` if given, else on any CPU but the
/// loops' `cores` (when the machine has another).
pub fn place_helper_off(cores: &[usize], pin: Option<usize>, who: &str) {
    if pin.is_some() || cores.len() <= 1 {
        return place_helper((cores.first().copied(), pin), who);
    }
    let cpus: Vec<usize> =
        online_cpus().into_iter().filter(|c| !cores.contains(c) && *c < rustix::thread::CpuSet::MAX_CPU).collect();
    if cpus.is_empty() {
        crate::log_warn!("{who}: no CPU but the loops' online; it shares their cores");
        return;
    }
    let mut set = rustix::thread::CpuSet::new();
    for c in cpus {
        set.set(c);
    }
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        crate::log_warn!("{who}: cannot keep off the loops' cores: {e}");
    }
}

/// Place a helper thread (the reporter, the capture writer), named `who` in
/// warnings: on `place.1` if given, else off the loop's core `place.0` (when
/// the machine has another CPU).
pub fn place_helper(place: (Option<usize>, Option<usize>), who: &str) {
    if let Some(c) = place.1 {
        // Not runtime::pin_to_core: its CPU list is this thread's inherited
        // affinity, which is the loop's core alone.
        let mut set = rustix::thread::CpuSet::new();
        set.set(c);
        if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
            crate::log_warn!("{who}: cannot pin to --reporter-core {c}: {e}");
        }
        return;
    }
    let Some(core) = place.0 else { return };
    let cpus: Vec<usize> = crate::runtime::online_cpus()
        .into_iter()
        .filter(|&c| c != core && c < rustix::thread::CpuSet::MAX_CPU)
        .collect();
    if cpus.is_empty() {
        crate::log_warn!("{who}: no CPU other than {core} online; it shares the loop's core");
        return;
    }
    let mut set = rustix::thread::CpuSet::new();
    for c in cpus {
        set.set(c);
    }
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        crate::log_warn!("{who}: cannot keep off core {core}: {e}");
    }
}

/// Raise the soft limit on open files to the hard limit, so thousands of
/// connections do not fail on a host's default of 1024. Returns the limit
/// now in force.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
    getrlimit(Resource::Nofile).current
}

/// Ask the kernel to keep every CPU out of C-states with an exit latency
/// above 0 us, for as long as the returned file stays open (the PM QoS
/// interface: the request is dropped when the file is closed, including at
/// exit). `None`, with one log line, when the process may not.
pub fn hold_cpu_dma_latency_zero() -> Option<std::fs::File> {
    use std::io::Write;
    let path = "/dev/cpu_dma_latency";
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(mut f) => match f.write_all(&0i32.to_ne_bytes()) {
            Ok(()) => {
                crate::log_info!("holding {path} at 0 us until exit (--cpu-dma-latency off to leave it)");
                Some(f)
            }
            Err(e) => {
                crate::log_warn!("{path}: cannot write 0: {e}; C-state exits may add latency");
                None
            }
        },
        Err(e) => {
            crate::log_info!("{path}: {e}; C-states are left as they are");
            None
        }
    }
}

/// A flag set by SIGINT or SIGTERM.
pub fn stop_flag() -> std::io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, flag.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, flag.clone())?;
    Ok(flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("1,3-5"), vec![1, 3, 4, 5]);
        assert_eq!(parse_cpu_list(""), Vec::<usize>::new());
        assert_eq!(parse_cpu_list("x,2"), vec![2]);
    }

    #[test]
    fn pin_rejects_missing_core() {
        let e = pin_to_core(100_000).unwrap_err();
        assert!(e.contains("--core 100000"), "{e}");
    }
}
