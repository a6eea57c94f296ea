//! The tracer: stage stamps in order, the split of busy time, held records and their ACKs, full pools and rings.

use super::*;
use crate::sampler::kind;

fn tracer(cfg: SamplingConfig, inject: InjectConfig) -> (Tracer, Consumer) {
    let (t, c) = Tracer::new(&cfg, inject, 1).unwrap();
    (t, c.unwrap())
}

fn one_message(t: &mut Tracer, iter: u64, conn: u32, arrival: u64) {
    let now = clock::mono_ns();
    t.begin_iteration(iter, now, true, 0);
    t.begin_input(conn, RxTrace { arrival_ns: arrival, flags: cause::RETRANSMIT });
    t.parsed(kind::LIMIT, 42 + iter, b"0123456789012345678901234567890123456789");
    t.handled(0);
    t.end_input(cause::TX_FULL, 0);
    let f0 = clock::mono_ns();
    t.end_iteration((f0, clock::mono_ns()), clock::mono_ns(), 0);
}

#[test]
fn a_message_gets_every_stage_in_order() {
    let (mut t, mut c) = tracer(SamplingConfig::default(), InjectConfig::default());
    let arrival = clock::mono_ns();
    one_message(&mut t, 7, 3, arrival);
    let s = c.pop().expect("recorded");
    assert_eq!((s.trace_id, s.loop_iter, s.conn, s.msg_type), (49, 7, 3, kind::LIMIT));
    assert_eq!(usize::from(s.core), rustix::thread::sched_getcpu().min(255));
    assert_eq!(s.t_rx_frame, arrival);
    let ts = [s.t_rx_frame, s.t_delivered, s.t_parsed, s.t_handled, s.t_tx_queued, s.t_tx_done];
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
    assert_eq!(u32::from(s.cause) & (cause::RETRANSMIT | cause::TX_FULL), cause::RETRANSMIT | cause::TX_FULL);
    assert_eq!((s.payload_len, &s.payload[..4]), (24, &b"0123"[..]));
    assert_eq!(t.stats().recorded, 1);
}

#[test]
fn off_records_nothing_and_reads_no_clock_for_messages() {
    let cfg = SamplingConfig { enabled: false, ..SamplingConfig::default() };
    let (mut t, c) = Tracer::new(&cfg, InjectConfig::default(), 0).unwrap();
    assert!(c.is_none());
    one_message(&mut t, 1, 1, 1);
    assert!(!t.has_pending());
    assert_eq!(t.stats().messages, 0);
    assert_eq!(t.clock_reads, 0, "sampling off read the clock");
    // The same message with sampling on reads it (the count can fail).
    let (mut on, _c) = tracer(SamplingConfig::default(), InjectConfig::default());
    one_message(&mut on, 1, 1, 1);
    assert!(on.clock_reads >= 3, "{}", on.clock_reads);
}

#[test]
fn previous_iteration_busy_time_and_handler_time_are_split() {
    let inject = InjectConfig { slow_handler: Some((1, 300_000)), ..Default::default() };
    let (mut t, mut c) = tracer(SamplingConfig::default(), inject);
    one_message(&mut t, 1, 1, 0);
    one_message(&mut t, 2, 1, 0);
    let _first = c.pop().unwrap();
    let second = c.pop().unwrap();
    // The first iteration spent >= 300 us in its (slow) handler, and
    // that is not counted as unexplained loop time.
    assert!(second.prev_handler_ns >= 300_000, "{second:?}");
    assert!(second.prev_busy_ns < 300_000, "{second:?}");
    assert_eq!(second.prev_msgs, 1);
    assert!(second.t_handled - second.t_parsed >= 300_000);
    // The injector marks the messages it slowed.
    assert_ne!(u32::from(second.cause) & cause::INJECTED, 0, "{second:?}");
}

#[test]
fn an_injected_stall_is_unexplained_busy_time() {
    let inject = InjectConfig { stall: Some((1_000, 400_000)), ..Default::default() };
    let (mut t, mut c) = tracer(SamplingConfig::default(), inject);
    // The first iteration arms the stall timer; the second stalls.
    one_message(&mut t, 1, 1, 0);
    std::thread::sleep(std::time::Duration::from_millis(1));
    one_message(&mut t, 2, 1, 0);
    one_message(&mut t, 3, 1, 0);
    let s: Vec<Sample> = std::iter::from_fn(|| c.pop()).collect();
    assert_eq!(s.len(), 3);
    assert!(s[2].prev_busy_ns >= 400_000, "{:?}", s[2]);
    assert!(s[1].prev_busy_ns < 400_000, "{:?}", s[1]);
    assert!(s[2].prev_handler_ns < 400_000);
    // Only the message delivered after the stall is marked as touched.
    let marked: Vec<bool> = s.iter().map(|x| u32::from(x.cause) & cause::INJECTED != 0).collect();
    assert_eq!(marked, vec![false, false, true]);
}

#[test]
fn a_stall_inside_known_work_is_still_unexplained() {
    let (mut t, mut c) = tracer(SamplingConfig::default(), InjectConfig::default());
    one_message(&mut t, 1, 1, 0);
    // Iteration 2: one message, then a flush that took 3 ms (the vCPU
    // was preempted inside it).
    let now = clock::mono_ns();
    t.begin_iteration(2, now, true, 0);
    t.begin_input(1, RxTrace::default());
    t.parsed(kind::LIMIT, 1, b"x");
    t.handled(0);
    t.end_input(0, 0);
    let f0 = t.flush_start();
    std::thread::sleep(std::time::Duration::from_millis(3));
    let f1 = t.now();
    t.end_iteration((f0, f1), f1, 0);
    one_message(&mut t, 3, 1, 0);
    let s: Vec<Sample> = std::iter::from_fn(|| c.pop()).collect();
    // 3 ms of flush, of which 2 x 20 us are excused as work.
    assert!(s[2].prev_busy_ns >= 2_900_000, "{:?}", s[2]);
    assert!(s[1].prev_busy_ns < 1_000_000, "{:?}", s[1]);
}

/// One message on `conn` whose reply ends at `end` in the connection's
/// output.
fn replied(t: &mut Tracer, iter: u64, conn: u32, end: u64) {
    let now = clock::mono_ns();
    t.begin_iteration(iter, now, true, 0);
    t.begin_input(conn, RxTrace { arrival_ns: now, flags: 0 });
    t.parsed(kind::LIMIT, iter, b"x");
    t.handled(0);
    t.end_input(0, end);
    let f = clock::mono_ns();
    t.end_iteration((f, f), f, 0);
}

fn watches(t: &mut Tracer) -> Vec<(u32, bool)> {
    let mut v = Vec::new();
    t.take_watch_requests(|c, on| v.push((c, on)));
    v
}

fn ack(conn: u32, acked: u64, at_ns: u64, retransmitted: bool) -> AckEvent {
    AckEvent { conn: crate::transport::ConnId(conn as usize), acked, at_ns, retransmitted, spurious: 0 }
}

fn spurious(conn: u32, acked: u64, at_ns: u64, retransmitted: bool) -> AckEvent {
    AckEvent { spurious: 1, ..ack(conn, acked, at_ns, retransmitted) }
}

fn flags(s: &Sample) -> u32 {
    u32::from(s.cause) & (cause::REPLY_RETX | cause::REPLY_SPURIOUS)
}

#[test]
fn a_reply_is_held_until_the_ack_that_covers_its_last_byte() {
    let (mut t, mut c) = tracer(SamplingConfig::default(), InjectConfig::default());
    t.set_ack_tracking(true);
    replied(&mut t, 1, 5, 100);
    replied(&mut t, 2, 5, 250);
    // No reply: recorded at once, never held.
    replied(&mut t, 3, 5, 0);
    assert_eq!(c.pop().map(|s| s.trace_id), Some(3));
    assert!(c.pop().is_none(), "held records were pushed");
    assert_eq!(watches(&mut t), vec![(5, true)]);
    assert_eq!(t.stats().ack_held, 2);
    // An ACK of 99 bytes covers neither; 100 covers the first.
    let at = clock::mono_ns();
    t.on_acks(&[ack(5, 99, at, false)]);
    assert!(c.pop().is_none());
    t.on_acks(&[ack(5, 100, at + 1, false)]);
    let s = c.pop().expect("acked record");
    assert_eq!((s.trace_id, s.t_acked, u32::from(s.cause) & cause::REPLY_RETX), (1, at + 1, 0));
    assert!(s.ack_ns() > 0 && s.ack_ns() == s.t_acked - s.t_tx_done);
    // Another connection's ACK completes nothing here.
    t.on_acks(&[ack(6, 1_000, at + 2, true)]);
    assert!(c.pop().is_none());
    // The second waited for a retransmission: it awaits the verdict on
    // it, its connection still watched, and goes when the transport says
    // the retransmission was spurious (a D-SACK after the ACK).
    t.on_acks(&[ack(5, 400, at + 3, true)]);
    assert!(c.pop().is_none(), "a retransmitted reply went before its verdict");
    assert_eq!(watches(&mut t), vec![]);
    t.on_acks(&[spurious(5, 400, at + 4, false)]);
    let s = c.pop().expect("acked record");
    assert_eq!((s.trace_id, s.t_acked, flags(&s)), (2, at + 3, cause::REPLY_RETX | cause::REPLY_SPURIOUS));
    assert_eq!(watches(&mut t), vec![(5, false)]);
    let st = t.stats();
    assert_eq!((st.acked, st.ack_held, st.ack_late, st.spurious), (1, 0, 0, 1));
}

#[test]
fn a_retransmitted_reply_without_word_of_a_spurious_copy_goes_as_retransmitted() {
    let (mut t, mut c) = tracer(SamplingConfig::default(), InjectConfig::default());
    t.set_ack_tracking(true);
    replied(&mut t, 1, 7, 100);
    replied(&mut t, 2, 8, 100);
    replied(&mut t, 3, 9, 100);
    assert_eq!(watches(&mut t), vec![(7, true), (8, true), (9, true)]);
    let now = clock::mono_ns();
    // 7: its ACK came long enough ago that the verdict's time is over.
    // 8: the D-SACK came with the ACK itself. 9: still within its time.
    t.on_acks(&[ack(7, 100, now - VERDICT_NS - 1, true), spurious(8, 100, now, true), ack(9, 100, now, true)]);
    let s = c.pop().expect("spurious with its ACK");
    assert_eq!((s.trace_id, flags(&s)), (2, cause::REPLY_RETX | cause::REPLY_SPURIOUS));
    assert!(c.pop().is_none());
    assert_eq!(watches(&mut t), vec![(8, false)]);
    // The next iteration records 7 as retransmitted; 9 waits on.
    replied(&mut t, 4, 10, 0);
    let got: Vec<(u64, u32)> = std::iter::from_fn(|| c.pop()).map(|s| (s.trace_id, flags(&s))).collect();
    assert_eq!(got, vec![(1, cause::REPLY_RETX), (4, 0)]);
    assert_eq!(watches(&mut t), vec![(7, false)]);
    // Word for another connection leaves 9 waiting; its close records it.
    t.on_acks(&[spurious(7, 100, now, false)]);
    assert!(c.pop().is_none());
    t.conn_closed(9);
    assert_eq!(c.pop().map(|s| (s.trace_id, flags(&s))), Some((3, cause::REPLY_RETX)));
    assert_eq!(watches(&mut t), vec![(9, false)]);
    assert_eq!(t.stats().spurious, 1);
}

#[test]
fn each_spurious_copy_clears_one_acks_records_the_oldest_first() {
    let (mut t, mut c) = tracer(SamplingConfig::default(), InjectConfig::default());
    t.set_ack_tracking(true);
    for (i, end) in [(1, 100), (2, 100), (3, 200), (4, 300)] {
        replied(&mut t, i, 5, end);
    }
    let now = clock::mono_ns();
    // Two ACKs after retransmissions: 1 and 2 (one ACK), then 3.
    t.on_acks(&[ack(5, 100, now, true), ack(5, 200, now + 1, true)]);
    assert!(c.pop().is_none());
    // One spurious copy, coming with the ACK of 4 (itself retransmitted):
    // it clears the oldest ACK's records, 1 and 2; 3 and 4 wait on.
    t.on_acks(&[spurious(5, 300, now + 2, true)]);
    let got: Vec<(u64, u32)> = std::iter::from_fn(|| c.pop()).map(|s| (s.trace_id, flags(&s))).collect();
    let both = cause::REPLY_RETX | cause::REPLY_SPURIOUS;
    assert_eq!(got, vec![(1, both), (2, both)]);
    // Two more copies: 3's, then 4's; a third finds nothing.
    t.on_acks(&[AckEvent { spurious: 3, ..ack(5, 300, now + 3, false) }]);
    let got: Vec<(u64, u32)> = std::iter::from_fn(|| c.pop()).map(|s| (s.trace_id, flags(&s))).collect();
    assert_eq!(got, vec![(3, both), (4, both)]);
    assert_eq!((t.stats().spurious, t.stats().acked), (4, 0));
    assert_eq!(watches(&mut t), vec![(5, true), (5, false)]);
}

#[test]
fn held_records_go_at_the_deadline_or_at_close_without_an_ack() {
    let (mut t, mut c) = tracer(SamplingConfig::default(), InjectConfig::default());
    t.set_ack_tracking(true);
    // Long enough that a busy machine's scheduling cannot expire the
    // records before the test means to (it once did at 2 ms).
    if let Some(h) = t.held.as_mut() {
        h.deadline = 200_000_000;
    }
    replied(&mut t, 1, 1, 10);
    replied(&mut t, 2, 2, 10);
    replied(&mut t, 3, 1, 20);
    // Connection 2 closes: its record goes, unacknowledged, unflagged.
    t.conn_closed(2);
    let s = c.pop().expect("closed connection's record");
    assert_eq!((s.trace_id, s.t_acked, u32::from(s.cause) & cause::ACK_LATE), (2, 0, 0));
    // Past the deadline, connection 1's two records go, flagged late,
    // oldest first, and its watch ends.
    std::thread::sleep(std::time::Duration::from_millis(210));
    replied(&mut t, 4, 3, 0);
    let got: Vec<(u64, bool)> =
        std::iter::from_fn(|| c.pop()).map(|s| (s.trace_id, u32::from(s.cause) & cause::ACK_LATE != 0)).collect();
    assert_eq!(got, vec![(1, true), (3, true), (4, false)]);
    assert_eq!(watches(&mut t), vec![(1, true), (2, true), (2, false), (1, false)]);
    assert_eq!((t.stats().ack_late, t.stats().ack_held), (2, 0));
    // A late ACK then finds nothing to complete.
    t.on_acks(&[ack(1, 100, clock::mono_ns(), false)]);
    assert!(c.pop().is_none());
}

#[test]
fn a_full_held_pool_records_at_once_and_counts() {
    let (mut t, mut c) = tracer(SamplingConfig { ring: 1 << 14, ..SamplingConfig::default() }, InjectConfig::default());
    t.set_ack_tracking(true);
    for i in 0..HELD_CAP as u64 + 3 {
        replied(&mut t, i, 1, 10 + i);
    }
    let st = t.stats();
    assert_eq!((st.ack_held, st.ack_untracked), (HELD_CAP as u64, 3));
    let got: Vec<u64> = std::iter::from_fn(|| c.pop()).map(|s| s.loop_iter).collect();
    assert_eq!(got, vec![HELD_CAP as u64, HELD_CAP as u64 + 1, HELD_CAP as u64 + 2]);
    // One ACK releases them all, in order, and the pool takes more.
    t.on_acks(&[ack(1, u64::MAX, clock::mono_ns(), false)]);
    assert_eq!(std::iter::from_fn(|| c.pop()).count(), HELD_CAP);
    replied(&mut t, 9_999, 1, 1);
    assert_eq!((t.stats().ack_held, t.stats().ack_untracked), (1, 3));
}

#[test]
fn a_full_ring_drops_and_counts() {
    let cfg = SamplingConfig { ring: 4, ..SamplingConfig::default() };
    let (mut t, _c) = tracer(cfg, InjectConfig::default());
    for i in 0..10 {
        one_message(&mut t, i, 1, 0);
    }
    let s = t.stats();
    assert_eq!((s.recorded, s.dropped_ring_full), (10, 6));
}
