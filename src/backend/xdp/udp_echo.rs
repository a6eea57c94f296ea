//! `--app udp-echo`: UDP echo straight from the AF_XDP rings, no TCP and no
//! smoltcp. It is the floor: the cost of AF_XDP itself on this machine, so
//! the benchmarks can show the stack's own cost above it.
//!
//! It answers ARP for its address, echoes every UDP datagram sent to its
//! port back to the sender with addresses and ports swapped (which leaves
//! both checksums valid), and clears sockperf's client flag (bit 0x0001 of
//! the u16 at payload offset 8) so `sockperf ping-pong` (UDP) can measure
//! it; the UDP checksum is then recomputed. Everything else is dropped and
//! counted.

use std::sync::atomic::{AtomicBool, Ordering};

use super::bpf::{Filter, XdpProgram};
use super::csum::{finish, sum16};
use super::xsk::{self, RxHalf, TxHalf, UmemView, Xsk};
use super::XdpConfig;
use crate::transport::WaitMode;

const ETH: usize = 14;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];

/// Counters, printed at exit.
#[derive(Debug, Default, Clone, Copy)]
pub struct UdpEchoStats {
    pub echoed: u64,
    pub arp_replies: u64,
    pub dropped: u64,
}

/// Turn the frame in `buf` into its reply in place. Returns false to drop.
pub fn reply_in_place(buf: &mut [u8], ip: [u8; 4], mac: [u8; 6], port: u16, stats: &mut UdpEchoStats) -> bool {
    if buf.len() < ETH {
        return false;
    }
    let ethertype = [buf[12], buf[13]];
    if ethertype == ETHERTYPE_ARP {
        // 28-byte ARP body: request (oper 1) for our address.
        let Some(a) = buf.get_mut(ETH..ETH + 28) else { return false };
        if a[0..2] != [0, 1] || a[2..4] != ETHERTYPE_IPV4 || a[6..8] != [0, 1] || a[24..28] != ip {
            return false;
        }
        a[7] = 2; // reply
        let (sha, spa) = ([a[8], a[9], a[10], a[11], a[12], a[13]], [a[14], a[15], a[16], a[17]]);
        a[18..24].copy_from_slice(&sha);
        a[24..28].copy_from_slice(&spa);
        a[8..14].copy_from_slice(&mac);
        a[14..18].copy_from_slice(&ip);
        buf.copy_within(6..12, 0);
        buf[6..12].copy_from_slice(&mac);
        stats.arp_replies += 1;
        return true;
    }
    if ethertype != ETHERTYPE_IPV4 || buf.len() < ETH + 20 {
        return false;
    }
    let ihl = usize::from(buf[ETH] & 0x0f) * 4;
    if buf[ETH] >> 4 != 4 || ihl < 20 || buf[ETH + 9] != 17 || buf[ETH + 16..ETH + 20] != ip {
        return false;
    }
    let total = usize::from(u16::from_be_bytes([buf[ETH + 2], buf[ETH + 3]]));
    let u = ETH + ihl;
    if total < ihl + 8 || buf.len() < ETH + total || u16::from_be_bytes([buf[u + 2], buf[u + 3]]) != port {
        return false;
    }
    let udp_len = total - ihl;
    // Swap MACs, addresses, ports.
    let src_mac = [buf[6], buf[7], buf[8], buf[9], buf[10], buf[11]];
    buf[0..6].copy_from_slice(&src_mac);
    buf[6..12].copy_from_slice(&mac);
    let (s, d) = (ETH + 12, ETH + 16);
    for i in 0..4 {
        buf.swap(s + i, d + i);
    }
    buf.swap(u, u + 2);
    buf.swap(u + 1, u + 3);
    // sockperf: clear the client flag, then recompute the UDP checksum.
    let payload = u + 8;
    if udp_len >= 8 + 14 && buf[payload + 9] & 1 != 0 {
        buf[payload + 9] &= !1;
        buf[u + 6] = 0;
        buf[u + 7] = 0;
        let mut acc = sum16(&buf[ETH + 12..ETH + 20], 0);
        acc += 17 + udp_len as u32;
        let c = finish(sum16(&buf[u..u + udp_len], acc));
        let c = if c == 0 { 0xffff } else { c };
        buf[u + 6..u + 8].copy_from_slice(&c.to_be_bytes());
    }
    stats.echoed += 1;
    true
}

fn echo_one(
    rx: &mut RxHalf,
    tx: &mut TxHalf,
    view: UmemView<'_>,
    ip: [u8; 4],
    mac: [u8; 6],
    port: u16,
    st: &mut UdpEchoStats,
) -> bool {
    let Some((frame, len)) = rx.take() else { return false };
    let Some(mut out) = tx.alloc() else {
        st.dropped += 1;
        rx.recycle(frame);
        return true;
    };
    {
        // SAFETY: `frame` came off the rx ring and `out` off the TX free
        // list: both are owned here, distinct, and the UMEM outlives them.
        #[allow(unsafe_code)]
        let (src, dst) = unsafe { (view.bytes(&frame, len), view.bytes_mut(&mut out, len)) };
        let n = src.len().min(dst.len());
        dst[..n].copy_from_slice(&src[..n]);
        if reply_in_place(&mut dst[..n], ip, mac, port, st) {
            rx.recycle(frame);
            tx.submit(out, n);
            return true;
        }
    }
    st.dropped += 1;
    rx.recycle(frame);
    tx.free(out);
    true
}

/// Run the UDP echo until `stop`.
pub fn run(cfg: XdpConfig, port: u16, stop: &AtomicBool) -> Result<UdpEchoStats, String> {
    let ifindex = xsk::ifindex(&cfg.iface).map_err(|e| e.to_string())?;
    let mac = super::mac_of(&cfg.iface).map_err(|e| e.to_string())?.0;
    let own = !xsk::kernel_ipv4_addrs(&cfg.iface).map_err(|e| e.to_string())?.contains(&cfg.ip);
    let mut prog = XdpProgram::attach(
        ifindex,
        Filter { ip: cfg.ip, local_ports: (0, 0), own_address: own, stamp_rx: false, drop_every: 0 },
    )?;
    if !own {
        prog.add_port(port)?;
    }
    let mut sock = Xsk::new(ifindex, &cfg.xsk).map_err(|e| format!("AF_XDP socket on {}: {e}", cfg.iface))?;
    prog.register_socket(cfg.xsk.queue, sock.fd())?;
    crate::log_info!(
        "serving udp-echo on {}:{port} backend=xdp ({} mode, {}) iface={}",
        cfg.ip,
        if sock.mode == xsk::BindMode::ZeroCopy { "zero-copy" } else { "copy" },
        if cfg.wait == WaitMode::Spin { "spin" } else { "blocking" },
        cfg.iface
    );
    let ip = cfg.ip.octets();
    let mut st = UdpEchoStats::default();
    while !stop.load(Ordering::Relaxed) {
        let (rx, tx, view) = sock.split();
        rx.wake_if_needed();
        let mut n = 0;
        while n < 64 && echo_one(rx, tx, view, ip, mac, port, &mut st) {
            n += 1;
        }
        rx.flush();
        tx.kick();
        tx.reap();
        if n == 0 && cfg.wait == WaitMode::Block {
            rx.wait(10);
        }
    }
    let x = prog.counters();
    crate::log_info!(
        "udp-echo: echoed={} arp_replies={} dropped={}; program seen={} redirected={} passed={} malformed={}",
        st.echoed,
        st.arp_replies,
        st.dropped,
        x.seen,
        x.redirected,
        x.passed,
        x.malformed
    );
    // The program first (no more redirects), then the socket.
    drop(prog);
    drop(sock);
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: [u8; 4] = [198, 18, 0, 1];
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn udp_frame(payload: &[u8], dport: u16) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&MAC);
        f.extend_from_slice(&PEER_MAC);
        f.extend_from_slice(&ETHERTYPE_IPV4);
        let total = (20 + 8 + payload.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 198, 18, 0, 2, 198, 18, 0, 1];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let c = finish(sum16(&ip, 0));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut udp = vec![0u8; 8];
        udp[0..2].copy_from_slice(&5555u16.to_be_bytes());
        udp[2..4].copy_from_slice(&dport.to_be_bytes());
        udp[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        udp.extend_from_slice(payload);
        let mut acc = sum16(&ip[12..20], 0) + 17 + udp.len() as u32;
        acc = sum16(&udp, acc);
        let c = finish(acc);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&udp);
        f
    }

    fn udp_checksum_ok(f: &[u8]) -> bool {
        let udp = &f[34..];
        let acc = sum16(&f[26..34], 0) + 17 + udp.len() as u32;
        finish(sum16(udp, acc)) == 0
    }

    #[test]
    fn echoes_udp_and_clears_the_sockperf_flag() {
        let mut payload = vec![0u8; 64];
        payload[9] = 0x03;
        let mut f = udp_frame(&payload, 7777);
        assert!(udp_checksum_ok(&f));
        let mut st = UdpEchoStats::default();
        assert!(reply_in_place(&mut f, IP, MAC, 7777, &mut st));
        assert_eq!(&f[0..6], &PEER_MAC);
        assert_eq!(&f[26..30], &IP, "source is now us");
        assert_eq!(&f[30..34], &[198, 18, 0, 2]);
        assert_eq!(u16::from_be_bytes([f[34], f[35]]), 7777);
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 5555);
        assert_eq!(f[42 + 9], 0x02, "client flag cleared");
        assert!(udp_checksum_ok(&f), "checksum recomputed");
        assert_eq!(finish(sum16(&f[14..34], 0)), 0, "IP checksum still valid");
        assert_eq!(st.echoed, 1);
    }

    #[test]
    fn drops_other_ports_garbage_and_short_frames() {
        let mut st = UdpEchoStats::default();
        let mut f = udp_frame(&[1, 2, 3], 9999);
        assert!(!reply_in_place(&mut f, IP, MAC, 7777, &mut st));
        let mut f = udp_frame(&[1, 2, 3], 7777);
        f[16..18].copy_from_slice(&1000u16.to_be_bytes()); // total length beyond the frame
        assert!(!reply_in_place(&mut f, IP, MAC, 7777, &mut st));
        for n in 0..40 {
            let mut short = udp_frame(&[0; 8], 7777);
            short.truncate(n);
            assert!(!reply_in_place(&mut short, IP, MAC, 7777, &mut st), "len {n}");
        }
    }

    #[test]
    fn answers_arp_for_its_address_only() {
        let mut f = Vec::new();
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&PEER_MAC);
        f.extend_from_slice(&ETHERTYPE_ARP);
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&PEER_MAC);
        f.extend_from_slice(&[198, 18, 0, 2]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&IP);
        let mut st = UdpEchoStats::default();
        let mut other = f.clone();
        other[38..42].copy_from_slice(&[198, 18, 0, 9]);
        assert!(!reply_in_place(&mut other, IP, MAC, 7777, &mut st));
        assert!(reply_in_place(&mut f, IP, MAC, 7777, &mut st));
        assert_eq!(&f[0..6], &PEER_MAC);
        assert_eq!(f[21], 2, "ARP reply");
        assert_eq!(&f[22..28], &MAC);
        assert_eq!(&f[28..32], &IP);
        assert_eq!(&f[32..38], &PEER_MAC);
        assert_eq!(st.arp_replies, 1);
    }
}
