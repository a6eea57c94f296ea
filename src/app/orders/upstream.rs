//! The loop's session to the exchange: one SoupBinTCP session per loop,
//! opened from the loop itself ([`crate::app::Requests::connect`]), logged
//! in again with backoff after every loss, asking for replay from the next
//! message not processed (persisted: [`SessionState`]).
//!
//! Orders go out in OUCH Enter Order messages whose token (UserRefNum) the
//! gateway assigns, rising for the session's whole life. What the client
//! sessions write for the exchange goes into this module's buffer, and the
//! upstream connection is woken to send it.
//!
//! After a reconnect every order still waiting for its Accepted is sent
//! again, in token order, and every cancel still waiting for its answer:
//! the venue ignores a token it has seen (TCP delivered everything before
//! the last one it saw), so what it had is not entered twice, and what was
//! lost in the break is entered now.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::app::OutBuf;
use crate::transport::ConnId;
use crate::upstream::soup_client::{SoupClient, SoupClientConfig, State};
use crate::upstream::state::SessionState;
use crate::venue::ouch::{self, Inbound};

/// Bytes of orders and cancels buffered for the exchange while its
/// connection takes what it was given before.
pub const UP_BUF_BYTES: usize = 256 * 1024;
/// The token an outbound connect is asked with.
pub const CONNECT_TOKEN: u64 = 1;

/// Where a loop's session goes, and as whom.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub addr: SocketAddr,
    pub soup: SoupClientConfig,
    /// Its username, for the log.
    pub username: String,
    pub state: Arc<SessionState>,
}

#[derive(Debug)]
pub struct Upstream {
    pub cfg: UpstreamConfig,
    pub client: SoupClient,
    /// The connection the session runs on (opening or open).
    pub conn: Option<ConnId>,
    /// A connect was asked for and has not opened or failed yet.
    pub connecting: bool,
    pub out: OutBuf,
    /// The gateway is shutting down: it logged out, and does not come back.
    pub leaving: bool,
    /// The session (connection, generation) whose full outbox holds up the
    /// exchange's reports, and since when.
    pub blocked: Option<(usize, u64, u64)>,
    next_token: u32,
}

impl Upstream {
    pub fn new(cfg: UpstreamConfig) -> Upstream {
        let next_seq = cfg.state.next_seq.load(Ordering::Relaxed);
        let next_token = cfg.state.next_token.load(Ordering::Relaxed).max(1);
        Upstream {
            client: SoupClient::new(cfg.soup, next_seq),
            cfg,
            conn: None,
            connecting: false,
            out: OutBuf::with_capacity(UP_BUF_BYTES),
            leaving: false,
            blocked: None,
            next_token,
        }
    }

    /// Logged in: orders may go.
    pub fn up(&self) -> bool {
        matches!(self.client.state, State::Up { .. })
    }

    /// The token the next new order will get.
    pub fn next_token(&self) -> u32 {
        self.next_token
    }

    /// A token for a new order, if one is reserved (see `SessionState`).
    pub fn token(&mut self) -> Option<u32> {
        let t = self.next_token;
        if t >= self.cfg.state.token_limit.load(Ordering::Acquire) {
            return None;
        }
        self.next_token = t + 1;
        self.cfg.state.next_token.store(t + 1, Ordering::Relaxed);
        Some(t)
    }

    /// Room for one more message of `len` bytes (packet header included)?
    pub fn room(&self, len: usize) -> bool {
        self.out.spare() >= len + 3
    }

    /// Queue one OUCH message; false when not logged in or out of room.
    pub fn send(&mut self, m: &Inbound, now: u64) -> bool {
        let mut b = [0u8; ouch::size::MAX];
        let Some(n) = ouch::encode_inbound(m, &mut b) else { return false };
        self.client.send(&b[..n], &mut self.out, now)
    }

    /// Move what is buffered into the connection's output.
    pub fn flush(&mut self, out: &mut OutBuf) {
        self.out.move_into(out);
    }

    /// The connection is gone: what was buffered for it will be sent again
    /// from the order table after the next login.
    pub fn lost(&mut self, now: u64) {
        self.conn = None;
        self.connecting = false;
        self.blocked = None;
        self.out.clear();
        self.client.on_closed(now);
    }
}
