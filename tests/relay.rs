//! The relay example (examples/relay.rs) on the lab: clients in the client
//! namespace, the relay on the gateway's address, an echo server upstream
//! back in the client namespace. Kernel and xdp backends, and the 2-queue
//! lab, where each xdp loop's upstream connections come back to it.
//! Its in-memory tests are in the example itself.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use common::*;

const RELAY_PORT: u16 = 7000;

fn relay_bin() -> PathBuf {
    let p = std::path::Path::new(BIN).parent().unwrap().join("examples/relay");
    assert!(p.is_file(), "{} is not built: run `cargo build --examples` (scripts/test.sh does)", p.display());
    p
}

fn start_relay(lab: &Lab, upstream: &str, extra: &[&str]) -> Proc {
    let mut c = lab.cmd_in(&lab.ns_gw, relay_bin().to_str().unwrap());
    c.args(["--listen", &format!("{GW_IP}:{RELAY_PORT}"), "--upstream", upstream]).args(extra);
    Proc::spawn_until(c, "tailgate: serving ", Duration::from_secs(10))
}

/// `conns` clients, each sending `bytes` in pieces and reading them back
/// through the relay, then closing; every byte must come back unchanged
/// and the relay must close each client with a FIN.
fn clients(lab: &Lab, conns: usize, bytes: usize) {
    lab.in_client_ns(move || {
        let addr: SocketAddr = format!("{GW_IP}:{RELAY_PORT}").parse().unwrap();
        let mut socks: Vec<TcpStream> = (0..conns)
            .map(|_| {
                let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the relay");
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                s
            })
            .collect();
        for (k, s) in socks.iter_mut().enumerate() {
            let data: Vec<u8> = (0..bytes).map(|i| (i * 31 + k) as u8).collect();
            let mut got = vec![0u8; bytes];
            for (chunk, back) in data.chunks(4096).zip(got.chunks_mut(4096)) {
                s.write_all(chunk).unwrap();
                s.read_exact(back).expect("the echo through the relay");
            }
            assert!(got == data, "client {k}: bytes changed on the way");
            s.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            let n = s.read_to_end(&mut rest).expect("a FIN from the relay, not a reset");
            assert_eq!(n, 0, "client {k}: {n} bytes after the echo");
        }
    });
}

#[test]
fn the_relay_relays_on_both_backends() {
    if !lab_available("the_relay_relays_on_both_backends") {
        return;
    }
    for xdp in [false, true] {
        let lab = Lab::up(xdp);
        let echo = {
            let mut c = lab.cmd_in(&lab.ns_cli, BIN);
            c.args(["serve", "--backend", "kernel", "--app", "echo", "--ip", CLI_IP, "--port", "9000"]);
            Proc::spawn_until(c, "tailgate: serving ", Duration::from_secs(10))
        };
        let upstream = format!("{CLI_IP}:9000");
        let relay = if xdp {
            start_relay(&lab, &upstream, &["--backend", "xdp", "--iface", &lab.if_gw])
        } else {
            start_relay(&lab, &upstream, &["--backend", "kernel"])
        };
        clients(&lab, 4, 64 * 1024);
        let log = relay.stop();
        echo.stop();
        let want = if xdp { "backend=xdp" } else { "backend=kernel" };
        assert!(log.iter().any(|l| l.contains(want)), "{want}: {log:?}");
        assert_eq!(counter(&log, "clients"), Some(4), "{log:?}");
        assert_eq!(counter(&log, "upstream_refused"), Some(0), "{log:?}");
        assert_eq!(counter(&log, "bytes_up"), Some(4 * 64 * 1024), "{log:?}");
        assert_eq!(counter(&log, "bytes_down"), Some(4 * 64 * 1024), "{log:?}");
        // Four clients and their four upstream connections.
        assert_eq!(counter(&log, "opened"), Some(8), "{log:?}");
    }
}

#[test]
fn a_refused_upstream_closes_the_client_on_the_lab() {
    if !lab_available("a_refused_upstream_closes_the_client_on_the_lab") {
        return;
    }
    let lab = Lab::up(true);
    // Nothing listens upstream: the client namespace's kernel answers RST.
    let relay = start_relay(&lab, &format!("{CLI_IP}:9001"), &["--backend", "xdp", "--iface", &lab.if_gw]);
    lab.in_client_ns(|| {
        let mut s =
            TcpStream::connect_timeout(&format!("{GW_IP}:{RELAY_PORT}").parse().unwrap(), Duration::from_secs(5))
                .expect("connect to the relay");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).expect("a FIN, not a reset"), 0);
    });
    let log = relay.stop();
    assert_eq!(counter(&log, "upstream_refused"), Some(1), "{log:?}");
}

/// Two queues, two relay loops; the upstream is an xdp echo server with two
/// loops too, so that a frame sent on queue i comes back on queue i (veth
/// delivers a frame sent on queue i to the peer's queue i). Each relay
/// loop's upstream connections are then served by that loop: no frame is
/// handed to the other loop (but ARP replies, which every loop learns from).
#[test]
fn each_loops_upstream_connections_come_back_to_it() {
    if !lab_available("each_loops_upstream_connections_come_back_to_it") {
        return;
    }
    let lab = Lab::up_queues(true, 2);
    let echo = {
        let mut c = lab.cmd_in(&lab.ns_cli, BIN);
        c.args(["serve", "--backend", "xdp", "--iface", &lab.if_cli, "--app", "echo", "--ip", "198.18.0.3"]);
        c.args(["--port", "9000", "--queue", "0,1", "--core", "0,1"]);
        Proc::spawn_until(c, "tailgate: serving ", Duration::from_secs(10))
    };
    let relay = start_relay(
        &lab,
        "198.18.0.3:9000",
        &["--backend", "xdp", "--iface", &lab.if_gw, "--queue", "0,1", "--core", "0,1"],
    );
    clients(&lab, 16, 16 * 1024);
    let log = relay.stop();
    echo.stop();
    let mut clients_per_loop = Vec::new();
    let (mut received, mut arp) = (0, 0);
    for i in 0..2 {
        let mine: Vec<String> = log.iter().filter(|l| l.starts_with(&format!("loop {i} "))).cloned().collect();
        assert_eq!(mine.len(), 1, "loop {i}: {log:?}");
        assert_eq!(counter(&mine, "handoff_forwarded"), Some(0), "loop {i} handed frames over: {mine:?}");
        received += counter(&mine, "handoff_received").unwrap();
        arp += counter(&mine, "handoff_arp_shared").unwrap();
        assert_eq!(counter(&mine, "upstream_refused"), Some(0), "{mine:?}");
        let c = counter(&mine, "clients").unwrap();
        // Each client's upstream connection was opened, and served, here.
        assert_eq!(counter(&mine, "opened"), Some(2 * c), "{mine:?}");
        clients_per_loop.push(c);
    }
    // What the loops were handed is only ARP: a reply one loop receives is
    // shared with the other (handoff_arp_shared), not a connection's frame.
    assert_eq!(received, arp, "frames handed between the loops: {log:?}");
    assert_eq!(clients_per_loop.iter().sum::<u64>(), 16, "{log:?}");
    assert!(clients_per_loop.iter().all(|&c| c > 0), "both loops relayed: {clients_per_loop:?}");
}
