//! The stack's socket buffers, carved from anonymous mappings rather than
//! the heap. A heap allocation writes its chunk header into the
//! first page of every buffer, so each connection made the process resident
//! in at least one page per buffer before it carried a byte; a mapping's
//! pages become resident only when data is written into them. An idle
//! connection then costs nothing in its buffers, and a busy one what its
//! rings reached. Sockets are never freed (the stack reuses them), so
//! neither is their memory: it follows the peak of connections.
//!
//! Mapped in chunks of [`PER_CHUNK`] sockets' worth, `MAP_NORESERVE`
//! (reserved address space is not committed memory), and unmapped when
//! the arena is dropped, which its owner must do after every slice it gave
//! is gone (the stack keeps it as its last field, after its sockets).

use std::ptr::NonNull;

/// Sockets' buffers mapped at once.
pub const PER_CHUNK: usize = 256;

pub struct BufferArena {
    rx: usize,
    tx: usize,
    chunks: Vec<NonNull<u8>>,
    /// Sockets given buffers from the last chunk.
    used: usize,
}

impl BufferArena {
    /// An arena of `rx` and `tx` byte buffers per socket (nothing mapped
    /// yet).
    pub fn new(rx: usize, tx: usize) -> BufferArena {
        BufferArena { rx, tx, chunks: Vec::new(), used: PER_CHUNK }
    }

    /// A chunk's length; only called once `take` has mapped one with it.
    fn chunk_len(&self) -> usize {
        PER_CHUNK * (self.rx + self.tx)
    }

    /// A fresh socket's receive and send buffers (zero until written).
    ///
    /// # Safety
    ///
    /// The slices are `'static` for smoltcp's socket type, but live only as
    /// long as the arena: the caller must drop every slice it took before
    /// it drops the arena (the stack keeps the arena as its last field).
    pub unsafe fn take(&mut self) -> std::io::Result<(&'static mut [u8], &'static mut [u8])> {
        let per = self.rx.checked_add(self.tx).filter(|&p| p > 0);
        let len = per.and_then(|p| p.checked_mul(PER_CHUNK)).filter(|&l| l <= isize::MAX as usize);
        let Some(len) = len else {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "socket buffers too large to map"));
        };
        if self.used == PER_CHUNK {
            // SAFETY: a fresh private anonymous mapping; checked below.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            // No transparent huge pages: one would make 2 MiB resident (16
            // sockets' buffers) at a connection's first byte. Advice only.
            // SAFETY: the range was just mapped.
            unsafe {
                libc::madvise(p, len, libc::MADV_NOHUGEPAGE);
            }
            self.chunks.push(NonNull::new(p.cast()).ok_or_else(std::io::Error::last_os_error)?);
            self.used = 0;
        }
        let base = self.chunks[self.chunks.len() - 1].as_ptr();
        let at = self.used * (self.rx + self.tx);
        self.used += 1;
        // SAFETY: `at .. at + rx + tx` lies inside the chunk and is handed
        // out once (`used` only grows within a chunk); the mapping outlives
        // the slices (see above).
        unsafe {
            let rx = std::slice::from_raw_parts_mut(base.add(at), self.rx);
            let tx = std::slice::from_raw_parts_mut(base.add(at + self.rx), self.tx);
            Ok((rx, tx))
        }
    }

    /// Bytes mapped (address space, not resident memory).
    pub fn mapped(&self) -> usize {
        if self.chunks.is_empty() {
            return 0;
        }
        self.chunks.len() * self.chunk_len()
    }
}

impl Drop for BufferArena {
    fn drop(&mut self) {
        if self.chunks.is_empty() {
            return;
        }
        let len = self.chunk_len();
        for c in &self.chunks {
            // SAFETY: each chunk was mapped with this length, and no slice
            // of it is used after the stack's sockets are gone.
            unsafe {
                libc::munmap(c.as_ptr().cast(), len);
            }
        }
    }
}

// SAFETY: the arena owns its mappings; it moves with the stack, which runs
// on one thread at a time.
unsafe impl Send for BufferArena {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_disjoint_zeroed_and_span_chunks() {
        let mut a = BufferArena::new(4096, 8192);
        let mut seen = Vec::new();
        for i in 0..PER_CHUNK + 3 {
            // SAFETY: the slices are dropped at the end of the iteration.
            let (rx, tx) = unsafe { a.take() }.unwrap();
            assert_eq!((rx.len(), tx.len()), (4096, 8192));
            assert!(rx.iter().chain(tx.iter()).all(|&b| b == 0), "socket {i}");
            rx.fill(1);
            tx.fill(2);
            seen.push((rx.as_ptr() as usize, tx.as_ptr() as usize));
        }
        assert_eq!(a.mapped(), 2 * PER_CHUNK * (4096 + 8192));
        let mut spans: Vec<(usize, usize)> = seen.iter().flat_map(|&(r, t)| [(r, r + 4096), (t, t + 8192)]).collect();
        spans.sort_unstable();
        assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "overlapping buffers");
        // Sizes that cannot be mapped are refused, not wrapped.
        let mut huge = BufferArena::new(usize::MAX / 2, usize::MAX / 2);
        // SAFETY: refused: no slice is made.
        assert!(unsafe { huge.take() }.is_err());
        // SAFETY: refused: no slice is made.
        assert!(unsafe { BufferArena::new(0, 0).take() }.is_err());
    }
}
