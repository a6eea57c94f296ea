//! The stack's [`Link`] (smoltcp's frame-level `Device`) over an AF_XDP
//! socket.
//!
//! Tokens borrow UMEM frames: an `RxToken` hands smoltcp the received frame
//! in place and returns it to the fill ring when consumed; a `TxToken` takes
//! a free TX frame, lets smoltcp write into it, and queues it on the tx ring.
//! No allocation per frame. smoltcp consumes the TX token *inside* the RX
//! token's closure (a reply to the frame being processed), which is why the
//! socket is split into independent RX and TX halves.
//!
//! Transmitted frames are sent at [`Link::flush`] (one `sendto` kick per
//! batch); received frames go back to the kernel at the end of ingress.

use std::time::Duration;

use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::time::Instant;

use super::xsk::{RxFrame, RxHalf, TxHalf, UmemView, Xsk};
use crate::clock;
use crate::stack::frame::tcp_payload_len;
use crate::stack::Link;
use crate::transport::Counters;

/// Ethernet frame size smoltcp may build (1500-byte IP MTU + 14-byte header).
pub const ETH_MTU: usize = 1514;

/// `--inject tx-loss:N`: drop every N-th TCP segment with payload that the
/// stack transmits, before it reaches the TX ring (the stack then has to
/// retransmit it).
#[derive(Debug, Default)]
pub struct TxLoss {
    pub every: u32,
    data_frames: u64,
    pub dropped: u64,
}

impl TxLoss {
    /// Drop this frame?
    fn drop(&mut self, frame: &[u8]) -> bool {
        if self.every == 0 || tcp_payload_len(frame).unwrap_or(0) == 0 {
            return false;
        }
        self.data_frames += 1;
        if self.data_frames % u64::from(self.every) == 0 {
            self.dropped += 1;
            return true;
        }
        false
    }
}

pub struct XskDevice {
    pub xsk: Xsk,
    pub tx_loss: TxLoss,
    /// The interface defers IRQs and the loop spins with busy poll: drive
    /// NAPI with a busy-poll syscall whenever the rx ring is empty.
    pub busy_poll_syscall: bool,
    /// The frame the next `receive` hands to smoltcp (see [`Link::stage`]).
    staged: Option<RxFrame>,
    /// A frame another loop passed over ([`Link::stage_copy`]): its bytes,
    /// and whether it is the staged frame (then `staged` is empty).
    copy: Box<[u8; ETH_MTU]>,
    copy_len: usize,
    copy_staged: bool,
    /// Where a TX token writes when no TX frame is free: the frame is then
    /// dropped (and counted), and TCP retransmits.
    scratch: Box<[u8; ETH_MTU]>,
    /// `--pcap`: every frame received and sent, copied for the writer.
    pub capture: Option<crate::capture::Tap>,
    /// The program stamps arrival times over the destination MAC: the
    /// stack's own address, to put back ([`take_mac_stamp`]).
    pub mac_stamp: Option<[u8; 6]>,
}

impl XskDevice {
    pub fn new(xsk: Xsk) -> Self {
        XskDevice {
            xsk,
            tx_loss: TxLoss::default(),
            busy_poll_syscall: false,
            staged: None,
            copy: Box::new([0u8; ETH_MTU]),
            copy_len: 0,
            copy_staged: false,
            scratch: Box::new([0u8; ETH_MTU]),
            mac_stamp: None,
            capture: None,
        }
    }
}

pub struct XskRx<'a> {
    rx: &'a mut RxHalf,
    view: UmemView<'a>,
    /// The UMEM frame, or none for a copy passed over by another loop.
    frame: Option<RxFrame>,
    copy: &'a [u8],
}

pub struct XskTx<'a> {
    tx: &'a mut TxHalf,
    view: UmemView<'a>,
    scratch: &'a mut [u8; ETH_MTU],
    loss: &'a mut TxLoss,
    capture: Option<&'a mut crate::capture::Tap>,
}

impl phy::RxToken for XskRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        match self.frame {
            Some(frame) => {
                let r = f(self.view.rx_bytes(&frame));
                self.rx.recycle(frame);
                r
            }
            None => f(self.copy),
        }
    }
}

impl XskTx<'_> {
    /// Take a TX frame, let `f` write `len` bytes into it, and queue it if
    /// `f` says so (`Some(true)`); fault injection may drop it instead, as
    /// the wire would. None: no TX frame was free (`f` not called). The
    /// bool: the frame was queued (or dropped by injection).
    fn write<R>(&mut self, len: usize, f: impl FnOnce(&mut [u8]) -> (R, bool)) -> Option<(R, bool)> {
        let len = len.min(ETH_MTU);
        let mut frame = self.tx.alloc()?;
        let bytes = self.view.tx_bytes_mut(&mut frame, len);
        let (r, send) = f(&mut *bytes);
        if !send {
            self.tx.free(frame);
            return Some((r, false));
        }
        if self.loss.every != 0 && self.loss.drop(bytes) {
            self.tx.free(frame);
            return Some((r, true));
        }
        if let Some(c) = self.capture.as_deref_mut() {
            c.frame(bytes, clock::mono_ns());
        }
        Some((r, self.tx.submit(frame, len)))
    }
}

impl phy::TxToken for XskTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, len: usize, f: F) -> R {
        let mut f = Some(f);
        match self.write(len, |b| (f.take().map(|f| f(b)), true)) {
            Some((Some(r), _)) => r,
            // No TX frame free (a reply on the receive path, which smoltcp
            // must be given a token for): written to scratch and dropped,
            // counted as `tx_starved`; TCP sends it again.
            _ => {
                let f = f.take().expect("written once");
                f(&mut self.scratch[..len.min(ETH_MTU)])
            }
        }
    }
}

impl Device for XskDevice {
    type RxToken<'a> = XskRx<'a>;
    type TxToken<'a> = XskTx<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(XskRx<'_>, XskTx<'_>)> {
        let frame = self.staged.take();
        if frame.is_none() && !std::mem::take(&mut self.copy_staged) {
            return None;
        }
        let (rx, tx, view) = self.xsk.split();
        let capture = self.capture.as_mut();
        Some((
            XskRx { rx, view, frame, copy: &self.copy[..self.copy_len] },
            XskTx { tx, view, scratch: &mut self.scratch, loss: &mut self.tx_loss, capture },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<XskTx<'_>> {
        // No TX frame free: say so, rather than let the frame be written
        // to scratch and lost while its writer counts it sent.
        if !self.xsk.tx.has_free() {
            self.xsk.tx.stats.starved += 1;
            return None;
        }
        let (_, tx, view) = self.xsk.split();
        let capture = self.capture.as_mut();
        Some(XskTx { tx, view, scratch: &mut self.scratch, loss: &mut self.tx_loss, capture })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        crate::stack::link::capabilities(ETH_MTU)
    }
}

impl Link for XskDevice {
    fn now_ns(&self) -> u64 {
        clock::mono_ns()
    }

    fn stage(&mut self) -> Option<(&[u8], u64)> {
        self.unstage();
        let mut frame = self.xsk.rx.take()?;
        let view = self.xsk.view();
        let rx_ns = match self.mac_stamp {
            None => view.take_rx_meta(&mut frame).unwrap_or(0),
            Some(mac) => take_mac_stamp(view.rx_bytes_mut(&mut frame), mac, clock::mono_ns()),
        };
        let frame = self.staged.insert(frame);
        let bytes = view.rx_bytes(frame);
        if let Some(c) = &mut self.capture {
            c.frame(bytes, if rx_ns != 0 { rx_ns } else { clock::mono_ns() });
        }
        Some((bytes, rx_ns))
    }

    fn stage_copy(&mut self, frame: &[u8]) -> bool {
        self.unstage();
        if frame.len() > ETH_MTU {
            return false;
        }
        self.copy[..frame.len()].copy_from_slice(frame);
        self.copy_len = frame.len();
        self.copy_staged = true;
        true
    }

    fn staged_mut(&mut self) -> Option<&mut [u8]> {
        if self.copy_staged {
            return Some(&mut self.copy[..self.copy_len]);
        }
        let view = self.xsk.view();
        Some(view.rx_bytes_mut(self.staged.as_mut()?))
    }

    fn unstage(&mut self) {
        self.copy_staged = false;
        if let Some(frame) = self.staged.take() {
            self.xsk.rx.recycle(frame);
        }
    }

    fn begin_ingress(&mut self) {
        self.xsk.tx.kick_retry();
        self.xsk.rx.wake_if_needed();
        if self.busy_poll_syscall && !self.xsk.rx.has_frames() {
            self.xsk.rx.busy_poll();
        }
    }

    fn end_ingress(&mut self) {
        self.xsk.rx.flush();
        if let Some(c) = &mut self.capture {
            c.publish();
        }
    }

    fn rx_starved(&mut self) -> bool {
        self.xsk.rx.fill_ring_starved()
    }

    fn flush(&mut self) {
        if let Some(c) = &mut self.capture {
            c.publish();
        }
        self.xsk.rx.flush();
        self.xsk.tx.kick();
        self.xsk.tx.reap();
    }

    fn tx_room(&mut self) -> bool {
        self.xsk.tx.has_free()
    }

    fn send_with(&mut self, len: usize, f: &mut dyn FnMut(&mut [u8]) -> bool) -> bool {
        let (_, tx, view) = self.xsk.split();
        let capture = self.capture.as_mut();
        let mut t = XskTx { tx, view, scratch: &mut self.scratch, loss: &mut self.tx_loss, capture };
        t.write(len, |b| ((), f(b))).is_some_and(|(_, queued)| queued)
    }

    fn wait(&mut self, timeout: Duration, bell: Option<std::os::fd::BorrowedFd<'_>>) -> bool {
        self.xsk.rx.wait(timeout.as_millis().min(i32::MAX as u128) as i32, bell)
    }

    fn tx_trouble(&self) -> u64 {
        let t = self.xsk.tx.stats;
        t.starved + t.kick_wait
    }

    fn counters(&self, out: &mut Counters) {
        let (r, t) = (self.xsk.rx.stats, self.xsk.tx.stats);
        out.event("rx_frames", r.frames);
        out.event("tx_frames", t.frames);
        out.event("rx_wakeups", r.wakeups);
        out.event("tx_kicks", t.kicks);
        out.event("kick_wait", t.kick_wait);
        out.event("kick_retry", t.kick_retry);
        out.event("fill_ring_starved", r.fill_ring_starved);
        out.event("busy_polls", r.busy_polls);
        out.event("fill_full", r.fill_full);
        out.drop("tx_starved", t.starved);
        out.drop("tx_injected_drops", self.tx_loss.dropped);
        if let Some(c) = &self.capture {
            out.event("pcap_frames", c.captured);
            out.drop("pcap_dropped", c.dropped);
        }
    }
}

/// The first byte of a destination MAC that carries an arrival time
/// (`MAC_STAMP_MARK` in bpf/redirect.bpf.c).
const MAC_STAMP_MARK: u8 = 0xfa;

/// The arrival time the XDP program wrote over the destination MAC of
/// `frame` (its low 40 bits, big-endian, after a mark byte), with `mac`
/// put back in its place; 0 if the frame carries none. `now` (the same
/// monotonic clock, read after the frame arrived) gives the time its upper
/// bits: 2^40 ns is 18 minutes, far more than a frame waits in a ring.
pub fn take_mac_stamp(frame: &mut [u8], mac: [u8; 6], now: u64) -> u64 {
    let Some(d) = frame.get_mut(..6) else { return 0 };
    if d[0] != MAC_STAMP_MARK {
        return 0;
    }
    let low = d[1..].iter().fold(0u64, |t, &b| (t << 8) | u64::from(b));
    d.copy_from_slice(&mac);
    const SPAN: u64 = 1 << 40;
    let t = (now & !(SPAN - 1)) | low;
    if t <= now {
        t
    } else {
        t.saturating_sub(SPAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_stamp_gives_its_time_and_the_address_back() {
        let mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
        let stamped = |t: u64| {
            let mut f = vec![0u8; 60];
            f[0] = MAC_STAMP_MARK;
            for i in 0..5 {
                f[1 + i] = (t >> (32 - 8 * i)) as u8;
            }
            f
        };
        // Arrived 3 us before now, in the same 2^40 span.
        let now = 7 * (1u64 << 40) + 5_000_000;
        let mut f = stamped(now - 3_000);
        assert_eq!(take_mac_stamp(&mut f, mac, now), now - 3_000);
        assert_eq!(f[..6], mac);
        // Arrived just before the span turned over.
        let now = 7 * (1u64 << 40) + 1_000;
        let mut f = stamped(now - 2_000);
        assert_eq!(take_mac_stamp(&mut f, mac, now), now - 2_000);
        // A frame without the mark is left alone, and gives no time.
        let mut f = vec![0x02u8; 60];
        assert_eq!(take_mac_stamp(&mut f, mac, now), 0);
        assert_eq!(f, vec![0x02u8; 60]);
        assert_eq!(take_mac_stamp(&mut [MAC_STAMP_MARK, 1, 2], mac, now), 0, "too short");
    }

    use crate::stack::frame::tcp_flags;
    use crate::stack::sim::{tcp_frame, Seg, MAC_A, MAC_B};
    use smoltcp::wire::Ipv4Address;

    #[test]
    fn tx_loss_drops_every_nth_data_segment_only() {
        let (a, b) = (Ipv4Address::new(198, 18, 0, 1), Ipv4Address::new(198, 18, 0, 2));
        let seg = |payload: &[u8]| Seg {
            src_port: 7777,
            dst_port: 40000,
            flags: tcp_flags::ACK,
            window: 100,
            payload: payload.to_vec(),
            ..Seg::default()
        };
        let data = tcp_frame(MAC_A, MAC_B, a, b, &seg(&[1; 8]));
        let ack = tcp_frame(MAC_A, MAC_B, a, b, &seg(&[]));
        let mut l = TxLoss { every: 3, ..TxLoss::default() };
        let dropped: Vec<bool> = (0..6).map(|_| l.drop(&data)).collect();
        assert_eq!(dropped, [false, false, true, false, false, true]);
        assert!(!l.drop(&ack), "pure ACKs are never dropped");
        assert_eq!(l.dropped, 2);
    }
}
