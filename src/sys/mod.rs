//! Thin wrappers over system calls and intrinsics the standard library and
//! our dependencies do not offer, in the manner of mio's `sys`. With the
//! AF_XDP socket (`backend::xdp::xsk`) and the sampler ring, the only code
//! that opts out of `deny(unsafe_code)`; every unsafe block says why it is
//! sound, and every function here is safe to call.
//!
//! * [`net`]: interface index by name, the kernel's IPv4 addresses on it;
//! * [`ethtool`]: the NIC's RSS key, indirection table and hashed fields;
//! * [`rxts`]: `recvmsg` with the kernel's receive timestamp (control messages);
//! * [`txack`]: the kernel's reports of the peer's ACKs (`SO_TIMESTAMPING`, error queue);
//! * [`tsc`]: the CPU's time-stamp counter;
//! * [`map_file`]: a shared writable mapping of a file (the sample log, the journal, the FIX state);
//! * `skel`: the XDP program's generated skeleton (its read-only data layout).

#![allow(unsafe_code)]

pub mod arena;
pub mod bpfobj;
pub mod ethtool;
pub mod net;
pub mod rxts;
pub mod txack;

use std::fs::File;
use std::io;

use memmap2::MmapMut;

/// Turn `-1` into the OS error, in the manner of mio's `syscall!`.
pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The time-stamp counter (0 where there is none).
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn tsc() -> u64 {
    // SAFETY: rdtsc reads a counter; it has no memory effects and is
    // available on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The time-stamp counter (0 where there is none).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub fn tsc() -> u64 {
    0
}

/// Map `f` shared and writable, for its current length.
///
/// The caller must own the file's contents: memmap2 makes mapping a file
/// unsafe because another process may change it under the mapping. The
/// sample log uses this (the reporter created and truncated the file, and
/// readers tolerate torn records), and the FIX sessions' state file (made
/// mode 0600 by this user, locked, its blocks reserved, its contents
/// checked before use: `fix::slots`).
pub fn map_file(f: &File) -> io::Result<MmapMut> {
    // SAFETY: see above: the file is ours (made by us, or locked and checked
    // by us); other processes only read it.
    unsafe { MmapMut::map_mut(f) }
}

/// Map `f` shared and writable, for its current length, with every page
/// faulted in now (`MAP_POPULATE`): whoever writes it later takes no page
/// fault. The same ownership rule as [`map_file`] (the journal: each
/// segment is created by the gateway with `O_EXCL`).
pub fn map_file_populated(f: &File) -> io::Result<MmapMut> {
    // SAFETY: as in `map_file`: the file is ours, freshly created.
    unsafe { memmap2::MmapOptions::new().populate().map_mut(f) }
}

/// Reserve `len` bytes of disk for `f` (`fallocate`, mode 0): a later store
/// into a shared mapping of it never finds the disk full (no SIGBUS), and no
/// data is written now.
pub fn allocate(f: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = i64::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a plain system call on a file descriptor `f` owns; no memory
    // is passed.
    cvt(unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len) }).map(|_| ())
}

/// Write `f`'s bytes `[0, len)` to disk and wait for them
/// (`sync_file_range` with WAIT_BEFORE, WRITE and WAIT_AFTER): the journal
/// syncs the pages its loop has finished with, never the one it is
/// writing, so the loop never waits for a page under writeback. No
/// metadata is written: the journal's blocks were all written beforehand.
pub fn sync_range(f: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    let len = i64::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a plain system call on a file descriptor `f` owns; no memory
    // is passed.
    cvt(unsafe { libc::sync_file_range(f.as_raw_fd(), 0, len, flags) }).map(|_| ())
}

/// A skeleton libbpf-cargo generates (build.rs), used for the layout of
/// its program's read-only data only (`types::rodata`, from the object's
/// BTF). Generated code, with unsafe of its own.
macro_rules! skeleton {
    ($(#[$doc:meta])* $name:ident, $file:literal) => {
        $(#[$doc])*
        #[allow(
            dead_code,
            unsafe_op_in_unsafe_fn,
            clippy::all,
            clippy::pedantic,
            clippy::undocumented_unsafe_blocks,
            missing_docs,
            non_camel_case_types
        )]
        pub(crate) mod $name {
            include!(concat!(env!("OUT_DIR"), "/", $file));
        }
    };
}

skeleton!(
    /// bpf/redirect.bpf.c, the XDP program.
    skel,
    "redirect.skel.rs"
);
skeleton!(
    /// bpf/offcpu.bpf.c, the off-CPU trace.
    offcpu_skel,
    "offcpu.skel.rs"
);
