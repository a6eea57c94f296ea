//! A FIX session's NewOrderSingle (D) and OrderCancelRequest (F), read into
//! the binary protocol's NewOrder and Cancel and put through the same
//! checks, risk and lifecycle (`session.rs`). A missing or malformed field
//! gets a session-level Reject naming it; a refusal by the checks or the
//! exchange an ExecutionReport (rejected) or an OrderCancelReject.

use super::client::FixCurrent;
use super::fix_book::FixOrder;
use super::fix_in::Refs;
use super::Orders;
use crate::app::OutBuf;
use crate::fix::{session_reject as sr, tag, value, Msg};
use crate::proto::{msg_type, Code8, NewOrder, OrderKind, Side};

impl Orders {
    /// NewOrderSingle.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fix_order(
        &mut self,
        conn: usize,
        gen: u64,
        m: &Msg<'_>,
        refs: Refs<'_>,
        out: &mut OutBuf,
        recv_ts: u64,
        now: u64,
    ) {
        for t in [tag::CL_ORD_ID, tag::SIDE, tag::SYMBOL, tag::TRANSACT_TIME, tag::ORDER_QTY, tag::ORD_TYPE] {
            if m.get(t).is_none() {
                return self.fix_missing(conn, gen, out, refs, t, now);
            }
        }
        let kind = match m.get(tag::ORD_TYPE) {
            Some(b"1") => OrderKind::Market,
            Some(b"2") => OrderKind::Limit,
            _ => {
                return self.fix_bad(
                    conn,
                    gen,
                    out,
                    refs,
                    tag::ORD_TYPE,
                    "OrdType must be 1 (market) or 2 (limit)",
                    now,
                )
            }
        };
        let price = match (kind, m.get(tag::PRICE)) {
            (OrderKind::Market, None) => 0,
            (OrderKind::Market, Some(_)) => {
                return self.fix_bad(conn, gen, out, refs, tag::PRICE, "a market order has no Price", now)
            }
            (OrderKind::Limit, None) => return self.fix_missing(conn, gen, out, refs, tag::PRICE, now),
            (OrderKind::Limit, Some(p)) => match value::decimal(p, 4) {
                Some(p) => p,
                None => {
                    let r = Refs { tag: tag::PRICE, text: "Price: a decimal with at most 4 places", ..refs };
                    return self.fix_reject(conn, gen, out, r, sr::INCORRECT_DATA_FORMAT, now);
                }
            },
        };
        let Some(common) = self.fix_common(conn, gen, m, refs, out, now) else { return };
        let Some(qty) = m.get(tag::ORDER_QTY).and_then(value::uint).filter(|&q| q <= u64::from(u32::MAX)) else {
            return self.fix_bad(conn, gen, out, refs, tag::ORDER_QTY, "OrderQty: a whole number of shares", now);
        };
        match m.get(tag::TIME_IN_FORCE) {
            None | Some(b"0") => {}
            Some(b"3") if kind == OrderKind::Market => {}
            Some(_) => {
                return self.fix_bad(
                    conn,
                    gen,
                    out,
                    refs,
                    tag::TIME_IN_FORCE,
                    "TimeInForce: 0 (day), or 3 for a market order",
                    now,
                )
            }
        }
        let o = NewOrder {
            cl_ord_id: common.cl_ord_id,
            client_ts: 0,
            price,
            qty: qty as u32,
            side: common.side,
            kind,
            symbol: common.symbol,
        };
        let order = FixOrder {
            symbol: common.symbol,
            buy: common.side == Side::Buy,
            market: kind == OrderKind::Market,
            qty: qty as u32,
            cum: 0,
            value: 0,
            order_id: 0,
            cancel_id: 0,
        };
        let Some(i) = self.clients.peek(conn, gen).and_then(|c| c.fix.id) else { return };
        let orders = &mut self.fix.ids[i].orders;
        let dup = orders.contains_key(o.cl_ord_id);
        let inserted = !dup && orders.insert(o.cl_ord_id, order);
        self.set_current(conn, gen, Some(FixCurrent { cl_ord_id: o.cl_ord_id, orig_id: 0, order, inserted }));
        // An order whose reports could not be written is not placed.
        let refused = if dup || inserted {
            self.place_order(conn, gen, &o, refs.seq, out, recv_ts, now)
        } else {
            Some(crate::proto::RejectReason::TooManyOpenOrders)
        };
        if let Some(reason) = refused {
            self.reject_ref(conn, gen, out, (o.cl_ord_id, 0, refs.seq, msg_type::NEW_ORDER), reason, recv_ts, now);
        }
        self.set_current(conn, gen, None);
    }

    /// OrderCancelRequest: the order named by OrigClOrdID (41).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fix_cancel(
        &mut self,
        conn: usize,
        gen: u64,
        m: &Msg<'_>,
        refs: Refs<'_>,
        out: &mut OutBuf,
        recv_ts: u64,
        now: u64,
    ) {
        for t in [tag::ORIG_CL_ORD_ID, tag::CL_ORD_ID, tag::SIDE, tag::SYMBOL, tag::TRANSACT_TIME] {
            if m.get(t).is_none() {
                return self.fix_missing(conn, gen, out, refs, t, now);
            }
        }
        let Some(orig) = m.get(tag::ORIG_CL_ORD_ID).and_then(value::pack_id) else {
            return self.fix_bad(conn, gen, out, refs, tag::ORIG_CL_ORD_ID, CL_ORD_ID_RULE, now);
        };
        let Some(common) = self.fix_common(conn, gen, m, refs, out, now) else { return };
        let Some(i) = self.clients.peek(conn, gen).and_then(|c| c.fix.id) else { return };
        let qty = m.get(tag::ORDER_QTY).and_then(value::uint).unwrap_or(0).min(u64::from(u32::MAX)) as u32;
        let fallback = FixOrder {
            symbol: common.symbol,
            buy: common.side == Side::Buy,
            market: false,
            qty,
            cum: 0,
            value: 0,
            order_id: 0,
            cancel_id: 0,
        };
        let (order, before) = match self.fix.ids[i].orders.get_mut(orig) {
            Some(o) => (*o, Some(std::mem::replace(&mut o.cancel_id, common.cl_ord_id))),
            None => (fallback, None),
        };
        let cur = FixCurrent { cl_ord_id: common.cl_ord_id, orig_id: orig, order, inserted: false };
        self.set_current(conn, gen, Some(cur));
        let refused = self.cancel_order(conn, gen, orig, 0, refs.seq, out, recv_ts, now);
        if let Some(reason) = refused {
            // The cancel on its way (if any) keeps its ClOrdID.
            if let (Some(prev), Some(o)) = (before, self.fix.ids[i].orders.get_mut(orig)) {
                o.cancel_id = prev;
            }
            self.reject_ref(conn, gen, out, (orig, 0, refs.seq, msg_type::CANCEL), reason, recv_ts, now);
        }
        self.set_current(conn, gen, None);
    }

    fn set_current(&mut self, conn: usize, gen: u64, cur: Option<FixCurrent>) {
        if let Some(c) = self.clients.get(conn, gen) {
            c.fix.current = cur;
        }
    }

    /// ClOrdID, Side, Symbol and Account (if given), which D and F share.
    fn fix_common(
        &mut self,
        conn: usize,
        gen: u64,
        m: &Msg<'_>,
        refs: Refs<'_>,
        out: &mut OutBuf,
        now: u64,
    ) -> Option<Common> {
        let Some(cl_ord_id) = m.get(tag::CL_ORD_ID).and_then(value::pack_id) else {
            self.fix_bad(conn, gen, out, refs, tag::CL_ORD_ID, CL_ORD_ID_RULE, now);
            return None;
        };
        let side = match m.get(tag::SIDE) {
            Some(b"1") => Side::Buy,
            Some(b"2") => Side::Sell,
            _ => {
                self.fix_bad(conn, gen, out, refs, tag::SIDE, "Side must be 1 (buy) or 2 (sell)", now);
                return None;
            }
        };
        let symbol = m
            .get(tag::SYMBOL)
            .filter(|s| s.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(Code8::new);
        let Some(symbol) = symbol else {
            self.fix_bad(conn, gen, out, refs, tag::SYMBOL, "Symbol: 1-8 upper-case letters or digits", now);
            return None;
        };
        if let Some(a) = m.get(tag::ACCOUNT) {
            let name = self.clients.peek(conn, gen).map(|c| c.name);
            if name.is_none_or(|n| n.as_str().as_bytes() != a) {
                self.fix_bad(conn, gen, out, refs, tag::ACCOUNT, "Account is not the logged-on account", now);
                return None;
            }
        }
        if m.get(tag::TRANSACT_TIME).is_some_and(|t| !value::is_timestamp(t)) {
            let r = Refs { tag: tag::TRANSACT_TIME, text: "TransactTime: a UTCTimestamp", ..refs };
            self.fix_reject(conn, gen, out, r, sr::INCORRECT_DATA_FORMAT, now);
            return None;
        }
        Some(Common { cl_ord_id, side, symbol })
    }

    /// Field `t` has a value this gateway does not take.
    #[allow(clippy::too_many_arguments)]
    fn fix_bad(
        &mut self,
        conn: usize,
        gen: u64,
        out: &mut OutBuf,
        refs: Refs<'_>,
        t: u32,
        text: &'static str,
        now: u64,
    ) {
        let r = Refs { tag: t, text, ..refs };
        self.fix_reject(conn, gen, out, r, sr::VALUE_INCORRECT, now);
    }
}

const CL_ORD_ID_RULE: &str = "ClOrdID: a number below 2^63 without a leading zero, or 1-8 printable characters";

struct Common {
    cl_ord_id: u64,
    side: Side,
    symbol: Code8,
}
