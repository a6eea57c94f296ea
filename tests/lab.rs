//! End-to-end tests on the veth lab (root, network namespaces), kernel backend.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use tailgate::proto::{ClientMsg, Code8, Frame, GatewayMsg, NewOrder, OrderKind, Parsed, Side};

const PORT: &str = "7777";

fn orders_over(conns: usize) {
    let lab = Lab::up(false);
    let srv = lab.serve(&["--backend", "kernel", "--ip", GW_IP, "--port", PORT, "--app", "orders"]);
    let n = conns.to_string();
    let (out, r) = lab.load_report(&["--app", "orders", "--conns", &n, "--rate", "4000", "--duration", "2"]);
    let log = srv.stop();
    assert!(out.status.success(), "load failed: {}", String::from_utf8_lossy(&out.stdout));
    let sent = r["sent"].as_u64().unwrap();
    assert!(sent >= 4000, "sent only {sent}");
    assert_eq!(r["answered"].as_u64(), Some(sent), "every order answered");
    for k in ["unanswered", "rejected", "out_of_sequence", "unexpected", "corrupted", "disconnected"] {
        assert_eq!(r[k].as_u64(), Some(0), "{k} in {r}");
    }
    assert_eq!(r["conns"].as_u64(), Some(conns as u64));
    assert_eq!(r["rtt_us"]["samples"].as_u64(), Some(sent));
    // The gateway acked exactly what the client counted: no duplicates.
    let acked = counter(&log, "orders_acked").unwrap() + counter(&log, "cancels_acked").unwrap();
    assert_eq!(acked, sent, "gateway log: {log:?}");
    assert_eq!(counter(&log, "logons"), Some(conns as u64));
    assert_eq!(counter(&log, "rejects"), Some(0));
    assert_eq!(counter(&log, "aborted"), Some(0), "clean closes: {log:?}");
}

#[test]
fn orders_over_one_connection() {
    if lab_available("orders_over_one_connection") {
        orders_over(1);
    }
}

#[test]
fn orders_over_200_connections() {
    if lab_available("orders_over_200_connections") {
        orders_over(200);
    }
}

#[test]
fn echo_16_mib_with_hash_and_half_close() {
    if !lab_available("echo_16_mib_with_hash_and_half_close") {
        return;
    }
    let lab = Lab::up(false);
    let srv = lab.serve(&["--backend", "kernel", "--ip", GW_IP, "--port", PORT, "--app", "echo"]);
    let (sent_hash, got_hash, got_len) = lab.in_client_ns(|| echo_hashed(256));
    let log = srv.stop();
    assert_eq!(got_len, 16 << 20);
    assert_eq!(sent_hash, got_hash, "echoed stream differs");
    assert_eq!(counter(&log, "aborted"), Some(0), "{log:?}");
}

#[test]
fn sockperf_client_measures_tailgate() {
    if !lab_available("sockperf_client_measures_tailgate") || !tool_available("sockperf", "sockperf") {
        return;
    }
    let lab = Lab::up(false);
    let srv = lab.serve(&["--backend", "kernel", "--ip", GW_IP, "--port", PORT, "--app", "sockperf"]);
    let mut c = lab.cmd_in(&lab.ns_cli, "sockperf");
    c.args(["ping-pong", "--tcp", "-i", GW_IP, "-p", PORT, "-t", "2"]);
    let out = run_bounded(c, Duration::from_secs(30));
    let log = srv.stop();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sockperf failed: {text}");
    assert!(text.contains("Summary: Latency is"), "{text}");
    let obs: u64 = text
        .lines()
        .filter(|l| l.contains(" observations"))
        .find_map(|l| l.split("Total ").nth(1)?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no observation count in: {text}"));
    assert!(obs > 100, "{obs} observations");
    assert!(text.contains("percentile 99.900"), "{text}");
    let echoed = counter(&log, "messages").unwrap();
    assert!(echoed >= obs, "server echoed {echoed} < {obs} observations");
    assert_eq!(counter(&log, "bad_length"), Some(0));
}

/// A small blocking client of the order protocol, for the isolation test.
struct OrderClient {
    s: TcpStream,
    seq: u32,
    rx_seq: u32,
    buf: Vec<u8>,
}

impl OrderClient {
    fn connect() -> Self {
        let s = TcpStream::connect((GW_IP, 7777)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        OrderClient { s, seq: 1, rx_seq: 1, buf: Vec::new() }
    }
    fn send(&mut self, m: ClientMsg) {
        let mut b = [0u8; 64];
        let n = m.encode(self.seq, &mut b).unwrap();
        self.seq += 1;
        self.s.write_all(&b[..n]).unwrap();
    }
    fn recv(&mut self) -> GatewayMsg {
        loop {
            if let Ok(Parsed::Frame(f)) = Frame::parse(&self.buf) {
                let n = f.len();
                assert_eq!(f.seq(), self.rx_seq, "gateway sequence");
                self.rx_seq += 1;
                let m = GatewayMsg::decode(&f).expect("decode");
                self.buf.drain(..n);
                return m;
            }
            let mut tmp = [0u8; 4096];
            let n = self.s.read(&mut tmp).expect("read");
            assert!(n > 0, "gateway closed a healthy session");
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }
    fn order(&mut self, id: u64) {
        self.send(ClientMsg::NewOrder(NewOrder {
            cl_ord_id: id,
            client_ts: id,
            price: 100,
            qty: 1,
            side: Side::Buy,
            kind: OrderKind::Limit,
            symbol: Code8::new("ABC").unwrap(),
        }));
    }
}

/// Read until EOF or reset; true if the gateway closed the connection.
fn closed_by_peer(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn garbage_closes_one_connection_and_not_its_neighbour() {
    if !lab_available("garbage_closes_one_connection_and_not_its_neighbour") {
        return;
    }
    let lab = Lab::up(false);
    let srv = lab.serve(&["--backend", "kernel", "--ip", GW_IP, "--port", PORT, "--app", "orders"]);
    let (framing_closed, random_closed) = lab.in_client_ns(|| {
        let mut good = OrderClient::connect();
        good.send(ClientMsg::logon(Code8::new("GOOD").unwrap()));
        assert!(matches!(good.recv(), GatewayMsg::LogonAck { .. }));
        good.order(1);
        assert!(matches!(good.recv(), GatewayMsg::Ack { cl_ord_id: 1, .. }));

        // A connection whose length prefix cannot be trusted.
        let mut bad = TcpStream::connect((GW_IP, 7777)).unwrap();
        bad.write_all(&[0xff; 512]).unwrap();
        let framing_closed = closed_by_peer(&mut bad);

        // A connection sending random bytes: rejected and logged out, or closed.
        let mut rnd = TcpStream::connect((GW_IP, 7777)).unwrap();
        let mut x: u32 = 12345;
        let junk: Vec<u8> = (0..4096)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        let _ = rnd.write_all(&junk);
        let random_closed = closed_by_peer(&mut rnd);

        // The neighbour carries on, sequence numbers intact.
        for id in 2..=200 {
            good.order(id);
        }
        for id in 2..=200 {
            match good.recv() {
                GatewayMsg::Ack { cl_ord_id, client_ts, .. } => {
                    assert_eq!((cl_ord_id, client_ts), (id, id));
                }
                other => panic!("expected Ack for {id}, got {other:?}"),
            }
        }
        good.send(ClientMsg::Logout);
        assert!(matches!(good.recv(), GatewayMsg::Logout { .. }));
        (framing_closed, random_closed)
    });
    let log = srv.stop();
    assert!(framing_closed, "the garbage connection was not closed");
    assert!(random_closed, "the random-bytes connection was not closed");
    assert!(counter(&log, "framing_errors").unwrap() >= 1, "{log:?}");
    assert_eq!(counter(&log, "orders_acked"), Some(200));
    assert!(log.iter().any(|l| l.contains("framing error")), "no logged reason: {log:?}");
}

#[test]
fn lab_script_refuses_addresses_outside_the_benchmark_range() {
    let out = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab.sh"))
        .arg("up")
        .env("TG_IP_GW", "10.1.2.3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TG_IP_GW=10.1.2.3") && err.contains("198.18.0.0/15"), "{err}");
}

#[test]
fn lab_up_is_idempotent_and_down_removes_everything() {
    if !lab_available("lab_up_is_idempotent_and_down_removes_everything") {
        return;
    }
    let lab = Lab::up(false);
    // Second up, then bypass mode: the gateway side loses its IPv4 address.
    let again = Lab::up_named(&lab, true);
    assert!(again, "second lab.sh up failed");
    let addrs = std::process::Command::new("ip")
        .args(["-n", &lab.ns_gw, "-4", "addr", "show", "dev", &lab.if_gw])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&addrs.stdout).contains("inet "), "bypass left an IPv4 address");
    let k = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns_gw, "ethtool", "-k", &lab.if_gw])
        .output()
        .unwrap();
    let k = String::from_utf8_lossy(&k.stdout);
    for f in ["tx-checksumming", "tcp-segmentation-offload", "generic-segmentation-offload", "generic-receive-offload"]
    {
        let line = k.lines().find(|l| l.starts_with(f)).unwrap_or_else(|| panic!("{f} missing: {k}"));
        assert!(line.contains(": off"), "{line}");
    }
    let ns_gw = lab.ns_gw.clone();
    drop(lab);
    let list = std::process::Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&ns_gw), "namespace left behind");
}
