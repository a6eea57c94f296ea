//! The user-space TCP/IP stack: smoltcp's `Interface` over socket shards,
//! the frame demultiplexer in front of it, SYN cookies for every passive
//! open, the connection table, flow observations for tracing, and the [`Transport`](crate::transport::Transport)
//! implementation. It runs on any [`Link`] (a smoltcp `Device` with
//! staging): AF_XDP rings in production (`backend::xdp`), an in-memory pair
//! with a virtual clock in tests ([`sim`]). It reads no clock: each poll
//! asks the link for the time once, and everything else takes it as a
//! parameter, as smoltcp does.
//!
//! ```text
//! mod.rs        Stack: config, shards, sockets, egress, the poll's passes
//! ingress.rs    frames off the link: judged, answered or given to their shard's smoltcp
//! scan.rs       socket states into events; closing sockets freed
//! sockets.rs    sockets made once and reused; a closing one's linger; released to the guard
//! closing.rs    closing connections per shard, their deadlines in one queue
//! timers.rs     a heap of each shard's next smoltcp deadline
//! limit.rs      rate limits on what the stack sends unasked: ICMP echo, RSTs per source
//! transport.rs  impl Transport for Stack (listen, connect, poll, recv, send, close)
//! link.rs       the Link trait: Device + staging, flush, wait, the link's clock
//! frame.rs      checked views of untrusted frames (4-tuple, checksums)
//! guard.rs      RFC 5961 checks, TIME-WAIT records
//! reply.rs      segments the stack writes itself (challenge ACK, RST, cookie SYN-ACK)
//! seq.rs        sequence-number arithmetic
//! tap.rs        the link as smoltcp sees it: each frame it sends, shown to guard and recovery
//! door.rs       SYN cookies: every passive open, no half-open state
//! handoff.rs    frames that landed on another loop's queue, passed to their owner
//! flow.rs       per-flow arrival and retransmission observations (tracing)
//! recovery/     loss recovery below smoltcp: µs RTT, early and SACK-driven retransmission
//!               (mod.rs the records and timers, flow.rs one flow's state and RTT, ack.rs ACK, SACK, D-SACK)
//! ports.rs      local ports of outbound connections
//! rss.rs        the Toeplitz RSS hash and queue choice for outbound ports (one loop per queue)
//! sim.rs        in-memory link pair, virtual clock, programmable faults, crafted segments
//! ```
//!
//! The stack owns its IPv4 address: it answers ARP for it and learns
//! neighbours itself. Every TCP socket has Nagle and delayed ACK off. A
//! listening port has no socket: the front door ([`door`]) answers its SYNs
//! with cookies and gives a connection its socket when the handshake
//! completes.

mod closing;
pub mod door;
pub mod flow;
pub mod frame;
pub mod guard;
pub mod handoff;
mod ingress;
pub mod limit;
pub mod link;
pub mod ports;
pub mod recovery;
pub mod reply;
pub mod rss;
mod scan;
pub mod seq;
pub mod sim;
mod sockets;
pub mod tap;
mod timers;
mod transport;

use std::net::Ipv4Addr;

use slab::Slab;
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

use self::door::Door;
use self::flow::FlowMap;
use self::frame::flow_key;
use self::guard::{Guard, Reply};
use self::handoff::Handoff;
pub use self::link::Link;
use self::ports::PortSet;
use self::recovery::Recovery;
use self::tap::Tap;
use crate::transport::{signal, ConnId, Counters, Event, RxTrace, TransportStats, WaitMode};

/// The soonest a shard whose egress just emitted nothing is polled again
/// for its smoltcp timers (smoltcp may say "now" for a socket it cannot
/// serve yet: a window or a neighbour it waits for).
const TIMER_FLOOR_NS: u64 = 100_000;

/// Egress rounds per shard per flush (each round: one segment per socket).
const EGRESS_ROUNDS: usize = 64;

/// Frames taken off the link per poll: bounded work per iteration, but
/// enough that a loop whose iterations run long past capacity still gives
/// frames back to the fill ring faster than they come (64 let a busy load
/// generator's ring overflow at 300k orders/s: docs/BENCHMARKS.md).
const INGRESS_BUDGET: usize = 1024;

/// How long a closed connection may take to finish its close handshake
/// (deliver what it queued, exchange FINs) before it is aborted with a RST
/// and its socket freed: the default of `StackConfig::linger_ns`.
pub const LINGER_NS_DEFAULT: u64 = 5_000_000_000;

/// Number of socket shards (a power of two). smoltcp walks every socket of
/// a shard to deliver a segment and on every egress round, so a shard's
/// size is a per-message cost: 4000 connections over 64 shards (62 each)
/// put xdp's median at 1.6 times the kernel's; over 1024 (4 each) below it
/// (docs/BENCHMARKS.md). Each shard's smoltcp timers (its own RTO, SYN and
/// window probes, neighbour discovery) are served when smoltcp says they
/// are due (`stack/timers.rs`); loss recovery's timers are its own and exact.
pub const SHARDS: usize = 1024;

/// Configuration of the stack.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// The address the stack owns, and its prefix length.
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// The link's hardware address.
    pub mac: [u8; 6],
    pub wait: WaitMode,
    /// Most open connections (accepted plus connected).
    pub max_conns: usize,
    /// Per-socket receive and send buffers in bytes.
    pub sock_rx_buf: usize,
    pub sock_tx_buf: usize,
    /// Inclusive local port range for outbound connections ((0, 0): none).
    pub local_ports: (u16, u16),
    /// Seed for smoltcp's initial sequence numbers and ports.
    pub random_seed: u64,
    /// Segments in flight the stack keeps a copy of, for its own
    /// retransmissions ([`recovery`]): `retx_slots` x 1536 bytes, allocated
    /// at start-up.
    pub retx_slots: usize,
    /// Added to every retransmission timeout (ns): what the host's own
    /// scheduling jitter may add to a round trip.
    pub retx_floor_ns: u64,
    /// How long a closed connection may take to deliver what it queued and
    /// finish its close handshake before it is reset (ns).
    pub linger_ns: u64,
    /// ICMP echo requests answered per second at most (0: none), and RSTs
    /// sent to segments of no connection on ports nobody listens on.
    pub icmp_echo_per_sec: u32,
    pub rst_per_sec: u32,
    /// The NIC's RSS table and this loop's queue: outbound connections take
    /// local ports whose replies arrive on that queue (None: the next free
    /// port; replies that land on another loop's queue are handed over).
    pub rss: Option<rss::RssTable>,
    /// Sources whose SYN is answered with a RST (those the logon verifier
    /// made wait), before a cookie is made for them.
    pub gate: Option<std::sync::Arc<crate::transport::gate::Gate>>,
}

impl StackConfig {
    pub fn new(ip: Ipv4Addr, mac: [u8; 6]) -> Self {
        StackConfig {
            ip,
            prefix: 24,
            mac,
            wait: WaitMode::Spin,
            max_conns: 4096,
            sock_rx_buf: 64 * 1024,
            sock_tx_buf: 64 * 1024,
            local_ports: (61000, 65535),
            random_seed: 0,
            retx_slots: 8192,
            retx_floor_ns: recovery::FLOOR_NS_DEFAULT,
            linger_ns: LINGER_NS_DEFAULT,
            icmp_echo_per_sec: limit::ECHO_PER_SEC_DEFAULT,
            rst_per_sec: limit::RST_PER_SEC_DEFAULT,
            rss: None,
            gate: None,
        }
    }
}

#[derive(Debug)]
struct Conn {
    shard: usize,
    handle: SocketHandle,
    /// Accepted or Connected has been reported (or, for an active open
    /// that never completed, its failure).
    reported: bool,
    /// An active open that failed (refused or timed out): reported as
    /// Readable, and `recv` says ConnectionRefused.
    failed: bool,
    active_open: bool,
    /// A Readable for the end of the stream (FIN or reset) has been reported.
    eof_reported: bool,
    /// The last send found no room.
    want_write: bool,
    /// The flow key, once known (0: not yet).
    flow: u64,
    /// The local port an outbound connection holds (0: accepted).
    local_port: u16,
    /// Tracing: its output's ACK progress.
    ack: AckWatch,
}

/// Tracing: what a connection has sent and what of it the peer has
/// acknowledged, for the ACK stage of sampled replies.
#[derive(Debug, Default, Clone, Copy)]
struct AckWatch {
    /// Bytes `send` took.
    sent: u64,
    /// Bytes acknowledged at the last report, and the flow's
    /// retransmissions then.
    acked: u64,
    retx: u32,
    /// The flow's retransmissions found spurious at the last report.
    spurious: u32,
    /// The tracer waits for this connection's ACKs.
    on: bool,
    /// On the stack's watch list (at most once).
    listed: bool,
}

/// One slice of the socket table. Frames are demultiplexed to a shard by
/// their TCP 4-tuple before smoltcp sees them, so smoltcp's linear walks
/// (matching a packet to its socket, egress over every socket) cover one
/// shard, not every connection.
struct Shard {
    sockets: SocketSet<'static>,
    /// Slots in `sockets`' storage (sockets and holes), and its capacity:
    /// it grows by a slot at a time (`sockets.rs`).
    slots: usize,
    cap: usize,
    /// Connections (ids into `conns`) living in this shard.
    conns: Vec<usize>,
    /// Ingress or egress touched this shard since the last scan.
    scan: bool,
    /// Something may be waiting to go out (ACK owed, data queued, close).
    egress: bool,
}

/// The shard of a connection, from `(remote address, remote port, local port)`.
pub fn shard_of(remote: u32, remote_port: u16, local_port: u16) -> usize {
    let x = (u64::from(remote) << 32) | (u64::from(remote_port) << 16) | u64::from(local_port);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SHARDS.trailing_zeros())) as usize
}

/// The flow key of a socket with both endpoints known.
fn socket_flow(s: &tcp::Socket) -> Option<u64> {
    let (r, l) = (s.remote_endpoint()?, s.local_endpoint()?);
    let IpAddress::Ipv4(ip) = r.addr;
    Some(flow_key(u32::from(ip), r.port, l.port))
}

fn instant_of(ns: u64) -> Instant {
    Instant::from_micros((ns / 1000) as i64)
}

/// The user-space TCP/IP stack over link `D`.
pub struct Stack<D: Link> {
    dev: D,
    cfg: StackConfig,
    iface: Interface,
    shards: Vec<Shard>,
    conns: Slab<Conn>,
    /// Closing sockets: (shard, handle, deadline, local port held or 0,
    /// flow key or 0).
    closing: closing::Closing,
    /// Copies of segments in flight and our own retransmissions.
    rec: Recovery,
    /// RFC 5961 checks and TIME-WAIT records.
    guard: Guard,
    /// SYN cookies and the listening ports.
    door: Door,
    /// Rate limits on echo replies and RSTs to nobody's ports.
    limits: limit::Limits,
    pending: Vec<Event>,
    /// Local ports of outbound connections.
    local_ports: PortSet,
    stats: TransportStats,
    /// Connections refused because `max_conns` was reached.
    refused: u64,
    /// Closing connections reset because the linger expired, and because
    /// too many were closing.
    linger_expired: u64,
    closing_evicted: u64,
    /// Freed sockets kept for reuse, and the sockets allocated so far. A
    /// socket is never freed: a new connection takes a spare one (its
    /// buffers are only re-indexed) and only the peak of open plus closing
    /// connections is ever allocated, at most `2 * max_conns + 1` sockets
    /// (closing ones are capped at `max_conns`): memory is flat under churn
    /// instead of fragmenting as sockets come and go.
    spare: Vec<tcp::Socket<'static>>,
    sockets_made: u64,
    /// Slots of every shard's socket storage (sockets and holes).
    socket_slots: u64,
    /// Frames the stack wrote itself since the last flush.
    replied: bool,
    /// IPv4 frames dropped before smoltcp: truncated or bad checksum.
    rx_invalid: u64,
    /// The loop's clock (monotonic ns), from the link once per poll or
    /// passed to flush.
    now_ns: u64,
    /// The same time for smoltcp.
    now: Instant,
    /// When each shard's smoltcp next needs polling on its own.
    timers: timers::ShardTimers,
    /// The next time an ARP reply may walk the connections (monotonic ns).
    neighbour_walk_after: u64,
    /// The last egress found the link without a TX frame: the shards left on
    /// the list wait for the kernel, and a blocking loop may sleep (1 ms).
    tx_full: bool,
    /// Shards marked for scan / egress, so an idle loop touches none.
    to_scan: Vec<usize>,
    to_egress: Vec<usize>,
    /// Scratch lists sized at start-up (no allocation per poll): shards
    /// egress left busy, connections found dead by a scan.
    busy_scratch: Vec<usize>,
    dead_scratch: Vec<usize>,
    /// Tracing: flows by key, the last recv's trace, loop signals so far.
    tracing: bool,
    flows: FlowMap,
    last_rx_trace: RxTrace,
    loop_flags: u32,
    tx_trouble: u64,
    /// Connections whose ACKs are watched (tracing), and whether ACK
    /// reports are wanted at all (`--sample-acks`).
    watched: Vec<usize>,
    /// [`Recovery::spurious_total`] at the last `acks`: while it stands
    /// still, no watched flow is looked up for a spurious retransmission.
    spurious_seen: u64,
    acks_on: bool,
    /// One loop of several (one per NIC queue): frames it does not own go
    /// to the next loop ([`handoff`]).
    handoff: Option<Handoff>,
    /// The sockets' buffers. Last: dropped after every socket.
    buffers: crate::sys::arena::BufferArena,
}

impl<D: Link> Stack<D> {
    /// A stack on `dev` owning `cfg.ip`.
    pub fn new(cfg: StackConfig, mut dev: D) -> Self {
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(cfg.mac)));
        config.random_seed = cfg.random_seed;
        let now_ns = dev.now_ns();
        let mut iface = Interface::new(config, &mut dev, instant_of(now_ns));
        let cidr = IpCidr::new(IpAddress::Ipv4(cfg.ip), cfg.prefix);
        iface.update_ip_addrs(|a| {
            let _ = a.push(cidr);
        });
        let max_conns = cfg.max_conns;
        let first_local_port = cfg.local_ports.0;
        let buffers = crate::sys::arena::BufferArena::new(cfg.sock_rx_buf, cfg.sock_tx_buf);
        // Open and closing connections (at most max_conns of each), and
        // room for active opens under way.
        let flows = 2 * max_conns + 1024;
        let rec = Recovery::new(cfg.retx_slots, flows, cfg.retx_floor_ns);
        let (k0, k1) = {
            use std::hash::{BuildHasher, Hasher};
            // A secret per process (the OS's randomness through std's
            // RandomState) mixed with the seed.
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(cfg.random_seed);
            let k0 = h.finish();
            h.write_u64(k0);
            (k0, h.finish())
        };
        let guard = Guard::new(flows, max_conns, cfg.sock_rx_buf as u32, (k0, k1));
        let door = Door::new(k0, k1, smoltcp::phy::Device::capabilities(&dev).max_transmission_unit);
        let limits = limit::Limits::new(cfg.icmp_echo_per_sec, cfg.rst_per_sec, (k1 ^ 0x5253_545f, k0));
        Stack {
            rec,
            guard,
            door,
            limits,
            cfg,
            iface,
            shards: (0..SHARDS)
                .map(|_| Shard {
                    sockets: SocketSet::new(Vec::new()),
                    slots: 0,
                    cap: 0,
                    conns: Vec::new(),
                    scan: false,
                    egress: false,
                })
                .collect(),
            dev,
            conns: Slab::with_capacity(1024),
            closing: closing::Closing::new(SHARDS, max_conns),
            pending: Vec::new(),
            local_ports: PortSet::new(first_local_port),
            stats: TransportStats::default(),
            refused: 0,
            linger_expired: 0,
            closing_evicted: 0,
            spare: Vec::with_capacity(max_conns.min(1 << 16)),
            sockets_made: 0,
            socket_slots: 0,
            replied: false,
            rx_invalid: 0,
            now_ns,
            now: instant_of(now_ns),
            timers: timers::ShardTimers::new(SHARDS),
            neighbour_walk_after: 0,
            tx_full: false,
            to_scan: Vec::with_capacity(SHARDS),
            to_egress: Vec::with_capacity(SHARDS),
            busy_scratch: Vec::with_capacity(SHARDS),
            dead_scratch: Vec::with_capacity(max_conns + 1024),
            tracing: false,
            flows: FlowMap::default(),
            last_rx_trace: RxTrace::default(),
            loop_flags: 0,
            tx_trouble: 0,
            watched: Vec::with_capacity(max_conns.min(1 << 16)),
            spurious_seen: 0,
            acks_on: true,
            handoff: None,
            buffers,
        }
    }

    /// Make this stack one loop of several serving the same address, one
    /// per NIC queue: it serves the flows it owns and passes the others on
    /// ([`handoff`]).
    pub fn set_handoff(&mut self, h: Handoff) {
        self.handoff = Some(h);
    }

    /// This loop's handoff counters, if it is one of several.
    pub fn handoff_stats(&self) -> Option<handoff::HandoffStats> {
        self.handoff.as_ref().map(|h| h.stats)
    }

    /// The link.
    pub fn link(&self) -> &D {
        &self.dev
    }

    /// Flows tracing holds state for (at most twice `max_conns` plus 1024:
    /// past that, those of connections gone are dropped).
    pub fn traced_flows(&self) -> usize {
        self.flows.len()
    }

    /// Closing sockets still finishing their handshake.
    pub fn closing(&self) -> usize {
        self.closing.len()
    }

    /// Open connections (reported or not yet).
    pub fn open(&self) -> usize {
        self.conns.len()
    }

    /// The stack's counters and the link's.
    pub fn counters(&self) -> Counters {
        let mut c = Counters::default();
        self.dev.counters(&mut c);
        c.drop("rx_invalid", self.rx_invalid);
        c.drop("conn_refused", self.refused);
        self.door.counters(&mut c);
        self.limits.counters(&mut c);
        c.drop("linger_expired", self.linger_expired);
        c.drop("closing_evicted", self.closing_evicted);
        c.event("sockets_allocated", self.sockets_made);
        c.gauge("socket_slots", self.socket_slots);
        self.rec.counters(&mut c);
        self.guard.counters(&mut c);
        if let Some(h) = &self.handoff {
            h.counters(&mut c);
        }
        c
    }

    /// Loss recovery's counters, RTT estimates and held copies.
    /// Connections on the ACK watch list (tracing): at most the connections
    /// with records waiting for an ACK.
    pub fn ack_watch_len(&self) -> usize {
        self.watched.len()
    }

    pub fn recovery(&self) -> &Recovery {
        &self.rec
    }

    /// Loss recovery's estimates for connection `conn`.
    pub fn estimate(&self, conn: ConnId) -> Option<recovery::Estimate> {
        self.rec.estimate(self.conns.get(conn.0)?.flow)
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

    /// Egress for the shards of every connection, open or closing, to
    /// `neighbour` (whose address an ARP reply just gave): what waited for
    /// it (a SYN, data after its entry expired) goes now.
    fn mark_waiting_for(&mut self, neighbour: u32) {
        // A walk over the connections: at most once a millisecond, however
        // many replies a neighbour sends (a waiting SYN then goes at its
        // smoltcp timer instead).
        if self.now_ns < self.neighbour_walk_after {
            return;
        }
        self.neighbour_walk_after = self.now_ns + 1_000_000;
        for (_, c) in self.conns.iter() {
            if (c.flow >> 32) as u32 == neighbour && !self.shards[c.shard].egress {
                self.shards[c.shard].egress = true;
                self.to_egress.push(c.shard);
            }
        }
        for (si, z) in self.closing.iter() {
            if (z.flow >> 32) as u32 == neighbour && !self.shards[si].egress {
                self.shards[si].egress = true;
                self.to_egress.push(si);
            }
        }
    }

    fn mark_egress(&mut self, si: usize) {
        if !self.shards[si].egress {
            self.shards[si].egress = true;
            self.to_egress.push(si);
        }
    }

    /// Open connections (every one has its socket: there are no
    /// half-open ones).
    fn established(&self) -> usize {
        self.conns.len()
    }

    /// Refuse a new connection (a RST, counted) if `max_conns` are open.
    fn refuse(&mut self) -> bool {
        if self.established() < self.cfg.max_conns {
            return false;
        }
        self.note_refused();
        true
    }

    fn note_refused(&mut self) {
        self.refused += 1;
        if self.refused.is_power_of_two() {
            crate::log_warn!(
                "stack: connection refused with a RST: --max-conns {} open ({} refused so far)",
                self.cfg.max_conns,
                self.refused
            );
        }
    }

    /// Send `reply` on flow `key` to `peer_mac` (a frame the stack writes
    /// itself; flushed by the next flush of the link).
    fn send_reply(&mut self, key: u64, peer_mac: [u8; 6], reply: Reply) {
        let (ip, rp, lp) = ((key >> 32) as u32, (key >> 16) as u16, key as u16);
        let Some(tok) = self.dev.transmit(self.now) else { return };
        let (mac, own) = (self.cfg.mac, self.cfg.ip);
        smoltcp::phy::TxToken::consume(tok, reply::reply_len(reply), |buf| {
            reply::write_reply(buf, mac, own, lp, peer_mac, Ipv4Addr::from(ip), rp, reply)
        });
        self.replied = true;
    }

    /// The flow key of a connection (from its socket's endpoints the first
    /// time, then cached).
    fn conn_flow(&mut self, id: usize) -> Option<u64> {
        let c = self.conns.get_mut(id)?;
        if c.flow != 0 {
            return Some(c.flow);
        }
        c.flow = socket_flow(self.shards[c.shard].sockets.get::<tcp::Socket>(c.handle))?;
        Some(c.flow)
    }

    /// Egress for the shards that need it, then one flush of the link.
    ///
    /// smoltcp's `poll_egress` emits at most one segment per socket per call,
    /// so each shard is polled until it emits nothing, at most
    /// `EGRESS_ROUNDS` times; a shard with more to send stays marked.
    fn egress(&mut self) {
        let now = self.now;
        self.tx_full = false;
        let mut busy = std::mem::take(&mut self.busy_scratch);
        while let Some(si) = self.to_egress.pop() {
            self.shards[si].egress = false;
            let mut drained = false;
            for _ in 0..EGRESS_ROUNDS {
                let mut tap = Tap {
                    dev: &mut self.dev,
                    rec: &mut self.rec,
                    guard: &mut self.guard,
                    now: self.now_ns,
                    refused: false,
                };
                let r = self.iface.poll_egress(now, &mut tap, &mut self.shards[si].sockets);
                if tap.refused {
                    // The link had no frame: try this shard again next poll.
                    self.tx_full = true;
                    break;
                }
                if r == PollResult::None {
                    drained = true;
                    break;
                }
            }
            if !drained {
                busy.push(si);
            } else if let Some(at) = self.iface.poll_at(now, &self.shards[si].sockets) {
                // smoltcp's own next time for this shard.
                let at = (at.total_micros().max(0) as u64).saturating_mul(1000);
                self.timers.arm(si, at.max(self.now_ns + TIMER_FLOOR_NS));
            }
            self.mark_scan(si);
        }
        for si in busy.drain(..) {
            self.mark_egress(si);
        }
        self.busy_scratch = busy;
        self.rec.recover(self.now_ns, &mut self.dev);
        self.dev.flush();
    }

    /// One pass of a poll: the clock, ingress, our own retransmissions due
    /// (on the wire at once), events; and when nobody will answer in this
    /// iteration, ACKs and timers.
    fn service(&mut self, events: &mut Vec<Event>) {
        self.set_now(self.dev.now_ns());
        self.ingress();
        while let Some(si) = self.timers.pop_due(self.now_ns) {
            self.mark_egress(si);
        }
        if self.rec.recover(self.now_ns, &mut self.dev) > 0 {
            self.replied = true;
        }
        self.scan(events);
        if std::mem::take(&mut self.replied) {
            self.dev.flush();
        }
        if events.is_empty() {
            self.idle_egress();
        }
    }

    /// When nothing else will run egress this iteration: at once after
    /// ingress (ACKs owed), or for the shards whose smoltcp timers are due.
    fn idle_egress(&mut self) {
        if !self.to_egress.is_empty() {
            self.egress();
        }
    }

    /// When the earliest shard's smoltcp timer is due (monotonic ns).
    pub(super) fn next_timer(&mut self) -> Option<u64> {
        self.timers.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_of_is_stable_in_range_and_spreads_client_ports() {
        assert_eq!(shard_of(0xc612_0002, 40_000, 7777), shard_of(0xc612_0002, 40_000, 7777));
        let mut seen = vec![0u32; SHARDS];
        // 100 clients per shard: 25 addresses, 4096 ports each.
        for i in 0..(SHARDS as u32 * 100) {
            seen[shard_of(0xc612_0002 + i / 4096, 32_768 + (i % 4096) as u16, 7777)] += 1;
        }
        // 100 per shard on average; a bad hash would pile them up.
        assert!(seen.iter().all(|&n| (50..150).contains(&n)), "{seen:?}");
    }
}
