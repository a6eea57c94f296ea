//! The event loop: one per pinned core, any [`Transport`], any [`App`].
//!
//! Each iteration reads the clock once, polls the transport, and services the
//! connections that have work, each for a bounded number of rounds, so one
//! busy connection cannot starve the others. Buffers are allocated when a
//! connection opens and never grow afterwards.
//!
//! Connection life cycle:
//!
//! ```text
//! Open --(app Close / peer FIN / shutdown)--> Flushing --(output sent)--> Draining --(FIN, error, linger)--> gone
//!  |                                             |
//!  |                                             +--(flush deadline: the peer stopped reading)--> gone (reset)
//!  +--(app Abort / I/O error)--------------------------------------------------------------------> gone (at once)
//! ```
//!
//! Draining reads and discards until the peer's FIN so that closing does not
//! turn into a reset that could destroy replies still in flight. Flushing
//! has a deadline ([`ServerConfig::flush_ns`]): a client that stops reading
//! (a zero window, which Linux probes forever) would otherwise hold its
//! buffers and a connection slot for good.
//!
//! Shutdown ([`Server::run`] once `stop` is set): stop accepting, give every
//! session the application's goodbye (orders: Logout, reason Shutdown),
//! flush, FIN, and wait up to [`ServerConfig::drain_ns`] for the peers and
//! for the transport's closing connections; then count what was abandoned.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::app::{App, OutBuf, Verdict};
use crate::clock;
use crate::sampler::cause;
use crate::sampler::reporter::{Published, Snapshot};
use crate::sampler::tracer::{RxTrace, Tracer};
use crate::transport::{would_block, AckEvent, ConnId, Event, Transport};

/// Bounded work per connection per loop iteration.
const ROUNDS_PER_SERVICE: usize = 8;
/// How long a closing connection waits for the peer's FIN.
const LINGER_NS: u64 = 2_000_000_000;
/// Default of [`ServerConfig::flush_ns`].
pub const FLUSH_NS_DEFAULT: u64 = 10_000_000_000;
/// Default of [`ServerConfig::drain_ns`] (`--drain-ms`).
pub const DRAIN_NS_DEFAULT: u64 = 2_000_000_000;
/// The shortest sleep of an idle loop that does not spin.
const MIN_SLEEP_NS: u64 = 100_000;
/// How often counters are published for the reporter.
const PUBLISH_NS: u64 = 100_000_000;

/// Server sizing, fixed at start-up.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    pub rx_buf: usize,
    pub tx_buf: usize,
    /// Timer granularity for heartbeats and idle timeouts.
    pub tick_ns: u64,
    /// How long a closing connection may take to send what is queued
    /// before it is reset (`flush_timeouts`).
    pub flush_ns: u64,
    /// On shutdown, how long to wait for every session to be flushed and
    /// closed.
    pub drain_ns: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            rx_buf: 64 * 1024,
            tx_buf: 64 * 1024,
            tick_ns: 10_000_000,
            flush_ns: FLUSH_NS_DEFAULT,
            drain_ns: DRAIN_NS_DEFAULT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Sending what is queued; then FIN. Reset at the deadline.
    Flushing {
        deadline: u64,
    },
    /// FIN sent; discarding input until the peer's FIN or the deadline.
    Draining {
        deadline: u64,
    },
}

struct Conn<S> {
    id: ConnId,
    session: S,
    rx: Vec<u8>,
    rx_len: usize,
    tx: OutBuf,
    state: State,
    /// Peer sent FIN.
    peer_fin: bool,
    /// Last recv did not return WouldBlock: there may be more to read.
    readable: bool,
    /// Last send returned WouldBlock with output still queued.
    tx_blocked: bool,
    queued: bool,
    /// Arrival (monotonic ns) of the oldest unconsumed input and the
    /// transport's flags for it, when tracing.
    rx_arrival: u64,
    rx_flags: u32,
    /// Bytes handed to the transport's `send` so far (where a reply ends in
    /// the connection's output, for its ACK).
    sent: u64,
}

/// Loop counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServerStats {
    pub iterations: u64,
    pub opened: u64,
    pub closed: u64,
    pub aborted: u64,
    pub io_errors: u64,
    /// Closing connections reset because their output was not taken by the
    /// flush deadline.
    pub flush_timeouts: u64,
    /// Shutdown: sessions given the goodbye, closed in time, and abandoned
    /// at the drain deadline (with their unsent bytes).
    pub shutdown_sessions: u64,
    pub drained: u64,
    pub abandoned: u64,
    pub abandoned_bytes: u64,
    /// Connection buffers allocated (the peak of open connections).
    pub buffers_allocated: u64,
}

impl ServerStats {
    /// Add another loop's counters (the totals of several loops).
    pub fn add(&mut self, o: &ServerStats) {
        self.iterations += o.iterations;
        self.opened += o.opened;
        self.closed += o.closed;
        self.aborted += o.aborted;
        self.io_errors += o.io_errors;
        self.flush_timeouts += o.flush_timeouts;
        self.shutdown_sessions += o.shutdown_sessions;
        self.drained += o.drained;
        self.abandoned += o.abandoned;
        self.abandoned_bytes += o.abandoned_bytes;
        self.buffers_allocated += o.buffers_allocated;
    }
}

pub struct Server<T: Transport, A: App> {
    pub transport: T,
    pub app: A,
    cfg: ServerConfig,
    conns: Vec<Option<Conn<A::Session>>>,
    work: VecDeque<ConnId>,
    events: Vec<Event>,
    /// The transport's ACK reports, for the tracer (allocated once).
    acks: Vec<AckEvent>,
    /// Input and output buffers of closed connections, for the next ones:
    /// only the peak number of connections is ever allocated (at most the
    /// transport's `--max-conns`), and none while that peak holds.
    spare: Vec<(Vec<u8>, OutBuf)>,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC (ns), for wall stamps from the loop's clock.
    wall_offset: u64,
    next_tick: u64,
    /// Monotonic ns read once per iteration.
    now: u64,
    pub stats: ServerStats,
    pub tracer: Tracer,
    published: Option<Arc<Published>>,
    next_publish: u64,
    /// Shutting down: new connections get the goodbye at once.
    shutting_down: bool,
    /// When the shutdown began and when it gives up (transport clock).
    drain_start: u64,
    drain_deadline: u64,
}

impl<T: Transport, A: App> Server<T, A> {
    pub fn new(transport: T, app: A, cfg: ServerConfig) -> Self {
        Server {
            transport,
            app,
            cfg,
            conns: Vec::new(),
            work: VecDeque::with_capacity(1024),
            events: Vec::with_capacity(1024),
            acks: Vec::with_capacity(1024),
            spare: Vec::new(),
            next_tick: 0,
            wall_offset: clock::realtime_offset_ns(),
            now: 0,
            stats: ServerStats::default(),
            tracer: Tracer::disabled(),
            published: None,
            next_publish: 0,
            shutting_down: false,
            drain_start: 0,
            drain_deadline: 0,
        }
    }

    /// Record samples with `tracer` (and tell the transport to keep arrival
    /// times when it samples).
    pub fn set_tracer(&mut self, mut tracer: Tracer) {
        self.transport.set_tracing(tracer.enabled());
        if tracer.enabled() {
            self.transport.set_ack_tracking(tracer.wants_acks());
        }
        tracer.set_ack_tracking(self.transport.tracks_acks());
        self.tracer = tracer;
    }

    /// Publish counters to a reporter every 100 ms.
    pub fn set_published(&mut self, p: Arc<Published>) {
        self.published = Some(p);
    }

    pub fn listen(&mut self, addr: SocketAddr) -> io::Result<()> {
        self.transport.listen(addr)
    }

    /// Run until `stop` is set, then shut down gracefully.
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        while !stop.load(Ordering::Relaxed) {
            self.run_once()?;
        }
        self.begin_shutdown();
        while !self.shutdown_done() {
            self.run_once()?;
        }
        self.end_shutdown();
        Ok(())
    }

    /// Start a graceful shutdown: stop accepting, and give every session
    /// the application's goodbye, then flush and close it. The loop keeps
    /// running ([`Server::run_once`]) until [`Server::shutdown_done`].
    pub fn begin_shutdown(&mut self) {
        self.transport.stop_listening();
        self.shutting_down = true;
        self.drain_start = self.now;
        self.drain_deadline = self.now + self.cfg.drain_ns;
        for i in 0..self.conns.len() {
            self.shut(ConnId(i), self.now);
        }
    }

    /// Every connection is gone and the transport has finished its closes,
    /// or `drain_ns` has passed (the transport's clock).
    pub fn shutdown_done(&self) -> bool {
        let idle = self.conns.iter().all(|c| c.is_none()) && self.transport.closing() == 0;
        idle || self.now >= self.drain_deadline
    }

    /// End a shutdown: reset what is left (counted as abandoned, with its
    /// unsent bytes) and log the account.
    pub fn end_shutdown(&mut self) {
        for i in 0..self.conns.len() {
            if let Some(c) = self.conns[i].as_ref() {
                self.stats.abandoned += 1;
                self.stats.abandoned_bytes += c.tx.len() as u64;
                self.finish(ConnId(i), "shutdown: drain deadline", true);
            }
        }
        self.transport.flush(self.now);
        crate::log_info!(
            "drain: {} sessions given the goodbye, {} closed in time, {} abandoned ({} bytes unsent), \
             {} transport closes unfinished, {:.1} ms",
            self.stats.shutdown_sessions,
            self.stats.drained,
            self.stats.abandoned,
            self.stats.abandoned_bytes,
            self.transport.closing(),
            self.now.saturating_sub(self.drain_start) as f64 / 1e6
        );
    }

    /// Shutdown of one connection: the goodbye, then flush and close.
    fn shut(&mut self, id: ConnId, now: u64) {
        let flush_deadline = now + self.cfg.flush_ns.min(self.cfg.drain_ns);
        let Some(c) = self.conns.get_mut(id.0).and_then(|c| c.as_mut()) else { return };
        if c.state == State::Open {
            self.app.on_shutdown(&mut c.session, &mut c.tx, now);
            c.state = State::Flushing { deadline: flush_deadline };
            self.stats.shutdown_sessions += 1;
        }
        self.enqueue(id);
    }

    /// One loop iteration.
    pub fn run_once(&mut self) -> io::Result<()> {
        self.stats.iterations += 1;
        // One clock read per iteration, after the poll; the timeout is
        // computed from the previous iteration's reading.
        let timeout = if self.work.is_empty() {
            // At least 100 us (never a zero-length sleep loop), at most one
            // tick; a tick shorter than 100 us is the bound itself.
            let max = self.cfg.tick_ns.max(1);
            Duration::from_nanos(self.next_tick.saturating_sub(self.now).clamp(MIN_SLEEP_NS.min(max), max))
        } else {
            Duration::ZERO
        };
        let mut events = std::mem::take(&mut self.events);
        let now = self.transport.poll(Some(timeout), &mut events)?;
        self.now = now;
        let tracing = self.tracer.enabled();
        if tracing {
            if self.tracer.tracks_acks() {
                self.transport.acks(&mut self.acks);
                if !self.acks.is_empty() {
                    self.tracer.on_acks(&self.acks);
                    self.acks.clear();
                }
            }
            let flags = self.transport.loop_flags();
            self.tracer.begin_iteration(self.stats.iterations, now, !events.is_empty(), flags);
        }
        for ev in events.iter().copied() {
            match ev {
                Event::Accepted(id) | Event::Connected(id) => self.open(id, now),
                Event::Readable(id) => {
                    if let Some(c) = self.slot(id) {
                        c.readable = true;
                    }
                    self.enqueue(id);
                }
                Event::Writable(id) => {
                    if let Some(c) = self.slot(id) {
                        c.tx_blocked = false;
                    }
                    self.enqueue(id);
                }
            }
        }
        self.events = events;
        let n = self.work.len();
        for _ in 0..n {
            let Some(id) = self.work.pop_front() else {
                break;
            };
            if let Some(c) = self.slot(id) {
                c.queued = false;
            }
            self.service(id, now);
        }
        let mut flush = (0, 0);
        if n > 0 {
            if tracing {
                flush.0 = self.tracer.flush_start();
            }
            self.transport.flush(now);
            if tracing {
                flush.1 = self.tracer.now();
            }
        }
        if self.tracer.active() {
            let done = if self.transport.flush_transmits() { flush.1 } else { 0 };
            let flags = if tracing { self.transport.loop_flags() } else { 0 };
            self.tracer.end_iteration(flush, done, flags);
            let t = &mut self.transport;
            self.tracer.take_watch_requests(|c, on| t.watch_acks(ConnId(c as usize), on));
        }
        if now >= self.next_tick {
            self.next_tick = now + self.cfg.tick_ns;
            // CLOCK_REALTIME - CLOCK_MONOTONIC, refreshed once a tick (vDSO
            // reads), so wall stamps follow a stepped clock within a tick.
            self.wall_offset = clock::realtime_offset_ns();
            self.tick(now);
            if now >= self.next_publish {
                self.next_publish = now + PUBLISH_NS;
                self.publish();
            }
        }
        Ok(())
    }

    /// Counters for the reporter (every 100 ms; may make system calls).
    pub fn publish(&self) {
        if let Some(p) = &self.published {
            p.publish(Snapshot {
                transport: self.transport.stats(),
                backend: self.transport.counters(),
                app: self.app.counters(),
                tracer: self.tracer.stats(),
            });
        }
    }

    fn slot(&mut self, id: ConnId) -> Option<&mut Conn<A::Session>> {
        self.conns.get_mut(id.0).and_then(|c| c.as_mut())
    }

    fn enqueue(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(id.0).and_then(|c| c.as_mut()) {
            if !c.queued {
                c.queued = true;
                self.work.push_back(id);
            }
        }
    }

    fn open(&mut self, id: ConnId, now: u64) {
        if self.conns.len() <= id.0 {
            self.conns.resize_with(id.0 + 1, || None);
        }
        let session = self.app.open(id, now);
        let (rx, mut tx) = self.spare.pop().unwrap_or_else(|| {
            self.stats.buffers_allocated += 1;
            (vec![0u8; self.cfg.rx_buf], OutBuf::with_capacity(self.cfg.tx_buf))
        });
        tx.clear();
        self.conns[id.0] = Some(Conn {
            id,
            session,
            rx,
            rx_len: 0,
            tx,
            state: State::Open,
            peer_fin: false,
            readable: true,
            tx_blocked: false,
            queued: false,
            rx_arrival: 0,
            sent: 0,
            rx_flags: 0,
        });
        self.stats.opened += 1;
        if self.shutting_down {
            // Its handshake completed while we stopped listening.
            self.shut(id, now);
        }
        // getpeername only when the line is logged (-vv).
        if crate::log::enabled(2) {
            if let Some(peer) = self.transport.peer_addr(id) {
                crate::log_debug!("{}: open from {peer}", id);
            }
        }
        self.enqueue(id);
    }

    fn finish(&mut self, id: ConnId, reason: &str, abort: bool) {
        if let Some(c) = self.conns.get_mut(id.0).and_then(|c| c.take()) {
            self.tracer.conn_closed(id.0 as u32);
            self.transport.close(id);
            if abort {
                self.stats.aborted += 1;
            } else if self.shutting_down {
                self.stats.drained += 1;
            }
            self.stats.closed += 1;
            crate::log_debug!("{}: closed: {reason}", c.id);
            self.app.on_close(c.session, reason);
            self.spare.push((c.rx, c.tx));
        }
    }

    fn tick(&mut self, now: u64) {
        for i in 0..self.conns.len() {
            let Some(c) = self.conns[i].as_mut() else {
                continue;
            };
            match c.state {
                State::Open => {
                    let before = c.tx.len();
                    let v = self.app.on_tick(&mut c.session, &mut c.tx, now);
                    let produced = c.tx.len() != before;
                    if v == Verdict::Close {
                        c.state = State::Flushing { deadline: now + self.cfg.flush_ns };
                    }
                    if produced || v != Verdict::Continue {
                        self.enqueue(ConnId(i));
                    }
                    if v == Verdict::Abort {
                        self.finish(ConnId(i), "aborted by application timer", true);
                    }
                }
                State::Draining { deadline } if now >= deadline => {
                    self.finish(ConnId(i), "linger expired", false);
                }
                State::Flushing { deadline } if now >= deadline => {
                    // The peer stopped taking our output (a zero window).
                    self.stats.flush_timeouts += 1;
                    crate::log_warn!("{}: output not taken within the flush deadline: reset", ConnId(i));
                    self.finish(ConnId(i), "flush deadline", true);
                }
                _ => {}
            }
        }
    }

    /// Make bounded progress on one connection.
    fn service(&mut self, id: ConnId, now: u64) {
        for _ in 0..ROUNDS_PER_SERVICE {
            match self.step(id, now) {
                Step::Progress => continue,
                Step::Idle => return,
                Step::Gone => return,
            }
        }
        // Still busy after the bound: come back next iteration.
        self.enqueue(id);
    }

    fn step(&mut self, id: ConnId, now: u64) -> Step {
        let Some(c) = self.conns.get_mut(id.0).and_then(|c| c.as_mut()) else {
            return Step::Gone;
        };
        let mut progress = false;

        // 1. Flush output.
        match send_queued(&mut self.transport, id, c) {
            Ok(n) => progress |= n > 0,
            Err(e) => {
                self.stats.io_errors += 1;
                let reason = format!("send failed: {e}");
                self.finish(id, &reason, true);
                return Step::Gone;
            }
        }

        // 2. Closing: FIN once the output is gone, then drain.
        if matches!(c.state, State::Flushing { .. }) && c.tx.len() == 0 {
            let _ = self.transport.shutdown_write(id);
            if c.peer_fin {
                self.finish(id, "closed", false);
                return Step::Gone;
            }
            c.state = State::Draining { deadline: now + LINGER_NS };
            progress = true;
        }

        // 3. Read.
        let Some(c) = self.conns.get_mut(id.0).and_then(|c| c.as_mut()) else {
            return Step::Gone;
        };
        let want_read = c.readable
            && !c.peer_fin
            && match c.state {
                State::Open => c.rx_len < c.rx.len(),
                State::Flushing { .. } => false,
                State::Draining { .. } => true,
            };
        if want_read {
            let draining = matches!(c.state, State::Draining { .. });
            let buf = if draining { &mut c.rx[..] } else { &mut c.rx[c.rx_len..] };
            let buf_len = buf.len();
            match self.transport.recv(id, buf) {
                Ok(0) => {
                    c.peer_fin = true;
                    c.readable = false;
                    progress = true;
                    if draining {
                        self.finish(id, "closed", false);
                        return Step::Gone;
                    }
                }
                Ok(n) => {
                    // A short read drained the socket: the transport reports
                    // Readable again when more arrives (see transport docs), so
                    // skip the recv that would only return WouldBlock.
                    if n < buf_len {
                        c.readable = false;
                    }
                    if !draining {
                        if self.tracer.enabled() {
                            let rt = self.transport.rx_trace(id);
                            if c.rx_len == 0 || c.rx_arrival == 0 {
                                c.rx_arrival = rt.arrival_ns;
                            }
                            c.rx_flags |= rt.flags;
                        }
                        c.rx_len += n;
                    }
                    progress = true;
                }
                Err(e) if would_block(&e) => c.readable = false,
                Err(e) => {
                    self.stats.io_errors += 1;
                    let reason = format!("recv failed: {e}");
                    self.finish(id, &reason, true);
                    return Step::Gone;
                }
            }
        }

        // 4. Hand input to the application.
        let Some(c) = self.conns.get_mut(id.0).and_then(|c| c.as_mut()) else {
            return Step::Gone;
        };
        // Did the application take everything it could? (It may stop early
        // when its output is full; then the input waits for Writable.)
        let mut stalled_input = false;
        if c.state == State::Open && c.rx_len > 0 {
            // The iteration's clock as wall time: no clock read per input.
            let recv_ts = if A::WANTS_RECV_TS { now.wrapping_add(self.wall_offset) } else { 0 };
            self.tracer.begin_input(id.0 as u32, RxTrace { arrival_ns: c.rx_arrival, flags: c.rx_flags });
            let out_before = c.sent + c.tx.len() as u64;
            let (used, v) =
                self.app.on_input(&mut c.session, &c.rx[..c.rx_len], &mut c.tx, &mut self.tracer, recv_ts, now);
            if used > 0 {
                c.rx.copy_within(used..c.rx_len, 0);
                c.rx_len -= used;
                progress = true;
                if c.rx_len == 0 {
                    c.rx_arrival = 0;
                }
                c.rx_flags = 0;
            }
            // Replies go out at once, before more input is read; an error is
            // left for step 1 of the next round to handle.
            let attempted = c.tx.len() > 0 && !c.tx_blocked;
            let _ = send_queued(&mut self.transport, id, c);
            let out = c.sent + c.tx.len() as u64;
            let reply_end = if out != out_before { out } else { 0 };
            self.tracer.end_input(if attempted && c.tx_blocked { cause::TX_FULL } else { 0 }, reply_end);
            stalled_input = c.rx_len > 0 && (used > 0 || c.tx.len() > 0);
            match v {
                Verdict::Continue => {}
                Verdict::Close => {
                    c.state = State::Flushing { deadline: now + self.cfg.flush_ns };
                    progress = true;
                }
                Verdict::Abort => {
                    self.finish(id, "protocol error", true);
                    return Step::Gone;
                }
            }
            if c.state == State::Open && c.rx_len == c.rx.len() && used == 0 && c.tx.len() == 0 {
                // The application cannot use a full buffer with an empty
                // output: it would never make progress.
                self.finish(id, "input buffer full with no complete message", true);
                return Step::Gone;
            }
        }

        // 5. Peer FIN, once the application has taken all the input before
        // it that it can: what is left then (a partial message) is passed to
        // `on_peer_fin`. Input waiting on a full output is not left behind.
        let Some(c) = self.conns.get_mut(id.0).and_then(|c| c.as_mut()) else {
            return Step::Gone;
        };
        if c.peer_fin && c.state == State::Open && !stalled_input {
            let v = self.app.on_peer_fin(&mut c.session, &c.rx[..c.rx_len], &mut c.tx);
            if v == Verdict::Abort {
                self.finish(id, "peer closed", true);
                return Step::Gone;
            }
            c.state = State::Flushing { deadline: now + self.cfg.flush_ns };
            progress = true;
        }

        if progress {
            Step::Progress
        } else {
            Step::Idle
        }
    }
}

/// Hand `c`'s queued output to the transport, unless it is waiting for
/// Writable. Returns the bytes sent; a short write or WouldBlock marks the
/// connection blocked until the transport reports Writable.
fn send_queued<T: Transport, S>(t: &mut T, id: ConnId, c: &mut Conn<S>) -> io::Result<usize> {
    if c.tx.len() == 0 || c.tx_blocked {
        return Ok(0);
    }
    match t.send(id, c.tx.as_slice()) {
        Ok(n) => {
            c.tx.consume(n);
            c.sent += n as u64;
            c.tx_blocked = c.tx.len() > 0;
            Ok(n)
        }
        Err(e) if would_block(&e) => {
            c.tx_blocked = true;
            Ok(0)
        }
        Err(e) => Err(e),
    }
}

enum Step {
    Progress,
    Idle,
    Gone,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::echo::Echo;
    use crate::backend::kernel::{KernelConfig, KernelTransport};
    use std::io::{Read, Write};
    use std::sync::Arc;

    fn spawn_echo() -> (SocketAddr, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            let t = KernelTransport::new(KernelConfig::default()).unwrap();
            let cfg = ServerConfig { rx_buf: 1024, tx_buf: 1024, ..Default::default() };
            let mut s = Server::new(t, Echo::default(), cfg);
            s.listen(addr).unwrap();
            ready_tx.send(()).unwrap();
            s.run(&stop2).unwrap();
        });
        ready_rx.recv().unwrap();
        (addr, stop, h)
    }

    /// One connection whose peer sends `input` then FIN, and which accepts at
    /// most `budget` bytes of output per poll, so the server's output fills
    /// while input is still waiting.
    struct SlowPeer {
        input: std::collections::VecDeque<u8>,
        out: Vec<u8>,
        budget: usize,
        left: usize,
        polls: u64,
        closed: bool,
        fin_sent_by_server: bool,
    }

    impl SlowPeer {
        fn new(input: &[u8], budget: usize) -> Self {
            SlowPeer {
                input: input.iter().copied().collect(),
                out: Vec::new(),
                budget,
                left: 0,
                polls: 0,
                closed: false,
                fin_sent_by_server: false,
            }
        }
    }

    impl Transport for SlowPeer {
        fn name(&self) -> &'static str {
            "mock"
        }
        fn listen(&mut self, _: SocketAddr) -> io::Result<()> {
            Ok(())
        }
        fn connect(&mut self, _: SocketAddr) -> io::Result<ConnId> {
            Err(io::ErrorKind::Unsupported.into())
        }
        fn poll(&mut self, _: Option<Duration>, events: &mut Vec<Event>) -> io::Result<u64> {
            events.clear();
            self.polls += 1;
            self.left = self.budget;
            if self.polls == 1 {
                events.push(Event::Accepted(ConnId(0)));
            } else if !self.closed {
                events.push(Event::Readable(ConnId(0)));
                events.push(Event::Writable(ConnId(0)));
            }
            Ok(self.polls)
        }
        fn recv(&mut self, _: ConnId, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.input.len());
            for b in buf.iter_mut().take(n) {
                *b = self.input.pop_front().unwrap_or(0);
            }
            Ok(n) // 0 once the input is gone: the FIN
        }
        fn send(&mut self, _: ConnId, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.left);
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.left -= n;
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn shutdown_write(&mut self, _: ConnId) -> io::Result<()> {
            self.fin_sent_by_server = true;
            Ok(())
        }
        fn close(&mut self, _: ConnId) {
            self.closed = true;
        }
        fn peer_addr(&self, _: ConnId) -> Option<SocketAddr> {
            None
        }
        fn stats(&self) -> crate::transport::TransportStats {
            Default::default()
        }
    }

    /// Regression: input read before the peer's FIN but not yet consumed
    /// (the output was full) must still be echoed before the close.
    #[test]
    fn input_before_fin_is_not_dropped_when_output_is_full() {
        let input: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let peer = SlowPeer::new(&input, 100);
        let cfg = ServerConfig { rx_buf: 1024, tx_buf: 512, ..Default::default() };
        let mut s = Server::new(peer, Echo::default(), cfg);
        for _ in 0..100_000 {
            if s.transport.closed {
                break;
            }
            s.run_once().unwrap();
        }
        assert!(s.transport.closed, "connection never closed");
        assert!(s.transport.fin_sent_by_server);
        assert_eq!(s.transport.out.len(), input.len(), "echo lost bytes");
        assert!(s.transport.out == input);
    }

    /// Regression: a tick shorter than the 100 us minimum sleep panicked
    /// in `clamp` (min > max).
    #[test]
    fn a_tick_under_100_us_does_not_panic() {
        for tick_ns in [0, 1, 10_000, 99_999, 100_000, 150_000] {
            let peer = SlowPeer::new(b"abc", 100);
            let cfg = ServerConfig { rx_buf: 1024, tx_buf: 512, tick_ns, ..ServerConfig::default() };
            let mut s = Server::new(peer, Echo::default(), cfg);
            for _ in 0..50 {
                s.run_once().unwrap();
            }
            assert_eq!(s.transport.out, b"abc", "tick {tick_ns}");
        }
    }

    #[test]
    fn echo_with_half_close_on_loopback() {
        let (addr, stop, h) = spawn_echo();
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        let mut reader = c.try_clone().unwrap();
        let rd = std::thread::spawn(move || {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).unwrap();
            got
        });
        c.write_all(&data).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let got = rd.join().unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "echo corrupted the stream");
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }
}
