//! The rings an AF_XDP socket shares with the kernel: fill, completion, rx
//! and tx, each a single-producer single-consumer ring in a mapping of the
//! socket.

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// A memory mapping of one ring, unmapped on drop.
pub(super) struct RingMap {
    ptr: NonNull<u8>,
    len: usize,
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned in `RingMap::new`,
        // and nothing borrows the mapping past the owning ring's lifetime.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

impl RingMap {
    pub(super) fn new(fd: RawFd, len: usize, pgoff: i64) -> io::Result<Self> {
        // SAFETY: a fresh shared mapping of the socket's ring at the offset
        // the kernel defines for it; the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(RingMap { ptr, len })
    }
}

/// One single-producer single-consumer ring shared with the kernel.
///
/// For a ring we produce into (fill, tx), `producer` is ours and `consumer`
/// the kernel's; for one we consume (rx, completion), the other way round.
/// Our index is published with Release (pairs with the kernel's
/// smp_load_acquire); the kernel's is read with Acquire (pairs with its
/// smp_store_release), so descriptor contents are visible in both directions.
pub(super) struct Ring<T> {
    producer: *const AtomicU32,
    pub(super) consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    mask: u32,
    pub(super) size: u32,
    /// Our cached copy of our own index.
    pub(super) local: u32,
    /// Our cached copy of the kernel's index.
    pub(super) remote: u32,
    _map: RingMap,
}

impl<T: Copy> Ring<T> {
    /// # Safety
    /// `map` must be the mapping of a ring with `size` entries of `T`, with
    /// the offsets `off` the kernel reported for it.
    pub(super) unsafe fn new(map: RingMap, off: &libc::xdp_ring_offset, size: u32) -> Self {
        let base = map.ptr.as_ptr();
        // SAFETY: the kernel reported these offsets for this mapping, which is
        // `off.desc + size * size_of::<T>()` bytes long (caller's contract).
        unsafe {
            Ring {
                producer: base.add(off.producer as usize).cast(),
                consumer: base.add(off.consumer as usize).cast(),
                flags: base.add(off.flags as usize).cast(),
                descs: base.add(off.desc as usize).cast(),
                mask: size - 1,
                size,
                local: 0,
                remote: 0,
                _map: map,
            }
        }
    }

    pub(super) fn load(p: *const AtomicU32) -> u32 {
        // SAFETY: `p` points into the live mapping owned by this ring, aligned
        // by the kernel; the kernel only ever accesses it atomically.
        unsafe { (*p).load(Ordering::Acquire) }
    }

    fn store(p: *const AtomicU32, v: u32) {
        // SAFETY: as in `load`.
        unsafe { (*p).store(v, Ordering::Release) }
    }

    pub(super) fn needs_wakeup(&self) -> bool {
        // SAFETY: as in `load`.
        unsafe { (*self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0 }
    }

    // --- producer side (fill, tx) ---

    /// Free slots we may produce into.
    /// Descriptors published that the kernel has not consumed yet (reads
    /// the consumer index afresh).
    pub(super) fn prod_outstanding(&mut self) -> u32 {
        self.remote = Self::load(self.consumer);
        self.local.wrapping_sub(self.remote)
    }

    pub(super) fn prod_free(&mut self) -> u32 {
        let free = self.size - self.local.wrapping_sub(self.remote);
        if free > 0 {
            return free;
        }
        self.remote = Self::load(self.consumer);
        self.size - self.local.wrapping_sub(self.remote)
    }

    /// Write one descriptor; caller checked `prod_free() > 0`.
    pub(super) fn prod_write(&mut self, v: T) {
        let i = (self.local & self.mask) as usize;
        // SAFETY: i < size; the slot is free (not yet consumed by the kernel
        // would mean local - remote == size, excluded by prod_free).
        unsafe { self.descs.add(i).write(v) };
        self.local = self.local.wrapping_add(1);
    }

    pub(super) fn prod_publish(&mut self) {
        Self::store(self.producer, self.local);
    }

    // --- consumer side (rx, completion) ---

    pub(super) fn cons_avail(&mut self) -> u32 {
        let avail = self.remote.wrapping_sub(self.local);
        if avail > 0 {
            return avail;
        }
        self.remote = Self::load(self.producer);
        self.remote.wrapping_sub(self.local)
    }

    /// Read one descriptor; caller checked `cons_avail() > 0`.
    pub(super) fn cons_read(&mut self) -> T {
        let i = (self.local & self.mask) as usize;
        // SAFETY: i < size; the kernel published this slot (Acquire above).
        let v = unsafe { self.descs.add(i).read() };
        self.local = self.local.wrapping_add(1);
        v
    }

    pub(super) fn cons_release(&mut self) {
        Self::store(self.consumer, self.local);
    }
}
