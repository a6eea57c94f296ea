//! Command-line behaviour that needs no root: help and flag errors.

mod common;

use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tailgate");

/// Run the binary to completion, bounded: a case that serves instead of
/// failing is killed (and the test fails) rather than hanging the suite.
fn run(args: &[&str]) -> (i32, String) {
    let mut c = Command::new(BIN);
    c.args(args);
    let o = common::run_bounded(c, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    (o.status.code().unwrap_or(-1), text)
}

fn assert_help_lists(sub: &str, flags: &[&str]) {
    let (code, help) = run(&[sub, "--help"]);
    assert_eq!(code, 0);
    for f in flags {
        assert!(help.contains(f), "{sub} --help lacks {f}");
    }
}

#[test]
fn help_documents_every_flag() {
    assert_help_lists(
        "serve",
        &[
            "--backend",
            "--ip",
            "--port",
            "--app",
            "--core",
            "--spin",
            "--busy-poll-us",
            "--heartbeat-ms",
            "--idle-timeout-ms",
            "--max-open-orders",
            "--rx-buf",
            "--tx-buf",
            "--iface",
            "--queue",
            "--zero-copy",
            "--umem-frames",
            "--prefix",
            "--backlog",
            "--max-conns",
            "--linger-ms",
            "--drain-ms",
            "--pcap",
            "--pcap-snaplen",
            "--pcap-max-mb",
            "--pcap-files",
            "--cpu-dma-latency",
            "--config",
            "--print-config",
            "--metrics",
            "--sample-log",
            "--sample-log-records",
            "--reporter-core",
            "--sample",
            "--sample-config",
            "--sample-tail-us",
            "--sample-max-rate",
            "--sample-ring",
            "--sample-acks",
            "--inject",
            "--admin",
            "--admin-token-file",
            "--admin-audit",
            "--journal",
            "--journal-segment-mb",
            "--journal-sync-ms",
        ],
    );
    assert_help_lists("admin", &["--addr", "--token-file"]);
    assert_help_lists("journal", &["--json"]);
    assert_help_lists("hash-password", &["--password-file"]);
    assert_help_lists("report", &["--live", "--log", "--threshold-us", "--significant-us", "--json"]);
    assert_help_lists("storm", &["--ip", "--port", "--conns", "--flood", "--flood-src", "--timeout"]);
    assert_help_lists("doctor", &["--iface", "--core", "--queue", "--probe", "--json"]);
    assert_help_lists(
        "load",
        &[
            "--backend",
            "--ip",
            "--port",
            "--app",
            "--conns",
            "--rate",
            "--pingpong",
            "--burst",
            "--duration",
            "--size",
            "--drain-ms",
            "--json",
            "--core",
            "--local-ip",
            "--iface",
            "--queue",
            "--zero-copy",
            "--prefix",
            "--max-conns",
            "--account",
            "--password-file",
            "--acked-log",
        ],
    );
}

#[test]
fn bad_flags_name_the_flag_and_the_value() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["serve", "--ip", "1.2.3.999", "--port", "1"], &["--ip", "1.2.3.999"]),
        (&["serve", "--ip", "127.0.0.1", "--port", "0"], &["--port", "0"]),
        (&["serve", "--ip", "127.0.0.1", "--port", "7", "--app", "fix"], &["--app", "fix"]),
        (&["serve", "--ip", "127.0.0.1", "--port", "7", "--backend", "dpdk"], &["--backend", "dpdk"]),
        (&["serve", "--ip", "127.0.0.1", "--port", "7", "--core", "99999"], &["--core 99999"]),
        (&["load", "--ip", "127.0.0.1", "--port", "7", "--rate", "-5"], &["--rate", "-5"]),
        (&["serve", "--ip", "127.0.0.1", "--port", "7", "--sample", "bogus=5"], &["--sample", "bogus"]),
        (&["serve", "--ip", "127.0.0.1", "--port", "7", "--sample", "limit=150"], &["--sample", "150"]),
        (&["serve", "--ip", "127.0.0.1", "--port", "7", "--sample-ring", "1000"], &["--sample-ring", "1000"]),
        (&["serve", "--ip", "127.0.0.1", "--port", "7", "--umem-frames", "3000"], &["--umem-frames", "power of two"]),
        (&["serve", "--ip", "127.0.0.1", "--port", "7", "--umem-frames", "128"], &["--umem-frames", "128"]),
        (
            &["serve", "--ip", "127.0.0.1", "--port", "7", "--sample-config", "/nonexistent.toml"],
            &["--sample-config", "/nonexistent.toml"],
        ),
        (
            &["serve", "--ip", "127.0.0.1", "--port", "7", "--sample", "on", "--reporter-core", "4096"],
            &["--reporter-core 4096"],
        ),
        (&["serve", "--ip", "127.0.0.1", "--port", "7", "--inject", "stall:0:5"], &["--inject", "EVERY_MS"]),
        (&["report", "--log", "/nonexistent.log"], &["--log /nonexistent.log"]),
        (&["load", "--ip", "127.0.0.1", "--port", "7", "--rate", "5", "--duration", "abc"], &["--duration", "abc"]),
        (&["load", "--ip", "127.0.0.1", "--port", "7", "--pingpong", "--conns", "0"], &["--conns", "0"]),
        (&["load", "--ip", "127.0.0.1", "--port", "7", "--pingpong", "--size", "8", "--app", "echo"], &["--size", "8"]),
        (&["load", "--ip", "127.0.0.1", "--port", "7", "--pingpong", "--size", "64"], &["--size", "echo only"]),
        (&["load", "--ip", "127.0.0.1", "--port", "7"], &["--rate", "--pingpong"]),
        (&["load", "--ip", "127.0.0.1", "--port", "7", "--rate", "5", "--pingpong"], &["--rate", "--pingpong"]),
        (&["serve", "--ip", "127.0.0.1", "--port", "7", "--backend", "xdp"], &["--iface"]),
        (&["serve", "--ip", "127.0.0.1", "--port", "7", "--app", "udp-echo", "--backend", "kernel"], &["udp-echo"]),
        (&["load", "--ip", "127.0.0.1", "--port", "7", "--pingpong", "--backend", "xdp"], &["--local-ip"]),
        (&["serve", "--ip", "127.0.0.1", "--port", "7", "--backlog", "0"], &["--backlog", "0"]),
        (&["serve", "--ip", "127.0.0.1", "--port", "7", "--sample-acks", "maybe"], &["--sample-acks", "maybe"]),
        (&["load", "--ip", "127.0.0.1", "--port", "7", "--rate", "5", "--burst", "0:100"], &["--burst", "0:100"]),
        (&["load", "--ip", "127.0.0.1", "--port", "7", "--rate", "5", "--burst", "10"], &["--burst", "COUNT:EVERY_MS"]),
        (&["load", "--ip", "127.0.0.1", "--port", "7", "--pingpong", "--burst", "10:100"], &["--burst", "--rate"]),
        (&["storm", "--ip", "8.8.8.8", "--port", "7", "--conns", "1"], &["--ip 8.8.8.8", "198.18.0.0/15"]),
        (&["storm", "--ip", "127.0.0.1", "--port", "7"], &["--conns", "--flood"]),
        (
            &["serve", "--ip", "127.0.0.1", "--port", "7", "--backend", "kernel", "--pcap", "/tmp/x.pcap"],
            &["--pcap", "tcpdump"],
        ),
        (&["serve", "--ip", "127.0.0.1", "--port", "7", "--pcap-snaplen", "10"], &["--pcap-snaplen", "10"]),
        (
            &["storm", "--ip", "198.18.0.1", "--port", "7", "--flood", "10", "--flood-src", "10.1.1.1"],
            &["--flood-src", "10.1.1.1"],
        ),
        (
            &["serve", "--ip", "127.0.0.1", "--port", "7", "--backend", "xdp", "--iface", "lo", "--queue", "0,1"],
            &["--queue 0,1", "--core needs 2 cores"],
        ),
        (
            &["serve", "--ip", "127.0.0.1", "--port", "7", "--backend", "kernel", "--queue", "0-1", "--core", "0,1"],
            &["--queue 0,1", "xdp backend"],
        ),
        (
            &["serve", "--ip", "127.0.0.1", "--port", "7", "--backend", "xdp", "--iface", "lo", "--core", "0,1"],
            &["--core 0,1", "one loop per queue"],
        ),
        (&["serve", "--ip", "127.0.0.1", "--port", "7", "--queue", "1,1"], &["--queue", "twice"]),
        (&["serve", "--ip", "127.0.0.1", "--port", "7", "--core", "3-1"], &["--core", "backwards"]),
        (&["serve", "--ip", "127.0.0.1", "--port", "7", "--backend", "kernel", "--core", "0,99999"], &["--core 99999"]),
        (
            &["load", "--ip", "127.0.0.1", "--port", "7", "--pingpong", "--queue", "0,1"],
            &["--queue 0,1", "queue lists are for the xdp backend"],
        ),
        (
            &[
                "load",
                "--ip",
                "127.0.0.1",
                "--port",
                "7",
                "--pingpong",
                "--backend",
                "xdp",
                "--iface",
                "lo",
                "--local-ip",
                "198.18.0.9",
                "--queue",
                "0,1",
                "--core",
                "0",
            ],
            &["--queue 0,1", "--core needs 2 cores"],
        ),
        (
            &["load", "--ip", "127.0.0.1", "--port", "7", "--pingpong", "--core", "0,1", "--conns", "1"],
            &["--conns 1", "fewer connections than the 2 loops"],
        ),
        (
            &[
                "serve",
                "--ip",
                "127.0.0.1",
                "--port",
                "7",
                "--backend",
                "xdp",
                "--iface",
                "lo",
                "--queue",
                "0,1",
                "--core",
                "0,1",
                "--pcap",
                "/tmp/x.pcap",
            ],
            &["--pcap", "one loop"],
        ),
    ];
    for (args, needles) in cases {
        let (code, text) = run(args);
        assert_ne!(code, 0, "{args:?} succeeded: {text}");
        for n in *needles {
            assert!(text.contains(n), "{args:?}: error does not mention '{n}': {text}");
        }
    }
}

#[test]
fn load_against_nothing_fails_with_the_address() {
    // Nothing listens on this loopback port: a clear error, non-zero exit.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    drop(l);
    let (code, text) = run(&["load", "--ip", "127.0.0.1", "--port", &port, "--pingpong", "--duration", "0.2"]);
    assert_eq!(code, 1);
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
}

/// Regression: after EMFILE the kernel backend stopped accepting and left
/// connections in the backlog until a new connection raised a new edge. A
/// gateway under a small descriptor limit (prlimit) is filled past it; once
/// some clients leave, the ones waiting in the backlog are served with no
/// new connection arriving.
#[test]
fn kernel_backend_accepts_the_backlog_after_emfile() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("SKIP kernel_backend_accepts_the_backlog_after_emfile: prlimit (util-linux) not installed");
        return;
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let port_s = port.to_string();
    let mut child = Command::new("prlimit")
        .args(["--nofile=32:32", BIN, "serve", "--backend", "kernel", "--ip", "127.0.0.1", "--port", &port_s])
        .args(["--app", "echo"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap();
    let guard = Kill(child);
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let deadline = Instant::now() + Duration::from_secs(10);
    let connect = || loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "gateway not listening: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let echoes = |s: &mut TcpStream, wait: Duration| -> bool {
        s.set_read_timeout(Some(wait)).unwrap();
        if s.write_all(b"x").is_err() {
            return false;
        }
        let mut b = [0u8; 1];
        matches!(s.read(&mut b), Ok(1))
    };
    // More clients than descriptors: the first are served, the rest wait in
    // the backlog (the kernel completed their handshakes).
    let mut clients: Vec<TcpStream> = (0..48).map(|_| connect()).collect();
    let served: Vec<bool> = clients.iter_mut().map(|c| echoes(c, Duration::from_millis(300))).collect();
    let n_served = served.iter().filter(|&&x| x).count();
    assert!(n_served > 0 && n_served < clients.len(), "served {n_served} of {}: the limit did not bite", clients.len());
    let waiting: Vec<usize> = (0..clients.len()).filter(|&i| !served[i]).collect();
    // Free descriptors: the first ten served clients leave.
    let mut left = 0;
    for i in 0..clients.len() {
        if served[i] && left < 10 {
            let _ = clients[i].shutdown(std::net::Shutdown::Both);
            left += 1;
        }
    }
    // Now, with no new connection, the waiting clients' bytes are echoed.
    let first = waiting[0];
    assert!(echoes(&mut clients[first], Duration::from_secs(5)), "a client in the backlog was never accepted");
    drop(clients);
    drop(guard);
    let log = log.join().unwrap();
    assert!(log.contains("accept failed") && log.contains("retrying"), "{log}");
}

#[test]
fn load_with_a_core_list_runs_a_loop_per_core_and_merges_their_reports() {
    use std::time::{Duration, Instant};
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let port_s = port.to_string();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(
        Command::new(BIN)
            .args(["serve", "--backend", "kernel", "--ip", "127.0.0.1", "--port", &port_s, "--app", "orders"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "gateway not listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    let json = std::env::temp_dir().join(format!("tg-cli-loops-{}.json", std::process::id()));
    let (code, text) = run(&[
        "load",
        "--ip",
        "127.0.0.1",
        "--port",
        &port_s,
        "--app",
        "orders",
        "--conns",
        "7",
        "--rate",
        "700",
        "--duration",
        "0.5",
        "--core",
        "0,1",
        "--json",
        json.to_str().unwrap(),
    ]);
    let report = std::fs::read_to_string(&json).unwrap_or_default();
    let _ = std::fs::remove_file(&json);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("7 connections split 4/3"), "{text}");
    let r: serde_json::Value = serde_json::from_str(&report).expect("JSON report");
    let loops = r["loops"].as_array().expect("one share per loop");
    let conns: Vec<u64> = loops.iter().map(|l| l["conns"].as_u64().unwrap()).collect();
    assert_eq!(conns, vec![4, 3], "{r}");
    let sent: Vec<u64> = loops.iter().map(|l| l["sent"].as_u64().unwrap()).collect();
    // Each loop's share of the rate follows its share of the connections:
    // 400/s and 300/s for 0.5 s (the first at 0), bounded by the run.
    assert!(sent[0] > sent[1] && sent[1] > 0, "{sent:?}");
    assert_eq!(r["sent"].as_u64(), Some(sent.iter().sum()), "{r}");
    assert_eq!(r["answered"], r["sent"], "{r}");
    assert_eq!(r["rtt_us"]["samples"], r["answered"], "the loops' histograms merged: {r}");
    assert_eq!(r["mode"].as_str(), Some("rate 700 msg/s"), "{r}");
}
