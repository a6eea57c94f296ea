//! smoltcp's frame-level `Device` over an AF_XDP socket.
//!
//! Tokens borrow UMEM frames: an `RxToken` hands smoltcp the received frame
//! in place and returns it to the fill ring when consumed; a `TxToken` takes
//! a free TX frame, lets smoltcp write into it, and queues it on the tx ring.
//! No allocation per frame. smoltcp consumes the TX token *inside* the RX
//! token's closure (a reply to the frame being processed), which is why the
//! socket is split into independent RX and TX halves.
//!
//! Transmitted frames are sent at [`XskDevice::flush`] (one `sendto` kick per
//! batch); received frames go back to the kernel at the same point.

#![allow(unsafe_code)]

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::xsk::{Frame, RxHalf, TxHalf, UmemView, Xsk};

/// Ethernet frame size smoltcp may build (1500-byte IP MTU + 14-byte header).
pub const ETH_MTU: usize = 1514;

pub struct XskDevice {
    pub xsk: Xsk,
    /// Where a TX token writes when no TX frame is free: the frame is then
    /// dropped (and counted), and TCP retransmits.
    scratch: Box<[u8; ETH_MTU]>,
}

impl XskDevice {
    pub fn new(xsk: Xsk) -> Self {
        XskDevice { xsk, scratch: Box::new([0u8; ETH_MTU]) }
    }

    /// Publish recycled RX frames and kick queued TX frames.
    pub fn flush(&mut self) {
        self.xsk.rx.flush();
        self.xsk.tx.kick();
        self.xsk.tx.reap();
    }
}

pub struct XskRx<'a> {
    rx: &'a mut RxHalf,
    view: UmemView,
    frame: Frame,
    len: usize,
}

pub struct XskTx<'a> {
    tx: &'a mut TxHalf,
    view: UmemView,
    scratch: &'a mut [u8; ETH_MTU],
}

impl phy::RxToken for XskRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        // SAFETY: the frame came off the rx ring and is owned by this token
        // until recycled below; the UMEM outlives the device's borrow.
        let r = f(unsafe { self.view.bytes(&self.frame, self.len) });
        self.rx.recycle(self.frame);
        r
    }
}

impl phy::TxToken for XskTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(ETH_MTU);
        match self.tx.alloc() {
            Some(mut frame) => {
                // SAFETY: the frame came off the free list and is owned by
                // this token until submitted below.
                let r = f(unsafe { self.view.bytes_mut(&mut frame, len) });
                self.tx.submit(frame, len);
                r
            }
            None => f(&mut self.scratch[..len]),
        }
    }
}

impl Device for XskDevice {
    type RxToken<'a> = XskRx<'a>;
    type TxToken<'a> = XskTx<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(XskRx<'_>, XskTx<'_>)> {
        let (rx, tx, view) = self.xsk.split();
        let (frame, len) = rx.take()?;
        Some((XskRx { rx, view, frame, len }, XskTx { tx, view, scratch: &mut self.scratch }))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<XskTx<'_>> {
        let (_, tx, view) = self.xsk.split();
        Some(XskTx { tx, view, scratch: &mut self.scratch })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = ETH_MTU;
        // Our TX always writes full checksums, and RX verifies them: the lab
        // turns offloads off, so every frame arrives with full checksums.
        caps
    }
}
