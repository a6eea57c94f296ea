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

use smoltcp::phy::{self, Checksum, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::csum::{sum16, verifies};
use super::xsk::{Frame, RxHalf, TxHalf, UmemView, Xsk};

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
        if self.every == 0 || !tcp_payload(frame) {
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

/// Is this an IPv4 TCP segment carrying payload?
fn tcp_payload(b: &[u8]) -> bool {
    if b.len() < 14 + 20 + 20 || b[12..14] != [0x08, 0x00] || b[23] != 6 {
        return false;
    }
    let ihl = usize::from(b[14] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([b[16], b[17]]));
    let Some(&off) = b.get(14 + ihl + 12) else { return false };
    total > ihl + usize::from(off >> 4) * 4
}

pub struct XskDevice {
    pub xsk: Xsk,
    pub tx_loss: TxLoss,
    /// The frame the next `receive` hands to smoltcp (see [`XskDevice::stage_next`]).
    staged: Option<(Frame, usize)>,
    /// Where a TX token writes when no TX frame is free: the frame is then
    /// dropped (and counted), and TCP retransmits.
    scratch: Box<[u8; ETH_MTU]>,
}

impl XskDevice {
    pub fn new(xsk: Xsk) -> Self {
        XskDevice { xsk, tx_loss: TxLoss::default(), staged: None, scratch: Box::new([0u8; ETH_MTU]) }
    }

    /// Take the next frame off the rx ring and classify it; smoltcp gets it
    /// at the next `receive`. The stack uses the key to pick the socket
    /// shard the frame belongs to.
    pub fn stage_next(&mut self) -> Option<FrameKey> {
        self.drop_staged();
        let (frame, len) = self.xsk.rx.take()?;
        let view = self.xsk.view();
        // SAFETY: the frame just came off the rx ring and is owned here; the
        // UMEM lives as long as `self.xsk`.
        let mut key = classify(unsafe { view.bytes(&frame, len) });
        // SAFETY: as above; the headroom in front of the data is part of
        // the same owned chunk.
        key.rx_ns = unsafe { view.take_rx_meta(&frame) }.unwrap_or(0);
        self.staged = Some((frame, len));
        Some(key)
    }

    /// Recycle a staged frame smoltcp did not take.
    pub fn drop_staged(&mut self) {
        if let Some((frame, _)) = self.staged.take() {
            self.xsk.rx.recycle(frame);
        }
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
    view: UmemView<'a>,
    frame: Frame,
    len: usize,
}

pub struct XskTx<'a> {
    tx: &'a mut TxHalf,
    view: UmemView<'a>,
    scratch: &'a mut [u8; ETH_MTU],
    loss: &'a mut TxLoss,
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
                let bytes = unsafe { self.view.bytes_mut(&mut frame, len) };
                let r = f(&mut *bytes);
                if self.loss.every != 0 && self.loss.drop(bytes) {
                    self.tx.free(frame);
                } else {
                    self.tx.submit(frame, len);
                }
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
        let (frame, len) = self.staged.take()?;
        let (rx, tx, view) = self.xsk.split();
        Some((XskRx { rx, view, frame, len }, XskTx { tx, view, scratch: &mut self.scratch, loss: &mut self.tx_loss }))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<XskTx<'_>> {
        let (_, tx, view) = self.xsk.split();
        Some(XskTx { tx, view, scratch: &mut self.scratch, loss: &mut self.tx_loss })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = ETH_MTU;
        // Compute on TX; RX was verified (and failures counted) by
        // `checksums_ok` before smoltcp saw the frame.
        caps.checksum.ipv4 = Checksum::Tx;
        caps.checksum.tcp = Checksum::Tx;
        caps.checksum.udp = Checksum::Tx;
        caps.checksum.icmpv4 = Checksum::Tx;
        // Our TX always writes full checksums, and RX verifies them: the lab
        // turns offloads off, so every frame arrives with full checksums.
        caps
    }
}

/// What the stack needs to know about a frame before smoltcp sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameKey {
    /// `(remote address, remote port, local port)` of an IPv4 TCP segment
    /// (first fragment or unfragmented); `None` for anything else.
    pub tuple: Option<(u32, u16, u16)>,
    /// A SYN without ACK: a new inbound connection.
    pub syn: bool,
    /// The TCP flags byte (0 when `tuple` is `None`).
    pub flags: u8,
    /// Checksums hold (see [`checksums_ok`]); smoltcp does not check again.
    pub valid: bool,
    /// TCP sequence number, payload length and advertised window (raw,
    /// unscaled), for tracing; 0 when `tuple` is `None`.
    pub seq: u32,
    pub payload: u16,
    pub window: u16,
    /// Arrival time stamped by the XDP program (0: none).
    pub rx_ns: u64,
}

/// Read the TCP 4-tuple of an Ethernet frame, bounds-checked; anything that
/// is not a well-formed IPv4 TCP header gives `tuple: None`.
pub fn classify(b: &[u8]) -> FrameKey {
    let valid = checksums_ok(b);
    let none = FrameKey { tuple: None, syn: false, flags: 0, valid, seq: 0, payload: 0, window: 0, rx_ns: 0 };
    if b.len() < 14 + 20 || b[12..14] != [0x08, 0x00] || b[14] >> 4 != 4 {
        return none;
    }
    let ihl = usize::from(b[14] & 0x0f) * 4;
    if ihl < 20 || b[23] != 6 || u16::from_be_bytes([b[20], b[21]]) & 0x1fff != 0 {
        return none;
    }
    let l4 = 14 + ihl;
    let Some(t) = b.get(l4..l4 + 14) else { return none };
    let remote = u32::from_be_bytes([b[26], b[27], b[28], b[29]]);
    let flags = t[13];
    let total = usize::from(u16::from_be_bytes([b[16], b[17]]));
    let doff = usize::from(t[12] >> 4) * 4;
    let window = b.get(l4 + 14..l4 + 16).map_or(0, |w| u16::from_be_bytes([w[0], w[1]]));
    FrameKey {
        tuple: Some((remote, u16::from_be_bytes([t[0], t[1]]), u16::from_be_bytes([t[2], t[3]]))),
        syn: flags & 0x12 == 0x02,
        flags,
        valid,
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        payload: total.saturating_sub(ihl + doff).min(usize::from(u16::MAX)) as u16,
        window,
        rx_ns: 0,
    }
}

/// Do the IPv4 header checksum and, for an unfragmented TCP, UDP or ICMP
/// packet, its checksum hold? Non-IPv4 frames (ARP) pass: smoltcp parses
/// them through its own checked views. A truncated IPv4 packet fails.
/// The stack verifies here, counts failures, and tells smoltcp not to verify
/// again (the lab and every sane peer send full checksums; see the design
/// notes on veth checksum offload).
pub fn checksums_ok(b: &[u8]) -> bool {
    if b.len() < 14 || b[12..14] != [0x08, 0x00] {
        return true;
    }
    let Some(ip) = b.get(14..) else { return false };
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return false;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ihl < 20 || total < ihl || ip.len() < total {
        return false;
    }
    if !verifies(sum16(&ip[..ihl], 0)) {
        return false;
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & 0x3fff != 0 {
        return true; // a fragment: smoltcp (built without reassembly) drops it
    }
    let l4 = &ip[ihl..total];
    let proto = ip[9];
    let pseudo = || sum16(&ip[12..20], u32::from(proto) + l4.len() as u32);
    match proto {
        6 => l4.len() >= 20 && verifies(sum16(l4, pseudo())),
        17 => l4.len() >= 8 && ((l4[6] == 0 && l4[7] == 0) || verifies(sum16(l4, pseudo()))),
        1 => l4.len() >= 8 && verifies(sum16(l4, 0)),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::super::csum::finish;
    use super::*;

    fn tcp_frame(flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 2, 198, 18, 0, 1];
        f.append(&mut ip);
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&7777u16.to_be_bytes());
        tcp[13] = flags;
        f.append(&mut tcp);
        f
    }

    #[test]
    fn classifies_tcp_and_syn() {
        let remote = u32::from_be_bytes([198, 18, 0, 2]);
        let k = classify(&tcp_frame(0x02));
        assert_eq!((k.tuple, k.syn), (Some((remote, 40000, 7777)), true));
        assert!(!classify(&tcp_frame(0x12)).syn, "SYN-ACK is not a new connection");
        assert_eq!(classify(&tcp_frame(0x10)).tuple, Some((remote, 40000, 7777)));
    }

    #[test]
    fn tx_loss_drops_every_nth_data_segment_only() {
        let mut data = tcp_frame(0x18);
        data[46] = 5 << 4;
        data.extend_from_slice(&[1u8; 8]);
        data[16..18].copy_from_slice(&(20u16 + 20 + 8).to_be_bytes());
        let mut ack = tcp_frame(0x10);
        ack[46] = 5 << 4;
        let mut l = TxLoss { every: 3, ..TxLoss::default() };
        let dropped: Vec<bool> = (0..6).map(|_| l.drop(&data)).collect();
        assert_eq!(dropped, [false, false, true, false, false, true]);
        assert!(!l.drop(&ack), "pure ACKs are never dropped");
        assert_eq!(l.dropped, 2);
    }

    #[test]
    fn reads_seq_payload_and_window() {
        let mut f = tcp_frame(0x18);
        f[38..42].copy_from_slice(&123_456u32.to_be_bytes());
        f[46] = 5 << 4; // data offset: 20 bytes
        f[48..50].copy_from_slice(&512u16.to_be_bytes());
        f.extend_from_slice(&[7u8; 10]);
        f[16..18].copy_from_slice(&(20u16 + 20 + 10).to_be_bytes());
        let k = classify(&f);
        assert_eq!((k.seq, k.payload, k.window), (123_456, 10, 512));
    }

    /// A frame with correct checksums, built by hand.
    fn valid_tcp_frame() -> Vec<u8> {
        let mut f = tcp_frame(0x02);
        let c = finish(sum16(&f[14..34], 0));
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let c = finish(sum16(&f[34..54], sum16(&f[26..34], 6 + 20)));
        f[50..52].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn checksums_are_verified() {
        let good = valid_tcp_frame();
        assert!(checksums_ok(&good));
        assert!(classify(&good).valid);
        for i in 14..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(!checksums_ok(&bad), "flipped byte {i} passed");
        }
        assert!(!checksums_ok(&good[..40]), "truncated packet passed");
        let mut arp = good.clone();
        arp[13] = 0x06;
        assert!(checksums_ok(&arp), "non-IPv4 is smoltcp's to parse");
    }

    #[test]
    fn anything_else_has_no_tuple() {
        let mut udp = tcp_frame(0);
        udp[23] = 17;
        assert_eq!(classify(&udp).tuple, None);
        let mut frag = tcp_frame(0);
        frag[21] = 1; // a later fragment: no ports
        assert_eq!(classify(&frag).tuple, None);
        let mut arp = tcp_frame(0);
        arp[13] = 0x06;
        assert_eq!(classify(&arp).tuple, None);
        // Ethernet 14 + IPv4 20 + the TCP bytes up to the flags (14).
        let full = tcp_frame(0x02);
        for n in 0..14 + 20 + 14 {
            assert_eq!(classify(&full[..n]).tuple, None, "cut at {n}");
        }
        assert!(classify(&full[..48]).tuple.is_some());
    }
}
