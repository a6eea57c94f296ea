//! The kernel-bypass backend: an XDP program redirects the stack's frames to
//! an AF_XDP socket, and the user-space stack ([`crate::stack`]) serves them.
//! This module holds only what is AF_XDP, and wires the two together.
//!
//! ```text
//! bpf.rs     load + attach (bpf_link) the redirect program, its maps and counters
//! xsk/       the AF_XDP socket: UMEM, typed frames, fill/completion/rx/tx rings
//! device.rs  the stack's Link (smoltcp Device) over the rings, no allocation per frame
//! frames.rs  a frame-level loop straight on the rings, for applications without TCP
//! mod.rs     XdpTransport: the program, the socket and a Stack<XskDevice>
//! ```

pub mod bpf;
pub mod device;
pub mod frames;
pub mod xsk;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use self::bpf::{Filter, ProgMaps, Stamp, XdpProgram};
use self::device::XskDevice;
use self::xsk::{BindMode, Xsk, XskConfig, XskStatsReader};
use crate::clock;
use crate::stack::handoff::Handoff;
use crate::stack::{Stack, StackConfig};
use crate::sys::net;
use crate::transport::{
    AckEvent, ConnId, CounterReader, Counters, Event, RxTrace, Transport, TransportStats, WaitMode,
};

/// Configuration of the xdp backend: the interface and socket, the stack
/// on top, and what the XDP program does besides redirecting.
#[derive(Debug, Clone)]
pub struct XdpConfig {
    pub iface: String,
    pub xsk: XskConfig,
    /// The stack (its MAC is read from the interface).
    pub stack: StackConfig,
    /// Have the XDP program stamp arrival times (for sampling).
    pub stamp_rx: bool,
    /// `--inject loss:N`: the XDP program drops every N-th TCP data segment.
    pub drop_every: u32,
    /// `--inject tx-loss:N`: drop every N-th TCP data segment transmitted.
    pub tx_drop_every: u32,
    /// `--pcap`: capture every frame the stack receives and sends.
    pub capture: Option<crate::capture::CaptureConfig>,
}

impl XdpConfig {
    pub fn new(iface: &str, ip: Ipv4Addr) -> Self {
        XdpConfig {
            iface: iface.to_string(),
            xsk: XskConfig::default(),
            stack: StackConfig::new(ip, [0; 6]),
            stamp_rx: false,
            drop_every: 0,
            tx_drop_every: 0,
            capture: None,
        }
    }

    /// Let the stack open connections: it keeps its local port range (the
    /// XDP program then redirects those ports too), and takes the
    /// interface's RSS key and table, so each loop picks local ports whose
    /// replies the NIC steers to that loop's own queue. Without one (see
    /// [`device_rss`]) loops of several split the range among themselves,
    /// and a reply that lands on another loop's queue is handed over.
    pub fn open_connections(&mut self) {
        self.stack.rss = device_rss(&self.iface).map(|r| crate::stack::rss::RssTable {
            key: r.key,
            indirection: r.indirection,
            queue: self.xsk.queue,
        });
    }
}

/// The interface's MAC address, from sysfs.
pub fn mac_of(iface: &str) -> io::Result<[u8; 6]> {
    let path = format!("/sys/class/net/{iface}/address");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("--iface {iface}: reading {path}: {e}")))?;
    let bad = || io::Error::other(format!("--iface {iface}: unexpected MAC address {text:?}"));
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut b = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        b[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(b)
}

/// The interface's rx queues, from sysfs (1 if it cannot be read).
pub fn rx_queues(iface: &str) -> usize {
    std::fs::read_dir(format!("/sys/class/net/{iface}/queues"))
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count())
        .unwrap_or(1)
}

/// The NIC's RSS key and indirection table, when `iface` spreads flows over
/// several rx queues and the stack can compute the queue of a reply
/// (Toeplitz on the four-tuple: `sys::ethtool::check`); `None` otherwise,
/// with the reason logged. Outbound connections then pick local ports whose
/// replies come back to the connecting loop's queue (`StackConfig::rss`).
pub fn device_rss(iface: &str) -> Option<crate::sys::ethtool::RssConfig> {
    let n = rx_queues(iface);
    if n <= 1 {
        return None;
    }
    match crate::sys::ethtool::rss_config(iface) {
        Ok(c) => {
            crate::log_info!(
                "--iface {iface}: RSS Toeplitz over {n} rx queues ({}-entry table, {}-byte key): outbound connections \
                 take local ports whose replies RSS brings to the connecting loop's queue",
                c.indirection.len(),
                c.key.len()
            );
            Some(c)
        }
        Err(e) => {
            crate::log_warn!(
                "{e}: replies to outbound connections may land on any of its {n} rx queues; with a loop on every \
                 queue a reply on another loop's queue is handed to the loop that owns it (handoff_forwarded), \
                 otherwise steer them to the bound queue (ethtool -N) or use one queue (ethtool -L)"
            );
            None
        }
    }
}

/// Load and attach the XDP program on `cfg.iface`; also whether the stack
/// owns its address outright. `local_ports`: the outbound port range to
/// redirect (the ports to listen on are added later by `listen` when the
/// kernel shares the address). `queues`: the queues that get a socket.
pub fn attach(cfg: &XdpConfig, local_ports: (u16, u16), queues: &[u32]) -> io::Result<(XdpProgram, bool)> {
    let ifindex = net::ifindex(&cfg.iface)?;
    let own_address = !net::kernel_ipv4_addrs(&cfg.iface)?.contains(&cfg.stack.ip);
    let n = rx_queues(&cfg.iface);
    if let Some(q) = queues.iter().find(|&&q| q as usize >= n) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--queue {q}: {} has {n} rx queue(s) (0-{})", cfg.iface, n.saturating_sub(1)),
        ));
    }
    if n > queues.len() {
        let list: Vec<String> = queues.iter().map(u32::to_string).collect();
        crate::log_warn!(
            "--iface {}: {n} rx queues, the stack binds {} only: steer its traffic there (ethtool -N ... action Q), \
             use fewer queues (ethtool -L), or give --queue every queue",
            cfg.iface,
            if queues.len() == 1 { format!("queue {}", list[0]) } else { format!("queues {}", list.join(",")) }
        );
    }
    let filter = Filter {
        ip: cfg.stack.ip,
        local_ports,
        own_address,
        stamp: if cfg.stamp_rx { Stamp::Meta } else { Stamp::Off },
        drop_every: cfg.drop_every,
        icmp_echo_per_sec: cfg.stack.icmp_echo_per_sec,
    };
    let prog = XdpProgram::attach(ifindex, filter).map_err(io::Error::other)?;
    Ok((prog, own_address))
}

/// Bind an AF_XDP socket on `cfg.iface` queue `cfg.xsk.queue` and register
/// it with the program.
fn bind(cfg: &XdpConfig, ifindex: u32, maps: &ProgMaps) -> io::Result<Xsk> {
    let sock = Xsk::new(ifindex, &cfg.xsk).map_err(|e| {
        io::Error::new(e.kind(), format!("AF_XDP socket on {} queue {}: {e}", cfg.iface, cfg.xsk.queue))
    })?;
    maps.register_socket(cfg.xsk.queue, sock.fd()).map_err(io::Error::other)?;
    Ok(sock)
}

/// Attach the program and bind the socket on `cfg.iface`, registered with
/// each other (one loop).
fn open(cfg: &XdpConfig, local_ports: (u16, u16)) -> io::Result<(XdpProgram, Xsk, bool)> {
    let (prog, own_address) = attach(cfg, local_ports, &[cfg.xsk.queue])?;
    let maps = prog.maps().map_err(io::Error::other)?;
    let sock = bind(cfg, prog.ifindex, &maps)?;
    Ok((prog, sock, own_address))
}

/// What a loop needs of the program the launcher attached: its maps, the
/// interface, whether the stack owns the address, and (one loop of
/// several) its ends of the handoff rings.
#[derive(Debug)]
pub struct LoopOf {
    pub maps: ProgMaps,
    pub ifindex: u32,
    pub own_address: bool,
    pub handoff: Option<Handoff>,
    /// Where the program stamps arrival times.
    pub stamp: Stamp,
}

/// The AF_XDP transport: the user-space stack on an AF_XDP socket.
pub struct XdpTransport {
    // Drop order (fields drop in declaration order): the program first, so
    // its link detaches it and no frame is redirected to the socket any
    // more; then the stack and its device, which closes the socket and
    // unmaps its rings and UMEM (xsk/).
    /// The program (`None` for a loop of several: the main thread holds it
    /// and detaches it after every loop has stopped), and its maps.
    prog: Option<XdpProgram>,
    maps: ProgMaps,
    stack: Stack<XskDevice>,
    /// The socket's XDP_STATISTICS (its own descriptor: read off the loop).
    xsk_stats: Option<XskStatsReader>,
    /// `--pcap`'s writer: dropped after the stack, so it writes every frame
    /// the loop captured.
    _pcap: Option<crate::capture::Writer>,
}

impl XdpTransport {
    /// Attach the program, bind the socket, build the stack. Errors name the
    /// flag or the step that failed, so `--backend auto` can log one line.
    pub fn new(cfg: XdpConfig) -> io::Result<Self> {
        Self::build(cfg, None)
    }

    /// One loop of several, on the program the main thread attached (see
    /// [`attach`]): its own socket on `cfg.xsk.queue`, its own UMEM and
    /// rings, its own stack, and its ends of the handoff rings.
    pub fn for_loop(cfg: XdpConfig, of: LoopOf) -> io::Result<Self> {
        Self::build(cfg, Some(of))
    }

    fn build(mut cfg: XdpConfig, of: Option<LoopOf>) -> io::Result<Self> {
        cfg.stack.mac = mac_of(&cfg.iface)?;
        cfg.stack.random_seed = clock::realtime_ns() ^ u64::from(cfg.xsk.queue).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let (prog, maps, ifindex, sock, own_address, handoff, stamp) = match of {
            None => {
                let (prog, sock, own) = open(&cfg, cfg.stack.local_ports)?;
                let maps = prog.maps().map_err(io::Error::other)?;
                let (ifindex, stamp) = (prog.ifindex, prog.stamp);
                (Some(prog), maps, ifindex, sock, own, None, stamp)
            }
            Some(of) => {
                let sock = bind(&cfg, of.ifindex, &of.maps)?;
                (None, of.maps, of.ifindex, sock, of.own_address, of.handoff, of.stamp)
            }
        };
        crate::log_info!(
            "xdp backend: {} (ifindex {}) queue {}: AF_XDP {} mode{}, need_wakeup, busy poll {}, UMEM {} MiB on {} pages; \
             stack owns {}{}",
            cfg.iface,
            ifindex,
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
            cfg.stack.ip,
            if own_address { "" } else { " (shared with the kernel: only the stack's ports are redirected)" }
        );
        let defer = std::fs::read_to_string(format!("/sys/class/net/{}/napi_defer_hard_irqs", cfg.iface))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(0);
        let busy_poll_syscall = defer > 0 && cfg.stack.wait == WaitMode::Spin && sock.busy_poll;
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
        dev.mac_stamp = (stamp == Stamp::DstMac).then_some(cfg.stack.mac);
        let pcap = match cfg.capture.take() {
            Some(c) => {
                let path = c.path.display().to_string();
                let (tap, writer) = crate::capture::start(c)?;
                crate::log_info!("xdp backend: capturing every frame the stack receives and sends to {path} (pcap)");
                dev.capture = Some(tap);
                Some(writer)
            }
            None => None,
        };
        dev.tx_loss.every = cfg.tx_drop_every;
        dev.busy_poll_syscall = busy_poll_syscall;
        let xsk_stats = match dev.xsk.stats_reader() {
            Ok(r) => Some(r),
            Err(e) => {
                crate::log_warn!(
                    "xdp backend: duplicating the AF_XDP socket: {e}: its XDP_STATISTICS are not exported"
                );
                None
            }
        };
        let mut stack = Stack::new(cfg.stack, dev);
        if let Some(h) = handoff {
            stack.set_handoff(h);
        }
        Ok(XdpTransport { prog, maps, stack, xsk_stats, _pcap: pcap })
    }
}

impl Transport for XdpTransport {
    fn name(&self) -> &'static str {
        "xdp"
    }

    fn listen(&mut self, addr: SocketAddr) -> io::Result<()> {
        self.stack.listen(addr)?;
        // The XDP program redirects TCP for listening ports only.
        self.maps.add_port(addr.port()).map_err(io::Error::other)?;
        Ok(())
    }

    fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        self.stack.connect(addr)
    }

    #[inline]
    fn poll(&mut self, timeout: Option<Duration>, events: &mut Vec<Event>) -> io::Result<u64> {
        self.stack.poll(timeout, events)
    }

    #[inline]
    fn recv(&mut self, conn: ConnId, buf: &mut [u8]) -> io::Result<usize> {
        self.stack.recv(conn, buf)
    }

    #[inline]
    fn send(&mut self, conn: ConnId, buf: &[u8]) -> io::Result<usize> {
        self.stack.send(conn, buf)
    }

    fn shutdown_write(&mut self, conn: ConnId) -> io::Result<()> {
        self.stack.shutdown_write(conn)
    }

    fn close(&mut self, conn: ConnId) {
        self.stack.close(conn)
    }

    fn stop_listening(&mut self) {
        self.stack.stop_listening()
    }

    fn closing(&self) -> usize {
        self.stack.closing()
    }

    #[inline]
    fn flush(&mut self, now_ns: u64) {
        self.stack.flush(now_ns)
    }

    fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.stack.peer_addr(conn)
    }

    fn local_port(&self, conn: ConnId) -> Option<u16> {
        self.stack.local_port(conn)
    }

    fn stats(&self) -> TransportStats {
        self.stack.stats()
    }

    fn report(&self) -> Option<String> {
        let mut c = self.stack.counters();
        if let Some(p) = &self.prog {
            p.counters().fill(&mut c);
        }
        if let Some(r) = &self.xsk_stats {
            r.fill(&mut c);
        }
        Some(format!("xdp: {}", c.line()))
    }

    fn counters(&self) -> Counters {
        self.stack.counters()
    }

    fn counter_reader(&self) -> Option<CounterReader> {
        let xsk = self.xsk_stats.as_ref().and_then(|r| r.try_clone().ok());
        let Some(prog) = &self.prog else {
            // A loop of several: the program's counters are read once, by
            // the main thread's reader, not per loop.
            return xsk.map(|x| -> CounterReader {
                Box::new(move || {
                    let mut c = Counters::default();
                    x.fill(&mut c);
                    c
                })
            });
        };
        match prog.counter_reader() {
            Ok(r) => Some(Box::new(move || {
                let mut c = Counters::default();
                r.read().fill(&mut c);
                if let Some(x) = &xsk {
                    x.fill(&mut c);
                }
                c
            })),
            Err(e) => {
                crate::log_warn!("xdp backend: {e}: the XDP program's counters are not exported");
                None
            }
        }
    }

    fn set_tracing(&mut self, on: bool) {
        self.stack.set_tracing(on)
    }

    #[inline]
    fn rx_trace(&mut self, conn: ConnId) -> RxTrace {
        self.stack.rx_trace(conn)
    }

    #[inline]
    fn loop_flags(&mut self) -> u32 {
        self.stack.loop_flags()
    }

    fn flush_transmits(&self) -> bool {
        true
    }

    fn tracks_acks(&self) -> bool {
        self.stack.tracks_acks()
    }

    fn set_ack_tracking(&mut self, on: bool) {
        self.stack.set_ack_tracking(on)
    }

    #[inline]
    fn watch_acks(&mut self, conn: ConnId, on: bool) {
        self.stack.watch_acks(conn, on)
    }

    #[inline]
    fn acks(&mut self, out: &mut Vec<AckEvent>) {
        self.stack.acks(out)
    }
}
