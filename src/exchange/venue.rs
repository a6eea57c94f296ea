//! The simulated venue as an [`App`]: SoupBinTCP sessions (login, replay
//! from the journal, heartbeats both ways, timeouts, End of Session on
//! shutdown), OUCH orders matched in one book per symbol, and the faults a
//! test asks for. It runs on either backend like any application.
//!
//! One account per username, one connection per account at a time (a
//! second login is rejected `S`). Every message an account is sent is
//! sequenced in its journal and written from it: live output and replay
//! are one path, so a reconnect that asks for number N gets N, N+1, ...
//! in order. An execution between two accounts goes into both journals and
//! wakes the other account's connection.
//!
//! Bad input never panics: a packet that cannot be delimited ends the
//! connection; an OUCH message that cannot be decoded is counted and, for
//! an order, answered with a Rejected; a well-formed order with a bad field
//! is rejected with the specification's reason.

use std::collections::HashMap;

use super::book::{Book, Outcome, Side};
use super::faults::Faults;
use super::journal::Journal;
use crate::app::{App, OutBuf, Requests, Verdict};
use crate::sampler::tracer::Tracer;
use crate::transport::ConnId;
use crate::venue::ouch::{self, cancel_reason, reject, Accepted, Inbound, Outbound};
use crate::venue::soup::{self, Packet};

/// What the simulator is given.
#[derive(Debug, Clone)]
pub struct ExchangeConfig {
    /// (username, password) of each account.
    pub accounts: Vec<(String, String)>,
    /// Its session id (as Login Accepted names it).
    pub session: String,
    pub heartbeat_ns: u64,
    /// A logged-in client silent this long is disconnected.
    pub timeout_ns: u64,
    /// Orders resting at once, over every book, at most.
    pub max_orders: usize,
    /// Symbols (books), at most: an order for one more is rejected.
    pub max_books: usize,
    pub faults: Faults,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        ExchangeConfig {
            accounts: Vec::new(),
            session: "1".into(),
            heartbeat_ns: 1_000_000_000,
            timeout_ns: 15_000_000_000,
            max_orders: 100_000,
            max_books: 1024,
            faults: Faults::default(),
        }
    }
}

/// Counters for the exit line.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExchangeStats {
    pub logins: u64,
    pub logins_rejected: u64,
    pub orders: u64,
    pub rejected: u64,
    pub executions: u64,
    pub canceled: u64,
    pub replayed: u64,
    /// Enter Orders with a UserRefNum already used (ignored as retransmissions).
    pub retransmissions_ignored: u64,
    pub bad_packets: u64,
    pub bad_messages: u64,
    pub timeouts: u64,
}

/// An order the venue knows: its owner and its book id.
#[derive(Debug, Clone, Copy)]
struct Live {
    symbol: [u8; 8],
    book_id: u64,
}

struct Account {
    username: [u8; soup::USERNAME_LEN],
    password: [u8; soup::PASSWORD_LEN],
    journal: Journal,
    conn: Option<ConnId>,
    /// The highest UserRefNum it used (new orders must go above it).
    last_user_ref: u32,
    orders: HashMap<u32, Live>,
}

/// A connection: before login, or an account's session.
#[derive(Debug)]
pub struct Session {
    conn: ConnId,
    account: Option<usize>,
    /// The next journal number to write to it.
    next: u64,
    opened_at: u64,
    last_rx: u64,
    last_tx: u64,
}

pub struct Exchange {
    cfg: ExchangeConfig,
    session_id: [u8; soup::SESSION_LEN],
    accounts: Vec<Account>,
    books: HashMap<[u8; 8], Book>,
    /// Book id -> (account, UserRefNum).
    owners: HashMap<u64, (usize, u32)>,
    next_book_id: u64,
    next_order_ref: u64,
    next_match: u64,
    /// Orders resting now, over every book.
    resting: usize,
    requests: Requests,
    faults: Faults,
    pub stats: ExchangeStats,
}

/// From the journals: each account's highest UserRefNum (a number used
/// before a restart stays used), and the orders still resting when the
/// venue stopped (account, its Accepted, shares left), oldest first.
fn restore(accounts: &mut [Account]) -> Vec<(usize, (Accepted, u32))> {
    let mut resting: Vec<(usize, (Accepted, u32))> = Vec::new();
    for (i, acc) in accounts.iter_mut().enumerate() {
        let mut live: HashMap<u32, (Accepted, u32)> = HashMap::new();
        for seq in 1..=acc.journal.len() {
            let Some(Ok(m)) = acc.journal.get(seq).map(ouch::parse_outbound) else { continue };
            match m {
                Outbound::Accepted(a) => {
                    acc.last_user_ref = acc.last_user_ref.max(a.user_ref);
                    let market = a.price >= 2_000_000_000;
                    if a.state == b'L' && a.tif != b'3' && !market {
                        live.insert(a.user_ref, (a, a.qty));
                    }
                }
                Outbound::Rejected { user_ref, .. } => acc.last_user_ref = acc.last_user_ref.max(user_ref),
                Outbound::Executed { user_ref, qty, .. } | Outbound::Canceled { user_ref, qty, .. } => {
                    if let Some(o) = live.get_mut(&user_ref) {
                        o.1 = o.1.saturating_sub(qty);
                        if o.1 == 0 {
                            live.remove(&user_ref);
                        }
                    }
                }
                _ => {}
            }
        }
        resting.extend(live.into_values().map(|o| (i, o)));
    }
    resting.sort_by_key(|(_, (a, _))| a.order_ref);
    resting
}

fn field<const N: usize>(s: &str) -> [u8; N] {
    let mut b = [b' '; N];
    soup::put_alpha(&mut b, s.as_bytes());
    b
}

/// Nanoseconds since midnight, UTC, for OUCH timestamps.
fn ts_now() -> u64 {
    let ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    ns % 86_400_000_000_000
}

impl Exchange {
    /// The venue with `cfg`'s accounts; `journal_dir`: keep each account's
    /// journal in `DIR/USERNAME.journal`, so a restart replays them.
    pub fn new(cfg: ExchangeConfig, journal_dir: Option<&std::path::Path>) -> std::io::Result<Self> {
        let mut accounts = Vec::new();
        for (u, p) in &cfg.accounts {
            let journal = match journal_dir {
                Some(d) => Journal::open(&d.join(format!("{u}.journal")))?,
                None => Journal::new(),
            };
            accounts.push(Account {
                username: field(u),
                password: field(p),
                journal,
                conn: None,
                last_user_ref: 0,
                orders: HashMap::new(),
            });
        }
        // Order reference and match numbers go on from the journals' highest
        // (a restarted venue must not reuse the numbers it replays).
        let (mut next_order_ref, mut next_match) = (1, 1);
        for acc in &accounts {
            for seq in 1..=acc.journal.len() {
                match acc.journal.get(seq).map(ouch::parse_outbound) {
                    Some(Ok(Outbound::Accepted(a))) | Some(Ok(Outbound::Replaced { order: a, .. })) => {
                        next_order_ref = next_order_ref.max(a.order_ref + 1);
                    }
                    Some(Ok(Outbound::Executed { match_number, .. })) => next_match = next_match.max(match_number + 1),
                    Some(Ok(_)) => {}
                    _ => {
                        let who = String::from_utf8_lossy(acc.username.trim_ascii()).into_owned();
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("journal of {who}: message {seq} is not OUCH"),
                        ));
                    }
                }
            }
        }
        let restored = restore(&mut accounts);
        let mut session_id = [b' '; soup::SESSION_LEN];
        let s = cfg.session.as_bytes();
        let n = s.len().min(soup::SESSION_LEN);
        session_id[soup::SESSION_LEN - n..].copy_from_slice(&s[..n]);
        let faults = cfg.faults;
        let mut x = Exchange {
            session_id,
            requests: Requests::with_capacity(2 * accounts.len() + 16),
            accounts,
            books: HashMap::new(),
            owners: HashMap::new(),
            next_book_id: 1,
            next_order_ref,
            next_match,
            resting: 0,
            faults,
            cfg,
            stats: ExchangeStats::default(),
        };
        // The orders resting when it stopped rest again, in time priority.
        for (a, acc_order) in restored {
            let Accepted { side, price, symbol, user_ref, .. } = acc_order.0;
            let side = if side == b'B' { Side::Buy } else { Side::Sell };
            let id = x.next_book_id;
            x.next_book_id += 1;
            let max = x.cfg.max_orders;
            let book = x.books.entry(symbol).or_insert_with(|| Book::new(max));
            // They rested together before, so they do not meet now.
            let mut next_match = x.next_match;
            if let Outcome::Rests(_) =
                book.enter(id, side, Some(price as i64), acc_order.1, true, &mut next_match, |_| {})
            {
                x.resting += 1;
                x.owners.insert(id, (a, user_ref));
                x.accounts[a].orders.insert(user_ref, Live { symbol, book_id: id });
            }
        }
        Ok(x)
    }

    /// Sequence `m` for account `a`, and wake its connection.
    fn send(&mut self, a: usize, m: &Outbound) {
        let mut b = [0u8; ouch::size::MAX];
        let n = ouch::encode_outbound(m, &mut b).expect("MAX holds every message");
        let acc = &mut self.accounts[a];
        acc.journal.push(&b[..n]);
        if let Some(c) = acc.conn {
            self.requests.wake(c);
        }
    }

    fn reject(&mut self, a: usize, user_ref: u32, reason: u16, cl_ord_id: [u8; 14]) {
        self.stats.rejected += 1;
        self.send(a, &Outbound::Rejected { ts: ts_now(), user_ref, reason, cl_ord_id });
    }

    fn order(&mut self, a: usize, m: Inbound, now: u64) -> Verdict {
        match m {
            Inbound::Enter(e) => self.enter(a, e, now),
            Inbound::Cancel { user_ref, qty } => {
                let Some(live) = self.accounts[a].orders.get(&user_ref).copied() else {
                    // A cancel for no live order: ignored, as specified.
                    return Verdict::Continue;
                };
                let book = self.books.get_mut(&live.symbol).expect("a live order's book");
                if let Some(n) = book.cancel(live.book_id, qty) {
                    if book.resting(live.book_id).is_none() {
                        self.accounts[a].orders.remove(&user_ref);
                        self.owners.remove(&live.book_id);
                        self.resting -= 1;
                    }
                    if n > 0 {
                        self.stats.canceled += 1;
                        let m = Outbound::Canceled {
                            ts: ts_now(),
                            user_ref,
                            qty: n,
                            reason: cancel_reason::USER_REQUESTED,
                        };
                        self.send(a, &m);
                    }
                }
                Verdict::Continue
            }
            Inbound::Replace(r) => {
                // Replace is not simulated: refused, which consumes the new
                // number; a number already used is ignored, as specified.
                let acc = &mut self.accounts[a];
                if r.user_ref <= acc.last_user_ref {
                    return Verdict::Continue;
                }
                acc.last_user_ref = r.user_ref;
                self.reject(a, r.user_ref, 0x0015, r.cl_ord_id);
                Verdict::Continue
            }
        }
    }

    fn enter(&mut self, a: usize, e: ouch::Enter, _now: u64) -> Verdict {
        let acc = &mut self.accounts[a];
        if e.user_ref <= acc.last_user_ref {
            // A number already used: a retransmission, ignored as specified.
            self.stats.retransmissions_ignored += 1;
            return Verdict::Continue;
        }
        self.stats.orders += 1;
        let action = self.faults.on_order();
        if action == super::faults::Action::Drop {
            // Lost with the session, as if it never arrived: its number is
            // not used, so the firm may enter it again.
            return Verdict::Abort;
        }
        self.accounts[a].last_user_ref = e.user_ref;
        if action == super::faults::Action::Reject {
            self.reject(a, e.user_ref, reject::OTHER, e.cl_ord_id);
            return Verdict::Continue;
        }
        let side = match e.side {
            b'B' => Side::Buy,
            b'S' | b'T' | b'E' => Side::Sell,
            _ => {
                self.reject(a, e.user_ref, reject::INVALID_SIDE, e.cl_ord_id);
                return Verdict::Continue;
            }
        };
        if e.qty == 0 || e.qty >= 1_000_000 {
            self.reject(a, e.user_ref, reject::INVALID_QUANTITY, e.cl_ord_id);
            return Verdict::Continue;
        }
        if e.symbol.iter().all(|&c| c == b' ') {
            self.reject(a, e.user_ref, reject::INVALID_SYMBOL, e.cl_ord_id);
            return Verdict::Continue;
        }
        // $200,000 and above (and the cross price) are market orders.
        let price = if e.price >= 2_000_000_000 { None } else { Some(e.price as i64) };
        if price == Some(0) {
            self.reject(a, e.user_ref, reject::INVALID_PRICE, e.cl_ord_id);
            return Verdict::Continue;
        }
        let ioc = e.tif == b'3' || price.is_none();
        if !self.books.contains_key(&e.symbol) && self.books.len() >= self.cfg.max_books {
            self.reject(a, e.user_ref, reject::INVALID_SYMBOL, e.cl_ord_id);
            return Verdict::Continue;
        }
        if !ioc && self.resting >= self.cfg.max_orders {
            // No room to rest it: refused before it is accepted.
            self.reject(a, e.user_ref, reject::PROCESSING_ERROR, e.cl_ord_id);
            return Verdict::Continue;
        }
        let id = self.next_book_id;
        self.next_book_id += 1;
        let order_ref = self.next_order_ref;
        self.next_order_ref += 1;
        let accepted = Accepted {
            ts: ts_now(),
            user_ref: e.user_ref,
            side: e.side,
            qty: e.qty,
            symbol: e.symbol,
            price: e.price,
            tif: e.tif,
            display: e.display,
            order_ref,
            capacity: e.capacity,
            iso: e.iso,
            cross: e.cross,
            state: b'L',
            cl_ord_id: e.cl_ord_id,
        };
        self.send(a, &Outbound::Accepted(accepted));
        let max = self.cfg.max_orders;
        let book = self.books.entry(e.symbol).or_insert_with(|| Book::new(max));
        let mut execs = Vec::new();
        let outcome = book.enter(id, side, price, e.qty, !ioc, &mut self.next_match, |x| execs.push(x));
        for x in execs {
            self.stats.executions += 1;
            let ts = ts_now();
            let price = x.price as u64;
            self.send(
                a,
                &Outbound::Executed {
                    ts,
                    user_ref: e.user_ref,
                    qty: x.qty,
                    price,
                    liquidity: b'R',
                    match_number: x.match_number,
                },
            );
            if let Some(&(owner, their_ref)) = self.owners.get(&x.resting) {
                self.send(
                    owner,
                    &Outbound::Executed {
                        ts,
                        user_ref: their_ref,
                        qty: x.qty,
                        price,
                        liquidity: b'A',
                        match_number: x.match_number,
                    },
                );
                if x.resting_leaves == 0 {
                    self.owners.remove(&x.resting);
                    self.accounts[owner].orders.remove(&their_ref);
                    self.resting -= 1;
                }
            }
        }
        match outcome {
            Outcome::Rests(_) => {
                self.resting += 1;
                self.owners.insert(id, (a, e.user_ref));
                self.accounts[a].orders.insert(e.user_ref, Live { symbol: e.symbol, book_id: id });
            }
            Outcome::Filled => {}
            Outcome::Canceled(n) => {
                self.stats.canceled += 1;
                let m = Outbound::Canceled {
                    ts: ts_now(),
                    user_ref: e.user_ref,
                    qty: n,
                    reason: cancel_reason::IMMEDIATE_OR_CANCEL,
                };
                self.send(a, &m);
            }
            Outcome::Refused(_) => self.reject(a, e.user_ref, reject::PROCESSING_ERROR, e.cl_ord_id),
        }
        Verdict::Continue
    }

    fn login(
        &mut self,
        s: &mut Session,
        user: &[u8],
        pass: &[u8],
        session: &[u8],
        seq: u64,
        out: &mut OutBuf,
    ) -> Verdict {
        let eq = |a: &[u8], b: &[u8]| a.trim_ascii().eq_ignore_ascii_case(b.trim_ascii());
        let found = self.accounts.iter().position(|acc| eq(&acc.username, user) && eq(&acc.password, pass));
        let refuse = |out: &mut OutBuf, why: u8| {
            let mut b = [0u8; 8];
            let n = soup::encode(&Packet::LoginRejected(why), &mut b).unwrap_or(0);
            out.put(&b[..n]);
            Verdict::Close
        };
        let Some(a) = found else {
            self.stats.logins_rejected += 1;
            return refuse(out, soup::reject::NOT_AUTHORIZED);
        };
        let blank = session.iter().all(|&c| c == b' ');
        if !(blank || eq(session, &self.session_id)) || self.accounts[a].conn.is_some() {
            self.stats.logins_rejected += 1;
            return refuse(out, soup::reject::SESSION_UNAVAILABLE);
        }
        let acc = &mut self.accounts[a];
        let next = acc.journal.len() + 1;
        // 0: from the next message on; past the end: from the end.
        let from = if seq == 0 || seq > next { next } else { seq };
        self.stats.replayed += next - from;
        acc.conn = Some(s.conn);
        s.account = Some(a);
        s.next = from;
        self.stats.logins += 1;
        let mut b = [0u8; 64];
        let n = soup::encode(&Packet::LoginAccepted { session: self.session_id, next_seq: from }, &mut b).unwrap_or(0);
        out.put(&b[..n]);
        Verdict::Continue
    }

    /// Write the account's journal from `s.next` on, as much as fits.
    fn pump(&mut self, s: &mut Session, out: &mut OutBuf, now: u64) {
        let Some(a) = s.account else { return };
        let j = &self.accounts[a].journal;
        while let Some(m) = j.get(s.next) {
            if out.spare() < m.len() + 3 {
                break;
            }
            let mut b = [0u8; ouch::size::MAX + 8];
            // Every journaled message is an OUCH message we wrote or
            // checked on open, under MAX bytes.
            let Some(n) = soup::encode(&Packet::Sequenced(m), &mut b) else { break };
            out.put(&b[..n]);
            s.next += 1;
            s.last_tx = now;
        }
    }

    /// The connection's session ends: its account is free to log in again.
    fn release(&mut self, s: &mut Session) {
        if let Some(a) = s.account.take() {
            if self.accounts[a].conn == Some(s.conn) {
                self.accounts[a].conn = None;
            }
        }
    }

    /// Flush the journals' files (once a tick).
    pub fn flush(&mut self) {
        for a in &mut self.accounts {
            if let Err(e) = a.journal.flush() {
                crate::log_warn!("exchange: journal write failed: {e}");
            }
        }
    }

    /// The exit line.
    pub fn line(&self) -> String {
        let s = &self.stats;
        format!(
            "exchange: logins={} logins_rejected={} orders={} rejected={} executions={} canceled={} replayed={} \
             retransmissions_ignored={} bad_packets={} bad_messages={} timeouts={}",
            s.logins,
            s.logins_rejected,
            s.orders,
            s.rejected,
            s.executions,
            s.canceled,
            s.replayed,
            s.retransmissions_ignored,
            s.bad_packets,
            s.bad_messages,
            s.timeouts
        )
    }
}

impl App for Exchange {
    type Session = Session;

    fn name(&self) -> &'static str {
        "exchange"
    }

    fn open(&mut self, conn: ConnId, now: u64) -> Session {
        Session { conn, account: None, next: 1, opened_at: now, last_rx: now, last_tx: now }
    }

    fn on_input(
        &mut self,
        s: &mut Session,
        input: &[u8],
        out: &mut OutBuf,
        _: &mut Tracer,
        _: u64,
        now: u64,
    ) -> (usize, Verdict) {
        let mut used = 0;
        // Room for the largest answer to one packet (Login Accepted, or
        // what an order adds is journaled, not written here).
        while out.spare() >= 64 {
            let (p, n) = match soup::parse(&input[used..]) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => {
                    self.stats.bad_packets += 1;
                    crate::log_info!("exchange: {}: {e}: closing", s.conn);
                    return (input.len(), Verdict::Abort);
                }
            };
            used += n;
            // A whole packet from a logged-in client keeps it alive; before
            // login only the login counts (its deadline runs from the open).
            if s.account.is_some() {
                s.last_rx = now;
            }
            let v = match (p, s.account) {
                (Packet::LoginRequest { username, password, session, seq }, None) => {
                    self.login(s, &username, &password, &session, seq, out)
                }
                (Packet::Unsequenced(m), Some(a)) => match ouch::parse_inbound(m) {
                    Ok(order) => self.order(a, order, now),
                    Err(e) => {
                        self.stats.bad_messages += 1;
                        crate::log_info!("exchange: {}: {e}", s.conn);
                        Verdict::Continue
                    }
                },
                (Packet::ClientHeartbeat | Packet::Debug(_), _) => Verdict::Continue,
                (Packet::LogoutRequest, _) => {
                    // The session is over now: the account may log in again at once.
                    self.release(s);
                    Verdict::Close
                }
                // Anything else before login, or a second login, or a server packet.
                _ => {
                    self.stats.bad_packets += 1;
                    Verdict::Abort
                }
            };
            if v != Verdict::Continue {
                return (used, v);
            }
        }
        self.pump(s, out, now);
        // Written through before the reply leaves: a crash cannot leave a
        // client holding a number the journal lost.
        self.flush();
        (used, Verdict::Continue)
    }

    fn on_wake(&mut self, s: &mut Session, out: &mut OutBuf, now: u64) -> Verdict {
        self.pump(s, out, now);
        Verdict::Continue
    }

    fn on_peer_fin(&mut self, s: &mut Session, _: &[u8], _: &mut OutBuf) -> Verdict {
        self.release(s);
        Verdict::Close
    }

    fn on_tick(&mut self, s: &mut Session, out: &mut OutBuf, now: u64) -> Verdict {
        self.pump(s, out, now);
        let Some(_) = s.account else {
            // No login within the timeout of the open: gone.
            return if now.saturating_sub(s.opened_at) > self.cfg.timeout_ns {
                Verdict::Abort
            } else {
                Verdict::Continue
            };
        };
        if now.saturating_sub(s.last_rx) > self.cfg.timeout_ns {
            self.stats.timeouts += 1;
            self.release(s);
            return Verdict::Close;
        }
        if !self.faults.mute && now.saturating_sub(s.last_tx) >= self.cfg.heartbeat_ns && out.spare() >= 3 {
            out.put(&[0, 1, soup::kind::SERVER_HEARTBEAT]);
            s.last_tx = now;
        }
        self.flush();
        Verdict::Continue
    }

    fn on_shutdown(&mut self, s: &mut Session, out: &mut OutBuf, now: u64) {
        self.pump(s, out, now);
        if s.account.is_some() && out.spare() >= 3 {
            out.put(&[0, 1, soup::kind::END_OF_SESSION]);
        }
        self.flush();
    }

    fn on_close(&mut self, mut s: Session, _reason: &str) {
        self.release(&mut s);
        self.flush();
    }

    fn summary(&self) -> String {
        self.line()
    }

    fn requests(&mut self) -> Option<&mut Requests> {
        Some(&mut self.requests)
    }
}
