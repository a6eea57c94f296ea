//! Accounts and pre-trade risk: who may log on, and what an order must
//! pass before it goes to the exchange (SEC Rule 15c3-5, EU RTS 6).
//!
//! ```text
//! config.rs    the config file's [[accounts]], [limits] and [prices]
//! cidr.rs      allowed source networks
//! accounts.rs  the accounts, and what every loop shares of each (atomics)
//! limits.rs    limits: defaults, overrides, the snapshot the loops swap in
//! checks.rs    the checks of one order, on the loop
//! auth.rs      password verification on a helper thread, failed-logon throttling
//! ```
//!
//! One [`Risk`] is shared by every loop of a gateway. What a loop changes
//! in it is atomics; what the admin side changes is published as a new
//! limits snapshot or an atomic flag (the kill switch): a loop never takes
//! a lock, and never hashes a password.

pub mod accounts;
pub mod auth;
pub mod checks;
pub mod cidr;
pub mod config;
pub mod limits;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use self::accounts::Accounts;
use self::limits::Published;

/// What every loop of a gateway shares: the accounts, the limits, the
/// reference prices configured, and the kill switch.
#[derive(Debug)]
pub struct Risk {
    pub accounts: Accounts,
    pub limits: Arc<Published>,
    /// Configured reference prices, by symbol code, sorted.
    pub prices: Vec<(u64, i64)>,
    /// The whole gateway's kill switch.
    pub kill_all: AtomicBool,
    /// Moves at every kill: each loop then cancels the working orders of
    /// the killed accounts (and logs their sessions out, if asked).
    pub kill_epoch: AtomicU64,
    /// The whole gateway's kill logs every session out too (an account's
    /// own kill has its flag in its state).
    pub kill_logout: AtomicBool,
    /// The kill epoch of the whole gateway's last kill.
    pub kill_all_at: AtomicU64,
}

impl Risk {
    pub fn new(cfg: config::RiskConfig) -> Risk {
        Risk {
            accounts: cfg.accounts,
            limits: Arc::new(Published::new(cfg.specs)),
            prices: cfg.prices,
            kill_all: AtomicBool::new(false),
            kill_epoch: AtomicU64::new(0),
            kill_logout: AtomicBool::new(false),
            kill_all_at: AtomicU64::new(0),
        }
    }

    /// No accounts, no limits: anyone logs on as any account (a test mode).
    pub fn open() -> Risk {
        Risk::new(config::RiskConfig::default())
    }

    /// Do logons need a password (are accounts configured)?
    pub fn needs_passwords(&self) -> bool {
        !self.accounts.is_empty()
    }

    /// Kill account `a` (or every account, `None`): new orders are refused
    /// `killed` and each loop cancels the working orders at its next turn.
    ///
    /// The kill is also stamped with its epoch, before the epoch moves: a
    /// loop that sweeps for it after an `enable` already lifted it still
    /// cancels what the kill found working ([`Risk::killed_since`]).
    pub fn kill(&self, a: Option<usize>, logout: bool) {
        let epoch = self.kill_epoch.load(Ordering::Acquire) + 1;
        match a {
            Some(i) => {
                if let Some(s) = self.accounts.state.get(i) {
                    s.kill_logout.store(logout, Ordering::Release);
                    s.killed_at.store(epoch, Ordering::Release);
                    s.killed.store(true, Ordering::Release);
                }
            }
            None => {
                self.kill_logout.store(logout, Ordering::Release);
                self.kill_all_at.store(epoch, Ordering::Release);
                self.kill_all.store(true, Ordering::Release);
            }
        }
        self.kill_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Is account `a` killed now, or was it killed after epoch `seen`
    /// (and perhaps enabled since)?
    pub fn killed_since(&self, a: Option<usize>, seen: u64) -> bool {
        self.killed(a)
            || self.kill_all_at.load(Ordering::Acquire) > seen
            || a.and_then(|i| self.accounts.state.get(i)).is_some_and(|s| s.killed_at.load(Ordering::Acquire) > seen)
    }

    /// Lift the kill of account `a` (or of the whole gateway, `None`; each
    /// account's own kill stays until lifted by name).
    pub fn enable(&self, a: Option<usize>) {
        match a {
            Some(i) => {
                if let Some(s) = self.accounts.state.get(i) {
                    s.killed.store(false, Ordering::Release);
                }
            }
            None => self.kill_all.store(false, Ordering::Release),
        }
    }

    /// Does the kill of account `a` (or the gateway's) log its sessions out?
    pub fn kill_logs_out(&self, a: Option<usize>) -> bool {
        let acct = a.and_then(|i| self.accounts.state.get(i));
        (self.kill_all.load(Ordering::Acquire) && self.kill_logout.load(Ordering::Acquire))
            || acct.is_some_and(|s| s.killed.load(Ordering::Acquire) && s.kill_logout.load(Ordering::Acquire))
    }

    /// Is account `a` (or, with `None`, a session of no account) killed?
    #[inline]
    pub fn killed(&self, a: Option<usize>) -> bool {
        self.kill_all.load(Ordering::Relaxed)
            || a.and_then(|i| self.accounts.state.get(i)).is_some_and(|s| s.killed.load(Ordering::Relaxed))
    }
}
