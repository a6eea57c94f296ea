//! The accounts: who may log on, from where, with how many sessions, and
//! the state every loop shares for each (sessions, exposure, order rate,
//! kill switch), in atomics: no lock on the hot path.
//!
//! Exposure is counted from orders entered, not only from fills (SEC Rule
//! 15c3-5): an accepted order adds its notional to the account's open
//! buys or sells at once, and takes it off when it is done (filled,
//! cancelled or rejected). Fills move the net position. Every update is a
//! compare-and-swap loop, so two loops cannot both pass a limit that only
//! one of them fits under.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use super::cidr::Cidr;
use super::limits::NONE;
use crate::proto::Code8;

/// One configured account.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: Code8,
    /// Its password's argon2id hash, a PHC string.
    pub hash: String,
    /// Where it may log on from.
    pub sources: Vec<Cidr>,
    /// Sessions it may have at once, over every loop.
    pub max_sessions: u32,
    /// Cancel a session's working orders when it ends (however it ends).
    pub cancel_on_disconnect: bool,
}

impl Account {
    pub fn allows(&self, source: IpAddr) -> bool {
        self.sources.iter().any(|c| c.contains(source))
    }
}

/// What the loops share of one account.
#[derive(Debug, Default)]
pub struct AccountState {
    pub sessions: AtomicU32,
    pub killed: AtomicBool,
    /// The kill epoch of its last kill (see `Risk::killed_since`).
    pub killed_at: AtomicU64,
    /// Its kill logs its sessions out too.
    pub kill_logout: AtomicBool,
    /// Notional of the account's open orders, and of its open buy and
    /// sell orders.
    pub open: AtomicU64,
    pub open_buy: AtomicU64,
    pub open_sell: AtomicU64,
    /// Filled notional bought less sold.
    pub net: AtomicI64,
    /// The account's order-rate cell (see `limits::Rate`).
    pub rate_tat: AtomicU64,
    /// Orders accepted by the checks and not done yet, over every loop.
    pub orders: AtomicU64,
    /// Orders accepted and refused by the checks.
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
}

/// Why a reservation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credit {
    Gross,
    Net,
}

impl AccountState {
    /// Take a session if the account has fewer than `max`.
    pub fn take_session(&self, max: u32) -> bool {
        self.sessions.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok()
    }

    pub fn give_session(&self) {
        let _ = self.sessions.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    fn side(&self, buy: bool) -> &AtomicU64 {
        if buy {
            &self.open_buy
        } else {
            &self.open_sell
        }
    }

    /// Add an order of `notional` on its side, if the account's gross open
    /// notional stays within `max_gross` and its worst-case net position
    /// (the fills, plus every open order on the side that grows it) within
    /// `max_net`.
    pub fn reserve(&self, buy: bool, notional: u64, max_gross: u64, max_net: u64) -> Result<(), Credit> {
        // With no limit (NONE), the sums saturate instead of refusing: an
        // absurd order must not shut the account's credit for good.
        let add =
            |a: u64, limit: u64| if limit == NONE { Some(a.saturating_add(notional)) } else { a.checked_add(notional) };
        let gross = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |g| add(g, max_gross).filter(|&g| g <= max_gross));
        if gross.is_err() {
            return Err(Credit::Gross);
        }
        let side = self.side(buy).fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
            let after = add(open, max_net)?;
            let net = self.net.load(Ordering::Acquire) as i128;
            let worst = if buy { net + after as i128 } else { after as i128 - net };
            (max_net == NONE || worst <= max_net as i128).then_some(after)
        });
        if side.is_err() {
            let _ = self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |g| Some(g.saturating_sub(notional)));
            return Err(Credit::Net);
        }
        self.orders.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// An order that was reserved is done: what is left of it (`notional`)
    /// is given back, and it is no longer open.
    pub fn finished(&self, buy: bool, notional: u64) {
        self.release(buy, notional);
        let _ = self.orders.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// An open order's `notional` is done (or was never sent).
    pub fn release(&self, buy: bool, notional: u64) {
        let _ = self.side(buy).fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(notional)));
        let _ = self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(notional)));
    }

    /// A fill: `open_notional` of the order is done, and `filled` (price x
    /// quantity) moves the net position.
    pub fn fill(&self, buy: bool, open_notional: u64, filled: u64) {
        let d = i64::try_from(filled).unwrap_or(i64::MAX);
        let _ = self.net.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            Some(if buy { n.saturating_add(d) } else { n.saturating_sub(d) })
        });
        self.release(buy, open_notional);
    }

    pub fn gross(&self) -> u64 {
        self.open.load(Ordering::Acquire)
    }
}

/// Every account, with its shared state, found by name.
#[derive(Debug, Default)]
pub struct Accounts {
    pub list: Vec<Account>,
    pub state: Vec<CachePadded<AccountState>>,
    /// (name, index), sorted by name.
    by_name: Vec<(u64, usize)>,
}

impl Accounts {
    pub fn new(list: Vec<Account>) -> Result<Accounts, String> {
        let mut by_name: Vec<(u64, usize)> =
            list.iter().enumerate().map(|(i, a)| (u64::from_le_bytes(a.name.0), i)).collect();
        by_name.sort_unstable();
        if let Some(w) = by_name.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(format!("account {:?} is configured twice", list[w[0].1].name.as_str()));
        }
        let state = list.iter().map(|_| CachePadded::new(AccountState::default())).collect();
        Ok(Accounts { list, state, by_name })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn find(&self, name: Code8) -> Option<usize> {
        let k = u64::from_le_bytes(name.0);
        self.by_name.binary_search_by_key(&k, |e| e.0).ok().map(|i| self.by_name[i].1)
    }

    /// Account `i`'s name, for logs.
    pub fn name(&self, i: usize) -> &str {
        self.list.get(i).map_or("?", |a| a.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_taken_up_to_the_maximum() {
        let s = AccountState::default();
        assert!(s.take_session(2) && s.take_session(2));
        assert!(!s.take_session(2));
        s.give_session();
        assert!(s.take_session(2));
        s.give_session();
        s.give_session();
        s.give_session();
        assert_eq!(s.sessions.load(Ordering::Relaxed), 0, "never below zero");
    }

    #[test]
    fn gross_limit_counts_both_sides_and_passes_at_the_edge() {
        let s = AccountState::default();
        assert_eq!(s.reserve(true, 600, 1000, u64::MAX), Ok(()));
        assert_eq!(s.reserve(false, 400, 1000, u64::MAX), Ok(()), "exactly at the limit passes");
        assert_eq!(s.reserve(false, 1, 1000, u64::MAX), Err(Credit::Gross));
        s.release(true, 600);
        assert_eq!(s.reserve(false, 600, 1000, u64::MAX), Ok(()));
        assert_eq!(s.gross(), 1000);
    }

    #[test]
    fn net_limit_counts_fills_and_the_open_side_that_grows_it() {
        let s = AccountState::default();
        assert_eq!(s.reserve(true, 500, u64::MAX, 800), Ok(()));
        s.fill(true, 500, 500);
        assert_eq!(s.net.load(Ordering::Relaxed), 500);
        assert_eq!(s.open_buy.load(Ordering::Relaxed), 0);
        assert_eq!(s.reserve(true, 300, u64::MAX, 800), Ok(()), "500 long + 300 open = 800: at the limit");
        assert_eq!(s.reserve(true, 1, u64::MAX, 800), Err(Credit::Net));
        assert_eq!(s.reserve(false, 1300, u64::MAX, 800), Ok(()), "selling 1300 against 500 long: 800 short at worst");
        assert_eq!(s.reserve(false, 1, u64::MAX, 800), Err(Credit::Net));
    }

    #[test]
    fn names_are_found_and_duplicates_refused() {
        let a = |n: &str| Account {
            name: Code8::new(n).unwrap(),
            hash: String::new(),
            sources: vec![Cidr::parse("10.0.0.0/8").unwrap()],
            max_sessions: 1,
            cancel_on_disconnect: true,
        };
        let accts = Accounts::new(vec![a("ZED"), a("ALPHA")]).unwrap();
        assert_eq!(accts.find(Code8::new("ALPHA").unwrap()), Some(1));
        assert_eq!(accts.find(Code8::new("ZED").unwrap()), Some(0));
        assert_eq!(accts.find(Code8::new("NOBODY").unwrap()), None);
        assert!(accts.list[0].allows("10.9.9.9".parse().unwrap()));
        assert!(!accts.list[0].allows("11.0.0.1".parse().unwrap()));
        assert!(Accounts::new(vec![a("X"), a("X")]).unwrap_err().contains("twice"));
    }
}
