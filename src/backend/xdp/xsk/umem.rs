//! The UMEM and its frames, typed: a received frame ([`RxFrame`]) and a
//! frame for transmission ([`TxFrame`]) are different types, so the pools
//! cannot mix, and neither is `Copy` or `Clone`: a frame value is the only
//! owner of its chunk, and handing it back to a ring consumes it. That is
//! what lets [`UmemView`] give out a frame's bytes safely.

use std::marker::PhantomData;
use std::ptr::NonNull;

/// A received frame: its UMEM address (the chunk plus the headroom the
/// kernel left), the length of the data, and the socket it came from.
/// Made only by the rx ring; recycled into the fill ring.
#[derive(Debug, PartialEq, Eq)]
pub struct RxFrame {
    pub(super) addr: u64,
    pub(super) len: u32,
    pub(super) umem: u32,
}

/// A frame for transmission, from the TX free list; submitted to the tx ring
/// or freed.
#[derive(Debug, PartialEq, Eq)]
pub struct TxFrame {
    pub(super) addr: u64,
    pub(super) umem: u32,
}

/// Where the UMEM is mapped (kept by `Xsk`, which owns the mapping).
#[derive(Clone, Copy)]
pub(super) struct UmemRaw {
    pub(super) base: NonNull<u8>,
    pub(super) len: usize,
    pub(super) frame_size: usize,
    /// Which socket's UMEM this is: a frame of another is refused.
    pub(super) id: u32,
}

/// A view of the UMEM for reading and writing the frames we own. It borrows
/// the mapping (`'umem`), so neither it nor a slice it returns can outlive
/// it.
#[derive(Clone, Copy)]
pub struct UmemView<'umem> {
    pub(super) raw: UmemRaw,
    pub(super) _umem: PhantomData<&'umem [u8]>,
}

/// `struct rx_meta` in bpf/redirect.bpf.c.
const META_LEN: usize = 16;
const META_MAGIC: u32 = 0x5447_4d31;

impl<'umem> UmemView<'umem> {
    /// The byte range `[start, start + n)` of the first `len` bytes at
    /// `addr`, clamped to the end of its chunk: an RX address carries a
    /// headroom offset into its chunk, and the next chunk may be a frame
    /// that someone else holds. Empty for a frame of another UMEM.
    pub(super) fn range(&self, addr: u64, umem: u32, len: usize) -> (usize, usize) {
        if umem != self.raw.id {
            return (0, 0);
        }
        let fs = self.raw.frame_size;
        let start = (addr as usize).min(self.raw.len);
        let chunk_end = (start / fs).saturating_add(1).saturating_mul(fs).min(self.raw.len);
        let end = start.saturating_add(len).min(chunk_end);
        (start, end - start)
    }

    /// The data of received frame `f`.
    pub fn rx_bytes<'a>(&self, f: &'a RxFrame) -> &'a [u8]
    where
        'umem: 'a,
    {
        let (start, n) = self.range(f.addr, f.umem, f.len as usize);
        // SAFETY: [start, start + n) lies inside `f`'s chunk (clamped to the
        // chunk's end and to the mapping), which `'umem` keeps mapped for
        // 'a. `f` owns the chunk: only the rx ring makes an RxFrame, it is
        // neither Copy nor Clone, and the kernel does not write a chunk it
        // delivered until we recycle it (which consumes `f`). A frame of
        // another UMEM gets an empty slice (`range`).
        unsafe { std::slice::from_raw_parts(self.raw.base.as_ptr().add(start), n) }
    }

    /// The data of received frame `f`, to rewrite in place before the
    /// stack hands it on (the stack's sequence-number translation).
    pub fn rx_bytes_mut<'a>(&self, f: &'a mut RxFrame) -> &'a mut [u8]
    where
        'umem: 'a,
    {
        let (start, n) = self.range(f.addr, f.umem, f.len as usize);
        // SAFETY: as in `rx_bytes`; `&mut RxFrame` makes this the only
        // reference to the chunk, which the kernel does not touch until the
        // frame is recycled.
        unsafe { std::slice::from_raw_parts_mut(self.raw.base.as_ptr().add(start), n) }
    }

    /// The first `len` bytes of TX frame `f`, writable (clamped to its chunk).
    #[allow(clippy::mut_from_ref)]
    pub fn tx_bytes_mut<'a>(&self, f: &'a mut TxFrame, len: usize) -> &'a mut [u8]
    where
        'umem: 'a,
    {
        let (start, n) = self.range(f.addr, f.umem, len);
        // SAFETY: as in `rx_bytes`: a TxFrame comes only from the free list
        // and owns its chunk until submitted or freed; `&mut TxFrame` makes
        // this the only reference to the chunk.
        unsafe { std::slice::from_raw_parts_mut(self.raw.base.as_ptr().add(start), n) }
    }

    /// The arrival time the XDP program put in the metadata in front of
    /// received frame `f` (see bpf/redirect.bpf.c), if it did; the magic is
    /// cleared so a recycled frame never shows a stale time.
    pub fn take_rx_meta(&self, f: &mut RxFrame) -> Option<u64> {
        let addr = f.addr as usize;
        if f.umem != self.raw.id || addr % self.raw.frame_size < META_LEN || addr > self.raw.len {
            return None;
        }
        // SAFETY: [addr - 16, addr) lies inside the chunk of `f` (checked
        // above) and inside the mapping; `&mut RxFrame` owns that chunk.
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

#[cfg(test)]
mod tests {
    use super::*;
    use memmap2::MmapOptions;

    /// Regression: an RX address carries a headroom offset into its chunk;
    /// a slice of `len` bytes from there ran into the next chunk (possibly a
    /// TX frame held `&mut`). It now ends at the chunk's end. A frame of
    /// another socket's UMEM gets nothing.
    #[test]
    fn a_frame_slice_never_leaves_its_chunk() {
        let mut m = MmapOptions::new().len(4 * 2048).map_anon().unwrap();
        let raw = UmemRaw { base: NonNull::new(m.as_mut_ptr()).unwrap(), len: m.len(), frame_size: 2048, id: 7 };
        let view = UmemView { raw, _umem: PhantomData::<&[u8]> };
        // A frame at headroom 256 in chunk 1, asked for 2048 bytes.
        assert_eq!(view.range(2048 + 256, 7, 2048), (2048 + 256, 2048 - 256));
        assert_eq!(view.range(2048 + 256, 7, 100), (2048 + 256, 100));
        // The last chunk ends at the mapping's end; past it, nothing.
        assert_eq!(view.range(3 * 2048 + 16, 7, 4096), (3 * 2048 + 16, 2048 - 16));
        assert_eq!(view.range(4 * 2048, 7, 64).1, 0);
        assert_eq!(view.range(u64::MAX, 7, 64).1, 0);
        let f = RxFrame { addr: 2048 + 256, len: 4096, umem: 7 };
        assert_eq!(view.rx_bytes(&f).len(), 2048 - 256);
        let stranger = RxFrame { addr: 2048, len: 64, umem: 8 };
        assert!(view.rx_bytes(&stranger).is_empty(), "a frame of another UMEM");
        let mut t = TxFrame { addr: 0, umem: 7 };
        assert_eq!(view.tx_bytes_mut(&mut t, 4096).len(), 2048);
        drop(m);
    }
}
