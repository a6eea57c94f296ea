//! What both eBPF programs' loaders do with libbpf-rs objects: write the
//! read-only data before load, and sum a per-CPU counter.

use libbpf_rs::{MapCore, MapFlags, OpenObject};

/// Set the object's read-only data (`volatile const` settings) before
/// load, through `set`. `what` names the program in errors.
pub fn set_rodata(
    open: &mut OpenObject,
    what: &str,
    set: impl FnOnce(&mut [u8]) -> Result<(), String>,
) -> Result<(), String> {
    let mut map = open
        .maps_mut()
        .find(|m| m.name().to_string_lossy().ends_with(".rodata"))
        .ok_or(format!("{what} has no read-only data"))?;
    set(map.initial_value_mut().ok_or(format!("{what}'s read-only data is not writable"))?)
}

/// Write `v` at `offset` of read-only data `ro` (`what` names the program).
pub fn put(ro: &mut [u8], offset: usize, v: &[u8], what: &str) -> Result<(), String> {
    let len = ro.len();
    ro.get_mut(offset..offset + v.len())
        .ok_or_else(|| format!("{what}'s read-only data is {len} bytes, too short"))?
        .copy_from_slice(v);
    Ok(())
}

/// A per-CPU array's u64 at `key`, summed over CPUs (0 if unreadable).
pub fn percpu_sum(map: &impl MapCore, key: u32) -> u64 {
    match map.lookup_percpu(&key.to_ne_bytes(), MapFlags::ANY) {
        Ok(Some(per_cpu)) => {
            per_cpu.iter().filter_map(|b| b.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_ne_bytes)).sum()
        }
        _ => 0,
    }
}
