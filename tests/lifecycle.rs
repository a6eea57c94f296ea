//! The order lifecycle end to end in memory: clients, the gateway with its
//! upstream session, and the exchange simulator, each on its own stack, the
//! three joined by a hub on the sim link (virtual clock).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tailgate::app::orders::{Orders, OrdersConfig, UpstreamConfig};
use tailgate::app::OutBuf;
use tailgate::exchange::{Exchange, ExchangeConfig};
use tailgate::proto::{ClientMsg, Code8, Frame, GatewayMsg, NewOrder, OrderKind, Parsed, RejectReason, Side};
use tailgate::server::{Server, ServerConfig};
use tailgate::stack::sim::{pair, Clock, MemLink};
use tailgate::stack::{Stack, StackConfig};
use tailgate::transport::{would_block, ConnId, Event, Transport};
use tailgate::upstream::soup_client::{SoupClient, SoupClientConfig, State};
use tailgate::upstream::state::SessionState;
use tailgate::venue::ouch::{self, Enter, Inbound};

const GW: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLI: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const EX: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const MACS: [[u8; 6]; 3] = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3]];
const GW_PORT: u16 = 7000;
const EX_PORT: u16 = 26400;
const STEP: Duration = Duration::from_micros(50);

fn stack(ip: Ipv4Addr, mac: [u8; 6], link: MemLink) -> Stack<MemLink> {
    let mut c = StackConfig::new(ip, mac);
    c.random_seed = 7;
    Stack::new(c, link)
}

/// Forwards frames between the three links by destination IPv4 address
/// (ARP by its target address).
struct Hub {
    gw: MemLink,
    cli: MemLink,
    ex: MemLink,
}

fn dest(frame: &[u8]) -> Option<Ipv4Addr> {
    let at = match frame.get(12..14)? {
        [0x08, 0x06] => 14 + 24,
        [0x08, 0x00] => 14 + 16,
        _ => return None,
    };
    let b = frame.get(at..at + 4)?;
    Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

impl Hub {
    fn step(&self) {
        let ports = [(GW, &self.gw), (CLI, &self.cli), (EX, &self.ex)];
        for (_, from) in ports {
            while let Some(f) = from.recv_raw() {
                if let Some((_, to)) = ports.iter().find(|(ip, _)| Some(*ip) == dest(&f)) {
                    to.send_raw(f);
                }
            }
        }
    }
}

/// A client session driven by the test.
struct Client {
    conn: ConnId,
    seq: u32,
    rx: Vec<u8>,
    got: Vec<GatewayMsg>,
    rx_seq: u32,
}

/// A firm trading on the exchange directly (another member of the venue).
struct Firm {
    client: SoupClient,
    conn: Option<ConnId>,
    out: OutBuf,
}

struct World {
    clock: Clock,
    hub: Hub,
    gw: Server<Stack<MemLink>, Orders>,
    ex: Server<Stack<MemLink>, Exchange>,
    net: Stack<MemLink>,
    clients: Vec<Client>,
    firm: Firm,
    next_ref: u32,
}

impl World {
    fn new(faults: &[&str]) -> World {
        let clock = Clock::new(1_000_000_000);
        let (gw_link, hub_gw) = pair(&clock);
        let (hub_cli, cli_link) = pair(&clock);
        let (hub_ex, ex_link) = pair(&clock);
        let mut ecfg = ExchangeConfig {
            accounts: vec![("gw0".into(), "pw0".into()), ("bob".into(), "pwb".into())],
            ..ExchangeConfig::default()
        };
        for f in faults {
            ecfg.faults.apply(f).unwrap();
        }
        let scfg = ServerConfig { tick_ns: 1_000_000, ..ServerConfig::default() };
        let mut ex = Server::new(stack(EX, MACS[2], ex_link), Exchange::new(ecfg, None).unwrap(), scfg);
        ex.listen(SocketAddr::new(EX.into(), EX_PORT)).unwrap();
        let up = UpstreamConfig {
            addr: SocketAddr::new(EX.into(), EX_PORT),
            soup: SoupClientConfig::new("gw0", "pw0"),
            username: "gw0".into(),
            state: SessionState::in_memory(),
        };
        let ocfg = OrdersConfig { idle_timeout_ms: 60_000, ..OrdersConfig::default() };
        let mut gw = Server::new(stack(GW, MACS[0], gw_link), Orders::with_upstream(ocfg, up), scfg);
        gw.listen(SocketAddr::new(GW.into(), GW_PORT)).unwrap();
        let firm = Firm {
            client: SoupClient::new(SoupClientConfig::new("bob", "pwb"), 1),
            conn: None,
            out: OutBuf::with_capacity(4096),
        };
        World {
            clock,
            hub: Hub { gw: hub_gw, cli: hub_cli, ex: hub_ex },
            gw,
            ex,
            net: stack(CLI, MACS[1], cli_link),
            clients: Vec::new(),
            firm,
            next_ref: 1,
        }
    }

    fn step(&mut self) {
        self.gw.run_once().unwrap();
        self.hub.step();
        self.ex.run_once().unwrap();
        self.hub.step();
        let mut ev = Vec::new();
        let now = self.net.poll(Some(Duration::ZERO), &mut ev).unwrap();
        let t = self.clock.now();
        for c in &mut self.clients {
            let mut buf = [0u8; 8192];
            while let Ok(n) = self.net.recv(c.conn, &mut buf) {
                if n == 0 {
                    break;
                }
                c.rx.extend_from_slice(&buf[..n]);
            }
            let mut off = 0;
            while let Ok(Parsed::Frame(f)) = Frame::parse(&c.rx[off..]) {
                assert_eq!(f.seq(), c.rx_seq, "the gateway's sequence has no gap");
                c.rx_seq += 1;
                c.got.push(GatewayMsg::decode(&f).unwrap());
                off += f.len();
            }
            c.rx.drain(..off);
        }
        let f = &mut self.firm;
        if f.client.connect_due(t) {
            f.conn = Some(self.net.connect(SocketAddr::new(EX.into(), EX_PORT)).unwrap());
            f.client.connecting();
        }
        if let Some(id) = f.conn {
            if ev.contains(&Event::Connected(id)) {
                f.client.on_connected(&mut f.out, t);
            }
            let mut buf = [0u8; 8192];
            match self.net.recv(id, &mut buf) {
                Ok(n) if n > 0 => {
                    f.client.on_input(&buf[..n], t, |_, _| true);
                }
                Err(e) if !would_block(&e) => panic!("firm: {e}"),
                _ => {}
            }
            let _ = f.client.on_tick(&mut f.out, t);
            if f.out.len() > 0 {
                if let Ok(n) = self.net.send(id, f.out.as_slice()) {
                    f.out.consume(n);
                }
            }
        }
        self.net.flush(now);
        self.hub.step();
        self.clock.advance(STEP);
    }

    /// Let the sessions log in and the neighbours be learnt (the stack
    /// sends one ARP request a second, whatever the address).
    fn settle(&mut self) {
        self.run(Duration::from_millis(1100));
    }

    fn run(&mut self, d: Duration) {
        for _ in 0..(d.as_nanos() / STEP.as_nanos()) {
            self.step();
        }
    }

    /// A logged-on client session.
    fn client(&mut self) -> usize {
        let conn = self.net.connect(SocketAddr::new(GW.into(), GW_PORT)).unwrap();
        self.clients.push(Client { conn, seq: 1, rx: Vec::new(), got: Vec::new(), rx_seq: 1 });
        let i = self.clients.len() - 1;
        self.run(Duration::from_millis(20));
        self.send(i, ClientMsg::logon(Code8::new("T1").unwrap()));
        assert!(matches!(self.take(i)[..], [GatewayMsg::LogonAck { .. }]), "logged on");
        i
    }

    fn send(&mut self, i: usize, m: ClientMsg) {
        let c = &mut self.clients[i];
        let mut b = [0u8; 64];
        let n = m.encode(c.seq, &mut b).unwrap();
        c.seq += 1;
        assert_eq!(self.net.send(c.conn, &b[..n]).unwrap(), n);
        self.run(Duration::from_millis(3));
    }

    fn take(&mut self, i: usize) -> Vec<GatewayMsg> {
        std::mem::take(&mut self.clients[i].got)
    }

    /// Bob, a member trading directly, enters an order.
    fn bob(&mut self, side: u8, qty: u32, price: u64) {
        let e = Enter {
            user_ref: self.next_ref,
            side,
            qty,
            symbol: *b"ABC     ",
            price,
            tif: b'0',
            display: b'Y',
            capacity: b'A',
            iso: b'N',
            cross: b'N',
            cl_ord_id: [b' '; 14],
        };
        self.next_ref += 1;
        let mut b = [0u8; 64];
        let n = ouch::encode_inbound(&Inbound::Enter(e), &mut b).unwrap();
        let t = self.clock.now();
        assert!(self.firm.client.send(&b[..n], &mut self.firm.out, t), "bob is logged in");
        self.run(Duration::from_millis(3));
    }
}

fn order(id: u64, side: Side, kind: OrderKind, price: i64, qty: u32) -> ClientMsg {
    ClientMsg::NewOrder(NewOrder {
        cl_ord_id: id,
        client_ts: 1000 + id,
        price,
        qty,
        side,
        kind,
        symbol: Code8::new("ABC").unwrap(),
    })
}

#[test]
fn orders_go_to_the_exchange_and_its_reports_reach_each_client() {
    let mut w = World::new(&[]);
    w.settle();
    assert!(w.gw.app.upstream_up(), "the gateway's loop logged in to the exchange");
    let (a, b) = (w.client(), w.client());
    // A resting buy: acknowledged with the exchange's order reference.
    w.send(a, order(1, Side::Buy, OrderKind::Limit, 10_000, 10));
    assert!(matches!(w.take(a)[..], [GatewayMsg::Ack { cl_ord_id: 1, client_ts: 1001, order_id, .. }] if order_id > 0));
    // A market sell of 4 from the other session: both see their fills.
    w.send(b, order(7, Side::Sell, OrderKind::Market, 0, 4));
    match w.take(b)[..] {
        [GatewayMsg::Ack { cl_ord_id: 7, .. }, GatewayMsg::Fill { cl_ord_id: 7, price: 10_000, qty: 4, leaves: 0, exec_id, .. }] =>
        {
            assert!(exec_id > 0)
        }
        ref other => panic!("{other:?}"),
    }
    assert!(matches!(w.take(a)[..], [GatewayMsg::Fill { cl_ord_id: 1, client_ts: 1001, qty: 4, leaves: 6, .. }]));
    // A market order with nothing left to meet: its remainder is cancelled by the exchange.
    w.send(b, order(8, Side::Buy, OrderKind::Market, 0, 5));
    assert!(matches!(
        w.take(b)[..],
        [GatewayMsg::Ack { .. }, GatewayMsg::Canceled { cl_ord_id: 8, qty: 5, reason: b'I', .. }]
    ));
    // Cancel: CancelAck; a second cancel of the same order is unknown.
    w.send(a, ClientMsg::Cancel { cl_ord_id: 1, client_ts: 55 });
    assert!(matches!(w.take(a)[..], [GatewayMsg::CancelAck { cl_ord_id: 1, client_ts: 55, .. }]));
    w.send(a, ClientMsg::Cancel { cl_ord_id: 1, client_ts: 56 });
    assert!(matches!(w.take(a)[..], [GatewayMsg::Reject { reason: RejectReason::UnknownOrder, .. }]));
    // The exchange's own reject reaches the client with its reason (invalid quantity, 0x13).
    w.send(a, order(2, Side::Buy, OrderKind::Limit, 10_000, 2_000_000));
    assert!(matches!(
        w.take(a)[..],
        [GatewayMsg::Reject { cl_ord_id: 2, reason: RejectReason::ExchangeRejected, exchange_reason: 0x13, .. }]
    ));
    // A cancel that comes too late: the order is filled first.
    w.send(a, order(3, Side::Sell, OrderKind::Limit, 10_100, 3));
    w.take(a);
    w.send(b, order(9, Side::Buy, OrderKind::Limit, 10_100, 3));
    w.send(a, ClientMsg::Cancel { cl_ord_id: 3, client_ts: 77 });
    let got = w.take(a);
    assert!(
        matches!(got[..], [GatewayMsg::Fill { cl_ord_id: 3, leaves: 0, .. }, GatewayMsg::Reject { .. }]),
        "{got:?}"
    );
    let c = &w.gw.app.counters;
    assert_eq!((c.orders_sent, c.fills, c.cancels_acked, c.invalid_transitions), (6, 4, 1, 0));
    assert_eq!(w.gw.app.live_orders(), 0, "every order ended");
    // With nothing to do, the gateway's loop has no work queued, so it may
    // sleep (regression: the upstream connection once woke itself forever).
    w.run(Duration::from_millis(20));
    for _ in 0..5 {
        w.gw.run_once().unwrap();
        assert_eq!(w.gw.pending_work(), 0, "an idle loop has no work queued");
    }
}

#[test]
fn a_lost_session_comes_back_and_every_fill_reaches_its_client_once() {
    // The exchange resets the session that sends its 3rd order (bob's 1st is the 2nd).
    let mut w = World::new(&["drop:3"]);
    w.settle();
    let (a, b) = (w.client(), w.client());
    w.send(a, order(1, Side::Buy, OrderKind::Limit, 10_000, 10));
    assert!(matches!(w.take(a)[..], [GatewayMsg::Ack { .. }]));
    w.bob(b'S', 3, 10_000);
    assert!(matches!(w.take(a)[..], [GatewayMsg::Fill { qty: 3, leaves: 7, .. }]));
    // Client b's order is the 3rd: the exchange drops the gateway's session before it is entered.
    w.send(b, order(5, Side::Buy, OrderKind::Limit, 9_000, 1));
    assert!(!w.gw.app.upstream_up(), "the session was reset");
    // While the gateway is away, bob sells into a's order; a new order is refused at once.
    w.bob(b'S', 2, 10_000);
    w.send(b, order(6, Side::Buy, OrderKind::Limit, 9_000, 1));
    assert!(matches!(
        w.take(b)[..],
        [GatewayMsg::Reject { cl_ord_id: 6, reason: RejectReason::ExchangeUnavailable, .. }]
    ));
    // Back after the backoff: the replay brings the fill made meanwhile, once,
    // and the order lost with the session is entered again.
    w.run(Duration::from_millis(300));
    assert!(w.gw.app.upstream_up(), "logged in again");
    assert!(matches!(w.take(a)[..], [GatewayMsg::Fill { qty: 2, leaves: 5, .. }]), "the fill made while away, once");
    assert!(matches!(w.take(b)[..], [GatewayMsg::Ack { cl_ord_id: 5, .. }]), "the lost order entered again");
    let c = &w.gw.app.counters;
    assert_eq!((c.upstream_logins, c.fills, c.resent_after_login), (2, 2, 1));
    assert!(matches!(w.firm.client.state, State::Up { .. }));
    // Nothing more arrives for anyone.
    w.run(Duration::from_millis(50));
    assert!(w.take(a).is_empty() && w.take(b).is_empty());
}
