//! The user-space stack in process: two stacks back to back over an
//! in-memory link with a virtual clock, or one stack and a scripted peer
//! that sends crafted segments. No root, no network, no real time: every
//! run is the same run (`unshare -n cargo test --test stack` passes in a
//! namespace with no interfaces at all).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use smoltcp::wire::Ipv4Address;

use tailgate::stack::frame::tcp_flags::{ACK, PSH, RST, SYN};
use tailgate::stack::recovery::{DELAYED_ACK_NS, MAX_SLOTS_PER_FLOW};
use tailgate::stack::sim::Wire;
use tailgate::stack::sim::{tcp_frame, Clock, Fate, MemLink, Seg, Sent, MAC_A, MAC_B};
use tailgate::stack::Stack;
use tailgate::transport::{signal, would_block, AckEvent, ConnId, Event, Transport};

mod mem;
use mem::*;

#[test]
fn handshake_reports_accepted_and_connected() {
    let mut net = Net::new();
    let id = net.connect();
    assert!(net.run_until(Duration::from_millis(10), |n| n.echo.accepted == 1));
    assert_eq!(net.server.stats().accepted, 1);
    assert_eq!(net.client.stats().connected, 1);
    assert_eq!(net.client.peer_addr(id), Some(server_addr()));
}

#[test]
fn echo_returns_the_same_bytes() {
    let mut net = Net::new();
    let id = net.connect();
    for i in 0..20u8 {
        let msg: Vec<u8> = (0..100).map(|j| i.wrapping_mul(31).wrapping_add(j)).collect();
        assert_eq!(net.echo_once(id, &msg, Duration::from_millis(50)), msg);
    }
    assert_eq!(net.server.stats().bytes_in, 2000);
    assert_eq!(net.client.stats().bytes_in, 2000);
}

#[test]
fn close_client_first() {
    let mut net = Net::new();
    let (to_server, to_client) = (net.client.link().outbox.clone(), net.server.link().outbox.clone());
    to_server.borrow_mut().capture = true;
    to_client.borrow_mut().capture = true;
    let id = net.connect();
    assert_eq!(net.echo_once(id, b"bye", Duration::from_millis(10)), b"bye");
    net.client.shutdown_write(id).unwrap();
    // The server echoes nothing more, sees EOF, closes; the client sees EOF.
    let mut rest = Vec::new();
    assert!(net.run_until(Duration::from_secs(1), |n| n.client_read(id, &mut rest).unwrap()), "no EOF at the client");
    assert!(rest.is_empty());
    assert_eq!(net.echo.closed, 1);
    net.client.close(id);
    assert_clean_close(&mut net, || any_rst(&to_server.borrow().captured) || any_rst(&to_client.borrow().captured));
}

#[test]
fn closed_sockets_are_reused_with_nothing_left_over() {
    let mut net = Net::new();
    let (to_server, to_client) = (net.client.link().outbox.clone(), net.server.link().outbox.clone());
    to_server.borrow_mut().capture = true;
    to_client.borrow_mut().capture = true;
    for i in 0..50u8 {
        let id = net.connect();
        // Each connection's own bytes, of its own length: a reused socket
        // must hold nothing of the one before.
        let msg: Vec<u8> = (0..(10 + i as usize)).map(|j| i ^ j as u8).collect();
        assert_eq!(net.echo_once(id, &msg, Duration::from_millis(50)), msg, "connection {i}");
        net.client.shutdown_write(id).unwrap();
        let mut rest = Vec::new();
        assert!(net.run_until(Duration::from_secs(1), |n| n.client_read(id, &mut rest).unwrap()), "no EOF ({i})");
        assert!(rest.is_empty(), "connection {i}: {rest:?}");
        net.client.close(id);
        net.run_until(Duration::from_millis(5), |_| false);
    }
    assert_eq!(net.echo.closed, 50);
    assert!(!any_rst(&to_server.borrow().captured) && !any_rst(&to_client.borrow().captured), "a reset");
    // Fifty connections, one after another, on a handful of sockets.
    for (side, stack) in [("server", &net.server), ("client", &net.client)] {
        let made = stack.counters().get("sockets_allocated").unwrap();
        assert!(made <= 3, "{side} allocated {made} sockets for 50 connections in turn");
    }
}

#[test]
fn a_syn_to_a_closed_port_is_answered_with_rst() {
    let (clock, mut stack, mut peer) = stack_and_peer(|_| {});
    peer.send(&Seg { dst_port: 9, ..syn(40000, 1000) });
    let got = collect(&clock, &mut stack, &mut peer, Duration::from_millis(1));
    let rst: Vec<_> = got.iter().filter(|s| s.has(RST)).collect();
    assert_eq!(rst.len(), 1, "{got:?}");
    assert_eq!((rst[0].src_port, rst[0].dst_port, rst[0].ack), (9, 40000, 1001));
    assert_eq!(stack.stats().accepted, 0);

    // Between two stacks: tests/conn.rs, a_refused_active_open_is_reported_as_refused.
}

#[test]
fn a_thousand_connections_each_echo() {
    let mut net = Net::with(|s| s.max_conns = 2000, |c| c.max_conns = 2000);
    let ids: Vec<ConnId> = (0..1000).map(|_| net.client.connect(server_addr()).unwrap()).collect();
    assert!(
        net.run_until(Duration::from_secs(5), |n| ids.iter().all(|&id| n.connected(id))),
        "connected: {}",
        ids.iter().filter(|&&id| net.connected(id)).count()
    );
    for (i, &id) in ids.iter().enumerate() {
        let msg = format!("conn {i}");
        assert_eq!(net.client.send(id, msg.as_bytes()).unwrap(), msg.len());
    }
    let mut got: HashMap<ConnId, Vec<u8>> = HashMap::new();
    let done = net.run_until(Duration::from_secs(5), |n| {
        for &id in &ids {
            n.client_read(id, got.entry(id).or_default()).unwrap();
        }
        ids.iter().enumerate().all(|(i, id)| got[id] == format!("conn {i}").as_bytes())
    });
    assert!(
        done,
        "echoed: {}",
        ids.iter().enumerate().filter(|(i, id)| got[id] == format!("conn {i}").as_bytes()).count()
    );
    assert_eq!(net.server.stats().accepted, 1000);
}

#[test]
fn sixty_four_mib_arrive_intact() {
    const TOTAL: usize = 64 << 20;
    let mut net = Net::new();
    let id = net.connect();
    // A deterministic pattern that is not periodic in any buffer size.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = vec![0u8; 65536];
    let (mut sent, mut sent_hash, mut got_hash, mut got) = (0usize, Sha256::new(), Sha256::new(), 0usize);
    let mut pending: &[u8] = &[];
    let mut buf = vec![0u8; 65536];
    let mut owned: Vec<u8>;
    let end = net.clock.now() + 120_000_000_000;
    while got < TOTAL && net.clock.now() < end {
        if pending.is_empty() && sent < TOTAL {
            for b in chunk.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            sent_hash.update(&chunk);
            owned = chunk.clone();
            pending = &owned[..];
            sent += chunk.len();
        }
        while !pending.is_empty() {
            match net.client.send(id, pending) {
                Ok(n) => pending = &pending[n..],
                Err(e) if would_block(&e) => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        net.step();
        loop {
            match net.client.recv(id, &mut buf) {
                Ok(0) => panic!("EOF after {got} bytes"),
                Ok(n) => {
                    got_hash.update(&buf[..n]);
                    got += n;
                }
                Err(e) if would_block(&e) => break,
                Err(e) => panic!("recv after {got} bytes: {e}"),
            }
        }
    }
    assert_eq!(got, TOTAL);
    assert_eq!(sent_hash.finalize(), got_hash.finalize(), "the echoed stream differs");
}

#[test]
fn malformed_frames_are_counted_and_the_connection_survives() {
    let mut net = Net::new();
    let id = net.connect();
    let to_server = net.client.link().outbox.clone();
    let good = tcp_frame(
        MAC_B,
        MAC_A,
        CLIENT,
        SERVER,
        &Seg {
            src_port: 50000,
            dst_port: PORT,
            seq: 1,
            ack: 1,
            flags: ACK | PSH,
            window: 100,
            payload: vec![1; 32],
            ..Seg::default()
        },
    );
    let mut bad: Vec<Vec<u8>> = Vec::new();
    let mut flip = good.clone();
    flip[60] ^= 0xff; // payload byte: the TCP checksum fails
    bad.push(flip);
    let mut iphdr = good.clone();
    iphdr[22] ^= 0x01; // TTL: the IP header checksum fails
    bad.push(iphdr);
    bad.push(good[..40].to_vec()); // truncated inside TCP
    bad.push(good[..10].to_vec()); // a runt
    let mut ihl = good.clone();
    ihl[14] = 0x4f; // header length beyond the packet
    bad.push(ihl);
    let mut total = good.clone();
    total[16..18].copy_from_slice(&9000u16.to_be_bytes()); // total length beyond the frame
    bad.push(total);
    let before = net.server.counters().get("rx_invalid").unwrap();
    for f in &bad {
        to_server.borrow_mut().send(f.clone());
    }
    net.run_until(Duration::from_millis(1), |_| false);
    assert_eq!(net.server.counters().get("rx_invalid").unwrap() - before, bad.len() as u64);
    assert_eq!(net.echo_once(id, b"still here", Duration::from_millis(10)), b"still here");
}

#[test]
fn a_burst_of_syns_is_answered_in_full() {
    // 300 SYNs in one burst: the front door answers each with its cookie,
    // whatever the burst (no listening socket to run out of).
    let (clock, mut stack, mut peer) = stack_and_peer(|_| {});
    for p in 0..300u16 {
        peer.send(&syn(30000 + p, u32::from(p) * 1000));
    }
    let got = collect(&clock, &mut stack, &mut peer, Duration::from_millis(20));
    let mut answered: Vec<u16> = got.iter().filter(|s| s.has(SYN | ACK)).map(|s| s.dst_port).collect();
    answered.sort_unstable();
    answered.dedup();
    assert_eq!(answered.len(), 300, "SYN-ACKs for {} of 300", answered.len());
    for s in got.iter().filter(|s| s.has(SYN | ACK)) {
        assert_eq!(s.ack, u32::from(s.dst_port - 30000) * 1000 + 1);
    }
}

/// A wire rule that decides data segments by their number (1-based) in
/// this direction and lets everything else through.
fn by_data_segment(mut fate: impl FnMut(u32) -> Fate + 'static) -> impl FnMut(&Sent<'_>) -> Fate + 'static {
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

#[test]
fn a_lossy_duplicating_reordering_link_still_delivers_the_stream() {
    let mut net = Net::new();
    let id = net.connect();
    let (to_server, to_client) = (net.client.link().outbox.clone(), net.server.link().outbox.clone());
    // Client to server: drop the 3rd data segment, duplicate the 5th, hold
    // the 7th behind the 8th, delay the 9th by 2 ms.
    to_server.borrow_mut().set_rule(by_data_segment(|n| match n {
        3 => Fate::Drop,
        5 => Fate::Duplicate,
        7 => Fate::Reorder,
        9 => Fate::Delay(Duration::from_millis(2)),
        _ => Fate::Deliver,
    }));
    // Server to client: drop the 4th data segment.
    to_client.borrow_mut().set_rule(by_data_segment(|n| if n == 4 { Fate::Drop } else { Fate::Deliver }));
    let mut want = Vec::new();
    let mut got = Vec::new();
    for i in 0..12u8 {
        let msg = vec![i; 200];
        assert_eq!(net.client.send(id, &msg).unwrap(), 200);
        want.extend_from_slice(&msg);
        net.step();
    }
    // smoltcp's retransmission timer is 1 s at least: virtual time makes it free.
    let done = net.run_until(Duration::from_secs(10), |n| {
        n.client_read(id, &mut got).unwrap();
        got.len() >= want.len()
    });
    assert!(done, "{} of {} bytes back", got.len(), want.len());
    assert_eq!(got, want);
    assert_eq!((to_server.borrow().dropped, to_client.borrow().dropped), (1, 1));
}

#[test]
fn arp_is_answered_for_the_stack_address_only() {
    let (clock, mut stack, mut peer) = stack_and_peer(|_| {});
    peer.send_raw(peer.arp_request(Ipv4Address::new(198, 18, 0, 99)));
    peer.send_raw(peer.arp_request(SERVER));
    let _ = collect(&clock, &mut stack, &mut peer, Duration::from_millis(1));
    // The one reply (to us) is in `other`: ARP replies are not TCP and the
    // peer answers only requests.
    let replies: Vec<_> = peer.other.iter().filter(|f| f.len() >= 42 && f[12..14] == [0x08, 0x06]).collect();
    assert_eq!(replies.len(), 1, "{replies:?}");
    let r = replies[0];
    assert_eq!(u16::from_be_bytes([r[20], r[21]]), 2, "an ARP reply");
    assert_eq!(&r[22..28], &MAC_A);
    assert_eq!(&r[28..32], &SERVER.octets());
}

#[test]
fn tracing_flags_a_stream_that_waited_for_a_retransmission() {
    let mut net = Net::new();
    let id = net.connect();
    assert!(net.run_until(Duration::from_millis(10), |n| n.echo.accepted == 1));
    net.server.set_tracing(true);
    let sid = *net.echo.conns.keys().next().unwrap();
    // Take the server's reads out of the echo app: read by hand.
    net.echo.conns.clear();
    let to_server = net.client.link().outbox.clone();
    to_server.borrow_mut().set_rule(by_data_segment(|n| if n == 1 { Fate::Drop } else { Fate::Deliver }));
    net.client.send(id, b"first").unwrap();
    net.step();
    net.client.send(id, b"second").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    let mut trace = None;
    net.run_until(Duration::from_secs(5), |n| {
        if let Ok(k) = n.server.recv(sid, &mut buf) {
            got.extend_from_slice(&buf[..k]);
            trace = Some(n.server.rx_trace(sid));
        }
        got.len() >= 11
    });
    assert_eq!(got, b"firstsecond");
    let t = trace.unwrap();
    assert_ne!(t.flags & signal::RETRANSMIT, 0, "{t:?}");
    assert!(t.arrival_ns > 0);
}

/// Step `net` until the server reports an ACK, at most `limit`.
fn next_ack(net: &mut Net, limit: Duration) -> Option<AckEvent> {
    let mut acks = Vec::new();
    net.run_until(limit, |n| {
        n.server.acks(&mut acks);
        !acks.is_empty()
    });
    assert!(acks.len() <= 1, "{acks:?}");
    acks.pop()
}

#[test]
fn the_ack_of_each_reply_is_reported_and_says_when_it_waited_for_a_retransmission() {
    let (mut net, id, sid) = warmed_up();
    net.server.set_tracing(true);
    assert!(net.server.tracks_acks());
    // Nothing is reported for a connection nobody watches.
    assert_eq!(net.echo_once(id, b"quiet", ms(100)), b"quiet");
    assert_eq!(next_ack(&mut net, ms(50)), None);
    // 40 x "warm" and "quiet" went before: 165 bytes.
    net.server.watch_acks(sid, true);
    let before = net.clock.now();
    assert_eq!(net.echo_once(id, b"order", ms(100)), b"order");
    let a = next_ack(&mut net, ms(50)).expect("the reply's ACK");
    assert_eq!((a.conn, a.acked, a.retransmitted), (sid, 170, false));
    assert!(a.at_ns > before && a.at_ns <= net.clock.now(), "{a:?}");
    // The reply is lost once: its ACK comes after the retransmission, and
    // says so.
    let log = record(&net.clock, &net.server.link().outbox.clone(), |n| n == 1);
    assert_eq!(net.echo_once(id, b"again", ms(100)), b"again");
    let a = next_ack(&mut net, ms(50)).expect("the retransmitted reply's ACK");
    assert_eq!((a.acked, a.retransmitted), (175, true));
    let resent = log.borrow()[1].0;
    assert!(a.at_ns > resent, "ACK at {} before the retransmission at {resent}", a.at_ns);
    // The next reply goes through: no retransmission this time.
    net.server.link().outbox.borrow_mut().clear_rule();
    assert_eq!(net.echo_once(id, b"fine!", ms(100)), b"fine!");
    let a = next_ack(&mut net, ms(50)).expect("the ACK");
    assert_eq!((a.acked, a.retransmitted), (180, false));
    // Unwatched: nothing more.
    net.server.watch_acks(sid, false);
    assert_eq!(net.echo_once(id, b"after", ms(100)), b"after");
    assert_eq!(next_ack(&mut net, ms(50)), None);
    // As the tracer drives it: off and on again in the same iteration, once
    // per message, for 200 messages. The watch list holds the connection
    // once, not once per message.
    net.server.watch_acks(sid, true);
    for i in 0..200 {
        assert_eq!(net.echo_once(id, b"again", ms(100)), b"again");
        let a = next_ack(&mut net, ms(50)).expect("the ACK");
        assert_eq!(a.acked, 185 + 5 * (i + 1), "{a:?}");
        net.server.watch_acks(sid, false);
        net.server.watch_acks(sid, true);
        assert!(net.server.ack_watch_len() <= 1, "watch list grew to {}", net.server.ack_watch_len());
    }
}

/// Every data segment offered to `wire` from now on: (time, seq, dropped).
/// `drop(n)` decides the n-th (1-based).
type Log = Rc<RefCell<Vec<(u64, u32, bool)>>>;

fn record(clock: &Clock, wire: &Rc<RefCell<Wire>>, mut drop: impl FnMut(u32) -> bool + 'static) -> Log {
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
fn gaps(log: &Log) -> Vec<u64> {
    log.borrow().windows(2).map(|w| w[1].0 - w[0].0).collect()
}

/// A connection that echoed 40 messages (prompt ACKs, so the server's
/// flow has RTT samples and no delayed-ACK allowance), with the last ACK
/// in: the net, the client's connection and the server's.
fn warmed_up() -> (Net, ConnId, ConnId) {
    let mut net = Net::new();
    let id = net.connect();
    for _ in 0..40 {
        assert_eq!(net.echo_once(id, b"warm", ms(10)), b"warm");
    }
    net.run_until(ms(1), |_| false);
    let sid = *net.echo.conns.keys().next().unwrap();
    (net, id, sid)
}

#[test]
fn a_lost_reply_is_retransmitted_after_the_rtt_derived_delay() {
    let (mut net, id, sid) = warmed_up();
    let est = net.server.estimate(sid).expect("the server tracks the flow");
    assert!(est.samples >= 40 && est.srtt_ns > 0, "{est:?}");
    // The link's RTT here is tens of microseconds, and 40 prompt ACKs
    // dropped the delayed-ACK allowance a new flow starts with: the timeout
    // is the RTT terms plus the 200 us floor, three orders of magnitude
    // below smoltcp's 1 s.
    assert!(est.timeout_ns < 1_000_000, "{est:?}");

    let log = record(&net.clock, &net.server.link().outbox.clone(), |n| n == 1);
    assert_eq!(net.echo_once(id, b"order", ms(100)), b"order");
    let g = gaps(&log);
    assert_eq!(g.len(), 1, "one retransmission: {:?}", log.borrow());
    // Sent when overdue: not before the timeout, and within one loop step
    // (both sides) after it.
    assert!(g[0] >= est.timeout_ns && g[0] <= est.timeout_ns + 2 * STEP.as_nanos() as u64, "{g:?} {est:?}");
    assert_eq!(counter(&net.server, "retx_timer"), 1);
    assert_eq!(counter(&net.server, "retx_rto"), 0, "smoltcp's RTO never fired");
    assert_eq!(counter(&net.server, "retx_spurious"), 0);
}

#[test]
fn a_lost_retransmission_backs_off() {
    let (mut net, id, sid) = warmed_up();
    let est = net.server.estimate(sid).unwrap();
    // The reply and its first two retransmissions are lost.
    let log = record(&net.clock, &net.server.link().outbox.clone(), |n| n <= 3);
    assert_eq!(net.echo_once(id, b"order", ms(1000)), b"order");
    let g = gaps(&log);
    assert_eq!(g.len(), 3, "{:?}", log.borrow());
    let step = 2 * STEP.as_nanos() as u64;
    assert!(g[0] >= est.timeout_ns && g[0] <= est.timeout_ns + step, "{g:?} {est:?}");
    // An unanswered retransmission means a silent peer: the next waits a
    // delayed-ACK timer at least, and each after that twice as long.
    let second = (2 * est.timeout_ns).max(DELAYED_ACK_NS);
    assert!(g[1] >= second && g[1] <= second + step, "{g:?} {est:?}");
    assert!(g[2] >= 2 * second && g[2] <= 2 * second + step, "{g:?} {est:?}");
    assert_eq!(counter(&net.server, "retx_timer"), 3);
    // Progress resets the backoff: the next loss costs one timeout again.
    net.echo_once(id, b"warm", ms(10));
    net.run_until(ms(1), |_| false);
    let est = net.server.estimate(sid).unwrap();
    let log = record(&net.clock, &net.server.link().outbox.clone(), |n| n == 1);
    assert_eq!(net.echo_once(id, b"again", ms(100)), b"again");
    let g = gaps(&log);
    assert!(g.len() == 1 && g[0] <= est.timeout_ns + step, "{g:?} {est:?}");
}

#[test]
fn a_loss_followed_by_more_data_is_repaired_by_sack_at_once() {
    let (mut net, id, sid) = warmed_up();
    let est = net.server.estimate(sid).unwrap();
    let log = record(&net.clock, &net.server.link().outbox.clone(), |n| n == 1);
    // Two requests back to back: the first reply is lost, the second
    // arrives and the client SACKs it, which tells the server at once.
    net.client.send(id, b"one").unwrap();
    net.step();
    net.client.send(id, b"two").unwrap();
    let mut got = Vec::new();
    assert!(net.run_until(ms(100), |n| {
        n.client_read(id, &mut got).unwrap();
        got.len() >= 6
    }));
    assert_eq!(got, b"onetwo");
    assert_eq!(counter(&net.server, "retx_sack"), 1);
    assert_eq!(counter(&net.server, "retx_timer"), 0);
    let l = log.borrow();
    assert_eq!(l.len(), 3, "{l:?}");
    // Repaired within a round trip of the second reply, before the timer.
    assert!(l[2].0 - l[0].0 < est.timeout_ns, "{l:?} {est:?}");
}

#[test]
fn delayed_acks_cause_no_retransmission_and_a_surprise_is_learned() {
    // The scripted peer holds its ACKs 5 ms (as Linux holds a lone ACK
    // 40 ms) in rounds 0-9 and 50-69, ACKs at once in rounds 10-49, and
    // answers a duplicate at once with a D-SACK (as Linux does).
    const HOLD: u64 = 5_000_000;
    let hold_in = |round: u8| if (10..50).contains(&round) { 0 } else { HOLD };
    let (clock, mut stack, mut peer) = stack_and_peer(|_| {});
    let port = 41000;
    let (mut snd_nxt, mut rcv_nxt) = scripted_handshake(&clock, &mut stack, &mut peer, port);
    let ack = |seq: u32, ack: u32, sack: Vec<(u32, u32)>| Seg {
        src_port: port,
        dst_port: PORT,
        seq,
        ack,
        flags: ACK,
        window: 65535,
        sack,
        ..Seg::default()
    };
    let mut ev = Vec::new();
    let mut copies_per_round = Vec::new();
    let mut conn = None;
    let mut hold_after_prompt = None;
    for round in 0..70u8 {
        let req = vec![round; 16];
        peer.send(&Seg { flags: ACK | PSH, payload: req.clone(), ..ack(snd_nxt, rcv_nxt, vec![]) });
        snd_nxt += 16;
        let (mut copies, mut ack_due, mut echoed) = (0, None, Vec::new());
        let end = clock.now() + 20_000_000;
        while clock.now() < end {
            let now = stack.poll(Some(Duration::ZERO), &mut ev).unwrap();
            for e in ev.drain(..) {
                if let Event::Accepted(id) | Event::Readable(id) = e {
                    conn = Some(id);
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stack.recv(id, &mut buf) {
                        if n == 0 {
                            break;
                        }
                        stack.send(id, &buf[..n]).unwrap();
                    }
                }
            }
            stack.flush(now);
            clock.advance(STEP);
            for s in peer.recv() {
                if s.payload.is_empty() {
                    continue;
                }
                if (s.seq.wrapping_sub(rcv_nxt) as i32) < 0 {
                    copies += 1;
                    peer.send(&ack(snd_nxt, rcv_nxt, vec![(s.seq, s.seq + s.len())]));
                    ack_due = None;
                } else if s.seq == rcv_nxt {
                    rcv_nxt += s.len();
                    echoed.extend_from_slice(&s.payload);
                    ack_due = Some(clock.now() + hold_in(round));
                }
            }
            if ack_due.is_some_and(|t| clock.now() >= t) {
                peer.send(&ack(snd_nxt, rcv_nxt, vec![]));
                ack_due = None;
            }
        }
        assert_eq!(echoed, req, "round {round}");
        copies_per_round.push(copies);
        if round == 49 {
            hold_after_prompt = stack.estimate(conn.unwrap()).map(|e| e.hold_ns);
        }
    }
    // A new flow allows for a delayed-ACK timer: no copy in rounds 0-9.
    // Prompt rounds drop the allowance (a lost reply would now cost the
    // RTT-derived timeout only).
    assert_eq!(hold_after_prompt, Some(0), "{copies_per_round:?}");
    // Then the peer holds its ACKs again: one spurious copy, found by its
    // D-SACK, teaches the flow; none after that.
    let mut want = vec![0; 70];
    want[50] = 1;
    assert_eq!(copies_per_round, want);
    assert_eq!(counter(&stack, "retx_spurious"), 1);
    assert_eq!(counter(&stack, "retx_timer"), 1);
    let est = stack.estimate(conn.unwrap()).unwrap();
    assert!(est.hold_ns >= 39_000_000, "{est:?}");
}

#[test]
fn inbound_loss_is_answered_at_once_with_a_sack_block() {
    let (clock, mut stack, mut peer) = stack_and_peer(|_| {});
    let port = 41001;
    let (snd_nxt, rcv_nxt) = scripted_handshake(&clock, &mut stack, &mut peer, port);
    let data = |seq: u32, n: u8| Seg {
        src_port: port,
        dst_port: PORT,
        seq,
        ack: rcv_nxt,
        flags: ACK | PSH,
        window: 65535,
        payload: vec![n; 100],
        ..Seg::default()
    };
    let _ = collect(&clock, &mut stack, &mut peer, ms(1));
    // The segment at snd_nxt is lost; the next one arrives.
    peer.send(&data(snd_nxt + 100, 2));
    let got = collect(&clock, &mut stack, &mut peer, Duration::from_micros(50));
    let dup: Vec<_> = got.iter().filter(|s| s.payload.is_empty() && s.has(ACK)).collect();
    assert_eq!(dup.len(), 1, "{got:?}");
    assert_eq!(dup[0].ack, snd_nxt, "a duplicate ACK for the hole");
    assert_eq!(dup[0].sack, vec![(snd_nxt + 100, snd_nxt + 200)], "with a SACK block for what arrived");
}

#[test]
fn sixteen_holes_at_once_are_all_kept() {
    // Every other segment of 32 is lost: 16 holes in flight at once, as
    // when a peer's lost retransmission waits for its RTO while new data
    // keeps arriving. Each out-of-order segment must be kept (and SACKed),
    // so that filling the holes alone completes the stream; smoltcp's
    // default reassembler tracks only 4 holes and silently drops the rest.
    let (clock, mut stack, mut peer) = stack_and_peer(|_| {});
    let port = 41002;
    let (snd_nxt, rcv_nxt) = scripted_handshake(&clock, &mut stack, &mut peer, port);
    let data = |i: u32| Seg {
        src_port: port,
        dst_port: PORT,
        seq: snd_nxt + i * 100,
        ack: rcv_nxt,
        flags: ACK | PSH,
        window: 65535,
        payload: vec![i as u8; 100],
        ..Seg::default()
    };
    let _ = collect(&clock, &mut stack, &mut peer, ms(1));
    let mut last_sack = Vec::new();
    for i in (1..32).step_by(2) {
        peer.send(&data(i));
        let got = collect(&clock, &mut stack, &mut peer, Duration::from_micros(50));
        let dup: Vec<_> = got.iter().filter(|s| s.payload.is_empty() && s.has(ACK)).collect();
        assert_eq!(dup.len(), 1, "segment {i}: {got:?}");
        assert_eq!(dup[0].ack, snd_nxt, "segment {i}");
        last_sack = dup[0].sack.clone();
    }
    // The newest block first (RFC 2018): the last segment that arrived.
    assert_eq!(last_sack.first(), Some(&(snd_nxt + 3100, snd_nxt + 3200)), "{last_sack:?}");
    // Only the holes are sent again; the stream is then whole.
    for i in (0..32).step_by(2) {
        peer.send(&data(i));
    }
    let got = collect(&clock, &mut stack, &mut peer, ms(1));
    let acked = got.iter().filter(|s| s.has(ACK)).map(|s| s.ack.wrapping_sub(snd_nxt)).max();
    assert_eq!(acked, Some(3200), "{got:?}");
}

/// A deterministic pseudo-random sequence.
fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn the_stream_is_intact_under_random_loss_both_ways() {
    let mut net = Net::new();
    let id = net.connect();
    for (w, seed) in [(net.client.link().outbox.clone(), 1u64), (net.server.link().outbox.clone(), 2)] {
        let mut x = 0x2545_f491_4f6c_dd1d ^ seed;
        // Any frame, data or ACK: 1 in 20 is lost.
        w.borrow_mut().set_rule(move |_| if xorshift(&mut x) % 20 == 0 { Fate::Drop } else { Fate::Deliver });
    }
    let mut x = 7u64;
    let (mut want, mut got) = (Vec::new(), Vec::new());
    for i in 0..400u32 {
        let len = 1 + (xorshift(&mut x) % 300) as usize;
        let msg: Vec<u8> = (0..len).map(|j| (i as usize * 7 + j) as u8).collect();
        assert_eq!(net.client.send(id, &msg).unwrap(), len);
        want.extend_from_slice(&msg);
        for _ in 0..5 {
            net.step();
            net.client_read(id, &mut got).unwrap();
        }
    }
    let start = net.clock.now();
    read_exactly(&mut net, id, &want, &mut got);
    let dropped = net.client.link().outbox.borrow().dropped + net.server.link().outbox.borrow().dropped;
    assert!(dropped > 20, "the rule dropped {dropped}");
    let ours = |t: &Stack<MemLink>| counter(t, "retx_timer") + counter(t, "retx_sack");
    assert!(ours(&net.client) > 0 && ours(&net.server) > 0);
    // Repaired at the link's time scale: the tail drained in far less than
    // smoltcp's 1 s RTO.
    assert!(net.clock.now() - start < 200_000_000, "{} ms to drain", (net.clock.now() - start) / 1_000_000);
}

#[test]
fn memory_stays_bounded_under_a_long_outage() {
    let mut net = Net::new();
    let id = net.connect();
    net.echo_once(id, b"warm", ms(10));
    for w in [net.client.link().outbox.clone(), net.server.link().outbox.clone()] {
        w.borrow_mut().set_rule(|_| Fate::Drop);
    }
    // 5 s without a link, the client writing 100 bytes every millisecond
    // until its buffer is full.
    net.step = ms(1);
    let mut want = Vec::new();
    let mut most = 0;
    for i in 0..5000u32 {
        let msg = [(i % 251) as u8; 100];
        if let Ok(n) = net.client.send(id, &msg) {
            want.extend_from_slice(&msg[..n]);
        }
        net.step();
        most = most.max(net.client.recovery().slots_in_use());
    }
    assert!(want.len() > 60_000, "the send buffer took {}", want.len());
    // Copies are bounded per flow; the rest is left to smoltcp's RTO.
    assert!(most <= usize::from(MAX_SLOTS_PER_FLOW), "{most} copies");
    assert!(counter(&net.client, "retx_untracked") > 0);
    // Backed off: a few dozen retransmissions in 5 s, not one per timeout.
    let timer = counter(&net.client, "retx_timer");
    assert!((5..=25).contains(&timer), "{timer} retransmissions");
    // The link comes back: every byte arrives, once, in order.
    for w in [net.client.link().outbox.clone(), net.server.link().outbox.clone()] {
        w.borrow_mut().clear_rule();
    }
    net.step = Duration::from_micros(100);
    let mut got = Vec::new();
    read_exactly(&mut net, id, &want, &mut got);
    assert_eq!(net.client.recovery().slots_in_use(), 0);
}
