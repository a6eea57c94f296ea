//! One loop per NIC queue, in memory: two server stacks for the same
//! address and MAC (one per queue) behind a steering "NIC" that the test
//! programs, and a client stack. Frames that land on the loop that does not
//! own their flow are passed to the owner through the handoff ring
//! (src/stack/handoff.rs); nothing is answered by the wrong loop.

mod mem;

use std::collections::HashMap;
use std::time::Duration;

use mem::*;
use smoltcp::wire::ArpOperation;
use tailgate::stack::frame::tcp_flags::{ACK, RST, SYN};
use tailgate::stack::frame::{emit_arp, is_arp_reply, ARP_FRAME_LEN};
use tailgate::stack::handoff::{ring_of_loops, HANDOFF_SLOTS};
use tailgate::stack::rss::{Rss, RssTable};
use tailgate::stack::sim::{pair, tcp_frame, Clock, MemLink, Seg, MAC_A, MAC_B};
use tailgate::stack::Stack;
use tailgate::transport::{ConnId, Event, Transport};

/// Which queue a frame the client sends lands on.
type Steer = Box<dyn FnMut(&[u8]) -> usize>;

struct Nic {
    clock: Clock,
    loops: Vec<Stack<MemLink>>,
    echo: Vec<EchoServer>,
    loop_events: Vec<Vec<Event>>,
    client: Stack<MemLink>,
    client_events: Vec<Event>,
    /// The NIC's ends: the client's link, and each queue's.
    wire: MemLink,
    queues: Vec<MemLink>,
    steer: Steer,
    /// Every frame each loop sent.
    sent: Vec<Vec<Vec<u8>>>,
}

impl Nic {
    fn new(loops: usize, steer: Steer, client_listens: bool) -> Nic {
        Nic::build(loops, steer, client_listens, None)
    }

    /// `rss`: every loop gets this key and table, and its own index as its
    /// queue, for the local ports of its outbound connections.
    fn build(loops: usize, steer: Steer, client_listens: bool, rss: Option<(Vec<u8>, Vec<u32>)>) -> Nic {
        let clock = Clock::new(1_000_000_000);
        let (client_link, wire) = pair(&clock);
        let mut stacks = Vec::new();
        let mut queues = Vec::new();
        for h in ring_of_loops(loops, HANDOFF_SLOTS).unwrap() {
            let (a, q) = pair(&clock);
            let mut c = config(SERVER, MAC_A);
            c.random_seed = 100 + h.index as u64;
            c.rss = rss.clone().map(|(key, indirection)| RssTable { key, indirection, queue: h.index as u32 });
            let mut s = Stack::new(c, a);
            s.listen(server_addr()).unwrap();
            s.set_handoff(h);
            stacks.push(s);
            queues.push(q);
        }
        let mut client = Stack::new(config(CLIENT, MAC_B), client_link);
        if client_listens {
            client.listen(std::net::SocketAddr::new(CLIENT.into(), PORT)).unwrap();
        }
        Nic {
            clock,
            echo: (0..loops).map(|_| EchoServer::default()).collect(),
            loop_events: vec![Vec::new(); loops],
            sent: vec![Vec::new(); loops],
            loops: stacks,
            client,
            client_events: Vec::new(),
            wire,
            queues,
            steer,
        }
    }

    fn step(&mut self) {
        let mut ev = Vec::new();
        for i in 0..self.loops.len() {
            let now = self.loops[i].poll(Some(Duration::ZERO), &mut ev).unwrap();
            for e in ev.drain(..) {
                self.loop_events[i].push(e);
                self.echo[i].on(&mut self.loops[i], e);
            }
            self.loops[i].flush(now);
        }
        let now = self.client.poll(Some(Duration::ZERO), &mut ev).unwrap();
        self.client_events.append(&mut ev);
        self.client.flush(now);
        while let Some(f) = self.wire.recv_raw() {
            let q = (self.steer)(&f);
            self.queues[q].send_raw(f);
        }
        for (i, q) in self.queues.iter().enumerate() {
            while let Some(f) = q.recv_raw() {
                self.sent[i].push(f.clone());
                self.wire.send_raw(f);
            }
        }
        self.clock.advance(STEP);
    }

    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Nic) -> bool) -> bool {
        let end = self.clock.now() + limit.as_nanos() as u64;
        while self.clock.now() < end {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    /// Segments loop `i` sent, with the client's port.
    fn segs_of(&self, i: usize) -> Vec<Seg> {
        self.sent[i].iter().filter_map(|f| Seg::parse(f)).map(|(_, _, s)| s).collect()
    }

    fn stat(&self, i: usize) -> tailgate::stack::handoff::HandoffStats {
        self.loops[i].handoff_stats().unwrap()
    }
}

fn tcp_of(f: &[u8]) -> Option<Seg> {
    Seg::parse(f).map(|(_, _, s)| s)
}

#[test]
fn connections_stay_with_the_loop_their_syn_reached_and_strays_are_passed_to_it() {
    // SYNs go to queue (client port % 2); every other frame alternates
    // between the queues whatever its flow, as a sender that rehashes would.
    let mut n = 0usize;
    let steer: Steer = Box::new(move |f| match tcp_of(f) {
        Some(s) if s.has(SYN) => usize::from(s.src_port % 2),
        _ => {
            n += 1;
            n % 2
        }
    });
    let mut nic = Nic::new(2, steer, false);
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(nic.client.connect(server_addr()).unwrap());
    }
    assert!(
        nic.run_until(Duration::from_secs(5), |n| ids
            .iter()
            .all(|id| n.client_events.contains(&Event::Connected(*id)))),
        "every handshake completes"
    );
    let mut want: HashMap<ConnId, Vec<u8>> = HashMap::new();
    let mut got: HashMap<ConnId, Vec<u8>> = HashMap::new();
    for round in 0..10u8 {
        for (k, id) in ids.iter().enumerate() {
            let msg = vec![round.wrapping_mul(31).wrapping_add(k as u8); 100 + k];
            assert_eq!(nic.client.send(*id, &msg).unwrap(), msg.len());
            want.entry(*id).or_default().extend_from_slice(&msg);
        }
        let done = nic.run_until(Duration::from_secs(5), |n| {
            for id in &ids {
                let mut buf = [0u8; 16384];
                while let Ok(k @ 1..) = n.client.recv(*id, &mut buf) {
                    got.entry(*id).or_default().extend_from_slice(&buf[..k]);
                }
            }
            ids.iter().all(|id| got.get(id).map_or(0, Vec::len) >= want[id].len())
        });
        assert!(done, "round {round}: every message echoed");
    }
    assert!(ids.iter().all(|id| got[id] == want[id]), "every stream comes back intact");
    // Each loop holds the connections whose SYN it received: ten each.
    let syn_ports: Vec<Vec<u16>> =
        (0..2).map(|i| nic.segs_of(i).iter().filter(|s| s.has(SYN | ACK)).map(|s| s.dst_port).collect()).collect();
    assert_eq!((nic.loops[0].open(), nic.loops[1].open()), (10, 10));
    assert!(syn_ports[0].iter().all(|p| p % 2 == 0) && syn_ports[1].iter().all(|p| p % 2 == 1), "{syn_ports:?}");
    // No loop ever sent a segment on another loop's connection, and none
    // sent a reset.
    for i in 0..2 {
        for s in nic.segs_of(i) {
            assert!(!s.has(RST), "loop {i} reset port {}", s.dst_port);
            assert_eq!(usize::from(s.dst_port % 2), i, "loop {i} answered a segment of port {}", s.dst_port);
        }
    }
    // Half of the frames after each SYN landed on the wrong queue and were
    // passed over: both ways, none lost.
    let (a, b) = (nic.stat(0), nic.stat(1));
    assert!(a.forwarded >= 50 && b.forwarded >= 50, "{a:?} {b:?}");
    assert_eq!((a.received, b.received), (b.forwarded, a.forwarded));
    assert_eq!(a.dropped + b.dropped, 0);
    let c = nic.loops[0].counters();
    assert_eq!(c.get("handoff_forwarded"), Some(a.forwarded), "the counter is exported");
}

#[test]
fn an_outbound_connection_gets_its_arp_reply_and_syn_ack_from_the_other_queue() {
    // Everything the client sends lands on queue 0.
    let mut nic = Nic::new(2, Box::new(|_| 0), true);
    let id = nic.loops[1].connect(std::net::SocketAddr::new(CLIENT.into(), PORT)).unwrap();
    assert!(
        nic.run_until(Duration::from_secs(5), |n| n.loop_events[1].contains(&Event::Connected(id))),
        "loop 1 connects though its ARP reply and SYN-ACK reached loop 0"
    );
    let a = nic.stat(0);
    assert!(a.arp_shared >= 1, "the ARP reply was copied to loop 1: {a:?}");
    assert!(a.forwarded >= 1, "the SYN-ACK was passed to loop 1: {a:?}");
    assert_eq!(nic.loops[0].open(), 0);
    assert!(!nic.segs_of(0).iter().any(|s| s.has(RST)), "loop 0 did not reset the stranger's SYN-ACK");
    assert!(
        nic.run_until(Duration::from_millis(1), |n| n.client_events.iter().any(|e| matches!(e, Event::Accepted(_))))
    );
}

#[test]
fn a_segment_no_loop_owns_is_reset_once_by_the_last_loop_it_reaches() {
    let mut nic = Nic::new(3, Box::new(|_| 0), false);
    // ARP is answered wherever it lands: a request on each queue, answered
    // by that queue's loop (which learns the client's address from it).
    for q in &nic.queues {
        let mut req = vec![0u8; ARP_FRAME_LEN];
        emit_arp(&mut req, ArpOperation::Request, MAC_B, CLIENT, [0; 6], SERVER);
        q.send_raw(req);
    }
    nic.run_until(Duration::from_micros(100), |_| false);
    for i in 0..3 {
        assert_eq!(nic.sent[i].len(), 1, "loop {i} answers the ARP request on its queue");
        assert!(is_arp_reply(&nic.sent[i][0]));
    }
    // An ACK for no connection, to a port nobody listens on, on queue 0.
    let stray = Seg { src_port: 40000, dst_port: 9, seq: 5, ack: 77, flags: ACK, window: 100, ..Seg::default() };
    nic.queues[0].send_raw(tcp_frame(MAC_B, MAC_A, CLIENT, SERVER, &stray));
    nic.run_until(Duration::from_millis(1), |_| false);
    let rsts: Vec<usize> =
        (0..3).filter(|&i| nic.segs_of(i).iter().any(|s| s.has(RST) && s.dst_port == 40000)).collect();
    assert_eq!(rsts, vec![2], "only the loop that heard every other decline answers");
    assert_eq!(nic.segs_of(2).iter().filter(|s| s.has(RST)).count(), 1);
    assert_eq!((nic.stat(0).forwarded, nic.stat(1).forwarded, nic.stat(2).forwarded), (1, 1, 0));
}

/// Microsoft's published RSS verification key.
const MS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b,
    0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac,
    0x01, 0xfa,
];

/// Each loop opens 10 connections to the client behind a NIC that steers
/// by RSS (Toeplitz over the 4-tuple, a 128-entry table over 2 queues);
/// with `with_rss`, the loops know the table. Returns the TCP frames each
/// loop passed to the other.
fn outbound_through_rss(with_rss: bool) -> Vec<u64> {
    let table: Vec<u32> = (0..128).map(|i| i % 2).collect();
    let (key, ind) = (MS_KEY.to_vec(), table.clone());
    let steer: Steer = Box::new(move |f| match Seg::parse(f) {
        Some((src, dst, s)) => {
            Rss { key: &key, indirection: &ind }.queue((src, s.src_port), (dst, s.dst_port)).unwrap() as usize
        }
        None => 0,
    });
    let mut nic = Nic::build(2, steer, true, with_rss.then(|| (MS_KEY.to_vec(), table)));
    let to = std::net::SocketAddr::new(CLIENT.into(), PORT);
    let ids: Vec<(usize, ConnId)> = (0..20).map(|k| (k % 2, nic.loops[k % 2].connect(to).unwrap())).collect();
    assert!(
        nic.run_until(Duration::from_secs(5), |n| ids
            .iter()
            .all(|(i, id)| n.loop_events[*i].contains(&Event::Connected(*id)))),
        "every outbound connection completes"
    );
    (0..2).map(|i| nic.stat(i).forwarded).collect()
}

#[test]
fn outbound_ports_chosen_by_rss_bring_every_reply_to_the_connecting_loop() {
    assert_eq!(outbound_through_rss(true), vec![0, 0], "no reply needed a handoff");
    // The control: ports taken in order, replies land where RSS puts them.
    let without = outbound_through_rss(false);
    assert!(without.iter().sum::<u64>() > 0, "{without:?}");
}
