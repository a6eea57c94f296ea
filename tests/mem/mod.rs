//! The in-memory harness of the stack tests: two stacks back to back
//! over an in-memory link with a virtual clock (`Net`, an echo server on
//! one side), or one stack and a scripted peer (`stack_and_peer`, and
//! `Live`: a scripted client connected).

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use tailgate::stack::frame::tcp_flags::{ACK, PSH, RST, SYN};
use tailgate::stack::sim::{pair, Clock, Fate, MemLink, Peer, Seg, Sent, Wire, MAC_A, MAC_B};
use tailgate::stack::{Stack, StackConfig};
use tailgate::transport::{would_block, ConnId, Event, Transport};

pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const PORT: u16 = 7777;
/// Virtual time per loop step.
pub const STEP: Duration = Duration::from_micros(10);

pub fn server_addr() -> SocketAddr {
    SocketAddr::new(SERVER.into(), PORT)
}

pub fn config(ip: Ipv4Addr, mac: [u8; 6]) -> StackConfig {
    let mut c = StackConfig::new(ip, mac);
    c.random_seed = 7;
    c
}

/// An echo server over any transport, as the applications are written:
/// read until WouldBlock, write back what fits, keep the rest, half-close
/// after the peer's FIN once everything went out.
#[derive(Default)]
pub struct EchoServer {
    pub conns: HashMap<ConnId, (Vec<u8>, bool)>,
    pub accepted: usize,
    pub closed: usize,
}

impl EchoServer {
    pub fn on(&mut self, t: &mut impl Transport, ev: Event) {
        let id = match ev {
            Event::Accepted(id) => {
                self.accepted += 1;
                self.conns.insert(id, (Vec::new(), false));
                id
            }
            Event::Readable(id) | Event::Writable(id) | Event::Connected(id) => id,
        };
        let Some((out, eof)) = self.conns.get_mut(&id) else { return };
        let mut buf = [0u8; 16384];
        loop {
            match t.recv(id, &mut buf) {
                Ok(0) => {
                    *eof = true;
                    break;
                }
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if would_block(&e) => break,
                Err(_) => {
                    t.close(id);
                    self.conns.remove(&id);
                    self.closed += 1;
                    return;
                }
            }
        }
        while !out.is_empty() {
            match t.send(id, out) {
                Ok(n) => {
                    out.drain(..n);
                }
                Err(e) if would_block(&e) => break,
                Err(_) => break,
            }
        }
        if *eof && out.is_empty() {
            let _ = t.shutdown_write(id);
            t.close(id);
            self.conns.remove(&id);
            self.closed += 1;
        }
    }
}

/// A server stack and a client stack back to back.
pub struct Net {
    pub clock: Clock,
    pub server: Stack<MemLink>,
    pub client: Stack<MemLink>,
    pub echo: EchoServer,
    /// Events the client saw, in order.
    pub client_events: Vec<Event>,
    /// Virtual time per step.
    pub step: Duration,
}

impl Net {
    pub fn new() -> Net {
        Net::with(|_| {}, |_| {})
    }

    pub fn with(server_cfg: impl FnOnce(&mut StackConfig), client_cfg: impl FnOnce(&mut StackConfig)) -> Net {
        let clock = Clock::new(1_000_000_000);
        let (a, b) = pair(&clock);
        let mut sc = config(SERVER, MAC_A);
        sc.local_ports = (0, 0);
        server_cfg(&mut sc);
        let mut cc = config(CLIENT, MAC_B);
        client_cfg(&mut cc);
        let mut server = Stack::new(sc, a);
        server.listen(server_addr()).unwrap();
        Net {
            clock,
            server,
            client: Stack::new(cc, b),
            echo: EchoServer::default(),
            client_events: Vec::new(),
            step: STEP,
        }
    }

    /// One loop iteration on each side, then `STEP` of virtual time.
    pub fn step(&mut self) {
        let mut ev = Vec::new();
        let now = self.server.poll(Some(Duration::ZERO), &mut ev).unwrap();
        for e in ev.drain(..) {
            self.echo.on(&mut self.server, e);
        }
        self.server.flush(now);
        let now = self.client.poll(Some(Duration::ZERO), &mut ev).unwrap();
        self.client_events.append(&mut ev);
        self.client.flush(now);
        self.clock.advance(self.step);
    }

    /// Step until `done` holds, at most `limit` of virtual time.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Net) -> bool) -> bool {
        let end = self.clock.now() + limit.as_nanos() as u64;
        while self.clock.now() < end {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    pub fn connected(&self, id: ConnId) -> bool {
        self.client_events.contains(&Event::Connected(id))
    }

    /// Connect and wait for the handshake.
    pub fn connect(&mut self) -> ConnId {
        let id = self.client.connect(server_addr()).unwrap();
        // Ids are reused: a Connected of an earlier connection is not this one's.
        self.client_events.retain(|e| *e != Event::Connected(id));
        assert!(self.run_until(Duration::from_secs(5), |n| n.connected(id)), "no handshake");
        id
    }

    /// Read what is waiting on the client's `id` into `into`; true on EOF.
    pub fn client_read(&mut self, id: ConnId, into: &mut Vec<u8>) -> io::Result<bool> {
        let mut buf = [0u8; 16384];
        loop {
            match self.client.recv(id, &mut buf) {
                Ok(0) => return Ok(true),
                Ok(n) => into.extend_from_slice(&buf[..n]),
                Err(e) if would_block(&e) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// Send `msg` on `id` and wait for the same bytes back.
    pub fn echo_once(&mut self, id: ConnId, msg: &[u8], limit: Duration) -> Vec<u8> {
        assert_eq!(self.client.send(id, msg).unwrap(), msg.len());
        let mut got = Vec::new();
        self.run_until(limit, |n| {
            n.client_read(id, &mut got).unwrap();
            got.len() >= msg.len()
        });
        got
    }
}

/// Both sides closed and every socket gone, with no reset on the wire.
pub fn assert_clean_close(net: &mut Net, a_to_b_rst: impl Fn() -> bool) {
    assert!(
        net.run_until(Duration::from_secs(10), |n| n.server.closing() == 0 && n.client.closing() == 0),
        "closing sockets left: server {} client {}",
        net.server.closing(),
        net.client.closing()
    );
    assert_eq!((net.server.open(), net.client.open()), (0, 0));
    assert!(!a_to_b_rst(), "a reset went out on an orderly close");
}

pub fn any_rst(frames: &[Vec<u8>]) -> bool {
    frames.iter().filter_map(|f| Seg::parse(f)).any(|(_, _, s)| s.has(RST))
}

/// A stack and a scripted peer on the other end of the link.
pub fn stack_and_peer(cfg: impl FnOnce(&mut StackConfig)) -> (Clock, Stack<MemLink>, Peer) {
    let clock = Clock::new(1_000_000_000);
    let (a, b) = pair(&clock);
    let mut c = config(SERVER, MAC_A);
    cfg(&mut c);
    let mut stack = Stack::new(c, a);
    stack.listen(server_addr()).unwrap();
    let mut peer = Peer::new(b, MAC_B, CLIENT, MAC_A, SERVER);
    // As a real client does first: resolve the stack's address, which
    // teaches the stack ours.
    peer.send_raw(peer.arp_request(SERVER));
    let _ = collect(&clock, &mut stack, &mut peer, Duration::from_micros(100));
    assert_eq!(peer.other.len(), 1, "the stack answers ARP");
    peer.other.clear();
    (clock, stack, peer)
}

/// Poll the stack once (flushing what it has to send) and let time pass.
pub fn turn(clock: &Clock, stack: &mut Stack<MemLink>, events: &mut Vec<Event>) {
    let now = stack.poll(Some(Duration::ZERO), events).unwrap();
    stack.flush(now);
    clock.advance(STEP);
}

/// Every segment the peer receives within `d` of virtual time.
pub fn collect(clock: &Clock, stack: &mut Stack<MemLink>, peer: &mut Peer, d: Duration) -> Vec<Seg> {
    run(clock, stack, peer, d).0
}

/// Every segment the peer receives and every event the stack reports
/// within `d` of virtual time.
pub fn run(clock: &Clock, stack: &mut Stack<MemLink>, peer: &mut Peer, d: Duration) -> (Vec<Seg>, Vec<Event>) {
    let end = clock.now() + d.as_nanos() as u64;
    let (mut segs, mut evs, mut ev) = (Vec::new(), Vec::new(), Vec::new());
    while clock.now() < end {
        turn(clock, stack, &mut ev);
        evs.extend_from_slice(&ev);
        segs.extend(peer.recv());
    }
    (segs, evs)
}

/// Read on the client of `net` until `want.len()` bytes are in `got` (30 s
/// of virtual time at most), and check they are `want`.
pub fn read_exactly(net: &mut Net, id: ConnId, want: &[u8], got: &mut Vec<u8>) {
    assert!(
        net.run_until(Duration::from_secs(30), |n| {
            n.client_read(id, got).unwrap();
            got.len() >= want.len()
        }),
        "{} of {} bytes",
        got.len(),
        want.len()
    );
    assert!(got == want, "the stream differs");
}

pub fn syn(port: u16, seq: u32) -> Seg {
    Seg { src_port: port, dst_port: PORT, seq, flags: SYN, window: 65535, ..Seg::default() }
}

// ---------------------------------------------------------------------------
// Loss recovery (src/stack/recovery.rs): the stack's own retransmissions at
// the time scale of the link, in virtual time.

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn counter(t: &Stack<MemLink>, name: &str) -> u64 {
    t.counters().get(name).unwrap_or_else(|| panic!("no counter {name}"))
}

/// A scripted client on a stack that echoes: handshake with SACK
/// permitted; returns (our next seq, the stack's next seq).
pub fn scripted_handshake(clock: &Clock, stack: &mut Stack<MemLink>, peer: &mut Peer, port: u16) -> (u32, u32) {
    scripted_handshake_from(clock, stack, peer, port, 1000)
}

/// `scripted_handshake` with our initial sequence number `isn`.
pub fn scripted_handshake_from(
    clock: &Clock,
    stack: &mut Stack<MemLink>,
    peer: &mut Peer,
    port: u16,
    isn: u32,
) -> (u32, u32) {
    peer.send(&Seg { sack_permitted: true, ..syn(port, isn) });
    let got = collect(clock, stack, peer, ms(1));
    let sa = got.iter().find(|s| s.has(SYN | ACK)).expect("SYN-ACK");
    assert!(sa.sack_permitted);
    let rcv_nxt = sa.seq.wrapping_add(1);
    peer.send(&Seg {
        src_port: port,
        dst_port: PORT,
        seq: isn.wrapping_add(1),
        ack: rcv_nxt,
        flags: ACK,
        window: 65535,
        ..Seg::default()
    });
    (isn.wrapping_add(1), rcv_nxt)
}

/// The id of the first connection `ev` reports accepted.
pub fn accepted(ev: &[Event]) -> Option<ConnId> {
    ev.iter().find_map(|e| match e {
        Event::Accepted(id) => Some(*id),
        _ => None,
    })
}

/// A scripted client connected to a stack: the clock, the stack, the
/// peer, the stack's id for the connection, the client's port, the
/// client's next sequence number and the stack's.
pub struct Live {
    pub clock: Clock,
    pub stack: Stack<MemLink>,
    pub peer: Peer,
    pub id: ConnId,
    pub port: u16,
    pub seq: u32,
    pub rcv: u32,
}

impl Live {
    pub fn new() -> Live {
        Live::with(|_| {})
    }

    pub fn with(cfg: impl FnOnce(&mut tailgate::stack::StackConfig)) -> Live {
        let (clock, mut stack, mut peer) = stack_and_peer(cfg);
        let port = 42000;
        let (seq, rcv) = scripted_handshake(&clock, &mut stack, &mut peer, port);
        let (_, ev) = run(&clock, &mut stack, &mut peer, ms(1));
        let id = accepted(&ev).expect("Accepted");
        Live { clock, stack, peer, id, port, seq, rcv }
    }

    /// Another scripted client connection to the same stack, from `port`.
    pub fn another(&mut self, port: u16) -> Live2 {
        let (seq, rcv) = scripted_handshake(&self.clock, &mut self.stack, &mut self.peer, port);
        let (_, ev) = run(&self.clock, &mut self.stack, &mut self.peer, ms(1));
        Live2 { id: accepted(&ev).expect("Accepted"), port, seq, rcv }
    }

    /// Run `d` of virtual time; the segments the peer got.
    pub fn run(&mut self, d: Duration) -> Vec<Seg> {
        run(&self.clock, &mut self.stack, &mut self.peer, d).0
    }

    pub fn seg(&self, flags: u8, seq: u32, payload: &[u8]) -> Seg {
        Live2 { id: self.id, port: self.port, seq: self.seq, rcv: self.rcv }.seg(flags, seq, payload)
    }

    /// Send `s`, then what the stack sends within 1 ms.
    pub fn exchange(&mut self, s: &Seg) -> Vec<Seg> {
        self.peer.send(s);
        run(&self.clock, &mut self.stack, &mut self.peer, ms(1)).0
    }

    /// Send in-order data; the stack ACKs it.
    pub fn data(&mut self, payload: &[u8]) {
        let s = self.seg(ACK | PSH, self.seq, payload);
        let got = self.exchange(&s);
        self.seq = self.seq.wrapping_add(payload.len() as u32);
        assert!(got.iter().any(|g| g.has(ACK) && g.ack == self.seq), "data not acknowledged: {got:?}");
    }

    /// Is the connection still alive in the stack (reads would block)?
    pub fn alive(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.stack.recv(self.id, &mut buf) {
                Ok(0) => return false,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
    }
}

/// A second scripted connection on a `Live` stack ([`Live::another`]).
#[derive(Debug, Clone, Copy)]
pub struct Live2 {
    pub id: ConnId,
    pub port: u16,
    pub seq: u32,
    pub rcv: u32,
}

impl Live2 {
    pub fn seg(&self, flags: u8, seq: u32, payload: &[u8]) -> Seg {
        Seg {
            src_port: self.port,
            dst_port: PORT,
            seq,
            ack: self.rcv,
            flags,
            window: 65535,
            payload: payload.to_vec(),
            ..Seg::default()
        }
    }
}

/// A wire rule that decides data segments by their number (1-based) in
/// this direction and lets everything else through.
pub fn by_data_segment(mut fate: impl FnMut(u32) -> Fate + 'static) -> impl FnMut(&Sent<'_>) -> Fate + 'static {
    let mut n = 0;
    move |f| {
        if Seg::parse(f.bytes).is_some_and(|(_, _, s)| !s.payload.is_empty()) {
            n += 1;
            fate(n)
        } else {
            Fate::Deliver
        }
    }
}

/// Every data segment offered to `wire` from now on: (time, seq, dropped).
/// `drop(n)` decides the n-th (1-based).
pub type Log = Rc<RefCell<Vec<(u64, u32, bool)>>>;

pub fn record(clock: &Clock, wire: &Rc<RefCell<Wire>>, mut drop: impl FnMut(u32) -> bool + 'static) -> Log {
    let log: Log = Rc::default();
    let (l, c) = (log.clone(), clock.clone());
    wire.borrow_mut().set_rule(by_data_segment(move |n| {
        let d = drop(n);
        l.borrow_mut().push((c.now(), n, d));
        if d {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    }));
    log
}

/// Gaps between consecutive entries of the log, in ns.
pub fn gaps(log: &Log) -> Vec<u64> {
    log.borrow().windows(2).map(|w| w[1].0 - w[0].0).collect()
}

/// A connection that echoed 40 messages (prompt ACKs, so the server's
/// flow has RTT samples and no delayed-ACK allowance), with the last ACK
/// in: the net, the client's connection and the server's.
pub fn warmed_up() -> (Net, ConnId, ConnId) {
    let mut net = Net::new();
    let id = net.connect();
    for _ in 0..40 {
        assert_eq!(net.echo_once(id, b"warm", ms(10)), b"warm");
    }
    net.run_until(ms(1), |_| false);
    let sid = *net.echo.conns.keys().next().unwrap();
    (net, id, sid)
}
