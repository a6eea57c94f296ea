//! The stack in memory: a link pair with a virtual clock and a programmable
//! wire, for deterministic tests that need no root and no network (as
//! smoltcp tests itself over `phy::Loopback` with time passed in).
//!
//! * [`Clock`]: virtual monotonic nanoseconds, shared by both ends; only the
//!   test moves it.
//! * [`pair`]: two [`MemLink`]s wired back to back. Each direction is a
//!   [`Wire`] with a latency and a [`Rule`] that decides each frame's
//!   [`Fate`]: deliver, drop, delay, duplicate, or hold it back behind the
//!   next frame (reorder).
//! * Two [`Stack`](super::Stack)s over the pair talk TCP to each other; or
//!   one end is driven by hand as a scripted peer ([`Peer`]) that sends and
//!   receives crafted segments ([`Seg`], [`tcp_frame`]).
//!
//! Everything is single-threaded (`Rc`), and allocation is fine here: this
//! is test equipment, not the data path.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet,
    Icmpv4Repr, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};

use super::frame::{emit_arp, emit_tcp, flags_of, tcp_flags, tcp_frame_len, ARP_FRAME_LEN};
use super::link::Link;
use crate::transport::Counters;

/// Hardware addresses of the two ends of a [`pair`].
pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// Largest Ethernet frame on the wire (1500-byte IP MTU).
pub const ETH_MTU: usize = 1514;

/// A virtual clock in monotonic nanoseconds, shared by whoever clones it.
#[derive(Debug, Clone, Default)]
pub struct Clock(Rc<Cell<u64>>);

impl Clock {
    /// A clock at `start_ns` (not 0: 0 means "no time" in traces).
    pub fn new(start_ns: u64) -> Self {
        Clock(Rc::new(Cell::new(start_ns)))
    }
    pub fn now(&self) -> u64 {
        self.0.get()
    }
    pub fn advance(&self, d: Duration) {
        self.0.set(self.0.get() + d.as_nanos() as u64);
    }
}

/// What the wire does with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    Drop,
    /// Deliver this much later than the wire's latency.
    Delay(Duration),
    /// Deliver it twice.
    Duplicate,
    /// Hold it until the next frame in this direction has gone, then
    /// deliver it right behind that one.
    Reorder,
}

/// A frame as the rule sees it: its index in this direction (0-based) and
/// its bytes; [`Seg::parse`] reads TCP out of them.
pub struct Sent<'a> {
    pub index: u64,
    pub bytes: &'a [u8],
}

/// Decides each frame's fate.
pub type Rule = Box<dyn FnMut(&Sent<'_>) -> Fate>;

/// One direction of the link.
pub struct Wire {
    clock: Clock,
    /// Frames in flight: (delivery time, bytes), in delivery order.
    queue: VecDeque<(u64, Vec<u8>)>,
    held: Option<Vec<u8>>,
    rule: Option<Rule>,
    pub latency: Duration,
    /// Frames offered, and what the rule did.
    pub sent: u64,
    pub dropped: u64,
    /// Every frame offered, when `capture` is on.
    pub capture: bool,
    pub captured: Vec<Vec<u8>>,
}

impl Wire {
    fn new(clock: Clock) -> Self {
        Wire {
            clock,
            queue: VecDeque::new(),
            held: None,
            rule: None,
            latency: Duration::from_micros(5),
            sent: 0,
            dropped: 0,
            capture: false,
            captured: Vec::new(),
        }
    }

    /// Program the wire: `rule` decides every frame from now on.
    pub fn set_rule(&mut self, rule: impl FnMut(&Sent<'_>) -> Fate + 'static) {
        self.rule = Some(Box::new(rule));
    }

    pub fn clear_rule(&mut self) {
        self.rule = None;
    }

    fn insert(&mut self, at: u64, bytes: Vec<u8>) {
        let pos = self.queue.iter().position(|(t, _)| *t > at).unwrap_or(self.queue.len());
        self.queue.insert(pos, (at, bytes));
    }

    /// Put a frame on the wire (through the rule).
    pub fn send(&mut self, bytes: Vec<u8>) {
        let index = self.sent;
        self.sent += 1;
        if self.capture {
            self.captured.push(bytes.clone());
        }
        let fate = match self.rule.as_mut() {
            Some(r) => r(&Sent { index, bytes: &bytes }),
            None => Fate::Deliver,
        };
        let at = self.clock.now() + self.latency.as_nanos() as u64;
        match fate {
            Fate::Deliver => self.insert(at, bytes),
            Fate::Drop => self.dropped += 1,
            Fate::Delay(d) => self.insert(at + d.as_nanos() as u64, bytes),
            Fate::Duplicate => {
                self.insert(at, bytes.clone());
                self.insert(at, bytes);
            }
            Fate::Reorder => {
                if let Some(old) = self.held.replace(bytes) {
                    self.insert(at, old);
                }
                return;
            }
        }
        if let Some(h) = self.held.take() {
            self.insert(at, h);
        }
    }

    /// The next frame due by now.
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        if self.queue.front().is_some_and(|(t, _)| *t <= self.clock.now()) {
            return self.queue.pop_front().map(|(_, b)| b);
        }
        None
    }

    /// Frames in flight (held ones included).
    pub fn in_flight(&self) -> usize {
        self.queue.len() + usize::from(self.held.is_some())
    }
}

/// One end of an in-memory link.
pub struct MemLink {
    pub clock: Clock,
    /// Frames to this end, and from it.
    pub inbox: Rc<RefCell<Wire>>,
    pub outbox: Rc<RefCell<Wire>>,
    staged: Option<Vec<u8>>,
    rx_frames: u64,
    /// While set, the link has no room to send (as an AF_XDP socket with
    /// every TX frame in flight): `transmit` is None and `send_with` false.
    pub tx_blocked: Rc<Cell<bool>>,
}

/// Two links back to back on `clock`: what `a` sends, `b` receives.
pub fn pair(clock: &Clock) -> (MemLink, MemLink) {
    let ab = Rc::new(RefCell::new(Wire::new(clock.clone())));
    let ba = Rc::new(RefCell::new(Wire::new(clock.clone())));
    let end = |inbox: &Rc<RefCell<Wire>>, outbox: &Rc<RefCell<Wire>>| MemLink {
        clock: clock.clone(),
        inbox: inbox.clone(),
        outbox: outbox.clone(),
        staged: None,
        rx_frames: 0,
        tx_blocked: Rc::new(Cell::new(false)),
    };
    (end(&ba, &ab), end(&ab, &ba))
}

impl MemLink {
    /// Send raw bytes (a scripted peer's frame).
    pub fn send_raw(&self, bytes: Vec<u8>) {
        self.outbox.borrow_mut().send(bytes);
    }

    /// The next raw frame due at this end.
    pub fn recv_raw(&self) -> Option<Vec<u8>> {
        self.inbox.borrow_mut().recv()
    }
}

pub struct MemRx(Vec<u8>);

pub struct MemTx {
    wire: Rc<RefCell<Wire>>,
}

impl phy::RxToken for MemRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for MemTx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len.min(ETH_MTU)];
        let r = f(&mut buf);
        self.wire.borrow_mut().send(buf);
        r
    }
}

impl Device for MemLink {
    type RxToken<'a> = MemRx;
    type TxToken<'a> = MemTx;

    fn receive(&mut self, _timestamp: Instant) -> Option<(MemRx, MemTx)> {
        let f = self.staged.take()?;
        Some((MemRx(f), MemTx { wire: self.outbox.clone() }))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<MemTx> {
        (!self.tx_blocked.get()).then(|| MemTx { wire: self.outbox.clone() })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        super::link::capabilities(ETH_MTU)
    }
}

impl Link for MemLink {
    fn now_ns(&self) -> u64 {
        self.clock.now()
    }

    fn stage(&mut self) -> Option<(&[u8], u64)> {
        let f = self.inbox.borrow_mut().recv()?;
        self.rx_frames += 1;
        let at = self.clock.now();
        Some((self.staged.insert(f).as_slice(), at))
    }

    fn stage_copy(&mut self, frame: &[u8]) -> bool {
        self.staged = Some(frame.to_vec());
        true
    }

    fn staged_mut(&mut self) -> Option<&mut [u8]> {
        self.staged.as_deref_mut()
    }

    fn unstage(&mut self) {
        self.staged = None;
    }

    fn flush(&mut self) {}

    fn tx_room(&mut self) -> bool {
        !self.tx_blocked.get()
    }

    fn send_with(&mut self, len: usize, f: &mut dyn FnMut(&mut [u8]) -> bool) -> bool {
        if self.tx_blocked.get() {
            return false;
        }
        let mut buf = vec![0u8; len.min(ETH_MTU)];
        if !f(&mut buf) {
            return false;
        }
        self.outbox.borrow_mut().send(buf);
        true
    }

    fn wait(&mut self, _timeout: Duration, _bell: Option<std::os::fd::BorrowedFd<'_>>) -> bool {
        // Virtual time moves only when the test moves it.
        false
    }

    fn counters(&self, out: &mut Counters) {
        out.event("rx_frames", self.rx_frames);
        out.event("tx_frames", self.outbox.borrow().sent);
    }
}

/// A TCP segment, for crafting frames and reading them back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Seg {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    /// [`tcp_flags`] bits.
    pub flags: u8,
    pub window: u16,
    pub payload: Vec<u8>,
    /// SACK permitted (on a SYN), and SACK blocks (at most 3).
    pub sack_permitted: bool,
    pub sack: Vec<(u32, u32)>,
    /// Window scale and MSS (on a SYN; a crafted SYN without an MSS says
    /// 1460).
    pub window_scale: Option<u8>,
    pub mss: Option<u16>,
}

impl Seg {
    /// The TCP segment in an Ethernet frame, if it is one (unchecked
    /// checksums: tests read what the stack sent).
    pub fn parse(frame: &[u8]) -> Option<(Ipv4Address, Ipv4Address, Seg)> {
        let (ip, t) = super::frame::tcp_segment(frame)?;
        let flags = flags_of(&t);
        let opts = t.options_summary().ok()?;
        let seg = Seg {
            src_port: t.src_port(),
            dst_port: t.dst_port(),
            seq: t.seq_number().0 as u32,
            ack: t.ack_number().0 as u32,
            flags,
            window: t.window_len(),
            payload: t.payload().to_vec(),
            sack_permitted: opts.sack_permitted,
            sack: opts.sack_ranges.iter().flatten().copied().collect(),
            window_scale: opts.window_scale,
            mss: opts.max_segment_size,
        };
        Some((ip.src_addr(), ip.dst_addr(), seg))
    }

    pub fn has(&self, flags: u8) -> bool {
        self.flags & flags == flags
    }

    /// Sequence space taken: payload, plus one for SYN and for FIN.
    pub fn len(&self) -> u32 {
        self.payload.len() as u32 + u32::from(self.has(tcp_flags::SYN)) + u32::from(self.has(tcp_flags::FIN))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An Ethernet frame carrying `seg` from `src` to `dst`, with correct
/// checksums.
pub fn tcp_frame(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Address, dst: Ipv4Address, seg: &Seg) -> Vec<u8> {
    let control =
        match (seg.flags & tcp_flags::SYN != 0, seg.flags & tcp_flags::FIN != 0, seg.flags & tcp_flags::RST != 0) {
            (true, _, _) => TcpControl::Syn,
            (_, true, _) => TcpControl::Fin,
            (_, _, true) => TcpControl::Rst,
            _ if seg.flags & tcp_flags::PSH != 0 => TcpControl::Psh,
            _ => TcpControl::None,
        };
    let tcp = TcpRepr {
        src_port: seg.src_port,
        dst_port: seg.dst_port,
        control,
        seq_number: TcpSeqNumber(seg.seq as i32),
        ack_number: (seg.flags & tcp_flags::ACK != 0).then_some(TcpSeqNumber(seg.ack as i32)),
        window_len: seg.window,
        window_scale: seg.window_scale,
        max_seg_size: (seg.flags & tcp_flags::SYN != 0).then_some(seg.mss.unwrap_or(1460)),
        sack_permitted: seg.sack_permitted,
        sack_ranges: [0, 1, 2].map(|i| seg.sack.get(i).copied()),
        timestamp: None,
        payload: &seg.payload,
    };
    let mut buf = vec![0u8; tcp_frame_len(&tcp)];
    emit_tcp(&mut buf, src_mac, dst_mac, src, dst, &tcp);
    buf
}

/// An Ethernet frame carrying an IPv4 packet of protocol `proto` with
/// payload `l4` (whose checksum the caller filled), from `src` to `dst`.
fn ipv4_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Address,
    dst: Ipv4Address,
    proto: IpProtocol,
    l4: &[u8],
) -> Vec<u8> {
    let ip = Ipv4Repr { src_addr: src, dst_addr: dst, next_header: proto, payload_len: l4.len(), hop_limit: 64 };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(src_mac),
        dst_addr: EthernetAddress(dst_mac),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut buf = vec![0u8; 14 + 20 + l4.len()];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut f);
    let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
    ip.emit(&mut p, &ChecksumCapabilities::default());
    p.payload_mut().copy_from_slice(l4);
    buf
}

/// An ICMP echo request (`ident`, `seq`, 32 bytes of data), as `ping` sends.
pub fn icmp_echo_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Address,
    dst: Ipv4Address,
    ident: u16,
    seq: u16,
) -> Vec<u8> {
    let data = [0x5au8; 32];
    let icmp = Icmpv4Repr::EchoRequest { ident, seq_no: seq, data: &data };
    let mut l4 = vec![0u8; icmp.buffer_len()];
    icmp.emit(&mut Icmpv4Packet::new_unchecked(&mut l4[..]), &ChecksumCapabilities::default());
    ipv4_frame(src_mac, dst_mac, src, dst, IpProtocol::Icmp, &l4)
}

/// A UDP datagram from `sport` to `dport` carrying `payload`.
pub fn udp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Address,
    dst: Ipv4Address,
    (sport, dport): (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    let udp = UdpRepr { src_port: sport, dst_port: dport };
    let mut l4 = vec![0u8; udp.header_len() + payload.len()];
    udp.emit(
        &mut UdpPacket::new_unchecked(&mut l4[..]),
        &src.into(),
        &dst.into(),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
    ipv4_frame(src_mac, dst_mac, src, dst, IpProtocol::Udp, &l4)
}

/// A scripted peer on one end of a link: it answers ARP for its address,
/// and sends and receives crafted TCP segments.
pub struct Peer {
    pub link: MemLink,
    pub mac: [u8; 6],
    pub ip: Ipv4Address,
    /// The stack's addresses on the other end.
    pub stack_mac: [u8; 6],
    pub stack_ip: Ipv4Address,
    /// Frames it received that were neither ARP nor TCP.
    pub other: Vec<Vec<u8>>,
}

impl Peer {
    pub fn new(link: MemLink, mac: [u8; 6], ip: Ipv4Address, stack_mac: [u8; 6], stack_ip: Ipv4Address) -> Self {
        Peer { link, mac, ip, stack_mac, stack_ip, other: Vec::new() }
    }

    /// Send `seg` to the stack.
    pub fn send(&self, seg: &Seg) {
        self.link.send_raw(tcp_frame(self.mac, self.stack_mac, self.ip, self.stack_ip, seg));
    }

    /// Send arbitrary bytes.
    pub fn send_raw(&self, bytes: Vec<u8>) {
        self.link.send_raw(bytes);
    }

    /// Every TCP segment due now, answering ARP requests for our address on
    /// the way; other frames (ARP replies included) go to `other`.
    pub fn recv(&mut self) -> Vec<Seg> {
        let mut out = Vec::new();
        while let Some(f) = self.link.recv_raw() {
            if let Some((_, _, seg)) = Seg::parse(&f) {
                out.push(seg);
            } else if !self.answer_arp(&f) {
                self.other.push(f);
            }
        }
        out
    }

    fn answer_arp(&self, f: &[u8]) -> bool {
        let Ok(eth) = EthernetFrame::new_checked(f) else { return false };
        if eth.ethertype() != EthernetProtocol::Arp {
            return false;
        }
        let Ok(p) = ArpPacket::new_checked(eth.payload()) else { return false };
        let Ok(ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        }) = ArpRepr::parse(&p)
        else {
            // Replies (and anything else) are the test's to look at.
            return false;
        };
        if target_protocol_addr != self.ip {
            return true;
        }
        let mut buf = vec![0u8; ARP_FRAME_LEN];
        emit_arp(&mut buf, ArpOperation::Reply, self.mac, self.ip, source_hardware_addr.0, source_protocol_addr);
        self.link.send_raw(buf);
        true
    }

    /// An ARP request for `target` from this peer (to see the stack answer).
    pub fn arp_request(&self, target: Ipv4Address) -> Vec<u8> {
        let mut buf = vec![0u8; ARP_FRAME_LEN];
        emit_arp(&mut buf, ArpOperation::Request, self.mac, self.ip, [0; 6], target);
        buf
    }
}
