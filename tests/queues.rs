//! One loop per NIC queue on the lab: a veth pair with two queues per end
//! (`scripts/lab.sh up --bypass --queues 2`) and `serve --queue 0,1 --core
//! 0,1`. The in-memory tests of the handoff are in tests/loops.rs.

mod common;

use std::time::Duration;

use common::*;

/// Run `prog args` in namespace `ns` (10 s at most).
fn run_in(lab: &Lab, ns: &str, prog: &str, args: &[&str]) -> std::process::Output {
    let mut c = lab.cmd_in(ns, prog);
    c.args(args);
    run_bounded(c, Duration::from_secs(10))
}

/// `ethtool -S` of the gateway's interface: the value of `name`.
fn nic_stat(lab: &Lab, name: &str) -> u64 {
    stat_of(lab, &lab.ns_gw, &lab.if_gw, name)
}

/// `ethtool -S IFACE` in namespace `ns`: the value of `name`.
fn stat_of(lab: &Lab, ns: &str, iface: &str, name: &str) -> u64 {
    let out = run_in(lab, ns, "ethtool", &["-S", iface]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name}:")).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("ethtool -S {iface} has no {name}: {text}"))
}

/// Every counter `key` of the lines starting with `loop N (`.
fn per_loop(lines: &[String], key: &str) -> Vec<u64> {
    (0..2)
        .map(|i| {
            let mine: Vec<String> = lines.iter().filter(|l| l.contains(&format!("loop {i} "))).cloned().collect();
            counter(&mine, key).unwrap_or_else(|| panic!("loop {i}: no {key} in {lines:?}"))
        })
        .collect()
}

#[test]
fn two_hundred_connections_spread_over_two_queues_and_two_loops() {
    let test = "two_hundred_connections_spread_over_two_queues_and_two_loops";
    if !lab_available(test) {
        return;
    }
    let lab = Lab::up_queues(true, 2);
    let (q0, q1) = (nic_stat(&lab, "rx_queue_0_xdp_redirect"), nic_stat(&lab, "rx_queue_1_xdp_redirect"));
    // --metrics turns sampling on: each loop records into its own ring, and
    // the one reporter drains both.
    let gw = lab.serve_xdp("orders", &["--queue", "0,1", "--core", "0,1", "--spin", "--metrics", "127.0.0.1:0"]);
    assert!(gw.log.iter().any(|l| l.contains("loops=2 (queues 0,1 on cores 0,1)")), "{:?}", gw.log);
    let addr = {
        let l = gw.log.iter().find(|l| l.contains("metrics on http://")).expect("metrics line");
        l.split("http://").nth(1).and_then(|r| r.split('/').next()).expect("address").to_string()
    };
    let out = lab.load(&["--app", "orders", "--conns", "200", "--pingpong", "--duration", "2"]);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "load failed: {report} {}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("unanswered 0"), "{report}");
    let sent: u64 = report
        .split_whitespace()
        .skip_while(|w| *w != "answered")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("answered count");
    // The loops publish every 100 ms and the reporter drains every 10 ms.
    std::thread::sleep(Duration::from_millis(400));
    let metrics = {
        let addr = addr.clone();
        let body = lab.in_ns(&lab.ns_gw.clone(), move || tailgate::sampler::endpoint::http_get(&addr, "/metrics"));
        String::from_utf8(body.expect("GET /metrics")).unwrap()
    };
    let series = |prefix: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix).and_then(|v| v.trim().parse::<f64>().ok()))
            .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{metrics}")) as u64
    };
    let accepted: Vec<u64> =
        (0..2).map(|i| series(&format!("tailgate_connections_total{{event=\"opened\",loop=\"{i}\"}}"))).collect();
    assert_eq!(accepted.iter().sum::<u64>(), 200, "{accepted:?}");
    let recorded: Vec<u64> = (0..2)
        .map(|i| series(&format!("tailgate_sampler_records_total{{outcome=\"recorded\",loop=\"{i}\"}}")))
        .collect();
    assert!(recorded.iter().all(|&n| n > 0), "both loops' rings were drained: {recorded:?}");
    assert!(series("tailgate_backend_total{counter=\"xdp_redirected\",loop=\"all\"}") > 0);
    let log = gw.stop();
    // The client's kernel hashes each socket to a transmit queue, which is
    // the gateway's receive queue: with 200 connections both get some.
    let opened = per_loop(&log, "opened");
    assert_eq!(opened.iter().sum::<u64>(), 200, "{log:?}");
    assert!(opened.iter().all(|&n| n > 0), "each loop owns connections: {opened:?}");
    assert_eq!(per_loop(&log, "handoff_dropped"), vec![0, 0]);
    assert_eq!(counter(&log, "loops"), Some(2), "the totals line: {log:?}");
    // Each message its loop served came in a frame its own queue redirected
    // or one the other loop handed over: a client socket may move to the
    // other queue mid-run (the kernel may choose its transmit queue again,
    // as after a retransmission timeout on a busy machine; seen once in
    // scripts/test.sh: 11,700 of 63,000 frames on the other queue).
    let msgs = per_loop(&log, "messages_in");
    assert!(msgs.iter().sum::<u64>() >= sent, "{msgs:?} served, {sent} answered");
    let handed = per_loop(&log, "handoff_received");
    let (d0, d1) = (nic_stat(&lab, "rx_queue_0_xdp_redirect") - q0, nic_stat(&lab, "rx_queue_1_xdp_redirect") - q1);
    assert!(
        d0 + handed[0] >= msgs[0] && d1 + handed[1] >= msgs[1],
        "queue 0 redirected {d0}, queue 1 {d1}; handed over {handed:?}; loops served {msgs:?}"
    );
}

/// Move every thread of process `pid` to CPU `cpu`.
fn migrate(pid: u32, cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks").flatten() {
        let tid: i32 = t.file_name().to_string_lossy().parse().unwrap();
        let tid = rustix::thread::Pid::from_raw(tid).unwrap();
        rustix::thread::sched_setaffinity(Some(tid), &set).expect("sched_setaffinity");
    }
}

#[test]
fn frames_that_land_on_the_other_queue_are_handed_to_the_loop_that_owns_their_connection() {
    strays_handed_over("frames_that_land_on_the_other_queue_are_handed_to_the_loop_that_owns_their_connection", true);
}

/// The same with blocking loops: loop 0 sleeps in poll(2) between orders,
/// and every frame loop 1 hands it must wake it (the handoff doorbell).
#[test]
fn a_sleeping_loop_is_woken_by_the_frames_handed_to_it() {
    strays_handed_over("a_sleeping_loop_is_woken_by_the_frames_handed_to_it", false);
}

fn strays_handed_over(test: &str, spin: bool) {
    if !lab_available(test) {
        return;
    }
    let lab = Lab::up_queues(true, 2);
    // veth sends a frame to the peer's rx queue with the index of the tx
    // queue it left on. XPS on the client's end maps CPU 0 to tx queue 0 and
    // CPU 1 to tx queue 1, and TCP picks again (ooo_okay) whenever nothing
    // is in flight: a ping-pong client's frames follow its CPU.
    for (q, mask) in [(0, "1"), (1, "2")] {
        let xps = format!("echo {mask} > /sys/class/net/{}/queues/tx-{q}/xps_cpus", lab.if_cli);
        let out = run_in(&lab, &lab.ns_cli, "sh", &["-c", &xps]);
        assert!(out.status.success(), "xps_cpus: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut args = vec!["--queue", "0,1", "--core", "0,1"];
    if spin {
        args.push("--spin");
    }
    let gw = lab.serve_xdp("orders", &args);
    // The client starts on CPU 0: every SYN reaches queue 0 and loop 0 owns
    // every connection. After the first second it moves to CPU 1: its
    // frames then reach queue 1, whose loop owns none of them.
    let mut c = lab.cmd_in(&lab.ns_cli, BIN);
    c.args(["load", "--ip", GW_IP, "--port", "7777", "--app", "orders", "--conns", "20", "--pingpong"]);
    c.args(["--duration", "3", "--core", "0"]);
    let load = Proc::spawn_until(c, "load: t=1s", Duration::from_secs(60));
    migrate(load.pid(), 1);
    let load_log = load.wait_exit(Duration::from_secs(60));
    let log = gw.stop();
    assert_eq!(load_log.0, Some(0), "load failed: {:?}", load_log.1);
    let opened = per_loop(&log, "opened");
    assert_eq!(opened, vec![20, 0], "loop 0 owns every connection: {log:?}");
    let forwarded = per_loop(&log, "handoff_forwarded");
    let received = per_loop(&log, "handoff_received");
    assert!(forwarded[1] >= 100, "loop 1 handed loop 0 the frames of its connections: {forwarded:?}");
    assert_eq!(received[0], forwarded[1], "every frame handed over arrived");
    assert_eq!(per_loop(&log, "handoff_dropped"), vec![0, 0]);
    assert_eq!(per_loop(&log, "syn_cookies_invalid"), vec![0, 0], "no loop reset another's handshake");
    assert_eq!(per_loop(&log, "messages_in")[1], 0, "loop 1 served nothing");
    let wakeups = per_loop(&log, "handoff_wakeups");
    if spin {
        assert_eq!(wakeups, vec![0, 0], "spinning loops never sleep");
    } else {
        assert!(wakeups[0] > 0, "loop 0 slept and was woken by handed-over frames: {wakeups:?}");
    }
}

#[test]
fn kernel_backend_loops_take_the_connections_whose_syn_their_cpu_processed() {
    let test = "kernel_backend_loops_take_the_connections_whose_syn_their_cpu_processed";
    if !lab_available(test) {
        return;
    }
    let lab = Lab::up_queues(false, 1);
    let gw = lab.serve(&["--backend", "kernel", "--ip", GW_IP, "--port", "7777", "--app", "orders", "--core", "0,1"]);
    assert!(gw.log.iter().any(|l| l.contains("loops=2 (SO_REUSEPORT listeners on cores 0,1)")), "{:?}", gw.log);
    // Two clients, one per CPU. veth processes a frame on the sending CPU,
    // so each client's SYNs are processed on its own CPU, and SO_INCOMING_CPU
    // hands them to the listener of the loop pinned there.
    let clients: Vec<Proc> = (0..2)
        .map(|cpu| {
            let mut c = lab.cmd_in(&lab.ns_cli, BIN);
            c.args(["load", "--ip", GW_IP, "--port", "7777", "--app", "orders", "--conns", "30", "--pingpong"]);
            c.args(["--duration", "3", "--core", &cpu.to_string()]);
            Proc::spawn_until(c, "load: t=1s", Duration::from_secs(60))
        })
        .collect();
    for (cpu, p) in clients.into_iter().enumerate() {
        let (code, lines) = p.wait_exit(Duration::from_secs(60));
        assert_eq!(code, Some(0), "client on CPU {cpu}: {lines:?}");
    }
    let log = gw.stop();
    assert_eq!(per_loop(&log, "opened"), vec![30, 30], "{log:?}");
    assert_eq!(counter(&log, "loops"), Some(2));
}

#[test]
fn the_load_generator_runs_one_loop_per_queue_on_xdp_too() {
    let test = "the_load_generator_runs_one_loop_per_queue_on_xdp_too";
    if !lab_available(test) {
        return;
    }
    let lab = Lab::up_queues(true, 2);
    let q = |i: usize| stat_of(&lab, &lab.ns_cli, &lab.if_cli, &format!("rx_queue_{i}_xdp_redirect"));
    let before = [q(0), q(1)];
    // The gateway blocks (no --spin): the client's two loops spin, and this
    // machine has two CPUs.
    let gw = lab.serve_xdp("orders", &["--queue", "0,1", "--core", "0,1"]);
    let (out, r) = lab.load_report(&[
        "--backend",
        "xdp",
        "--iface",
        &lab.if_cli,
        "--local-ip",
        "198.18.0.3",
        "--queue",
        "0,1",
        "--core",
        "0,1",
        "--app",
        "orders",
        "--conns",
        "40",
        "--pingpong",
        "--duration",
        "1",
    ]);
    let log = gw.stop();
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "load failed: {said}");
    // veth has no RSS table: the generator says so and falls back to
    // every n-th port per loop, with the handoff for strays.
    assert!(
        said.contains("reading the RSS key and indirection table (SIOCETHTOOL): the driver does not report it"),
        "{said}"
    );
    let loops = r["loops"].as_array().expect("one share per loop");
    assert_eq!(loops.len(), 2, "{r}");
    let mut answered = Vec::new();
    for l in loops {
        assert_eq!(l["conns"].as_u64(), Some(20), "{l}");
        assert_eq!(l["failures"].as_u64(), Some(0), "{l}");
        assert_eq!(l["answered"], l["sent"], "{l}");
        answered.push(l["answered"].as_u64().unwrap());
    }
    assert!(answered.iter().all(|&n| n > 0), "both loops ran: {answered:?}");
    assert_eq!(r["answered"].as_u64(), Some(answered.iter().sum()), "{r}");
    assert_eq!(r["unanswered"].as_u64(), Some(0), "{r}");
    // Each client loop sends from its own queue, and veth delivers a frame
    // sent on queue i to the peer's queue i: the gateway's loop i accepted
    // loop i's 20 connections, and answered them on its queue i, which is
    // the client's queue i.
    assert_eq!(per_loop(&log, "opened"), vec![20, 20], "{log:?}");
    let after = [q(0), q(1)];
    for i in 0..2 {
        assert!(
            after[i] - before[i] >= answered[i],
            "client queue {i} redirected {} frames for {answered:?} replies",
            after[i] - before[i]
        );
    }
}
