//! docs/COUNTERS.md lists every counter the gateway exports: a gateway on
//! each backend is scraped after some traffic, and every metric family and
//! every counter, drop reason and gauge named in its labels must have its
//! row in the table.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

const DOC: &str = include_str!("../docs/COUNTERS.md");

/// The names `/metrics` exports: families, and the `counter`, `reason`
/// and `name` labels of the backend's series.
fn exported(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for l in metrics.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let family = rest.split_whitespace().next().unwrap_or_default();
            names.insert(family.to_string());
            continue;
        }
        if l.starts_with('#') {
            continue;
        }
        for label in ["counter=\"", "reason=\"", "name=\""] {
            if let Some(i) = l.find(label) {
                let v = &l[i + label.len()..];
                names.insert(v[..v.find('"').unwrap_or(v.len())].to_string());
            }
        }
    }
    names
}

/// The names in the first column of the doc's tables.
fn documented() -> BTreeSet<String> {
    DOC.lines().filter_map(|l| l.strip_prefix("| `")).filter_map(|l| l.split('`').next()).map(str::to_string).collect()
}

fn scrape(lab: &Lab, args: &[&str]) -> BTreeSet<String> {
    let gw = lab.serve(args);
    let addr = {
        let l = gw.log.iter().find(|l| l.contains("metrics on http://")).expect("metrics line");
        l.split("http://").nth(1).and_then(|r| r.split('/').next()).expect("address").to_string()
    };
    let out = lab.load(&["--app", "orders", "--conns", "4", "--pingpong", "--duration", "1"]);
    assert!(out.status.success(), "load failed: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(300));
    let body = lab.in_ns(&lab.ns_gw.clone(), move || tailgate::sampler::endpoint::http_get(&addr, "/metrics"));
    gw.stop();
    exported(&String::from_utf8(body.expect("GET /metrics")).unwrap())
}

#[test]
fn every_exported_counter_is_documented() {
    if !lab_available("every_exported_counter_is_documented") {
        return;
    }
    let doc = documented();
    let mut all = BTreeSet::new();
    for xdp in [false, true] {
        let lab = Lab::up(xdp);
        let mut args = vec!["--ip", GW_IP, "--port", "7777", "--metrics", "127.0.0.1:0"];
        if xdp {
            args.extend(["--backend", "xdp", "--iface", lab.if_gw.as_str()]);
        } else {
            args.extend(["--backend", "kernel"]);
        }
        let names = scrape(&lab, &args);
        assert!(names.len() > if xdp { 60 } else { 15 }, "too few names scraped: {names:?}");
        all.extend(names);
    }
    let missing: Vec<&String> = all.difference(&doc).collect();
    assert!(missing.is_empty(), "exported but not in docs/COUNTERS.md: {missing:?}");
}
