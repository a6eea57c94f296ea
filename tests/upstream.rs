//! The upstream leg's SoupBinTCP client against the exchange simulator, on
//! the in-memory link: a session lost while a fill happens comes back with
//! backoff, asks for the next number it has not processed, and gets that
//! fill exactly once.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tailgate::app::OutBuf;
use tailgate::exchange::{Exchange, ExchangeConfig};
use tailgate::server::{Server, ServerConfig};
use tailgate::stack::sim::{pair, Clock, MemLink, MAC_A, MAC_B};
use tailgate::stack::{Stack, StackConfig};
use tailgate::transport::{would_block, ConnId, Event, Transport};
use tailgate::upstream::soup_client::{SoupClient, SoupClientConfig, State};
use tailgate::venue::ouch::{self, Enter, Inbound, Outbound};

const VENUE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const FIRM: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const STEP: Duration = Duration::from_micros(50);

fn stack(ip: Ipv4Addr, mac: [u8; 6], link: MemLink) -> Stack<MemLink> {
    let mut c = StackConfig::new(ip, mac);
    c.random_seed = 5;
    Stack::new(c, link)
}

/// One firm session: its client, its connection, what it was delivered.
struct Firm {
    client: SoupClient,
    conn: Option<ConnId>,
    rx: Vec<u8>,
    out: OutBuf,
    got: Vec<(u64, Outbound)>,
}

struct World {
    clock: Clock,
    venue: Server<Stack<MemLink>, Exchange>,
    net: Stack<MemLink>,
    firms: Vec<Firm>,
}

impl World {
    fn new() -> World {
        let clock = Clock::new(1_000_000_000);
        let (a, b) = pair(&clock);
        let cfg = ExchangeConfig {
            accounts: vec![("alice".into(), "pw1".into()), ("bob".into(), "pw2".into())],
            ..ExchangeConfig::default()
        };
        let scfg = ServerConfig { tick_ns: 1_000_000, ..ServerConfig::default() };
        let mut venue = Server::new(stack(VENUE, MAC_A, a), Exchange::new(cfg, None).unwrap(), scfg);
        venue.listen(SocketAddr::new(VENUE.into(), 26400)).unwrap();
        let firm = |u: &str, p: &str| Firm {
            client: SoupClient::new(SoupClientConfig::new(u, p), 1),
            conn: None,
            rx: Vec::new(),
            out: OutBuf::with_capacity(4096),
            got: Vec::new(),
        };
        World { clock, venue, net: stack(FIRM, MAC_B, b), firms: vec![firm("alice", "pw1"), firm("bob", "pw2")] }
    }

    fn step(&mut self) {
        self.venue.run_once().unwrap();
        let mut ev = Vec::new();
        let now = self.net.poll(Some(Duration::ZERO), &mut ev).unwrap();
        let t = self.clock.now();
        for f in &mut self.firms {
            if f.client.connect_due(t) {
                f.conn = Some(self.net.connect(SocketAddr::new(VENUE.into(), 26400)).unwrap());
                f.client.connecting();
                f.rx.clear();
            }
            let Some(id) = f.conn else { continue };
            if ev.contains(&Event::Connected(id)) {
                f.client.on_connected(&mut f.out, t);
            }
            let mut buf = [0u8; 8192];
            let mut gone = false;
            loop {
                match self.net.recv(id, &mut buf) {
                    Ok(0) => {
                        gone = true;
                        break;
                    }
                    Ok(n) => f.rx.extend_from_slice(&buf[..n]),
                    Err(e) if would_block(&e) => break,
                    Err(_) => {
                        gone = true;
                        break;
                    }
                }
            }
            let got = &mut f.got;
            let (used, _) = f.client.on_input(&f.rx, t, |seq, m| {
                got.push((seq, ouch::parse_outbound(m).unwrap()));
                true
            });
            f.rx.drain(..used);
            let _ = f.client.on_tick(&mut f.out, t);
            if !f.out.as_slice().is_empty() {
                if let Ok(n) = self.net.send(id, f.out.as_slice()) {
                    f.out.consume(n);
                }
            }
            if gone || matches!(f.client.state, State::Down { .. }) {
                self.net.close(id);
                f.client.on_closed(t);
                f.conn = None;
            }
        }
        self.net.flush(now);
        self.clock.advance(STEP);
    }

    fn run(&mut self, d: Duration) {
        for _ in 0..(d.as_nanos() / STEP.as_nanos()) {
            self.step();
        }
    }

    fn order(&mut self, firm: usize, user_ref: u32, side: u8) {
        let m = Inbound::Enter(Enter {
            user_ref,
            side,
            qty: 100,
            symbol: *b"AAPL    ",
            price: 1_000_000,
            tif: b'0',
            display: b'Y',
            capacity: b'A',
            iso: b'N',
            cross: b'N',
            cl_ord_id: [b' '; 14],
        });
        let mut b = [0u8; 64];
        let n = ouch::encode_inbound(&m, &mut b).unwrap();
        let t = self.clock.now();
        let f = &mut self.firms[firm];
        assert!(f.client.send(&b[..n], &mut f.out, t), "firm {firm} is up");
        self.run(Duration::from_millis(5));
    }
}

#[test]
fn a_fill_made_while_the_session_was_down_arrives_exactly_once() {
    let mut w = World::new();
    w.run(Duration::from_millis(20));
    assert!(w.firms.iter().all(|f| matches!(f.client.state, State::Up { .. })), "both logged in");
    w.order(0, 1, b'B');
    assert_eq!(w.firms[0].got.len(), 1, "alice's order accepted: {:?}", w.firms[0].got);
    // Alice's connection is reset; while she is away, bob sells into her order.
    let id = w.firms[0].conn.take().unwrap();
    w.net.close(id);
    w.firms[0].client.on_closed(w.clock.now());
    w.order(1, 1, b'S');
    // She comes back after the backoff (100 ms), asking for number 2.
    w.run(Duration::from_millis(300));
    let alice = &w.firms[0];
    assert!(matches!(alice.client.state, State::Up { .. }), "alice is back: {:?}", alice.client.state);
    let seqs: Vec<u64> = alice.got.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, vec![1, 2], "each number once: {:?}", alice.got);
    assert!(
        matches!(alice.got[1].1, Outbound::Executed { user_ref: 1, qty: 100, liquidity: b'A', .. }),
        "{:?}",
        alice.got
    );
    assert_eq!(alice.client.stats.logins, 2);
    assert_eq!(alice.client.stats.duplicates_skipped, 0);
    assert_eq!(alice.client.next_seq(), 3);
    // Bob saw his own order accepted and executed once.
    assert_eq!(w.firms[1].got.len(), 2, "{:?}", w.firms[1].got);
}
