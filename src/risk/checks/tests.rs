//! Each check at its edge: the order just inside passes, the one just
//! outside is refused with its reason, and nothing else is refused.

use super::*;
use crate::proto::Code8;
use crate::risk::limits::{LimitsSpec, Published, Specs};

const MS: u64 = 1_000_000;

fn order(side: Side, price: i64, qty: u32) -> NewOrder {
    NewOrder {
        cl_ord_id: 1,
        client_ts: 0,
        price,
        qty,
        side,
        kind: if price == 0 { OrderKind::Market } else { OrderKind::Limit },
        symbol: Code8::new("TGATE").unwrap(),
    }
}

fn sym(s: &str) -> u64 {
    u64::from_le_bytes(Code8::new(s).unwrap().0)
}

/// A snapshot of one account with `spec` (defaults empty), restricted `BAD`.
fn snap(spec: LimitsSpec) -> std::sync::Arc<Snapshot> {
    Published::new(Specs { defaults: LimitsSpec::default(), accounts: vec![spec], restricted: vec![sym("BAD")] }).load()
}

struct Case {
    snap: std::sync::Arc<Snapshot>,
    st: AccountState,
    refs: Refs,
    s: SessionRisk,
}

impl Case {
    fn new(spec: LimitsSpec) -> Case {
        Case {
            snap: snap(spec),
            st: AccountState::default(),
            refs: Refs::new(&[(sym("TGATE"), 10_000)], 16),
            s: SessionRisk::default(),
        }
    }
    fn go(&mut self, o: &NewOrder, now: u64) -> Result<Reserved, RejectReason> {
        check(&self.snap, Some((0, &self.st)), Kill { all: false }, &self.refs, &mut self.s, o, now)
    }
}

#[test]
fn with_no_limits_every_valid_order_passes() {
    let mut c = Case::new(LimitsSpec::default());
    for i in 0..100u64 {
        let o = order(Side::Buy, 10_000, 100);
        assert!(c.go(&o, 1 + i).is_ok());
    }
    assert_eq!(c.st.open_buy.load(Ordering::Relaxed), 100 * 1_000_000, "exposure is counted even with no limit");
}

#[test]
fn kill_switch_refuses_everything() {
    let mut c = Case::new(LimitsSpec::default());
    c.st.killed.store(true, Ordering::Relaxed);
    assert_eq!(c.go(&order(Side::Buy, 10_000, 1), 1), Err(RejectReason::Killed));
    c.st.killed.store(false, Ordering::Relaxed);
    assert!(c.go(&order(Side::Buy, 10_000, 1), 1).is_ok());
    let all = check(&c.snap, None, Kill { all: true }, &c.refs, &mut c.s, &order(Side::Buy, 10_000, 1), 2);
    assert_eq!(all, Err(RejectReason::Killed), "the gateway's kill covers sessions of no account");
}

#[test]
fn restricted_symbols_are_refused() {
    let mut c = Case::new(LimitsSpec::default());
    let mut o = order(Side::Sell, 10_000, 1);
    o.symbol = Code8::new("BAD").unwrap();
    assert_eq!(c.go(&o, 1), Err(RejectReason::RestrictedSymbol));
    o.symbol = Code8::new("BADX").unwrap();
    assert!(c.go(&o, 1).is_ok(), "only the symbol itself");
}

#[test]
fn market_orders_per_account() {
    let mut c = Case::new(LimitsSpec { market_orders: Some(false), ..LimitsSpec::default() });
    assert_eq!(c.go(&order(Side::Buy, 0, 1), 1), Err(RejectReason::MarketNotAllowed));
    assert!(c.go(&order(Side::Buy, 10_000, 1), 1).is_ok());
    let mut ok = Case::new(LimitsSpec::default());
    assert_eq!(ok.go(&order(Side::Buy, 0, 3), 1).map(|r| r.px), Ok(10_000), "counted at the reference");
}

#[test]
fn order_quantity_edge() {
    let mut c = Case::new(LimitsSpec { max_order_qty: Some(500), ..LimitsSpec::default() });
    assert!(c.go(&order(Side::Buy, 10_000, 500), 1).is_ok());
    assert_eq!(c.go(&order(Side::Buy, 10_000, 501), 2), Err(RejectReason::MaxQuantity));
}

#[test]
fn order_notional_edge() {
    let mut c = Case::new(LimitsSpec { max_order_notional: Some(1_000_000), ..LimitsSpec::default() });
    assert!(c.go(&order(Side::Buy, 10_000, 100), 1).is_ok());
    assert_eq!(c.go(&order(Side::Buy, 10_001, 100), 2), Err(RejectReason::MaxNotional));
    assert_eq!(c.go(&order(Side::Buy, 0, 101), 3), Err(RejectReason::MaxNotional), "a market order at its reference");
    let mut none = Case::new(LimitsSpec { max_order_notional: Some(1), ..LimitsSpec::default() });
    none.refs = Refs::new(&[], 4);
    assert_eq!(none.go(&order(Side::Buy, 0, 1), 1), Err(RejectReason::NoReferencePrice));
}

#[test]
fn price_collar_edge_both_sides() {
    // 5% of 10,000 = 500.
    let mut c = Case::new(LimitsSpec { price_collar_bps: Some(500), ..LimitsSpec::default() });
    assert!(c.go(&order(Side::Buy, 10_500, 1), 1).is_ok());
    assert!(c.go(&order(Side::Buy, 9_500, 1), 2).is_ok());
    assert_eq!(c.go(&order(Side::Buy, 10_501, 1), 3), Err(RejectReason::PriceCollar));
    assert_eq!(c.go(&order(Side::Sell, 9_499, 1), 4), Err(RejectReason::PriceCollar));
    c.refs.traded(sym("TGATE"), 20_000);
    assert!(c.go(&order(Side::Buy, 20_900, 1), 5).is_ok(), "the exchange's last trade is the reference");
    let mut o = order(Side::Buy, 1, 1);
    o.symbol = Code8::new("OTHER").unwrap();
    assert!(c.go(&o, 6).is_ok(), "no reference: no collar");
    let mut strict = Case::new(LimitsSpec { require_reference_price: Some(true), ..LimitsSpec::default() });
    assert_eq!(strict.go(&o, 1), Err(RejectReason::NoReferencePrice));
}

#[test]
fn gross_open_notional_edge_and_release() {
    let mut c = Case::new(LimitsSpec { max_gross_open_notional: Some(2_000_000), ..LimitsSpec::default() });
    let r = c.go(&order(Side::Buy, 10_000, 100), 1).unwrap();
    assert!(c.go(&order(Side::Sell, 10_000, 100), 2).is_ok(), "exactly at the limit");
    assert_eq!(c.go(&order(Side::Sell, 10_000, 1), 3), Err(RejectReason::CreditGross));
    c.st.release(true, r.notional);
    assert!(c.go(&order(Side::Sell, 10_000, 100), 4).is_ok(), "a done order frees its notional");
}

#[test]
fn net_position_edge() {
    let mut c = Case::new(LimitsSpec { max_net_notional: Some(1_000_000), ..LimitsSpec::default() });
    let r = c.go(&order(Side::Buy, 10_000, 100), 1).unwrap();
    c.st.fill(true, r.notional, r.notional);
    assert_eq!(c.go(&order(Side::Buy, 10_000, 1), 2), Err(RejectReason::CreditNet), "long at the limit");
    assert!(c.go(&order(Side::Sell, 10_000, 200), 3).is_ok(), "selling reduces it first");
    assert_eq!(c.go(&order(Side::Sell, 10_000, 1), 4), Err(RejectReason::CreditNet));
}

#[test]
fn session_rate_edge() {
    let mut c =
        Case::new(LimitsSpec { session_orders_per_sec: Some(100), session_burst: Some(5), ..LimitsSpec::default() });
    let t0 = 1_000 * MS;
    for i in 0..5 {
        assert!(c.go(&order(Side::Buy, 10_000, 1 + i), t0).is_ok(), "burst {i}");
    }
    assert_eq!(c.go(&order(Side::Buy, 10_000, 9), t0), Err(RejectReason::RateSession));
    assert!(c.go(&order(Side::Buy, 10_000, 9), t0 + 10 * MS).is_ok(), "one interval later");
    let mut other = SessionRisk::default();
    let o = order(Side::Buy, 10_000, 1);
    assert!(check(&c.snap, Some((0, &c.st)), Kill { all: false }, &c.refs, &mut other, &o, t0).is_ok(), "per session");
}

#[test]
fn account_rate_is_shared_by_its_sessions() {
    let c = Case::new(LimitsSpec { account_orders_per_sec: Some(10), account_burst: Some(2), ..LimitsSpec::default() });
    let (mut a, mut b) = (SessionRisk::default(), SessionRisk::default());
    let o = order(Side::Buy, 10_000, 1);
    let t = 5_000 * MS;
    let go = |s: &mut SessionRisk, now| check(&c.snap, Some((0, &c.st)), Kill { all: false }, &c.refs, s, &o, now);
    assert!(go(&mut a, t).is_ok());
    assert!(go(&mut b, t).is_ok());
    assert_eq!(go(&mut a, t), Err(RejectReason::RateAccount));
    assert_eq!(go(&mut b, t), Err(RejectReason::RateAccount));
    assert!(go(&mut b, t + 100 * MS).is_ok());
}

#[test]
fn duplicate_orders_within_the_window() {
    let mut c = Case::new(LimitsSpec { duplicate_window_ms: Some(100), ..LimitsSpec::default() });
    let o = order(Side::Buy, 10_000, 7);
    let t = 100 * MS;
    assert!(c.go(&o, t).is_ok());
    assert_eq!(c.go(&o, t + 99 * MS), Err(RejectReason::DuplicateOrder));
    assert!(c.go(&order(Side::Sell, 10_000, 7), t + MS).is_ok(), "other side");
    assert!(c.go(&order(Side::Buy, 10_001, 7), t + MS).is_ok(), "other price");
    assert!(c.go(&order(Side::Buy, 10_000, 8), t + MS).is_ok(), "other quantity");
    assert!(c.go(&o, t + 100 * MS).is_ok(), "after the window");
}

#[test]
fn a_refused_order_reserves_nothing() {
    let mut c = Case::new(LimitsSpec { max_order_qty: Some(1), ..LimitsSpec::default() });
    assert!(c.go(&order(Side::Buy, 10_000, 2), 1).is_err());
    assert_eq!(c.st.gross(), 0);
    let mut n = Case::new(LimitsSpec { max_net_notional: Some(5), ..LimitsSpec::default() });
    assert_eq!(n.go(&order(Side::Buy, 10_000, 1), 1), Err(RejectReason::CreditNet));
    assert_eq!(n.st.gross(), 0, "a net refusal gives the gross back");
}

#[test]
fn a_sell_priced_below_the_reference_is_counted_at_the_reference() {
    // Reference 10,000; no collar. A sell at 1 trades at the market, so it
    // counts 10,000 a share against the notional limit and the credit.
    let mut c = Case::new(LimitsSpec { max_order_notional: Some(10_000 * 100), ..LimitsSpec::default() });
    let r = c.go(&order(Side::Sell, 1, 100), 1).unwrap();
    assert_eq!((r.notional, r.px), (1_000_000, 10_000));
    assert_eq!(c.st.open_sell.load(Ordering::Relaxed), 1_000_000);
    assert_eq!(c.go(&order(Side::Sell, 1, 101), 2), Err(RejectReason::MaxNotional));
    // Above the reference, a sell counts at its own price; a buy always does.
    assert_eq!(c.go(&order(Side::Sell, 10_001, 99), 3).map(|r| r.px), Ok(10_001));
    assert_eq!(c.go(&order(Side::Buy, 1, 100), 4).map(|r| r.px), Ok(1));
}

#[test]
fn with_no_credit_limit_an_absurd_order_does_not_close_the_account() {
    let mut c = Case::new(LimitsSpec::default());
    let huge = NewOrder { symbol: Code8::new("NOREF").unwrap(), ..order(Side::Buy, i64::MAX, u32::MAX) };
    assert_eq!(c.go(&huge, 1).map(|r| r.notional), Ok(u64::MAX));
    assert!(c.go(&order(Side::Buy, 10_000, 1), 2).is_ok(), "the sums saturate, they do not refuse");
    assert!(c.go(&order(Side::Sell, 10_000, 1), 3).is_ok());
}
