//! A session whose input waits for its replies to have room (the client
//! sends and does not read): not idle while it waits, reset as a slow
//! reader if it waits for an idle timeout.

use super::tests::limit as order;
use super::*;
use crate::proto::{ClientMsg, Code8};

const MS: u64 = 1_000_000;

fn app() -> (Orders, Session) {
    let mut app = Orders::new(OrdersConfig { heartbeat_ms: 100, idle_timeout_ms: 300, ..Default::default() });
    let s = app.open(ConnId(0), 0);
    (app, s)
}

fn frame(m: ClientMsg, seq: u32) -> Vec<u8> {
    let mut b = [0u8; 64];
    let n = m.encode(seq, &mut b).unwrap();
    b[..n].to_vec()
}

fn input(app: &mut Orders, s: &mut Session, bytes: &[u8], out: &mut OutBuf, now: u64) -> (usize, Verdict) {
    app.on_input(s, bytes, out, &mut Tracer::disabled(), 11, now)
}

/// Logged on at 0.
fn logged_on() -> (Orders, Session) {
    let (mut app, mut s) = app();
    let logon = frame(ClientMsg::logon(Code8::new("T1").unwrap()), 1);
    let mut out = OutBuf::with_capacity(4096);
    assert_eq!(input(&mut app, &mut s, &logon, &mut out, 0), (logon.len(), Verdict::Continue));
    (app, s)
}

#[test]
fn input_held_for_room_is_not_idleness() {
    let (mut app, mut s) = logged_on();
    let full = || OutBuf::with_capacity(MAX_REPLY - 1);
    let o = frame(order(1), 2);
    // At 100 ms the order comes, and waits: no room for its Ack.
    assert_eq!(input(&mut app, &mut s, &o, &mut full(), 100 * MS), (0, Verdict::Continue));
    // At 350 ms nothing has been read for 350 ms, but the client has sent:
    // it is not idle.
    assert_eq!(app.on_tick(&mut s, &mut full(), 350 * MS), Verdict::Continue);
    assert_eq!(app.counters.idle_timeouts, 0);
    // Room at 360 ms: the order is read and acknowledged.
    let mut out = OutBuf::with_capacity(4096);
    assert_eq!(input(&mut app, &mut s, &o, &mut out, 360 * MS), (o.len(), Verdict::Continue));
    assert_eq!(app.counters.orders_acked, 1);
    // Idle from its last message on: 300 ms later, and not before.
    assert_eq!(app.on_tick(&mut s, &mut out, 600 * MS), Verdict::Continue);
    assert_eq!(app.on_tick(&mut s, &mut out, 660 * MS), Verdict::Close);
    assert_eq!((app.counters.idle_timeouts, app.counters.slow_client_aborts), (1, 0));
}

#[test]
fn input_held_for_an_idle_timeout_resets_the_slow_reader() {
    let (mut app, mut s) = logged_on();
    let o = frame(order(1), 2);
    let mut full = OutBuf::with_capacity(MAX_REPLY - 1);
    assert_eq!(input(&mut app, &mut s, &o, &mut full, 100 * MS), (0, Verdict::Continue));
    assert_eq!(app.on_tick(&mut s, &mut full, 399 * MS), Verdict::Continue);
    assert_eq!(app.on_tick(&mut s, &mut full, 400 * MS), Verdict::Abort);
    assert_eq!((app.counters.idle_timeouts, app.counters.slow_client_aborts), (0, 1));
}

#[test]
fn a_session_not_logged_on_gains_no_time_by_holding() {
    let (mut app, mut s) = app();
    // A heartbeat before any Logon, held: no room for its Reject.
    let hb = frame(ClientMsg::Heartbeat, 1);
    let mut full = OutBuf::with_capacity(MAX_REPLY - 1);
    assert_eq!(input(&mut app, &mut s, &hb, &mut full, 100 * MS), (0, Verdict::Continue));
    assert_eq!(app.on_tick(&mut s, &mut full, 300 * MS), Verdict::Close);
    assert_eq!((app.counters.idle_timeouts, app.counters.slow_client_aborts), (1, 0));
}

#[test]
fn a_client_that_reads_slowly_but_reads_is_not_reset() {
    let (mut app, mut s) = logged_on();
    // 3000 bytes owed, 1000 of room at each turn: three turns to drain.
    assert!(app.clients.get(0, s.gen).unwrap().outbox.put(&[0u8; 3000]));
    let o = frame(order(1), 2);
    let mut out = OutBuf::with_capacity(1000);
    assert_eq!(input(&mut app, &mut s, &o, &mut out, 100 * MS), (0, Verdict::Continue));
    // The client read 1000 bytes at 350 ms: held since then, not since 100.
    out.clear();
    assert_eq!(input(&mut app, &mut s, &o, &mut out, 350 * MS), (0, Verdict::Continue));
    assert_eq!(app.on_tick(&mut s, &mut out, 420 * MS), Verdict::Continue);
    out.clear();
    assert_eq!(input(&mut app, &mut s, &o, &mut out, 600 * MS), (0, Verdict::Continue));
    out.clear();
    assert_eq!(input(&mut app, &mut s, &o, &mut out, 650 * MS), (o.len(), Verdict::Continue));
    assert_eq!(app.on_tick(&mut s, &mut out, 700 * MS), Verdict::Continue);
    assert_eq!((app.counters.orders_acked, app.counters.idle_timeouts, app.counters.slow_client_aborts), (1, 0, 0));
}

#[test]
fn part_of_a_message_held_keeps_no_session_alive() {
    let (mut app, mut s) = logged_on();
    let o = frame(order(1), 2);
    let mut full = OutBuf::with_capacity(MAX_REPLY - 1);
    // Only the first half of a message: nothing to read, so nothing held.
    let part = &o[..o.len() / 2];
    assert_eq!(input(&mut app, &mut s, part, &mut full, 100 * MS), (0, Verdict::Continue));
    assert_eq!(app.on_tick(&mut s, &mut full, 300 * MS), Verdict::Close);
    assert_eq!((app.counters.idle_timeouts, app.counters.slow_client_aborts), (1, 0));
}
