//! Loss recovery below smoltcp (src/stack/recovery), in process and in
//! virtual time: retransmission at the time scale of the link, backoff,
//! SACK, delayed ACKs, holes, random loss both ways, bounded memory.

use std::time::Duration;

use tailgate::stack::frame::tcp_flags::{ACK, PSH};
use tailgate::stack::recovery::{DELAYED_ACK_NS, MAX_SLOTS_PER_FLOW};
use tailgate::stack::sim::{Fate, MemLink, Seg};
use tailgate::stack::Stack;
use tailgate::transport::{Event, Transport};

mod mem;
use mem::*;

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

/// One step of a scripted peer's server: poll, echo what each connection
/// reads, flush, advance the clock a step. The last connection that had
/// news, if any.
fn echo_step(
    clock: &tailgate::stack::sim::Clock,
    stack: &mut Stack<MemLink>,
    ev: &mut Vec<Event>,
) -> Option<tailgate::transport::ConnId> {
    let now = stack.poll(Some(Duration::ZERO), ev).unwrap();
    let mut conn = None;
    for e in ev.drain(..) {
        if let Event::Accepted(id) | Event::Readable(id) = e {
            conn = Some(id);
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stack.recv(id, &mut buf) {
                stack.send(id, &buf[..n]).unwrap();
            }
        }
    }
    stack.flush(now);
    clock.advance(STEP);
    conn
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
    // The ACK reports the sampler reads: which rounds' ACKs waited for a
    // retransmission, and which found it spurious.
    stack.set_tracing(true);
    let (mut acks, mut retx_rounds, mut spurious_rounds) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..70u8 {
        let req = vec![round; 16];
        peer.send(&Seg { flags: ACK | PSH, payload: req.clone(), ..ack(snd_nxt, rcv_nxt, vec![]) });
        snd_nxt += 16;
        let (mut copies, mut ack_due, mut echoed) = (0, None, Vec::new());
        let end = clock.now() + 20_000_000;
        while clock.now() < end {
            conn = echo_step(&clock, &mut stack, &mut ev).or(conn);
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
            if let Some(id) = conn {
                stack.watch_acks(id, true);
                stack.acks(&mut acks);
                for a in acks.drain(..) {
                    if a.retransmitted {
                        retx_rounds.push(round);
                    }
                    if a.spurious > 0 {
                        spurious_rounds.push(round);
                    }
                }
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
    // The reply's ACK said both: it waited for a copy, and the copy was
    // not needed (the D-SACK came with it), so the client did not wait.
    assert_eq!((retx_rounds, spurious_rounds), (vec![50], vec![50]));
    let est = stack.estimate(conn.unwrap()).unwrap();
    assert!(est.hold_ns >= 39_000_000, "{est:?}");
}

#[test]
fn a_copy_found_spurious_after_its_ack_is_reported_on_its_own() {
    // The peer holds its ACK past our timer; the copy crosses its ACK, and
    // its D-SACK for the copy comes 1 ms after: the ACK report says the
    // reply waited for a retransmission, and a report of its own (no new
    // bytes) says the copy was spurious.
    let (clock, mut stack, mut peer) = stack_and_peer(|_| {});
    stack.set_tracing(true);
    let port = 41002;
    let (snd_nxt, mut rcv_nxt) = scripted_handshake(&clock, &mut stack, &mut peer, port);
    let ack = |ack: u32, sack: Vec<(u32, u32)>| Seg {
        src_port: port,
        dst_port: PORT,
        seq: snd_nxt + 16,
        ack,
        flags: ACK,
        window: 65535,
        sack,
        ..Seg::default()
    };
    peer.send(&Seg { flags: ACK | PSH, payload: vec![7; 16], seq: snd_nxt, ..ack(rcv_nxt, vec![]) });
    let (mut ev, mut acks, mut reports) = (Vec::new(), Vec::new(), Vec::new());
    let (mut conn, mut dsack_due, mut copies) = (None, None, 0);
    let end = clock.now() + 2_000_000_000;
    while clock.now() < end && reports.len() < 2 {
        if let Some(id) = echo_step(&clock, &mut stack, &mut ev) {
            conn = Some(id);
            stack.watch_acks(id, true);
        }
        for s in peer.recv() {
            if s.payload.is_empty() {
                continue;
            }
            if s.seq == rcv_nxt {
                rcv_nxt += s.len(); // the original: its ACK held
            } else {
                copies += 1;
                peer.send(&ack(rcv_nxt, vec![]));
                dsack_due = Some((clock.now() + 1_000_000, (s.seq, s.seq + s.len())));
            }
        }
        if let Some((_, block)) = dsack_due.filter(|d| clock.now() >= d.0) {
            peer.send(&ack(rcv_nxt, vec![block]));
            dsack_due = None;
        }
        if conn.is_some() {
            stack.acks(&mut acks);
            reports.extend(acks.drain(..).map(|a| (a.acked, a.retransmitted, a.spurious)));
        }
    }
    assert_eq!(copies, 1);
    assert_eq!(reports, vec![(16, true, 0), (16, false, 1)]);
    assert_eq!(counter(&stack, "retx_spurious"), 1);
}

#[test]
fn one_poll_takes_a_large_batch_off_the_link() {
    // Past capacity the loop must give frames back to the fill ring faster
    // than they come: one poll takes up to 1024 frames, not a few dozen.
    let (clock, mut stack, mut peer) = stack_and_peer(|_| {});
    let port = 41003;
    let (snd_nxt, rcv_nxt) = scripted_handshake(&clock, &mut stack, &mut peer, port);
    let before = counter(&stack, "rx_frames");
    let ack =
        Seg { src_port: port, dst_port: PORT, seq: snd_nxt, ack: rcv_nxt, flags: ACK, window: 65535, ..Seg::default() };
    for _ in 0..1000 {
        peer.send(&ack);
    }
    clock.advance(ms(1)); // the link's delay
    let mut ev = Vec::new();
    stack.poll(Some(Duration::ZERO), &mut ev).unwrap();
    let taken = counter(&stack, "rx_frames") - before;
    assert!(taken >= 1000, "one poll took {taken} frames");
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

/// Times (ns) at which the peer of `l` received a segment carrying
/// `payload`, over `d` of virtual time taken `step` at a time.
fn sends_of(l: &mut Live, payload: &[u8], d: Duration, step: Duration) -> Vec<u64> {
    let end = l.clock.now() + d.as_nanos() as u64;
    let mut at = Vec::new();
    while l.clock.now() < end {
        let mut ev = Vec::new();
        let now = l.stack.poll(Some(Duration::ZERO), &mut ev).unwrap();
        l.stack.flush(now);
        let t = l.clock.now();
        at.extend(l.peer.recv().iter().filter(|s| s.payload == payload).map(|_| t));
        l.clock.advance(step);
    }
    at
}

/// RFC 6298 5.5: with every ACK withheld, one retransmission schedule that
/// doubles (1x, 2x, 4x, 8x, 16x), not ours with smoltcp's 1 s RTO firing
/// in between (it used to: 201, 401, then 401 ms again).
#[test]
fn a_connection_whose_acks_are_all_lost_backs_off_by_doubling() {
    let mut l = Live::new();
    l.data(b"order");
    assert_eq!(l.stack.send(l.id, b"fill").unwrap(), 4);
    let at = sends_of(&mut l, b"fill", Duration::from_secs(7), ms(1) / 4);
    let g: Vec<u64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(g.len() >= 5, "{g:?}");
    for (k, gap) in g.iter().enumerate().take(5) {
        let want = g[0] << k;
        assert!(gap.abs_diff(want) <= 1_000_000, "gap {k}: {gap} ns, not {want} (gaps {g:?})");
    }
    assert_eq!(counter(&l.stack, "retx_rto"), 0, "smoltcp sent a copy of its own");
    assert!(counter(&l.stack, "retx_rto_withheld") > 0, "smoltcp's RTO never fired in 7 s");
    assert_eq!(counter(&l.stack, "retx_timer"), g.len() as u64);
}

/// With no TX frame free, a retransmission due waits for one, and is not
/// counted as sent meanwhile: it goes at the first poll with room, and the
/// next one waits one doubling more (not two, not more).
#[test]
fn a_retransmission_with_no_tx_frame_waits_for_one_without_backing_off() {
    let mut l = Live::new();
    l.data(b"order");
    assert_eq!(l.stack.send(l.id, b"fill").unwrap(), 4);
    let t0 = l.clock.now();
    let step = ms(1) / 4;
    assert_eq!(sends_of(&mut l, b"fill", ms(150), step).len(), 1, "the original");
    let blocked = l.stack.link().tx_blocked.clone();
    blocked.set(true);
    assert!(sends_of(&mut l, b"fill", ms(200), step).is_empty());
    assert_eq!(counter(&l.stack, "retx_timer"), 0, "counted while the link had no room");
    blocked.set(false);
    let unblocked = l.clock.now();
    let at = sends_of(&mut l, b"fill", ms(1000), step);
    assert!(at.len() >= 2, "{at:?}");
    assert!(at[0] - unblocked <= step.as_nanos() as u64, "waited {} ns for room", at[0] - unblocked);
    let base = l.stack.estimate(l.id).unwrap().timeout_ns;
    assert!(base < unblocked - t0, "the first was due while blocked");
    let gap = at[1] - at[0];
    assert!(gap.abs_diff(2 * base) <= 1_000_000, "next after {gap} ns, not 2 x {base}");
}

/// A reply queued while the link has no TX frame goes out at the first poll
/// with room, not when an idle loop's timer round comes to its shard.
#[test]
fn a_reply_sent_with_no_tx_frame_goes_as_soon_as_there_is_one() {
    let mut l = Live::new();
    l.data(b"order");
    let blocked = l.stack.link().tx_blocked.clone();
    blocked.set(true);
    assert_eq!(l.stack.send(l.id, b"fill").unwrap(), 4);
    let step = Duration::from_micros(10);
    assert!(sends_of(&mut l, b"fill", ms(1), step).is_empty());
    blocked.set(false);
    let unblocked = l.clock.now();
    let at = sends_of(&mut l, b"fill", ms(20), step);
    assert!(!at.is_empty(), "never sent");
    assert!(at[0] - unblocked <= 2 * step.as_nanos() as u64, "sent {} ns after room came", at[0] - unblocked);
}

/// A peer may drop data it has selectively acknowledged (RFC 2018 lets it;
/// Linux does under memory pressure): when every copy left is SACKed and a
/// timeout later still unacknowledged, they go again, with the SACK marks
/// forgotten, instead of waiting for an ACK that never comes.
#[test]
fn sacked_data_the_peer_never_acknowledges_goes_again() {
    let mut l = Live::new();
    l.data(b"order");
    assert_eq!(l.stack.send(l.id, b"fill").unwrap(), 4);
    let t0 = l.clock.now();
    assert_eq!(sends_of(&mut l, b"fill", ms(1), ms(1) / 4).len(), 1);
    // The peer SACKs the reply and never ACKs it.
    let sack = Seg { sack: vec![(l.rcv, l.rcv.wrapping_add(4))], ..l.seg(ACK, l.seq, b"") };
    l.peer.send(&sack);
    let at = sends_of(&mut l, b"fill", Duration::from_secs(3), ms(1) / 4);
    assert!(!at.is_empty(), "the SACKed reply never went again: the connection would stall");
    assert!(at[0] - t0 < 500_000_000, "{} ms", (at[0] - t0) / 1_000_000);
    assert_eq!(counter(&l.stack, "retx_reneged"), 1);
    // Once the peer has it, all is well.
    l.rcv = l.rcv.wrapping_add(4);
    l.exchange(&l.seg(ACK, l.seq, b""));
    l.data(b"next");
}
