//! The pre-trade checks of one order, on the loop: a few comparisons, a
//! probe of the loop's reference prices, and a few atomic updates of the
//! account's shared state (its order rate, its open notional, its counts).
//!
//! Order of the checks, first failure wins (each has its reject reason and
//! counter): kill switch, restricted symbol, market orders allowed, order
//! quantity, reference price and price collar, order notional, duplicate
//! order, the session's order rate, the account's order rate, credit
//! (gross open notional, then net position). The rate and credit checks
//! change shared state, so they come last; credit is reserved only when
//! every other check passed, and the caller releases it if the order then
//! cannot be sent ([`Reserved`]).

use std::sync::atomic::Ordering;

use super::accounts::{AccountState, Credit};
use super::limits::{Snapshot, NONE};
use crate::fixed_map::FixedMap;
use crate::proto::{NewOrder, OrderKind, RejectReason, Side};

/// Slots of a session's recent orders for the duplicate check.
pub const DUP_SLOTS: usize = 64;

#[derive(Debug, Clone, Copy, Default)]
struct Dup {
    symbol: u64,
    price: i64,
    qty: u32,
    side: u8,
    at: u64,
}

/// A session's own risk state: its order-rate cell and its recent orders.
#[derive(Debug, Clone)]
pub struct SessionRisk {
    tat: u64,
    dups: [Dup; DUP_SLOTS],
}

impl Default for SessionRisk {
    fn default() -> Self {
        SessionRisk { tat: 0, dups: [Dup::default(); DUP_SLOTS] }
    }
}

impl SessionRisk {
    pub fn reset(&mut self) {
        *self = SessionRisk::default();
    }

    fn slot(o: &NewOrder) -> usize {
        let h = o.symbol_code() ^ (o.price as u64).rotate_left(17) ^ u64::from(o.qty).rotate_left(41) ^ o.side as u64;
        (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % DUP_SLOTS
    }
}

/// Reference prices by symbol: the configured ones, then the exchange's
/// last execution price in each symbol (a loop's own view).
#[derive(Debug)]
pub struct Refs {
    prices: FixedMap<i64>,
}

impl Refs {
    /// Room for `cap` symbols, starting from `configured`.
    pub fn new(configured: &[(u64, i64)], cap: usize) -> Refs {
        let mut prices = FixedMap::with_capacity(cap.max(configured.len()));
        for &(s, p) in configured {
            prices.insert(s, p);
        }
        Refs { prices }
    }

    #[inline]
    pub fn get(&self, symbol: u64) -> Option<i64> {
        self.prices.get(symbol).copied()
    }

    /// The exchange traded `symbol` at `price`: the reference from now on
    /// (a new symbol is learned while there is room).
    pub fn traded(&mut self, symbol: u64, price: i64) {
        match self.prices.get_mut(symbol) {
            Some(p) => *p = price,
            None => {
                if self.prices.len() < self.prices.capacity() {
                    self.prices.insert(symbol, price);
                }
            }
        }
    }
}

/// What an accepted order holds of its account's credit: release
/// `notional` on its side when the order is done, or at once if it could
/// not be sent. `px` is the price its notional was counted at (a market
/// order's reference price).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reserved {
    pub notional: u64,
    pub px: i64,
}

/// The kill switch, as the loop sees it.
#[derive(Debug, Clone, Copy)]
pub struct Kill {
    pub all: bool,
}

/// Check `o` for a session of account `acct` (`None`: no accounts are
/// configured; the defaults apply and nothing is shared). `Ok`: it may go.
#[inline]
pub fn check(
    snap: &Snapshot,
    acct: Option<(usize, &AccountState)>,
    kill: Kill,
    refs: &Refs,
    s: &mut SessionRisk,
    o: &NewOrder,
    now: u64,
) -> Result<Reserved, RejectReason> {
    let l = snap.of(acct.map(|a| a.0));
    if kill.all || acct.is_some_and(|(_, st)| st.killed.load(Ordering::Relaxed)) {
        return Err(RejectReason::Killed);
    }
    let symbol = o.symbol_code();
    if snap.restricted(symbol) {
        return Err(RejectReason::RestrictedSymbol);
    }
    let market = o.kind == OrderKind::Market;
    if market && !l.market_orders {
        return Err(RejectReason::MarketNotAllowed);
    }
    if u64::from(o.qty) > l.max_qty {
        return Err(RejectReason::MaxQuantity);
    }
    let reference = refs.get(symbol);
    let notional_checked = l.max_notional != NONE || (acct.is_some() && (l.max_gross != NONE || l.max_net != NONE));
    let px = if market {
        match reference {
            Some(r) => r,
            None if notional_checked => return Err(RejectReason::NoReferencePrice),
            None => 0,
        }
    } else {
        match reference {
            Some(r) if l.collar_bps > 0 => {
                // |price - ref| <= ref x bps / 10,000, in 128 bits: no overflow.
                let off = (i128::from(o.price) - i128::from(r)).unsigned_abs() * 10_000;
                if off > r.unsigned_abs() as u128 * u128::from(l.collar_bps) {
                    return Err(RejectReason::PriceCollar);
                }
            }
            None if l.require_reference => return Err(RejectReason::NoReferencePrice),
            _ => {}
        }
        // A buy trades at its limit or below; a sell at its limit or above,
        // up to where the market is: a sell priced far below the reference
        // is counted at the reference, not at its own small limit.
        match (o.side, reference) {
            (Side::Sell, Some(r)) => o.price.max(r),
            _ => o.price,
        }
    };
    let notional = u64::try_from(i128::from(px) * i128::from(o.qty)).unwrap_or(u64::MAX);
    if notional > l.max_notional {
        return Err(RejectReason::MaxNotional);
    }
    let slot = SessionRisk::slot(o);
    if l.duplicate_window_ns > 0 {
        let d = &s.dups[slot];
        if d.at != 0
            && now.saturating_sub(d.at) < l.duplicate_window_ns
            && (d.symbol, d.price, d.qty, d.side) == (symbol, o.price, o.qty, o.side as u8)
        {
            return Err(RejectReason::DuplicateOrder);
        }
    }
    let tat = l.session_rate.admit(s.tat, now).ok_or(RejectReason::RateSession)?;
    let mut reserved = Reserved { notional: 0, px };
    if let Some((_, st)) = acct {
        let r = l.account_rate;
        if r.interval_ns > 0
            && st.rate_tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| r.admit(t, now)).is_err()
        {
            return Err(RejectReason::RateAccount);
        }
        st.reserve(o.side == Side::Buy, notional, l.max_gross, l.max_net).map_err(|c| match c {
            Credit::Gross => RejectReason::CreditGross,
            Credit::Net => RejectReason::CreditNet,
        })?;
        reserved.notional = notional;
    }
    s.tat = tat;
    if l.duplicate_window_ns > 0 {
        s.dups[slot] = Dup { symbol, price: o.price, qty: o.qty, side: o.side as u8, at: now.max(1) };
    }
    Ok(reserved)
}

#[cfg(test)]
mod tests;
