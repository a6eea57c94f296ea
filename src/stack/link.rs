//! What the stack needs from the frame level beyond smoltcp's `Device`.

use std::time::Duration;

use smoltcp::phy::{Checksum, Device, DeviceCapabilities, Medium};

use crate::transport::Counters;

/// A frame-level link the stack runs on: smoltcp's [`Device`] plus the
/// staging, batching and waiting a busy-poll loop needs. Implemented over
/// AF_XDP rings (`backend::xdp::device`) and in memory ([`super::sim`]).
///
/// Staging: the stack looks at each frame before smoltcp does, to pick its
/// socket shard and to count what is malformed. [`Link::stage`] takes the
/// next received frame off the link and holds it; the next
/// [`Device::receive`] hands smoltcp exactly that frame and nothing else;
/// [`Link::unstage`] drops a staged frame smoltcp did not take.
pub trait Link: Device {
    /// The link's clock, in monotonic nanoseconds: the loop's clock for an
    /// AF_XDP socket, a virtual clock in memory. The stack reads no clock of
    /// its own; it asks once per poll.
    fn now_ns(&self) -> u64;

    /// Take the next received frame and hold it for the next `receive`:
    /// its bytes, and its arrival time if the link stamped one (0: none).
    fn stage(&mut self) -> Option<(&[u8], u64)>;

    /// Stage a copy of `frame` (one another loop received and passed over,
    /// [`super::handoff`]) as if it had just been received; false if the
    /// link cannot hold it.
    fn stage_copy(&mut self, frame: &[u8]) -> bool;

    /// The staged frame, to rewrite in place before smoltcp takes it.
    fn staged_mut(&mut self) -> Option<&mut [u8]>;

    /// Give back a staged frame smoltcp did not take.
    fn unstage(&mut self);

    /// Before a batch of ingress (AF_XDP: wake the kernel if it asks, busy
    /// poll the queue).
    fn begin_ingress(&mut self) {}

    /// After a batch of ingress: hand received frames back to the link.
    fn end_ingress(&mut self) {}

    /// Is the receive side starved (AF_XDP: the kernel holds few frames to
    /// receive into)? Asked after ingress when tracing.
    fn rx_starved(&mut self) -> bool {
        false
    }

    /// Put queued frames on the wire (AF_XDP: one kick per batch).
    fn flush(&mut self);

    /// Is there room for one more frame now (AF_XDP: a free TX frame)?
    /// `transmit` answers None when there is not: the stack keeps what it
    /// would send, and loss recovery retries at the next poll.
    fn tx_room(&mut self) -> bool;

    /// Write a frame of `len` bytes with `f` and queue it, unless `f`
    /// returns false: then the frame goes back to the link unsent. True
    /// when the frame was queued (or dropped by fault injection, which
    /// stands for the wire); false, without calling `f`, when the link has
    /// no room.
    fn send_with(&mut self, len: usize, f: &mut dyn FnMut(&mut [u8]) -> bool) -> bool;

    /// Sleep until a frame arrives, `bell` is readable (a frame another
    /// loop handed over: [`super::handoff::Doorbell`]) or `timeout` passes;
    /// true when `bell` is readable.
    fn wait(&mut self, timeout: Duration, bell: Option<std::os::fd::BorrowedFd<'_>>) -> bool;

    /// Transmissions so far that found no room or a busy kernel (a change
    /// raises the kick-wait signal).
    fn tx_trouble(&self) -> u64 {
        0
    }

    /// The link's own counters.
    fn counters(&self, _out: &mut Counters) {}
}

/// The capabilities of an Ethernet link under the stack: frames up to
/// `mtu` bytes; checksums computed by smoltcp on TX and not verified again
/// on RX, because the stack verified them (and counted failures) before
/// smoltcp saw the frame (`frame::classify`).
pub fn capabilities(mtu: usize) -> DeviceCapabilities {
    let mut caps = DeviceCapabilities::default();
    caps.medium = Medium::Ethernet;
    caps.max_transmission_unit = mtu;
    caps.checksum.ipv4 = Checksum::Tx;
    caps.checksum.tcp = Checksum::Tx;
    caps.checksum.udp = Checksum::Tx;
    caps.checksum.icmpv4 = Checksum::Tx;
    caps
}
