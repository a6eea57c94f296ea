//! The AF_XDP socket: UMEM, and the fill / completion / rx / tx rings mapped
//! from the kernel. With the sample ring and `sys`, the only code that opts
//! out of `deny(unsafe_code)`; every unsafe block says why it is sound.
//!
//! ```text
//! mod.rs   the socket: config, bind, the RX half (rx + fill) and TX half (tx + completion)
//! ring.rs  one ring shared with the kernel (indices, descriptors, the mapping)
//! umem.rs  the UMEM view and typed frames (RxFrame, TxFrame)
//! ```
//!
//! Frame ownership: a UMEM frame is named by its offset (`addr`). At any time
//! each frame is in exactly one place: the fill ring (kernel owns it), the rx
//! ring (delivered, ours until recycled), our TX free list, the tx ring
//! (kernel owns it) or the completion ring (returned). [`RxFrame`] and
//! [`TxFrame`] are distinct types, neither `Copy`; handing one to the kernel
//! consumes it.
//!
//! Drop order: the socket fd is closed first (the kernel stops touching the
//! rings and the UMEM), then the ring mappings, then the UMEM. Fields are
//! declared in that order.

#![allow(unsafe_code)]

mod ring;
mod stats;
mod umem;

pub use stats::XskStatsReader;

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

use memmap2::{MmapMut, MmapOptions};

use self::ring::{Ring, RingMap};
use self::umem::UmemRaw;
pub use self::umem::{RxFrame, TxFrame, UmemView};

/// Distinguishes sockets, so a frame of one is refused by another's view.
static NEXT_UMEM_ID: AtomicU32 = AtomicU32::new(1);

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
            frames: 16384,
            ring_size: 8192,
            queue: 0,
            zero_copy: ZeroCopy::Auto,
            busy_poll_us: crate::transport::BUSY_POLL_US_DEFAULT,
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
    /// Fill ring had no room for a recycled frame, yet: the kernel
    /// publishes its consumer index lazily, so the ring can look full while
    /// frames from it already sit in the rx ring. The frame is parked and
    /// returned at the next flush: nothing is lost.
    pub fill_full: u64,
    /// Times the kernel held fewer than 1/8 of the fill ring's entries.
    pub fill_ring_starved: u64,
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
    pub kick_wait: u64,
    /// Kicks that left frames in the ring for a later kick (a burst beyond
    /// what the kernel sends per call in copy mode, [`KICKS_PER_FLUSH`]
    /// times over, or a busy socket).
    pub kick_retry: u64,
}

/// Kicks one flush makes while the kernel answers EAGAIN. In copy mode each
/// sendto transmits a budget of descriptors (32 in Linux 6.x) and answers
/// EAGAIN while more wait: a burst of replies needs several.
pub const KICKS_PER_FLUSH: u32 = 64;

/// The receive half: rx ring (frames in) and fill ring (frames back).
pub struct RxHalf {
    rx: Ring<libc::xdp_desc>,
    fill: Ring<u64>,
    fill_pending: u32,
    /// Frames the fill ring could not take; returned to it by `flush`.
    spill: Vec<u64>,
    fd: RawFd,
    /// The UMEM's id (stamped on every frame) and its frame size.
    umem: u32,
    frame_size: u64,
    pub stats: RxStats,
}

/// The transmit half: tx ring (frames out), completion ring (frames back),
/// and the free list of TX frames.
pub struct TxHalf {
    tx: Ring<libc::xdp_desc>,
    comp: Ring<u64>,
    free: Vec<u64>,
    pending: u32,
    /// Descriptors published but not yet taken by a kick: kick again.
    retry: bool,
    fd: RawFd,
    umem: u32,
    always_kick: bool,
    pub stats: TxStats,
}

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
            id: NEXT_UMEM_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
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
                            umem: raw.id,
                            frame_size: u64::from(cfg.frame_size),
                            stats: RxStats::default(),
                        },
                        tx: TxHalf {
                            tx,
                            comp,
                            free: Vec::with_capacity(cfg.frames as usize),
                            pending: 0,
                            retry: false,
                            fd: sock,
                            umem: raw.id,
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

    /// Give the fill ring half the frames, at most its size (by default 8192
    /// of 16384), and keep the rest for TX (as many as the TX ring holds up
    /// to 16384 frames; more past that): a frame is back on the free list
    /// once the kernel completes it.
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

    /// A reader of the socket's own drop counters for another thread (its
    /// own descriptor of the socket), so the pinned loop makes no system
    /// call for them.
    pub fn stats_reader(&self) -> io::Result<XskStatsReader> {
        Ok(XskStatsReader { fd: self.fd.try_clone()? })
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
    pub fn take(&mut self) -> Option<RxFrame> {
        if self.rx.cons_avail() == 0 {
            return None;
        }
        let d = self.rx.cons_read();
        self.rx.cons_release();
        self.stats.frames += 1;
        Some(RxFrame { addr: d.addr, len: d.len, umem: self.umem })
    }

    /// Return a received frame to the kernel (fill ring). Published in
    /// batches by [`RxHalf::flush`].
    pub fn recycle(&mut self, f: RxFrame) {
        // Back to the start of its chunk (the kernel adds its headroom).
        let chunk = f.addr - f.addr % self.frame_size;
        if self.fill.prod_free() > 0 {
            self.fill.prod_write(chunk);
            self.fill_pending += 1;
        } else {
            // The kernel has not published its consumption yet (see
            // `RxStats::fill_full`). Park the frame; `flush` returns it.
            self.stats.fill_full += 1;
            self.spill.push(chunk);
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
    pub fn fill_ring_starved(&mut self) -> bool {
        self.fill.remote = Ring::<u64>::load(self.fill.consumer);
        let held = self.fill.local.wrapping_sub(self.fill.remote);
        let low = held < self.fill.size / 8;
        if low {
            self.stats.fill_ring_starved += 1;
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
            self.wait(0, None);
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

    /// Sleep in poll(2) until RX has a frame, `bell` (another descriptor,
    /// such as the handoff's eventfd) is readable, or `timeout_ms` passes.
    /// True when `bell` is readable.
    pub fn wait(&mut self, timeout_ms: i32, bell: Option<std::os::fd::BorrowedFd<'_>>) -> bool {
        use std::os::fd::AsRawFd;
        let mut p = [
            libc::pollfd { fd: self.fd, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: bell.map_or(-1, |b| b.as_raw_fd()), events: libc::POLLIN, revents: 0 },
        ];
        let n = if bell.is_some() { 2 } else { 1 };
        // SAFETY: `n` valid pollfds on descriptors that outlive the call
        // (our socket, and `bell`, borrowed for the call).
        unsafe {
            libc::poll(p.as_mut_ptr(), n, timeout_ms);
        }
        p[1].revents & libc::POLLIN != 0
    }
}

impl TxHalf {
    /// A free frame for TX.
    pub fn alloc(&mut self) -> Option<TxFrame> {
        self.refill();
        match self.free.pop() {
            Some(addr) => Some(TxFrame { addr, umem: self.umem }),
            None => {
                self.stats.starved += 1;
                None
            }
        }
    }

    /// Give a frame back unused.
    pub fn free(&mut self, f: TxFrame) {
        self.free.push(f.addr);
    }

    /// Is a TX frame free (after taking back what the kernel completed)?
    pub fn has_free(&mut self) -> bool {
        self.refill();
        !self.free.is_empty()
    }

    /// With the free list empty: send what is queued (in copy mode the
    /// kernel completes it in the kick) and take back what completed. With
    /// as many TX frames as ring entries, the list runs empty before the
    /// ring fills, so a burst longer than the ring must kick here.
    fn refill(&mut self) {
        if self.free.is_empty() {
            self.kick();
            self.reap();
        }
    }

    /// Queue `len` bytes of `f` for transmission; sent at the next
    /// [`TxHalf::kick`]. False if the ring stayed full (the frame is
    /// dropped and counted; TCP retransmits it).
    pub fn submit(&mut self, f: TxFrame, len: usize) -> bool {
        if self.tx.prod_free() == 0 {
            self.kick();
            self.reap();
        }
        if self.tx.prod_free() == 0 {
            // The kernel is not draining: drop this frame (TCP retransmits).
            self.free.push(f.addr);
            self.stats.starved += 1;
            return false;
        }
        self.tx.prod_write(libc::xdp_desc { addr: f.addr, len: len as u32, options: 0 });
        self.pending += 1;
        self.stats.frames += 1;
        true
    }

    /// Publish queued descriptors and wake the kernel when it asks (in copy
    /// mode it always must). In copy mode a sendto sends a budget of frames
    /// and answers EAGAIN while more wait: kick again (reaping completions
    /// between), up to [`KICKS_PER_FLUSH`] times; what is still left is
    /// kicked by the next `kick` or [`TxHalf::kick_retry`]. Frames were
    /// left in the ring until some later frame was sent, before: a burst of
    /// 500 replies took 45 ms to leave.
    pub fn kick(&mut self) {
        if self.pending == 0 && !self.retry {
            return;
        }
        if self.pending != 0 {
            self.tx.prod_publish();
            self.pending = 0;
        }
        self.retry = false;
        if !(self.always_kick || self.tx.needs_wakeup()) {
            return;
        }
        let mut last_left = None;
        for _ in 0..KICKS_PER_FLUSH {
            self.stats.kicks += 1;
            // SAFETY: sendto with no buffer (null pointer, length 0) and no
            // address on a socket this struct owns; nothing is read or written.
            let r = unsafe { libc::sendto(self.fd, std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0) };
            if r >= 0 {
                return;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) => {
                    // More descriptors wait (or the completion ring is
                    // full). Go on only while the kernel takes some: a
                    // device that sends nothing is retried next poll.
                    self.stats.kick_wait += 1;
                    self.reap();
                    let left = self.tx.prod_outstanding();
                    if left == 0 {
                        return;
                    }
                    if last_left == Some(left) {
                        break;
                    }
                    last_left = Some(left);
                }
                Some(libc::EBUSY) => {
                    self.stats.kick_wait += 1;
                    break;
                }
                _ => return,
            }
        }
        self.retry = true;
        self.stats.kick_retry += 1;
    }

    /// Kick again if the last kick left frames in the ring (called on every
    /// poll, so an idle loop does not leave them there).
    pub fn kick_retry(&mut self) {
        if self.retry {
            self.kick();
            self.reap();
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
}
