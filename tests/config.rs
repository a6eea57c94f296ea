//! `serve --config FILE` and `--print-config`: keys, errors with lines,
//! flags over the file, the round trip, and examples/gateway.toml serving on
//! the lab (both backends).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gateway.toml");

fn run(args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    c.args(args);
    let o = run_bounded(c, Duration::from_secs(30));
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A file of this text in the temporary directory, removed on drop.
struct Temp(PathBuf);

impl Temp {
    fn new(text: &str) -> Temp {
        let p = std::env::temp_dir().join(format!(
            "tg-config-{}-{}.toml",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&p, text).unwrap();
        Temp(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn print_config(args: &[&str]) -> String {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    all.push("--print-config");
    let (code, out, err) = run(&all);
    assert_eq!(code, 0, "{all:?}: {err}");
    out
}

#[test]
fn help_is_grouped_under_headings() {
    let (code, out, _) = run(&["serve", "--help"]);
    assert_eq!(code, 0);
    for h in [
        "Listen and app:",
        "Loops and CPUs:",
        "XDP:",
        "Connections:",
        "Capture:",
        "Sampling and metrics:",
        "Fault injection:",
        "Configuration file:",
    ] {
        assert!(out.contains(&format!("\n{h}\n")), "no heading {h:?} in serve --help:\n{out}");
    }
}

#[test]
fn print_config_round_trips() {
    for args in [
        &["--ip", "198.18.0.1", "--port", "7777"][..],
        &[
            "--ip",
            "198.18.0.1",
            "--port",
            "9",
            "--core",
            "0-1",
            "--queue",
            "0,1",
            "--spin",
            "--zero-copy",
            "off",
            "--sample",
            "all=10,market=100",
            "--metrics",
            "127.0.0.1:9100",
            "--inject",
            "stall:10:50",
            "--inject",
            "slow-handler:100:5",
            "--pcap",
            "/tmp/a \"quoted\" name.pcap",
        ][..],
        &["--config", EXAMPLE][..],
    ] {
        let first = print_config(args);
        let f = Temp::new(&first);
        let second = print_config(&["--config", f.path()]);
        assert_eq!(first, second, "print, load, print differ for {args:?}");
    }
}

#[test]
fn every_serve_flag_is_a_key() {
    let (_, help, _) = run(&["serve", "--help"]);
    let printed = print_config(&["--ip", "127.0.0.1", "--port", "7"]);
    let not_keys = ["--help", "--verbose", "--quiet", "--config", "--print-config", "--sample-config"];
    let mut n = 0;
    for word in help.split_whitespace() {
        let Some(flag) = word.strip_prefix("--") else { continue };
        let flag = flag.trim_end_matches([',', '.', ')', ':']);
        if flag.is_empty() || !flag.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
            continue;
        }
        // Only the flag's own line (`      --name <NAME>`) names a flag; prose mentions others.
        if !help.lines().any(|l| l.trim_start().starts_with(&format!("--{flag}"))) {
            continue;
        }
        if not_keys.contains(&format!("--{flag}").as_str()) {
            continue;
        }
        n += 1;
        let set = format!("\n{flag} = ");
        let unset = format!("\n# {flag} (not set)");
        assert!(printed.contains(&set) || printed.contains(&unset), "--{flag} has no key in:\n{printed}");
    }
    assert!(n >= 36, "only {n} flags found in serve --help");
}

#[test]
fn flags_override_the_file() {
    let f = Temp::new(
        "[listen]\nip = \"198.18.0.1\"\nport = 7777\n[loops]\nspin = true\n[inject]\ninject = [\"stall:5:5\"]\n",
    );
    let out = print_config(&["--config", f.path(), "--port", "9", "--spin", "off", "--inject", "stall:7:7"]);
    assert!(out.contains("\nport = 9\n"), "{out}");
    assert!(out.contains("\nip = \"198.18.0.1\"\n"), "{out}");
    assert!(out.contains("\nspin = false\n"), "{out}");
    assert!(out.contains("\ninject = [\"stall:7:7\"]\n"), "{out}");
}

#[test]
fn bad_keys_name_the_file_the_line_and_the_key() {
    let cases: &[(&str, &[&str])] = &[
        ("[listen]\nip = \"198.18.0.1\"\nport = 7777\n\n[xdp]\nprefx = 24\n", &[":6:", "prefx", "[xdp]"]),
        ("[listen]\nport = 70000\n", &[":2:", "port", "70000"]),
        ("[listen]\nport = \"7777\"\n", &[":2:", "port", "integer", "string"]),
        ("[listen]\nip = 7\n", &[":2:", "ip", "string", "integer"]),
        ("[listen]\nip = \"1.2.3.999\"\n", &[":2:", "ip", "1.2.3.999"]),
        ("[listen]\nspin = true\n", &[":2:", "spin", "[loops]"]),
        ("[loops]\nspin = \"maybe\"\n", &[":2:", "spin", "true or false"]),
        ("[loops]\ncore = [0, \"x\"]\n", &[":2:", "core", "integers"]),
        ("# a comment\nport = 7777\n", &[":2:", "port", "outside any table", "[listen]"]),
        ("[accounts]\nname = \"a\"\n", &["[[accounts]]", "array of tables"]),
        (
            "[[accounts]]\nname = \"A\"\npassword = \"hunter2\"\nsources = [\"10.0.0.0/8\"]\n",
            &["`password` is refused", "hash-password"],
        ),
        ("[limits]\nmax_order_qty = \"lots\"\n", &["[limits]", "max_order_qty"]),
        ("[exchange]\n", &[":1:", "[exchange]", "[listen]"]),
        ("[connections]\nmax-conns = 0\n", &[":2:", "max-conns", "0"]),
        ("[listen]\nport = 7777\n[listen\n", &[":3:", "not TOML"]),
        ("[[upstream]]\naddress = \"198.18.0.4:1\"\nusername = \"a\"\npassword = \"x\"\n", &[":1:", "password_file"]),
        ("[[upstream]]\naddress = \"198.18.0.4:1\"\npassword_file = \"/p\"\n", &[":1:", "needs `username`"]),
    ];
    for (text, needles) in cases {
        let f = Temp::new(text);
        let (code, _, err) = run(&["serve", "--config", f.path()]);
        assert_eq!(code, 2, "{text:?}: exit {code}: {err}");
        assert!(err.contains(f.path()), "{text:?}: error does not name the file: {err}");
        for n in *needles {
            assert!(err.contains(n), "{text:?}: error does not mention {n:?}: {err}");
        }
    }
    let (code, _, err) = run(&["serve", "--config", "/nonexistent/gateway.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/gateway.toml"), "{err}");
    let (code, _, err) = run(&["serve", "--port", "7"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--ip") && err.contains("[listen]"), "{err}");
}

#[test]
fn old_boolean_spellings_still_work() {
    let out = print_config(&["--ip", "127.0.0.1", "--port", "7", "--no-cpu-dma-latency", "--zero-copy", "auto"]);
    assert!(out.contains("\nzero-copy = true\n"), "{out}");
    let out = print_config(&["--ip", "127.0.0.1", "--port", "7", "--sample-acks", "off", "--cpu-dma-latency", "off"]);
    assert!(out.contains("\nsample-acks = false\n") && out.contains("\ncpu-dma-latency = false\n"), "{out}");
}

/// examples/gateway.toml serves orders on the lab: on the kernel backend
/// as written (no iface), and on xdp with the lab's interface given.
#[test]
fn the_example_config_serves_on_both_backends() {
    if !lab_available("the_example_config_serves_on_both_backends") {
        return;
    }
    for xdp in [false, true] {
        let lab = Lab::up(xdp);
        let mut args = vec!["--config", EXAMPLE];
        if xdp {
            args.extend(["--iface", lab.if_gw.as_str()]);
        }
        let srv = lab.serve(&args);
        let (out, r) = lab.load_report(&["--app", "orders", "--conns", "2", "--rate", "1000", "--duration", "1"]);
        let log = srv.stop();
        assert!(out.status.success(), "load failed: {}", String::from_utf8_lossy(&out.stdout));
        let want = if xdp { "backend=xdp" } else { "backend=kernel" };
        assert!(log.iter().any(|l| l.contains(want) && l.contains("198.18.0.1:7777")), "{want}: {log:?}");
        assert!(log.iter().any(|l| l.contains("configuration from") && l.contains("gateway.toml")), "{log:?}");
        let sent = r["sent"].as_u64().unwrap();
        assert!(sent >= 500, "sent {sent}");
        assert_eq!(r["answered"].as_u64(), Some(sent), "{r}");
    }
}

#[test]
fn every_key_is_in_docs_config() {
    let doc = include_str!("../docs/CONFIG.md");
    let printed = print_config(&["--ip", "127.0.0.1", "--port", "7"]);
    let mut table = "";
    for l in printed.lines() {
        if let Some(t) = l.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            table = t;
            assert!(doc.contains(&format!("### [{t}]")), "docs/CONFIG.md has no section for [{t}]");
            continue;
        }
        let key = l.trim_start_matches("# ").split([' ', '=']).next().unwrap_or_default();
        if table.is_empty() || key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
            continue;
        }
        let section = doc.split(&format!("### [{table}]")).nth(1).unwrap_or_default();
        let section = section.split("\n### ").next().unwrap_or_default();
        assert!(section.contains(&format!("`--{key}")), "--{key} is not in the [{table}] section of docs/CONFIG.md");
    }
}

#[test]
fn upstream_sessions_are_one_table_each_in_loop_order() {
    let one = |u: &str| {
        format!("[[upstream]]\naddress = \"198.18.0.4:26400\"\nusername = \"{u}\"\npassword_file = \"/p\"\nstate = \"/s\"\n")
    };
    let f = Temp::new(&format!("[listen]\nip = \"198.18.0.1\"\nport = 7\n{}{}", one("gw0"), one("gw1")));
    let out = print_config(&["--config", f.path()]);
    for want in [
        "\nupstream = \"198.18.0.4:26400\"\n",
        "\nupstream-user = [\"gw0\", \"gw1\"]\n",
        "\nupstream-password-file = \"/p\"\n",
        "\nupstream-state = \"/s\"\n",
    ] {
        assert!(out.contains(want), "{want:?} in {out}");
    }
    // Two addresses are refused in this version, with the line.
    let other = one("gw1").replace("26400", "26401");
    let g = Temp::new(&format!("{}{other}", one("gw0")));
    let (code, _, err) = run(&["serve", "--config", g.path(), "--ip", "198.18.0.1", "--port", "7"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("one address"), "{err}");
}
