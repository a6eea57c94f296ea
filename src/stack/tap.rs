//! The stack's link as smoltcp sees it: every frame smoltcp transmits is
//! read once ([`parse_sent`]) and shown to the guard and to loss recovery,
//! after it is written and before it is queued.
//!
//! Recovery may withhold a frame: a retransmission smoltcp's own timer
//! (its 1 s RTO) makes of bytes recovery holds copies of. Those bytes have
//! one retransmission schedule, recovery's, which backs off by doubling;
//! smoltcp's timer firing between two of its retransmissions sends nothing.
//! A withheld frame goes back to the link unsent ([`Link::send_with`]).
//! Replies smoltcp writes while it takes a segment (ACKs, RSTs) use the
//! receive path's token and are never withheld.

use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::time::Instant;

use super::frame::{parse_sent, ETH_MAX};
use super::guard::Guard;
use super::link::Link;
use super::recovery::Recovery;

/// The stack's link as smoltcp sees it (see the module docs).
pub struct Tap<'a, D: Link> {
    pub dev: &'a mut D,
    pub rec: &'a mut Recovery,
    pub guard: &'a mut Guard,
    pub now: u64,
    /// smoltcp asked for a frame the link had none for: what it would have
    /// sent waits, and its shard must be polled again.
    pub refused: bool,
}

/// A frame smoltcp writes: a reply on the receive path (the link's own
/// token), or egress (written through [`Link::send_with`], and withheld
/// if recovery says so).
pub enum TapTx<'a, D: Link + 'a> {
    Reply { inner: D::TxToken<'a>, rec: &'a mut Recovery, guard: &'a mut Guard, now: u64 },
    Egress { dev: &'a mut D, rec: &'a mut Recovery, guard: &'a mut Guard, now: u64 },
}

/// Show the frame smoltcp wrote in `buf` to the guard, then to recovery;
/// false if recovery withholds it.
fn seen(buf: &mut [u8], guard: &mut Guard, rec: &mut Recovery, now: u64) -> bool {
    let Some(mut t) = parse_sent(buf) else { return true };
    // The guard first: it moves a cookie connection's segment into the
    // wire's sequence space, which recovery keeps.
    guard.on_egress(&mut t, buf, now);
    rec.on_egress(&t, buf, now)
}

impl<'a, D: Link + 'a> phy::TxToken for TapTx<'a, D> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        match self {
            TapTx::Reply { inner, rec, guard, now } => inner.consume(len, |buf| {
                let r = f(buf);
                seen(buf, guard, rec, now);
                r
            }),
            TapTx::Egress { dev, rec, guard, now } => {
                let mut f = Some(f);
                let mut out = None;
                dev.send_with(len, &mut |buf| {
                    let Some(f) = f.take() else { return false };
                    out = Some(f(buf));
                    seen(buf, guard, rec, now)
                });
                match out {
                    Some(r) => r,
                    None => {
                        // The link had no frame after all (`transmit` asked
                        // it first): write into a scratch frame, dropped. TCP
                        // sends it again.
                        let mut scratch = [0u8; ETH_MAX];
                        let f = f.take().expect("the frame was not written");
                        f(&mut scratch[..len.min(ETH_MAX)])
                    }
                }
            }
        }
    }

    fn set_meta(&mut self, meta: phy::PacketMeta) {
        if let TapTx::Reply { inner, .. } = self {
            inner.set_meta(meta);
        }
    }
}

impl<D: Link> Device for Tap<'_, D> {
    type RxToken<'b>
        = D::RxToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = TapTx<'b, D>
    where
        Self: 'b;

    fn receive(&mut self, ts: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (rx, inner) = self.dev.receive(ts)?;
        Some((rx, TapTx::Reply { inner, rec: &mut *self.rec, guard: &mut *self.guard, now: self.now }))
    }

    fn transmit(&mut self, _ts: Instant) -> Option<Self::TxToken<'_>> {
        // No frame free: smoltcp keeps what it would send for later.
        if !self.dev.tx_room() {
            self.refused = true;
            return None;
        }
        Some(TapTx::Egress { dev: &mut *self.dev, rec: &mut *self.rec, guard: &mut *self.guard, now: self.now })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.dev.capabilities()
    }
}
