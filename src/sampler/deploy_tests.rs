//! The shipped alert rules (deploy/prometheus) and dashboard
//! (deploy/grafana) name only series the gateway exports, and recording
//! rules that the rules file defines.

use std::collections::BTreeSet;

use super::metrics::{Metrics, Snapshot};
use super::{kind, AppCounters, Sample, UpstreamState};

const RULES: &str = include_str!("../../deploy/prometheus/tailgate-rules.yml");
const DASHBOARD: &str = include_str!("../../deploy/grafana/tailgate.json");

/// The families a gateway's /metrics declares (`# TYPE NAME KIND`), with
/// everything it can export present: an order gateway with an exchange, a
/// sample of every stage, a tail message, a reject (a family with no
/// series is not declared).
fn exported() -> BTreeSet<String> {
    let mut m = Metrics::new(8_000_000, 100_000);
    let mut app = AppCounters { sessions: 1, upstream: UpstreamState::Up, ..AppCounters::default() };
    app.rejects[crate::proto::RejectReason::Killed as usize] = 1;
    m.update(0, None, &Snapshot { app, ..Snapshot::default() });
    let slow = Sample {
        t_rx_frame: 1_000_000,
        t_delivered: 1_000_000,
        t_parsed: 1_000_000,
        t_handled: 3_000_000,
        t_tx_queued: 3_000_000,
        msg_type: kind::LIMIT,
        ..Sample::default()
    };
    m.observe(&[slow]);
    m.render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Every `tailgate_...` and `tailgate:...` name in `text`.
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("tailgate") {
        let start = i + at;
        let mut end = start + "tailgate".len();
        let name_follows = b.get(end).is_some_and(|&c| c == b'_' || c == b':')
            && b.get(end + 1).is_some_and(|c| c.is_ascii_alphanumeric());
        if name_follows && (start == 0 || !b[start - 1].is_ascii_alphanumeric()) {
            while b.get(end).is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b':') {
                end += 1;
            }
            out.insert(text[start..end].trim_end_matches(':').to_string());
        }
        i = end;
    }
    out
}

/// The family a sample name belongs to.
fn family(name: &str) -> &str {
    for suffix in ["_total", "_bucket", "_count", "_sum"] {
        if let Some(base) = name.strip_suffix(suffix) {
            return base;
        }
    }
    name
}

fn check(what: &str, text: &str, exported: &BTreeSet<String>, recorded: &BTreeSet<String>) -> usize {
    let found = names(text);
    for n in &found {
        if n.contains(':') {
            assert!(recorded.contains(n), "{what} uses {n}, which no recording rule defines");
        } else {
            assert!(
                exported.contains(family(n)) || exported.contains(n.as_str()),
                "{what} names {n}, which the gateway does not export (families: {exported:?})"
            );
        }
    }
    found.len()
}

#[test]
fn the_rules_and_the_dashboard_name_only_exported_series() {
    let exported = exported();
    assert!(exported.contains("tailgate_latency_seconds") && exported.contains("tailgate_upstream_up"));
    let recorded: BTreeSet<String> =
        RULES.lines().filter_map(|l| l.trim().strip_prefix("- record: ")).map(|s| s.trim().to_string()).collect();
    assert!(recorded.len() >= 5, "{recorded:?}");
    assert!(check("tailgate-rules.yml", RULES, &exported, &recorded) >= 10);
    let dash: serde_json::Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut queries = 0;
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            let e = t["expr"].as_str().expect("a query");
            assert!(check(&format!("panel {:?}", p["title"]), e, &exported, &recorded) >= 1, "{e}");
            queries += 1;
        }
    }
    assert!(queries >= 10, "{queries} queries");
    // A name that is not exported is caught.
    let caught = std::panic::catch_unwind(|| check("x", "rate(tailgate_nonsense_total[5m])", &exported, &recorded));
    assert!(caught.is_err());
}
