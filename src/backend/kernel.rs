//! The kernel backend: kernel TCP sockets driven by epoll through mio.
//!
//! This is the fallback that runs anywhere (a laptop over veth, a host without
//! AF_XDP). Sockets are non-blocking, TCP_NODELAY is always on, and in spin
//! mode the loop polls epoll with a zero timeout and asks the kernel to busy
//! poll the device queue on each socket (SO_BUSY_POLL) when it allows it.
//!
//! mio rather than raw rustix epoll: mio is the most widely deployed epoll
//! wrapper in Rust, handles the edge-triggered details (EPOLLRDHUP, error
//! readiness) and keeps raw system calls out of this module; the cost over a raw
//! `epoll_wait` is one small loop over the event array.
//!
//! When sampling is on, reads go through `recvmsg` for the kernel's receive
//! timestamp (see [`crate::sys::rxts`]), converted to the monotonic clock,
//! and every socket asks for the kernel's report of the peer's ACK of each
//! send ([`crate::sys::txack`]), read from its error queue when epoll says
//! EPOLLERR: one `recvmsg` per report, plus one that finds the queue empty.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::clock;
use crate::sys::{rxts, txack};
use crate::transport::gate::Gate;
use crate::transport::{signal, AckEvent, ConnId, Counters, Event, RxTrace, Transport, TransportStats, WaitMode};

/// How often the realtime-to-monotonic offset is re-read while tracing.
const CLOCK_OFFSET_NS: u64 = 100_000_000;

/// Listener tokens count down from the top of the token space so they never
/// collide with connection ids (slab keys, counted up from zero).
const LISTENER_TOKEN_TOP: usize = usize::MAX - 1;

/// Configuration of the kernel backend.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    pub wait: WaitMode,
    /// SO_BUSY_POLL value in microseconds set on every socket in spin mode.
    pub busy_poll_us: u32,
    /// Capacity of the epoll event array.
    pub events_capacity: usize,
    /// Most open connections; an accepted one beyond is reset at once.
    pub max_conns: usize,
    /// listen(2) backlog (the kernel caps it at `net.core.somaxconn`).
    pub backlog: usize,
    /// One loop of several: listen with SO_REUSEPORT (each loop has its own
    /// listener on the same address; the kernel spreads connections over
    /// them), and with SO_INCOMING_CPU set to this CPU, so that (Linux 6.2
    /// and later) a connection whose SYN is processed on this CPU goes to
    /// this loop's listener.
    pub reuse_port: Option<usize>,
    /// Sources refused as they are accepted (reset at once, before any
    /// other work): those the logon verifier made wait.
    pub gate: Option<Arc<Gate>>,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            wait: WaitMode::Block,
            busy_poll_us: crate::transport::BUSY_POLL_US_DEFAULT,
            events_capacity: 1024,
            max_conns: 4096,
            backlog: 4096,
            reuse_port: None,
            gate: None,
        }
    }
}

/// How long a blocking poll may sleep while an accept must be retried.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// Kernel TCP over epoll.
pub struct KernelTransport {
    cfg: KernelConfig,
    poll: Poll,
    events: Events,
    listeners: Vec<TcpListener>,
    /// Each stream with a flag: epoll reported read-closed or error on it.
    conns: Slab<(TcpStream, bool)>,
    pending: Vec<Event>,
    /// Outbound connections still opening (a non-blocking connect), and
    /// those that failed, with why: their `recv` says so until closed.
    opening: Vec<ConnId>,
    open_failed: Vec<(ConnId, io::ErrorKind)>,
    stats: TransportStats,
    busy_poll_refused: bool,
    accept_errors: u64,
    /// Connections reset at once because `max_conns` were open.
    refused: u64,
    /// Connections reset as accepted: their source is at the gate.
    gated: u64,
    /// Listeners whose last accept failed (EMFILE, ENFILE, ENOBUFS, ...):
    /// retried at the next poll, edge or no edge (the listener is
    /// edge-triggered, and connections left in the backlog raise no new edge).
    accept_retry: [bool; 8],
    /// Tracing: kernel receive timestamps are on.
    tracing: bool,
    /// Tracing: ACK reports are asked for on every socket (none refused
    /// so far), and whether they carry the retransmission count.
    acks_on: bool,
    ack_stats: bool,
    /// Per connection id: what its last ACK report said.
    retrans: Vec<AckSeen>,
    /// ACK reports read since the last `acks`.
    ack_events: Vec<AckEvent>,
    /// Error-queue messages read, and ACK reports among them that waited
    /// for a retransmission.
    errqueue_reads: u64,
    acks_retransmitted: u64,
    last_rx_trace: RxTrace,
    /// Loop signals (`signal::SLEPT`).
    loop_flags: u32,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC, and when it was read (monotonic).
    clock_offset: u64,
    clock_offset_at: u64,
    /// The last poll's clock.
    now_ns: u64,
}

/// What a connection's last ACK report said: its retransmissions and
/// D-SACKs so far, and the bytes acknowledged (counted across the wraps of
/// the reports' 32-bit offsets).
#[derive(Debug, Default, Clone, Copy)]
struct AckSeen {
    retrans: u32,
    dsack: u32,
    acked: u64,
}

impl KernelTransport {
    pub fn new(cfg: KernelConfig) -> io::Result<Self> {
        Ok(KernelTransport {
            events: Events::with_capacity(cfg.events_capacity),
            cfg,
            poll: Poll::new()?,
            listeners: Vec::new(),
            conns: Slab::with_capacity(1024),
            pending: Vec::new(),
            opening: Vec::with_capacity(64),
            open_failed: Vec::with_capacity(64),
            stats: TransportStats::default(),
            busy_poll_refused: false,
            accept_errors: 0,
            refused: 0,
            gated: 0,
            accept_retry: [false; 8],
            tracing: false,
            acks_on: false,
            ack_stats: false,
            retrans: Vec::new(),
            ack_events: Vec::with_capacity(1024),
            errqueue_reads: 0,
            acks_retransmitted: 0,
            last_rx_trace: RxTrace::default(),
            loop_flags: 0,
            clock_offset: 0,
            clock_offset_at: 0,
            now_ns: 0,
        })
    }

    /// Has the connect of stream `t` ended, and how? None: still opening;
    /// Some(None): connected; Some(Some(kind)): failed.
    fn opened(conns: &Slab<(TcpStream, bool)>, t: usize, ev: &mio::event::Event) -> Option<Option<io::ErrorKind>> {
        if !(ev.is_writable() || ev.is_error() || ev.is_write_closed() || ev.is_read_closed()) {
            return None;
        }
        let (s, _) = conns.get(t)?;
        match s.take_error() {
            Ok(Some(e)) => return Some(Some(e.kind())),
            Err(e) => return Some(Some(e.kind())),
            Ok(None) => {}
        }
        match s.peer_addr() {
            Ok(_) => Some(None),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                // Writable without a peer and without an error: refused.
                if ev.is_error() || ev.is_write_closed() || ev.is_read_closed() {
                    Some(Some(io::ErrorKind::ConnectionRefused))
                } else {
                    None
                }
            }
            Err(e) => Some(Some(e.kind())),
        }
    }

    fn setup_stream(&mut self, mut s: TcpStream) -> io::Result<ConnId> {
        s.set_nodelay(true)?;
        if self.cfg.wait == WaitMode::Spin && self.cfg.busy_poll_us > 0 {
            if let Err(e) = socket2::SockRef::from(&s).set_busy_poll(self.cfg.busy_poll_us) {
                if !self.busy_poll_refused {
                    crate::log_warn!(
                        "kernel backend: SO_BUSY_POLL={} refused: {e}; spinning on epoll only",
                        self.cfg.busy_poll_us
                    );
                    self.busy_poll_refused = true;
                }
            }
        }
        if self.tracing {
            if let Err(e) = rxts::enable(s.as_raw_fd()) {
                crate::log_warn!("kernel backend: SO_TIMESTAMPNS refused: {e}; samples use the poll time");
            }
        }
        let entry = self.conns.vacant_entry();
        let id = entry.key();
        if self.acks_on {
            match txack::enable(s.as_raw_fd()) {
                Ok(stats) => {
                    if !stats && self.ack_stats {
                        crate::log_warn!(
                            "kernel backend: SOF_TIMESTAMPING_OPT_STATS refused; \
                             a retransmitted reply shows only as a late ACK"
                        );
                        self.ack_stats = false;
                    }
                }
                Err(e) => {
                    crate::log_warn!("kernel backend: SO_TIMESTAMPING TX_ACK refused: {e}; samples carry no ACK stage");
                    self.acks_on = false;
                }
            }
            if self.retrans.len() <= id {
                self.retrans.resize(id + 1, AckSeen::default());
            }
            self.retrans[id] = AckSeen::default();
        }
        self.poll.registry().register(&mut s, Token(id), Interest::READABLE | Interest::WRITABLE)?;
        entry.insert((s, false));
        Ok(ConnId(id))
    }

    /// Read connection `t`'s error queue: its ACK reports become
    /// [`AckEvent`]s in `out` (realtime stamps less `offset`). Returns the
    /// messages read (0: a real error) and the reports that waited for a
    /// retransmission.
    fn read_acks(
        conns: &Slab<(TcpStream, bool)>,
        retrans: &mut [AckSeen],
        out: &mut Vec<AckEvent>,
        (offset, stats): (u64, bool),
        t: usize,
    ) -> (usize, u64) {
        let Some((s, _)) = conns.get(t) else { return (0, 0) };
        let mut seen = retrans.get(t).copied().unwrap_or_default();
        let mut waited = 0;
        let n = txack::drain(s.as_raw_fd(), |a| {
            let retransmitted = stats && a.total_retrans.is_some_and(|r| r != seen.retrans);
            // A D-SACK the peer sent by the time of this report: one of our
            // copies was a duplicate, the original had reached it.
            let spurious = match a.dsack_dups {
                Some(d) if stats => d.wrapping_sub(seen.dsack),
                _ => 0,
            };
            waited += u64::from(retransmitted);
            seen.retrans = a.total_retrans.unwrap_or(seen.retrans);
            seen.dsack = a.dsack_dups.unwrap_or(seen.dsack);
            seen.acked = a.acked(seen.acked);
            let at_ns = a.at_realtime_ns.wrapping_sub(offset);
            out.push(AckEvent { conn: ConnId(t), acked: seen.acked, at_ns, retransmitted, spurious });
        })
        .unwrap_or(0);
        if let Some(v) = retrans.get_mut(t) {
            *v = seen;
        }
        (n, waited)
    }

    fn accept_all(&mut self, idx: usize, events: &mut Vec<Event>) {
        loop {
            match self.listeners[idx].accept() {
                Ok((s, peer)) if self.conns.len() >= self.cfg.max_conns => {
                    // Refused at once: RST (linger 0), not a connection
                    // that hangs until the client gives up.
                    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                    drop(s);
                    self.refused += 1;
                    crate::log_warn!(
                        "kernel backend: connection from {peer} refused: --max-conns {} open ({} refused so far)",
                        self.cfg.max_conns,
                        self.refused
                    );
                }
                Ok((s, peer)) if self.cfg.gate.as_ref().is_some_and(|g| g.refuses(peer.ip(), clock::mono_ns())) => {
                    // Its failed logons made it wait (the verifier logged
                    // that once): reset, without a log line per connection.
                    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                    drop(s);
                    self.gated += 1;
                }
                Ok((s, _peer)) => match self.setup_stream(s) {
                    Ok(id) => {
                        self.stats.accepted += 1;
                        events.push(Event::Accepted(id));
                    }
                    Err(e) => {
                        self.accept_errors += 1;
                        crate::log_warn!("kernel backend: cannot set up accepted socket: {e}");
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS: leave the rest in the backlog
                    // and try again at the next poll (a closed connection
                    // frees a descriptor; no new edge will say so).
                    self.accept_errors += 1;
                    if let Some(r) = self.accept_retry.get_mut(idx) {
                        *r = true;
                    }
                    crate::log_warn!("kernel backend: accept failed: {e}; retrying at the next poll");
                    break;
                }
            }
        }
    }
}

impl Transport for KernelTransport {
    fn name(&self) -> &'static str {
        "kernel"
    }

    fn listen(&mut self, addr: SocketAddr) -> io::Result<()> {
        let s = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        if let Some(cpu) = self.cfg.reuse_port {
            s.set_reuse_port(true)?;
            if let Err(e) = s.set_cpu_affinity(cpu) {
                crate::log_warn!("kernel backend: SO_INCOMING_CPU {cpu} on the listener: {e}; the kernel spreads connections by hash");
            }
        }
        s.bind(&addr.into())?;
        s.listen(self.cfg.backlog.min(i32::MAX as usize) as i32)?;
        s.set_nonblocking(true)?;
        let mut l = TcpListener::from_std(s.into());
        let token = Token(LISTENER_TOKEN_TOP - self.listeners.len());
        self.poll.registry().register(&mut l, token, Interest::READABLE)?;
        self.listeners.push(l);
        Ok(())
    }

    fn stop_listening(&mut self) {
        for mut l in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.accept_retry = [false; 8];
    }

    /// A non-blocking connect: the loop never waits for the handshake.
    /// Connected follows when it completes; a refusal (or any error) is
    /// reported as Readable, and `recv` then says why. The caller bounds
    /// the time it waits (the server's `connect_ns`).
    fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        if self.conns.len() >= self.cfg.max_conns {
            return Err(io::Error::other("connection limit (--max-conns) reached"));
        }
        let s = TcpStream::connect(addr)?;
        let id = self.setup_stream(s)?;
        self.opening.push(id);
        Ok(id)
    }

    fn poll(&mut self, timeout: Option<Duration>, events: &mut Vec<Event>) -> io::Result<u64> {
        events.clear();
        events.append(&mut self.pending);
        let retry = self.accept_retry.iter().any(|&r| r);
        let timeout = match self.cfg.wait {
            WaitMode::Spin => Some(Duration::ZERO),
            WaitMode::Block if !events.is_empty() => Some(Duration::ZERO),
            WaitMode::Block if retry => Some(timeout.map_or(ACCEPT_RETRY, |t| t.min(ACCEPT_RETRY))),
            WaitMode::Block => timeout,
        };
        if self.tracing && timeout != Some(Duration::ZERO) {
            self.loop_flags |= signal::SLEPT;
        }
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let now = crate::clock::mono_ns();
        self.now_ns = now;
        // Receive timestamps and ACK reports are CLOCK_REALTIME: the offset
        // to the monotonic clock, re-read every 100 ms.
        if self.tracing && now.saturating_sub(self.clock_offset_at) >= CLOCK_OFFSET_NS {
            self.clock_offset = clock::realtime_offset_ns();
            self.clock_offset_at = now;
        }
        let mut accept_from = self.accept_retry;
        self.accept_retry = [false; 8];
        for ev in self.events.iter() {
            let t = ev.token().0;
            if t > LISTENER_TOKEN_TOP - self.listeners.len() {
                let idx = LISTENER_TOKEN_TOP - t;
                if let Some(slot) = accept_from.get_mut(idx) {
                    *slot = true;
                }
                continue;
            }
            let id = ConnId(t);
            if !self.opening.is_empty() {
                if let Some(i) = self.opening.iter().position(|&o| o == id) {
                    if let Some(failed) = Self::opened(&self.conns, t, ev) {
                        self.opening.swap_remove(i);
                        match failed {
                            None => {
                                self.stats.connected += 1;
                                events.push(Event::Connected(id));
                            }
                            Some(kind) => {
                                self.open_failed.push((id, kind));
                                events.push(Event::Readable(id));
                                continue;
                            }
                        }
                    }
                }
            }
            // EPOLLERR also means "the error queue holds ACK reports": read
            // them; an EPOLLERR with none is a real error.
            let error = ev.is_error()
                && !(self.acks_on && {
                    let (n, waited) = Self::read_acks(
                        &self.conns,
                        &mut self.retrans,
                        &mut self.ack_events,
                        (self.clock_offset, self.ack_stats),
                        t,
                    );
                    self.errqueue_reads += n as u64;
                    self.acks_retransmitted += waited;
                    n > 0
                });
            if ev.is_read_closed() || error {
                if let Some(c) = self.conns.get_mut(t) {
                    c.1 = true;
                }
            }
            if ev.is_readable() || ev.is_read_closed() || error {
                events.push(Event::Readable(id));
            }
            if ev.is_writable() || ev.is_write_closed() {
                events.push(Event::Writable(id));
            }
        }
        let n = self.listeners.len();
        for (idx, _) in accept_from.iter().enumerate().take(n).filter(|(_, &hit)| hit) {
            self.accept_all(idx, events);
        }
        self.stats.count_poll(events);
        Ok(now)
    }

    fn recv(&mut self, conn: ConnId, buf: &mut [u8]) -> io::Result<usize> {
        if !self.open_failed.is_empty() {
            if let Some(&(_, kind)) = self.open_failed.iter().find(|(c, _)| *c == conn) {
                return Err(kind.into());
            }
        }
        let (s, hup) = self.conns.get_mut(conn.0).ok_or(io::ErrorKind::NotConnected)?;
        let n = if self.tracing {
            let (n, rt) = rxts::recv(s.as_raw_fd(), buf)?;
            // A timestamp later than delivery (the clock stepped) is ignored
            // by the sample (`Sample::arrival`).
            let arrival = if rt == 0 { 0 } else { rt.wrapping_sub(self.clock_offset) };
            self.last_rx_trace = RxTrace { arrival_ns: arrival, flags: 0 };
            n
        } else {
            s.read(buf)?
        };
        self.stats.bytes_in += n as u64;
        if n > 0 && n < buf.len() && *hup {
            // The FIN (or error) behind this data already used up its epoll
            // edge: report Readable again so a consumer that stops at a short
            // read still sees it (transport contract).
            self.pending.push(Event::Readable(conn));
        }
        Ok(n)
    }

    fn send(&mut self, conn: ConnId, buf: &[u8]) -> io::Result<usize> {
        let (s, _) = self.conns.get_mut(conn.0).ok_or(io::ErrorKind::NotConnected)?;
        let n = s.write(buf)?;
        self.stats.bytes_out += n as u64;
        Ok(n)
    }

    fn shutdown_write(&mut self, conn: ConnId) -> io::Result<()> {
        let (s, _) = self.conns.get(conn.0).ok_or(io::ErrorKind::NotConnected)?;
        s.shutdown(Shutdown::Write)
    }

    fn close(&mut self, conn: ConnId) {
        self.opening.retain(|&c| c != conn);
        self.open_failed.retain(|(c, _)| *c != conn);
        if let Some((mut s, _)) = self.conns.try_remove(conn.0) {
            let _ = self.poll.registry().deregister(&mut s);
            self.stats.closed += 1;
        }
    }

    fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.conns.get(conn.0).and_then(|(s, _)| s.peer_addr().ok())
    }

    fn local_port(&self, conn: ConnId) -> Option<u16> {
        self.conns.get(conn.0).and_then(|(s, _)| s.local_addr().ok()).map(|a| a.port())
    }

    fn stats(&self) -> TransportStats {
        self.stats
    }

    fn counters(&self) -> Counters {
        let mut c = Counters::default();
        c.drop("conn_refused", self.refused);
        c.drop("conn_refused_throttled", self.gated);
        c.drop("accept_errors", self.accept_errors);
        if self.tracing {
            c.event("errqueue_reads", self.errqueue_reads);
            c.event("acks_retransmitted", self.acks_retransmitted);
        }
        c
    }

    fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
        self.acks_on = on;
        self.ack_stats = on;
    }

    fn tracks_acks(&self) -> bool {
        self.acks_on
    }

    fn set_ack_tracking(&mut self, on: bool) {
        self.acks_on = on && self.tracing;
    }

    fn acks(&mut self, out: &mut Vec<AckEvent>) {
        out.append(&mut self.ack_events);
    }

    fn rx_trace(&mut self, _conn: ConnId) -> RxTrace {
        self.last_rx_trace
    }

    fn loop_flags(&mut self) -> u32 {
        std::mem::take(&mut self.loop_flags)
    }

    fn report(&self) -> Option<String> {
        Some(format!(
            "kernel: {} busy_poll={}",
            self.counters().line(),
            match (self.cfg.wait, self.cfg.busy_poll_us, self.busy_poll_refused) {
                (WaitMode::Block, _, _) | (_, 0, _) => "off",
                (_, _, true) => "refused",
                _ => "on",
            }
        ))
    }
}

#[cfg(test)]
mod tests;
