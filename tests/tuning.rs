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
    "/proc/sys/kernel/numa_balancing",
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
    c.arg(SCRIPT).args(["--iface", &lab.if_gw, "--netns", &lab.ns_gw, "--core", "1"]).args(extra);
    run_bounded(c, Duration::from_secs(60))
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The lab for `test` (one test at a time), or None when it cannot be built.
fn lab_for(test: &str) -> Option<(std::sync::MutexGuard<'static, ()>, Lab)> {
    if !lab_available(test) {
        return None;
    }
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    Some((g, Lab::up(true)))
}

#[test]
fn plan_prints_every_setting_and_changes_nothing() {
    let Some((_g, lab)) = lab_for("plan_prints_every_setting_and_changes_nothing") else { return };
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

/// Reverts on drop, so a failed assertion leaves the host as it was; when
/// the test itself did not fail, the revert must succeed.
struct Revert<'a> {
    lab: &'a Lab,
    state: String,
}

impl Drop for Revert<'_> {
    fn drop(&mut self) {
        let out = tune(self.lab, &["--revert", "--state", &self.state]);
        if !std::thread::panicking() {
            assert!(out.status.success(), "revert failed: {}", text(&out));
        }
    }
}

/// The checkout's files (names and contents), to show a script left nothing
/// behind in the working directory.
fn checkout() -> Vec<(String, Vec<u8>)> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != "target")
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let data = if e.path().is_file() { std::fs::read(e.path()).unwrap_or_default() } else { Vec::new() };
            (name, data)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn apply_then_revert_restores_every_value() {
    let Some((_g, lab)) = lab_for("apply_then_revert_restores_every_value") else { return };
    let state = std::env::temp_dir().join(format!("tg-tune-{}.state", std::process::id()));
    let state = state.to_str().unwrap().to_string();
    let only = ["--only", "sysctl,thp,hugepages,iface", "--state", &state];
    let before = snapshot(&lab);
    let files = checkout();
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
    assert_eq!(checkout(), files, "apply and revert left something in the working directory");
}

#[test]
fn a_malformed_state_file_changes_nothing() {
    let Some((_g, lab)) = lab_for("a_malformed_state_file_changes_nothing") else { return };
    let state = std::env::temp_dir().join(format!("tg-tune-bad-{}.state", std::process::id()));
    let before = snapshot(&lab);
    let files = checkout();
    // The state file of the old format, whose lines were one field short, and
    // lines that would write outside /proc/sys and /sys: every one refused
    // before the first write.
    for (content, says) in [
        ("file||/proc/sys/net/core/busy_poll|50\n", "not a state file of this version"),
        ("tailgate-tune-host-state 2\nfile|/proc/sys/net/core/busy_poll|0\n", "malformed"),
        ("tailgate-tune-host-state 2\nfile||0|1\n", "malformed"),
        ("tailgate-tune-host-state 2\nfile||/proc/sys/net/core/busy_poll|77\nfile||madvise|\n", "malformed"),
        ("tailgate-tune-host-state 2\nfile||/etc/passwd|x\n", "malformed"),
        ("tailgate-tune-host-state 2\nfile||/proc/sys/../../etc/x|1\n", "malformed"),
    ] {
        std::fs::write(&state, content).unwrap();
        let out = tune(&lab, &["--revert", "--state", state.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{content:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{content:?}: {}", text(&out));
        assert!(state.exists(), "a refused state file is kept");
        assert_eq!(snapshot(&lab), before, "{content:?} changed a setting");
    }
    let _ = std::fs::remove_file(&state);
    assert_eq!(checkout(), files, "a refused revert left something in the working directory");
}

#[test]
fn bad_interface_or_cores_is_an_error_and_changes_nothing() {
    let Some((_g, lab)) = lab_for("bad_interface_or_cores_is_an_error_and_changes_nothing") else { return };
    let before = snapshot(&lab);
    for (args, says) in [
        (vec!["--iface", "nosuch0", "--core", "1", "--apply"], "no such interface"),
        (vec!["--iface", lab.if_gw.as_str(), "--netns", lab.ns_gw.as_str(), "--core", "999", "--apply"], "not online"),
        (
            vec!["--iface", lab.if_gw.as_str(), "--netns", lab.ns_gw.as_str(), "--core", "a-b", "--apply"],
            "expected a list",
        ),
        (
            vec!["--iface", lab.if_gw.as_str(), "--netns", "nosuchns", "--core", "1", "--apply"],
            "no such network namespace",
        ),
        (vec!["--iface", lab.if_gw.as_str(), "--core", "1", "--only", "bogus"], "unknown group"),
    ] {
        let mut c = Command::new("bash");
        c.arg(SCRIPT).args(&args);
        let out = run_bounded(c, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
    assert_eq!(snapshot(&lab), before);
}

/// `tailgate doctor` in the lab's gateway namespace.
fn doctor(lab: &Lab, extra: &[&str]) -> std::process::Output {
    let mut c = lab.cmd_in(&lab.ns_gw, BIN);
    c.args(["doctor", "--iface", &lab.if_gw, "--core", "1"]).args(extra);
    run_bounded(c, Duration::from_secs(60))
}

fn findings(out: &std::process::Output) -> Vec<serde_json::Value> {
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}: {}", text(out)))
}

fn status_of<'a>(v: &'a [serde_json::Value], item: &str) -> &'a serde_json::Value {
    v.iter().find(|x| x["item"] == item).unwrap_or_else(|| panic!("no {item}: {v:?}"))
}

#[test]
fn doctor_on_the_lab_reports_the_expected_findings() {
    let Some((_g, lab)) = lab_for("doctor_on_the_lab_reports_the_expected_findings") else { return };
    let out = doctor(&lab, &["--json"]);
    let v = findings(&out);
    // The lab turns offloads off on both ends; root may lock memory and
    // hold /dev/cpu_dma_latency; veth has native XDP and one queue.
    for (item, want) in [
        ("interface", "OK"),
        ("XDP mode", "OK"),
        ("queues", "OK"),
        ("offloads", "OK"),
        ("memlock", "OK"),
        ("napi_defer_hard_irqs", "OK"),
        ("AF_XDP zero-copy", "WARN"),
    ] {
        assert_eq!(status_of(&v, item)["status"], want, "{item}: {v:#?}");
    }
    assert!(status_of(&v, "interface")["found"].as_str().unwrap().contains("driver=veth"));
    for x in &v {
        if x["status"] == "WARN" || x["status"] == "FAIL" {
            assert!(!x["fix"].as_str().unwrap_or("").is_empty(), "no fix: {x}");
        }
    }
    let any_fail = v.iter().any(|x| x["status"] == "FAIL");
    assert_eq!(out.status.success(), !any_fail, "exit status vs findings: {}", text(&out));
    // The table says the same as the JSON, line for line.
    let table = String::from_utf8(doctor(&lab, &[]).stdout).unwrap();
    for x in &v {
        let line = format!(
            "{:<5} {:<25} {}",
            x["status"].as_str().unwrap(),
            x["item"].as_str().unwrap(),
            x["found"].as_str().unwrap()
        );
        assert!(table.contains(&line), "table lacks {line:?}:\n{table}");
    }
    // --probe binds a socket: copy mode on veth, need_wakeup and busy poll accepted.
    let v = findings(&doctor(&lab, &["--json", "--probe"]));
    assert!(status_of(&v, "AF_XDP zero-copy")["found"].as_str().unwrap().contains("copy mode"), "{v:#?}");
    assert_eq!(status_of(&v, "need_wakeup")["status"], "OK");
    assert_eq!(status_of(&v, "busy-poll socket options")["status"], "OK");
}

#[test]
fn doctor_sees_partial_checksums_and_what_tune_host_fixed() {
    let Some((_g, lab)) = lab_for("doctor_sees_partial_checksums_and_what_tune_host_fixed") else { return };
    // The peer's TX checksum offload on: frames arrive with partial checksums.
    let ethtool = |state: &str| {
        let mut c = lab.cmd_in(&lab.ns_cli, "ethtool");
        c.args(["-K", &lab.if_cli, "tx", state]);
        run_bounded(c, Duration::from_secs(10))
    };
    assert!(ethtool("on").status.success());
    let out = doctor(&lab, &["--json"]);
    assert!(ethtool("off").status.success());
    let v = findings(&out);
    assert_eq!(status_of(&v, "offloads")["status"], "FAIL", "{v:#?}");
    assert!(!out.status.success(), "a FAIL must make the exit status non-zero");

    // tune-host --napi-defer turns IRQ deferral on; doctor warns (it costs
    // 50x on veth copy mode); after the revert doctor says OK again.
    let state = std::env::temp_dir().join(format!("tg-tune-doc-{}.state", std::process::id()));
    let state = state.to_str().unwrap().to_string();
    let guard = Revert { lab: &lab, state: state.clone() };
    assert_eq!(status_of(&findings(&doctor(&lab, &["--json"])), "napi_defer_hard_irqs")["status"], "OK");
    let out = tune(&lab, &["--apply", "--napi-defer", "--only", "iface", "--state", &state]);
    assert!(out.status.success(), "{}", text(&out));
    let napi = findings(&doctor(&lab, &["--json"]));
    assert_eq!(status_of(&napi, "napi_defer_hard_irqs")["status"], "WARN", "{napi:#?}");
    assert!(status_of(&napi, "napi_defer_hard_irqs")["fix"].as_str().unwrap().contains("tune-host"));
    drop(guard);
    assert_eq!(status_of(&findings(&doctor(&lab, &["--json"])), "napi_defer_hard_irqs")["status"], "OK");
}

#[test]
fn doctor_fails_on_a_missing_interface() {
    let out = run_bounded(
        {
            let mut c = Command::new(BIN);
            c.args(["doctor", "--iface", "nosuch0", "--core", "0"]);
            c
        },
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("FAIL  interface") && t.contains("no such interface"), "{t}");
}
