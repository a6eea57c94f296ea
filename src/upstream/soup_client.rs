//! The client side of a SoupBinTCP 3.0 session, as the gateway's upstream
//! leg will run it on its loop: log in asking for the next sequence number
//! not yet processed, deliver each sequenced message exactly once (a
//! replayed one already processed is skipped), heartbeat after 1 s without
//! sending, give up on a venue silent for 15 s, and come back with backoff.
//!
//! Transport-free: the caller feeds it the connection's input and events
//! and sends what it writes into an [`OutBuf`]. No allocation, no I/O.

use crate::app::OutBuf;
use crate::venue::soup::{self, Packet, SoupError};

/// What the client is given.
#[derive(Debug, Clone, Copy)]
pub struct SoupClientConfig {
    pub username: [u8; soup::USERNAME_LEN],
    pub password: [u8; soup::PASSWORD_LEN],
    pub heartbeat_ns: u64,
    pub timeout_ns: u64,
    /// Reconnect backoff: the first wait, doubled per failure up to the last.
    pub backoff_ns: (u64, u64),
}

impl SoupClientConfig {
    pub fn new(username: &str, password: &str) -> Self {
        let mut u = [b' '; soup::USERNAME_LEN];
        let mut p = [b' '; soup::PASSWORD_LEN];
        soup::put_alpha(&mut u, username.as_bytes());
        soup::put_alpha(&mut p, password.as_bytes());
        SoupClientConfig {
            username: u,
            password: p,
            heartbeat_ns: 1_000_000_000,
            timeout_ns: 15_000_000_000,
            backoff_ns: (100_000_000, 5_000_000_000),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No connection; the next attempt is due at `at`.
    Down { at: u64 },
    /// Connecting, or connected and waiting for Login Accepted.
    LoggingIn,
    /// Logged in to `session`.
    Up { session: [u8; soup::SESSION_LEN] },
}

/// What one read brought, besides the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// Login Accepted: up, replay from `from`; `lost` messages the venue
    /// can no longer replay (its numbers start after what was asked).
    Up {
        from: u64,
        lost: u64,
    },
    /// The venue refused the login (`A` not authorized, `S` session
    /// unavailable), ended the session, or broke the protocol: close the
    /// connection; the client goes down and retries later.
    Down(Why),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Rejected(u8),
    EndOfSession,
    Protocol(SoupError),
    /// Nothing from the venue for the timeout.
    Silent,
    /// Login Accepted with a next number of 0, or too large to count on from.
    BadSequence(u64),
}

/// The backoff is reset once a session has stayed up this long (a venue
/// that accepts the login and then drops the session is not retried at
/// once, over and over).
pub const STABLE_NS: u64 = 10_000_000_000;

/// Counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SoupClientStats {
    pub logins: u64,
    pub delivered: u64,
    /// Sequenced messages already processed, seen again in a replay.
    pub duplicates_skipped: u64,
    pub heartbeats_in: u64,
    pub heartbeats_out: u64,
    pub downs: u64,
    /// Messages the venue could no longer replay (a login answered with a
    /// later number than asked).
    pub lost: u64,
    /// Logins answered with a lower number than asked (a replay from
    /// earlier, or a new session: see the log line).
    pub renumbered: u64,
}

#[derive(Debug)]
pub struct SoupClient {
    cfg: SoupClientConfig,
    pub state: State,
    /// The next sequenced number to process (what a login asks for).
    next: u64,
    /// The number the next Sequenced packet carries (from Login Accepted).
    incoming: u64,
    last_rx: u64,
    last_tx: u64,
    backoff: u64,
    /// When the session came up.
    up_since: u64,
    pub stats: SoupClientStats,
}

impl SoupClient {
    /// A client that has processed every message before `next` (1: none;
    /// the persisted number after a restart).
    pub fn new(cfg: SoupClientConfig, next: u64) -> Self {
        SoupClient {
            cfg,
            state: State::Down { at: 0 },
            next: next.max(1),
            incoming: 0,
            last_rx: 0,
            last_tx: 0,
            backoff: cfg.backoff_ns.0,
            up_since: 0,
            stats: SoupClientStats::default(),
        }
    }

    /// The next sequenced number to process: persist it to resume from it.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Is a connection attempt due?
    pub fn connect_due(&self, now: u64) -> bool {
        matches!(self.state, State::Down { at } if now >= at)
    }

    /// An attempt is under way (the caller asked its loop to connect).
    pub fn connecting(&mut self) {
        self.state = State::LoggingIn;
    }

    /// The connection is open: log in. False if `out` has no room.
    pub fn on_connected(&mut self, out: &mut OutBuf, now: u64) -> bool {
        let p = Packet::LoginRequest {
            username: self.cfg.username,
            password: self.cfg.password,
            session: [b' '; soup::SESSION_LEN],
            seq: self.next,
        };
        self.last_rx = now;
        self.put(&p, out, now)
    }

    fn put(&mut self, p: &Packet<'_>, out: &mut OutBuf, now: u64) -> bool {
        let mut b = [0u8; 64 + crate::venue::ouch::size::MAX];
        let Some(n) = soup::encode(p, &mut b) else { return false };
        if !out.put(&b[..n]) {
            return false;
        }
        self.last_tx = now;
        true
    }

    /// Send one OUCH message (Unsequenced Data). False if not logged in or
    /// `out` has no room.
    pub fn send(&mut self, msg: &[u8], out: &mut OutBuf, now: u64) -> bool {
        matches!(self.state, State::Up { .. }) && self.put(&Packet::Unsequenced(msg), out, now)
    }

    /// Say goodbye (Logout Request). False if not logged in or no room.
    pub fn logout(&mut self, out: &mut OutBuf, now: u64) -> bool {
        matches!(self.state, State::Up { .. }) && self.put(&Packet::LogoutRequest, out, now)
    }

    /// Take what `input` holds: each sequenced message not yet processed
    /// goes to `deliver(seq, message)`, which returns false when it cannot
    /// take it now (it is then left in the input, unconsumed, with what
    /// follows). Returns the bytes used and what changed.
    pub fn on_input(&mut self, input: &[u8], now: u64, mut deliver: impl FnMut(u64, &[u8]) -> bool) -> (usize, Change) {
        let mut used = 0;
        loop {
            let (p, n) = match soup::parse(&input[used..]) {
                Ok(Some(x)) => x,
                Ok(None) => return (used, Change::None),
                Err(e) => return (input.len(), self.down(now, Why::Protocol(e))),
            };
            used += n;
            self.last_rx = now;
            match (p, self.state) {
                (Packet::LoginAccepted { next_seq, .. }, State::LoggingIn) if next_seq == 0 || next_seq > 1 << 62 => {
                    return (used, self.down(now, Why::BadSequence(next_seq)));
                }
                (Packet::LoginAccepted { session, next_seq }, State::LoggingIn) => {
                    self.state = State::Up { session };
                    self.incoming = next_seq;
                    self.up_since = now;
                    self.stats.logins += 1;
                    let mut lost = 0;
                    if next_seq < self.next {
                        // A replay from before what was processed: skipped
                        // up to it. If the venue started a new session (a new
                        // day) instead, what it sends below that number is new
                        // and would be lost: said loudly, and counted.
                        self.stats.renumbered += 1;
                        crate::log_warn!(
                            "upstream: login accepted from sequence number {next_seq}, below the {} processed: \
                             messages before it are taken as already processed (if this is a new session, \
                             remove the session's state file)",
                            self.next
                        );
                    } else if next_seq > self.next {
                        // The venue cannot replay what we asked for: its
                        // numbers start later. What lies between is gone.
                        lost = next_seq - self.next;
                        self.stats.lost += lost;
                        self.next = next_seq;
                    }
                    return (used, Change::Up { from: next_seq, lost });
                }
                (Packet::LoginRejected(r), State::LoggingIn) => return (used, self.down(now, Why::Rejected(r))),
                (Packet::Sequenced(m), State::Up { .. }) => {
                    let seq = self.incoming;
                    if seq < self.next {
                        self.stats.duplicates_skipped += 1;
                    } else if deliver(seq, m) {
                        self.next = seq + 1;
                        self.stats.delivered += 1;
                    } else {
                        return (used - n, Change::None);
                    }
                    self.incoming = seq + 1;
                }
                (Packet::ServerHeartbeat, _) => self.stats.heartbeats_in += 1,
                (Packet::Debug(_), _) => {}
                (Packet::EndOfSession, _) => return (used, self.down(now, Why::EndOfSession)),
                (_, _) => return (used, self.down(now, Why::Protocol(SoupError::UnknownType(input[used - n + 2])))),
            }
        }
    }

    /// Heartbeat and silence, once a tick; Some when the connection must go.
    pub fn on_tick(&mut self, out: &mut OutBuf, now: u64) -> Option<Why> {
        let connected = !matches!(self.state, State::Down { .. });
        if connected && now.saturating_sub(self.last_rx) > self.cfg.timeout_ns {
            self.down(now, Why::Silent);
            return Some(Why::Silent);
        }
        let up = matches!(self.state, State::Up { .. });
        if up && now.saturating_sub(self.up_since) >= STABLE_NS {
            self.backoff = self.cfg.backoff_ns.0;
        }
        if up
            && now.saturating_sub(self.last_tx) >= self.cfg.heartbeat_ns
            && self.put(&Packet::ClientHeartbeat, out, now)
        {
            self.stats.heartbeats_out += 1;
        }
        None
    }

    /// The connection is gone (closed, refused, reset): retry after the backoff.
    pub fn on_closed(&mut self, now: u64) {
        if !matches!(self.state, State::Down { .. }) {
            self.down(now, Why::Silent);
        }
    }

    fn down(&mut self, now: u64, why: Why) -> Change {
        self.stats.downs += 1;
        self.state = State::Down { at: now + self.backoff };
        self.backoff = (self.backoff * 2).min(self.cfg.backoff_ns.1);
        Change::Down(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(p: Packet<'_>) -> Vec<u8> {
        let mut b = [0u8; 128];
        let n = soup::encode(&p, &mut b).unwrap();
        b[..n].to_vec()
    }

    #[test]
    fn a_replay_from_before_what_was_processed_delivers_each_message_once() {
        let mut c = SoupClient::new(SoupClientConfig::new("gw01", "pw"), 3);
        assert!(c.connect_due(0));
        c.connecting();
        let mut out = OutBuf::with_capacity(256);
        assert!(c.on_connected(&mut out, 10));
        // It asks for 3, right-justified.
        assert_eq!(&out.as_slice()[29..49], b"                   3");
        let mut input = pkt(Packet::LoginAccepted { session: *b"         1", next_seq: 1 });
        for m in [&b"one"[..], b"two", b"three", b"four"] {
            input.extend(pkt(Packet::Sequenced(m)));
        }
        let mut got = Vec::new();
        let (used, ch) = c.on_input(&input, 20, |s, m| {
            got.push((s, m.to_vec()));
            true
        });
        assert_eq!(ch, Change::Up { from: 1, lost: 0 });
        let (used2, ch2) = c.on_input(&input[used..], 20, |s, m| {
            got.push((s, m.to_vec()));
            true
        });
        assert_eq!((used + used2, ch2), (input.len(), Change::None));
        assert_eq!(got, vec![(3, b"three".to_vec()), (4, b"four".to_vec())]);
        assert_eq!((c.stats.duplicates_skipped, c.next_seq()), (2, 5));
    }

    #[test]
    fn heartbeats_silence_and_backoff() {
        let mut cfg = SoupClientConfig::new("gw01", "pw");
        cfg.backoff_ns = (100, 400);
        let mut c = SoupClient::new(cfg, 1);
        c.connecting();
        let mut out = OutBuf::with_capacity(256);
        c.on_connected(&mut out, 0);
        c.on_input(&pkt(Packet::LoginAccepted { session: *b"         1", next_seq: 1 }), 0, |_, _| true);
        out.clear();
        assert_eq!(c.on_tick(&mut out, 1_000_000_000), None);
        assert_eq!(out.as_slice(), &[0, 1, b'R'], "a heartbeat after 1 s without sending");
        assert_eq!(c.on_tick(&mut out, 16_000_000_001), Some(Why::Silent));
        assert_eq!(c.state, State::Down { at: 16_000_000_101 });
        // Each failure doubles the wait, up to the cap.
        for (t, wait) in [(20_000_000_000u64, 200), (30_000_000_000, 400), (40_000_000_000, 400)] {
            c.connecting();
            c.on_closed(t);
            assert_eq!(c.state, State::Down { at: t + wait });
        }
        // A refused login goes down too, and a protocol error.
        c.connecting();
        let (_, ch) = c.on_input(&pkt(Packet::LoginRejected(b'A')), 1, |_, _| true);
        assert_eq!(ch, Change::Down(Why::Rejected(b'A')));
        c.connecting();
        let (_, ch) = c.on_input(&[0, 0], 1, |_, _| true);
        assert!(matches!(ch, Change::Down(Why::Protocol(_))));
    }
}
