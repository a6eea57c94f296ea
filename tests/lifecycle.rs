//! The order lifecycle end to end in memory: clients, the gateway with its
//! upstream session, and the exchange simulator, each on its own stack, the
//! three joined by a hub on the sim link (virtual clock).

mod world;

use std::time::Duration;

use tailgate::proto::{ClientMsg, GatewayMsg, OrderKind, RejectReason, Side};
use tailgate::upstream::soup_client::State;
use world::{order, World};

#[test]
fn orders_go_to_the_exchange_and_its_reports_reach_each_client() {
    let mut w = World::new(&[]);
    w.settle();
    assert!(w.gw.app.upstream_up(), "the gateway's loop logged in to the exchange");
    let (a, b) = (w.client(), w.client());
    // A resting buy: acknowledged with the exchange's order reference.
    w.send(a, order(1, Side::Buy, OrderKind::Limit, 10_000, 10));
    assert!(matches!(w.take(a)[..], [GatewayMsg::Ack { cl_ord_id: 1, client_ts: 1001, order_id, .. }] if order_id > 0));
    // A market sell of 4 from the other session: both see their fills.
    w.send(b, order(7, Side::Sell, OrderKind::Market, 0, 4));
    match w.take(b)[..] {
        [GatewayMsg::Ack { cl_ord_id: 7, .. }, GatewayMsg::Fill { cl_ord_id: 7, price: 10_000, qty: 4, leaves: 0, exec_id, .. }] =>
        {
            assert!(exec_id > 0)
        }
        ref other => panic!("{other:?}"),
    }
    assert!(matches!(w.take(a)[..], [GatewayMsg::Fill { cl_ord_id: 1, client_ts: 1001, qty: 4, leaves: 6, .. }]));
    // A market order with nothing left to meet: its remainder is cancelled by the exchange.
    w.send(b, order(8, Side::Buy, OrderKind::Market, 0, 5));
    assert!(matches!(
        w.take(b)[..],
        [GatewayMsg::Ack { .. }, GatewayMsg::Canceled { cl_ord_id: 8, qty: 5, reason: b'I', .. }]
    ));
    // Cancel: CancelAck; a second cancel of the same order is unknown.
    w.send(a, ClientMsg::Cancel { cl_ord_id: 1, client_ts: 55 });
    assert!(matches!(w.take(a)[..], [GatewayMsg::CancelAck { cl_ord_id: 1, client_ts: 55, .. }]));
    w.send(a, ClientMsg::Cancel { cl_ord_id: 1, client_ts: 56 });
    assert!(matches!(w.take(a)[..], [GatewayMsg::Reject { reason: RejectReason::UnknownOrder, .. }]));
    // The exchange's own reject reaches the client with its reason (invalid quantity, 0x13).
    w.send(a, order(2, Side::Buy, OrderKind::Limit, 10_000, 2_000_000));
    assert!(matches!(
        w.take(a)[..],
        [GatewayMsg::Reject { cl_ord_id: 2, reason: RejectReason::ExchangeRejected, exchange_reason: 0x13, .. }]
    ));
    // A cancel that comes too late: the order is filled first.
    w.send(a, order(3, Side::Sell, OrderKind::Limit, 10_100, 3));
    w.take(a);
    w.send(b, order(9, Side::Buy, OrderKind::Limit, 10_100, 3));
    w.send(a, ClientMsg::Cancel { cl_ord_id: 3, client_ts: 77 });
    let got = w.take(a);
    assert!(
        matches!(got[..], [GatewayMsg::Fill { cl_ord_id: 3, leaves: 0, .. }, GatewayMsg::Reject { .. }]),
        "{got:?}"
    );
    let c = &w.gw.app.counters;
    assert_eq!((c.orders_sent, c.fills, c.cancels_acked, c.invalid_transitions), (6, 4, 1, 0));
    assert_eq!(w.gw.app.live_orders(), 0, "every order ended");
    // With nothing to do, the gateway's loop has no work queued, so it may
    // sleep (regression: the upstream connection once woke itself forever).
    w.run(Duration::from_millis(20));
    for _ in 0..5 {
        w.gw.run_once().unwrap();
        assert_eq!(w.gw.pending_work(), 0, "an idle loop has no work queued");
    }
}

#[test]
fn a_lost_session_comes_back_and_every_fill_reaches_its_client_once() {
    // The exchange resets the session that sends its 3rd order (bob's 1st is the 2nd).
    let mut w = World::new(&["drop:3"]);
    w.settle();
    let (a, b) = (w.client(), w.client());
    w.send(a, order(1, Side::Buy, OrderKind::Limit, 10_000, 10));
    assert!(matches!(w.take(a)[..], [GatewayMsg::Ack { .. }]));
    w.bob(b'S', 3, 10_000);
    assert!(matches!(w.take(a)[..], [GatewayMsg::Fill { qty: 3, leaves: 7, .. }]));
    // Client b's order is the 3rd: the exchange drops the gateway's session before it is entered.
    w.send(b, order(5, Side::Buy, OrderKind::Limit, 9_000, 1));
    assert!(!w.gw.app.upstream_up(), "the session was reset");
    // While the gateway is away, bob sells into a's order; a new order is refused at once.
    w.bob(b'S', 2, 10_000);
    w.send(b, order(6, Side::Buy, OrderKind::Limit, 9_000, 1));
    assert!(matches!(
        w.take(b)[..],
        [GatewayMsg::Reject { cl_ord_id: 6, reason: RejectReason::ExchangeUnavailable, .. }]
    ));
    // Back after the backoff: the replay brings the fill made meanwhile, once,
    // and the order lost with the session is entered again.
    w.run(Duration::from_millis(300));
    assert!(w.gw.app.upstream_up(), "logged in again");
    assert!(matches!(w.take(a)[..], [GatewayMsg::Fill { qty: 2, leaves: 5, .. }]), "the fill made while away, once");
    assert!(matches!(w.take(b)[..], [GatewayMsg::Ack { cl_ord_id: 5, .. }]), "the lost order entered again");
    let c = &w.gw.app.counters;
    assert_eq!((c.upstream_logins, c.fills, c.resent_after_login), (2, 2, 1));
    assert!(matches!(w.firm.client.state, State::Up { .. }));
    // Nothing more arrives for anyone.
    w.run(Duration::from_millis(50));
    assert!(w.take(a).is_empty() && w.take(b).is_empty());
}
