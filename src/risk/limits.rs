//! Risk limits: the defaults (`[limits]`), each account's overrides, and
//! the snapshot the loops read.
//!
//! A change at run time (the admin interface) builds a new [`Snapshot`]
//! and publishes it with a new version number; each loop compares the
//! version with its own at its next order (one relaxed load) and swaps the
//! new snapshot in ([`arc_swap`], no lock). The admin thread keeps every
//! snapshot it published until no loop holds it, so a loop never frees one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Deserialize;

/// A limit as written in the config file or given to the admin interface:
/// every key may be absent (the default applies, or none).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Largest quantity of one order.
    pub max_order_qty: Option<u64>,
    /// Largest price x quantity of one order (price in ticks).
    pub max_order_notional: Option<u64>,
    /// A limit price may be this far from the symbol's reference price, in
    /// basis points of it (0: no collar).
    pub price_collar_bps: Option<u64>,
    /// Refuse a limit order of a symbol with no reference price.
    pub require_reference_price: Option<bool>,
    /// Largest gross open notional of the account (the orders it entered
    /// that are not done, buys and sells added up).
    pub max_gross_open_notional: Option<u64>,
    /// Largest net position of the account, in notional (fills bought less
    /// sold, with its open orders on the side that grows it).
    pub max_net_notional: Option<u64>,
    /// Orders per second one session may send (0: no limit), with bursts of
    /// `session_burst`.
    pub session_orders_per_sec: Option<u64>,
    pub session_burst: Option<u64>,
    /// Orders per second the account's sessions together may send.
    pub account_orders_per_sec: Option<u64>,
    pub account_burst: Option<u64>,
    /// An order with the side, symbol, quantity and price of one the
    /// session sent this recently is refused (0: no check).
    pub duplicate_window_ms: Option<u64>,
    /// Market orders allowed.
    pub market_orders: Option<bool>,
}

/// No limit.
pub const NONE: u64 = u64::MAX;

/// An order-rate limit as a cell rate: one order per `interval_ns`, with
/// bursts of `burst` (a token bucket of `burst` tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// 0: no limit.
    pub interval_ns: u64,
    pub burst: u64,
}

impl Rate {
    fn of(per_sec: u64, burst: u64) -> Rate {
        if per_sec == 0 {
            return Rate { interval_ns: 0, burst: 0 };
        }
        Rate { interval_ns: (1_000_000_000 / per_sec).max(1), burst: burst.max(1) }
    }

    /// GCRA: with `tat` the theoretical arrival time, may an order go at
    /// `now`? `Some(new tat)` if so.
    #[inline]
    pub fn admit(&self, tat: u64, now: u64) -> Option<u64> {
        if self.interval_ns == 0 {
            return Some(tat);
        }
        let next = tat.max(now) + self.interval_ns;
        (next - now <= self.interval_ns.saturating_mul(self.burst)).then_some(next)
    }
}

/// The limits one account's orders are checked against: every value
/// resolved (absent ones are [`NONE`] or off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_qty: u64,
    pub max_notional: u64,
    pub collar_bps: u64,
    pub require_reference: bool,
    pub max_gross: u64,
    pub max_net: u64,
    pub session_rate: Rate,
    pub account_rate: Rate,
    pub duplicate_window_ns: u64,
    pub market_orders: bool,
}

impl LimitsSpec {
    /// `over`'s keys where it has them, else this one's.
    pub fn overridden_by(&self, over: &LimitsSpec) -> LimitsSpec {
        macro_rules! pick {
            ($($f:ident),*) => { LimitsSpec { $( $f: over.$f.or(self.$f), )* } };
        }
        pick!(
            max_order_qty,
            max_order_notional,
            price_collar_bps,
            require_reference_price,
            max_gross_open_notional,
            max_net_notional,
            session_orders_per_sec,
            session_burst,
            account_orders_per_sec,
            account_burst,
            duplicate_window_ms,
            market_orders
        )
    }

    /// Resolve: absent limits are none, and market orders are allowed.
    pub fn resolve(&self) -> Limits {
        let rate = |r: Option<u64>, b: Option<u64>| {
            let r = r.unwrap_or(0);
            Rate::of(r, b.unwrap_or(r.max(1)))
        };
        Limits {
            max_qty: self.max_order_qty.unwrap_or(NONE),
            max_notional: self.max_order_notional.unwrap_or(NONE),
            collar_bps: self.price_collar_bps.unwrap_or(0),
            require_reference: self.require_reference_price.unwrap_or(false),
            max_gross: self.max_gross_open_notional.unwrap_or(NONE),
            max_net: self.max_net_notional.unwrap_or(NONE),
            session_rate: rate(self.session_orders_per_sec, self.session_burst),
            account_rate: rate(self.account_orders_per_sec, self.account_burst),
            duplicate_window_ns: self.duplicate_window_ms.unwrap_or(0).saturating_mul(1_000_000),
            market_orders: self.market_orders.unwrap_or(true),
        }
    }

    /// Set one key from text (the admin interface); `Err` names the keys.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let num = || value.parse::<u64>().map_err(|_| format!("{key}: {value:?} is not a whole number"));
        let flag = || match value {
            "true" | "on" => Ok(true),
            "false" | "off" => Ok(false),
            _ => Err(format!("{key}: {value:?} is not true or false")),
        };
        let clear = value == "default";
        macro_rules! keys {
            (nums: $($n:ident),*; flags: $($f:ident),*) => {
                match key {
                    $( stringify!($n) => self.$n = if clear { None } else { Some(num()?) }, )*
                    $( stringify!($f) => self.$f = if clear { None } else { Some(flag()?) }, )*
                    _ => return Err(format!(
                        "unknown limit {key:?} (limits: {})",
                        [$(stringify!($n),)* $(stringify!($f),)*].join(", ")
                    )),
                }
            };
        }
        keys!(nums: max_order_qty, max_order_notional, price_collar_bps, max_gross_open_notional,
              max_net_notional, session_orders_per_sec, session_burst, account_orders_per_sec,
              account_burst, duplicate_window_ms;
              flags: require_reference_price, market_orders);
        Ok(())
    }
}

/// What the loops read: the effective limits of every account (by index),
/// the defaults for sessions with no configured account, and the
/// restricted symbols (sorted, as `u64` codes).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub version: u64,
    pub defaults: Limits,
    pub accounts: Vec<Limits>,
    pub restricted: Vec<u64>,
}

impl Snapshot {
    /// The limits of account `a` (`None`: a session with no account).
    #[inline]
    pub fn of(&self, a: Option<usize>) -> &Limits {
        a.and_then(|i| self.accounts.get(i)).unwrap_or(&self.defaults)
    }

    #[inline]
    pub fn restricted(&self, symbol: u64) -> bool {
        !self.restricted.is_empty() && self.restricted.binary_search(&symbol).is_ok()
    }
}

/// The specs the snapshot is built from, kept by the admin side.
#[derive(Debug, Clone, Default)]
pub struct Specs {
    pub defaults: LimitsSpec,
    pub accounts: Vec<LimitsSpec>,
    pub restricted: Vec<u64>,
}

impl Specs {
    fn build(&self, version: u64) -> Snapshot {
        let mut restricted = self.restricted.clone();
        restricted.sort_unstable();
        restricted.dedup();
        Snapshot {
            version,
            defaults: self.defaults.resolve(),
            accounts: self.accounts.iter().map(|a| self.defaults.overridden_by(a).resolve()).collect(),
            restricted,
        }
    }
}

/// The published snapshot and its version; changed only by the admin side.
#[derive(Debug)]
pub struct Published {
    version: AtomicU64,
    current: ArcSwap<Snapshot>,
    /// The specs, and every snapshot published, until no loop holds it
    /// (admin side only: never touched by a loop).
    admin: Mutex<(Specs, Vec<Arc<Snapshot>>)>,
}

impl Published {
    pub fn new(specs: Specs) -> Published {
        let first = Arc::new(specs.build(1));
        Published {
            version: AtomicU64::new(1),
            current: ArcSwap::new(first.clone()),
            admin: Mutex::new((specs, vec![first])),
        }
    }

    /// The version now (the loop's check before each order).
    #[inline]
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The snapshot now.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The specs now (a copy).
    pub fn specs(&self) -> Specs {
        self.admin.lock().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    /// Change the specs with `f` and publish the result; returns the new
    /// version. `Err` from `f` changes nothing.
    pub fn change(&self, f: impl FnOnce(&mut Specs) -> Result<(), String>) -> Result<u64, String> {
        let mut g = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let mut specs = g.0.clone();
        f(&mut specs)?;
        let v = self.version.load(Ordering::Relaxed) + 1;
        let snap = Arc::new(specs.build(v));
        self.current.store(snap.clone());
        self.version.store(v, Ordering::Release);
        g.0 = specs;
        // Keep every snapshot a loop may still hold; free the others here.
        g.1.retain(|s| Arc::strong_count(s) > 1);
        g.1.push(snap);
        Ok(v)
    }
}

/// A loop's view: its own reference to the snapshot, swapped when the
/// version moves.
#[derive(Debug)]
pub struct View {
    published: Arc<Published>,
    pub snap: Arc<Snapshot>,
}

impl View {
    pub fn new(published: Arc<Published>) -> View {
        let snap = published.load();
        View { published, snap }
    }

    /// Take the new snapshot if there is one (before each order). The old
    /// one is not freed here: the admin side still holds it.
    #[inline]
    pub fn refresh(&mut self) {
        if self.published.version() != self.snap.version {
            self.snap = self.published.load();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_override_defaults_key_by_key() {
        let defaults = LimitsSpec { max_order_qty: Some(100), market_orders: Some(false), ..LimitsSpec::default() };
        let acct = LimitsSpec { max_order_qty: Some(5), ..LimitsSpec::default() };
        let l = defaults.overridden_by(&acct).resolve();
        assert_eq!(l.max_qty, 5);
        assert!(!l.market_orders, "a key the account does not give keeps the default");
        assert_eq!(l.max_notional, NONE);
        assert!(LimitsSpec::default().resolve().market_orders);
    }

    #[test]
    fn the_cell_rate_admits_a_burst_then_one_per_interval() {
        let r = Rate::of(1000, 3);
        let mut tat = 0;
        let now = 10_000_000;
        for i in 0..3 {
            tat = r.admit(tat, now).unwrap_or_else(|| panic!("order {i} of the burst"));
        }
        assert_eq!(r.admit(tat, now), None, "the fourth at once is over the burst");
        assert_eq!(r.admit(tat, now + 999_999), None);
        assert!(r.admit(tat, now + 1_000_000).is_some(), "one interval later one more goes");
        assert_eq!(Rate::of(0, 0).admit(5, 0), Some(5), "no limit");
    }

    #[test]
    fn set_takes_known_keys_and_names_them_otherwise() {
        let mut s = LimitsSpec::default();
        s.set("max_order_qty", "7").unwrap();
        s.set("market_orders", "off").unwrap();
        assert_eq!((s.max_order_qty, s.market_orders), (Some(7), Some(false)));
        s.set("max_order_qty", "default").unwrap();
        assert_eq!(s.max_order_qty, None);
        assert!(s.set("max_order_qty", "-1").unwrap_err().contains("whole number"));
        assert!(s.set("nope", "1").unwrap_err().contains("max_order_notional"));
    }

    #[test]
    fn a_change_is_seen_at_the_next_refresh() {
        let p = Arc::new(Published::new(Specs { accounts: vec![LimitsSpec::default()], ..Specs::default() }));
        let mut v = View::new(p.clone());
        assert_eq!(v.snap.of(Some(0)).max_qty, NONE);
        p.change(|s| s.accounts[0].set("max_order_qty", "10")).unwrap();
        assert_eq!(v.snap.of(Some(0)).max_qty, NONE, "not before the refresh");
        v.refresh();
        assert_eq!(v.snap.of(Some(0)).max_qty, 10);
        assert!(p.change(|s| s.accounts[0].set("bogus", "1")).is_err());
        v.refresh();
        assert_eq!(v.snap.version, 2, "a refused change publishes nothing");
    }
}
