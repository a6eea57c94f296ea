//! The socket-level API that every backend provides and the applications use.
//!
//! What every backend must provide (in the manner of mio's `sys` list):
//!
//! * `listen(addr)`: start accepting TCP connections on `addr`.
//! * `connect(addr)`: start an active open; `Connected` follows (at once for
//!   backends that connect synchronously).
//! * `poll(timeout, events)`: make progress and report readiness, and return
//!   the monotonic time (ns, `clock::mono_ns`) read once after any wait: the
//!   loop's clock for this iteration, so nobody reads it twice. Events are
//!   *hints*: a consumer that sees `Readable` reads until `WouldBlock`; a
//!   backend may report the same readiness more than once (level-triggered)
//!   or only on change (edge-triggered), and consumers must handle both.
//!   `timeout == Some(ZERO)` never blocks (the `--spin` mode).
//! * `recv(conn, buf)`: `Ok(0)` means the peer sent FIN; `WouldBlock` means
//!   nothing now; any other error means the connection is dead. A short read
//!   (fewer bytes than `buf` holds) means the receive queue is empty for now,
//!   and the backend must report `Readable` again when more data, a FIN or an
//!   error arrives; consumers may stop reading after a short read. (epoll in
//!   edge-triggered mode guarantees this on Linux: new data raises a new edge.)
//! * `send(conn, buf)`: may accept fewer bytes than offered; `WouldBlock` when
//!   none fit. After a short write or `WouldBlock`, the backend must report
//!   `Writable` when space frees up.
//! * `shutdown_write(conn)`: send FIN after the queued data.
//! * `close(conn)`: forget the connection; its id may be reused afterwards.
//!
//! Close and linger differ by backend (docs/ARCHITECTURE.md has the table):
//!
//! * kernel: `close` is `close(2)`. After `shutdown_write` the kernel
//!   finishes the FIN handshake in the background with no time limit and
//!   keeps TIME-WAIT; with unread input queued it sends RST. `connect` is
//!   synchronous: a refused open fails there.
//! * stack (xdp): `close` after `shutdown_write` leaves the socket to finish
//!   delivering its queued data and its FIN handshake in the background for
//!   at most the linger (`--linger-ms`, default 5 s), then resets it (RST,
//!   counted as `linger_expired`). A socket that reached TIME-WAIT is freed,
//!   and a compact TIME-WAIT record answers for its 4-tuple for 60 s: it
//!   sends the final ACK if smoltcp had not, and ACKs a retransmitted FIN.
//!   `close` without `shutdown_write` aborts at once (RST). `connect` is
//!   asynchronous: a refused open is reported `Readable` (never
//!   `Connected`), and `recv` fails with `ConnectionRefused`. A SYN over
//!   `--max-conns` is answered with a RST at once, on both backends.
//!
//! So a consumer that must not lose replies half-closes, drains input until
//! the peer's FIN (or a linger it chooses), and only then closes, as the
//! server does.
//!
//! Connection ids are small integers, dense and reused, so applications can
//! index tables with them.

pub mod gate;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// SO_BUSY_POLL in microseconds when the loop spins (`--busy-poll-us`),
/// for both backends.
pub const BUSY_POLL_US_DEFAULT: u32 = 50;

/// Identifies one connection within one transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub usize);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Readiness reported by [`Transport::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A new inbound connection, already readable/writable as data arrives.
    Accepted(ConnId),
    /// An active open completed.
    Connected(ConnId),
    /// Data, FIN or an error may be waiting: call `recv` until `WouldBlock`.
    Readable(ConnId),
    /// Send space may be available.
    Writable(ConnId),
}

/// How the event loop waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitMode {
    /// Sleep in the kernel until an event or the next timer.
    Block,
    /// Never sleep: poll with a zero timeout (busy poll).
    Spin,
}

/// Backend-independent counters every transport keeps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TransportStats {
    pub accepted: u64,
    pub connected: u64,
    pub closed: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Iterations of `poll` that returned at least one event.
    pub polls_useful: u64,
    /// Iterations of `poll` that returned nothing.
    pub polls_idle: u64,
}

impl TransportStats {
    /// Add another loop's counters (the totals of several loops).
    pub fn add(&mut self, o: &TransportStats) {
        self.accepted += o.accepted;
        self.connected += o.connected;
        self.closed += o.closed;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.polls_useful += o.polls_useful;
        self.polls_idle += o.polls_idle;
    }

    /// Count one `poll`: useful if it produced events.
    pub fn count_poll(&mut self, events: &[Event]) {
        if events.is_empty() {
            self.polls_idle += 1;
        } else {
            self.polls_useful += 1;
        }
    }
}

/// What a backend observed about the bytes a `recv` returned, or about its
/// loop: named signals, owned by this layer. Tracing keeps them in its
/// records under the same bits; a backend needs to know nothing of tracing.
pub mod signal {
    /// The connection saw an out-of-order or repeated TCP segment since it
    /// was last read: a segment was lost and retransmitted.
    pub const RETRANSMIT: u32 = 1 << 0;
    /// The peer advertised a zero receive window since it was last read.
    pub const ZERO_WINDOW: u32 = 1 << 1;
    /// The TX ring had no room, or the TX kick found the kernel busy.
    pub const KICK_WAIT: u32 = 1 << 3;
    /// The fill ring was starved: the kernel had few frames to receive into.
    pub const FILL_RING_STARVED: u32 = 1 << 4;
    /// The poll blocked (slept in epoll_wait or poll(2)).
    pub const SLEPT: u32 = 1 << 7;
    /// The connection retransmitted between a reply's send and its ACK
    /// ([`AckEvent::retransmitted`](super::AckEvent)).
    pub const REPLY_RETX: u32 = 1 << 9;
}

/// The arrival of the bytes the last successful `recv` on a connection
/// returned.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RxTrace {
    /// When the oldest of them arrived (monotonic ns; 0: unknown).
    pub arrival_ns: u64,
    /// [`signal`] bits seen on the connection since it was last read.
    pub flags: u32,
}

/// The peer acknowledged output of a connection (tracing: the ACK stage of
/// a sampled reply, docs/ATTRIBUTION.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckEvent {
    pub conn: ConnId,
    /// Bytes of the connection's output the peer has acknowledged, counted
    /// from the first byte sent after tracing began.
    pub acked: u64,
    /// When the ACK arrived (monotonic ns).
    pub at_ns: u64,
    /// The connection retransmitted since its previous event (or since the
    /// watch began): the ACK waited for a retransmission.
    pub retransmitted: bool,
    /// Retransmissions of the connection found spurious since its previous
    /// event (the peer reported the copy as a duplicate, D-SACK, or the ACK
    /// for the original came before the copy left): the peer had the data
    /// and only its ACK was late. May come with no new bytes acknowledged,
    /// after the ACK it concerns.
    pub spurious: u32,
}

/// What a counter counts, which decides its metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterKind {
    /// Something that happened: `tailgate_backend_total{counter="NAME"}`.
    Event,
    /// Something lost or refused: `tailgate_drops_total{reason="NAME"}`.
    Drop,
    /// A current value, not a count: `tailgate_backend_gauge{name="NAME"}`.
    Gauge,
}

/// One named backend counter. The name is the same in the exit line
/// (`NAME=value`), in the metric's label, and in the docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub name: &'static str,
    pub kind: CounterKind,
    pub value: u64,
}

/// Most counters one list holds.
pub const MAX_COUNTERS: usize = 80;

/// A fixed-capacity list of named counters (no allocation: the loop fills
/// one every 100 ms).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    items: [Counter; MAX_COUNTERS],
    len: usize,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter().map(|c| (c.name, c.value))).finish()
    }
}

impl Default for Counters {
    fn default() -> Self {
        Counters { items: [Counter { name: "", kind: CounterKind::Event, value: 0 }; MAX_COUNTERS], len: 0 }
    }
}

impl Counters {
    /// Add (or, if `name` is already there, set) a counter. Past
    /// [`MAX_COUNTERS`] a new name is ignored in release builds and panics
    /// in debug builds, so the tests catch a backend that outgrows the
    /// list (the xdp backend's is the longest: its stack's, its socket's
    /// and its XDP program's counters; tests/counters.rs counts them).
    pub fn set(&mut self, name: &'static str, kind: CounterKind, value: u64) {
        if let Some(c) = self.items[..self.len].iter_mut().find(|c| c.name == name) {
            c.value = value;
            return;
        }
        debug_assert!(self.len < MAX_COUNTERS, "more than {MAX_COUNTERS} counters: {name}");
        if self.len < MAX_COUNTERS {
            self.items[self.len] = Counter { name, kind, value };
            self.len += 1;
        }
    }

    /// An event counter.
    pub fn event(&mut self, name: &'static str, value: u64) {
        self.set(name, CounterKind::Event, value);
    }

    /// A drop counter.
    pub fn drop(&mut self, name: &'static str, value: u64) {
        self.set(name, CounterKind::Drop, value);
    }

    /// A gauge (a current value).
    pub fn gauge(&mut self, name: &'static str, value: u64) {
        self.set(name, CounterKind::Gauge, value);
    }

    /// Every counter of `other`, added or set.
    pub fn extend(&mut self, other: &Counters) {
        for c in other.iter() {
            self.set(c.name, c.kind, c.value);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Counter> {
        self.items[..self.len].iter()
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        self.iter().find(|c| c.name == name).map(|c| c.value)
    }

    /// `name=value` pairs, space separated, for the exit line.
    pub fn line(&self) -> String {
        let mut s = String::new();
        for c in self.iter() {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(c.name);
            s.push('=');
            s.push_str(&c.value.to_string());
        }
        s
    }
}

/// Reads counters that take a system call, from the reporter thread.
pub type CounterReader = Box<dyn Fn() -> Counters + Send>;

/// The socket-level API. See the module docs for the contract.
pub trait Transport {
    /// Short name of the backend, as used in `--backend` and in reports.
    fn name(&self) -> &'static str;
    fn listen(&mut self, addr: SocketAddr) -> io::Result<()>;
    fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId>;
    fn poll(&mut self, timeout: Option<Duration>, events: &mut Vec<Event>) -> io::Result<u64>;
    fn recv(&mut self, conn: ConnId, buf: &mut [u8]) -> io::Result<usize>;
    fn send(&mut self, conn: ConnId, buf: &[u8]) -> io::Result<usize>;
    fn shutdown_write(&mut self, conn: ConnId) -> io::Result<()>;
    fn close(&mut self, conn: ConnId);
    /// Stop accepting connections (a gateway draining for shutdown): close
    /// every listener, so new connection attempts are refused.
    fn stop_listening(&mut self) {}
    /// Closed connections still delivering data or finishing their FIN
    /// handshake that die with the process (the stack's; the kernel
    /// finishes its own after the process exits).
    fn closing(&self) -> usize {
        0
    }
    /// Put on the wire what `send` queued since the last `poll`. A no-op for
    /// backends whose `send` transmits at once (the kernel); a user-space
    /// stack sends its segments here, so replies leave in the same loop
    /// iteration that produced them. `now_ns` is the time `poll` returned.
    fn flush(&mut self, _now_ns: u64) {}
    fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr>;
    /// The local port of `conn` (which listener took it).
    fn local_port(&self, _conn: ConnId) -> Option<u16> {
        None
    }
    fn stats(&self) -> TransportStats;
    /// The end-of-run log line: the backend's name, its counters
    /// (including those `counter_reader` reads) and anything else worth a
    /// word. The counters' names are those of the metrics.
    fn report(&self) -> Option<String> {
        None
    }
    /// Counters for metrics, read by the loop every 100 ms: no system calls
    /// here (counters that need one go through `counter_reader`).
    fn counters(&self) -> Counters {
        Counters::default()
    }
    /// A reader of the counters that take a system call (the XDP program's),
    /// for the reporter thread, so the pinned loop does not read them.
    fn counter_reader(&self) -> Option<CounterReader> {
        None
    }

    // Tracing (docs/ATTRIBUTION.md): arrival times and signals. Backends
    // that see nothing keep the defaults: samples then carry the poll time
    // as the arrival.

    /// Keep arrival times and per-connection observations from now on.
    fn set_tracing(&mut self, _on: bool) {}
    /// Arrival time and flags of the bytes the last successful `recv` on
    /// `conn` returned.
    fn rx_trace(&mut self, _conn: ConnId) -> RxTrace {
        RxTrace::default()
    }
    /// Loop-level [`signal`]s since the last call (fill ring starved, kick
    /// wait, slept), then cleared.
    fn loop_flags(&mut self) -> u32 {
        0
    }
    /// Does `flush` put frames on the wire (so the time after it is the TX
    /// completion a sample records)? False when `send` already did.
    fn flush_transmits(&self) -> bool {
        false
    }
    /// Can this transport report the peer's ACKs of a connection's output
    /// ([`Transport::acks`])? Asked after `set_tracing(true)`.
    fn tracks_acks(&self) -> bool {
        false
    }
    /// Turn ACK reports off (`--sample-acks off`) or back on; asked after
    /// `set_tracing(true)`, before any connection.
    fn set_ack_tracking(&mut self, _on: bool) {}
    /// Report `conn`'s ACK progress from now on (`on`), or stop. A backend
    /// that reports every connection's ACKs anyway ignores it.
    fn watch_acks(&mut self, _conn: ConnId, _on: bool) {}
    /// ACK progress seen since the last call, appended to `out`.
    fn acks(&mut self, _out: &mut Vec<AckEvent>) {}
}

/// Is this error "try again later" rather than "the connection is gone"?
pub fn would_block(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}
