//! The kernel-bypass backend: an XDP program redirects the stack's frames to
//! an AF_XDP socket, and a smoltcp TCP/IP stack in this process serves them.
//!
//! ```text
//! bpf.rs     load + attach (bpf_link) the redirect program, its maps and counters
//! xsk.rs     the AF_XDP socket: UMEM, fill/completion/rx/tx rings (the unsafe part)
//! device.rs  smoltcp::phy::Device over the rings, no allocation per frame
//! mod.rs     the stack: smoltcp Interface + sockets behind `Transport`
//! ```
//!
//! The stack owns its IPv4 address on the interface: it answers ARP for it
//! and learns neighbours itself, so it works on an interface where the kernel
//! has no address. Every TCP socket has Nagle and delayed ACK off. A listening
//! port is a pool of `backlog` listening sockets (a smoltcp socket in Listen
//! accepts one connection), refilled as connections arrive.

pub mod bpf;
pub mod csum;
pub mod device;
pub mod udp_echo;
pub mod xsk;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use slab::Slab;
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, RecvError, SendError, State};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use self::bpf::{Filter, XdpProgram};
use self::device::XskDevice;
use self::xsk::{BindMode, Xsk, XskConfig};
use crate::clock;
use crate::sampler::cause;
use crate::transport::{BackendCounters, ConnId, Event, RxTrace, Transport, TransportStats, WaitMode};

/// How often an idle loop runs one shard's egress for smoltcp's timers
/// (each shard's timers are served every `SHARDS` times this).
const TIMER_EGRESS_NS: u64 = 100_000;

/// Egress rounds per shard per flush (each round: one segment per socket).
const EGRESS_ROUNDS: usize = 64;

/// Frames taken off the rx ring per poll: bounded work per iteration.
const INGRESS_BUDGET: usize = 64;

/// How long a closed connection may take to finish its close handshake
/// before it is aborted and its socket freed.
const ZOMBIE_NS: u64 = 5_000_000_000;

/// Configuration of the xdp backend.
#[derive(Debug, Clone)]
pub struct XdpConfig {
    pub iface: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub xsk: XskConfig,
    pub wait: WaitMode,
    /// Listening sockets per port: connections that can complete their
    /// handshake before the application sees them.
    pub backlog: usize,
    /// Most open connections (accepted plus connected).
    pub max_conns: usize,
    /// Per-socket receive and send buffers in bytes.
    pub sock_rx_buf: usize,
    pub sock_tx_buf: usize,
    /// Inclusive local port range for outbound connections.
    pub local_ports: (u16, u16),
    /// Have the XDP program stamp arrival times (for sampling).
    pub stamp_rx: bool,
    /// `--inject loss:N`: the XDP program drops every N-th TCP data segment.
    pub drop_every: u32,
    /// `--inject tx-loss:N`: drop every N-th TCP data segment transmitted.
    pub tx_drop_every: u32,
}

impl XdpConfig {
    pub fn new(iface: &str, ip: Ipv4Addr) -> Self {
        XdpConfig {
            iface: iface.to_string(),
            ip,
            prefix: 24,
            xsk: XskConfig::default(),
            wait: WaitMode::Spin,
            backlog: 16,
            max_conns: 4096,
            sock_rx_buf: 64 * 1024,
            sock_tx_buf: 64 * 1024,
            local_ports: (61000, 65535),
            stamp_rx: false,
            drop_every: 0,
            tx_drop_every: 0,
        }
    }
}

#[derive(Debug)]
struct Conn {
    shard: usize,
    handle: SocketHandle,
    /// Accepted or Connected has been reported.
    reported: bool,
    active_open: bool,
    /// A Readable for the end of the stream (FIN or reset) has been reported.
    eof_reported: bool,
    /// The last send found no room.
    want_write: bool,
    /// Tracing: the flow key, once known (0: not yet).
    flow: u64,
    /// The local port an outbound connection holds (0: accepted).
    local_port: u16,
}

/// One slice of the socket table. Frames are demultiplexed to a shard by
/// their TCP 4-tuple before smoltcp sees them, so smoltcp's linear walks
/// (matching a packet to its socket, egress over every socket) cover one
/// shard, not every connection.
struct Shard {
    sockets: SocketSet<'static>,
    /// Listening sockets: `(port, handle)`, one per port at least.
    listeners: Vec<(u16, SocketHandle)>,
    /// Connections (ids into `conns`) living in this shard.
    conns: Vec<usize>,
    /// Ingress or egress touched this shard since the last scan.
    scan: bool,
    /// Something may be waiting to go out (ACK owed, data queued, close).
    egress: bool,
}

/// What tracing knows about one TCP flow, kept from its frames as they
/// arrive (before smoltcp), so a message held in smoltcp's reassembly
/// buffer behind a lost segment still shows when it arrived.
#[derive(Debug, Default, Clone, Copy)]
struct Flow {
    /// Arrival of the oldest payload not yet read by the application.
    first_rx: u64,
    /// Arrival of the newest payload.
    last_rx: u64,
    /// Next sequence number expected (valid once `seq_known`).
    next: u32,
    seq_known: bool,
    /// Sampler cause flags since the application last read.
    flags: u32,
}

impl Flow {
    /// One segment of this flow arrived at `ts`.
    fn segment(&mut self, seq: u32, payload: u16, window: u16, tcp_flags: u8, ts: u64) {
        const RST: u8 = 0x04;
        const SYN: u8 = 0x02;
        if tcp_flags & SYN != 0 {
            *self = Flow { next: seq.wrapping_add(1), seq_known: true, ..Flow::default() };
            return;
        }
        if tcp_flags & RST != 0 {
            return;
        }
        if window == 0 {
            self.flags |= cause::ZERO_WINDOW;
        }
        if payload == 0 {
            return;
        }
        if self.first_rx == 0 {
            self.first_rx = ts;
        }
        self.last_rx = ts;
        let end = seq.wrapping_add(u32::from(payload));
        if self.seq_known {
            // Ahead of what we expect: a segment before it was lost. Behind
            // it: the peer sent these bytes again. Either way the stream
            // waited for a retransmission.
            if seq != self.next {
                self.flags |= cause::RETRANSMIT;
            }
            if (end.wrapping_sub(self.next) as i32) > 0 {
                self.next = end;
            }
        } else {
            self.next = end;
            self.seq_known = true;
        }
    }
}

/// Multiplicative hash for flow keys (already well mixed 64-bit values).
#[derive(Default)]
struct FlowHasher(u64);

impl Hasher for FlowHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type FlowMap = HashMap<u64, Flow, BuildHasherDefault<FlowHasher>>;

fn flow_key(remote: u32, remote_port: u16, local_port: u16) -> u64 {
    (u64::from(remote) << 32) | (u64::from(remote_port) << 16) | u64::from(local_port)
}

/// Number of socket shards (a power of two).
pub const SHARDS: usize = 64;

/// The shard of a connection, from `(remote address, remote port, local port)`.
pub fn shard_of(remote: u32, remote_port: u16, local_port: u16) -> usize {
    let x = (u64::from(remote) << 32) | (u64::from(remote_port) << 16) | u64::from(local_port);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SHARDS.trailing_zeros())) as usize
}

/// The AF_XDP + smoltcp transport.
pub struct XdpTransport {
    // Drop order (fields drop in declaration order): the program first, so
    // its link detaches it and no frame is redirected to the socket any
    // more; then the device, which closes the socket and unmaps its rings
    // and UMEM (xsk.rs).
    prog: XdpProgram,
    dev: XskDevice,
    cfg: XdpConfig,
    iface: Interface,
    shards: Vec<Shard>,
    ports: Vec<u16>,
    conns: Slab<Conn>,
    /// Closing sockets: (shard, handle, deadline, local port held or 0).
    zombies: Vec<(usize, SocketHandle, u64, u16)>,
    pending: Vec<Event>,
    /// Local ports of outbound connections.
    local_ports: PortSet,
    stats: TransportStats,
    /// Connections refused because `max_conns` was reached.
    pub refused: u64,
    /// IPv4 frames dropped before smoltcp: truncated or bad checksum.
    pub rx_invalid: u64,
    own_address: bool,
    /// The loop's clock (monotonic ns), read once per poll or passed to flush.
    now_ns: u64,
    /// The same time for smoltcp.
    now: Instant,
    /// When an idle loop next runs egress for timers (monotonic ns).
    next_timer_egress: u64,
    /// The shard whose timers the idle loop serves next (round robin).
    timer_shard: usize,
    /// Shards marked for scan / egress, so an idle loop touches none.
    to_scan: Vec<usize>,
    to_egress: Vec<usize>,
    /// Scratch lists sized at start-up (no allocation per poll): shards
    /// egress left busy, connections found dead by a scan.
    busy_scratch: Vec<usize>,
    dead_scratch: Vec<usize>,
    /// Tracing: flows by key, the last recv's trace, loop flags so far.
    tracing: bool,
    flows: FlowMap,
    last_rx_trace: RxTrace,
    loop_flags: u32,
    tx_trouble: u64,
    /// The interface defers IRQs and the loop spins with busy poll: drive
    /// NAPI with a busy-poll syscall whenever the rx ring is empty.
    busy_poll_syscall: bool,
}

fn now_instant() -> Instant {
    instant_of(clock::mono_ns())
}

fn instant_of(ns: u64) -> Instant {
    Instant::from_micros((ns / 1000) as i64)
}

pub(crate) fn mac_of(iface: &str) -> io::Result<EthernetAddress> {
    let path = format!("/sys/class/net/{iface}/address");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("--iface {iface}: reading {path}: {e}")))?;
    let mut b = [0u8; 6];
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() != 6 {
        return Err(io::Error::other(format!("--iface {iface}: unexpected MAC address {text:?}")));
    }
    for (i, p) in parts.iter().enumerate() {
        b[i] = u8::from_str_radix(p, 16)
            .map_err(|_| io::Error::other(format!("--iface {iface}: unexpected MAC address {text:?}")))?;
    }
    Ok(EthernetAddress(b))
}

fn rx_queues(iface: &str) -> usize {
    std::fs::read_dir(format!("/sys/class/net/{iface}/queues"))
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count())
        .unwrap_or(1)
}

/// Local ports held by outbound connections, live or closing (one bit a
/// port), and where the next search starts: a port is handed out again only
/// once its socket is gone.
struct PortSet {
    bits: Vec<u64>,
    next: u16,
}

impl PortSet {
    fn new(first: u16) -> Self {
        PortSet { bits: vec![0; 65536 / 64], next: first }
    }

    /// Mark `port` held (or free). Port 0 (an accepted connection) is never held.
    fn set(&mut self, port: u16, held: bool) {
        if port == 0 {
            return;
        }
        let (w, b) = (usize::from(port) / 64, 1u64 << (port % 64));
        if held {
            self.bits[w] |= b;
        } else {
            self.bits[w] &= !b;
        }
    }

    fn is_held(&self, port: u16) -> bool {
        self.bits[usize::from(port) / 64] & (1u64 << (port % 64)) != 0
    }

    /// The first port not held, from where the last search ended, wrapping
    /// within `lo..=hi`; the search then moves past it.
    fn next_free(&mut self, lo: u16, hi: u16) -> Option<u16> {
        let span = u32::from(hi.checked_sub(lo)?) + 1;
        let mut port = self.next.clamp(lo, hi);
        for _ in 0..span {
            let following = if port >= hi { lo } else { port + 1 };
            if !self.is_held(port) {
                self.next = following;
                return Some(port);
            }
            port = following;
        }
        None
    }
}

impl XdpTransport {
    /// Attach the program, bind the socket, build the stack. Errors name the
    /// flag or the step that failed, so `--backend auto` can log one line.
    pub fn new(cfg: XdpConfig) -> io::Result<Self> {
        let ifindex = xsk::ifindex(&cfg.iface)?;
        let mac = mac_of(&cfg.iface)?;
        let kernel_addrs = xsk::kernel_ipv4_addrs(&cfg.iface)?;
        let own_address = !kernel_addrs.contains(&cfg.ip);
        let queues = rx_queues(&cfg.iface);
        if queues > 1 {
            crate::log_warn!(
                "--iface {}: {queues} rx queues, the stack binds queue {} only: steer its traffic there \
                 (ethtool -N ... action {}) or use one queue (ethtool -L)",
                cfg.iface,
                cfg.xsk.queue,
                cfg.xsk.queue
            );
        }
        let filter = Filter {
            ip: cfg.ip,
            local_ports: cfg.local_ports,
            own_address,
            stamp_rx: cfg.stamp_rx,
            drop_every: cfg.drop_every,
        };
        let mut prog = XdpProgram::attach(ifindex, filter).map_err(io::Error::other)?;
        let sock = Xsk::new(ifindex, &cfg.xsk).map_err(|e| {
            io::Error::new(e.kind(), format!("AF_XDP socket on {} queue {}: {e}", cfg.iface, cfg.xsk.queue))
        })?;
        prog.register_socket(cfg.xsk.queue, sock.fd()).map_err(io::Error::other)?;
        crate::log_info!(
            "xdp backend: {} (ifindex {ifindex}) queue {}: AF_XDP {} mode{}, need_wakeup, busy poll {}, UMEM {} MiB on {} pages; \
             stack owns {}{}",
            cfg.iface,
            cfg.xsk.queue,
            if sock.mode == BindMode::ZeroCopy { "zero-copy" } else { "copy" },
            if sock.mode == BindMode::Copy && cfg.xsk.zero_copy == xsk::ZeroCopy::Auto {
                " (zero-copy refused by the driver)"
            } else {
                ""
            },
            match (sock.busy_poll, cfg.xsk.busy_poll_us) {
                (_, 0) => "off",
                (true, _) => "on",
                (false, _) => "refused by the kernel",
            },
            (cfg.xsk.frames as usize * cfg.xsk.frame_size as usize) >> 20,
            if sock.hugepages { "2 MiB" } else { "4 KiB" },
            cfg.ip,
            if own_address { "" } else { " (shared with the kernel: only the stack's ports are redirected)" }
        );
        let defer = std::fs::read_to_string(format!("/sys/class/net/{}/napi_defer_hard_irqs", cfg.iface))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(0);
        let busy_poll_syscall = defer > 0 && cfg.wait == WaitMode::Spin && sock.busy_poll;
        if busy_poll_syscall {
            crate::log_info!(
                "xdp backend: {} defers IRQs (napi_defer_hard_irqs={defer}): the loop busy-polls the queue with a syscall when its rx ring is empty",
                cfg.iface
            );
        } else if defer > 0 {
            crate::log_warn!(
                "xdp backend: {} defers IRQs (napi_defer_hard_irqs={defer}) but the loop does not busy-poll (needs --spin and \
                 SO_BUSY_POLL): frames may wait up to gro_flush_timeout",
                cfg.iface
            );
        }
        let mut dev = XskDevice::new(sock);
        dev.tx_loss.every = cfg.tx_drop_every;
        let mut config = Config::new(HardwareAddress::Ethernet(mac));
        config.random_seed = clock::realtime_ns();
        let mut iface = Interface::new(config, &mut dev, now_instant());
        let cidr = IpCidr::new(IpAddress::Ipv4(cfg.ip), cfg.prefix);
        iface.update_ip_addrs(|a| {
            let _ = a.push(cidr);
        });
        let max_conns = cfg.max_conns;
        let first_local_port = cfg.local_ports.0;
        Ok(XdpTransport {
            cfg,
            iface,
            shards: (0..SHARDS)
                .map(|_| Shard {
                    sockets: SocketSet::new(Vec::new()),
                    listeners: Vec::new(),
                    conns: Vec::new(),
                    scan: false,
                    egress: false,
                })
                .collect(),
            dev,
            prog,
            ports: Vec::new(),
            conns: Slab::with_capacity(1024),
            zombies: Vec::new(),
            pending: Vec::new(),
            local_ports: PortSet::new(first_local_port),
            stats: TransportStats::default(),
            refused: 0,
            rx_invalid: 0,
            own_address,
            now_ns: clock::mono_ns(),
            now: now_instant(),
            next_timer_egress: 0,
            timer_shard: 0,
            to_scan: Vec::with_capacity(SHARDS),
            to_egress: Vec::with_capacity(SHARDS),
            busy_scratch: Vec::with_capacity(SHARDS),
            dead_scratch: Vec::with_capacity(max_conns),
            tracing: false,
            flows: FlowMap::default(),
            last_rx_trace: RxTrace::default(),
            loop_flags: 0,
            tx_trouble: 0,
            busy_poll_syscall,
        })
    }

    fn new_socket(&mut self, shard: usize) -> SocketHandle {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; self.cfg.sock_rx_buf]),
            tcp::SocketBuffer::new(vec![0u8; self.cfg.sock_tx_buf]),
        );
        s.set_nagle_enabled(false);
        s.set_ack_delay(None);
        self.shards[shard].sockets.add(s)
    }

    fn new_listener(&mut self, shard: usize, port: u16) -> Option<SocketHandle> {
        let h = self.new_socket(shard);
        if self.shards[shard].sockets.get_mut::<tcp::Socket>(h).listen(port).is_err() {
            self.shards[shard].sockets.remove(h);
            return None;
        }
        Some(h)
    }

    fn sock(&mut self, conn: ConnId) -> io::Result<&mut tcp::Socket<'static>> {
        let c = self.conns.get(conn.0).ok_or(io::ErrorKind::NotConnected)?;
        let (si, h) = (c.shard, c.handle);
        self.mark_egress(si);
        Ok(self.shards[si].sockets.get_mut::<tcp::Socket>(h))
    }

    fn set_now(&mut self, ns: u64) {
        self.now_ns = ns;
        self.now = instant_of(ns);
    }

    fn mark_scan(&mut self, si: usize) {
        if !self.shards[si].scan {
            self.shards[si].scan = true;
            self.to_scan.push(si);
        }
    }

    fn mark_egress(&mut self, si: usize) {
        if !self.shards[si].egress {
            self.shards[si].egress = true;
            self.to_egress.push(si);
        }
    }

    /// Listeners of `shard` that left Listen become connections (reported
    /// by the scan once established); a fresh listener takes their place.
    fn refill(&mut self, shard: usize) {
        for li in 0..self.shards[shard].listeners.len() {
            let (port, h) = self.shards[shard].listeners[li];
            if self.shards[shard].sockets.get::<tcp::Socket>(h).state() == State::Listen {
                continue;
            }
            if self.conns.len() >= self.cfg.max_conns {
                self.refused += 1;
                crate::log_warn!(
                    "xdp backend: connection refused: --max-conns {} open ({} refused so far)",
                    self.cfg.max_conns,
                    self.refused
                );
                self.shards[shard].sockets.get_mut::<tcp::Socket>(h).abort();
                self.zombies.push((shard, h, self.now_ns + ZOMBIE_NS, 0));
            } else {
                let id = self.conns.insert(Conn {
                    shard,
                    handle: h,
                    reported: false,
                    active_open: false,
                    eof_reported: false,
                    want_write: false,
                    flow: 0,
                    local_port: 0,
                });
                self.shards[shard].conns.push(id);
            }
            match self.new_listener(shard, port) {
                Some(nh) => self.shards[shard].listeners[li] = (port, nh),
                None => crate::log_warn!("xdp backend: cannot refill the listener of port {port}"),
            }
        }
    }

    /// Ingress only: up to `INGRESS_BUDGET` frames off the rx ring, each to
    /// its shard. Egress waits for [`Transport::flush`], after the
    /// application has answered, so a reply carries the ACK for the request
    /// instead of following a pure ACK in a second frame and a second kick.
    fn ingress(&mut self) -> usize {
        self.dev.xsk.rx.wake_if_needed();
        if self.busy_poll_syscall && !self.dev.xsk.rx.has_frames() {
            self.dev.xsk.rx.busy_poll();
        }
        let now = self.now;
        self.iface.poll_maintenance(now);
        let mut n = 0;
        while n < INGRESS_BUDGET {
            let Some(key) = self.dev.stage_next() else { break };
            n += 1;
            if !key.valid {
                self.rx_invalid += 1;
                self.dev.drop_staged();
                continue;
            }
            if self.tracing {
                self.track(&key);
            }
            let shard = key.tuple.map(|(ip, rp, lp)| shard_of(ip, rp, lp)).unwrap_or(0);
            let _ = self.iface.poll_ingress_single(now, &mut self.dev, &mut self.shards[shard].sockets);
            self.dev.drop_staged();
            self.mark_scan(shard);
            self.mark_egress(shard);
            if key.syn {
                // Refill at once: the next SYN may be for this shard too.
                self.refill(shard);
            }
        }
        self.dev.xsk.rx.flush();
        if self.tracing && n > 0 && self.dev.xsk.rx.fill_low() {
            self.loop_flags |= cause::FILL_LOW;
        }
        n
    }

    /// Tracing: note one frame's flow state before smoltcp sees it.
    fn track(&mut self, key: &device::FrameKey) {
        let Some((ip, rp, lp)) = key.tuple else { return };
        if self.flows.len() > 4 * self.cfg.max_conns + 1024 {
            // Flows whose connection never opened (scans, resets): start over.
            self.flows.clear();
        }
        let ts = if key.rx_ns != 0 { key.rx_ns } else { self.now_ns };
        self.flows.entry(flow_key(ip, rp, lp)).or_default().segment(key.seq, key.payload, key.window, key.flags, ts);
    }

    /// The flow key of a connection (from its socket's endpoints the first
    /// time, then cached).
    fn conn_flow(&mut self, conn: ConnId) -> Option<u64> {
        let c = self.conns.get_mut(conn.0)?;
        if c.flow != 0 {
            return Some(c.flow);
        }
        let s = self.shards[c.shard].sockets.get::<tcp::Socket>(c.handle);
        let (r, l) = (s.remote_endpoint()?, s.local_endpoint()?);
        let IpAddress::Ipv4(ip) = r.addr;
        c.flow = flow_key(u32::from(ip), r.port, l.port);
        Some(c.flow)
    }

    /// Egress for the shards that need it, then one kick for the batch.
    ///
    /// smoltcp's `poll_egress` emits at most one segment per socket per call,
    /// so each shard is polled until it emits nothing, at most
    /// `EGRESS_ROUNDS` times; a shard with more to send stays marked.
    fn egress(&mut self) {
        let now = self.now;
        let mut busy = std::mem::take(&mut self.busy_scratch);
        while let Some(si) = self.to_egress.pop() {
            self.shards[si].egress = false;
            let mut drained = false;
            for _ in 0..EGRESS_ROUNDS {
                if self.iface.poll_egress(now, &mut self.dev, &mut self.shards[si].sockets) == PollResult::None {
                    drained = true;
                    break;
                }
            }
            if !drained {
                busy.push(si);
            }
            self.mark_scan(si);
        }
        for si in busy.drain(..) {
            self.mark_egress(si);
        }
        self.busy_scratch = busy;
        self.dev.flush();
    }

    /// When nothing else will run egress this iteration: at once after
    /// ingress (ACKs owed); otherwise one shard's timers (retransmission,
    /// close handshakes) every `TIMER_EGRESS_NS`, round robin, so an idle
    /// loop never walks every socket at once.
    fn idle_egress(&mut self, ingested: usize) {
        let now = self.now_ns;
        if ingested == 0 && now >= self.next_timer_egress {
            self.next_timer_egress = now + TIMER_EGRESS_NS;
            self.mark_egress(self.timer_shard);
            self.timer_shard = (self.timer_shard + 1) % SHARDS;
        }
        if !self.to_egress.is_empty() {
            self.egress();
        }
    }

    /// Turn socket states into events, for shards that changed.
    fn scan(&mut self, events: &mut Vec<Event>) {
        while let Some(si) = self.to_scan.pop() {
            self.shards[si].scan = false;
            self.refill(si);
            let mut dead = std::mem::take(&mut self.dead_scratch);
            let sh = &mut self.shards[si];
            for &id in &sh.conns {
                let Some(c) = self.conns.get_mut(id) else { continue };
                let s = sh.sockets.get::<tcp::Socket>(c.handle);
                let state = s.state();
                if !c.reported {
                    match state {
                        State::SynSent | State::SynReceived | State::Listen => continue,
                        State::Closed | State::TimeWait if !c.active_open => {
                            // Never completed: forget it quietly.
                            dead.push(id);
                            continue;
                        }
                        _ => {
                            c.reported = true;
                            if c.active_open {
                                self.stats.connected += 1;
                                events.push(Event::Connected(ConnId(id)));
                            } else {
                                self.stats.accepted += 1;
                                events.push(Event::Accepted(ConnId(id)));
                            }
                        }
                    }
                }
                if s.can_recv() {
                    events.push(Event::Readable(ConnId(id)));
                } else if !s.may_recv() && !c.eof_reported {
                    c.eof_reported = true;
                    events.push(Event::Readable(ConnId(id)));
                }
                if c.want_write && (s.can_send() || !s.may_send()) {
                    c.want_write = false;
                    events.push(Event::Writable(ConnId(id)));
                }
            }
            for id in dead.drain(..) {
                let c = self.conns.remove(id);
                let sh = &mut self.shards[si];
                sh.sockets.remove(c.handle);
                sh.conns.retain(|&x| x != id);
                self.local_ports.set(c.local_port, false);
            }
            self.dead_scratch = dead;
        }
        if !self.zombies.is_empty() {
            let now = self.now_ns;
            let shards = &mut self.shards;
            let held = &mut self.local_ports;
            self.zombies.retain(|&(si, h, deadline, port)| {
                let s = shards[si].sockets.get_mut::<tcp::Socket>(h);
                let done = matches!(s.state(), State::Closed | State::TimeWait);
                if done || now >= deadline {
                    if !done {
                        s.abort();
                    }
                    shards[si].sockets.remove(h);
                    held.set(port, false);
                    false
                } else {
                    true
                }
            });
        }
    }
}

impl Transport for XdpTransport {
    fn name(&self) -> &'static str {
        "xdp"
    }

    fn listen(&mut self, addr: SocketAddr) -> io::Result<()> {
        match addr.ip() {
            IpAddr::V4(ip) if ip == self.cfg.ip || ip.is_unspecified() => {}
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("--ip {other}: the xdp backend owns {} only", self.cfg.ip),
                ))
            }
        }
        let port = addr.port();
        // Listeners per shard: the pool is refilled after every SYN, so one
        // per shard takes any burst; `backlog` adds more where it asks.
        let per_shard = self.cfg.backlog.div_ceil(SHARDS).max(1);
        for si in 0..SHARDS {
            for _ in 0..per_shard {
                match self.new_listener(si, port) {
                    Some(h) => self.shards[si].listeners.push((port, h)),
                    None => return Err(io::Error::other(format!("--port {port}: smoltcp refused to listen"))),
                }
            }
        }
        if !self.own_address {
            self.prog.add_port(port).map_err(io::Error::other)?;
        }
        self.ports.push(port);
        Ok(())
    }

    fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        let IpAddr::V4(ip) = addr.ip() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the xdp backend speaks IPv4 only"));
        };
        if self.conns.len() >= self.cfg.max_conns {
            return Err(io::Error::other(format!("connection limit {} reached", self.cfg.max_conns)));
        }
        let (lo, hi) = self.cfg.local_ports;
        if hi == 0 {
            return Err(io::Error::other(
                "this xdp transport has no local port range: it makes no outbound connections",
            ));
        }
        let port = self.local_ports.next_free(lo, hi).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("connect to {addr}: every local port {lo}-{hi} is held by a live or closing connection"),
            )
        })?;
        let shard = shard_of(u32::from(ip), addr.port(), port);
        let h = self.new_socket(shard);
        let remote = IpEndpoint::new(IpAddress::Ipv4(ip), addr.port());
        let sh = &mut self.shards[shard];
        if let Err(e) = sh.sockets.get_mut::<tcp::Socket>(h).connect(self.iface.context(), remote, port) {
            sh.sockets.remove(h);
            return Err(io::Error::other(format!("connect to {addr}: {e}")));
        }
        let id = self.conns.insert(Conn {
            shard,
            handle: h,
            reported: false,
            active_open: true,
            eof_reported: false,
            want_write: false,
            flow: 0,
            local_port: port,
        });
        self.local_ports.set(port, true);
        self.shards[shard].conns.push(id);
        self.mark_egress(shard);
        self.mark_scan(shard);
        Ok(ConnId(id))
    }

    fn poll(&mut self, timeout: Option<Duration>, events: &mut Vec<Event>) -> io::Result<u64> {
        events.clear();
        events.append(&mut self.pending);
        self.set_now(clock::mono_ns());
        let n = self.ingress();
        self.scan(events);
        if events.is_empty() {
            // Nobody will answer in this iteration: ACKs and timers go now.
            self.idle_egress(n);
        }
        if events.is_empty() && self.cfg.wait == WaitMode::Block && self.to_egress.is_empty() {
            // Sleep until a frame arrives, the caller's timeout, or the next
            // timer round (which serves one shard's timers).
            let tick = Duration::from_nanos(TIMER_EGRESS_NS).max(Duration::from_millis(1));
            let wait = timeout.map_or(tick, |t| t.min(tick));
            let ms = wait.as_millis().min(i32::MAX as u128) as i32;
            if ms != 0 {
                self.dev.xsk.rx.wait(ms);
                if self.tracing {
                    self.loop_flags |= cause::SLEPT;
                }
                self.set_now(clock::mono_ns());
                let n = self.ingress();
                self.scan(events);
                if events.is_empty() {
                    self.idle_egress(n);
                }
            }
        }
        self.stats.count_poll(events);
        Ok(self.now_ns)
    }

    fn recv(&mut self, conn: ConnId, buf: &mut [u8]) -> io::Result<usize> {
        let s = self.sock(conn)?;
        if matches!(s.state(), State::SynSent | State::SynReceived) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match s.recv_slice(buf) {
            Ok(0) if !buf.is_empty() => {
                if s.may_recv() {
                    Err(io::ErrorKind::WouldBlock.into())
                } else if s.state() == State::Closed {
                    Err(io::ErrorKind::ConnectionReset.into())
                } else {
                    Ok(0)
                }
            }
            Ok(n) => {
                let drained = s.recv_queue() == 0;
                self.stats.bytes_in += n as u64;
                if self.tracing {
                    self.last_rx_trace = RxTrace::default();
                    if let Some(f) = self.conn_flow(conn).and_then(|k| self.flows.get_mut(&k)) {
                        self.last_rx_trace = RxTrace { arrival_ns: f.first_rx, flags: f.flags };
                        f.first_rx = if drained { 0 } else { f.last_rx };
                        f.flags = 0;
                    }
                }
                Ok(n)
            }
            Err(RecvError::Finished) => Ok(0),
            Err(RecvError::InvalidState) => {
                let active = self.conns.get(conn.0).is_some_and(|c| c.active_open && !c.reported);
                Err(if active { io::ErrorKind::ConnectionRefused } else { io::ErrorKind::ConnectionReset }.into())
            }
        }
    }

    fn send(&mut self, conn: ConnId, buf: &[u8]) -> io::Result<usize> {
        let s = self.sock(conn)?;
        let opening = matches!(s.state(), State::SynSent | State::SynReceived);
        match s.send_slice(buf) {
            Ok(0) if !buf.is_empty() || opening => {
                if let Some(c) = self.conns.get_mut(conn.0) {
                    c.want_write = true;
                }
                Err(io::ErrorKind::WouldBlock.into())
            }
            Ok(n) => {
                self.stats.bytes_out += n as u64;
                if n < buf.len() {
                    // A short write means the buffer is full: the caller
                    // waits for Writable, so it must come.
                    if let Some(c) = self.conns.get_mut(conn.0) {
                        c.want_write = true;
                    }
                }
                Ok(n)
            }
            Err(SendError::InvalidState) if opening => {
                if let Some(c) = self.conns.get_mut(conn.0) {
                    c.want_write = true;
                }
                Err(io::ErrorKind::WouldBlock.into())
            }
            Err(SendError::InvalidState) => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn shutdown_write(&mut self, conn: ConnId) -> io::Result<()> {
        self.sock(conn)?.close();
        Ok(())
    }

    fn close(&mut self, conn: ConnId) {
        if self.tracing {
            if let Some(k) = self.conn_flow(conn) {
                self.flows.remove(&k);
            }
        }
        let Some(c) = self.conns.try_remove(conn.0) else { return };
        self.stats.closed += 1;
        self.mark_egress(c.shard);
        let sh = &mut self.shards[c.shard];
        sh.conns.retain(|&x| x != conn.0);
        let s = sh.sockets.get_mut::<tcp::Socket>(c.handle);
        match s.state() {
            State::Closed | State::TimeWait => {
                sh.sockets.remove(c.handle);
                self.local_ports.set(c.local_port, false);
            }
            State::FinWait1 | State::FinWait2 | State::Closing | State::LastAck => {
                // Our FIN is out: let the handshake finish in the background.
                self.zombies.push((c.shard, c.handle, self.now_ns + ZOMBIE_NS, c.local_port));
            }
            _ => {
                // Closed without shutdown: reset, as the kernel does when a
                // socket with unread data is closed.
                s.abort();
                self.zombies.push((c.shard, c.handle, self.now_ns + ZOMBIE_NS, c.local_port));
            }
        }
    }

    fn flush(&mut self, now_ns: u64) {
        // The loop flushes after servicing connections; their sends marked
        // their shards for egress.
        self.set_now(now_ns);
        self.egress();
        if self.tracing {
            let t = self.dev.xsk.tx.stats;
            let trouble = t.starved + t.kick_busy;
            if trouble != self.tx_trouble {
                self.tx_trouble = trouble;
                self.loop_flags |= cause::KICK_WAIT;
            }
        }
    }

    fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
        if !on {
            self.flows.clear();
        }
    }

    fn rx_trace(&mut self, _conn: ConnId) -> RxTrace {
        self.last_rx_trace
    }

    fn loop_flags(&mut self) -> u32 {
        std::mem::take(&mut self.loop_flags)
    }

    fn flush_transmits(&self) -> bool {
        true
    }

    fn counters(&self) -> BackendCounters {
        let (r, t) = (self.dev.xsk.rx.stats, self.dev.xsk.tx.stats);
        BackendCounters {
            frames_in: r.frames,
            frames_out: t.frames,
            rx_invalid: self.rx_invalid,
            tx_starved: t.starved,
            refused: self.refused,
            accept_errors: 0,
            // Filled in by the reporter through `counter_reader`.
            xdp: [0; 5],
        }
    }

    fn counter_reader(&self) -> Option<crate::transport::CounterReader> {
        match self.prog.counter_reader() {
            Ok(r) => Some(Box::new(move || {
                let x = r.read();
                [x.seen, x.redirected, x.passed, x.malformed, x.injected_drops]
            })),
            Err(e) => {
                crate::log_warn!("xdp backend: {e}: the XDP program's counters are not exported");
                None
            }
        }
    }

    fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        let c = self.conns.get(conn.0)?;
        let ep = self.shards[c.shard].sockets.get::<tcp::Socket>(c.handle).remote_endpoint()?;
        let IpAddress::Ipv4(ip) = ep.addr;
        Some(SocketAddr::new(IpAddr::V4(ip), ep.port))
    }

    fn stats(&self) -> TransportStats {
        self.stats
    }

    fn report(&self) -> Option<String> {
        let x = self.prog.counters();
        let r = self.dev.xsk.rx.stats;
        let t = self.dev.xsk.tx.stats;
        Some(format!(
            "xdp: program seen={} redirected={} passed={} malformed={}{}; socket rx_frames={} rx_wakeups={} \
             tx_frames={} tx_kicks={} tx_kick_busy={} tx_starved={} fill_full={} fill_low={} busy_polls={}; stack refused={} \
             rx_invalid={}",
            x.seen,
            x.redirected,
            x.passed,
            x.malformed,
            if x.injected_drops > 0 || self.dev.tx_loss.dropped > 0 {
                format!(" injected_drops={} tx_injected_drops={}", x.injected_drops, self.dev.tx_loss.dropped)
            } else {
                String::new()
            },
            r.frames,
            r.wakeups,
            t.frames,
            t.kicks,
            t.kick_busy,
            t.starved,
            r.fill_full,
            r.fill_low,
            r.busy_polls,
            self.refused,
            self.rx_invalid
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `connect` cycled local ports without checking them, so
    /// past 4,536 outbound connections a live 4-tuple was reused. A held
    /// port is skipped; when all are held, there is none (an error, not a
    /// duplicate); a freed port comes back.
    #[test]
    fn local_ports_are_never_handed_out_twice_while_held() {
        let (lo, hi) = (61000u16, 61009u16);
        let mut held = PortSet::new(lo);
        let mut got = Vec::new();
        while let Some(p) = held.next_free(lo, hi) {
            held.set(p, true);
            got.push(p);
            assert!(got.len() <= 10, "handed out more ports than the range has: {got:?}");
        }
        assert_eq!(got, (lo..=hi).collect::<Vec<_>>());
        // Free two in the middle: exactly those come back, in order from
        // where the search stopped.
        held.set(61003, false);
        held.set(61007, false);
        assert_eq!(held.next_free(lo, hi), Some(61003));
        held.set(61003, true);
        assert_eq!(held.next_free(lo, hi), Some(61007));
        held.set(61007, true);
        assert_eq!(held.next_free(lo, hi), None);
        // The full default range, 4536 ports, then one more: none.
        let mut held = PortSet::new(61000);
        for _ in 0..4536 {
            let p = held.next_free(61000, 65535).unwrap();
            held.set(p, true);
        }
        assert_eq!(held.next_free(61000, 65535), None);
    }

    #[test]
    fn flow_tracking_flags_gaps_and_repeats_only() {
        let mut f = Flow::default();
        f.segment(999, 0, 100, 0x02, 1); // SYN: next is 1000
        f.segment(1000, 100, 100, 0x18, 10);
        f.segment(1100, 100, 100, 0x18, 20);
        assert_eq!((f.flags, f.first_rx, f.last_rx, f.next), (0, 10, 20, 1200));
        // 1200..1300 lost: 1300 arrives first.
        f.segment(1300, 100, 100, 0x18, 30);
        assert_eq!(f.flags, cause::RETRANSMIT);
        f.flags = 0;
        // The retransmission of 1200 is behind `next`.
        f.segment(1200, 100, 100, 0x18, 40);
        assert_eq!((f.flags, f.next), (cause::RETRANSMIT, 1400));
        // Pure ACKs and resets change nothing; a zero window is noted.
        let mut g = Flow::default();
        g.segment(5, 0, 100, 0x10, 1);
        g.segment(5, 0, 0, 0x14, 1);
        assert_eq!(g.flags, 0);
        g.segment(5, 0, 0, 0x10, 1);
        assert_eq!(g.flags, cause::ZERO_WINDOW);
        // Sequence numbers wrap.
        let mut w = Flow::default();
        w.segment(u32::MAX - 9, 0, 1, 0x02, 1);
        w.segment(u32::MAX - 8, 20, 1, 0x18, 2);
        w.segment(11, 5, 1, 0x18, 3);
        assert_eq!((w.flags, w.next), (0, 16));
    }

    #[test]
    fn shard_of_is_stable_in_range_and_spreads_client_ports() {
        assert_eq!(shard_of(0xc612_0002, 40_000, 7777), shard_of(0xc612_0002, 40_000, 7777));
        let mut seen = [0u32; SHARDS];
        for p in 0..(SHARDS as u16 * 100) {
            seen[shard_of(0xc612_0002, 32_768 + p, 7777)] += 1;
        }
        // 100 per shard on average; a bad hash would pile them up.
        assert!(seen.iter().all(|&n| (50..150).contains(&n)), "{seen:?}");
    }
}
