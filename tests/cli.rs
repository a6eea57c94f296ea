//! Command-line behaviour that needs no root: help and flag errors.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tailgate");

fn run(args: &[&str]) -> (i32, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
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
            "--prefix",
            "--backlog",
            "--max-conns",
            "--no-cpu-dma-latency",
            "--metrics",
            "--sample-log",
            "--sample-log-records",
            "--reporter-core",
            "--sample",
            "--sample-config",
            "--sample-tail-us",
            "--sample-max-rate",
            "--sample-ring",
            "--inject",
        ],
    );
    assert_help_lists("report", &["--live", "--log", "--threshold-us", "--significant-us", "--json"]);
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
            "--duration",
            "--size",
            "--drain",
            "--json",
            "--core",
            "--local-ip",
            "--iface",
            "--queue",
            "--zero-copy",
            "--prefix",
            "--max-conns",
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
