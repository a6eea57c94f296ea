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
pub mod device;
pub mod udp_echo;
pub mod xsk;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use slab::Slab;
use smoltcp::iface::{Config, Interface, PollIngressSingleResult, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, RecvError, SendError, State};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use self::bpf::{Filter, XdpCounters, XdpProgram};
use self::device::XskDevice;
use self::xsk::{BindMode, Xsk, XskConfig};
use crate::clock;
use crate::transport::{ConnId, Event, Transport, TransportStats, WaitMode};

/// How often an idle loop runs egress for smoltcp's timers.
const TIMER_EGRESS_NS: u64 = 100_000;

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
        }
    }
}

#[derive(Debug)]
struct Conn {
    handle: SocketHandle,
    /// Accepted or Connected has been reported.
    reported: bool,
    active_open: bool,
    /// A Readable for the end of the stream (FIN or reset) has been reported.
    eof_reported: bool,
    /// The last send found no room.
    want_write: bool,
}

struct Listener {
    port: u16,
    pool: Vec<SocketHandle>,
}

/// The AF_XDP + smoltcp transport.
pub struct XdpTransport {
    cfg: XdpConfig,
    iface: Interface,
    sockets: SocketSet<'static>,
    dev: XskDevice,
    prog: XdpProgram,
    listeners: Vec<Listener>,
    conns: Slab<Conn>,
    zombies: Vec<(SocketHandle, u64)>,
    pending: Vec<Event>,
    next_local_port: u16,
    stats: TransportStats,
    /// Connections refused because `max_conns` was reached.
    pub refused: u64,
    own_address: bool,
    /// smoltcp time, read once per poll.
    now: Instant,
    /// Socket states may have changed since the last scan.
    dirty: bool,
    /// When an idle loop next runs egress for timers (monotonic ns).
    next_timer_egress: u64,
}

fn now_instant() -> Instant {
    Instant::from_micros((clock::mono_ns() / 1000) as i64)
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
        let filter = Filter { ip: cfg.ip, local_ports: cfg.local_ports, own_address };
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
        let mut dev = XskDevice::new(sock);
        let mut config = Config::new(HardwareAddress::Ethernet(mac));
        config.random_seed = clock::realtime_ns();
        let mut iface = Interface::new(config, &mut dev, now_instant());
        let cidr = IpCidr::new(IpAddress::Ipv4(cfg.ip), cfg.prefix);
        iface.update_ip_addrs(|a| {
            let _ = a.push(cidr);
        });
        let next_local_port = cfg.local_ports.0;
        Ok(XdpTransport {
            cfg,
            iface,
            sockets: SocketSet::new(Vec::new()),
            dev,
            prog,
            listeners: Vec::new(),
            conns: Slab::with_capacity(1024),
            zombies: Vec::new(),
            pending: Vec::new(),
            next_local_port,
            stats: TransportStats::default(),
            refused: 0,
            own_address,
            now: now_instant(),
            dirty: true,
            next_timer_egress: 0,
        })
    }

    /// The XDP program's counters.
    pub fn xdp_counters(&self) -> XdpCounters {
        self.prog.counters()
    }

    /// The AF_XDP socket.
    pub fn xsk(&self) -> &Xsk {
        &self.dev.xsk
    }

    pub fn owns_address(&self) -> bool {
        self.own_address
    }

    fn new_socket(&mut self) -> SocketHandle {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; self.cfg.sock_rx_buf]),
            tcp::SocketBuffer::new(vec![0u8; self.cfg.sock_tx_buf]),
        );
        s.set_nagle_enabled(false);
        s.set_ack_delay(None);
        self.sockets.add(s)
    }

    fn new_listener(&mut self, port: u16) -> Option<SocketHandle> {
        let h = self.new_socket();
        if self.sockets.get_mut::<tcp::Socket>(h).listen(port).is_err() {
            self.sockets.remove(h);
            return None;
        }
        Some(h)
    }

    fn sock(&mut self, conn: ConnId) -> io::Result<&mut tcp::Socket<'static>> {
        let h = self.conns.get(conn.0).ok_or(io::ErrorKind::NotConnected)?.handle;
        Ok(self.sockets.get_mut::<tcp::Socket>(h))
    }

    /// Ingress only: take up to `INGRESS_BUDGET` frames off the rx ring into
    /// the sockets. Egress waits for [`Transport::flush`], after the
    /// application has answered, so a reply carries the ACK for the request
    /// instead of following a pure ACK in a second frame and a second kick.
    fn ingress(&mut self) -> usize {
        self.dev.xsk.rx.wake_if_needed();
        let now = self.now;
        self.iface.poll_maintenance(now);
        let mut n = 0;
        while n < INGRESS_BUDGET {
            match self.iface.poll_ingress_single(now, &mut self.dev, &mut self.sockets) {
                PollIngressSingleResult::None => break,
                _ => n += 1,
            }
        }
        self.dev.xsk.rx.flush();
        if n > 0 {
            self.dirty = true;
        }
        n
    }

    /// Egress: segments, ACKs, retransmissions; then one kick for the batch.
    fn egress(&mut self) {
        self.iface.poll_egress(self.now, &mut self.dev, &mut self.sockets);
        self.dev.flush();
        self.dirty = true;
    }

    /// Egress when nothing else will run it this iteration: at once after
    /// ingress (ACKs owed), otherwise at most every `TIMER_EGRESS_NS` for
    /// smoltcp's timers (retransmission, close handshakes).
    fn idle_egress(&mut self, ingested: usize) {
        let now = (self.now.total_micros() as u64).saturating_mul(1000);
        if ingested > 0 || now >= self.next_timer_egress {
            self.next_timer_egress = now + TIMER_EGRESS_NS;
            self.egress();
        }
    }

    /// Turn socket states into events. Linear in sockets (smoltcp's model).
    fn scan(&mut self, events: &mut Vec<Event>) {
        // Listeners that left Listen become connections; refill the pool.
        for li in 0..self.listeners.len() {
            for pi in 0..self.listeners[li].pool.len() {
                let h = self.listeners[li].pool[pi];
                if self.sockets.get::<tcp::Socket>(h).state() == State::Listen {
                    continue;
                }
                if self.conns.len() >= self.cfg.max_conns {
                    self.refused += 1;
                    self.sockets.get_mut::<tcp::Socket>(h).abort();
                    self.zombies.push((h, clock::mono_ns() + ZOMBIE_NS));
                } else {
                    self.conns.insert(Conn {
                        handle: h,
                        reported: false,
                        active_open: false,
                        eof_reported: false,
                        want_write: false,
                    });
                }
                let port = self.listeners[li].port;
                match self.new_listener(port) {
                    Some(nh) => self.listeners[li].pool[pi] = nh,
                    None => crate::log_warn!("xdp backend: cannot refill the listener pool of port {port}"),
                }
            }
        }
        let mut dead = Vec::new();
        for (id, c) in self.conns.iter_mut() {
            let s = self.sockets.get::<tcp::Socket>(c.handle);
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
        for id in dead {
            let c = self.conns.remove(id);
            self.sockets.remove(c.handle);
        }
        if !self.zombies.is_empty() {
            let now = clock::mono_ns();
            let sockets = &mut self.sockets;
            self.zombies.retain(|&(h, deadline)| {
                let s = sockets.get_mut::<tcp::Socket>(h);
                let done = matches!(s.state(), State::Closed | State::TimeWait);
                if done || now >= deadline {
                    if !done {
                        s.abort();
                    }
                    sockets.remove(h);
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
        let mut pool = Vec::with_capacity(self.cfg.backlog);
        for _ in 0..self.cfg.backlog {
            match self.new_listener(port) {
                Some(h) => pool.push(h),
                None => return Err(io::Error::other(format!("--port {port}: smoltcp refused to listen"))),
            }
        }
        if !self.own_address {
            self.prog.add_port(port).map_err(io::Error::other)?;
        }
        self.listeners.push(Listener { port, pool });
        self.dirty = true;
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
        let port = self.next_local_port;
        self.next_local_port = if port >= hi { lo } else { port + 1 };
        let h = self.new_socket();
        let remote = IpEndpoint::new(IpAddress::Ipv4(ip), addr.port());
        if let Err(e) = self.sockets.get_mut::<tcp::Socket>(h).connect(self.iface.context(), remote, port) {
            self.sockets.remove(h);
            return Err(io::Error::other(format!("connect to {addr}: {e}")));
        }
        let id = self.conns.insert(Conn {
            handle: h,
            reported: false,
            active_open: true,
            eof_reported: false,
            want_write: false,
        });
        self.dirty = true;
        Ok(ConnId(id))
    }

    fn poll(&mut self, timeout: Option<Duration>, events: &mut Vec<Event>) -> io::Result<()> {
        events.clear();
        events.append(&mut self.pending);
        self.now = now_instant();
        let n = self.ingress();
        if self.dirty {
            self.dirty = false;
            self.scan(events);
        }
        if events.is_empty() {
            // Nobody will answer in this iteration: ACKs and timers go now.
            self.idle_egress(n);
        }
        if events.is_empty() && self.cfg.wait == WaitMode::Block {
            let until_timer =
                self.iface.poll_delay(now_instant(), &self.sockets).map(|d| Duration::from_micros(d.micros()));
            let wait = match (timeout, until_timer) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let ms = wait.map(|d| d.as_millis().min(i32::MAX as u128) as i32).unwrap_or(-1);
            if ms != 0 {
                self.dev.xsk.rx.wait(ms);
                self.now = now_instant();
                let n = self.ingress();
                self.dirty = false;
                self.scan(events);
                if events.is_empty() {
                    self.idle_egress(n);
                }
            }
        }
        if events.is_empty() {
            self.stats.polls_idle += 1;
        } else {
            self.stats.polls_useful += 1;
        }
        Ok(())
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
                self.stats.bytes_in += n as u64;
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
        let Some(c) = self.conns.try_remove(conn.0) else { return };
        self.stats.closed += 1;
        let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
        match s.state() {
            State::Closed | State::TimeWait => {
                self.sockets.remove(c.handle);
            }
            State::FinWait1 | State::FinWait2 | State::Closing | State::LastAck => {
                // Our FIN is out: let the handshake finish in the background.
                self.zombies.push((c.handle, clock::mono_ns() + ZOMBIE_NS));
            }
            _ => {
                // Closed without shutdown: reset, as the kernel does when a
                // socket with unread data is closed.
                s.abort();
                self.zombies.push((c.handle, clock::mono_ns() + ZOMBIE_NS));
            }
        }
    }

    fn flush(&mut self) {
        self.egress();
    }

    fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        let c = self.conns.get(conn.0)?;
        let ep = self.sockets.get::<tcp::Socket>(c.handle).remote_endpoint()?;
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
            "xdp: program seen={} redirected={} passed={} malformed={}; socket rx_frames={} rx_wakeups={} \
             tx_frames={} tx_kicks={} tx_starved={} fill_full={}; stack refused={}",
            x.seen,
            x.redirected,
            x.passed,
            x.malformed,
            r.frames,
            r.wakeups,
            t.frames,
            t.kicks,
            t.starved,
            r.fill_full,
            self.refused
        ))
    }
}
