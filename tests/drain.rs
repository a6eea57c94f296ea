//! SIGTERM to a gateway under load, on the lab, both backends: the
//! gateway drains (Logout reason Shutdown to every session, queued replies
//! flushed, FIN), and every reply it counted as sent reached the load
//! generator, which reports the shutdown as such, not as failures.

mod common;

use std::time::Duration;

use common::*;

fn sigterm_under_load(test: &str, bypass: bool) {
    if !lab_available(test) {
        return;
    }
    let lab = Lab::up(bypass);
    let if_gw = lab.if_gw.clone();
    let mut args = vec!["--ip", GW_IP, "--port", "7777", "--app", "orders"];
    if bypass {
        args.extend_from_slice(&["--backend", "xdp", "--iface", &if_gw]);
    } else {
        args.extend_from_slice(&["--backend", "kernel"]);
    }
    let srv = lab.serve(&args);
    let report = std::env::temp_dir().join(format!("tg-{}-{test}.json", std::process::id()));
    let mut c = lab.cmd_in(&lab.ns_cli, BIN);
    c.args(["load", "--ip", GW_IP, "--port", "7777", "--app", "orders", "--conns", "4", "--rate", "2000"]);
    c.args(["--duration", "30", "--json"]).arg(&report);
    // The load would run 30 s; the gateway's shutdown ends it early.
    let load = std::thread::spawn(move || run_bounded(c, Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(1500));
    let lines = srv.stop();
    let out = load.join().expect("load thread");
    let text = std::fs::read_to_string(&report);
    let _ = std::fs::remove_file(&report);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "load failed: {stderr}\ngateway: {lines:?}");
    let r: serde_json::Value = serde_json::from_str(&text.expect("JSON report")).expect("valid JSON");
    let num = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("no {k} in {r}"));
    assert_eq!(num("shutdown_logouts"), 4, "every session got its Logout: {r}");
    assert!(r["duration_s"].as_f64().is_some_and(|d| d < 20.0), "the load ended with the gateway: {r}");
    // Every reply the gateway sent arrived: acks, cancel acks and rejects.
    let sent = ["orders_acked", "cancels_acked", "rejects"]
        .iter()
        .map(|k| counter(&lines, k).unwrap_or_else(|| panic!("no {k} in {lines:?}")))
        .sum::<u64>();
    assert!(sent > 1000, "{lines:?}");
    assert_eq!(num("answered"), sent, "{r}\n{lines:?}");
    assert_eq!(counter(&lines, "shutdown_logouts"), Some(4), "{lines:?}");
    assert_eq!(counter(&lines, "abandoned"), Some(0), "{lines:?}");
}

#[test]
fn sigterm_drains_the_kernel_backend_under_load() {
    sigterm_under_load("sigterm_drains_the_kernel_backend_under_load", false);
}

#[test]
fn sigterm_drains_the_xdp_backend_under_load() {
    sigterm_under_load("sigterm_drains_the_xdp_backend_under_load", true);
}
