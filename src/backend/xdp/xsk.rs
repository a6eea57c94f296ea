//! The AF_XDP socket: UMEM, and the fill / completion / rx / tx rings mapped
//! from the kernel. The only module (with the sampler ring, later) that opts
//! out of `deny(unsafe_code)`; every unsafe block says why it is sound.
//!
//! Frame ownership: a UMEM frame is named by its offset (`addr`). At any time
//! each frame is in exactly one place: the fill ring (kernel owns it), the rx
//! ring (delivered, ours until recycled), our TX free list, the tx ring
//! (kernel owns it) or the completion ring (returned). [`Frame`] is not
//! `Copy`; handing one to the kernel consumes it.
//!
//! Drop order: the socket fd is closed first (the kernel stops touching the
//! rings and the UMEM), then the ring mappings, then the UMEM. Fields are
//! declared in that order.

#![allow(unsafe_code)]

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::{MmapMut, MmapOptions};

/// Socket options missing from the libc crate (include/uapi/asm-generic/socket.h).
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

/// Turn `-1` into the OS error, in the manner of mio's `syscall!`.
fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The interface's index, or a clear error naming it.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("--iface {name:?}: contains a NUL byte")))?;
    // SAFETY: `c` is a valid NUL-terminated string for the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("--iface {name}: no such interface")));
    }
    Ok(i)
}

/// The IPv4 addresses the kernel has on interface `name`.
pub fn kernel_ipv4_addrs(name: &str) -> io::Result<Vec<std::net::Ipv4Addr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    cvt(unsafe { libc::getifaddrs(&mut head) })?;
    let mut out = Vec::new();
    let mut p = head;
    while !p.is_null() {
        // SAFETY: `p` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*p };
        if !ifa.ifa_addr.is_null() && !ifa.ifa_name.is_null() {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            let n = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
            // SAFETY: ifa_addr is non-null and points at a sockaddr.
            let family = unsafe { (*ifa.ifa_addr).sa_family } as libc::c_int;
            if n.to_bytes() == name.as_bytes() && family == libc::AF_INET {
                // SAFETY: family AF_INET means the sockaddr is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
        }
        p = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// A UMEM frame, by offset. Not `Copy`: giving it to a ring consumes it.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame(u64);

/// Validated socket configuration.
#[derive(Debug, Clone, Copy)]
pub struct XskConfig {
    /// Frame size in bytes: a power of two, 2048 or 4096.
    pub frame_size: u32,
    /// Number of frames in the UMEM: a power of two.
    pub frames: u32,
    /// Entries in each ring: a power of two, at most `frames / 2`.
    pub ring_size: u32,
    pub queue: u32,
    pub zero_copy: ZeroCopy,
    /// SO_BUSY_POLL microseconds (0: do not set).
    pub busy_poll_us: u32,
    /// SO_BUSY_POLL_BUDGET packets.
    pub busy_poll_budget: u32,
}

/// Zero-copy policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroCopy {
    /// Try zero-copy, fall back to copy mode.
    Auto,
    /// Copy mode only.
    Off,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            frame_size: 2048,
            frames: 8192,
            ring_size: 2048,
            queue: 0,
            zero_copy: ZeroCopy::Auto,
            busy_poll_us: 20,
            busy_poll_budget: 64,
        }
    }
}

impl XskConfig {
    /// Check every constraint the kernel would otherwise report as EINVAL.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.frame_size == 2048 || self.frame_size == 4096) {
            return Err(format!("frame size {}: must be 2048 or 4096", self.frame_size));
        }
        if !self.frames.is_power_of_two() || self.frames < 64 {
            return Err(format!("frame count {}: must be a power of two >= 64", self.frames));
        }
        if !self.ring_size.is_power_of_two() || self.ring_size < 8 || self.ring_size > self.frames / 2 {
            return Err(format!(
                "ring size {}: must be a power of two between 8 and frames/2 ({})",
                self.ring_size,
                self.frames / 2
            ));
        }
        Ok(())
    }
}

/// A memory mapping of one ring, unmapped on drop.
struct RingMap {
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
    fn new(fd: RawFd, len: usize, pgoff: i64) -> io::Result<Self> {
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
struct Ring<T> {
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    mask: u32,
    size: u32,
    /// Our cached copy of our own index.
    local: u32,
    /// Our cached copy of the kernel's index.
    remote: u32,
    _map: RingMap,
}

impl<T: Copy> Ring<T> {
    /// # Safety
    /// `map` must be the mapping of a ring with `size` entries of `T`, with
    /// the offsets `off` the kernel reported for it.
    unsafe fn new(map: RingMap, off: &libc::xdp_ring_offset, size: u32) -> Self {
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

    fn load(p: *const AtomicU32) -> u32 {
        // SAFETY: `p` points into the live mapping owned by this ring, aligned
        // by the kernel; the kernel only ever accesses it atomically.
        unsafe { (*p).load(Ordering::Acquire) }
    }

    fn store(p: *const AtomicU32, v: u32) {
        // SAFETY: as in `load`.
        unsafe { (*p).store(v, Ordering::Release) }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: as in `load`.
        unsafe { (*self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0 }
    }

    // --- producer side (fill, tx) ---

    /// Free slots we may produce into.
    fn prod_free(&mut self) -> u32 {
        let free = self.size - self.local.wrapping_sub(self.remote);
        if free > 0 {
            return free;
        }
        self.remote = Self::load(self.consumer);
        self.size - self.local.wrapping_sub(self.remote)
    }

    /// Write one descriptor; caller checked `prod_free() > 0`.
    fn prod_write(&mut self, v: T) {
        let i = (self.local & self.mask) as usize;
        // SAFETY: i < size; the slot is free (not yet consumed by the kernel
        // would mean local - remote == size, excluded by prod_free).
        unsafe { self.descs.add(i).write(v) };
        self.local = self.local.wrapping_add(1);
    }

    fn prod_publish(&mut self) {
        Self::store(self.producer, self.local);
    }

    // --- consumer side (rx, completion) ---

    fn cons_avail(&mut self) -> u32 {
        let avail = self.remote.wrapping_sub(self.local);
        if avail > 0 {
            return avail;
        }
        self.remote = Self::load(self.producer);
        self.remote.wrapping_sub(self.local)
    }

    /// Read one descriptor; caller checked `cons_avail() > 0`.
    fn cons_read(&mut self) -> T {
        let i = (self.local & self.mask) as usize;
        // SAFETY: i < size; the kernel published this slot (Acquire above).
        let v = unsafe { self.descs.add(i).read() };
        self.local = self.local.wrapping_add(1);
        v
    }

    fn cons_release(&mut self) {
        Self::store(self.consumer, self.local);
    }
}

/// Mode the socket is bound in, as reported by XDP_OPTIONS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    ZeroCopy,
    Copy,
}

/// RX counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct RxStats {
    pub frames: u64,
    pub wakeups: u64,
    /// Fill ring had no room for a recycled frame (should stay 0).
    pub fill_full: u64,
    /// Times the kernel held fewer than 1/8 of the fill ring's entries.
    pub fill_low: u64,
    /// Busy-poll syscalls (see [`RxHalf::busy_poll`]).
    pub busy_polls: u64,
}

/// TX counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct TxStats {
    pub frames: u64,
    pub kicks: u64,
    /// TX wanted a frame or a ring slot and had none; the frame was dropped.
    pub starved: u64,
    /// Kicks the kernel answered EAGAIN/EBUSY (still busy with the last).
    pub kick_busy: u64,
}

/// The receive half: rx ring (frames in) and fill ring (frames back).
pub struct RxHalf {
    rx: Ring<libc::xdp_desc>,
    fill: Ring<u64>,
    fill_pending: u32,
    /// Frames the fill ring could not take; returned to it by `flush`.
    spill: Vec<u64>,
    fd: RawFd,
    pub stats: RxStats,
}

/// The transmit half: tx ring (frames out), completion ring (frames back),
/// and the free list of TX frames.
pub struct TxHalf {
    tx: Ring<libc::xdp_desc>,
    comp: Ring<u64>,
    free: Vec<u64>,
    pending: u32,
    fd: RawFd,
    always_kick: bool,
    pub stats: TxStats,
}

/// Where the UMEM is mapped (kept by [`Xsk`], which owns the mapping).
#[derive(Clone, Copy)]
struct UmemRaw {
    base: NonNull<u8>,
    len: usize,
    frame_size: usize,
}

/// A view of the UMEM for reading and writing frames we own. It borrows the
/// mapping (`'umem`), so neither it nor a slice it returns can outlive it.
#[derive(Clone, Copy)]
pub struct UmemView<'umem> {
    raw: UmemRaw,
    _umem: PhantomData<&'umem [u8]>,
}

impl<'umem> UmemView<'umem> {
    /// The byte range `[start, start + n)` of the first `len` bytes at `f`'s
    /// address, clamped to the end of `f`'s chunk: an RX address carries a
    /// headroom offset into its chunk, and the next chunk may be a frame
    /// that someone else holds.
    fn range(&self, f: &Frame, len: usize) -> (usize, usize) {
        let fs = self.raw.frame_size;
        let start = (f.0 as usize).min(self.raw.len);
        let chunk_end = (start / fs).saturating_add(1).saturating_mul(fs).min(self.raw.len);
        let end = start.saturating_add(len).min(chunk_end);
        (start, end - start)
    }

    /// The first `len` bytes of frame `f`, clamped to the end of its chunk.
    ///
    /// # Safety
    /// `f` must be owned by the caller: not in any ring, with no other live
    /// reference to the bytes of its chunk.
    pub unsafe fn bytes<'a>(&self, f: &'a Frame, len: usize) -> &'a [u8]
    where
        'umem: 'a,
    {
        let (start, n) = self.range(f, len);
        // SAFETY: [start, start + n) lies inside `f`'s chunk (clamped to the
        // chunk's end and to the mapping), which `'umem` keeps mapped for
        // 'a; the caller owns the chunk, so the kernel is not writing it and
        // no other reference aliases it.
        unsafe { std::slice::from_raw_parts(self.raw.base.as_ptr().add(start), n) }
    }

    /// The first `len` bytes of frame `f`, writable.
    ///
    /// # Safety
    /// As for [`UmemView::bytes`].
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn bytes_mut<'a>(&self, f: &'a mut Frame, len: usize) -> &'a mut [u8]
    where
        'umem: 'a,
    {
        let (start, n) = self.range(f, len);
        // SAFETY: as in `bytes`; `&mut Frame` makes this the only reference
        // to the chunk.
        unsafe { std::slice::from_raw_parts_mut(self.raw.base.as_ptr().add(start), n) }
    }

    pub fn frame_size(&self) -> usize {
        self.raw.frame_size
    }

    /// The arrival time the XDP program put in the metadata in front of
    /// received frame `f` (see bpf/redirect.bpf.c), if it did; the magic is
    /// cleared so a recycled frame never shows a stale time.
    ///
    /// # Safety
    /// As for [`UmemView::bytes`]: the caller owns `f`, and with it the
    /// headroom in front of its data in the same chunk.
    pub unsafe fn take_rx_meta(&self, f: &Frame) -> Option<u64> {
        let addr = f.0 as usize;
        if addr % self.raw.frame_size < META_LEN || addr > self.raw.len {
            return None;
        }
        // SAFETY: [addr - 16, addr) lies inside the chunk of `f` (checked
        // above) and inside the mapping; the caller owns that chunk.
        let m = unsafe { std::slice::from_raw_parts_mut(self.raw.base.as_ptr().add(addr - META_LEN), META_LEN) };
        if m[8..12] != META_MAGIC.to_ne_bytes() {
            return None;
        }
        m[8..12].fill(0);
        let mut t = [0u8; 8];
        t.copy_from_slice(&m[..8]);
        Some(u64::from_ne_bytes(t))
    }
}

/// `struct rx_meta` in bpf/redirect.bpf.c.
const META_LEN: usize = 16;
const META_MAGIC: u32 = 0x5447_4d31;

/// An AF_XDP socket bound to one queue of one interface.
pub struct Xsk {
    // Drop order matters: fd first (see module docs), then rings, then UMEM.
    fd: OwnedFd,
    pub rx: RxHalf,
    pub tx: TxHalf,
    umem: MmapMut,
    raw: UmemRaw,
    pub mode: BindMode,
    pub hugepages: bool,
    pub busy_poll: bool,
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a valid `T` for the duration of the call and the length
    // passed is its size.
    cvt(unsafe {
        libc::setsockopt(fd, level, name, (v as *const T).cast(), std::mem::size_of::<T>() as libc::socklen_t)
    })
    .map(|_| ())
}

impl Xsk {
    /// Create the socket, register a UMEM, map the rings and bind to
    /// `ifindex`/`cfg.queue`. Zero-copy is tried first when allowed.
    pub fn new(ifindex: u32, cfg: &XskConfig) -> io::Result<Xsk> {
        cfg.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let len = cfg.frames as usize * cfg.frame_size as usize;
        // 2 MiB hugepages when the host has them, normal pages otherwise.
        let (mut umem, hugepages) = match MmapOptions::new().len(len).huge(Some(21)).populate().map_anon() {
            Ok(m) => (m, true),
            Err(_) => (MmapOptions::new().len(len).populate().map_anon()?, false),
        };
        let raw = UmemRaw {
            base: NonNull::new(umem.as_mut_ptr()).ok_or_else(|| io::Error::other("UMEM mapping is null"))?,
            len,
            frame_size: cfg.frame_size as usize,
        };
        let modes: &[u16] = match cfg.zero_copy {
            ZeroCopy::Auto => &[libc::XDP_ZEROCOPY, libc::XDP_COPY],
            ZeroCopy::Off => &[libc::XDP_COPY],
        };
        let mut last_err = None;
        for &bind_flag in modes {
            match Self::open(ifindex, cfg, &umem, bind_flag) {
                Ok((fd, fill, comp, rx, tx, mode)) => {
                    let sock = fd.as_raw_fd();
                    let mut x = Xsk {
                        fd,
                        rx: RxHalf {
                            rx,
                            fill,
                            fill_pending: 0,
                            spill: Vec::new(),
                            fd: sock,
                            stats: RxStats::default(),
                        },
                        tx: TxHalf {
                            tx,
                            comp,
                            free: Vec::with_capacity(cfg.frames as usize),
                            pending: 0,
                            fd: sock,
                            always_kick: mode == BindMode::Copy,
                            stats: TxStats::default(),
                        },
                        umem,
                        raw,
                        mode,
                        hugepages,
                        busy_poll: false,
                    };
                    x.busy_poll = x.set_busy_poll(cfg);
                    x.prime(cfg);
                    return Ok(x);
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("no bind mode to try")))
    }

    #[allow(clippy::type_complexity)]
    fn open(
        ifindex: u32,
        cfg: &XskConfig,
        umem: &MmapMut,
        bind_flag: u16,
    ) -> io::Result<(OwnedFd, Ring<u64>, Ring<u64>, Ring<libc::xdp_desc>, Ring<libc::xdp_desc>, BindMode)> {
        // SAFETY: plain socket(2); the result is checked and owned at once.
        let raw = cvt(unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let reg = libc::xdp_umem_reg {
            addr: umem.as_ptr() as u64,
            len: umem.len() as u64,
            chunk_size: cfg.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(raw, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg)?;
        let n = cfg.ring_size;
        setsockopt(raw, libc::SOL_XDP, libc::XDP_UMEM_FILL_RING, &n)?;
        setsockopt(raw, libc::SOL_XDP, libc::XDP_UMEM_COMPLETION_RING, &n)?;
        setsockopt(raw, libc::SOL_XDP, libc::XDP_RX_RING, &n)?;
        setsockopt(raw, libc::SOL_XDP, libc::XDP_TX_RING, &n)?;

        // SAFETY: all-zero is a valid xdp_mmap_offsets (plain integers).
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut optlen = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: `off` is writable for `optlen` bytes.
        cvt(unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                &mut optlen,
            )
        })?;
        let d = std::mem::size_of::<libc::xdp_desc>();
        let a = std::mem::size_of::<u64>();
        let sz = |o: &libc::xdp_ring_offset, e: usize| o.desc as usize + n as usize * e;
        let rx_map = RingMap::new(raw, sz(&off.rx, d), libc::XDP_PGOFF_RX_RING)?;
        let tx_map = RingMap::new(raw, sz(&off.tx, d), libc::XDP_PGOFF_TX_RING)?;
        let fill_map = RingMap::new(raw, sz(&off.fr, a), libc::XDP_UMEM_PGOFF_FILL_RING as i64)?;
        let comp_map = RingMap::new(raw, sz(&off.cr, a), libc::XDP_UMEM_PGOFF_COMPLETION_RING as i64)?;
        // SAFETY: each map was created for its ring with n entries of the
        // matching descriptor type, at the offsets the kernel just reported.
        let (rx, tx, fill, comp) = unsafe {
            (
                Ring::new(rx_map, &off.rx, n),
                Ring::new(tx_map, &off.tx, n),
                Ring::new(fill_map, &off.fr, n),
                Ring::new(comp_map, &off.cr, n),
            )
        };

        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: bind_flag | libc::XDP_USE_NEED_WAKEUP,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: cfg.queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `sa` is a valid sockaddr_xdp and the length is its size.
        cvt(unsafe {
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        })?;
        // The mode actually in use.
        // SAFETY: all-zero is a valid xdp_options.
        let mut opts: libc::xdp_options = unsafe { std::mem::zeroed() };
        let mut optlen = std::mem::size_of::<libc::xdp_options>() as libc::socklen_t;
        // SAFETY: `opts` is writable for `optlen` bytes.
        let r = unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_OPTIONS,
                (&mut opts as *mut libc::xdp_options).cast(),
                &mut optlen,
            )
        };
        let mode =
            if r == 0 && opts.flags & libc::XDP_OPTIONS_ZEROCOPY != 0 { BindMode::ZeroCopy } else { BindMode::Copy };
        Ok((fd, fill, comp, rx, tx, mode))
    }

    fn set_busy_poll(&self, cfg: &XskConfig) -> bool {
        if cfg.busy_poll_us == 0 {
            return false;
        }
        let fd = self.fd.as_raw_fd();
        let one: libc::c_int = 1;
        let us = cfg.busy_poll_us as libc::c_int;
        let budget = cfg.busy_poll_budget as libc::c_int;
        setsockopt(fd, libc::SOL_SOCKET, SO_PREFER_BUSY_POLL, &one).is_ok()
            && setsockopt(fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL, &us).is_ok()
            && setsockopt(fd, libc::SOL_SOCKET, SO_BUSY_POLL_BUDGET, &budget).is_ok()
    }

    /// Give half the frames to the fill ring (up to its size) and keep the rest for TX.
    fn prime(&mut self, cfg: &XskConfig) {
        let frames = cfg.frames as u64;
        let fs = cfg.frame_size as u64;
        let to_fill = (frames / 2).min(cfg.ring_size as u64);
        for i in 0..frames {
            if i < to_fill && self.rx.fill.prod_free() > 0 {
                self.rx.fill.prod_write(i * fs);
            } else {
                self.tx.free.push(i * fs);
            }
        }
        self.rx.fill.prod_publish();
        let _ = &self.umem;
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The UMEM view, borrowing the mapping.
    pub fn view(&self) -> UmemView<'_> {
        UmemView { raw: self.raw, _umem: PhantomData }
    }

    /// Both halves and the UMEM view at once (the smoltcp device needs all three).
    pub fn split(&mut self) -> (&mut RxHalf, &mut TxHalf, UmemView<'_>) {
        (&mut self.rx, &mut self.tx, UmemView { raw: self.raw, _umem: PhantomData })
    }
}

impl RxHalf {
    /// Take the next received frame, if any: `(frame, len)`.
    pub fn take(&mut self) -> Option<(Frame, usize)> {
        if self.rx.cons_avail() == 0 {
            return None;
        }
        let d = self.rx.cons_read();
        self.rx.cons_release();
        self.stats.frames += 1;
        Some((Frame(d.addr), d.len as usize))
    }

    /// Return a received frame to the kernel (fill ring). Published in
    /// batches by [`RxHalf::flush`].
    pub fn recycle(&mut self, f: Frame) {
        if self.fill.prod_free() > 0 {
            self.fill.prod_write(f.0);
            self.fill_pending += 1;
        } else {
            // Should not happen: the fill ring holds at most as many frames
            // as were taken from it. Park the frame; `flush` returns it.
            self.stats.fill_full += 1;
            self.spill.push(f.0);
        }
    }

    pub fn flush(&mut self) {
        // Frames the fill ring could not take earlier go back when it can.
        while !self.spill.is_empty() && self.fill.prod_free() > 0 {
            if let Some(a) = self.spill.pop() {
                self.fill.prod_write(a);
                self.fill_pending += 1;
            }
        }
        if self.fill_pending > 0 {
            self.fill.prod_publish();
            self.fill_pending = 0;
        }
    }

    /// Is the fill ring running low: does the kernel hold fewer than 1/8 of
    /// its entries to receive into? (One load of the kernel's index.)
    pub fn fill_low(&mut self) -> bool {
        self.fill.remote = Ring::<u64>::load(self.fill.consumer);
        let held = self.fill.local.wrapping_sub(self.fill.remote);
        let low = held < self.fill.size / 8;
        if low {
            self.stats.fill_low += 1;
        }
        low
    }

    /// Is a received frame waiting on the rx ring?
    pub fn has_frames(&mut self) -> bool {
        self.rx.cons_avail() > 0
    }

    /// If the kernel asks for a wakeup on the fill ring, give it one
    /// (a zero-timeout poll), so RX keeps flowing.
    pub fn wake_if_needed(&mut self) {
        if self.fill.needs_wakeup() {
            self.stats.wakeups += 1;
            self.wait(0);
        }
    }

    /// Busy-poll the device queue from this thread: a non-blocking
    /// `recvfrom` on the socket, which runs the queue's NAPI here when the
    /// socket has SO_BUSY_POLL. Needed when the interface defers its IRQs
    /// (napi_defer_hard_irqs): the kernel then waits for the application to
    /// poll, up to gro_flush_timeout.
    pub fn busy_poll(&mut self) {
        self.stats.busy_polls += 1;
        // SAFETY: recvfrom with no buffer on our own socket; the result (and
        // EAGAIN) is ignored: frames, if any, appear on the rx ring.
        unsafe {
            libc::recvfrom(
                self.fd,
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    }

    /// Sleep in poll(2) until RX has a frame or `timeout_ms` passes.
    pub fn wait(&mut self, timeout_ms: i32) {
        let mut p = libc::pollfd { fd: self.fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd on our own socket.
        unsafe {
            libc::poll(&mut p, 1, timeout_ms);
        }
    }
}

impl TxHalf {
    /// A free frame for TX.
    pub fn alloc(&mut self) -> Option<Frame> {
        if self.free.is_empty() {
            self.reap();
        }
        match self.free.pop() {
            Some(a) => Some(Frame(a)),
            None => {
                self.stats.starved += 1;
                None
            }
        }
    }

    /// Give a frame back unused.
    pub fn free(&mut self, f: Frame) {
        self.free.push(f.0);
    }

    /// Queue `len` bytes of `f` for transmission; sent at the next [`TxHalf::kick`].
    pub fn submit(&mut self, f: Frame, len: usize) {
        if self.tx.prod_free() == 0 {
            self.kick();
            self.reap();
        }
        if self.tx.prod_free() == 0 {
            // The kernel is not draining: drop this frame (TCP retransmits).
            self.free.push(f.0);
            self.stats.starved += 1;
            return;
        }
        self.tx.prod_write(libc::xdp_desc { addr: f.0, len: len as u32, options: 0 });
        self.pending += 1;
        self.stats.frames += 1;
    }

    /// Publish queued descriptors and wake the kernel when it asks (in copy
    /// mode it always must: one sendto per batch).
    pub fn kick(&mut self) {
        if self.pending == 0 {
            return;
        }
        self.tx.prod_publish();
        self.pending = 0;
        if self.always_kick || self.tx.needs_wakeup() {
            self.stats.kicks += 1;
            // SAFETY: sendto with no buffer on our own socket; EAGAIN/EBUSY
            // mean the kernel is still working and are retried next kick.
            let r = unsafe { libc::sendto(self.fd, std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0) };
            if r < 0 {
                let e = io::Error::last_os_error().raw_os_error();
                if e == Some(libc::EAGAIN) || e == Some(libc::EBUSY) {
                    self.stats.kick_busy += 1;
                }
            }
        }
    }

    /// Move completed TX frames back to the free list.
    pub fn reap(&mut self) {
        let n = self.comp.cons_avail();
        for _ in 0..n {
            let a = self.comp.cons_read();
            self.free.push(a);
        }
        if n > 0 {
            self.comp.cons_release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_names_the_value() {
        assert!(XskConfig::default().validate().is_ok());
        let e = XskConfig { frame_size: 1500, ..Default::default() }.validate().unwrap_err();
        assert!(e.contains("1500"), "{e}");
        let e = XskConfig { frames: 1000, ..Default::default() }.validate().unwrap_err();
        assert!(e.contains("1000"), "{e}");
        let e = XskConfig { ring_size: 8192, frames: 8192, ..Default::default() }.validate().unwrap_err();
        assert!(e.contains("8192"), "{e}");
        let e = XskConfig { ring_size: 3, ..Default::default() }.validate().unwrap_err();
        assert!(e.contains('3'), "{e}");
    }

    /// Regression: an RX address carries a headroom offset into its chunk;
    /// a slice of `len` bytes from there ran into the next chunk (possibly a
    /// TX frame held `&mut`). It now ends at the chunk's end.
    #[test]
    fn a_frame_slice_never_leaves_its_chunk() {
        let mut m = MmapOptions::new().len(4 * 2048).map_anon().unwrap();
        let raw = UmemRaw { base: NonNull::new(m.as_mut_ptr()).unwrap(), len: m.len(), frame_size: 2048 };
        let view = UmemView { raw, _umem: PhantomData::<&[u8]> };
        // A frame at headroom 256 in chunk 1, asked for 2048 bytes.
        assert_eq!(view.range(&Frame(2048 + 256), 2048), (2048 + 256, 2048 - 256));
        assert_eq!(view.range(&Frame(2048 + 256), 100), (2048 + 256, 100));
        // The last chunk ends at the mapping's end; past it, nothing.
        assert_eq!(view.range(&Frame(3 * 2048 + 16), 4096), (3 * 2048 + 16, 2048 - 16));
        assert_eq!(view.range(&Frame(4 * 2048), 64).1, 0);
        assert_eq!(view.range(&Frame(u64::MAX), 64).1, 0);
        let f = Frame(2048 + 256);
        // SAFETY: nothing else references the anonymous mapping in this test.
        let b = unsafe { view.bytes(&f, 4096) };
        assert_eq!(b.len(), 2048 - 256);
        drop(m);
    }
}
