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

/// With every TX frame queued and not yet sent, `transmit` says there is
/// no room (instead of handing out a token that writes to scratch and
/// drops the frame while its writer counts it sent), and `send_with`
/// queues nothing; once the kernel has sent them, there is room again.
#[test]
fn an_xsk_device_with_every_tx_frame_in_flight_says_so() {
    if !lab_available("an_xsk_device_with_every_tx_frame_in_flight_says_so") {
        return;
    }
    let lab = Lab::up(true);
    let (ns, ifname) = (lab.ns_gw.clone(), lab.if_gw.clone());
    let (granted, room_full, sent_full, room_after, starved) = lab.in_ns(&ns, move || {
        let ifindex = tailgate::sys::net::ifindex(&ifname).expect("the lab's interface");
        // 64 frames: 32 for receiving, 32 for sending.
        let cfg = XskConfig { frames: 64, ring_size: 32, zero_copy: ZeroCopy::Off, ..XskConfig::default() };
        let mut dev = XskDevice::new(Xsk::new(ifindex, &cfg).expect("an AF_XDP socket on the lab veth"));
        let mut granted = 0;
        for _ in 0..100 {
            let Some(tok) = dev.transmit(Instant::ZERO) else { break };
            tok.consume(60, |b| b.fill(0xee));
            granted += 1;
        }
        let room_full = dev.tx_room();
        let mut called = false;
        let sent_full = dev.send_with(60, &mut |_| {
            called = true;
            true
        });
        assert!(!called, "send_with wrote a frame it had no room for");
        dev.flush();
        std::thread::sleep(Duration::from_millis(20));
        let room_after = dev.tx_room();
        let mut c = tailgate::transport::Counters::default();
        dev.counters(&mut c);
        (granted, room_full, sent_full, room_after, c.get("tx_starved").unwrap_or(0))
    });
    assert_eq!(granted, 32, "tokens for 32 TX frames, then none");
    assert!(!room_full && !sent_full);
    assert!(room_after, "the kernel sent the frames and gave them back");
    assert!(starved >= 1);
}
