//! The AF_XDP device in process, on a veth of a private lab (root): what it
//! tells the stack about its room to send.

use std::time::Duration;

use smoltcp::phy::{Device, TxToken};
use smoltcp::time::Instant;

use tailgate::backend::xdp::device::XskDevice;
use tailgate::backend::xdp::xsk::{Xsk, XskConfig, ZeroCopy};
use tailgate::stack::Link;

mod common;
use common::*;

/// With every TX frame queued and not yet sent, asking for another makes
/// the device send what is queued (a kick) and take back what the kernel
/// completed, rather than refuse while the ring still has room. A token is
/// granted only for a frame that is really queued (never one that writes
/// to scratch and drops the frame while its writer counts it sent), and
/// `send_with` calls its writer only when it queues. Once the kernel has
/// sent everything, there is room again.
#[test]
fn an_xsk_device_with_every_tx_frame_queued_sends_them_to_make_room() {
    if !lab_available("an_xsk_device_with_every_tx_frame_queued_sends_them_to_make_room") {
        return;
    }
    let lab = Lab::up(true);
    let (ns, ifname) = (lab.ns_gw.clone(), lab.if_gw.clone());
    let (granted, queued, kicks, starved, wrote_and_queued, room_after) = lab.in_ns(&ns, move || {
        let ifindex = tailgate::sys::net::ifindex(&ifname).expect("the lab's interface");
        // 64 frames: 32 for receiving, 32 for sending, a 32-entry TX ring.
        let cfg = XskConfig { frames: 64, ring_size: 32, zero_copy: ZeroCopy::Off, ..XskConfig::default() };
        let mut dev = XskDevice::new(Xsk::new(ifindex, &cfg).expect("an AF_XDP socket on the lab veth"));
        let mut granted = 0;
        for _ in 0..100 {
            let Some(tok) = dev.transmit(Instant::ZERO) else { break };
            tok.consume(60, |b| b.fill(0xee));
            granted += 1;
        }
        let mut called = false;
        let sent = dev.send_with(60, &mut |_| {
            called = true;
            true
        });
        dev.flush();
        std::thread::sleep(Duration::from_millis(20));
        let room_after = dev.tx_room();
        let mut c = tailgate::transport::Counters::default();
        dev.counters(&mut c);
        let n = |k: &str| c.get(k).unwrap_or(0);
        (granted, n("tx_frames"), n("tx_kicks"), n("tx_starved"), called == sent, room_after)
    });
    assert!(granted > 32, "past the 32 TX frames the device sent the queued ones to make room: {granted}");
    assert!(kicks >= 1, "it kicked to make room");
    let refused = 100 - granted;
    assert!(refused == 0 || starved >= 1, "{refused} refusals, {starved} counted");
    // Every token granted (and the send_with, if it wrote) is a frame queued.
    assert!(queued == granted || queued == granted + 1, "{granted} tokens, {queued} frames queued");
    assert!(wrote_and_queued, "send_with's writer is called exactly when it queues");
    assert!(room_after, "the kernel sent the frames and gave them back");
}
