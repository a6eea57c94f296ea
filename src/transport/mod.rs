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
//! Connection ids are small integers, dense and reused, so applications can
//! index tables with them.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

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
    /// Count one `poll`: useful if it produced events.
    pub fn count_poll(&mut self, events: &[Event]) {
        if events.is_empty() {
            self.polls_idle += 1;
        } else {
            self.polls_useful += 1;
        }
    }
}

/// Backend counters for metrics; each backend fills what it can see.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BackendCounters {
    /// Ethernet frames through the AF_XDP socket (xdp).
    pub frames_in: u64,
    pub frames_out: u64,
    /// Frames dropped before the stack: truncated or bad checksum (xdp).
    pub rx_invalid: u64,
    /// TX frames dropped for want of a free frame or ring slot (xdp).
    pub tx_starved: u64,
    /// Connections refused at the connection limit (`--max-conns`).
    pub refused: u64,
    /// Failed accepts (kernel).
    pub accept_errors: u64,
    /// The XDP program's counters: seen, redirected, passed, malformed,
    /// dropped by `--inject loss`.
    pub xdp: [u64; 5],
}

pub use crate::sampler::tracer::RxTrace;

/// Reads counters that take a system call, from the reporter thread.
pub type CounterReader = Box<dyn Fn() -> [u64; 5] + Send>;

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
    /// Put on the wire what `send` queued since the last `poll`. A no-op for
    /// backends whose `send` transmits at once (the kernel); a user-space
    /// stack sends its segments here, so replies leave in the same loop
    /// iteration that produced them. `now_ns` is the time `poll` returned.
    fn flush(&mut self, _now_ns: u64) {}
    fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr>;
    fn stats(&self) -> TransportStats;
    /// Backend-specific counters for the end-of-run log line, if any.
    fn report(&self) -> Option<String> {
        None
    }
    /// Counters for metrics, read by the loop every 100 ms: no system calls
    /// here (counters that need one go through `counter_reader`).
    fn counters(&self) -> BackendCounters {
        BackendCounters::default()
    }
    /// A reader of `BackendCounters::xdp` for the reporter thread, which
    /// reads them itself so the pinned loop does not (xdp backend).
    fn counter_reader(&self) -> Option<CounterReader> {
        None
    }

    // Tracing (docs/ATTRIBUTION.md). Backends that see nothing keep the
    // defaults: samples then carry the poll time as the arrival.

    /// Keep arrival times and per-connection observations from now on.
    fn set_tracing(&mut self, _on: bool) {}
    /// Arrival time and flags of the bytes the last successful `recv` on
    /// `conn` returned.
    fn rx_trace(&mut self, _conn: ConnId) -> RxTrace {
        RxTrace::default()
    }
    /// Loop-level observations since the last call (sampler cause flags:
    /// fill ring low, TX ring full or kick busy), then cleared.
    fn loop_flags(&mut self) -> u32 {
        0
    }
    /// Does `flush` put frames on the wire (so the time after it is the TX
    /// completion a sample records)? False when `send` already did.
    fn flush_transmits(&self) -> bool {
        false
    }
}

/// Is this error "try again later" rather than "the connection is gone"?
pub fn would_block(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}
