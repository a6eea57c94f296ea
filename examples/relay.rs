//! A relay built on tailgate: accept a client, open a connection to an
//! upstream server from the same pinned loop, and relay bytes both ways.
//!
//! ```text
//! cargo run --release --example relay -- --listen 198.18.0.1:7000 --upstream 198.18.0.2:7001
//! cargo run --release --example relay -- --backend xdp --iface tg_gw0 --queue 0,1 --core 0,1 \
//!     --listen 198.18.0.1:7000 --upstream 198.18.0.2:7001
//! ```
//!
//! Each accepted client gets a pipe: two bounded buffers, one each way,
//! allocated at start-up. The relay asks its loop to connect upstream
//! ([`Requests::connect`]); bytes from one side go into the pipe and the
//! other side is woken ([`Requests::wake`]) to write them. Input beyond a
//! full pipe stays in the connection's receive buffer, so a slow reader
//! slows its writer (TCP backpressure, end to end). Each direction closes
//! on its own: one side's FIN is passed on to the other once what it sent
//! is written ([`Verdict::CloseWrite`]), and a pipe ends when both
//! directions have. A refused or timed-out upstream closes the client with a
//! FIN; a client silent for [`IDLE_NS`] is closed. On xdp each loop's
//! upstream connections take local ports whose replies the NIC steers back
//! to that loop's queue.

use std::net::SocketAddr;

use tailgate::app::{App, OutBuf, Requests, Verdict};
use tailgate::sampler::tracer::Tracer;
use tailgate::transport::ConnId;

/// Bytes buffered per pipe and direction.
pub const PIPE_BYTES: usize = 64 * 1024;
/// A pipe with no byte either way for this long is closed.
pub const IDLE_NS: u64 = 60_000_000_000;

/// One direction of a pipe: its bytes, whether its writer has finished
/// (FIN or gone), and whether that was passed on (FIN sent to the reader).
#[derive(Default)]
struct Way {
    buf: Vec<u8>,
    done: bool,
    passed: bool,
}

#[derive(Default)]
struct Pipe {
    client: Option<ConnId>,
    upstream: Option<ConnId>,
    connecting: bool,
    /// Client to upstream, and upstream to client.
    up: Way,
    down: Way,
    /// The upstream connection never opened.
    refused: bool,
    last_active: u64,
}

impl Pipe {
    fn idle(&self) -> bool {
        self.client.is_none() && self.upstream.is_none() && !self.connecting
    }
}

/// Which end of which pipe a connection is.
#[derive(Debug, Clone, Copy)]
pub enum Side {
    Client(usize),
    Upstream(usize),
    /// Accepted with every pipe in use: closed at once.
    Refused,
}

/// The relay application: one per loop.
pub struct Relay {
    upstream: SocketAddr,
    pipes: Vec<Pipe>,
    free: Vec<usize>,
    requests: Requests,
    pub relayed_up: u64,
    pub relayed_down: u64,
    pub opened: u64,
    pub refused: u64,
    pub busy: u64,
    pub idle_closed: u64,
}

impl Relay {
    /// Relay to `upstream`, at most `pipes` clients at once. Every buffer
    /// is allocated here, none later.
    pub fn new(upstream: SocketAddr, pipes: usize) -> Self {
        let pipe = || Pipe {
            up: Way { buf: Vec::with_capacity(PIPE_BYTES), ..Way::default() },
            down: Way { buf: Vec::with_capacity(PIPE_BYTES), ..Way::default() },
            ..Pipe::default()
        };
        Relay {
            upstream,
            pipes: (0..pipes).map(|_| pipe()).collect(),
            free: (0..pipes).rev().collect(),
            // Wakes are kept once per connection: two per pipe at most, and
            // one connect per pipe, so neither queue can overflow (one more
            // for the refused client's wake).
            requests: Requests::with_capacity(2 * pipes + 64),
            relayed_up: 0,
            relayed_down: 0,
            opened: 0,
            refused: 0,
            busy: 0,
            idle_closed: 0,
        }
    }

    fn release(&mut self, i: usize) {
        if self.pipes[i].idle() {
            let p = &mut self.pipes[i];
            for w in [&mut p.up, &mut p.down] {
                w.buf.clear();
                (w.done, w.passed) = (false, false);
            }
            p.refused = false;
            self.free.push(i);
        }
    }

    fn wake(&mut self, c: Option<ConnId>) {
        if let Some(c) = c {
            let queued = self.requests.wake(c);
            debug_assert!(queued, "the wake queue holds two per pipe");
        }
    }
}

/// Move what fits of `from` into `out`; the bytes moved.
fn pour(from: &mut Vec<u8>, out: &mut OutBuf) -> usize {
    let n = from.len().min(out.spare());
    if n > 0 {
        out.put(&from[..n]);
        from.drain(..n);
    }
    n
}

/// Take what fits of `input` into `into`; the bytes taken.
fn fill(into: &mut Vec<u8>, input: &[u8]) -> usize {
    let n = input.len().min(PIPE_BYTES - into.len());
    into.extend_from_slice(&input[..n]);
    n
}

/// Write what `way` holds for its reader; then the verdict for the
/// reader's connection: pass the writer's FIN on once all is written, and
/// end the connection once its own direction (`other`) is done too.
fn deliver(way: &mut Way, other_done: bool, out: &mut OutBuf) -> (usize, Verdict) {
    let n = pour(&mut way.buf, out);
    if !way.buf.is_empty() || !way.done {
        return (n, Verdict::Continue);
    }
    if other_done {
        return (n, Verdict::Close);
    }
    if way.passed {
        return (n, Verdict::Continue);
    }
    way.passed = true;
    (n, Verdict::CloseWrite)
}

impl App for Relay {
    type Session = Side;
    const HOLDS_INPUT: bool = true;

    fn name(&self) -> &'static str {
        "relay"
    }

    fn open(&mut self, conn: ConnId, now: u64) -> Side {
        let Some(i) = self.free.pop() else {
            self.busy += 1;
            self.wake(Some(conn));
            return Side::Refused;
        };
        let p = &mut self.pipes[i];
        p.client = Some(conn);
        p.last_active = now;
        p.connecting = self.requests.connect(self.upstream, i as u64);
        debug_assert!(p.connecting, "the connect queue holds one per pipe");
        self.opened += 1;
        Side::Client(i)
    }

    fn open_outbound(&mut self, conn: ConnId, token: u64, _now: u64) -> Side {
        let i = token as usize;
        let p = &mut self.pipes[i];
        p.connecting = false;
        p.upstream = Some(conn);
        // What the client sent while we connected, or its FIN.
        self.wake(Some(conn));
        Side::Upstream(i)
    }

    fn on_refused(&mut self, token: u64, _reason: &str) {
        let i = token as usize;
        let p = &mut self.pipes[i];
        p.connecting = false;
        p.refused = true;
        // Nothing will come from upstream, and nothing the client sends goes anywhere.
        (p.down.done, p.up.done) = (true, true);
        p.up.buf.clear();
        self.refused += 1;
        match p.client {
            Some(c) => self.wake(Some(c)),
            None => self.release(i),
        }
    }

    fn on_input(
        &mut self,
        s: &mut Side,
        input: &[u8],
        _: &mut OutBuf,
        _: &mut Tracer,
        _: u64,
        now: u64,
    ) -> (usize, Verdict) {
        let (n, other) = match *s {
            Side::Refused => return (input.len(), Verdict::Continue),
            Side::Client(i) => {
                let p = &mut self.pipes[i];
                p.last_active = now;
                if p.refused || p.upstream.is_none() && !p.connecting {
                    // The upstream is gone: the bytes have nowhere to go.
                    return (input.len(), Verdict::Continue);
                }
                (fill(&mut p.up.buf, input), p.upstream)
            }
            Side::Upstream(i) => {
                let p = &mut self.pipes[i];
                p.last_active = now;
                if p.client.is_none() {
                    return (input.len(), Verdict::Continue);
                }
                (fill(&mut p.down.buf, input), p.client)
            }
        };
        if n > 0 {
            self.wake(other);
        }
        (n, Verdict::Continue)
    }

    fn on_wake(&mut self, s: &mut Side, out: &mut OutBuf, _now: u64) -> Verdict {
        let (moved, other, v) = match *s {
            Side::Refused => return Verdict::Abort,
            Side::Client(i) => {
                let p = &mut self.pipes[i];
                let (n, v) = deliver(&mut p.down, p.up.done, out);
                self.relayed_down += n as u64;
                (n, p.upstream, v)
            }
            Side::Upstream(i) => {
                let p = &mut self.pipes[i];
                let (n, v) = deliver(&mut p.up, p.down.done, out);
                self.relayed_up += n as u64;
                (n, p.client, v)
            }
        };
        // Room in the pipe: the other side's waiting input may now fit.
        if moved > 0 {
            self.wake(other);
        }
        v
    }

    fn on_peer_fin(&mut self, s: &mut Side, _leftover: &[u8], _out: &mut OutBuf) -> Verdict {
        // The server holds the FIN back until all input before it was taken.
        let (me, other) = match *s {
            Side::Refused => return Verdict::Close,
            Side::Client(i) => {
                let p = &mut self.pipes[i];
                p.up.done = true;
                (p.client, p.upstream)
            }
            Side::Upstream(i) => {
                let p = &mut self.pipes[i];
                p.down.done = true;
                (p.upstream, p.client)
            }
        };
        // The other side passes the FIN on; this one may be done both ways.
        self.wake(other);
        self.wake(me);
        Verdict::Continue
    }

    fn on_tick(&mut self, s: &mut Side, _out: &mut OutBuf, now: u64) -> Verdict {
        match *s {
            Side::Client(i) if now.saturating_sub(self.pipes[i].last_active) > IDLE_NS => {
                self.idle_closed += 1;
                Verdict::Close
            }
            _ => Verdict::Continue,
        }
    }

    fn on_close(&mut self, s: Side, _reason: &str) {
        let (i, other) = match s {
            Side::Refused => return,
            Side::Client(i) => {
                let p = &mut self.pipes[i];
                p.client = None;
                // Nothing more from the client, and nobody to write to.
                (p.up.done, p.down.done) = (true, true);
                p.down.buf.clear();
                (i, p.upstream)
            }
            Side::Upstream(i) => {
                let p = &mut self.pipes[i];
                p.upstream = None;
                (p.down.done, p.up.done) = (true, true);
                p.up.buf.clear();
                (i, p.client)
            }
        };
        match other {
            Some(c) => self.wake(Some(c)),
            None => self.release(i),
        }
    }

    fn summary(&self) -> String {
        format!(
            "relay: clients={} upstream_refused={} busy={} idle_closed={} bytes_up={} bytes_down={}",
            self.opened, self.refused, self.busy, self.idle_closed, self.relayed_up, self.relayed_down
        )
    }

    fn requests(&mut self) -> Option<&mut Requests> {
        Some(&mut self.requests)
    }
}

/// The command line.
#[derive(clap::Parser)]
#[command(about = "Relay TCP clients to an upstream server, on tailgate's loops")]
struct Args {
    /// Address to accept clients on (with xdp, the address the stack owns).
    #[arg(long)]
    listen: SocketAddr,
    /// The upstream server every client is relayed to.
    #[arg(long)]
    upstream: SocketAddr,
    /// kernel or xdp.
    #[arg(long, default_value = "kernel")]
    backend: String,
    /// The xdp backend's interface.
    #[arg(long)]
    iface: Option<String>,
    /// NIC queues, one loop each (xdp), e.g. 0,1.
    #[arg(long, default_value = "0", value_delimiter = ',')]
    queue: Vec<u32>,
    /// Cores, one loop each, e.g. 0,1.
    #[arg(long, value_delimiter = ',')]
    core: Vec<usize>,
    /// Most clients at once, per loop (each pipe holds 128 KiB, allocated at start-up).
    #[arg(long, default_value_t = 256)]
    pipes: usize,
}

fn main() -> std::process::ExitCode {
    use clap::Parser;
    use tailgate::launch::{serve, LaunchConfig, Places};
    let a = Args::parse();
    let places = Places { queues: a.queue.clone(), cores: a.core.clone() };
    let cfg = match (a.backend.as_str(), &a.iface, a.listen.ip()) {
        ("kernel", _, _) => LaunchConfig::kernel(places),
        ("xdp", Some(iface), std::net::IpAddr::V4(ip)) => {
            let mut x = tailgate::backend::xdp::XdpConfig::new(iface, ip);
            x.xsk.queue = a.queue[0];
            x.open_connections();
            LaunchConfig::xdp(x, places)
        }
        _ => {
            eprintln!("relay: --backend kernel, or --backend xdp with --iface and an IPv4 --listen");
            return std::process::ExitCode::from(2);
        }
    };
    tailgate::log::set_level(1);
    let stop = tailgate::runtime::stop_flag().expect("signal handlers");
    let server = tailgate::server::ServerConfig::default();
    match serve(cfg, a.listen, server, |_| Relay::new(a.upstream, a.pipes), &stop) {
        Ok(ended) => {
            for (i, l) in ended.loops.iter().enumerate() {
                match l {
                    Ok(s) => {
                        let extra = s.report.as_deref().unwrap_or("");
                        eprintln!("loop {i} ({}): opened={} {} {extra}", s.place, s.server.opened, s.summary);
                    }
                    Err(e) => eprintln!("loop {i}: {e}"),
                }
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("relay: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The relay on the in-memory link, in virtual time: the client and the
/// upstream echo server are one stack on the other end.
#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    use super::Relay;
    use tailgate::server::{Server, ServerConfig};
    use tailgate::stack::sim::{pair, Clock, MemLink, MAC_A, MAC_B};
    use tailgate::stack::{Stack, StackConfig};
    use tailgate::transport::{would_block, ConnId, Event, Transport};

    const RELAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const OTHER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const STEP: Duration = Duration::from_micros(10);

    struct World {
        clock: Clock,
        relay: Server<Stack<MemLink>, Relay>,
        other: Stack<MemLink>,
        echo: Vec<(ConnId, Vec<u8>, bool)>,
    }

    fn stack(ip: Ipv4Addr, mac: [u8; 6], link: MemLink) -> Stack<MemLink> {
        let mut c = StackConfig::new(ip, mac);
        c.random_seed = 7;
        Stack::new(c, link)
    }

    impl World {
        fn new(upstream_listens: bool) -> World {
            let clock = Clock::new(1_000_000_000);
            let (a, b) = pair(&clock);
            let upstream = SocketAddr::new(OTHER.into(), 9000);
            let cfg = ServerConfig { tick_ns: 1_000_000, ..ServerConfig::default() };
            let mut relay = Server::new(stack(RELAY, MAC_A, a), Relay::new(upstream, 4), cfg);
            relay.listen(SocketAddr::new(RELAY.into(), 7000)).unwrap();
            let mut other = stack(OTHER, MAC_B, b);
            if upstream_listens {
                other.listen(upstream).unwrap();
            }
            World { clock, relay, other, echo: Vec::new() }
        }

        /// One step of both ends; the upstream echoes what it gets and
        /// closes after the relay's FIN.
        fn step(&mut self) {
            self.relay.run_once().unwrap();
            let mut ev = Vec::new();
            let now = self.other.poll(Some(Duration::ZERO), &mut ev).unwrap();
            for e in ev {
                if let Event::Accepted(id) = e {
                    self.echo.push((id, Vec::new(), false));
                }
            }
            let mut buf = [0u8; 8192];
            for (id, pending, fin) in &mut self.echo {
                loop {
                    match self.other.recv(*id, &mut buf) {
                        Ok(0) => {
                            *fin = true;
                            break;
                        }
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                        Err(_) => break,
                    }
                }
                if let Ok(n) = self.other.send(*id, pending) {
                    pending.drain(..n);
                }
                if *fin && pending.is_empty() {
                    let _ = self.other.shutdown_write(*id);
                }
            }
            self.other.flush(now);
            self.clock.advance(STEP);
        }

        fn client(&mut self) -> ConnId {
            let id = self.other.connect(SocketAddr::new(RELAY.into(), 7000)).unwrap();
            for _ in 0..1000 {
                self.step();
            }
            id
        }

        /// Step until the client reads the relay's FIN (false: not within 1 s).
        fn until_fin(&mut self, id: ConnId, into: &mut Vec<u8>) -> bool {
            for _ in 0..100_000 {
                self.step();
                if self.read(id, into) {
                    return true;
                }
            }
            false
        }

        /// Read what arrived on the client: true at FIN; panics on a reset.
        fn read(&mut self, id: ConnId, into: &mut Vec<u8>) -> bool {
            let mut buf = [0u8; 16384];
            loop {
                match self.other.recv(id, &mut buf) {
                    Ok(0) => return true,
                    Ok(n) => into.extend_from_slice(&buf[..n]),
                    Err(e) if would_block(&e) => return false,
                    Err(e) => panic!("client recv: {e} (a reset, not a clean close)"),
                }
            }
        }
    }

    #[test]
    fn every_byte_arrives_both_ways() {
        let mut w = World::new(true);
        let id = w.client();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let (mut off, mut got) = (0, Vec::new());
        for _ in 0..400_000 {
            if off < data.len() {
                match w.other.send(id, &data[off..]) {
                    Ok(n) => off += n,
                    Err(e) if would_block(&e) => {}
                    Err(e) => panic!("client send: {e}"),
                }
            }
            w.read(id, &mut got);
            if got.len() == data.len() {
                break;
            }
            w.step();
        }
        assert_eq!(got.len(), data.len(), "relayed back {} of {} bytes", got.len(), data.len());
        assert!(got == data, "the bytes came back changed");
        // The client closes: the relay closes upstream, then the client, cleanly.
        w.other.shutdown_write(id).unwrap();
        assert!(w.until_fin(id, &mut got), "no FIN from the relay");
        assert_eq!(w.relay.app.relayed_up, data.len() as u64);
        assert_eq!(w.relay.app.relayed_down, data.len() as u64);
        assert_eq!(w.relay.stats.connects, 1);
        assert_eq!(w.relay.stats.connect_failed, 0);
        assert_eq!(w.relay.stats.aborted, 0);
        for _ in 0..10_000 {
            w.step();
        }
        assert_eq!(w.relay.stats.closed, 2, "client and upstream connections both closed");
        assert_eq!(w.relay.app.free.len(), 4, "the pipe went back to the pool");
    }

    /// The client writes 400 KB without reading a byte, then FIN; only then
    /// does it read. Every pipe, buffer and window on the way fills up, and
    /// the half-close has to wait behind the data: nothing may be lost or
    /// reset.
    #[test]
    fn a_client_that_reads_late_and_half_closes_gets_every_byte() {
        let mut w = World::new(true);
        let id = w.client();
        let data: Vec<u8> = (0..400_000u32).map(|i| (i % 251) as u8).collect();
        let mut off = 0;
        for _ in 0..200_000 {
            match w.other.send(id, &data[off..]) {
                Ok(n) => off += n,
                Err(e) if would_block(&e) => {}
                Err(e) => panic!("client send: {e}"),
            }
            if off == data.len() {
                break;
            }
            w.step();
        }
        let sent_before_reading = off;
        if off == data.len() {
            w.other.shutdown_write(id).unwrap();
        }
        let (mut got, mut fin) = (Vec::new(), false);
        for _ in 0..400_000 {
            if off < data.len() {
                match w.other.send(id, &data[off..]) {
                    Ok(n) => off += n,
                    Err(e) if would_block(&e) => {}
                    Err(e) => panic!("client send: {e}"),
                }
                if off == data.len() {
                    w.other.shutdown_write(id).unwrap();
                }
            }
            if w.read(id, &mut got) {
                fin = true;
                break;
            }
            w.step();
        }
        assert!(sent_before_reading > 0);
        assert_eq!(got.len(), data.len(), "relayed back {} of {} bytes", got.len(), data.len());
        assert!(got == data, "the bytes came back changed");
        let p = &w.relay.app.pipes[0];
        assert!(
            fin,
            "no FIN after the echo: up done={} passed={} buf={}, down done={} passed={} buf={}, client={:?} upstream={:?}",
            p.up.done,
            p.up.passed,
            p.up.buf.len(),
            p.down.done,
            p.down.passed,
            p.down.buf.len(),
            p.client,
            p.upstream
        );
        assert_eq!(w.relay.stats.aborted, 0, "nothing was reset");
    }

    #[test]
    fn a_refused_upstream_closes_the_client_cleanly() {
        let mut w = World::new(false);
        let id = w.client();
        let _ = w.other.send(id, b"hello");
        let mut got = Vec::new();
        assert!(w.until_fin(id, &mut got), "the client was not closed");
        assert!(got.is_empty(), "{got:?}");
        assert_eq!(w.relay.app.refused, 1);
        assert_eq!(w.relay.stats.connect_failed, 1);
        assert_eq!(w.relay.stats.aborted, 0, "closed with a FIN, not reset");
        w.other.shutdown_write(id).unwrap();
        for _ in 0..10_000 {
            w.step();
        }
        assert_eq!(w.relay.app.free.len(), 4, "the pipe went back to the pool");
    }
}
