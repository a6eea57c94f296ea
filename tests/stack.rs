//! The user-space stack in process: two stacks back to back over an
//! in-memory link with a virtual clock, or one stack and a scripted peer
//! that sends crafted segments. No root, no network, no real time: every
//! run is the same run (`unshare -n cargo test --test stack` passes in a
//! namespace with no interfaces at all).

use std::collections::HashMap;
use std::time::Duration;

use sha2::{Digest, Sha256};
use smoltcp::wire::Ipv4Address;

use tailgate::stack::frame::tcp_flags::{ACK, PSH, RST, SYN};
use tailgate::stack::sim::{tcp_frame, Fate, Seg, MAC_A, MAC_B};
use tailgate::transport::{signal, would_block, AckEvent, ConnId, Transport};

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
    // The shards' socket storage grows a slot at a time: about one slot per
    // socket (doubling from four would hold some 2,500 for 1,000 sockets).
    let slots = net.server.counters().get("socket_slots").unwrap();
    assert!((1000..=1100).contains(&slots), "socket_slots={slots}");
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
