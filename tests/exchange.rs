//! The exchange simulator on the in-memory link, in virtual time: logins,
//! orders matched across two accounts, replay after a reconnect, heartbeats,
//! and bad input that ends only its own session.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tailgate::exchange::{Exchange, ExchangeConfig};
use tailgate::server::{Server, ServerConfig};
use tailgate::stack::sim::{pair, Clock, MemLink, MAC_A, MAC_B};
use tailgate::stack::{Stack, StackConfig};
use tailgate::transport::{would_block, ConnId, Transport};
use tailgate::venue::ouch::{self, Enter, Inbound, Outbound};
use tailgate::venue::soup::{self, Packet};

const VENUE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const FIRM: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const STEP: Duration = Duration::from_micros(20);

fn stack(ip: Ipv4Addr, mac: [u8; 6], link: MemLink) -> Stack<MemLink> {
    let mut c = StackConfig::new(ip, mac);
    c.random_seed = 3;
    Stack::new(c, link)
}

struct World {
    clock: Clock,
    venue: Server<Stack<MemLink>, Exchange>,
    firm: Stack<MemLink>,
    rx: Vec<(ConnId, Vec<u8>, bool)>,
}

/// What a client got: OUCH messages by their sequence, and the other packets.
#[derive(Debug, Default)]
struct Got {
    accepted_seq: Option<u64>,
    rejected: Option<u8>,
    sequenced: Vec<Outbound>,
    heartbeats: usize,
    end_of_session: bool,
}

impl World {
    fn new(cfg: ExchangeConfig) -> World {
        let clock = Clock::new(1_000_000_000);
        let (a, b) = pair(&clock);
        let scfg = ServerConfig { tick_ns: 1_000_000, ..ServerConfig::default() };
        let mut venue = Server::new(stack(VENUE, MAC_A, a), Exchange::new(cfg, None).unwrap(), scfg);
        venue.listen(SocketAddr::new(VENUE.into(), 26400)).unwrap();
        World { clock, venue, firm: stack(FIRM, MAC_B, b), rx: Vec::new() }
    }

    fn step(&mut self) {
        self.venue.run_once().unwrap();
        let mut ev = Vec::new();
        let now = self.firm.poll(Some(Duration::ZERO), &mut ev).unwrap();
        let mut buf = [0u8; 16384];
        for (id, data, closed) in &mut self.rx {
            if *closed {
                continue;
            }
            loop {
                match self.firm.recv(*id, &mut buf) {
                    Ok(0) => {
                        *closed = true;
                        break;
                    }
                    Ok(n) => data.extend_from_slice(&buf[..n]),
                    Err(e) if would_block(&e) => break,
                    Err(_) => {
                        *closed = true;
                        break;
                    }
                }
            }
        }
        self.firm.flush(now);
        self.clock.advance(STEP);
    }

    fn run(&mut self, d: Duration) {
        for _ in 0..(d.as_nanos() / STEP.as_nanos()) {
            self.step();
        }
    }

    fn connect(&mut self) -> ConnId {
        let id = self.firm.connect(SocketAddr::new(VENUE.into(), 26400)).unwrap();
        self.rx.push((id, Vec::new(), false));
        self.run(Duration::from_millis(5));
        id
    }

    fn send(&mut self, id: ConnId, p: Packet<'_>) {
        let mut b = [0u8; 256];
        let n = soup::encode(&p, &mut b).unwrap();
        assert_eq!(self.firm.send(id, &b[..n]).unwrap(), n);
        self.run(Duration::from_millis(2));
    }

    fn login(&mut self, id: ConnId, user: &str, pass: &str, seq: u64) {
        let (mut u, mut p) = ([b' '; 6], [b' '; 10]);
        soup::put_alpha(&mut u, user.as_bytes());
        soup::put_alpha(&mut p, pass.as_bytes());
        self.send(id, Packet::LoginRequest { username: u, password: p, session: [b' '; 10], seq });
    }

    fn order(&mut self, id: ConnId, m: Inbound) {
        let mut b = [0u8; 64];
        let n = ouch::encode_inbound(&m, &mut b).unwrap();
        self.send(id, Packet::Unsequenced(&b[..n]));
    }

    fn got(&self, id: ConnId) -> (Got, bool) {
        // The latest connection of that id (ids are reused after a close).
        let (_, data, closed) = self.rx.iter().rev().find(|r| r.0 == id).unwrap();
        let mut g = Got::default();
        let mut at = 0;
        while let Ok(Some((p, n))) = soup::parse(&data[at..]) {
            at += n;
            match p {
                Packet::LoginAccepted { next_seq, .. } => g.accepted_seq = Some(next_seq),
                Packet::LoginRejected(r) => g.rejected = Some(r),
                Packet::Sequenced(m) => g.sequenced.push(ouch::parse_outbound(m).expect("a valid OUCH message")),
                Packet::ServerHeartbeat => g.heartbeats += 1,
                Packet::EndOfSession => g.end_of_session = true,
                other => panic!("a client packet from the venue: {other:?}"),
            }
        }
        assert_eq!(at, data.len(), "a torn or bad packet from the venue");
        (g, *closed)
    }
}

fn cfg() -> ExchangeConfig {
    ExchangeConfig {
        accounts: vec![("alice".into(), "pw1".into()), ("bob".into(), "pw2".into())],
        ..ExchangeConfig::default()
    }
}

fn enter(user_ref: u32, side: u8, qty: u32, price: u64, tif: u8) -> Inbound {
    Inbound::Enter(Enter {
        user_ref,
        side,
        qty,
        symbol: *b"AAPL    ",
        price,
        tif,
        display: b'Y',
        capacity: b'A',
        iso: b'N',
        cross: b'N',
        cl_ord_id: *b"x             ",
    })
}

#[test]
fn a_bad_password_is_rejected_and_closed() {
    let mut w = World::new(cfg());
    let c = w.connect();
    w.login(c, "alice", "nope", 1);
    w.run(Duration::from_millis(10));
    let (g, closed) = w.got(c);
    assert_eq!(g.rejected, Some(soup::reject::NOT_AUTHORIZED));
    assert!(closed);
    assert_eq!(w.venue.app.stats.logins_rejected, 1);
}

#[test]
fn orders_match_across_accounts_and_each_side_hears_of_it() {
    let mut w = World::new(cfg());
    let a = w.connect();
    w.login(a, "alice", "pw1", 1);
    let b = w.connect();
    w.login(b, "BOB", "PW2", 0);
    w.order(a, enter(1, b'B', 100, 1_500_000, b'0'));
    w.order(b, enter(1, b'S', 60, 1_490_000, b'0'));
    w.order(b, enter(2, b'S', 80, 1_500_000, b'3'));
    w.run(Duration::from_millis(10));
    let (ga, _) = w.got(a);
    let (gb, _) = w.got(b);
    assert_eq!((ga.accepted_seq, gb.accepted_seq), (Some(1), Some(1)));
    // Alice: accepted, then two executions as the resting side (60 at her price, then 40).
    assert!(matches!(ga.sequenced[0], Outbound::Accepted(x) if x.user_ref == 1 && x.qty == 100), "{ga:?}");
    let fills: Vec<(u32, u32, u64, u8)> = ga.sequenced[1..]
        .iter()
        .map(|m| match *m {
            Outbound::Executed { user_ref, qty, price, liquidity, .. } => (user_ref, qty, price, liquidity),
            ref other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(fills, vec![(1, 60, 1_500_000, b'A'), (1, 40, 1_500_000, b'A')]);
    // Bob: accepted, executed 60; accepted, executed 40, and the other 40 of the IOC canceled.
    let kinds: Vec<String> = gb
        .sequenced
        .iter()
        .map(|m| match *m {
            Outbound::Accepted(x) => format!("A{}", x.user_ref),
            Outbound::Executed { user_ref, qty, liquidity, .. } => format!("E{user_ref}:{qty}{}", liquidity as char),
            Outbound::Canceled { user_ref, qty, reason, .. } => format!("C{user_ref}:{qty}{}", reason as char),
            ref other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, vec!["A1", "E1:60R", "A2", "E2:40R", "C2:40I"]);
    assert_eq!(w.venue.app.stats.executions, 2);
}

#[test]
fn a_reconnect_replays_from_the_number_asked_for() {
    let mut w = World::new(cfg());
    let a = w.connect();
    w.login(a, "alice", "pw1", 1);
    for i in 1..=3 {
        w.order(a, enter(i, b'B', 10, 1_000_000 + u64::from(i), b'0'));
    }
    w.order(a, Inbound::Cancel { user_ref: 2, qty: 0 });
    w.run(Duration::from_millis(5));
    assert_eq!(w.got(a).0.sequenced.len(), 4);
    // A second login while the first is on: refused (session not available).
    let dup = w.connect();
    w.login(dup, "alice", "pw1", 1);
    w.run(Duration::from_millis(5));
    assert_eq!(w.got(dup).0.rejected, Some(soup::reject::SESSION_UNAVAILABLE));
    // The firm resets its connection (a crash): the venue must see it go.
    w.firm.close(a);
    w.run(Duration::from_millis(20));
    assert_eq!(w.venue.stats.closed, 1, "the venue saw alice go");
    for (from, want) in [(3u64, 2usize), (1, 4), (0, 0), (99, 0)] {
        let c = w.connect();
        w.login(c, "alice", "pw1", from);
        w.run(Duration::from_millis(5));
        let (g, _) = w.got(c);
        assert_eq!(g.accepted_seq, Some(if from == 0 || from > 5 { 5 } else { from }), "from {from}: {g:?}");
        assert_eq!(g.sequenced.len(), want, "from {from}: {g:?}");
        if from == 3 {
            assert!(matches!(g.sequenced[0], Outbound::Accepted(x) if x.user_ref == 3));
            assert!(matches!(g.sequenced[1], Outbound::Canceled { user_ref: 2, qty: 10, .. }));
        }
        w.send(c, Packet::LogoutRequest);
        w.run(Duration::from_millis(10));
    }
    assert_eq!(w.venue.app.stats.replayed, 2 + 4);
}

#[test]
fn heartbeats_flow_and_bad_input_ends_only_its_session() {
    let mut w = World::new(cfg());
    let a = w.connect();
    w.login(a, "alice", "pw1", 1);
    let b = w.connect();
    w.login(b, "bob", "pw2", 1);
    w.run(Duration::from_millis(2500));
    assert!(w.got(a).0.heartbeats >= 2, "{:?}", w.got(a).0);
    // Bob sends an OUCH message that cannot be decoded: counted, session goes on.
    w.send(b, Packet::Unsequenced(b"O\x00\x01"));
    // ... and then bytes that are no SoupBinTCP packet at all: his session ends.
    assert_eq!(w.firm.send(b, &[0, 0, 0]).unwrap(), 3);
    w.run(Duration::from_millis(20));
    assert!(w.got(b).1, "bob's connection was closed");
    assert_eq!(w.venue.app.stats.bad_messages, 1);
    assert_eq!(w.venue.app.stats.bad_packets, 1);
    // Alice is unharmed: her order is accepted.
    w.order(a, enter(1, b'B', 10, 1_000_000, b'0'));
    w.run(Duration::from_millis(5));
    let (g, closed) = w.got(a);
    assert!(!closed);
    assert!(matches!(g.sequenced.last(), Some(Outbound::Accepted(x)) if x.user_ref == 1));
}

#[test]
fn a_connection_that_never_logs_in_is_closed_whatever_it_sends() {
    let mut w = World::new(ExchangeConfig { timeout_ns: 1_000_000_000, ..cfg() });
    let c = w.connect();
    let mut sent = 0;
    for _ in 0..20 {
        // Heartbeats before a login keep nothing alive.
        if w.firm.send(c, &[0, 1, soup::kind::CLIENT_HEARTBEAT]).is_err() {
            break;
        }
        sent += 1;
        w.run(Duration::from_millis(100));
    }
    assert!(w.got(c).1, "closed after the login timeout");
    assert!((10..=13).contains(&sent), "closed after about 1 s of heartbeats: {sent} sent");
}

#[test]
fn match_numbers_are_unique_across_symbols_and_a_used_replace_number_is_ignored() {
    let mut w = World::new(ExchangeConfig { max_orders: 2, ..cfg() });
    let a = w.connect();
    w.login(a, "alice", "pw1", 1);
    let with = |m: Inbound, sym: &[u8; 8]| match m {
        Inbound::Enter(mut e) => {
            e.symbol = *sym;
            Inbound::Enter(e)
        }
        other => other,
    };
    w.order(a, with(enter(1, b'B', 10, 1_000_000, b'0'), b"AAPL    "));
    w.order(a, with(enter(2, b'S', 10, 1_000_000, b'3'), b"AAPL    "));
    w.order(a, with(enter(3, b'B', 10, 1_000_000, b'0'), b"MSFT    "));
    w.order(a, with(enter(4, b'S', 10, 1_000_000, b'3'), b"MSFT    "));
    // Two rest now (5 and 6); a third resting order has no room: refused before it is accepted.
    w.order(a, with(enter(5, b'B', 1, 900_000, b'0'), b"AAPL    "));
    w.order(a, with(enter(6, b'B', 1, 900_000, b'0'), b"AAPL    "));
    w.order(a, with(enter(7, b'B', 1, 900_000, b'0'), b"AAPL    "));
    // A replace with a number already used: ignored, no answer.
    w.order(
        a,
        Inbound::Replace(ouch::Replace {
            orig_user_ref: 5,
            user_ref: 5,
            qty: 1,
            price: 1,
            tif: b'0',
            display: b'Y',
            iso: b'N',
            cl_ord_id: [b' '; 14],
        }),
    );
    w.run(Duration::from_millis(10));
    let (g, _) = w.got(a);
    let matches: Vec<u64> = g
        .sequenced
        .iter()
        .filter_map(|m| match *m {
            Outbound::Executed { match_number, .. } => Some(match_number),
            _ => None,
        })
        .collect();
    // Each match is reported to both sides (alice is both): 1, 1, 2, 2.
    assert_eq!(matches, vec![1, 1, 2, 2], "{g:?}");
    let last: Vec<&Outbound> = g.sequenced.iter().rev().take(3).collect();
    assert!(matches!(last[0], Outbound::Rejected { user_ref: 7, .. }), "{last:?}");
    assert!(matches!(last[1], Outbound::Accepted(x) if x.user_ref == 6), "{last:?}");
    assert!(!g.sequenced.iter().any(|m| matches!(m, Outbound::Accepted(x) if x.user_ref == 7)), "7 was never accepted");
    assert!(
        !g.sequenced.iter().any(|m| matches!(m, Outbound::Rejected { user_ref: 5, .. })),
        "the replace got no answer"
    );
}
