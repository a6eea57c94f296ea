//! Accounts and risk end to end in memory (clients, the gateway, the
//! exchange simulator, a virtual clock; the logon verifier is a real
//! thread): authenticated logons and their refusals, the kill switch, the
//! checks, credit across an order's life, and cancel on disconnect.

mod world;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tailgate::app::orders::OrdersConfig;
use tailgate::proto::{msg_type, ClientMsg, Code8, GatewayMsg, LogoutReason, OrderKind, Password, RejectReason, Side};
use tailgate::risk::accounts::{Account, Accounts};
use tailgate::risk::auth::{self, Verifier};
use tailgate::risk::cidr::Cidr;
use tailgate::risk::config::RiskConfig;
use tailgate::risk::limits::{LimitsSpec, Specs};
use tailgate::risk::Risk;
use world::{order, World};

/// A cheap argon2id hash (the cost is in the string; tests need no more).
fn hash(pw: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(64, 1, 1, None).unwrap();
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    a.hash_password(pw.as_bytes(), &SaltString::encode_b64(b"risk-test-salt").unwrap()).unwrap().to_string()
}

fn account(name: &str, net: &str, cod: bool) -> Account {
    Account {
        name: Code8::new(name).unwrap(),
        hash: hash("s3cret"),
        sources: vec![Cidr::parse(net).unwrap()],
        max_sessions: 1,
        cancel_on_disconnect: cod,
    }
}

/// ALPHA and BETA may log on from the lab's network (BETA keeps its orders
/// when its session drops); FAR only from elsewhere. ALPHA's limits: `spec`.
fn world(spec: LimitsSpec, idle_ms: u32) -> (World, Arc<Risk>, Verifier) {
    let accounts = vec![
        account("ALPHA", "198.18.0.0/15", true),
        account("BETA", "198.18.0.0/15", false),
        account("FAR", "10.0.0.0/8", true),
    ];
    let cfg = RiskConfig {
        accounts: Accounts::new(accounts).unwrap(),
        specs: Specs { accounts: vec![spec, LimitsSpec::default(), LimitsSpec::default()], ..Specs::default() },
        ..RiskConfig::default()
    };
    let risk = Arc::new(Risk::new(cfg));
    let (v, mut ports) = auth::start(risk.clone(), 1, vec![], None).unwrap();
    let ocfg = OrdersConfig { idle_timeout_ms: idle_ms, ..OrdersConfig::default() };
    let mut w = World::with(&[], ocfg, Some((risk.clone(), ports.pop())));
    w.settle();
    (w, risk, v)
}

fn logon(w: &mut World, name: &str, pw: &str) -> (usize, Vec<GatewayMsg>) {
    let i = w.connect();
    w.send(i, ClientMsg::Logon { account: Code8::new(name).unwrap(), password: Password::new(pw).unwrap() });
    let got = w.answer(i);
    (i, got)
}

fn refused(got: &[GatewayMsg]) -> Option<RejectReason> {
    match got {
        [GatewayMsg::Reject { reason, ref_type: msg_type::LOGON, ref_seq: 1, .. }, GatewayMsg::Logout { reason: LogoutReason::Refused }] => {
            Some(*reason)
        }
        _ => None,
    }
}

#[test]
fn logons_are_verified_and_each_refusal_is_given_and_counted() {
    let (mut w, risk, v) = world(LimitsSpec::default(), 60_000);
    let (_, got) = logon(&mut w, "ALPHA", "wrong");
    assert_eq!(refused(&got), Some(RejectReason::NotAuthorized), "wrong password: {got:?}");
    let (_, got) = logon(&mut w, "NOBODY", "s3cret");
    assert_eq!(refused(&got), Some(RejectReason::NotAuthorized), "unknown account: {got:?}");
    let (_, got) = logon(&mut w, "FAR", "s3cret");
    assert_eq!(refused(&got), Some(RejectReason::NotAuthorized), "source not allowed: {got:?}");
    let c = &v.counters;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    assert_eq!((n(&c.bad_password), n(&c.unknown_account), n(&c.source_not_allowed)), (1, 1, 1));
    // A Logon without a password is refused on the loop, at once.
    let i = w.connect();
    w.send(i, ClientMsg::logon(Code8::new("ALPHA").unwrap()));
    let got = w.take(i);
    assert_eq!(refused(&got), Some(RejectReason::PasswordRequired), "{got:?}");
    // The right password: logged on; a second session of the account is refused.
    let (a, got) = logon(&mut w, "ALPHA", "s3cret");
    assert!(matches!(got[..], [GatewayMsg::LogonAck { .. }]), "{got:?}");
    let (_, got) = logon(&mut w, "ALPHA", "s3cret");
    assert_eq!(refused(&got), Some(RejectReason::TooManySessions), "{got:?}");
    assert_eq!(risk.accounts.state[0].sessions.load(Ordering::Relaxed), 1);
    // Orders before a Logon is answered are not taken; after it they are.
    w.send(a, order(1, Side::Buy, OrderKind::Limit, 10_000, 5));
    assert!(matches!(w.take(a)[..], [GatewayMsg::Ack { cl_ord_id: 1, .. }]));
    let gc = &w.gw.app.counters;
    assert_eq!(gc.rejects[RejectReason::NotAuthorized as usize], 3);
    assert_eq!(gc.rejects[RejectReason::PasswordRequired as usize], 1);
    assert_eq!(gc.rejects[RejectReason::TooManySessions as usize], 1);
    assert_eq!(gc.logons_refused, 5);
    // The refused sessions were closed; the account's session is given back when its own closes.
    w.send(a, ClientMsg::Logout);
    w.run(Duration::from_millis(20));
    assert_eq!(risk.accounts.state[0].sessions.load(Ordering::Relaxed), 0);
}

#[test]
fn the_kill_switch_cancels_working_orders_and_blocks_new_ones_until_enabled() {
    let (mut w, risk, _v) = world(LimitsSpec::default(), 60_000);
    let (a, _) = logon(&mut w, "ALPHA", "s3cret");
    let (b, _) = logon(&mut w, "BETA", "s3cret");
    w.send(a, order(1, Side::Buy, OrderKind::Limit, 9_000, 5));
    w.send(a, order(2, Side::Sell, OrderKind::Limit, 11_000, 5));
    w.send(b, order(3, Side::Buy, OrderKind::Limit, 9_000, 1));
    w.take(a);
    w.take(b);
    let canceled = w.ex.app.stats.canceled;
    risk.kill(Some(0), false);
    // One gateway iteration sends the cancels; the exchange takes them within a millisecond.
    let t0 = w.clock.now();
    while w.ex.app.stats.canceled < canceled + 2 && w.clock.now() - t0 < 10_000_000 {
        w.step();
    }
    assert_eq!(w.ex.app.stats.canceled, canceled + 2, "both of ALPHA's orders, and not BETA's, within 10 ms");
    w.run(Duration::from_millis(3));
    let got = w.take(a);
    assert!(
        matches!(got[..], [GatewayMsg::Canceled { reason: b'K', .. }, GatewayMsg::Canceled { reason: b'K', .. }]),
        "{got:?}"
    );
    assert!(w.take(b).is_empty(), "BETA is not killed");
    w.send(a, order(4, Side::Buy, OrderKind::Limit, 9_000, 1));
    assert!(matches!(w.take(a)[..], [GatewayMsg::Reject { cl_ord_id: 4, reason: RejectReason::Killed, .. }]));
    w.send(b, order(5, Side::Buy, OrderKind::Limit, 9_000, 1));
    assert!(matches!(w.take(b)[..], [GatewayMsg::Ack { cl_ord_id: 5, .. }]));
    assert_eq!(risk.accounts.state[0].gross(), 0, "the cancelled orders gave their credit back");
    risk.enable(Some(0));
    w.send(a, order(6, Side::Buy, OrderKind::Limit, 9_000, 1));
    assert!(matches!(w.take(a)[..], [GatewayMsg::Ack { cl_ord_id: 6, .. }]), "re-enabled");
    // Kill everything, with logout.
    risk.kill(None, true);
    w.run(Duration::from_millis(5));
    assert!(w.take(a).iter().any(|m| matches!(m, GatewayMsg::Logout { reason: LogoutReason::Killed })));
    assert!(w.take(b).iter().any(|m| matches!(m, GatewayMsg::Logout { reason: LogoutReason::Killed })));
    assert_eq!(w.gw.app.counters.kill_logouts, 2);
    w.run(Duration::from_millis(20));
    assert_eq!(w.gw.app.live_orders(), 0, "every working order was cancelled");
}

/// A kill lifted before a loop's next turn still cancels what it found
/// working: the loop sweeps for the kill's epoch, not for the flag.
#[test]
fn a_kill_enabled_again_before_the_loops_turn_still_cancels_the_working_orders() {
    let (mut w, risk, _v) = world(LimitsSpec::default(), 60_000);
    let (a, _) = logon(&mut w, "ALPHA", "s3cret");
    w.send(a, order(1, Side::Buy, OrderKind::Limit, 9_000, 5));
    w.take(a);
    let canceled = w.ex.app.stats.canceled;
    risk.kill(Some(0), false);
    risk.enable(Some(0));
    w.run(Duration::from_millis(5));
    assert_eq!(w.ex.app.stats.canceled, canceled + 1, "the kill's cancel went");
    assert!(matches!(w.take(a)[..], [GatewayMsg::Canceled { reason: b'K', .. }]));
    w.send(a, order(2, Side::Buy, OrderKind::Limit, 9_000, 1));
    assert!(matches!(w.take(a)[..], [GatewayMsg::Ack { cl_ord_id: 2, .. }]), "and the account trades again");
}

#[test]
fn checks_refuse_with_their_reason_and_credit_follows_the_order() {
    let spec = LimitsSpec { max_order_qty: Some(100), max_gross_open_notional: Some(100_000), ..LimitsSpec::default() };
    let (mut w, risk, _v) = world(spec, 60_000);
    let (a, _) = logon(&mut w, "ALPHA", "s3cret");
    w.send(a, order(1, Side::Buy, OrderKind::Limit, 1_000, 101));
    assert!(matches!(w.take(a)[..], [GatewayMsg::Reject { reason: RejectReason::MaxQuantity, .. }]));
    w.send(a, order(2, Side::Buy, OrderKind::Limit, 1_000, 60));
    w.send(a, order(3, Side::Buy, OrderKind::Limit, 1_000, 40));
    w.send(a, order(4, Side::Buy, OrderKind::Limit, 1_000, 1));
    let got = w.take(a);
    assert!(
        matches!(
            got[..],
            [
                GatewayMsg::Ack { cl_ord_id: 2, .. },
                GatewayMsg::Ack { cl_ord_id: 3, .. },
                GatewayMsg::Reject { cl_ord_id: 4, reason: RejectReason::CreditGross, .. }
            ]
        ),
        "{got:?}"
    );
    assert_eq!(risk.accounts.state[0].gross(), 100_000);
    // Bob sells 30 into order 2: its filled part leaves the open notional and moves the net.
    w.bob(b'S', 30, 1_000);
    assert!(matches!(w.take(a)[..], [GatewayMsg::Fill { cl_ord_id: 2, qty: 30, leaves: 30, .. }]));
    let st = &risk.accounts.state[0];
    assert_eq!((st.gross(), st.net.load(Ordering::Relaxed)), (70_000, 30_000));
    w.send(a, ClientMsg::Cancel { cl_ord_id: 3, client_ts: 1 });
    assert!(matches!(w.take(a)[..], [GatewayMsg::CancelAck { cl_ord_id: 3, .. }]));
    assert_eq!(st.gross(), 30_000, "a cancelled order gives its credit back");
    assert_eq!(st.orders.load(Ordering::Relaxed), 1);
}

#[test]
fn cancel_on_disconnect_follows_the_account_and_the_heartbeat_timeout() {
    let (mut w, risk, _v) = world(LimitsSpec::default(), 200);
    let (a, _) = logon(&mut w, "ALPHA", "s3cret");
    let (b, _) = logon(&mut w, "BETA", "s3cret");
    w.send(a, order(1, Side::Buy, OrderKind::Limit, 9_000, 5));
    w.send(b, order(2, Side::Buy, OrderKind::Limit, 9_000, 5));
    assert_eq!(w.gw.app.live_orders(), 2);
    // Both go silent: the gateway logs both out after the timeout, and
    // cancels only ALPHA's order (BETA's account keeps its orders).
    w.run(Duration::from_millis(400));
    assert!(w.take(a).iter().any(|m| matches!(m, GatewayMsg::Logout { reason: LogoutReason::IdleTimeout })));
    assert!(w.take(b).iter().any(|m| matches!(m, GatewayMsg::Logout { reason: LogoutReason::IdleTimeout })));
    assert_eq!(w.gw.app.counters.cancels_on_disconnect, 1);
    assert_eq!(w.gw.app.live_orders(), 1, "BETA's order is still working");
    // The kill switch reaches it though its session is gone.
    risk.kill(Some(1), false);
    w.run(Duration::from_millis(5));
    assert_eq!(w.gw.app.counters.kill_cancels, 1);
    assert_eq!(w.gw.app.live_orders(), 0, "the kill cancelled the order of the closed session");
    assert_eq!(risk.accounts.state[1].gross(), 0);
}

#[test]
fn messages_while_a_logon_is_verified_are_refused_and_take_nothing() {
    let (mut w, risk, _v) = world(LimitsSpec::default(), 60_000);
    let i = w.connect();
    // A Logon, a replayed Logon and an order in one write: the last two
    // are read while the first is with the verifier.
    let logon = ClientMsg::Logon { account: Code8::new("ALPHA").unwrap(), password: Password::new("s3cret").unwrap() };
    let mut bytes = Vec::new();
    for (seq, m) in [(1, logon), (2, logon), (3, order(1, Side::Buy, OrderKind::Limit, 9_000, 5))] {
        let mut b = [0u8; 64];
        let n = m.encode(seq, &mut b).unwrap();
        bytes.extend_from_slice(&b[..n]);
    }
    w.clients[i].seq = 4;
    let conn = w.clients[i].conn;
    use tailgate::transport::Transport;
    assert_eq!(w.net.send(conn, &bytes).unwrap(), bytes.len());
    let mut got = Vec::new();
    for _ in 0..10 {
        got.extend(w.answer(i));
        if got.iter().any(|m| matches!(m, GatewayMsg::LogonAck { .. })) {
            break;
        }
    }
    assert!(
        matches!(
            got[..],
            [
                GatewayMsg::Reject { reason: RejectReason::AlreadyLoggedOn, ref_seq: 2, .. },
                GatewayMsg::Reject { reason: RejectReason::NotLoggedOn, ref_seq: 3, .. },
                GatewayMsg::LogonAck { .. }
            ]
        ),
        "{got:?}"
    );
    assert_eq!(risk.accounts.state[0].sessions.load(Ordering::Relaxed), 1, "the replay took no second session");
    assert_eq!(w.gw.app.live_orders(), 0, "the early order reached no exchange");
    assert_eq!(risk.accounts.state[0].gross(), 0);
}
