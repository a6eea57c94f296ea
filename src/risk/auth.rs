//! Logons with a password are verified here, on a helper thread, never on
//! a loop: an argon2id verification takes milliseconds.
//!
//! Each loop has a [`Port`]: a bounded ring of requests to the verifier and
//! one of answers back (single producer, single consumer; no lock, no
//! syscall on the loop). A loop whose ring is full refuses the Logon at
//! once (`logon_busy`), so a flood of logons costs a trading session on the
//! same loop one ring probe per Logon, and nothing more.
//!
//! Failed logons are counted per source (an IPv4 address, an IPv6 /64)
//! and throttled: after [`FREE_FAILURES`] failures, each retry must wait a
//! backoff that doubles from one second (up to 32 s), and is refused
//! `logon_throttled` without being hashed; after [`BAN_FAILURES`] the
//! source is banned for [`BAN`]. A success does not clear the record (a
//! source with one good account could otherwise guess at others without
//! end); the record goes [`BAN`] after the last failure. Every account has
//! the same argon2id cost (the config refuses mixed ones) and an unknown
//! account is hashed against a decoy of that cost, so it takes as long to
//! refuse as a wrong password. The log names the account, the source and
//! the reason, never the password; the verifier wipes its copy once
//! checked.
//!
//! A source that must wait (its backoff or its ban) is also written into
//! the [`Gate`], which the loops' transports read as connections arrive: it
//! is refused there (a RST), before it costs a loop an accept, a read, a
//! ring slot and a reply. Only a connection that raced the gate reaches the
//! verifier and is refused `logon_throttled`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::Risk;
use crate::proto::{Code8, Password};
use crate::ring::{ring_of, Consumer, Producer};
use crate::transport::gate::Gate;

/// Logons a loop may have waiting for the verifier: room for a morning's
/// sessions connecting at once (each takes one argon2id verification,
/// tens of milliseconds, in turn); one more is refused `logon_busy`.
pub const QUEUE: usize = 1024;
/// Failures from one source before throttling starts.
pub const FREE_FAILURES: u32 = 3;
/// Failures from one source that ban it.
pub const BAN_FAILURES: u32 = 10;
/// How long a ban lasts.
pub const BAN: Duration = Duration::from_secs(600);
/// The longest backoff before the ban.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Sources whose failures are remembered: a table this full forgets the
/// ones whose wait is over first, then any one, to make room.
pub const TRACKED_SOURCES: usize = 65_536;

pub use crate::transport::gate::source_key;

/// A Logon to verify: the session it came on, its account and password,
/// and the connection's source address.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub conn: u32,
    pub gen: u64,
    pub account: Code8,
    pub source: IpAddr,
    pub password: Password,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            conn: 0,
            gen: 0,
            account: Code8([b' '; 8]),
            source: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            password: Password::NONE,
        }
    }
}

/// Why a Logon was refused (the client sees `not_authorized` for the first
/// three, so that no stranger learns which accounts exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnknownAccount,
    BadPassword,
    SourceNotAllowed,
    Throttled,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::UnknownAccount => "unknown_account",
            Refusal::BadPassword => "bad_password",
            Refusal::SourceNotAllowed => "source_not_allowed",
            Refusal::Throttled => "throttled",
        }
    }
}

/// The verifier's answer: the account's index, or why not.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub conn: u32,
    pub gen: u64,
    pub verdict: Result<usize, Refusal>,
}

impl Default for Answer {
    fn default() -> Self {
        Answer { conn: 0, gen: 0, verdict: Err(Refusal::UnknownAccount) }
    }
}

/// Counts of the verifier's verdicts, for the exit line and /metrics.
#[derive(Debug, Default)]
pub struct AuthCounters {
    pub accepted: AtomicU64,
    pub unknown_account: AtomicU64,
    pub bad_password: AtomicU64,
    pub source_not_allowed: AtomicU64,
    pub throttled: AtomicU64,
    pub bans: AtomicU64,
}

impl AuthCounters {
    fn count(&self, v: Result<usize, Refusal>) {
        let c = match v {
            Ok(_) => &self.accepted,
            Err(Refusal::UnknownAccount) => &self.unknown_account,
            Err(Refusal::BadPassword) => &self.bad_password,
            Err(Refusal::SourceNotAllowed) => &self.source_not_allowed,
            Err(Refusal::Throttled) => &self.throttled,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// `name=value` pairs for the exit line.
    pub fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "logons_verified={} refused_unknown_account={} refused_bad_password={} refused_source_not_allowed={} \
             refused_throttled={} sources_banned={}",
            g(&self.accepted),
            g(&self.unknown_account),
            g(&self.bad_password),
            g(&self.source_not_allowed),
            g(&self.throttled),
            g(&self.bans)
        )
    }
}

/// A loop's end of the verifier's rings.
#[derive(Debug)]
pub struct Port {
    requests: Producer<Request>,
    answers: Consumer<Answer>,
    /// Requests sent and not answered yet.
    waiting: usize,
}

impl Port {
    /// Queue `r`; false (refuse the Logon `logon_busy`) if the ring is full.
    pub fn ask(&mut self, r: &Request) -> bool {
        if self.waiting >= QUEUE || !self.requests.push(r) {
            return false;
        }
        self.waiting += 1;
        self.requests.publish();
        true
    }

    /// The next answer, if one came.
    #[inline]
    pub fn answer(&mut self) -> Option<Answer> {
        if self.waiting == 0 {
            return None;
        }
        let a = self.answers.pop()?;
        self.waiting -= 1;
        Some(a)
    }

    /// Logons waiting for an answer.
    pub fn waiting(&self) -> usize {
        self.waiting
    }
}

/// One source's failures.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// No attempt is hashed before this.
    until: Instant,
    last: Instant,
}

/// The failed-logon throttle (the verifier's own: no lock).
#[derive(Debug, Default)]
pub struct Throttle {
    by_source: HashMap<IpAddr, Failures>,
}

impl Throttle {
    /// May `source` try now? `false`: refuse it without hashing.
    pub fn may_try(&mut self, source: IpAddr, now: Instant) -> bool {
        let source = source_key(source);
        match self.by_source.get(&source) {
            Some(f) if now.duration_since(f.last) >= BAN => {
                self.by_source.remove(&source);
                true
            }
            Some(f) => now >= f.until,
            None => true,
        }
    }

    /// `source` failed: `Some(true)` if that banned it now.
    pub fn failed(&mut self, source: IpAddr, now: Instant) -> bool {
        let source = source_key(source);
        if self.by_source.len() >= TRACKED_SOURCES && !self.by_source.contains_key(&source) {
            self.by_source.retain(|_, f| now < f.until);
            if self.by_source.len() >= TRACKED_SOURCES {
                if let Some(k) = self.by_source.keys().next().copied() {
                    self.by_source.remove(&k);
                }
            }
        }
        let f = self.by_source.entry(source).or_insert(Failures { count: 0, until: now, last: now });
        f.count = f.count.saturating_add(1);
        f.last = now;
        f.until = if f.count >= BAN_FAILURES {
            now + BAN
        } else if f.count > FREE_FAILURES {
            now + Duration::from_secs(1u64 << (f.count - FREE_FAILURES - 1).min(6)).min(MAX_BACKOFF)
        } else {
            now
        };
        f.count == BAN_FAILURES
    }

    /// How long `source` must wait (for the log).
    fn wait(&self, source: IpAddr, now: Instant) -> Duration {
        self.by_source.get(&source_key(source)).map_or(Duration::ZERO, |f| f.until.saturating_duration_since(now))
    }
}

/// The verifier thread's handle: stops and joins it when dropped.
#[derive(Debug)]
pub struct Verifier {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub counters: Arc<AuthCounters>,
    /// The sources refused at the door (the verifier writes, the loops'
    /// transports read).
    pub gate: Arc<Gate>,
}

impl Drop for Verifier {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A decoy hash with the accounts' first hash's cost, so that an unknown
/// account costs as much to refuse as a known one.
fn decoy(risk: &Risk) -> String {
    let params = risk
        .accounts
        .list
        .first()
        .and_then(|a| PasswordHash::new(&a.hash).ok().and_then(|h| argon2::Params::try_from(&h).ok()))
        .unwrap_or_default();
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"tailgate-decoy-salt")
        .unwrap_or_else(|_| SaltString::from_b64("AAAAAAAAAAAAAAAAAAAAAA").expect("a valid salt"));
    a.hash_password(b"no account has this password", &salt).map(|h| h.to_string()).unwrap_or_default()
}

/// Check one request (the verifier's work).
fn verify(risk: &Risk, decoy: &str, r: &Request) -> Result<usize, Refusal> {
    let account = risk.accounts.find(r.account);
    let hash = account.map_or(decoy, |i| risk.accounts.list[i].hash.as_str());
    let ok = PasswordHash::new(hash)
        .map(|h| argon2::Argon2::default().verify_password(r.password.expose(), &h).is_ok())
        .unwrap_or(false);
    let Some(i) = account else { return Err(Refusal::UnknownAccount) };
    if !risk.accounts.list[i].allows(r.source) {
        return Err(Refusal::SourceNotAllowed);
    }
    if !ok {
        return Err(Refusal::BadPassword);
    }
    Ok(i)
}

/// Start the verifier for `loops` loops: returns its handle and each loop's
/// port. The thread runs on `pin` if given, else off the loops' `cores`.
pub fn start(
    risk: Arc<Risk>,
    loops: usize,
    cores: Vec<usize>,
    pin: Option<usize>,
) -> Result<(Verifier, Vec<Port>), String> {
    let mut ports = Vec::with_capacity(loops);
    let mut ends = Vec::with_capacity(loops);
    for _ in 0..loops {
        let (rq_tx, rq_rx) = ring_of::<Request>(QUEUE)?;
        let (an_tx, an_rx) = ring_of::<Answer>(QUEUE)?;
        ports.push(Port { requests: rq_tx, answers: an_rx, waiting: 0 });
        ends.push((rq_rx, an_tx));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(AuthCounters::default());
    let gate = Arc::new(Gate::new());
    let (st, ct, gt) = (stop.clone(), counters.clone(), gate.clone());
    let thread = std::thread::Builder::new()
        .name("tg-auth".into())
        .spawn(move || {
            crate::runtime::place_helper_off(&cores, pin, "logon verifier");
            run(&risk, &mut ends, &st, &ct, &gt);
        })
        .map_err(|e| format!("starting the logon verifier: {e}"))?;
    Ok((Verifier { stop, thread: Some(thread), counters, gate }, ports))
}

fn run(
    risk: &Risk,
    ends: &mut [(Consumer<Request>, Producer<Answer>)],
    stop: &AtomicBool,
    c: &AuthCounters,
    gate: &Gate,
) {
    let decoy = decoy(risk);
    let mut throttle = Throttle::default();
    while !stop.load(Ordering::Relaxed) {
        let mut any = false;
        // One request from each loop in turn: a flood on one loop's ring
        // does not hold another loop's logons behind it.
        for (requests, answers) in ends.iter_mut() {
            if let Some(a) = requests.pop_with_mut(|r| {
                let now = Instant::now();
                let verdict =
                    if !throttle.may_try(r.source, now) { Err(Refusal::Throttled) } else { verify(risk, &decoy, r) };
                match verdict {
                    Ok(_) => {}
                    Err(Refusal::Throttled) => {
                        // It raced the gate (or was evicted from it).
                        shut_door(gate, &throttle, r.source, now);
                    }
                    Err(why) => {
                        let banned = throttle.failed(r.source, now);
                        let wait = throttle.wait(r.source, now);
                        if banned {
                            c.bans.fetch_add(1, Ordering::Relaxed);
                            crate::log_warn!(
                                "logon: source {} banned for {} s after {BAN_FAILURES} failed logons",
                                r.source,
                                BAN.as_secs()
                            );
                        }
                        shut_door(gate, &throttle, r.source, now);
                        crate::log_warn!(
                            "logon refused: account {:?} from {}: {}{}",
                            r.account.as_str(),
                            r.source,
                            why.label(),
                            if wait.is_zero() {
                                String::new()
                            } else {
                                format!(" (its next try waits {} s)", wait.as_secs())
                            }
                        );
                    }
                }
                c.count(verdict);
                r.password.wipe();
                Answer { conn: r.conn, gen: r.gen, verdict }
            }) {
                any = true;
                // The ring has room: a loop never has more than QUEUE waiting.
                answers.push(&a);
                answers.publish();
            }
        }
        if !any {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Refuse `source` at the door for as long as it must wait, if it must.
fn shut_door(gate: &Gate, throttle: &Throttle, source: IpAddr, now: Instant) {
    let wait = throttle.wait(source, now);
    if !wait.is_zero() {
        let ns = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        gate.refuse(source, crate::clock::mono_ns().saturating_add(ns));
    }
}

/// `tailgate hash-password`: the argon2id hash (PHC string, default cost)
/// of `password`, with a random salt.
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2::Argon2::default().hash_password(password, &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
