//! Connection management on the user-space stack, in process and in
//! virtual time: RFC 5961 (blind resets, SYNs and ACKs injected into a
//! live connection, the challenge-ACK rate limit), TIME-WAIT, refusal at
//! `max_conns`, the closing linger, and an active open that is refused.
//! Every segment the stack sends in answer is read off the wire and
//! checked field by field.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tailgate::stack::frame::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use tailgate::stack::guard::CHALLENGE_INTERVAL_NS;
use tailgate::stack::sim::{Clock, MemLink, Peer, Seg};
use tailgate::stack::Stack;
use tailgate::transport::{Event, Transport};

mod mem;
use mem::*;

/// The one segment in `got`, a bare ACK acknowledging `ack` from `seq`.
fn assert_challenge_ack(got: &[Seg], seq: u32, ack: u32) {
    assert_eq!(got.len(), 1, "one challenge ACK: {got:?}");
    let a = &got[0];
    assert_eq!(a.flags, ACK, "a bare ACK, no RST, no SYN: {a:?}");
    assert_eq!((a.seq, a.ack), (seq, ack), "{a:?}");
    assert!(a.payload.is_empty());
}

#[test]
fn an_rst_exactly_at_rcv_nxt_resets() {
    let mut l = Live::new();
    l.data(b"order");
    let rst = l.seg(RST, l.seq, b"");
    let got = l.exchange(&rst);
    assert!(got.is_empty(), "nothing answers an accepted reset: {got:?}");
    assert!(!l.alive(), "the connection is reset");
    assert_eq!(counter(&l.stack, "rst_challenged"), 0);
}

#[test]
fn an_rst_in_the_window_but_not_at_rcv_nxt_draws_a_challenge_ack() {
    let mut l = Live::new();
    l.data(b"order");
    for off in [1u32, 1000, 60_000] {
        let rst = l.seg(RST, l.seq.wrapping_add(off), b"");
        let got = l.exchange(&rst);
        assert_challenge_ack(&got, l.rcv, l.seq);
        assert!(l.alive(), "a blind reset at +{off} ended the connection");
        // One challenge per connection per interval.
        run(&l.clock, &mut l.stack, &mut l.peer, Duration::from_nanos(CHALLENGE_INTERVAL_NS));
    }
    assert_eq!(counter(&l.stack, "rst_challenged"), 3);
    // Outside the window: dropped, no answer.
    let rst = l.seg(RST, l.seq.wrapping_add(1 << 30), b"");
    assert!(l.exchange(&rst).is_empty());
    assert_eq!(counter(&l.stack, "rst_outside_window"), 1);
    // The connection still carries data; a real reset still works.
    l.data(b"more");
    let rst = l.seg(RST, l.seq, b"");
    l.exchange(&rst);
    assert!(!l.alive());
}

#[test]
fn a_syn_on_an_established_connection_draws_a_challenge_ack() {
    let mut l = Live::new();
    l.data(b"order");
    for seq in [l.seq, l.seq.wrapping_add(100), 12_345] {
        let syn = Seg { window: 65535, ..l.seg(SYN, seq, b"") };
        let got = l.exchange(&Seg { ack: 0, ..syn });
        assert_challenge_ack(&got, l.rcv, l.seq);
        assert!(l.alive());
        run(&l.clock, &mut l.stack, &mut l.peer, Duration::from_nanos(CHALLENGE_INTERVAL_NS));
    }
    assert_eq!(counter(&l.stack, "syn_challenged"), 3);
    assert_eq!(l.stack.stats().accepted, 1, "no second connection");
    l.data(b"still here");
}

#[test]
fn an_ack_of_data_never_sent_is_dropped_and_answered() {
    let mut l = Live::new();
    l.data(b"order");
    // Data acknowledging 1000 bytes the stack never sent.
    let bad = Seg { ack: l.rcv.wrapping_add(1000), ..l.seg(ACK | PSH, l.seq, b"forged") };
    let got = l.exchange(&bad);
    assert_challenge_ack(&got, l.rcv, l.seq);
    assert_eq!(counter(&l.stack, "ack_unsent"), 1);
    // The forged data was not taken: the next in-order data is at l.seq.
    let mut buf = [0u8; 64];
    assert_eq!(l.stack.recv(l.id, &mut buf).unwrap(), 5, "only the first order");
    l.data(b"genuine");
    let n = l.stack.recv(l.id, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"genuine");
}

/// One connection draws at most one challenge ACK per
/// `CHALLENGE_INTERVAL_NS`, however many blind resets arrive: a flood on
/// one connection cannot make the stack a reflector, and (tests/defence.rs)
/// cannot spend a budget other connections share.
#[test]
fn challenge_acks_are_rate_limited_per_connection() {
    let mut l = Live::new();
    l.data(b"order");
    let flood = 1500;
    for i in 0..flood {
        let rst = l.seg(RST, l.seq.wrapping_add(1 + i), b"");
        l.peer.send(&rst);
    }
    let (got, _) = run(&l.clock, &mut l.stack, &mut l.peer, ms(50));
    let acks: Vec<_> = got.iter().filter(|s| s.flags == ACK).collect();
    assert_eq!(acks.len(), 1, "one challenge for {flood} resets in 50 ms");
    assert_eq!((acks[0].seq, acks[0].ack), (l.rcv, l.seq));
    assert_eq!(counter(&l.stack, "challenge_limited"), u64::from(flood - 1));
    assert!(l.alive());
    // Not before the interval is over ...
    run(&l.clock, &mut l.stack, &mut l.peer, Duration::from_nanos(CHALLENGE_INTERVAL_NS) - ms(100));
    assert!(l.exchange(&l.seg(RST, l.seq.wrapping_add(7), b"")).is_empty());
    // ... then one more.
    run(&l.clock, &mut l.stack, &mut l.peer, ms(100));
    let rst = l.seg(RST, l.seq.wrapping_add(7), b"");
    assert_challenge_ack(&l.exchange(&rst), l.rcv, l.seq);
}

/// The stack closes first, the peer answers with its FIN: the stack must
/// ACK that FIN although the application has freed the connection, and
/// ACK it again when the peer sends it again.
#[test]
fn time_wait_acks_the_final_fin_and_its_retransmission() {
    let mut l = Live::new();
    l.stack.shutdown_write(l.id).unwrap();
    l.stack.close(l.id);
    let (got, _) = run(&l.clock, &mut l.stack, &mut l.peer, ms(1));
    let fin = got.iter().find(|s| s.has(FIN)).expect("the stack's FIN");
    assert_eq!(fin.seq, l.rcv);
    l.rcv = l.rcv.wrapping_add(1);
    // ACK the FIN and send ours.
    let ours = l.seg(ACK | FIN, l.seq, b"");
    let got = l.exchange(&ours);
    l.seq = l.seq.wrapping_add(1);
    assert_eq!(got.len(), 1, "the final ACK: {got:?}");
    assert_eq!((got[0].flags, got[0].seq, got[0].ack), (ACK, l.rcv, l.seq));
    assert_eq!(l.stack.closing(), 0, "the socket is freed");
    // Our FIN again (as if that ACK was lost): ACKed, not reset.
    let again = l.seg(ACK | FIN, l.seq.wrapping_sub(1), b"");
    let got = l.exchange(&again);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].flags, got[0].seq, got[0].ack), (ACK, l.rcv, l.seq));
    assert_eq!(counter(&l.stack, "time_wait_acks"), 1);
    assert_eq!(counter(&l.stack, "time_wait"), 1);
    // A reset does not end TIME-WAIT early (RFC 1337) ...
    assert!(l.exchange(&l.seg(RST, l.seq, b"")).is_empty());
    assert_eq!(counter(&l.stack, "time_wait"), 1);
    // ... time does.
    run(&l.clock, &mut l.stack, &mut l.peer, Duration::from_secs(61));
    assert_eq!(counter(&l.stack, "time_wait"), 0);
}

/// Two stacks, the server closing first: no reset on the wire, either way.
#[test]
fn a_server_first_close_ends_with_no_reset() {
    let mut net = Net::new();
    let (to_server, to_client) = (net.client.link().outbox.clone(), net.server.link().outbox.clone());
    to_server.borrow_mut().capture = true;
    to_client.borrow_mut().capture = true;
    let id = net.connect();
    assert_eq!(net.echo_once(id, b"bye", ms(10)), b"bye");
    let sid = *net.echo.conns.keys().next().unwrap();
    net.echo.conns.remove(&sid);
    net.server.shutdown_write(sid).unwrap();
    net.server.close(sid);
    let mut rest = Vec::new();
    assert!(net.run_until(Duration::from_secs(1), |n| n.client_read(id, &mut rest).unwrap()), "no EOF at the client");
    net.client.shutdown_write(id).unwrap();
    net.client.close(id);
    assert_clean_close(&mut net, || any_rst(&to_server.borrow().captured) || any_rst(&to_client.borrow().captured));
    assert_eq!(net.server.counters().get("time_wait"), Some(1), "the server holds TIME-WAIT");
}

#[test]
fn a_syn_over_max_conns_is_answered_with_rst_at_once() {
    let (clock, mut stack, mut peer) = stack_and_peer(|c| c.max_conns = 4);
    for p in 0..4u16 {
        scripted_handshake(&clock, &mut stack, &mut peer, 30000 + p);
    }
    run(&clock, &mut stack, &mut peer, ms(1));
    for p in 4..10u16 {
        peer.send(&syn(30000 + p, 1000 + u32::from(p)));
    }
    let (got, _) = run(&clock, &mut stack, &mut peer, ms(5));
    let rsts: Vec<_> = got.iter().filter(|s| s.has(RST)).collect();
    assert_eq!(rsts.len(), 6, "{got:?}");
    for r in &rsts {
        let p = r.dst_port - 30000;
        assert_eq!((r.flags, r.ack), (RST | ACK, 1001 + u32::from(p)), "{r:?}");
    }
    assert!(!got.iter().any(|s| s.has(SYN)), "no SYN-ACK over the limit: {got:?}");
    assert_eq!(counter(&stack, "conn_refused"), 6);
    assert_eq!(stack.open(), 4);
}

#[test]
fn a_closing_connection_is_reset_when_its_linger_expires() {
    let mut l = Live::with(|c| c.linger_ns = 100_000_000);
    l.data(b"order");
    // The stack replies and closes; the peer never ACKs again.
    assert_eq!(l.stack.send(l.id, b"reply").unwrap(), 5);
    l.stack.shutdown_write(l.id).unwrap();
    l.stack.close(l.id);
    let (got, _) = run(&l.clock, &mut l.stack, &mut l.peer, ms(90));
    assert!(!got.iter().any(|s| s.has(RST)), "reset before the linger: {got:?}");
    assert_eq!(l.stack.closing(), 1);
    let (got, _) = run(&l.clock, &mut l.stack, &mut l.peer, ms(20));
    let rst: Vec<_> = got.iter().filter(|s| s.has(RST)).collect();
    assert_eq!(rst.len(), 1, "{got:?}");
    // At the stack's next sequence number: after the reply and the FIN.
    assert_eq!((rst[0].seq, rst[0].ack), (l.rcv.wrapping_add(6), l.seq));
    assert_eq!(l.stack.closing(), 0);
    assert_eq!(counter(&l.stack, "linger_expired"), 1);
}

#[test]
fn a_refused_active_open_is_reported_as_refused() {
    let mut net = Net::new();
    let id = net.client.connect(SocketAddr::new(SERVER.into(), 9)).unwrap();
    let mut got = Ok(false);
    net.run_until(Duration::from_secs(1), |n| {
        got = n.client_read(id, &mut Vec::new());
        got.is_err()
    });
    assert_eq!(got.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(net.client.stats().connected, 0, "never reported Connected");
}

/// Bytes this thread holds on the heap now (see `Counting`).
fn live_bytes() -> i64 {
    LIVE.with(|l| l.get())
}

thread_local! {
    static LIVE: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

/// The system allocator, counting the bytes each thread holds (tests run
/// on threads of their own: one test's count is its own).
struct Counting;

#[allow(unsafe_code)]
// SAFETY: every call is passed to the system allocator unchanged; the
// count is a const-initialised thread-local Cell, which allocates nothing.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        let _ = LIVE.try_with(|c| c.set(c.get() + l.size() as i64));
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        let _ = LIVE.try_with(|c| c.set(c.get() - l.size() as i64));
        // SAFETY: `p` was allocated by `alloc` above with layout `l`.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn a_syn_flood_costs_no_memory_and_a_legitimate_client_gets_in_at_once() {
    let (clock, mut stack, mut peer) = stack_and_peer(|c| c.max_conns = 100);
    // 5000 SYNs whose SYN-ACKs nobody answers, twice: the first round
    // grows the test's own wire queues; the second must cost the stack
    // nothing at all (a stack that kept each half-open connection would
    // hold 5000 more records, sockets or buffers).
    let flood = |round: u32, clock: &Clock, stack: &mut Stack<MemLink>, peer: &mut Peer| {
        for p in 0..5000u32 {
            peer.send(&syn(10000 + p as u16, 7 * p + round));
        }
        let (got, ev) = run(clock, stack, peer, ms(100));
        let answered = got.iter().filter(|s| s.flags == SYN | ACK).count();
        assert_eq!(answered, 5000, "every SYN gets its SYN-ACK");
        assert!(ev.is_empty(), "{:?}", &ev[..ev.len().min(3)]);
    };
    flood(0, &clock, &mut stack, &mut peer);
    let before = live_bytes();
    flood(1, &clock, &mut stack, &mut peer);
    let held = live_bytes() - before;
    assert!(held <= 0, "the stack holds {held} bytes more after 5000 half-open connections");
    assert_eq!(counter(&stack, "syn_received"), 10_000);
    assert_eq!(counter(&stack, "sockets_allocated"), 0, "a half-open connection has no socket");
    assert_eq!(stack.open(), 0, "a half-open connection holds nothing");
    assert_eq!(counter(&stack, "conn_refused"), 0);
    // A legitimate client: SYN-ACK at once, no retransmission needed.
    let (_, rcv) = scripted_handshake(&clock, &mut stack, &mut peer, 41999);
    let (_, ev) = run(&clock, &mut stack, &mut peer, ms(1));
    assert_eq!(ev.iter().filter(|e| matches!(e, Event::Accepted(_))).count(), 1, "{ev:?}");
    assert_eq!(counter(&stack, "syn_cookies_accepted"), 1);
    assert_eq!(stack.open(), 1);
    assert_ne!(rcv, 0);
}

#[test]
fn a_cookie_connection_speaks_in_the_cookies_sequence_space() {
    let mut l = Live::new();
    // The stack's data starts right after its SYN-ACK's sequence number.
    let msg = vec![0x5a; 3000];
    assert_eq!(l.stack.send(l.id, &msg).unwrap(), 3000);
    let got = run(&l.clock, &mut l.stack, &mut l.peer, ms(1)).0;
    let data: Vec<&Seg> = got.iter().filter(|s| !s.payload.is_empty()).collect();
    assert!(data.len() >= 3, "{got:?}");
    let mut next = l.rcv;
    for s in &data {
        assert_eq!(s.seq, next, "segments in order from the cookie: {s:?}");
        assert_eq!(s.ack, l.seq);
        next = next.wrapping_add(s.payload.len() as u32);
    }
    assert_eq!(next, l.rcv.wrapping_add(3000));
    // The peer acknowledges the second segment first, with a SACK block for
    // the rest, then everything: nothing is sent again, for a whole second.
    let first_end = data[0].seq.wrapping_add(data[0].payload.len() as u32);
    let mut sack = l.seg(ACK, l.seq, &[]);
    sack.ack = l.rcv;
    sack.sack = vec![(first_end, next)];
    l.peer.send(&sack);
    let all = Seg { ack: next, ..l.seg(ACK, l.seq, &[]) };
    l.peer.send(&all);
    let later = run(&l.clock, &mut l.stack, &mut l.peer, ms(1000)).0;
    assert!(later.iter().all(|s| s.payload.is_empty()), "sent again: {later:?}");
    let r = l.stack.recovery().stats;
    assert_eq!((r.timer, r.sack, r.rto, r.fast), (0, 0, 0, 0), "{r:?}");
    // And it goes on: more data both ways.
    l.rcv = next;
    l.data(b"more");
    assert_eq!(l.stack.send(l.id, b"reply").unwrap(), 5);
    let got = run(&l.clock, &mut l.stack, &mut l.peer, ms(1)).0;
    assert!(got.iter().any(|s| s.payload == b"reply" && s.seq == next), "{got:?}");
}

#[test]
fn a_forged_ack_opens_nothing_and_is_reset() {
    let (clock, mut stack, mut peer) = stack_and_peer(|_| {});
    // An ACK out of nowhere.
    let forged =
        Seg { src_port: 45000, dst_port: PORT, seq: 500, ack: 123_456, flags: ACK, window: 65535, ..Seg::default() };
    peer.send(&forged);
    let (got, ev) = run(&clock, &mut stack, &mut peer, ms(1));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].has(RST) && got[0].seq == 123_456, "{got:?}");
    // A real cookie, answered from another initial sequence number.
    peer.send(&syn(45001, 1000));
    let sa = collect(&clock, &mut stack, &mut peer, ms(1)).into_iter().find(|s| s.has(SYN | ACK)).unwrap();
    let replayed = Seg { src_port: 45001, seq: 2001, ack: sa.seq.wrapping_add(1), ..forged.clone() };
    peer.send(&replayed);
    let (got2, ev2) = run(&clock, &mut stack, &mut peer, ms(1));
    assert!(got2.iter().any(|s| s.has(RST)), "{got2:?}");
    assert!(ev.is_empty() && ev2.is_empty(), "{ev:?} {ev2:?}");
    assert_eq!(counter(&stack, "syn_cookies_invalid"), 2);
    assert_eq!((counter(&stack, "syn_cookies_accepted"), stack.open()), (0, 0));
}

#[test]
fn a_retransmitted_syn_gets_the_same_cookie() {
    let (clock, mut stack, mut peer) = stack_and_peer(|_| {});
    peer.send(&syn(46000, 77));
    let a = collect(&clock, &mut stack, &mut peer, ms(1));
    clock.advance(Duration::from_secs(1));
    peer.send(&syn(46000, 77));
    let b = collect(&clock, &mut stack, &mut peer, ms(1));
    assert_eq!(a.len(), 1);
    assert_eq!(a, b, "the same SYN-ACK");
    peer.send(&syn(46000, 78));
    let c = collect(&clock, &mut stack, &mut peer, ms(1));
    assert_ne!(a[0].seq, c[0].seq, "another ISN, another cookie");
}

#[test]
fn a_lost_final_ack_is_made_good_by_the_first_data() {
    let (clock, mut stack, mut peer) = stack_and_peer(|_| {});
    peer.send(&syn(47000, 1000));
    let sa = collect(&clock, &mut stack, &mut peer, ms(1)).into_iter().find(|s| s.has(SYN | ACK)).unwrap();
    // The bare ACK is lost; the first data segment carries the ACK.
    let data = Seg {
        src_port: 47000,
        dst_port: PORT,
        seq: 1001,
        ack: sa.seq.wrapping_add(1),
        flags: ACK | PSH,
        window: 65535,
        payload: b"logon".to_vec(),
        ..Seg::default()
    };
    peer.send(&data);
    let (got, ev) = run(&clock, &mut stack, &mut peer, ms(1));
    let id = ev.iter().find_map(|e| if let Event::Accepted(id) = e { Some(*id) } else { None }).expect("Accepted");
    assert!(got.iter().any(|s| s.has(ACK) && s.ack == 1006 && s.seq == sa.seq.wrapping_add(1)), "{got:?}");
    let mut buf = [0u8; 16];
    assert_eq!(stack.recv(id, &mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"logon");
    // The guard counted the logon from this connection's own RCV.NXT: a
    // blind reset draws a challenge ACK acknowledging exactly it.
    let rst = Seg { seq: 1006 + 100, flags: RST, payload: vec![], ..data };
    peer.send(&rst);
    let got = collect(&clock, &mut stack, &mut peer, ms(1));
    assert_eq!(got.len(), 1, "one challenge ACK: {got:?}");
    assert_eq!((got[0].flags, got[0].ack), (ACK, 1006), "{got:?}");
}

/// The same with another connection judged just before (its RCV.NXT far
/// ahead of this one's): the first data of a cookie connection is counted
/// from its own ISN, not from what the guard last saw.
#[test]
fn a_cookie_connections_first_data_is_counted_from_its_own_isn() {
    let mut l = Live::new();
    l.data(&[7u8; 3000]);
    peer_data_first(&mut l, 47_001, 500);
}

/// From `port`, a handshake whose final ACK is lost, data first (ISN
/// `isn`), then an in-window reset: the challenge ACK acknowledges the data.
fn peer_data_first(l: &mut Live, port: u16, isn: u32) {
    l.peer.send(&syn(port, isn));
    let sa = collect(&l.clock, &mut l.stack, &mut l.peer, ms(1)).into_iter().find(|s| s.has(SYN | ACK)).unwrap();
    let data = Seg {
        src_port: port,
        dst_port: PORT,
        seq: isn + 1,
        ack: sa.seq.wrapping_add(1),
        flags: ACK | PSH,
        window: 65535,
        payload: b"logon".to_vec(),
        ..Seg::default()
    };
    l.peer.send(&data);
    let got = collect(&l.clock, &mut l.stack, &mut l.peer, ms(1));
    assert!(got.iter().any(|s| s.dst_port == port && s.ack == isn + 6), "the data acknowledged: {got:?}");
    l.peer.send(&Seg { seq: isn + 6 + 100, flags: RST, payload: vec![], ..data });
    let got = collect(&l.clock, &mut l.stack, &mut l.peer, ms(1));
    assert_eq!(got.len(), 1, "one challenge ACK: {got:?}");
    assert_eq!((got[0].dst_port, got[0].flags, got[0].ack), (port, ACK, isn + 6), "{got:?}");
}

#[test]
fn the_cookie_carries_the_peers_mss_and_window_scale() {
    let (clock, mut stack, mut peer) = stack_and_peer(|_| {});
    // With window scaling: the SYN-ACK scales as smoltcp will (64 KiB of
    // receive buffer: shift 1), and the MSS comes back rounded down.
    peer.send(&Seg { window_scale: Some(7), mss: Some(1400), sack_permitted: true, ..syn(48000, 1000) });
    let sa = collect(&clock, &mut stack, &mut peer, ms(1)).into_iter().find(|s| s.has(SYN | ACK)).unwrap();
    assert_eq!((sa.window_scale, sa.mss, sa.sack_permitted), (Some(1), Some(1460), true), "{sa:?}");
    let ack = Seg {
        src_port: 48000,
        dst_port: PORT,
        seq: 1001,
        ack: sa.seq.wrapping_add(1),
        flags: ACK,
        window: 65535,
        ..Seg::default()
    };
    peer.send(&ack);
    let (_, ev) = run(&clock, &mut stack, &mut peer, ms(1));
    let id = ev.iter().find_map(|e| if let Event::Accepted(id) = e { Some(*id) } else { None }).expect("Accepted");
    assert_eq!(stack.send(id, &[1u8; 4000]).unwrap(), 4000);
    let got = collect(&clock, &mut stack, &mut peer, ms(1));
    let sizes: Vec<usize> = got.iter().map(|s| s.payload.len()).filter(|&n| n > 0).collect();
    assert!(sizes.iter().all(|&n| n <= 1300) && sizes.iter().sum::<usize>() == 4000, "{sizes:?}");
    // Without: no scaling, no SACK.
    peer.send(&syn(48001, 5));
    let sa = collect(&clock, &mut stack, &mut peer, ms(1)).into_iter().find(|s| s.has(SYN | ACK)).unwrap();
    assert_eq!((sa.window_scale, sa.sack_permitted), (None, false), "{sa:?}");
}

#[test]
fn a_syn_is_refused_once_the_stack_stops_listening() {
    let (clock, mut stack, mut peer) = stack_and_peer(|_| {});
    stack.stop_listening();
    peer.send(&syn(49000, 1));
    let got = collect(&clock, &mut stack, &mut peer, ms(1));
    assert!(got.len() == 1 && got[0].has(RST) && got[0].ack == 2, "{got:?}");
    assert_eq!(counter(&stack, "syn_received"), 0);
}

#[test]
fn max_conns_counts_established_connections_not_handshakes() {
    let (clock, mut stack, mut peer) = stack_and_peer(|c| c.max_conns = 2);
    // Handshakes under way (SYN-ACKs unanswered) take no slot.
    for p in 0..10u16 {
        peer.send(&syn(43100 + p, 9));
    }
    assert_eq!(collect(&clock, &mut stack, &mut peer, ms(1)).len(), 10);
    for p in 0..2u16 {
        scripted_handshake(&clock, &mut stack, &mut peer, 43000 + p);
    }
    run(&clock, &mut stack, &mut peer, ms(1));
    // Two established: the third SYN is refused at once.
    peer.send(&syn(43002, 5));
    let (got, _) = run(&clock, &mut stack, &mut peer, ms(1));
    assert!(got.iter().any(|s| s.has(RST | ACK) && s.ack == 6), "{got:?}");
    assert_eq!(counter(&stack, "conn_refused"), 1);
}

/// A connection closed without a shutdown is reset, and the RST goes out:
/// before the fix the aborted socket was freed by the next scan before
/// smoltcp had dispatched it, so the peer never heard of the close.
#[test]
fn a_close_without_shutdown_sends_a_reset() {
    let mut l = Live::new();
    l.stack.close(l.id);
    let segs = l.run(ms(5));
    let rst: Vec<&Seg> = segs.iter().filter(|s| s.has(RST)).collect();
    assert_eq!(rst.len(), 1, "one RST for the aborted connection: {segs:?}");
    assert_eq!(rst[0].seq, l.rcv, "at the sequence number the peer expects");
}

/// A source the logon verifier made wait is refused at its SYN (a RST, no
/// cookie, no socket), for as long as its wait lasts and no longer.
#[test]
fn a_source_at_the_gate_gets_a_reset_for_its_syn_until_its_wait_ends() {
    let gate = std::sync::Arc::new(tailgate::transport::gate::Gate::new());
    let g = gate.clone();
    let (clock, mut stack, mut peer) = stack_and_peer(move |c| c.gate = Some(g));
    let until = clock.now() + 1_000_000_000;
    gate.refuse(std::net::IpAddr::V4(CLIENT), until);
    peer.send(&syn(44000, 1));
    let got = collect(&clock, &mut stack, &mut peer, ms(1));
    assert!(got.len() == 1 && got[0].has(RST | ACK) && got[0].ack == 2, "{got:?}");
    assert_eq!(counter(&stack, "conn_refused_throttled"), 1);
    assert_eq!(counter(&stack, "syn_received"), 0, "no cookie made");
    // Another source's wait does not refuse this one.
    gate.refuse(std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 77)), u64::MAX);
    while clock.now() < until {
        clock.advance(Duration::from_millis(100));
    }
    peer.send(&syn(44001, 1));
    let got = collect(&clock, &mut stack, &mut peer, ms(1));
    assert!(got.len() == 1 && got[0].has(SYN | ACK), "open again once the wait is over: {got:?}");
    assert_eq!(counter(&stack, "conn_refused_throttled"), 1);
}

/// A cookie the source earned before the gate closed on it opens nothing
/// after: its ACK gets a RST, and no connection is accepted.
#[test]
fn a_cookie_earned_before_the_gate_closed_opens_nothing_after() {
    let gate = std::sync::Arc::new(tailgate::transport::gate::Gate::new());
    let g = gate.clone();
    let (clock, mut stack, mut peer) = stack_and_peer(move |c| c.gate = Some(g));
    peer.send(&syn(44010, 1000));
    let sa = collect(&clock, &mut stack, &mut peer, ms(1)).into_iter().find(|s| s.has(SYN | ACK)).unwrap();
    gate.refuse(std::net::IpAddr::V4(CLIENT), clock.now() + 1_000_000_000);
    let ack = Seg {
        src_port: 44010,
        dst_port: PORT,
        seq: 1001,
        ack: sa.seq.wrapping_add(1),
        flags: ACK,
        window: 65535,
        ..Seg::default()
    };
    peer.send(&ack);
    let (got, ev) = run(&clock, &mut stack, &mut peer, ms(1));
    assert!(!ev.iter().any(|e| matches!(e, Event::Accepted(_))), "accepted at the gate: {ev:?}");
    assert!(got.iter().any(|s| s.has(RST)), "{got:?}");
    assert_eq!(counter(&stack, "conn_refused_throttled"), 1);
}
