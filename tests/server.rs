//! The event loop (`Server`) over the user-space stack on the in-memory
//! link, in virtual time, against a client stack: the flush deadline of a
//! closing connection whose peer stopped reading, and the graceful
//! shutdown (every reply delivered, every session's Logout, FIN).

use std::time::Duration;

use tailgate::app::echo::Echo;
use tailgate::app::orders::{Orders, OrdersConfig};
use tailgate::proto::{ClientMsg, Code8, Frame, GatewayMsg, LogoutReason, NewOrder, OrderKind, Parsed, Side};
use tailgate::server::{Server, ServerConfig};
use tailgate::stack::sim::{pair, Clock, MemLink, MAC_A, MAC_B};
use tailgate::stack::Stack;
use tailgate::transport::{would_block, ConnId, Event, Transport};

mod mem;
use mem::*;

/// A `Server` running app `A` on one stack, a bare client stack on the
/// other end of the link.
struct World<A: tailgate::app::App> {
    clock: Clock,
    server: Server<Stack<MemLink>, A>,
    client: Stack<MemLink>,
    connected: bool,
}

impl<A: tailgate::app::App> World<A> {
    fn new(app: A, cfg: ServerConfig) -> World<A> {
        let clock = Clock::new(1_000_000_000);
        let (a, b) = pair(&clock);
        let mut sc = config(SERVER, MAC_A);
        sc.local_ports = (0, 0);
        let mut server = Server::new(Stack::new(sc, a), app, cfg);
        server.listen(server_addr()).unwrap();
        World { clock, server, client: Stack::new(config(CLIENT, MAC_B), b), connected: false }
    }

    fn step(&mut self) {
        self.server.run_once().unwrap();
        let mut ev = Vec::new();
        let now = self.client.poll(Some(Duration::ZERO), &mut ev).unwrap();
        self.connected |= ev.iter().any(|e| matches!(e, Event::Connected(_)));
        self.client.flush(now);
        self.clock.advance(STEP);
    }

    fn run(&mut self, d: Duration) {
        let end = self.clock.now() + d.as_nanos() as u64;
        while self.clock.now() < end {
            self.step();
        }
    }

    fn connect(&mut self) -> ConnId {
        let id = self.client.connect(server_addr()).unwrap();
        self.run(ms(5));
        assert!(self.connected);
        id
    }

    /// Send all of `data` on `id`, running the world while it waits.
    fn send_all(&mut self, id: ConnId, data: &[u8]) {
        let mut off = 0;
        for _ in 0..200_000 {
            if off == data.len() {
                return;
            }
            match self.client.send(id, &data[off..]) {
                Ok(n) => off += n,
                Err(e) if would_block(&e) => {}
                Err(e) => panic!("send: {e}"),
            }
            self.step();
        }
        panic!("sent {off} of {}", data.len());
    }

    /// Read what has arrived on `id`; `true` once the server's FIN is in.
    fn read(&mut self, id: ConnId, into: &mut Vec<u8>) -> bool {
        let mut buf = [0u8; 16384];
        loop {
            match self.client.recv(id, &mut buf) {
                Ok(0) => return true,
                Ok(n) => into.extend_from_slice(&buf[..n]),
                Err(e) if would_block(&e) => return false,
                Err(e) => panic!("recv: {e}"),
            }
        }
    }
}

#[test]
fn a_closing_connection_whose_peer_stopped_reading_is_reset_at_the_flush_deadline() {
    let cfg = ServerConfig { flush_ns: 200_000_000, tick_ns: 1_000_000, ..ServerConfig::default() };
    let mut w = World::new(Echo::default(), cfg);
    let id = w.connect();
    // 160 KiB in, never read: the echo fills the client's receive buffer
    // (64 KiB) and the server's socket (64 KiB); 32 KiB wait in the
    // server's output when the client's FIN comes.
    w.send_all(id, &vec![7u8; 160 * 1024]);
    w.client.shutdown_write(id).unwrap();
    w.run(ms(100));
    assert_eq!(w.server.stats.closed, 0, "still flushing");
    w.run(ms(150));
    assert_eq!(w.server.stats.flush_timeouts, 1);
    assert_eq!((w.server.stats.closed, w.server.stats.aborted), (1, 1));
}

fn encode(m: ClientMsg, seq: u32, out: &mut Vec<u8>) {
    let mut b = [0u8; 256];
    let n = m.encode(seq, &mut b).unwrap();
    out.extend_from_slice(&b[..n]);
}

fn decode_all(mut b: &[u8]) -> Vec<GatewayMsg> {
    let mut out = Vec::new();
    while let Ok(Parsed::Frame(f)) = Frame::parse(b) {
        let n = f.len();
        out.push(GatewayMsg::decode(&f).unwrap());
        b = &b[n..];
    }
    assert!(b.is_empty(), "a partial frame left");
    out
}

fn order(i: u32) -> ClientMsg {
    ClientMsg::NewOrder(NewOrder {
        cl_ord_id: u64::from(i),
        client_ts: 0,
        price: 100,
        qty: 1,
        side: Side::Buy,
        kind: OrderKind::Limit,
        symbol: Code8::new("TGATE").unwrap(),
    })
}

/// Logon and orders `1..=n` (sequence numbers from 1), as bytes.
fn logon_and_orders(n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    encode(ClientMsg::logon(Code8::new("ACCT").unwrap()), 1, &mut out);
    for i in 1..=n {
        encode(order(i), i + 1, &mut out);
    }
    out
}

#[test]
fn shutdown_delivers_every_reply_then_logout_then_fin() {
    let cfg = ServerConfig { tick_ns: 1_000_000, ..ServerConfig::default() };
    let mut w = World::new(Orders::new(OrdersConfig::default()), cfg);
    let ids: Vec<ConnId> = (0..3).map(|_| w.connect()).collect();
    let mut got = vec![Vec::new(); ids.len()];
    // Sessions 0 and 1: 200 orders, all answered before the shutdown.
    for &id in &ids[..2] {
        w.send_all(id, &logon_and_orders(200));
    }
    w.run(ms(20));
    // Session 2: logged on, then 500 orders sent just as the gateway
    // shuts down: some may not be read, and are not answered.
    w.send_all(ids[2], &logon_and_orders(0));
    w.run(ms(5));
    let mut more = Vec::new();
    for i in 1..=500 {
        encode(order(i), i + 1, &mut more);
    }
    assert!(w.client.send(ids[2], &more).unwrap() > 0);
    w.step();
    w.server.begin_shutdown();
    let mut fin = vec![false; ids.len()];
    for _ in 0..300_000 {
        for (k, &id) in ids.iter().enumerate() {
            if !fin[k] && w.read(id, &mut got[k]) {
                // As a client does at the gateway's FIN: close too.
                fin[k] = true;
                w.client.shutdown_write(id).unwrap();
            }
        }
        if w.server.shutdown_done() && fin.iter().all(|&f| f) {
            break;
        }
        w.step();
    }
    assert!(w.server.shutdown_done(), "the drain did not finish");
    w.server.end_shutdown();
    assert!(fin.iter().all(|&f| f), "a session got no FIN");
    let mut delivered = 0;
    for (k, bytes) in got.iter().enumerate() {
        let msgs = decode_all(bytes);
        delivered += msgs.len() as u64;
        assert!(matches!(msgs.first(), Some(GatewayMsg::LogonAck { .. })), "session {k}: {:?}", msgs.first());
        // The orders the gateway read were answered, in order, and
        // nothing follows the Logout.
        let acks: Vec<u64> = msgs
            .iter()
            .filter_map(|m| match m {
                GatewayMsg::Ack { cl_ord_id, .. } => Some(*cl_ord_id),
                _ => None,
            })
            .collect();
        assert_eq!(acks, (1..=acks.len() as u64).collect::<Vec<_>>(), "session {k}");
        if k < 2 {
            assert_eq!(acks.len(), 200, "session {k}: answered before the shutdown");
        }
        assert!(
            matches!(msgs.last(), Some(GatewayMsg::Logout { reason: LogoutReason::Shutdown })),
            "session {k} ends with {:?}",
            msgs.last()
        );
    }
    // Every message the gateway counted as sent arrived.
    assert_eq!(delivered, w.server.app.counters.messages_out);
    let st = w.server.stats;
    assert_eq!((st.shutdown_sessions, st.drained, st.abandoned), (3, 3, 0));
    assert_eq!(w.server.transport.closing(), 0);
    // No new connection is accepted any more: the open is refused.
    let late = w.client.connect(server_addr()).unwrap();
    w.run(ms(5));
    let mut buf = [0u8; 8];
    assert_eq!(w.client.recv(late, &mut buf).unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);
}
