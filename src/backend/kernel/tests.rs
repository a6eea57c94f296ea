//! The kernel backend against real sockets on loopback.

use super::*;
use std::time::Instant;

fn pump(t: &mut KernelTransport, until: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut all = Vec::new();
    let mut evs = Vec::new();
    while Instant::now() < deadline {
        t.poll(Some(Duration::from_millis(10)), &mut evs).unwrap();
        all.extend_from_slice(&evs);
        if until(&all) {
            return all;
        }
    }
    panic!("events not seen: {all:?}");
}

/// A transport listening on loopback, a client connected to it, and the accepted id.
fn accepted_pair() -> (KernelTransport, std::net::TcpStream, ConnId) {
    let mut t = KernelTransport::new(KernelConfig::default()).unwrap();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    t.listen(addr).unwrap();
    let client = std::net::TcpStream::connect(addr).unwrap();
    let evs = pump(&mut t, |e| e.iter().any(|e| matches!(e, Event::Accepted(_))));
    let id = evs.iter().find_map(|e| if let Event::Accepted(id) = e { Some(*id) } else { None }).expect("accepted");
    (t, client, id)
}

#[test]
fn accept_read_write_fin_on_loopback() {
    let (mut t, mut client, id) = accepted_pair();
    assert!(t.peer_addr(id).is_some());
    client.write_all(b"hello").unwrap();
    pump(&mut t, |e| e.contains(&Event::Readable(id)));
    let mut buf = [0u8; 16];
    let n = loop {
        match t.recv(id, &mut buf) {
            Ok(n) => break n,
            Err(e) if would_block_err(&e) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(t.send(id, b"world").unwrap(), 5);
    let mut r = [0u8; 5];
    client.read_exact(&mut r).unwrap();
    assert_eq!(&r, b"world");
    client.shutdown(Shutdown::Write).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut evs = Vec::new();
        t.poll(Some(Duration::from_millis(10)), &mut evs).unwrap();
        match t.recv(id, &mut buf) {
            Ok(0) => break,
            Ok(n) => panic!("unexpected {n} bytes"),
            Err(e) if would_block_err(&e) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "no FIN seen");
    }
    t.close(id);
    assert_eq!(t.stats().closed, 1);
    assert!(t.recv(id, &mut buf).is_err(), "closed id must not be usable");
}

/// Data and FIN queued together: a consumer that stops at the short read
/// must still be told Readable again, or it never sees the FIN.
#[test]
fn fin_behind_a_short_read_is_reported_again() {
    let (mut t, mut client, id) = accepted_pair();
    client.write_all(b"abc").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    std::thread::sleep(Duration::from_millis(50)); // both are queued now
    pump(&mut t, |e| e.contains(&Event::Readable(id)));
    let mut buf = [0u8; 64];
    assert_eq!(t.recv(id, &mut buf).unwrap(), 3, "short read");
    // Stop reading, as the server does after a short read; the FIN must
    // come back as a new Readable.
    pump(&mut t, |e| e.contains(&Event::Readable(id)));
    assert_eq!(t.recv(id, &mut buf).unwrap(), 0, "FIN");
}

#[test]
fn connect_reports_connected() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut t = KernelTransport::new(KernelConfig::default()).unwrap();
    let id = t.connect(l.local_addr().unwrap()).unwrap();
    let evs = pump(&mut t, |e| e.contains(&Event::Connected(id)));
    // Reported once, counted, and a real connection: the listener's
    // side sees it and bytes flow both ways through `id`.
    assert_eq!(evs.iter().filter(|e| **e == Event::Connected(id)).count(), 1, "{evs:?}");
    assert_eq!(t.stats().connected, 1);
    let (mut server, _) = l.accept().unwrap();
    assert_eq!(server.peer_addr().ok(), t.conns[id.0].0.local_addr().ok());
    assert_eq!(t.send(id, b"ping").unwrap(), 4);
    let mut b = [0u8; 4];
    server.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
    server.write_all(b"pong").unwrap();
    pump(&mut t, |e| e.contains(&Event::Readable(id)));
    let mut got = [0u8; 8];
    assert_eq!(t.recv(id, &mut got).unwrap(), 4);
    assert_eq!(&got[..4], b"pong");
}

/// --max-conns on the kernel backend: connections beyond the limit are
/// reset at once and counted; the ones within it work.
#[test]
fn connections_beyond_max_conns_are_reset_and_counted() {
    let mut t = KernelTransport::new(KernelConfig { max_conns: 2, ..KernelConfig::default() }).unwrap();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    t.listen(addr).unwrap();
    let clients: Vec<std::net::TcpStream> = (0..5).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut evs = Vec::new();
    let mut accepted = 0;
    while t.refused < 3 && Instant::now() < deadline {
        t.poll(Some(Duration::from_millis(10)), &mut evs).unwrap();
        accepted += evs.iter().filter(|e| matches!(e, Event::Accepted(_))).count();
    }
    assert_eq!((accepted, t.refused, t.counters().get("conn_refused")), (2, 3, Some(3)));
    // Three clients were reset: a read sees ECONNRESET (or EOF), not a hang.
    let mut reset = 0;
    for mut c in clients {
        c.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut b = [0u8; 1];
        match c.read(&mut b) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => reset += 1,
            Ok(0) => reset += 1,
            _ => {}
        }
    }
    assert_eq!(reset, 3);
    assert!(t.report().unwrap().contains("conn_refused=3"));
}

/// A source at the gate (the logon verifier made it wait) is reset as it
/// is accepted and counted; another source is accepted.
#[test]
fn a_source_at_the_gate_is_reset_as_it_is_accepted() {
    let gate = Arc::new(Gate::new());
    let shut: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    gate.refuse(shut, clock::mono_ns() + 60_000_000_000);
    let mut t = KernelTransport::new(KernelConfig { gate: Some(gate), ..KernelConfig::default() }).unwrap();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    t.listen(addr).unwrap();
    let from = |ip: &str| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::new(ip.parse().unwrap(), 0).into()).unwrap();
        s.connect(&addr.into()).unwrap();
        std::net::TcpStream::from(s)
    };
    let mut gated = from("127.0.0.2");
    let _open = from("127.0.0.1");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut evs = Vec::new();
    let mut accepted = 0;
    while (accepted < 1 || t.gated < 1) && Instant::now() < deadline {
        t.poll(Some(Duration::from_millis(10)), &mut evs).unwrap();
        accepted += evs.iter().filter(|e| matches!(e, Event::Accepted(_))).count();
    }
    assert_eq!((accepted, t.counters().get("conn_refused_throttled")), (1, Some(1)));
    assert_eq!(t.refused, 0, "not a max_conns refusal");
    gated.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut b = [0u8; 1];
    let r = gated.read(&mut b);
    assert!(matches!(&r, Err(e) if e.kind() == io::ErrorKind::ConnectionReset), "{r:?}");
}

fn would_block_err(e: &io::Error) -> bool {
    crate::transport::would_block(e)
}
