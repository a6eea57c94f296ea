//! scripts/tune-host.sh on the lab: the plan changes nothing; --apply then
//! --revert restores every value exactly; bad input changes nothing. The
//! apply test touches only settings that are safe to change for a moment
//! (sysctls, THP, hugepages, the lab interface), never IRQ affinity, and a
//! guard reverts even when an assertion fails.

mod common;

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::*;

static SERIAL: Mutex<()> = Mutex::new(());

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/tune-host.sh");

const HOST_FILES: &[&str] = &[
    "/proc/sys/net/core/busy_poll",
    "/proc/sys/net/core/busy_read",
    "/proc/sys/kernel/sched_rt_runtime_us",
    "/proc/sys/vm/stat_interval",
    "/sys/kernel/mm/transparent_hugepage/enabled",
    "/sys/kernel/mm/transparent_hugepage/defrag",
    "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
];

/// Every value the script may touch (host files, IRQ affinities, the lab
/// interface's files), as one comparable text.
fn snapshot(lab: &Lab) -> String {
    let mut s = String::new();
    for f in HOST_FILES {
        s += &format!("{f} {}\n", std::fs::read_to_string(f).unwrap_or_default().trim());
    }
    let mut irqs: Vec<_> = std::fs::read_dir("/proc/irq")
        .map(|d| d.filter_map(Result::ok).map(|e| e.path().join("smp_affinity_list")).collect())
        .unwrap_or_default();
    irqs.sort();
    for f in irqs {
        if let Ok(v) = std::fs::read_to_string(&f) {
            s += &format!("{} {}\n", f.display(), v.trim());
        }
    }
    for f in ["napi_defer_hard_irqs", "gro_flush_timeout"] {
        let out = run_bounded(
            {
                let mut c = lab.cmd_in(&lab.ns_gw, "cat");
                c.arg(format!("/sys/class/net/{}/{f}", lab.if_gw));
                c
            },
            Duration::from_secs(10),
        );
        s += &format!("{f} {}\n", String::from_utf8_lossy(&out.stdout).trim());
    }
    s
}

fn tune(lab: &Lab, extra: &[&str]) -> std::process::Output {
    let mut c = Command::new("bash");
    c.arg(SCRIPT).args(["--iface", &lab.if_gw, "--netns", &lab.ns_gw, "--cores", "1"]).args(extra);
    run_bounded(c, Duration::from_secs(60))
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn plan_prints_every_setting_and_changes_nothing() {
    if !lab_available("plan_prints_every_setting_and_changes_nothing") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(true);
    let before = snapshot(&lab);
    let out = tune(&lab, &["--port", "7777"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert_eq!(snapshot(&lab), before, "the plan changed something:\n{t}");
    for want in [
        "/proc/sys/net/core/busy_poll",
        "/proc/sys/kernel/sched_rt_runtime_us",
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "nr_hugepages",
        &format!("/sys/class/net/{}/napi_defer_hard_irqs", lab.if_gw),
        "gro_flush_timeout",
        "scaling_governor",
        "irqbalance",
        "coalescing",
        "ntuple tcp4 dst-port 7777",
        "nohz_full",
        "plan only, nothing changed",
    ] {
        assert!(t.contains(want), "plan lacks {want:?}:\n{t}");
    }
}

/// Reverts on drop, so a failed assertion leaves the host as it was.
struct Revert<'a> {
    lab: &'a Lab,
    state: String,
}

impl Drop for Revert<'_> {
    fn drop(&mut self) {
        let _ = tune(self.lab, &["--revert", "--state", &self.state]);
    }
}

#[test]
fn apply_then_revert_restores_every_value() {
    if !lab_available("apply_then_revert_restores_every_value") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(true);
    let state = std::env::temp_dir().join(format!("tg-tune-{}.state", std::process::id()));
    let state = state.to_str().unwrap().to_string();
    let only = ["--only", "sysctl,thp,hugepages,iface", "--state", &state];
    let before = snapshot(&lab);
    let guard = Revert { lab: &lab, state: state.clone() };
    let out = tune(&lab, &[&["--apply"], &only[..]].concat());
    assert!(out.status.success(), "{}", text(&out));
    let applied = snapshot(&lab);
    assert_ne!(applied, before, "apply changed nothing");
    assert_eq!(std::fs::read_to_string("/proc/sys/net/core/busy_poll").unwrap().trim(), "50");
    // Applying again keeps the first saved values.
    let saved = std::fs::read_to_string(&state).unwrap();
    let out = tune(&lab, &[&["--apply"], &only[..]].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&state).unwrap(), saved, "a second apply rewrote the saved values");
    assert!(text(&out).contains("applied 0 change(s)"), "{}", text(&out));
    let out = tune(&lab, &["--revert", "--state", &state]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(snapshot(&lab), before, "revert did not restore every value:\n{}", text(&out));
    assert!(!std::path::Path::new(&state).exists());
    drop(guard);
}

#[test]
fn bad_interface_or_cores_is_an_error_and_changes_nothing() {
    if !lab_available("bad_interface_or_cores_is_an_error_and_changes_nothing") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(true);
    let before = snapshot(&lab);
    for (args, says) in [
        (vec!["--iface", "nosuch0", "--cores", "1", "--apply"], "no such interface"),
        (vec!["--iface", lab.if_gw.as_str(), "--netns", lab.ns_gw.as_str(), "--cores", "999", "--apply"], "not online"),
        (
            vec!["--iface", lab.if_gw.as_str(), "--netns", lab.ns_gw.as_str(), "--cores", "a-b", "--apply"],
            "expected a list",
        ),
        (
            vec!["--iface", lab.if_gw.as_str(), "--netns", "nosuchns", "--cores", "1", "--apply"],
            "no such network namespace",
        ),
        (vec!["--iface", lab.if_gw.as_str(), "--cores", "1", "--only", "bogus"], "unknown group"),
    ] {
        let mut c = Command::new("bash");
        c.arg(SCRIPT).args(&args);
        let out = run_bounded(c, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
    assert_eq!(snapshot(&lab), before);
}
