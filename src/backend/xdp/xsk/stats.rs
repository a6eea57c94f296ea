//! The socket's own counters (`XDP_STATISTICS`), readable from any thread
//! (the reporter's), by the names of the exit line and `/metrics`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::cvt;
use crate::transport::Counters;

/// The socket's own counters (`XDP_STATISTICS`), read from any thread.
#[derive(Debug)]
pub struct XskStatsReader {
    pub(super) fd: OwnedFd,
}

impl XskStatsReader {
    /// Another reader of the same socket.
    pub fn try_clone(&self) -> io::Result<XskStatsReader> {
        Ok(XskStatsReader { fd: self.fd.try_clone()? })
    }

    /// The counters now.
    pub fn read(&self) -> io::Result<libc::xdp_statistics> {
        // SAFETY: xdp_statistics is plain integers: all zeros is valid.
        let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `st` and `len` are valid for writes of the size passed;
        // the kernel writes at most `len` bytes.
        cvt(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&mut st as *mut libc::xdp_statistics).cast(),
                &mut len,
            )
        })?;
        Ok(st)
    }

    /// Add them to `out`, by the names of the exit line and `/metrics`:
    /// every one but `xsk_tx_ring_empty` (the kernel found nothing to send,
    /// which is normal) is a drop.
    pub fn fill(&self, out: &mut Counters) {
        let Ok(s) = self.read() else { return };
        out.drop("xsk_rx_dropped", s.rx_dropped);
        out.drop("xsk_rx_ring_full", s.rx_ring_full);
        out.drop("xsk_rx_fill_ring_empty", s.rx_fill_ring_empty_descs);
        out.drop("xsk_rx_invalid_descs", s.rx_invalid_descs);
        out.drop("xsk_tx_invalid_descs", s.tx_invalid_descs);
        out.event("xsk_tx_ring_empty", s.tx_ring_empty_descs);
    }
}
