//! The in-memory world of the order tests: clients, the gateway with its
//! upstream session, and the exchange simulator, each on its own stack, the
//! three joined by a hub on the sim link (virtual clock).

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tailgate::app::orders::{Orders, OrdersConfig, UpstreamConfig};
use tailgate::app::OutBuf;
use tailgate::exchange::{Exchange, ExchangeConfig};
use tailgate::proto::{ClientMsg, Code8, Frame, GatewayMsg, NewOrder, OrderKind, Parsed, Side};
use tailgate::risk::auth::Port;
use tailgate::risk::Risk;
use tailgate::server::{Server, ServerConfig};
use tailgate::stack::sim::{pair, Clock, MemLink};
use tailgate::stack::{Stack, StackConfig};
use tailgate::transport::{would_block, ConnId, Event, Transport};
use tailgate::upstream::soup_client::{SoupClient, SoupClientConfig};
use tailgate::upstream::state::SessionState;
use tailgate::venue::ouch::{self, Enter, Inbound};

pub const GW: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CLI: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const EX: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
pub const MACS: [[u8; 6]; 3] = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3]];
pub const GW_PORT: u16 = 7000;
pub const EX_PORT: u16 = 26400;
pub const STEP: Duration = Duration::from_micros(50);

pub fn stack(ip: Ipv4Addr, mac: [u8; 6], link: MemLink) -> Stack<MemLink> {
    let mut c = StackConfig::new(ip, mac);
    c.random_seed = 7;
    Stack::new(c, link)
}

/// Forwards frames between the three links by destination IPv4 address
/// (ARP by its target address).
pub struct Hub {
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
pub struct Client {
    pub conn: ConnId,
    pub seq: u32,
    pub rx: Vec<u8>,
    pub got: Vec<GatewayMsg>,
    pub rx_seq: u32,
}

/// A firm trading on the exchange directly (another member of the venue).
pub struct Firm {
    pub client: SoupClient,
    pub conn: Option<ConnId>,
    pub out: OutBuf,
}

pub struct World {
    pub clock: Clock,
    pub hub: Hub,
    pub gw: Server<Stack<MemLink>, Orders>,
    pub ex: Server<Stack<MemLink>, Exchange>,
    pub net: Stack<MemLink>,
    pub clients: Vec<Client>,
    pub firm: Firm,
    pub next_ref: u32,
}

/// The gateway's accounts and risk, and its loop's verifier port.
pub type Accounts = (Arc<Risk>, Option<Port>);

impl World {
    pub fn new(faults: &[&str]) -> World {
        World::with(faults, OrdersConfig { idle_timeout_ms: 60_000, ..OrdersConfig::default() }, None)
    }

    /// With `ocfg`, and `accounts` (none: anyone logs on).
    pub fn with(faults: &[&str], ocfg: OrdersConfig, accounts: Option<Accounts>) -> World {
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
        let mut app = Orders::with_upstream(ocfg, up);
        if let Some((risk, port)) = accounts {
            app = app.with_risk(risk, port);
        }
        let mut gw = Server::new(stack(GW, MACS[0], gw_link), app, scfg);
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

    pub fn step(&mut self) {
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
    pub fn settle(&mut self) {
        self.run(Duration::from_millis(1100));
    }

    pub fn run(&mut self, d: Duration) {
        for _ in 0..(d.as_nanos() / STEP.as_nanos()) {
            self.step();
        }
    }

    /// A logged-on client session.
    pub fn client(&mut self) -> usize {
        let i = self.connect();
        self.send(i, ClientMsg::logon(Code8::new("T1").unwrap()));
        assert!(matches!(self.take(i)[..], [GatewayMsg::LogonAck { .. }]), "logged on");
        i
    }

    /// A connected client session, not logged on.
    pub fn connect(&mut self) -> usize {
        let conn = self.net.connect(SocketAddr::new(GW.into(), GW_PORT)).unwrap();
        self.clients.push(Client { conn, seq: 1, rx: Vec::new(), got: Vec::new(), rx_seq: 1 });
        self.run(Duration::from_millis(20));
        self.clients.len() - 1
    }

    /// Run until client `i` has an answer (the verifier is a real thread:
    /// real time passes too), at most 5 s of real time.
    pub fn answer(&mut self, i: usize) -> Vec<GatewayMsg> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.clients[i].got.is_empty() && std::time::Instant::now() < deadline {
            self.run(Duration::from_millis(1));
            std::thread::sleep(Duration::from_micros(200));
        }
        self.run(Duration::from_millis(3));
        self.take(i)
    }

    pub fn send(&mut self, i: usize, m: ClientMsg) {
        let c = &mut self.clients[i];
        let mut b = [0u8; 64];
        let n = m.encode(c.seq, &mut b).unwrap();
        c.seq += 1;
        assert_eq!(self.net.send(c.conn, &b[..n]).unwrap(), n);
        self.run(Duration::from_millis(3));
    }

    pub fn take(&mut self, i: usize) -> Vec<GatewayMsg> {
        std::mem::take(&mut self.clients[i].got)
    }

    /// Bob, a member trading directly, enters an order.
    pub fn bob(&mut self, side: u8, qty: u32, price: u64) {
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

pub fn order(id: u64, side: Side, kind: OrderKind, price: i64, qty: u32) -> ClientMsg {
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
