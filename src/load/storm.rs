//! `tailgate storm`: the two worst minutes of an accept path, measured from
//! the client's side with kernel TCP clients.
//!
//! - **Connection storm**: `conns` non-blocking connects at once, then one
//!   echo on each. Reports the time until every connection was established
//!   and until every echo came back, and the client kernel's SYN
//!   retransmissions (`TcpExt TCPSynRetrans` of the namespace, before and
//!   after), which is what a slow accept path costs a client: a second per
//!   retransmission.
//! - **SYN flood**: `flood` SYNs from a spoofed address and pseudo-random
//!   ports through a raw socket, none of them ever completed; when half are
//!   out, a legitimate client connects and echoes once. Reports its connect
//!   and echo times, its SYN retransmissions, and whether the flood was
//!   still being sent when it was served.
//! - **Ping or UDP flood**: an established session echoes back to back for
//!   a second, then again while another thread sends ICMP echo requests (or
//!   UDP datagrams to pseudo-random ports) to the server's address as fast
//!   as its socket takes them. Reports the session's round trips, calm and
//!   flooded: what a reflector costs the sessions it serves.
//!
//! Every loop is bounded in count and time. The destination (and the
//! spoofed source) must be in 198.18.0.0/15, the benchmarking range the lab
//! uses, or loopback: this tool sends nowhere else.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use smoltcp::wire::{TcpControl, TcpRepr, TcpSeqNumber};

/// The echo each connection sends (the echo app answers it whole).
const PING: &[u8] = b"tailgate-storm-ping\n";

/// Is `ip` one this tool may send to?
pub fn allowed(ip: Ipv4Addr) -> bool {
    ip.is_loopback() || (u32::from(ip) & 0xfffe_0000) == u32::from(Ipv4Addr::new(198, 18, 0, 0))
}

/// The client namespace's SYN retransmissions so far (`TcpExt
/// TCPSynRetrans` in /proc/net/netstat).
pub fn syn_retrans() -> io::Result<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat")?;
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let v = names.split_whitespace().zip(values.split_whitespace()).find(|(n, _)| *n == "TCPSynRetrans");
        return v
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| io::Error::other("/proc/net/netstat has no TcpExt TCPSynRetrans"));
    }
    Err(io::Error::other("/proc/net/netstat has no TcpExt line"))
}

/// What a storm measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StormResult {
    pub conns: usize,
    /// Connections established, and echoes answered.
    pub established: usize,
    pub echoed: usize,
    /// From the first connect to the last connection established / echo.
    pub established_s: f64,
    pub echoed_s: f64,
    /// SYN retransmissions of the client namespace during the storm.
    pub syn_retrans: u64,
}

/// Open `conns` connections to `dst` at once and echo once on each;
/// give up after `limit`.
pub fn storm(dst: SocketAddr, conns: usize, limit: Duration) -> io::Result<StormResult> {
    check_dst(dst)?;
    let retrans0 = syn_retrans()?;
    let mut poll = Poll::new()?;
    let mut socks = Vec::with_capacity(conns);
    // Per connection: 0 connecting, 1 established (ping sent), 2 echoed, 3 failed;
    // and the echo bytes read so far.
    let mut state = vec![(0u8, 0usize); conns];
    let start = Instant::now();
    for i in 0..conns {
        let mut s = MioStream::connect(dst)?;
        poll.registry().register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        socks.push(s);
    }
    let (mut established, mut echoed, mut failed) = (0, 0, 0);
    let (mut est_at, mut echo_at) = (start, start);
    let mut events = Events::with_capacity(1024);
    let mut buf = [0u8; 256];
    while echoed + failed < conns && start.elapsed() < limit {
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let s = &mut socks[i];
            if state[i].0 == 0 && (ev.is_writable() || ev.is_error()) {
                match (s.take_error(), s.peer_addr()) {
                    (Ok(None), Ok(_)) => {
                        state[i].0 = 1;
                        established += 1;
                        est_at = Instant::now();
                        // A 20-byte write into an empty socket buffer.
                        if s.write(PING).ok() != Some(PING.len()) {
                            state[i].0 = 3;
                            failed += 1;
                        }
                    }
                    (Ok(None), Err(e)) if e.kind() == io::ErrorKind::NotConnected => {}
                    _ => {
                        state[i].0 = 3;
                        failed += 1;
                    }
                }
            }
            if state[i].0 == 1 && ev.is_readable() {
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => {
                            state[i].0 = 3;
                            failed += 1;
                            break;
                        }
                        Ok(n) => {
                            state[i].1 += n;
                            if state[i].1 >= PING.len() {
                                state[i].0 = 2;
                                echoed += 1;
                                echo_at = Instant::now();
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            state[i].0 = 3;
                            failed += 1;
                            break;
                        }
                    }
                }
            }
        }
    }
    for s in &socks {
        let _ = s.shutdown(Shutdown::Both);
    }
    drop(socks);
    Ok(StormResult {
        conns,
        established,
        echoed,
        established_s: (est_at - start).as_secs_f64(),
        echoed_s: (echo_at - start).as_secs_f64(),
        syn_retrans: syn_retrans()?.saturating_sub(retrans0),
    })
}

/// What a flood measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodResult {
    pub syns: usize,
    /// How long sending the flood took.
    pub flood_s: f64,
    /// The legitimate client: connect, then connect plus one echo.
    pub connect_s: f64,
    pub served_s: f64,
    /// SYN retransmissions of the client namespace while it connected.
    pub syn_retrans: u64,
    /// SYNs still unsent when the client had its echo (0: the flood had
    /// ended before).
    pub syns_after: usize,
}

/// Send `syns` spoofed SYNs from `src` to `dst`; when half are out,
/// connect a legitimate client and echo once, within `limit`.
pub fn flood(dst: SocketAddr, src: Ipv4Addr, syns: usize, limit: Duration) -> io::Result<FloodResult> {
    check_dst(dst)?;
    let SocketAddr::V4(dst4) = dst else { return Err(io::Error::other("IPv4 only")) };
    if !allowed(src) || src.is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--flood-src {src}: must be in 198.18.0.0/15 (the lab's range)"),
        ));
    }
    let raw = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::RAW, Some(socket2::Protocol::from(255)))
        .map_err(|e| io::Error::new(e.kind(), format!("raw socket for the flood (needs CAP_NET_RAW): {e}")))?;
    let sent = Arc::new(AtomicUsize::new(0));
    let flood_start = Instant::now();
    let sender = {
        let sent = sent.clone();
        let to = socket2::SockAddr::from(SocketAddrV4::new(*dst4.ip(), 0));
        std::thread::spawn(move || -> io::Result<f64> {
            let mut pkt = [0u8; 80];
            let mut x: u32 = 0x9e37_79b9;
            for i in 0..syns {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let n = write_syn(&mut pkt, src, *dst4.ip(), 1024 + (x % 64000) as u16, dst4.port(), x);
                // The kernel routes it; a full queue is retried, never spun on forever.
                let mut tries = 0;
                while let Err(e) = raw.send_to(&pkt[14..n], &to) {
                    tries += 1;
                    if tries > 1000 || e.kind() != io::ErrorKind::WouldBlock && e.raw_os_error() != Some(105) {
                        return Err(e);
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
                sent.store(i + 1, Ordering::Release);
                if flood_start.elapsed() > limit {
                    break;
                }
            }
            Ok(flood_start.elapsed().as_secs_f64())
        })
    };
    while sent.load(Ordering::Acquire) < syns / 2 && !sender.is_finished() && flood_start.elapsed() < limit {
        std::thread::yield_now();
    }
    let retrans0 = syn_retrans()?;
    let t0 = Instant::now();
    let mut s = TcpStream::connect_timeout(&dst, limit)?;
    let connect_s = t0.elapsed().as_secs_f64();
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(limit))?;
    s.write_all(PING)?;
    let mut got = vec![0u8; PING.len()];
    s.read_exact(&mut got)?;
    let served_s = t0.elapsed().as_secs_f64();
    let syns_after = syns - sent.load(Ordering::Acquire).min(syns);
    let syn_retrans = syn_retrans()?.saturating_sub(retrans0);
    let _ = s.shutdown(Shutdown::Both);
    let flood_s = sender.join().map_err(|_| io::Error::other("the flood thread panicked"))??;
    Ok(FloodResult { syns: sent.load(Ordering::Acquire), flood_s, connect_s, served_s, syn_retrans, syns_after })
}

/// What a flood sends (`--flood-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodKind {
    /// Spoofed SYNs, none ever completed ([`flood`]).
    Syn,
    /// ICMP echo requests from the client's own address ([`reflect_flood`]).
    Icmp,
    /// UDP datagrams to pseudo-random ports ([`reflect_flood`]).
    Udp,
}

/// Round trips of one established session, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rtts {
    pub n: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Rtts {
    fn of(mut v: Vec<u64>) -> Rtts {
        if v.is_empty() {
            return Rtts::default();
        }
        v.sort_unstable();
        let q = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)] as f64 / 1e3;
        Rtts { n: v.len(), p50_us: q(0.5), p99_us: q(0.99), p999_us: q(0.999), max_us: v[v.len() - 1] as f64 / 1e3 }
    }
}

/// What a flood of echo requests or UDP did to an established session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReflectResult {
    pub kind: FloodKind,
    /// Packets sent, and how long that took.
    pub sent: usize,
    pub flood_s: f64,
    /// The session's round trips for a second before the flood, and while
    /// it was sent.
    pub calm: Rtts,
    pub flooded: Rtts,
}

/// Echo `PING` on `s` back to back until `done` (at most `cap` times):
/// each round trip in ns.
fn echoes(s: &mut TcpStream, cap: usize, mut done: impl FnMut() -> bool) -> io::Result<Vec<u64>> {
    let mut rtts = Vec::with_capacity(cap.min(1 << 20));
    let mut got = [0u8; PING.len()];
    while rtts.len() < cap && !done() {
        let t = Instant::now();
        s.write_all(PING)?;
        s.read_exact(&mut got)?;
        rtts.push(t.elapsed().as_nanos() as u64);
    }
    Ok(rtts)
}

/// Connect one session to `dst` (an echo server) and measure its round
/// trips for a second; then send `packets` packets of `kind` (ICMP echo
/// requests, or UDP to pseudo-random ports) to `dst`'s address from
/// another thread (at the lowest priority: it takes what CPU the session and
/// the server leave), as fast as the socket takes them, and measure the
/// session's round trips while they go; within `limit`.
pub fn reflect_flood(dst: SocketAddr, kind: FloodKind, packets: usize, limit: Duration) -> io::Result<ReflectResult> {
    check_dst(dst)?;
    let SocketAddr::V4(dst4) = dst else { return Err(io::Error::other("IPv4 only")) };
    let mut s = TcpStream::connect_timeout(&dst, limit)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(limit))?;
    let calm_end = Instant::now() + Duration::from_secs(1);
    let calm = echoes(&mut s, 1_000_000, || Instant::now() >= calm_end)?;
    let sock = match kind {
        FloodKind::Icmp => {
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::RAW, Some(socket2::Protocol::ICMPV4)).map_err(
                |e| io::Error::new(e.kind(), format!("raw ICMP socket for the flood (needs CAP_NET_RAW): {e}")),
            )?
        }
        FloodKind::Udp => socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?,
        FloodKind::Syn => return Err(io::Error::other("a SYN flood is `flood`")),
    };
    let start = Instant::now();
    let sender = std::thread::spawn(move || -> io::Result<(usize, f64)> {
        // The flood yields the CPU to the session (nice 19, this thread
        // only): on a machine of two cores the flood's own sender must not
        // be what slows the session down.
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
        let mut pkt = [0u8; 40];
        let mut x: u32 = 0x2545_f491;
        let mut sent = 0;
        while sent < packets && start.elapsed() < limit {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let (len, port) = match kind {
                FloodKind::Icmp => (write_echo(&mut pkt, (x >> 16) as u16, x as u16), 0),
                _ => (32, 1024 + (x % 64000) as u16),
            };
            let to = socket2::SockAddr::from(SocketAddrV4::new(*dst4.ip(), port));
            match sock.send_to(&pkt[..len], &to) {
                Ok(_) => sent += 1,
                // A full queue: let it drain.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(105) => {
                    std::thread::sleep(Duration::from_micros(20))
                }
                Err(e) => return Err(e),
            }
        }
        Ok((sent, start.elapsed().as_secs_f64()))
    });
    let flooded = echoes(&mut s, 10_000_000, || sender.is_finished() || start.elapsed() > limit)?;
    let _ = s.shutdown(Shutdown::Both);
    let (sent, flood_s) = sender.join().map_err(|_| io::Error::other("the flood thread panicked"))??;
    Ok(ReflectResult { kind, sent, flood_s, calm: Rtts::of(calm), flooded: Rtts::of(flooded) })
}

/// An ICMP echo request (`ident`, `seq`, 32 bytes of data) into `buf`, as
/// a raw ICMP socket sends it (the kernel adds the IP header); its length.
fn write_echo(buf: &mut [u8], ident: u16, seq: u16) -> usize {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr};
    let data = [0x5au8; 32];
    let icmp = Icmpv4Repr::EchoRequest { ident, seq_no: seq, data: &data };
    let n = icmp.buffer_len();
    icmp.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..n]), &ChecksumCapabilities::default());
    n
}

fn check_dst(dst: SocketAddr) -> io::Result<()> {
    match dst {
        SocketAddr::V4(a) if allowed(*a.ip()) => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--ip {}: tailgate storm sends only to 198.18.0.0/15 (the lab's range) or loopback", dst.ip()),
        )),
    }
}

/// A SYN from (`src`, `sport`) to (`dst`, `dport`) with ISN `isn`, as an
/// Ethernet frame (the flood sends it from the IPv4 header on); returns
/// its length.
fn write_syn(buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, isn: u32) -> usize {
    let tcp = TcpRepr {
        src_port: sport,
        dst_port: dport,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(isn as i32),
        ack_number: None,
        window_len: 64240,
        window_scale: Some(7),
        max_seg_size: Some(1460),
        sack_permitted: true,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let n = crate::stack::frame::tcp_frame_len(&tcp);
    crate::stack::frame::emit_tcp(&mut buf[..n], [0; 6], [0; 6], src, dst, &tcp);
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::frame::{classify, tcp_flags};

    #[test]
    fn only_the_lab_range_and_loopback() {
        assert!(allowed(Ipv4Addr::new(198, 18, 0, 1)));
        assert!(allowed(Ipv4Addr::new(198, 19, 255, 254)));
        assert!(allowed(Ipv4Addr::LOCALHOST));
        assert!(!allowed(Ipv4Addr::new(198, 20, 0, 1)));
        assert!(!allowed(Ipv4Addr::new(8, 8, 8, 8)));
        let e = storm("10.0.0.1:7777".parse().unwrap(), 1, Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("198.18.0.0/15"), "{e}");
        let e = flood("198.18.0.1:7777".parse().unwrap(), Ipv4Addr::new(1, 2, 3, 4), 1, Duration::from_secs(1))
            .unwrap_err();
        assert!(e.to_string().contains("--flood-src"), "{e}");
    }

    #[test]
    fn the_flood_syn_is_a_valid_segment() {
        let mut b = [0u8; 80];
        let n = write_syn(&mut b, Ipv4Addr::new(198, 18, 0, 77), Ipv4Addr::new(198, 18, 0, 1), 4000, 7777, 9);
        let k = classify(&b[..n]);
        assert!(k.valid && k.syn && k.flags == tcp_flags::SYN);
        assert_eq!(
            (k.tuple, k.seq, k.mss, k.wscale, k.sack_ok),
            (Some((0xc612_004d, 4000, 7777)), 9, Some(1460), Some(7), true)
        );
    }

    #[test]
    fn syn_retrans_reads_the_namespace_counter() {
        assert!(syn_retrans().is_ok());
    }
}
