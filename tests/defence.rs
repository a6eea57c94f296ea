//! The stack against a peer on the same segment that forges, replays and
//! floods, in process and in virtual time: the challenge-ACK side channel,
//! TIME-WAIT reuse, what the guard acknowledges, and forged segments that
//! try to steer loss recovery. Each test checks what the attack does to
//! the connection, and to the others.

use std::time::Duration;

use tailgate::stack::frame::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use tailgate::stack::guard::CHALLENGE_INTERVAL_NS;
use tailgate::stack::recovery::Estimate;
use tailgate::stack::sim::Seg;
use tailgate::transport::Transport;

mod mem;
use mem::*;

/// The stack closes `l`'s connection first; the peer ACKs the stack's FIN
/// and sends its own; the stack's final ACK leaves a TIME-WAIT record.
fn server_closes_first(l: &mut Live) {
    l.stack.shutdown_write(l.id).unwrap();
    l.stack.close(l.id);
    let got = l.run(ms(1));
    let fin = got.iter().find(|s| s.has(FIN)).expect("the stack's FIN");
    assert_eq!(fin.seq, l.rcv);
    l.rcv = l.rcv.wrapping_add(1);
    let got = l.exchange(&l.seg(ACK | FIN, l.seq, b""));
    l.seq = l.seq.wrapping_add(1);
    assert!(got.iter().any(|s| s.flags == ACK && s.ack == l.seq), "the final ACK: {got:?}");
    assert_eq!(l.stack.closing(), 0);
}

/// RFC 6191 / RFC 1122 4.2.2.13: a SYN ends TIME-WAIT only if its ISN lies
/// above the old connection's sequence space. An old duplicate SYN (or a
/// blind one) gets the record's ACK and opens nothing.
#[test]
fn a_syn_in_time_wait_below_the_old_sequence_space_opens_nothing() {
    let mut l = Live::new();
    l.data(b"order");
    server_closes_first(&mut l);
    assert_eq!(counter(&l.stack, "time_wait"), 1);
    for isn in [l.seq.wrapping_sub(1000), l.seq.wrapping_sub(1)] {
        let got = l.exchange(&syn(l.port, isn));
        assert!(!got.iter().any(|s| s.has(SYN)), "a SYN-ACK for ISN {isn}: {got:?}");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].flags, got[0].seq, got[0].ack), (ACK, l.rcv, l.seq), "the record's ACK");
        assert_eq!(counter(&l.stack, "time_wait"), 1, "TIME-WAIT kept");
        l.run(Duration::from_nanos(CHALLENGE_INTERVAL_NS));
    }
    assert_eq!(counter(&l.stack, "time_wait_syn_refused"), 2);
    // A RST that is not the refused client's exact answer changes nothing.
    assert!(l.exchange(&l.seg(RST, l.seq.wrapping_add(1), b"")).is_empty());
    assert_eq!(counter(&l.stack, "time_wait"), 1);
    // Above it: a new connection.
    let (seq, rcv) = scripted_handshake_from(&l.clock, &mut l.stack, &mut l.peer, l.port, l.seq.wrapping_add(5000));
    let (_, ev) = run(&l.clock, &mut l.stack, &mut l.peer, ms(1));
    let id = accepted(&ev).expect("the new connection");
    assert_eq!(counter(&l.stack, "time_wait"), 0);
    (l.id, l.seq, l.rcv) = (id, seq, rcv);
    l.data(b"logon again");
}

/// A client with a random ISN reconnects from its pinned port, below the
/// old sequence space: the record refuses the SYN with its ACK, the client
/// answers that with a RST at exactly that ACK (as a SYN-SENT socket
/// does), which ends the record, and its next SYN gets in (not 60 s later).
#[test]
fn a_refused_reconnection_gets_in_after_its_rst() {
    let mut l = Live::new();
    l.data(b"logon");
    server_closes_first(&mut l);
    let low = l.seq.wrapping_sub(50_000);
    let got = l.exchange(&syn(l.port, low));
    assert_eq!(got.len(), 1, "{got:?}");
    let refusal = &got[0];
    assert_eq!((refusal.flags, refusal.ack), (ACK, l.seq), "the record's ACK");
    // The client's RST: seq = the ACK it got.
    let rst = Seg { src_port: l.port, dst_port: PORT, seq: refusal.ack, flags: RST, ..Seg::default() };
    assert!(l.exchange(&rst).is_empty());
    assert_eq!(counter(&l.stack, "time_wait"), 0, "the record ended");
    assert_eq!(counter(&l.stack, "time_wait_reset"), 1);
    // Its SYN again, a second later: a connection.
    l.run(ms(1000));
    let (seq, rcv) = scripted_handshake_from(&l.clock, &mut l.stack, &mut l.peer, l.port, low);
    let (_, ev) = run(&l.clock, &mut l.stack, &mut l.peer, ms(1));
    (l.id, l.seq, l.rcv) = (accepted(&ev).expect("reconnected"), seq, rcv);
    l.data(b"logon again");
}

/// The server closes first and the client reconnects from the same port
/// (FIX clients often pin theirs) within TIME-WAIT, again and again: every
/// reconnection gets in, and the `time_wait` gauge is exact at each step.
#[test]
fn reconnecting_from_the_same_port_during_time_wait_works_every_time() {
    let mut l = Live::with(|c| c.max_conns = 4);
    for round in 0..8u32 {
        l.data(b"logon");
        server_closes_first(&mut l);
        assert_eq!(counter(&l.stack, "time_wait"), 1, "round {round}");
        assert_eq!(l.stack.open(), 0);
        let isn = l.seq.wrapping_add(100_000);
        let (seq, rcv) = scripted_handshake_from(&l.clock, &mut l.stack, &mut l.peer, l.port, isn);
        let (_, ev) = run(&l.clock, &mut l.stack, &mut l.peer, ms(1));
        let id = accepted(&ev).unwrap_or_else(|| panic!("round {round}: not accepted"));
        (l.id, l.seq, l.rcv) = (id, seq, rcv);
        assert_eq!(counter(&l.stack, "time_wait"), 0, "round {round}: the SYN ended TIME-WAIT");
        assert_eq!(l.stack.open(), 1);
        assert_eq!(counter(&l.stack, "conn_refused"), 0);
    }
    // Other clients still get in, up to max_conns.
    for p in 0..3u16 {
        l.another(50_000 + p);
    }
    assert_eq!(l.stack.open(), 4);
}

/// What connection B gets back for in-window resets sent to it every
/// 100 ms for 3 s, after (or without) a flood of resets on connection A:
/// (ms since start, seq - B's rcv, ack - B's seq) of each challenge ACK.
fn challenges_to_b(flood_a: bool) -> Vec<(u64, u32, u32)> {
    let mut l = Live::new();
    l.data(b"order");
    let b = l.another(42_001);
    let mut got = Vec::new();
    let start = l.clock.now();
    for k in 0..30u32 {
        if flood_a {
            // An attacker with its own connection spends what it can.
            for i in 0..1000u32 {
                l.peer.send(&l.seg(RST, l.seq.wrapping_add(1 + i), b""));
            }
            l.run(ms(20));
        }
        l.peer.send(&b.seg(RST, b.seq.wrapping_add(10 + k), b""));
        let wait = if flood_a { ms(80) } else { ms(100) };
        for s in l.run(wait).into_iter().filter(|s| s.dst_port == b.port) {
            let t = (l.clock.now() - start) / 1_000_000;
            got.push((t, s.seq.wrapping_sub(b.rcv), s.ack.wrapping_sub(b.seq)));
        }
    }
    assert!(l.alive(), "A survived");
    got
}

/// CVE-2016-5696: with one deterministic budget for every connection, an
/// off-path attacker spends it and counts what its own connection gets
/// back. Here no connection's challenges change what another one gets.
#[test]
fn one_connections_challenges_do_not_change_another_connections() {
    let calm = challenges_to_b(false);
    let flooded = challenges_to_b(true);
    assert_eq!(calm.len(), 6, "one challenge per 500 ms in 3 s: {calm:?}");
    assert_eq!(flooded, calm, "A's flood changed what B got");
}

/// Open `n` more scripted connections on `l`'s stack at once, from ports
/// `first..`: their (port, our next seq, the stack's next seq).
fn open_many(l: &mut Live, first: u16, n: u16) -> Vec<(u16, u32, u32)> {
    for p in first..first + n {
        l.peer.send(&syn(p, 1000));
    }
    let got = l.run(ms(2));
    let mut conns = Vec::new();
    for sa in got.iter().filter(|s| s.has(SYN | ACK)) {
        let rcv = sa.seq.wrapping_add(1);
        l.peer.send(&Seg { src_port: sa.dst_port, ack: rcv, flags: ACK, ..syn(sa.dst_port, 1001) });
        conns.push((sa.dst_port, 1001, rcv));
    }
    l.run(ms(2));
    assert_eq!(conns.len(), usize::from(n), "handshakes");
    conns
}

/// What B gets for an in-window reset every 500 ms for 2 s while (or
/// without) 1000 other connections draw a challenge ACK each, twice a
/// second: more than any global budget would allow (Linux's was 1000 a
/// second, then 500-1500 at random).
fn challenges_with_many_others(flood: bool) -> Vec<(u32, u32)> {
    let mut l = Live::with(|c| c.max_conns = 2000);
    let others = open_many(&mut l, 20_000, 1000);
    let b = l.another(42_001);
    let mut got = Vec::new();
    for k in 0..4u32 {
        if flood {
            for &(port, seq, rcv) in &others {
                let s = Seg { src_port: port, ack: rcv, ..l.seg(RST, seq.wrapping_add(5 + k), b"") };
                l.peer.send(&s);
            }
        }
        l.peer.send(&b.seg(RST, b.seq.wrapping_add(10 + k), b""));
        for s in l.run(ms(500)).into_iter().filter(|s| s.dst_port == b.port) {
            got.push((s.seq.wrapping_sub(b.rcv), s.ack.wrapping_sub(b.seq)));
        }
    }
    if flood {
        assert!(counter(&l.stack, "rst_challenged") >= 4000, "the others drew their challenges");
    }
    got
}

/// No budget is shared between connections: a thousand connections
/// spending challenge ACKs (an attacker who holds them, counting what comes
/// back) change nothing for another one.
#[test]
fn many_connections_challenges_do_not_change_another_connections() {
    let calm = challenges_with_many_others(false);
    assert_eq!(calm, vec![(0, 0); 4], "one challenge per reset every 500 ms");
    assert_eq!(challenges_with_many_others(true), calm, "the others' challenges changed what B got");
}

/// The guard's RCV.NXT is what smoltcp accepted: in-order data smoltcp
/// drops (no ACK flag; an ACK below SND.UNA) is not acknowledged by a
/// challenge ACK, so the peer keeps it and sends it again, and the stream
/// goes on.
#[test]
fn challenges_acknowledge_only_what_smoltcp_accepted() {
    let mut l = Live::new();
    l.data(b"order");
    // In order, but without the ACK flag: smoltcp ignores it.
    l.exchange(&Seg { flags: PSH, ..l.seg(PSH, l.seq, b"ghost") });
    let got = l.exchange(&l.seg(RST, l.seq.wrapping_add(100), b""));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].flags, got[0].ack), (ACK, l.seq), "the challenge acknowledged bytes never taken");
    l.run(Duration::from_nanos(CHALLENGE_INTERVAL_NS));
    // The stack sends a reply, the peer ACKs it: SND.UNA moves on.
    assert_eq!(l.stack.send(l.id, b"reply").unwrap(), 5);
    l.run(ms(1));
    let old_ack = l.rcv;
    l.rcv = l.rcv.wrapping_add(5);
    l.exchange(&l.seg(ACK, l.seq, b""));
    // In-order data acknowledging less than SND.UNA: smoltcp drops it all.
    l.exchange(&Seg { ack: old_ack, ..l.seg(ACK | PSH, l.seq, b"stale") });
    let got = l.exchange(&l.seg(RST, l.seq.wrapping_add(100), b""));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].flags, got[0].ack), (ACK, l.seq), "the challenge acknowledged bytes never taken");
    // The peer sends them again, properly: all of it arrives.
    l.data(b"ghost");
    let mut buf = [0u8; 64];
    let n = l.stack.recv(l.id, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"orderghost");
}

/// When the stack sent the reply again, in ns after the original: for a
/// first reply the peer never ACKs, and (after the peer ACKs its
/// retransmission) for a second one; then the flow's estimates. `forge`
/// may send segments to the stack, right after the first reply (stage 0)
/// and right after its retransmission (stage 1).
fn lost_replies(forge: impl Fn(&Live, u8) -> Vec<Seg>) -> (u64, u64, Estimate) {
    let mut l = Live::new();
    l.data(b"req");
    let mut times = Vec::new();
    for (n, reply) in [b"reply-one", b"reply-two"].into_iter().enumerate() {
        assert_eq!(l.stack.send(l.id, reply).unwrap(), reply.len());
        let t0 = l.clock.now();
        let first = l.run(ms(1));
        assert!(first.iter().any(|s| s.payload == reply), "{first:?}");
        if n == 0 {
            for f in forge(&l, 0) {
                l.peer.send(&f);
            }
        }
        let mut again = None;
        while again.is_none() && l.clock.now() - t0 < 3_000_000_000 {
            if l.run(Duration::from_micros(100)).iter().any(|s| s.payload == reply) {
                again = Some(l.clock.now() - t0);
            }
        }
        times.push(again.expect("never sent again"));
        if n == 0 {
            for f in forge(&l, 1) {
                l.peer.send(&f);
            }
            l.run(ms(1));
        }
        // The peer has it now.
        l.rcv = l.rcv.wrapping_add(reply.len() as u32);
        l.exchange(&l.seg(ACK, l.seq, b""));
        l.data(b"next");
    }
    let est = l.stack.estimate(l.id).unwrap();
    (times[0], times[1], est)
}

/// An ACK of nothing new from `seq` with two SACK blocks 2^31 wide around
/// the sequence space, from just below the stack's next sequence number.
fn wide_sacks(l: &Live, seq: u32) -> Seg {
    let (w, a) = ((1u32 << 31) - 1, l.rcv.wrapping_sub(10));
    Seg { sack: vec![(a, a.wrapping_add(w)), (a.wrapping_add(w), a)], ..l.seg(ACK, seq, b"") }
}

/// Segments a forger sends at each stage of [`lost_replies`].
type Forge = Box<dyn Fn(&Live, u8) -> Vec<Seg>>;

/// Forged segments with the connection's 4-tuple and a guessed sequence
/// number outside the window (or SACK blocks outside what was sent) steer
/// nothing: the lost reply goes again when it would have, and so does a
/// later one, with the same estimates.
#[test]
fn forged_segments_leave_loss_recovery_unchanged() {
    let control = lost_replies(|_, _| vec![]);
    let outside = |l: &Live| l.seq.wrapping_add(1 << 30);
    let cases: Vec<(&str, Forge)> = vec![
        (
            "a zero window (our retransmissions would stop)",
            Box::new(move |l, stage| match stage {
                0 => vec![Seg { window: 0, ..l.seg(ACK, outside(l), b"") }],
                _ => vec![],
            }),
        ),
        (
            "two SACK blocks 2^31 wide (every copy marked delivered)",
            Box::new(move |l, stage| if stage == 0 { vec![wide_sacks(l, outside(l))] } else { vec![] }),
        ),
        (
            "a D-SACK for the retransmission (the delayed-ACK hold raised for good)",
            Box::new(move |l, stage| match stage {
                1 => {
                    let b = (l.rcv, l.rcv.wrapping_add(9));
                    vec![Seg { sack: vec![b, b], ..l.seg(ACK, outside(l), b"") }]
                }
                _ => vec![],
            }),
        ),
        (
            "an ACK of the reply (its copy freed, SND.UNA moved)",
            Box::new(move |l, stage| match stage {
                0 => vec![Seg { ack: l.rcv.wrapping_add(9), ..l.seg(ACK, outside(l), b"") }],
                _ => vec![],
            }),
        ),
        (
            "in the window, a SACK block past what was sent",
            Box::new(move |l, stage| match stage {
                0 => vec![Seg {
                    sack: vec![(l.rcv.wrapping_sub(10), l.rcv.wrapping_add(10_000))],
                    ..l.seg(ACK, l.seq, b"")
                }],
                _ => vec![],
            }),
        ),
        (
            "in the window, two SACK blocks 2^31 wide",
            Box::new(move |l, stage| if stage == 0 { vec![wide_sacks(l, l.seq)] } else { vec![] }),
        ),
        (
            "in the window, a D-SACK wider than the retransmission",
            Box::new(move |l, stage| match stage {
                1 => {
                    let b = (l.rcv.wrapping_sub(1 << 20), l.rcv.wrapping_add(9));
                    vec![Seg { sack: vec![b, b], ..l.seg(ACK, l.seq, b"") }]
                }
                _ => vec![],
            }),
        ),
    ];
    for (what, forge) in cases {
        let got = lost_replies(forge);
        assert_eq!(got, control, "forged: {what}");
    }
    // The control itself: the first loss repaired within a few hundred ms.
    assert!(control.0 < 300_000_000, "{control:?}");
}

/// Is `f` an ICMP echo reply?
fn is_echo_reply(f: &[u8]) -> bool {
    use smoltcp::wire::{EthernetFrame, Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet};
    let Ok(eth) = EthernetFrame::new_checked(f) else { return false };
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else { return false };
    ip.next_header() == IpProtocol::Icmp
        && Icmpv4Packet::new_checked(ip.payload()).is_ok_and(|i| i.msg_type() == Icmpv4Message::EchoReply)
}

/// Anyone on the segment can send echo requests, UDP and SYNs to closed
/// ports as fast as the wire goes: the stack answers a bounded number, no
/// UDP at all, counts the rest, and its connection is untouched.
#[test]
fn floods_of_pings_udp_and_closed_port_syns_get_bounded_answers() {
    use tailgate::stack::sim::{icmp_echo_frame, udp_frame, MAC_A, MAC_B};
    let mut l = Live::new();
    l.data(b"order");
    let (echo, udp, syns) = (5000u16, 2000u16, 5000u16);
    for i in 0..echo {
        l.peer.send_raw(icmp_echo_frame(MAC_B, MAC_A, CLIENT, SERVER, 7, i));
    }
    for i in 0..udp {
        l.peer.send_raw(udp_frame(MAC_B, MAC_A, CLIENT, SERVER, (5000, 1000 + i), b"flood"));
    }
    for i in 0..syns {
        l.peer.send(&Seg { dst_port: 9, ..syn(20_000 + i, u32::from(i)) });
    }
    // ACKs with bad cookies to the listening port: the door answers each
    // with a RST, within the same limit.
    for i in 0..syns {
        l.peer.send(&Seg { src_port: 30_000 + i, seq: 5, ack: 77 + u32::from(i), flags: ACK, ..syn(0, 0) });
    }
    let got = l.run(ms(100));
    let replies = l.peer.other.drain(..).filter(|f| is_echo_reply(f)).count() as u64;
    assert!(l.peer.other.is_empty(), "nothing else (no port unreachable): {}", l.peer.other.len());
    let rsts = got.iter().filter(|s| s.has(RST)).count() as u64;
    // A fifth of a second's worth saved up, and 100 ms of the rate.
    assert!((20..=31).contains(&replies), "{replies} echo replies");
    assert!((20..=31).contains(&rsts), "{rsts} RSTs to one source");
    assert_eq!(counter(&l.stack, "icmp_echo_limited"), u64::from(echo) - replies);
    assert_eq!(counter(&l.stack, "udp_dropped"), u64::from(udp));
    assert_eq!(counter(&l.stack, "rst_limited"), 2 * u64::from(syns) - rsts);
    assert!(l.alive());
    l.data(b"untouched");
    // A second later, an operator's ping is answered.
    l.run(Duration::from_secs(1));
    l.peer.send_raw(icmp_echo_frame(MAC_B, MAC_A, CLIENT, SERVER, 8, 1));
    l.run(ms(1));
    assert_eq!(l.peer.other.drain(..).filter(|f| is_echo_reply(f)).count(), 1);
}

/// A scan of closed ports (SYNs, and ACKs of no connection) makes no
/// tracing state, and wipes none: a live connection's unread request still
/// says when it arrived (the flow map used to be cleared whole past its
/// size, and a scan filled it).
#[test]
fn a_scan_leaves_the_tracing_state_of_live_connections_alone() {
    let mut l = Live::with(|c| c.max_conns = 4);
    l.stack.set_tracing(true);
    let arrived = l.clock.now();
    l.peer.send(&l.seg(ACK | PSH, l.seq, b"order"));
    l.run(ms(1));
    for i in 0..6000u32 {
        let port = 1000 + i as u16;
        let flags = if i % 2 == 0 { SYN } else { ACK };
        l.peer.send(&Seg {
            src_port: 30_000 + (i % 7) as u16,
            dst_port: port,
            seq: i,
            ack: i,
            flags,
            ..Seg::default()
        });
    }
    l.run(ms(100));
    assert!(l.stack.traced_flows() <= 2, "{} flows traced", l.stack.traced_flows());
    let mut buf = [0u8; 16];
    assert_eq!(l.stack.recv(l.id, &mut buf).unwrap(), 5);
    let t = l.stack.rx_trace(l.id);
    assert!(t.arrival_ns >= arrived && t.arrival_ns < arrived + 1_000_000, "{t:?}, sent at {arrived}");
}

/// Our own connections' ISNs are RFC 6528's (a keyed hash and a clock), not
/// smoltcp's PRNG seeded with the configured seed: two stacks configured
/// alike open with unrelated ISNs, and each connection still works.
#[test]
fn outbound_isns_are_keyed_not_seeded() {
    let isn = || {
        let mut net = Net::new();
        let wire = net.client.link().outbox.clone();
        wire.borrow_mut().capture = true;
        let id = net.connect();
        assert_eq!(net.echo_once(id, b"logon", ms(10)), b"logon");
        let syn = wire.borrow().captured.iter().filter_map(|f| Seg::parse(f)).find(|(_, _, s)| s.flags == SYN);
        syn.expect("the client's SYN").2.seq
    };
    let (a, b) = (isn(), isn());
    assert_ne!(a, b, "two stacks with the same seed opened with the same ISN");
}

/// A forged ACK to a connection of ours still in SYN-SENT (its port is
/// easy to guess: the range is handed out in order) draws smoltcp's RST
/// and nothing more: the connection's record, with the offset its RFC 6528
/// ISN needs, stays, and the real SYN-ACK completes the handshake at once.
#[test]
fn a_forged_ack_during_our_handshake_does_not_break_it() {
    use tailgate::stack::sim::{pair, Clock, Peer, MAC_A, MAC_B};
    use tailgate::stack::Stack;
    use tailgate::transport::Event;
    let clock = Clock::new(1_000_000_000);
    let (server_end, client_end) = pair(&clock);
    let mut stack = Stack::new(config(CLIENT, MAC_B), client_end);
    let mut peer = Peer::new(server_end, MAC_A, SERVER, MAC_B, CLIENT);
    let id = stack.connect(server_addr()).unwrap();
    // The stack resolves the server first; its SYN goes as soon as the ARP
    // reply is in (not at its shard's timer round, up to 102 ms later).
    let got = collect(&clock, &mut stack, &mut peer, ms(1));
    let syn = got.iter().find(|s| s.flags == SYN).expect("our SYN").clone();
    let from_server = |flags: u8, seq: u32, ack: u32| Seg {
        src_port: PORT,
        dst_port: syn.src_port,
        seq,
        ack,
        flags,
        window: 65535,
        ..Seg::default()
    };
    peer.send(&from_server(ACK, 5000, 12_345));
    let got = collect(&clock, &mut stack, &mut peer, ms(1));
    assert!(got.iter().all(|s| s.has(RST)), "{got:?}");
    peer.send(&from_server(SYN | ACK, 7000, syn.seq.wrapping_add(1)));
    let (got, ev) = run(&clock, &mut stack, &mut peer, ms(1));
    assert!(ev.contains(&Event::Connected(id)), "{ev:?} {got:?}");
    assert!(got.iter().any(|s| s.flags == ACK && s.seq == syn.seq.wrapping_add(1) && s.ack == 7001), "{got:?}");
}

/// Peers that never answer our FIN cannot make the stack hold closing
/// sockets without bound: at most `max_conns` close at once; past that the
/// one nearest its deadline is reset at once, and counted.
#[test]
fn closing_connections_are_capped_at_max_conns() {
    let mut l = Live::with(|c| c.max_conns = 4);
    let mut ids = vec![l.id];
    for round in 0..3u16 {
        while ids.len() < 4 {
            let c = l.another(45_000 + round * 10 + ids.len() as u16);
            ids.push(c.id);
        }
        // Each one closes with a reply in flight; the peer answers nothing.
        for id in ids.drain(..) {
            let _ = l.stack.send(id, b"bye");
            l.stack.shutdown_write(id).unwrap();
            l.stack.close(id);
        }
        l.run(ms(1));
        assert!(l.stack.closing() <= 4, "round {round}: {} closing", l.stack.closing());
    }
    assert_eq!(l.stack.closing(), 4);
    assert_eq!(counter(&l.stack, "closing_evicted"), 8);
    assert_eq!(counter(&l.stack, "sockets_allocated"), 8, "4 open and 4 closing at most");
}

/// smoltcp's own timers run when they are due, however busy the loop is:
/// our SYN, lost, goes again after smoltcp's RTO while a frame arrives at
/// every poll (before, an idle poll was needed to serve them, and a busy
/// gateway's lost SYN to the exchange never went again).
#[test]
fn a_lost_syn_goes_again_while_the_loop_is_busy() {
    use tailgate::stack::sim::{icmp_echo_frame, pair, Clock, Peer, MAC_A, MAC_B};
    use tailgate::stack::Stack;
    let clock = Clock::new(1_000_000_000);
    let (server_end, client_end) = pair(&clock);
    let mut stack = Stack::new(config(CLIENT, MAC_B), client_end);
    let mut peer = Peer::new(server_end, MAC_A, SERVER, MAC_B, CLIENT);
    stack.connect(server_addr()).unwrap();
    let mut syns = Vec::new();
    let mut ev = Vec::new();
    for i in 0..200_000u32 {
        // Something to ingest at every poll.
        peer.send_raw(icmp_echo_frame(MAC_A, MAC_B, SERVER, CLIENT, 9, i as u16));
        turn(&clock, &mut stack, &mut ev);
        for s in peer.recv() {
            if s.flags == SYN {
                syns.push(clock.now());
            }
        }
        if syns.len() >= 2 {
            break;
        }
    }
    assert!(syns.len() >= 2, "the lost SYN never went again in 2 s of a busy loop");
    let gap = syns[1] - syns[0];
    assert!((900_000_000..1_200_000_000).contains(&gap), "{gap} ns: smoltcp's RTO is 1 s");
}

/// RSTs are limited per source: a flood of stray ACKs from one address
/// (which would otherwise keep a shared budget empty, and learn from its own
/// answers whether a probe it spoofed from a client's address drew one)
/// changes nothing for another address.
#[test]
fn one_sources_rsts_do_not_change_anothers() {
    use smoltcp::wire::Ipv4Address;
    use tailgate::stack::sim::{tcp_frame, MAC_A, MAC_B};
    // Stray ACKs to the listening port (bad cookies: the door answers each
    // with a RST), from `src`.
    let strays = |l: &mut Live, src: Ipv4Address, n: u16, first_port: u16| {
        for i in 0..n {
            let seg = Seg { src_port: first_port + i, seq: 5, ack: 77 + u32::from(i), flags: ACK, ..syn(0, 0) };
            l.peer.send_raw(tcp_frame(MAC_B, MAC_A, src, SERVER, &seg));
        }
    };
    // Four other sources (their buckets are picked by a keyed hash: one may
    // share the flooder's, by chance, one time in 1024; two, one in a
    // million).
    let answered = |flood: bool| -> Vec<usize> {
        let mut l = Live::new();
        if flood {
            strays(&mut l, CLIENT, 5000, 20_000);
            l.run(ms(10));
        }
        (0..4u8)
            .map(|k| {
                let port = 40_000 + u16::from(k) * 100;
                strays(&mut l, Ipv4Address::new(198, 18, 0, 9 + k), 10, port);
                l.run(ms(10)).iter().filter(|s| s.has(RST) && (port..port + 10).contains(&s.dst_port)).count()
            })
            .collect()
    };
    assert_eq!(answered(false), vec![10; 4]);
    let flooded = answered(true);
    assert!(flooded.iter().filter(|&&n| n == 10).count() >= 3, "one source's flood silenced others' RSTs: {flooded:?}");
}
