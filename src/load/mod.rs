//! `tailgate load`: a load generator that is itself a client of
//! [`Transport`], so it runs on every backend.
//!
//! Two modes:
//!
//! * open loop (`--rate`): messages are scheduled at fixed intervals across
//!   all connections, round robin. Each message carries its *scheduled* send
//!   time, and latency is measured from that time, so a stall on either side
//!   shows up in every message it delayed (coordinated-omission correction).
//! * closed loop (`--pingpong`): one message in flight per connection; the
//!   next leaves when the reply arrives.
//!
//! Every request must get exactly one reply, in order, on its connection.
//! The report counts what did not: unanswered, rejected, out of sequence,
//! corrupted (echo). The generator busy-polls the transport (it needs
//! sub-millisecond scheduling) and stops by itself after `duration` plus a
//! bounded drain.
//!
//! ```text
//! mod.rs       the generator: connections, schedule, transport, drain
//! workload.rs  the Workload trait: an application's requests and replies
//! orders.rs    the order workload (logon, orders, cancels, heartbeats, logout)
//! fix_wire.rs  the order workload's requests and answers in FIX 4.4
//! echo.rs      the echo workload (sequence, timestamp, checked payload)
//! report.rs    the end-of-run report
//! storm.rs     `tailgate storm`: a connection storm or SYN flood from kernel clients
//! tests.rs     against real servers on loopback
//! ```

mod echo;
mod fix_wire;
pub mod hgrm;
mod orders;
mod report;
pub mod storm;
mod workload;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

pub use self::echo::{EchoLoad, ECHO_MIN_SIZE};
pub use self::orders::{Lifecycle, OrdersLoad};

pub use self::report::{LoopShare, Percentiles, Report};
pub use self::workload::Workload;
use self::workload::{Replies, Tally};
use crate::clock;
use crate::transport::{would_block, ConnId, Event, Transport};

/// Per-connection output backlog beyond which the schedule is counted as overrun.
const MAX_BACKLOG: usize = 4 << 20;
/// Histogram upper bound: 60 s in ns.
const HIST_MAX_NS: u64 = 60_000_000_000;
/// A quiet connection gets a heartbeat after this long (orders).
const HEARTBEAT_NS: u64 = 1_000_000_000;

/// What the generator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadApp {
    Orders,
    Echo,
}

/// Open or closed loop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Total messages per second across all connections.
    Rate(f64),
    PingPong,
}

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub addr: SocketAddr,
    pub app: LoadApp,
    pub conns: usize,
    pub mode: Mode,
    pub duration: Duration,
    /// Echo message size in bytes.
    pub size: usize,
    /// How long to wait for outstanding replies after the run.
    pub drain: Duration,
    /// Print a progress line every second.
    pub progress: bool,
    /// How long to wait for every Logon to be acknowledged.
    pub logon_timeout: Duration,
    /// Rate mode: (count, every ns): `count` more messages at once every
    /// `every` ns, round robin over the connections.
    pub burst: Option<(u32, u64)>,
    /// Orders: the percent of limit orders priced to cross the book.
    pub cross: u8,
    /// Orders: who the sessions log on as.
    pub logon: LogonSpec,
    /// Orders: speak FIX 4.4 to a gateway with this CompID (TargetCompID);
    /// `None`: the binary protocol.
    pub fix: Option<String>,
    /// One generator of several (one per loop): every one counts itself in
    /// here once its sessions are logged on, and the measured run starts
    /// when all of them have, so their runs overlap.
    pub together: Option<Together>,
}

/// Who the order sessions log on as: connection `i` (counted over every
/// loop, from `first` on this one) as `accounts[i % len]`, or as `LG<i>`
/// when none is given; with `password` when it is not empty (a version-3
/// Logon).
#[derive(Debug, Clone, Default)]
pub struct LogonSpec {
    pub accounts: Vec<crate::proto::Code8>,
    pub password: crate::proto::Password,
    /// This generator's first connection's index over every loop.
    pub first: usize,
    /// Append `ACCOUNT CL_ORD_ID` for every order acknowledged to this
    /// file when the run ends.
    pub acked_log: Option<std::path::PathBuf>,
}

/// The start line of several generators (see [`LoadConfig::together`]).
#[derive(Debug, Clone)]
pub struct Together {
    pub arrived: Arc<AtomicUsize>,
    pub of: usize,
}

/// What a run leaves: its report, its round-trip histogram (to merge with
/// other loops') and the transport (to read its counters).
pub struct Outcome<T> {
    pub report: Report,
    pub hist: Histogram<u64>,
    pub transport: T,
}

/// One connection, as the generator sees it: bytes in and out.
struct Client {
    id: ConnId,
    connected: bool,
    alive: bool,
    tx: Vec<u8>,
    tx_off: usize,
    rx: Vec<u8>,
    rx_len: usize,
    last_send_ns: u64,
    readable: bool,
    /// On the service list (see `LoadGen::mark`).
    queued: bool,
    /// Why its recv failed (a refused open, a reset).
    failed: Option<io::ErrorKind>,
}

impl Client {
    fn backlog(&self) -> usize {
        self.tx.len() - self.tx_off
    }
}

pub struct LoadGen<T: Transport> {
    t: T,
    cfg: LoadConfig,
    work: Box<dyn Workload>,
    clients: Vec<Client>,
    /// ConnId -> index in `clients`.
    by_conn: Vec<usize>,
    hist: Histogram<u64>,
    tally: Tally,
    events: Vec<Event>,
    /// Clients with bytes to send or reported readable: the only ones a
    /// pump visits, so 1000 idle connections cost nothing per iteration.
    service: Vec<usize>,
    /// Ping-pong clients whose reply arrived: the next request goes out.
    idle: Vec<usize>,
}

impl<T: Transport> LoadGen<T> {
    pub fn new(t: T, cfg: LoadConfig) -> io::Result<Self> {
        let hist =
            Histogram::new_with_bounds(1, HIST_MAX_NS, 3).map_err(|e| io::Error::other(format!("histogram: {e}")))?;
        let work: Box<dyn Workload> = match cfg.app {
            LoadApp::Orders => {
                Box::new(OrdersLoad::new(cfg.cross).with_logon(cfg.logon.clone()).with_fix(cfg.fix.clone()))
            }
            LoadApp::Echo => Box::new(EchoLoad::new(cfg.size)),
        };
        Ok(LoadGen {
            t,
            cfg,
            work,
            clients: Vec::new(),
            by_conn: Vec::new(),
            hist,
            tally: Tally::default(),
            events: Vec::with_capacity(1024),
            service: Vec::with_capacity(1024),
            idle: Vec::new(),
        })
    }

    fn mark(&mut self, ci: usize) {
        let c = &mut self.clients[ci];
        if !c.queued {
            c.queued = true;
            self.service.push(ci);
        }
    }

    fn client_of(&self, id: ConnId) -> Option<usize> {
        self.by_conn.get(id.0).copied().filter(|&i| i != usize::MAX)
    }

    fn connect_all(&mut self) -> io::Result<()> {
        let rx_size = (64 * 1024).max(4 * self.work.max_reply());
        for i in 0..self.cfg.conns {
            let id = self.t.connect(self.cfg.addr).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("connection {} of {} to {}: {e}", i + 1, self.cfg.conns, self.cfg.addr),
                )
            })?;
            if self.by_conn.len() <= id.0 {
                self.by_conn.resize(id.0 + 1, usize::MAX);
            }
            self.by_conn[id.0] = self.clients.len();
            let mut c = Client {
                id,
                connected: false,
                alive: true,
                tx: Vec::with_capacity(64 * 1024),
                tx_off: 0,
                rx: vec![0u8; rx_size],
                rx_len: 0,
                last_send_ns: 0,
                readable: true,
                queued: false,
                failed: None,
            };
            self.work.open(i, &mut c.tx);
            self.clients.push(c);
        }
        Ok(())
    }

    /// Queue one request on client `ci` with timestamp `ts`.
    fn queue_request(&mut self, ci: usize, ts: u64) {
        if self.work.ended(ci) {
            return;
        }
        let c = &mut self.clients[ci];
        if c.backlog() > MAX_BACKLOG {
            self.tally.overruns += 1;
        }
        self.work.request(ci, ts, &mut c.tx);
        c.last_send_ns = ts;
        self.tally.sent += 1;
        self.mark(ci);
    }

    /// Poll, read, parse replies, flush output. Returns when nothing is ready.
    fn pump(&mut self, record: bool) -> io::Result<()> {
        let mut events = std::mem::take(&mut self.events);
        let now = self.t.poll(Some(Duration::ZERO), &mut events)?;
        for ev in &events {
            match *ev {
                Event::Connected(id) | Event::Accepted(id) => {
                    if let Some(ci) = self.client_of(id) {
                        self.clients[ci].connected = true;
                        self.mark(ci);
                    }
                }
                Event::Readable(id) => {
                    if let Some(ci) = self.client_of(id) {
                        self.clients[ci].readable = true;
                        self.mark(ci);
                    }
                }
                Event::Writable(id) => {
                    if let Some(ci) = self.client_of(id) {
                        self.mark(ci);
                    }
                }
            }
        }
        self.events = events;
        let service = std::mem::take(&mut self.service);
        for &ci in &service {
            self.clients[ci].queued = false;
            if !self.clients[ci].alive {
                continue;
            }
            if self.clients[ci].connected {
                self.flush(ci);
            }
            // Read also before Connected: a failed open is reported as
            // Readable, and its recv says why.
            if self.clients[ci].readable {
                self.read(ci, record);
            }
        }
        let mut service = service;
        service.clear();
        if self.service.is_empty() {
            self.service = service;
        }
        self.t.flush(now);
        Ok(())
    }

    fn flush(&mut self, ci: usize) {
        let c = &mut self.clients[ci];
        while c.backlog() > 0 {
            match self.t.send(c.id, &c.tx[c.tx_off..]) {
                Ok(n) => c.tx_off += n,
                Err(e) if would_block(&e) => break,
                Err(e) => {
                    crate::log_warn!("load: {}: send failed: {e}", c.id);
                    c.alive = false;
                    self.tally.disconnected += 1;
                    return;
                }
            }
        }
        if c.tx_off == c.tx.len() {
            c.tx.clear();
            c.tx_off = 0;
        } else if c.tx_off > 1 << 20 {
            c.tx.drain(..c.tx_off);
            c.tx_off = 0;
        }
    }

    fn read(&mut self, ci: usize, record: bool) {
        loop {
            let c = &mut self.clients[ci];
            if c.rx_len == c.rx.len() {
                // Cannot happen with well-formed replies (bounded sizes).
                self.tally.corrupted += 1;
                c.rx_len = 0;
            }
            match self.t.recv(c.id, &mut c.rx[c.rx_len..]) {
                Ok(0) => {
                    if self.work.outstanding(ci) > 0 {
                        crate::log_warn!(
                            "load: {}: closed by the gateway with {} replies outstanding",
                            c.id,
                            self.work.outstanding(ci)
                        );
                        self.tally.disconnected += 1;
                    }
                    c.alive = false;
                    c.readable = false;
                    return;
                }
                Ok(n) => {
                    c.rx_len += n;
                    let mut seen =
                        Replies { tally: &mut self.tally, hist: &mut self.hist, now: clock::mono_ns(), record };
                    match self.work.replies(ci, &c.rx[..c.rx_len], &mut seen) {
                        Ok(used) => {
                            c.rx.copy_within(used..c.rx_len, 0);
                            c.rx_len -= used;
                        }
                        Err(e) => {
                            crate::log_warn!("load: {}: {e}", c.id);
                            self.tally.corrupted += 1;
                            c.alive = false;
                            c.rx_len = 0;
                            return;
                        }
                    }
                    if self.work.outstanding(ci) == 0 {
                        self.idle.push(ci);
                    }
                }
                Err(e) if would_block(&e) => {
                    c.readable = false;
                    return;
                }
                Err(e) => {
                    crate::log_warn!("load: {}: recv failed: {e}", c.id);
                    c.failed = Some(e.kind());
                    c.alive = false;
                    self.tally.disconnected += 1;
                    return;
                }
            }
        }
    }

    /// A heartbeat on session `ci` if it has been quiet (and is logged on).
    fn keep_alive(&mut self, ci: usize, now: u64) {
        let c = &mut self.clients[ci];
        if c.alive
            && c.connected
            && self.work.ready(ci)
            && !self.work.ended(ci)
            && now.saturating_sub(c.last_send_ns) > HEARTBEAT_NS
            && self.work.heartbeat(ci, &mut c.tx)
        {
            c.last_send_ns = now;
            self.mark(ci);
        }
    }

    /// While the others log on, and while the drain waits for replies:
    /// heartbeats on the sessions that are in, every 100 ms, so that none
    /// is logged out idle meanwhile.
    fn keep_alive_all(&mut self, next: &mut u64) {
        let now = clock::mono_ns();
        if now >= *next {
            *next = now + 100_000_000;
            for ci in 0..self.clients.len() {
                self.keep_alive(ci, now);
            }
        }
    }

    fn outstanding(&self) -> usize {
        (0..self.clients.len()).filter(|&ci| self.clients[ci].alive).map(|ci| self.work.outstanding(ci)).sum()
    }

    /// Connect, log on, run, drain, report.
    pub fn run(self, stop: &AtomicBool) -> io::Result<Report> {
        self.run_full(stop).map(|o| o.report)
    }

    /// [`LoadGen::run`], keeping the histogram and the transport.
    pub fn run_full(mut self, stop: &AtomicBool) -> io::Result<Outcome<T>> {
        self.connect_all()?;
        // Wait for connections and logons.
        let deadline = clock::mono_ns() + self.cfg.logon_timeout.as_nanos() as u64;
        let mut next_keep_alive = 0;
        loop {
            self.pump(false)?;
            self.keep_alive_all(&mut next_keep_alive);
            if (0..self.clients.len()).all(|ci| self.clients[ci].connected && self.work.ready(ci)) {
                break;
            }
            if let Some((ci, dead)) = self.clients.iter().enumerate().find(|(_, c)| !c.alive) {
                let kind = dead.failed.unwrap_or(io::ErrorKind::ConnectionAborted);
                let what = if dead.connected { "closed during logon" } else { "did not open" };
                return Err(io::Error::new(
                    kind,
                    format!(
                        "connection {} of {} to {}: {what} ({})",
                        ci + 1,
                        self.cfg.conns,
                        self.cfg.addr,
                        io::Error::from(kind)
                    ),
                ));
            }
            if clock::mono_ns() > deadline || stop.load(Ordering::Relaxed) {
                let n =
                    (0..self.clients.len()).filter(|&ci| !(self.clients[ci].connected && self.work.ready(ci))).count();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{n} of {} connections not logged on after {:?}", self.cfg.conns, self.cfg.logon_timeout),
                ));
            }
        }
        if let Some(t) = self.cfg.together.clone() {
            // Keep the sessions served while the other loops log on.
            t.arrived.fetch_add(1, Ordering::AcqRel);
            while t.arrived.load(Ordering::Acquire) < t.of && !stop.load(Ordering::Relaxed) {
                self.pump(false)?;
                self.keep_alive_all(&mut next_keep_alive);
                if clock::mono_ns() > deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{} of {} loops logged on after {:?}",
                            t.arrived.load(Ordering::Acquire),
                            t.of,
                            self.cfg.logon_timeout
                        ),
                    ));
                }
            }
        }

        let start = clock::mono_ns();
        let end = start + self.cfg.duration.as_nanos() as u64;
        let nclients = self.clients.len();
        let mut rr = 0usize;
        let mut next_progress = start + 1_000_000_000;
        let mut last_progress_answered = 0u64;
        let interval_ns = match self.cfg.mode {
            Mode::Rate(r) => (1e9 / r).max(1.0),
            Mode::PingPong => 0.0,
        };
        let mut scheduled = 0u64;
        let mut next_burst = self.cfg.burst.map_or(u64::MAX, |(_, every)| start + every);
        let mut next_heartbeat_check = start;
        if self.cfg.mode == Mode::PingPong {
            let now = clock::mono_ns();
            for ci in 0..nclients {
                self.queue_request(ci, now);
            }
        }
        loop {
            let now = clock::mono_ns();
            if now >= end || stop.load(Ordering::Relaxed) {
                break;
            }
            match self.cfg.mode {
                Mode::Rate(_) => {
                    // Every message whose scheduled time has come, stamped with that time.
                    loop {
                        let due = start + (scheduled as f64 * interval_ns) as u64;
                        if due > now {
                            break;
                        }
                        let mut tries = 0;
                        while (!self.clients[rr].alive || self.work.ended(rr)) && tries < nclients {
                            rr = (rr + 1) % nclients;
                            tries += 1;
                        }
                        self.queue_request(rr, due);
                        rr = (rr + 1) % nclients;
                        scheduled += 1;
                    }
                    if now >= next_burst {
                        let (count, every) = self.cfg.burst.unwrap_or((0, u64::MAX));
                        for _ in 0..count {
                            let mut tries = 0;
                            while (!self.clients[rr].alive || self.work.ended(rr)) && tries < nclients {
                                rr = (rr + 1) % nclients;
                                tries += 1;
                            }
                            self.queue_request(rr, next_burst);
                            rr = (rr + 1) % nclients;
                        }
                        next_burst = next_burst.saturating_add(every);
                    }
                }
                Mode::PingPong => {
                    let idle = std::mem::take(&mut self.idle);
                    for &ci in &idle {
                        if self.clients[ci].alive && self.work.outstanding(ci) == 0 {
                            self.queue_request(ci, now);
                        }
                    }
                }
            }
            // Client heartbeats keep quiet sessions inside the idle timeout
            // (checked every 100 ms, not every iteration).
            if now >= next_heartbeat_check {
                next_heartbeat_check = now + 100_000_000;
                if (0..nclients).all(|ci| !self.clients[ci].alive || self.work.ended(ci)) {
                    // Every session is gone or logged out by a gateway
                    // shutdown: nothing left to measure.
                    break;
                }
                for ci in 0..nclients {
                    self.keep_alive(ci, now);
                }
            }
            self.pump(true)?;
            if self.cfg.progress && now >= next_progress {
                next_progress += 1_000_000_000;
                let p = self.hist.value_at_quantile(0.99) as f64 / 1000.0;
                eprintln!(
                    "load: t={:.0}s sent={} answered={} (+{}/s) outstanding={} p99={:.1}us",
                    (now - start) as f64 / 1e9,
                    self.tally.sent,
                    self.tally.answered,
                    self.tally.answered - last_progress_answered,
                    self.outstanding(),
                    p
                );
                last_progress_answered = self.tally.answered;
            }
        }
        let run_ns = clock::mono_ns() - start;

        // Drain: wait a bounded time for every outstanding reply, the
        // sessions kept alive meanwhile (a gateway that waits on its
        // exchange must not log them out idle while they wait for it).
        let drain_end = clock::mono_ns() + self.cfg.drain.as_nanos() as u64;
        while self.outstanding() > 0 && clock::mono_ns() < drain_end {
            self.pump(true)?;
            self.keep_alive_all(&mut next_keep_alive);
        }

        // Say goodbye (an orders Logout) and close.
        let mut goodbye = false;
        for ci in 0..nclients {
            let c = &mut self.clients[ci];
            if c.alive && !self.work.ended(ci) && self.work.goodbye(ci, &mut c.tx) {
                goodbye = true;
                self.mark(ci);
            }
        }
        if goodbye {
            // Wait (bounded) for each session's Logout reply and FIN, so
            // closing does not reset connections with replies in flight.
            let logout_end = clock::mono_ns() + 2_000_000_000;
            while self.clients.iter().any(|c| c.alive) && clock::mono_ns() < logout_end {
                self.pump(false)?;
            }
        }
        let unanswered = (0..nclients).map(|ci| self.work.outstanding(ci) as u64).sum::<u64>();
        // Graceful close: FIN on every connection, a bounded wait for the
        // stack to put them on the wire, then release.
        for c in &self.clients {
            let _ = self.t.shutdown_write(c.id);
        }
        let close_end = clock::mono_ns() + 200_000_000;
        while clock::mono_ns() < close_end {
            let mut evs = std::mem::take(&mut self.events);
            let now = self.t.poll(Some(Duration::ZERO), &mut evs)?;
            self.events = evs;
            self.t.flush(now);
        }
        for c in &self.clients {
            self.t.close(c.id);
        }
        self.t.flush(clock::mono_ns());

        let secs = run_ns as f64 / 1e9;
        let report = Report {
            backend: self.t.name().to_string(),
            app: self.cfg.app,
            mode: match self.cfg.mode {
                Mode::Rate(r) => format!("rate {r} msg/s"),
                Mode::PingPong => "pingpong".to_string(),
            },
            conns: self.cfg.conns,
            duration_s: secs,
            sent: self.tally.sent,
            answered: self.tally.answered,
            throughput_msgs_per_s: if secs > 0.0 { self.tally.answered as f64 / secs } else { 0.0 },
            rtt_us: Percentiles::from_hist(&self.hist),
            unanswered,
            rejected: self.tally.rejected,
            out_of_sequence: self.tally.out_of_sequence,
            unexpected: self.tally.unexpected,
            corrupted: self.tally.corrupted,
            disconnected: self.tally.disconnected,
            schedule_overruns: self.tally.overruns,
            shutdown_logouts: self.tally.shutdown_logouts,
            after_shutdown: self.tally.after_shutdown,
            loops: Vec::new(),
            lifecycle: self.work.lifecycle(),
        };
        Ok(Outcome { report, hist: self.hist, transport: self.t })
    }
}

#[cfg(test)]
mod tests;
