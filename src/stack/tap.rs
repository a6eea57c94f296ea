//! The stack's link as smoltcp sees it: every frame smoltcp transmits is
//! read once ([`parse_sent`]) and shown to the guard and to loss recovery.

use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::time::Instant;

use super::frame::parse_sent;
use super::guard::Guard;
use super::recovery::Recovery;

/// The stack's link as smoltcp sees it: every frame smoltcp transmits is
/// shown to `Recovery::on_egress` and `Guard::on_egress` after it is
/// written.
pub struct Tap<'a, D: Device> {
    pub dev: &'a mut D,
    pub rec: &'a mut Recovery,
    pub guard: &'a mut Guard,
    pub now: u64,
}

pub struct TapTx<'a, T> {
    inner: T,
    rec: &'a mut Recovery,
    guard: &'a mut Guard,
    now: u64,
}

impl<T: phy::TxToken> phy::TxToken for TapTx<'_, T> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let (rec, guard, now) = (self.rec, self.guard, self.now);
        self.inner.consume(len, |buf| {
            let r = f(buf);
            if let Some(mut t) = parse_sent(buf) {
                // The guard first: it moves a cookie connection's segment
                // into the wire's sequence space, which recovery keeps.
                guard.on_egress(&mut t, buf);
                rec.on_egress(&t, buf, now);
            }
            r
        })
    }

    fn set_meta(&mut self, meta: phy::PacketMeta) {
        self.inner.set_meta(meta);
    }
}

impl<D: Device> Device for Tap<'_, D> {
    type RxToken<'b>
        = D::RxToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = TapTx<'b, D::TxToken<'b>>
    where
        Self: 'b;

    fn receive(&mut self, ts: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (rx, tx) = self.dev.receive(ts)?;
        Some((rx, TapTx { inner: tx, rec: &mut *self.rec, guard: &mut *self.guard, now: self.now }))
    }

    fn transmit(&mut self, ts: Instant) -> Option<Self::TxToken<'_>> {
        let tx = self.dev.transmit(ts)?;
        Some(TapTx { inner: tx, rec: &mut *self.rec, guard: &mut *self.guard, now: self.now })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.dev.capabilities()
    }
}
