//! Applications that run on any [`crate::transport::Transport`], driven by
//! [`crate::server::Server`]. An application sees bytes in and writes bytes
//! out; it never touches sockets.
//!
//! * [`orders`]: the order-entry gateway (docs/PROTOCOL.md);
//! * [`echo`]: plain byte echo with half-close;
//! * [`sockperf`]: echo that understands sockperf's 14-byte header;
//! * [`udp_echo`]: UDP echo on raw frames (the xdp backend's frame loop, no
//!   transport): the floor of the benchmarks;
//! * [`tcp_floor`]: a stateless TCP echo on the same frame loop: the floor
//!   for TCP, what the lab's TCP costs without our stack ([`floor`]: what
//!   the two floors share);
//! * [`requests`]: what an application asks of its loop: connections to
//!   open (an application that opens connections, such as examples/relay.rs,
//!   gets their events as for accepted ones) and connections to wake.

pub mod echo;
pub mod floor;
pub mod orders;
pub mod requests;
pub mod sockperf;
pub mod tcp_floor;
pub mod udp_echo;

use crate::sampler::tracer::Tracer;
use crate::transport::ConnId;
pub use requests::{Connect, Requests};

/// What the server should do with a connection after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep going.
    Continue,
    /// Stop reading, send what is queued, then close gracefully.
    Close,
    /// Protocol violation: close now, dropping what is queued.
    Abort,
    /// Half-close: send what is queued, then FIN, and keep reading: input
    /// still reaches the application until the peer's FIN, and the
    /// application ends the connection later with `Close` (a relay passing
    /// one side's FIN on to the other).
    CloseWrite,
}

/// A fixed-capacity output buffer. Applications check [`OutBuf::spare`]
/// before producing output and stop consuming input when it is short, which
/// is how backpressure reaches the peer.
#[derive(Debug)]
pub struct OutBuf {
    buf: Vec<u8>,
    cap: usize,
}

impl OutBuf {
    pub fn with_capacity(cap: usize) -> Self {
        OutBuf { buf: Vec::with_capacity(cap), cap }
    }
    pub fn spare(&self) -> usize {
        self.cap - self.buf.len()
    }
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }
    /// Append `bytes`; returns false (and appends nothing) if they do not fit.
    pub fn put(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > self.spare() {
            return false;
        }
        self.buf.extend_from_slice(bytes);
        true
    }
    /// Overwrite one byte already in the buffer (no-op if out of range).
    pub fn patch(&mut self, at: usize, byte: u8) {
        if let Some(b) = self.buf.get_mut(at) {
            *b = byte;
        }
    }
    /// Move what fits of this buffer's bytes into `out` (a byte stream: a
    /// message may be split between two moves).
    pub fn move_into(&mut self, out: &mut OutBuf) {
        let n = self.len().min(out.spare());
        if n > 0 {
            out.put(&self.buf[..n]);
            self.consume(n);
        }
    }

    /// Drop the first `n` bytes (they were sent).
    pub fn consume(&mut self, n: usize) {
        self.buf.drain(..n.min(self.buf.len()));
    }
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

pub use crate::sampler::AppCounters;

/// Everything an application implements.
pub trait App {
    /// Per-connection state.
    type Session;
    /// Does `on_input` use `recv_ts`? If not, the server skips the wall-clock
    /// read per input (it shows in a spinning loop's profile).
    const WANTS_RECV_TS: bool = false;
    /// May `on_input` leave input unconsumed while it waits for another
    /// connection to take what it holds (a relay's full pipe)? It then
    /// wakes this connection when there is room ([`Requests::wake`]); the
    /// server does not reset it for a full input buffer, and holds the
    /// peer's FIN behind that input.
    const HOLDS_INPUT: bool = false;
    /// With [`App::HOLDS_INPUT`]: is this connection's input held now
    /// (waiting for another connection), rather than only incomplete? A
    /// held input keeps the peer's FIN behind it; an incomplete one does not.
    fn holding_input(&self, _s: &Self::Session) -> bool {
        Self::HOLDS_INPUT
    }
    fn name(&self) -> &'static str;
    /// A connection opened. `now` is monotonic ns.
    fn open(&mut self, conn: ConnId, now: u64) -> Self::Session;
    /// Does the application want each accepted connection's peer address
    /// ([`App::open_from`])? It costs the kernel backend a getpeername(2)
    /// per accept.
    const WANTS_PEER: bool = false;
    /// A connection opened from `peer` to local `port` (with [`App::WANTS_PEER`]).
    fn open_from(
        &mut self,
        conn: ConnId,
        _peer: Option<std::net::SocketAddr>,
        _port: Option<u16>,
        now: u64,
    ) -> Self::Session {
        self.open(conn, now)
    }
    /// Once per loop iteration, before the connections are served: a
    /// cheap look at what other threads handed the application (an
    /// atomic load or two; its wakes are served in this iteration).
    fn on_iteration(&mut self, _now: u64) {}
    /// Consume complete messages from `input`, appending replies to `out`.
    /// Returns the number of bytes consumed and a verdict. `recv_ts` is the
    /// wall-clock time the bytes were read; `now` is monotonic ns. An
    /// application with message boundaries calls `tr.parsed` and
    /// `tr.handled` once per message (see [`Tracer`]).
    fn on_input(
        &mut self,
        s: &mut Self::Session,
        input: &[u8],
        out: &mut OutBuf,
        tr: &mut Tracer,
        recv_ts: u64,
        now: u64,
    ) -> (usize, Verdict);
    /// The peer sent FIN. Whatever remains unconsumed in the input is passed.
    /// `Close` ends the connection once what is queued is sent; `Continue`
    /// keeps it half-closed, open for output (the application returns
    /// `Close` later, from a wake or a tick). Called once per connection.
    fn on_peer_fin(&mut self, s: &mut Self::Session, leftover: &[u8], out: &mut OutBuf) -> Verdict;
    /// Called periodically (see `Server` tick) for timers.
    fn on_tick(&mut self, s: &mut Self::Session, out: &mut OutBuf, now: u64) -> Verdict;
    /// Called once a tick, before the connections' ticks, for the
    /// application's own timers (an outbound session to open again).
    fn on_loop_tick(&mut self, _now: u64) {}
    /// The gateway is shutting down: append the protocol's goodbye, if it
    /// has one (orders: Logout, reason Shutdown). The server then sends what
    /// is queued and closes; no more input reaches the session.
    fn on_shutdown(&mut self, _s: &mut Self::Session, _out: &mut OutBuf, _now: u64) {}
    /// The connection is gone. `reason` says why, for the log.
    fn on_close(&mut self, s: Self::Session, reason: &str);
    /// A one-line summary of counters for the end-of-run report.
    fn summary(&self) -> String;
    /// Counters for metrics.
    fn counters(&self) -> AppCounters {
        AppCounters::default()
    }

    // Outbound connections, and work across connections. An application
    // that opens none keeps the defaults.

    /// The application's requests to its loop ([`Requests::connect`],
    /// [`Requests::wake`]), which the loop takes after every callback.
    /// `None`: it makes none.
    fn requests(&mut self) -> Option<&mut Requests> {
        None
    }
    /// A connection asked for with `token` is open: its session. From now
    /// on it is served like an accepted one (input, FIN, ticks, close).
    fn open_outbound(&mut self, conn: ConnId, _token: u64, now: u64) -> Self::Session {
        self.open(conn, now)
    }
    /// A connection asked for with `token` did not open: refused, no route,
    /// no local port, or no answer within the loop's connect timeout.
    fn on_refused(&mut self, _token: u64, _reason: &str) {}
    /// The application asked to wake this connection ([`Requests::wake`]):
    /// append what it has for it. Its unconsumed input is offered again after.
    fn on_wake(&mut self, _s: &mut Self::Session, _out: &mut OutBuf, _now: u64) -> Verdict {
        Verdict::Continue
    }
}
