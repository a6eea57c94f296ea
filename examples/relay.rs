//! A relay built on tailgate: accept a client, open a connection to an
//! upstream server from the same pinned loop, and relay bytes both ways.
//!
//! ```text
//! cargo run --release --example relay -- --listen 198.18.0.1:7000 --upstream 198.18.0.2:7001
//! cargo run --release --example relay -- --backend xdp --iface tg_gw0 --queue 0,1 --core 0,1 \
//!     --listen 198.18.0.1:7000 --upstream 198.18.0.2:7001
//! ```
//!
//! Each accepted client gets a pipe: two bounded buffers, one each way. The
//! relay asks its loop to connect upstream ([`Requests::connect`]); bytes
//! from one side go into the pipe and the other side is woken
//! ([`Requests::wake`]) to write them. Input beyond a full pipe stays in the
//! connection's receive buffer, so a slow reader slows its writer (TCP
//! backpressure, end to end). A refused or timed-out upstream closes the
//! client with a FIN; a FIN or close on either side closes the other once
//! what is buffered for it is written. On xdp each loop's upstream
//! connections take local ports whose replies the NIC steers back to that
//! loop's queue.

use std::net::SocketAddr;

use tailgate::app::{App, OutBuf, Requests, Verdict};
use tailgate::sampler::tracer::Tracer;
use tailgate::transport::ConnId;

/// Bytes buffered per pipe and direction.
pub const PIPE_BYTES: usize = 64 * 1024;

#[derive(Default)]
struct Pipe {
    client: Option<ConnId>,
    upstream: Option<ConnId>,
    connecting: bool,
    to_up: Vec<u8>,
    to_client: Vec<u8>,
    /// The client (or upstream) sent FIN or is gone.
    client_done: bool,
    up_done: bool,
    /// The upstream connection never opened.
    refused: bool,
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
}

impl Relay {
    /// Relay to `upstream`, at most `pipes` clients at once.
    pub fn new(upstream: SocketAddr, pipes: usize) -> Self {
        Relay {
            upstream,
            pipes: (0..pipes).map(|_| Pipe::default()).collect(),
            free: (0..pipes).rev().collect(),
            requests: Requests::with_capacity(pipes.max(16)),
            relayed_up: 0,
            relayed_down: 0,
            opened: 0,
            refused: 0,
        }
    }

    fn release(&mut self, i: usize) {
        if self.pipes[i].idle() {
            let p = &mut self.pipes[i];
            p.to_up.clear();
            p.to_client.clear();
            (p.client_done, p.up_done, p.refused) = (false, false, false);
            self.free.push(i);
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

impl App for Relay {
    type Session = Side;

    fn name(&self) -> &'static str {
        "relay"
    }

    fn open(&mut self, conn: ConnId, _now: u64) -> Side {
        let Some(i) = self.free.pop() else { return Side::Refused };
        let p = &mut self.pipes[i];
        p.to_up.reserve(PIPE_BYTES);
        p.to_client.reserve(PIPE_BYTES);
        p.client = Some(conn);
        p.connecting = self.requests.connect(self.upstream, i as u64);
        p.refused = !p.connecting;
        if p.refused {
            self.requests.wake(conn);
        }
        self.opened += 1;
        Side::Client(i)
    }

    fn open_outbound(&mut self, conn: ConnId, token: u64, _now: u64) -> Side {
        let i = token as usize;
        let p = &mut self.pipes[i];
        p.connecting = false;
        p.upstream = Some(conn);
        // What the client sent while we connected, or its FIN.
        self.requests.wake(conn);
        Side::Upstream(i)
    }

    fn on_refused(&mut self, token: u64, _reason: &str) {
        let i = token as usize;
        let p = &mut self.pipes[i];
        p.connecting = false;
        p.refused = true;
        self.refused += 1;
        match p.client {
            Some(c) => {
                self.requests.wake(c);
            }
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
        _: u64,
    ) -> (usize, Verdict) {
        let (n, other) = match *s {
            Side::Refused => return (0, Verdict::Abort),
            Side::Client(i) => {
                let p = &mut self.pipes[i];
                if p.refused {
                    return (input.len(), Verdict::Continue);
                }
                (fill(&mut p.to_up, input), p.upstream)
            }
            Side::Upstream(i) => {
                let p = &mut self.pipes[i];
                (fill(&mut p.to_client, input), p.client)
            }
        };
        if n > 0 {
            if let Some(c) = other {
                self.requests.wake(c);
            }
        }
        (n, Verdict::Continue)
    }

    fn on_wake(&mut self, s: &mut Side, out: &mut OutBuf, _now: u64) -> Verdict {
        let (moved, other, done) = match *s {
            Side::Refused => return Verdict::Abort,
            Side::Client(i) => {
                let p = &mut self.pipes[i];
                let n = pour(&mut p.to_client, out);
                self.relayed_down += n as u64;
                (n, p.upstream, p.to_client.is_empty() && (p.up_done || p.refused))
            }
            Side::Upstream(i) => {
                let p = &mut self.pipes[i];
                let n = pour(&mut p.to_up, out);
                self.relayed_up += n as u64;
                (n, p.client, p.to_up.is_empty() && p.client_done)
            }
        };
        // Room in the pipe: the other side's waiting input may now fit.
        if moved > 0 {
            if let Some(c) = other {
                self.requests.wake(c);
            }
        }
        if done {
            Verdict::Close
        } else {
            Verdict::Continue
        }
    }

    fn on_peer_fin(&mut self, s: &mut Side, leftover: &[u8], _out: &mut OutBuf) -> Verdict {
        let other = match *s {
            Side::Refused => return Verdict::Abort,
            Side::Client(i) => {
                let p = &mut self.pipes[i];
                fill(&mut p.to_up, leftover);
                p.client_done = true;
                p.upstream
            }
            Side::Upstream(i) => {
                let p = &mut self.pipes[i];
                fill(&mut p.to_client, leftover);
                p.up_done = true;
                p.client
            }
        };
        if let Some(c) = other {
            self.requests.wake(c);
        }
        Verdict::Close
    }

    fn on_tick(&mut self, _s: &mut Side, _out: &mut OutBuf, _now: u64) -> Verdict {
        Verdict::Continue
    }

    fn on_close(&mut self, s: Side, _reason: &str) {
        let (i, other) = match s {
            Side::Refused => return,
            Side::Client(i) => {
                let p = &mut self.pipes[i];
                (p.client, p.client_done) = (None, true);
                (i, p.upstream)
            }
            Side::Upstream(i) => {
                let p = &mut self.pipes[i];
                (p.upstream, p.up_done) = (None, true);
                (i, p.client)
            }
        };
        match other {
            Some(c) => {
                self.requests.wake(c);
            }
            None => self.release(i),
        }
    }

    fn summary(&self) -> String {
        format!(
            "relay: clients={} upstream_refused={} bytes_up={} bytes_down={}",
            self.opened, self.refused, self.relayed_up, self.relayed_down
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
    /// Most clients at once, per loop.
    #[arg(long, default_value_t = 1024)]
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

        /// Read what arrived on the client: Some(true) at FIN; panics on a reset.
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
        let mut fin = false;
        for _ in 0..100_000 {
            w.step();
            if w.read(id, &mut got) {
                fin = true;
                break;
            }
        }
        assert!(fin, "no FIN from the relay");
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

    #[test]
    fn a_refused_upstream_closes_the_client_cleanly() {
        let mut w = World::new(false);
        let id = w.client();
        let _ = w.other.send(id, b"hello");
        let mut got = Vec::new();
        let mut fin = false;
        for _ in 0..100_000 {
            w.step();
            if w.read(id, &mut got) {
                fin = true;
                break;
            }
        }
        assert!(fin, "the client was not closed");
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
