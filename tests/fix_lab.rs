//! FIX 4.4 sessions checked by a FIX engine we did not write: a QuickFIX
//! initiator (tests/quickfix/initiator.py, QuickFIX from scripts/test.sh)
//! logs on to the gateway's FIX port on the three-namespace lab, with the
//! exchange simulator behind it, on both backends:
//! - the happy path: orders filled, an order cancelled, a cancel of an
//!   unknown order refused, every message valid by QuickFIX's FIX44
//!   dictionary (it sends a session Reject for any that is not);
//! - a wrong password is refused;
//! - recovery: the client drops its connection while its fills are being
//!   sent, logs on again, and QuickFIX's own ResendRequest gets it every
//!   fill exactly once; and the same with the gateway restarted while the
//!   client is away (its sessions resumed from `--fix-state`).

mod common;

use std::time::Duration;

use common::*;

const PASSWORD: &str = "fix-s3cret";
const FIX_PORT: &str = "7780";

fn python() -> Option<String> {
    match std::env::var("TAILGATE_QUICKFIX_PYTHON") {
        Ok(p) => Some(p),
        Err(_) => {
            eprintln!(
                "skipped: QuickFIX is not installed (scripts/test.sh installs it; TAILGATE_QUICKFIX_PYTHON unset)"
            );
            None
        }
    }
}

/// Accounts (ALPHA with a password), the exchange's password.
fn dir(what: &str) -> TestDir {
    let d = TestDir::new("fixlab", what);
    d.secret("pw", "pw0\n");
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(64, 1, 1, None).unwrap();
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"fix-salt-0123").unwrap();
    let h = a.hash_password(PASSWORD.as_bytes(), &salt).unwrap().to_string();
    // ALPHA's orders stay when its connection drops (the recovery test).
    let cfg = format!(
        "[listen]\nfix-port = {FIX_PORT}\n\n[[accounts]]\nname = \"ALPHA\"\npassword_hash = \"{h}\"\n\
         sources = [\"198.18.0.0/15\"]\nmax_sessions = 4\ncancel_on_disconnect = false\n\n\
         [[accounts]]\nname = \"BETA\"\npassword_hash = \"{h}\"\nsources = [\"198.18.0.0/15\"]\n"
    );
    std::fs::write(d.0.join("gw.toml"), cfg).unwrap();
    d
}

/// The initiator in the client namespace, as ALPHA: its events (JSON lines).
fn initiator(lab: &Lab, py: &str, dir: &TestDir, mode: &str, password: &str, pairs: &str) -> Vec<serde_json::Value> {
    initiator_as(lab, py, dir, "ALPHA", mode, password, pairs)
}

fn initiator_as(
    lab: &Lab,
    py: &str,
    dir: &TestDir,
    user: &str,
    mode: &str,
    password: &str,
    pairs: &str,
) -> Vec<serde_json::Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/quickfix/initiator.py");
    let mut c = lab.cmd_in(&lab.ns_cli, py);
    c.args([script, mode, GW_IP, FIX_PORT, user, password, &dir.path(&format!("qf-{user}")), pairs]);
    let out = run_bounded(c, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout);
    let events: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(
        events.iter().any(|e| e["event"] == "done"),
        "the initiator ({mode}) ran to its end: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    events
}

fn of<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

fn gateway(lab: &Lab, dir: &TestDir, backend: &str) -> Proc {
    let (cfg, pcap, state) = (dir.path("gw.toml"), dir.path("fix.pcap"), dir.path("fixstate"));
    let mut args = vec!["--config", cfg.as_str(), "--fix-state", state.as_str()];
    if backend == "xdp" {
        // The stack's own capture (tcpdump cannot see redirected frames).
        args.extend(["--pcap", pcap.as_str()]);
    }
    gateway_up(lab, dir, backend, &args)
}

/// tshark's FIX dissector on the xdp happy path's capture: every FIX
/// message of the session recognised (types both ways, checksums good),
/// and nothing malformed.
fn tshark_reads_the_capture(dir: &TestDir) {
    if !tool_available("fix_lab", "tshark") {
        return;
    }
    let pcap = dir.path("fix.pcap");
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new("tshark");
        c.args(["-n", "-r", &pcap, "-d", &format!("tcp.port=={FIX_PORT},fix")]).args(args);
        let out = run_bounded(c, Duration::from_secs(60));
        assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let fields = run(&["-Y", "fix", "-T", "fields", "-e", "fix.MsgType", "-e", "fix.checksum_bad"]);
    let mut types: Vec<&str> = fields.lines().flat_map(|l| l.split('\t').next().unwrap_or("").split(',')).collect();
    types.sort();
    types.dedup();
    for t in ["A", "D", "F", "8", "9", "5"] {
        assert!(types.contains(&t), "tshark saw a {t}: {types:?}\n{fields}");
    }
    // tshark checks each CheckSum: checksum_bad is 0 for a good one.
    let flags: Vec<&str> = fields.lines().flat_map(|l| l.split('\t').nth(1).unwrap_or("?").split(',')).collect();
    assert!(!flags.is_empty() && flags.iter().all(|f| *f == "0"), "tshark found a bad checksum: {fields}");
    let bad = run(&["-Y", "_ws.malformed || _ws.expert.severity >= \"error\""]);
    assert!(bad.trim().is_empty(), "tshark found malformed FIX: {bad}");
}

fn happy_path(backend: &str) {
    let Some(py) = python() else { return };
    if !lab_available("fix_lab") {
        return;
    }
    let lab = Lab::up_exchange(backend == "xdp");
    let d = dir(&format!("happy-{backend}"));
    let _ex = exchange_up(&lab, &[]);
    let gw = gateway(&lab, &d, backend);
    let ev = initiator(&lab, &py, &d, "happy", PASSWORD, "3");
    let lines = gw.stop();
    assert_eq!(of(&ev, "logon").len(), 1, "logged on: {ev:?}\n{lines:?}");
    assert!(of(&ev, "reject_sent").is_empty(), "QuickFIX refused none of our messages: {ev:?}");
    let execs = of(&ev, "exec");
    for i in 0..3 {
        for side in ["B", "S"] {
            let id = format!("{side}{i}");
            let mine: Vec<_> = execs.iter().filter(|e| e["clid"] == id.as_str()).collect();
            assert!(mine.iter().any(|e| e["exec_type"] == "0" && e["status"] == "0"), "{id} new: {mine:?}");
            let fills: Vec<_> = mine.iter().filter(|e| e["exec_type"] == "F").collect();
            assert_eq!(fills.len(), 1, "{id} filled once: {mine:?}");
            assert_eq!(fills[0]["status"], "2");
            assert_eq!((fills[0]["cum"].as_str(), fills[0]["leaves"].as_str()), (Some("100"), Some("0")));
            assert_eq!(fills[0]["avg_px"].as_str().map(|p| p.parse::<f64>().unwrap()), Some(10.0));
        }
    }
    let canceled: Vec<_> = execs.iter().filter(|e| e["exec_type"] == "4").collect();
    assert_eq!(canceled.len(), 1, "{execs:?}");
    assert_eq!((canceled[0]["clid"].as_str(), canceled[0]["orig"].as_str()), (Some("C1"), Some("R1")));
    assert_eq!(canceled[0]["status"], "4");
    let rej = of(&ev, "cancel_reject");
    assert_eq!(rej.len(), 1, "the unknown order's cancel was refused: {ev:?}");
    assert_eq!((rej[0]["clid"].as_str(), rej[0]["orig"].as_str()), (Some("C2"), Some("NOPE")));
    assert!(of(&ev, "logout").iter().any(|e| e["text"] == "logout"), "our Logout answered the client's: {ev:?}");
    if backend == "xdp" {
        tshark_reads_the_capture(&d);
    }
}

#[test]
fn quickfix_trades_on_the_kernel_backend() {
    happy_path("kernel");
}

#[test]
fn quickfix_trades_on_the_xdp_backend() {
    happy_path("xdp");
}

fn wrong_password(backend: &str) {
    let Some(py) = python() else { return };
    if !lab_available("fix_lab") {
        return;
    }
    let lab = Lab::up_exchange(backend == "xdp");
    let d = dir(&format!("wrongpw-{backend}"));
    let _ex = exchange_up(&lab, &[]);
    let gw = gateway(&lab, &d, backend);
    let ev = initiator(&lab, &py, &d, "wrongpw", "not-the-password", "0");
    let lines = gw.stop();
    assert!(of(&ev, "logon").is_empty(), "no logon: {ev:?}");
    assert!(
        of(&ev, "logout").iter().any(|e| e["text"] == "logon refused: not authorized"),
        "the Logout says why: {ev:?}"
    );
    assert_eq!(counter(&lines, "logons_refused"), Some(1), "{lines:?}");
}

#[test]
fn a_wrong_password_is_refused_on_both_backends() {
    wrong_password("kernel");
    wrong_password("xdp");
}

/// `restart`: the gateway is stopped and started again while ALPHA is
/// away, after its fills; its FIX sessions resume from the state file.
fn recovery(backend: &str, restart: bool) {
    let Some(py) = python() else { return };
    if !lab_available("fix_lab") {
        return;
    }
    let lab = Lab::up_exchange(backend == "xdp");
    let d = dir(&format!("recover-{backend}-{restart}"));
    let _ex = exchange_up(&lab, &[]);
    let mut gw = gateway(&lab, &d, backend);
    let n = 20;
    // ALPHA rests its buys and drops its connection; BETA's sells fill
    // them while it is away; ALPHA logs on again.
    let first = initiator(&lab, &py, &d, "rest", PASSWORD, &n.to_string());
    let seller = initiator_as(&lab, &py, &d, "BETA", "sell", PASSWORD, &n.to_string());
    if restart {
        let before = gw.stop();
        gw = gateway(&lab, &d, backend);
        assert!(
            gw.wait_for("FIX: 2 sessions resumed", Duration::from_secs(5)),
            "ALPHA's and BETA's sessions resumed: {:?}\n{before:?}",
            gw.log
        );
    }
    let second = initiator(&lab, &py, &d, "recover", PASSWORD, &n.to_string());
    let lines = gw.stop();
    assert_eq!(of(&first, "exec").iter().filter(|e| e["exec_type"] == "0").count(), n, "{first:?}");
    assert_eq!(of(&seller, "exec").iter().filter(|e| e["exec_type"] == "F").count(), n, "{seller:?}\n{lines:?}");
    assert_eq!(of(&second, "logon").len(), 1, "logged on again: {second:?}\n{lines:?}");
    assert!(
        !of(&second, "resend_request_sent").is_empty(),
        "QuickFIX asked for the gap with its own ResendRequest: {second:?}"
    );
    for ev in [&first, &seller, &second] {
        assert!(of(ev, "reject_sent").is_empty(), "QuickFIX refused none of our messages: {ev:?}");
    }
    // Every fill exactly once, over both connections, as a resend.
    let fills: Vec<_> =
        of(&first, "exec").into_iter().chain(of(&second, "exec")).filter(|e| e["exec_type"] == "F").collect();
    let mut ids: Vec<&str> = fills.iter().map(|e| e["clid"].as_str().unwrap()).collect();
    ids.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("B{i}")).collect();
    want.sort();
    assert_eq!(ids, want, "each order's fill exactly once: {fills:?}\n{lines:?}");
    let exec_ids: std::collections::HashSet<_> = fills.iter().map(|e| e["exec_id"].as_str().unwrap()).collect();
    assert_eq!(exec_ids.len(), fills.len(), "no ExecID twice");
    assert!(fills.iter().all(|e| e["poss_dup"] == true), "the fills came as resends (PossDupFlag Y): {fills:?}");
}

#[test]
fn quickfix_recovers_missed_fills_with_a_resend_request() {
    recovery("kernel", false);
    recovery("xdp", false);
}

#[test]
fn quickfix_recovers_missed_fills_after_a_gateway_restart() {
    recovery("kernel", true);
    recovery("xdp", true);
}
