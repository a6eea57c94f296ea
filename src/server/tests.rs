//! The event loop over the kernel backend on loopback, and over a peer that
//! takes output slowly.

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
