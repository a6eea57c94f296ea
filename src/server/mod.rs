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

use crate::app::{App, OutBuf, Requests, Verdict};
use crate::clock;
use crate::sampler::reporter::{Published, Snapshot};
use crate::sampler::tracer::Tracer;
use crate::transport::{AckEvent, ConnId, Event, Transport};

mod outbound;
mod step;
use step::Step;

/// Bounded work per connection per loop iteration.
const ROUNDS_PER_SERVICE: usize = 8;
/// How long a closing connection waits for the peer's FIN.
const LINGER_NS: u64 = 2_000_000_000;
/// Default of [`ServerConfig::flush_ns`].
pub const FLUSH_NS_DEFAULT: u64 = 10_000_000_000;
/// Default of [`ServerConfig::drain_ns`] (`--drain-ms`).
pub const DRAIN_NS_DEFAULT: u64 = 2_000_000_000;
/// Default of [`ServerConfig::connect_ns`].
pub const CONNECT_NS_DEFAULT: u64 = 3_000_000_000;
/// Connections woken during an iteration that it also services (their
/// output then leaves in this iteration's flush, not the next one's).
const WOKEN_PER_ITERATION: usize = 64;
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
    /// How long an outbound connection may take to open before the
    /// application is told it was refused ([`App::on_refused`]).
    pub connect_ns: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            rx_buf: 64 * 1024,
            tx_buf: 64 * 1024,
            tick_ns: 10_000_000,
            flush_ns: FLUSH_NS_DEFAULT,
            drain_ns: DRAIN_NS_DEFAULT,
            connect_ns: CONNECT_NS_DEFAULT,
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
    /// The application asked to wake it ([`App::on_wake`] is due).
    woken: bool,
    /// The application has been told of the peer's FIN.
    fin_told: bool,
    /// The application half-closed it ([`Verdict::CloseWrite`]): FIN once
    /// the output is sent (`write_shut`), reading on.
    close_write: bool,
    write_shut: bool,
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
    /// Outbound connections the application asked for, and those that did
    /// not open (refused, timed out, no local port).
    pub connects: u64,
    pub connect_failed: u64,
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
        self.connects += o.connects;
        self.connect_failed += o.connect_failed;
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
    /// The loop's side of the application's request queue (swapped with
    /// the application's every time it has requests), and the outbound
    /// connections still opening.
    requests: Option<Requests>,
    connecting: Vec<outbound::Pending>,
    /// By connection id: is it in `connecting`?
    opening: Vec<bool>,
    /// Connections woken (by another's callback) to be serviced later in
    /// this iteration, at most [`WOKEN_PER_ITERATION`]; and the one being
    /// serviced now (its wake of itself waits for the next iteration).
    woken: Vec<ConnId>,
    servicing: Option<ConnId>,
}

impl<T: Transport, A: App> Server<T, A> {
    pub fn new(transport: T, mut app: A, cfg: ServerConfig) -> Self {
        let requests = app.requests().map(|r| r.twin());
        let connecting = Vec::with_capacity(requests.as_ref().map_or(0, |r| r.connects.capacity()));
        Server {
            requests,
            connecting,
            opening: Vec::new(),
            woken: Vec::with_capacity(WOKEN_PER_ITERATION),
            servicing: None,
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
        self.fail_connecting("the loop is shutting down");
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
                Event::Accepted(id) => self.open(id, now),
                Event::Connected(id) => self.connected(id, now),
                Event::Readable(id) if self.is_connecting(id) => self.check_connect(id),
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
        self.app.on_iteration(now);
        // What the events' callbacks asked for (a refused connect's wake).
        self.take_requests(now);
        // Each connection with work once, then the ones another's callback
        // woke meanwhile (a client's order woke the upstream connection):
        // their output leaves in this iteration's flush.
        let mut n = self.work.len();
        for _ in 0..n {
            let Some(id) = self.work.pop_front() else {
                break;
            };
            self.service_one(id, now);
        }
        let mut i = 0;
        while i < self.woken.len() {
            let id = self.woken[i];
            i += 1;
            self.service_one(id, now);
        }
        n += i;
        self.woken.clear();
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
            self.expire_connecting(now);
            self.take_requests(now);
            if now >= self.next_publish {
                self.next_publish = now + PUBLISH_NS;
                self.publish();
            }
        }
        Ok(())
    }

    /// Connections waiting to be serviced: 0 on a loop with nothing to do,
    /// which may then sleep.
    pub fn pending_work(&self) -> usize {
        self.work.len() + self.woken.len()
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
        let session = if A::WANTS_PEER {
            let peer = self.transport.peer_addr(id);
            let port = self.transport.local_port(id);
            self.app.open_from(id, peer, port, now)
        } else {
            self.app.open(id, now)
        };
        self.open_with(id, session, now);
    }

    fn open_with(&mut self, id: ConnId, session: A::Session, now: u64) {
        if self.conns.len() <= id.0 {
            self.conns.resize_with(id.0 + 1, || None);
        }
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
            woken: false,
            fin_told: false,
            close_write: false,
            write_shut: false,
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
        self.app.on_loop_tick(now);
        for i in 0..self.conns.len() {
            let Some(c) = self.conns[i].as_mut() else {
                continue;
            };
            match c.state {
                State::Open => {
                    let before = c.tx.len();
                    let v = self.app.on_tick(&mut c.session, &mut c.tx, now);
                    let produced = c.tx.len() != before;
                    let abort = step::apply(c, v, now + self.cfg.flush_ns);
                    if produced || v != Verdict::Continue {
                        self.enqueue(ConnId(i));
                    }
                    if abort {
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

    /// Take `id` off the queue and service it, then what it asked for.
    fn service_one(&mut self, id: ConnId, now: u64) {
        if let Some(c) = self.slot(id) {
            c.queued = false;
        }
        self.servicing = Some(id);
        self.service(id, now);
        self.servicing = None;
        self.take_requests(now);
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
}

#[cfg(test)]
mod tests;
