//! End-to-end tests of the xdp backend (XDP program + AF_XDP + smoltcp) on the
//! veth lab in bypass mode: the gateway interface has no kernel IPv4 address,
//! and the stack owns 198.18.0.1.

// Raw frames for the malformed-frame test need an AF_PACKET socket.
#![allow(unsafe_code)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::*;

/// A bypass lab with `tailgate serve --backend xdp --app APP` running, or
/// `None` (test skipped) when the lab cannot be built here.
fn xdp_lab(test: &str, app: &str, extra: &[&str]) -> Option<(Lab, Proc)> {
    if !lab_available(test) {
        return None;
    }
    let lab = Lab::up(true);
    let srv = lab.serve_xdp(app, extra);
    Some((lab, srv))
}

fn echo_once(payload: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect((GW_IP, 7777)).expect("connect to the xdp stack");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(payload).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("read echo");
    got
}

#[test]
fn xdp_handshake_echo_close() {
    let Some((lab, srv)) = xdp_lab("xdp_handshake_echo_close", "echo", &[]) else { return };
    assert!(lab.xdp_attached(), "no XDP program on {}", lab.if_gw);
    let got = lab.in_client_ns(|| echo_once(b"hello over AF_XDP"));
    assert_eq!(got, b"hello over AF_XDP");
    let log = srv.stop();
    assert_eq!(counter(&log, "opened"), Some(1), "{log:?}");
    assert_eq!(counter(&log, "closed"), Some(1));
    assert_eq!(counter(&log, "aborted"), Some(0));
    assert!(counter(&log, "xdp_redirected").unwrap() > 0);
    assert!(log.iter().any(|l| l.contains("AF_XDP") && l.contains("mode")), "mode not logged: {log:?}");
    assert!(!lab.xdp_attached(), "program left attached after a clean exit");
}

#[test]
fn xdp_echo_64_mib_with_hash() {
    let Some((lab, srv)) = xdp_lab("xdp_echo_64_mib_with_hash", "echo", &[]) else { return };
    let (sent, got, len) = lab.in_client_ns(|| echo_hashed(1024));
    let log = srv.stop();
    assert_eq!(len, 64 << 20);
    assert_eq!(sent, got, "echoed stream differs");
    assert_eq!(counter(&log, "aborted"), Some(0), "{log:?}");
}

#[test]
fn xdp_1000_concurrent_connections() {
    let Some((lab, srv)) = xdp_lab(
        "xdp_1000_concurrent_connections",
        "echo",
        &["--max-conns", "2000", "--rx-buf", "4096", "--tx-buf", "4096"],
    ) else {
        return;
    };
    let ok = lab.in_client_ns(|| {
        let mut socks = Vec::new();
        for i in 0..1000u32 {
            let mut s = TcpStream::connect((GW_IP, 7777)).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s.write_all(&i.to_le_bytes()).unwrap();
            socks.push(s);
        }
        // All 1000 are open at once; each gets its own bytes back.
        let mut ok = 0;
        for (i, s) in socks.iter_mut().enumerate() {
            let mut b = [0u8; 4];
            s.read_exact(&mut b).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            assert_eq!(u32::from_le_bytes(b), i as u32);
            ok += 1;
        }
        for s in &socks {
            s.shutdown(Shutdown::Write).unwrap();
        }
        for s in socks.iter_mut() {
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        }
        ok
    });
    let log = srv.stop();
    assert_eq!(ok, 1000);
    assert_eq!(counter(&log, "opened"), Some(1000), "{log:?}");
    assert_eq!(counter(&log, "conn_refused"), Some(0));
}

/// `tailgate storm` in the client namespace: its one output line.
fn storm(lab: &Lab, args: &[&str]) -> String {
    let mut c = lab.cmd_in(&lab.ns_cli, BIN);
    c.args(["storm", "--ip", GW_IP, "--port", "7777"]).args(args);
    let out = run_bounded(c, Duration::from_secs(90));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "storm {args:?}: {text} {}", String::from_utf8_lossy(&out.stderr));
    text
}

fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// Frames the veth pair dropped itself (its ring to the XDP side full):
/// RX and TX "dropped" of both ends.
fn veth_dropped(lab: &Lab) -> u64 {
    let mut n = 0;
    for (ns, dev) in [(&lab.ns_cli, &lab.if_cli), (&lab.ns_gw, &lab.if_gw)] {
        let out = std::process::Command::new("ip").args(["-n", ns, "-s", "link", "show", "dev", dev]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.trim_start().starts_with("RX:") || l.trim_start().starts_with("TX:") {
                let v: Vec<u64> =
                    lines.get(i + 1).map_or(vec![], |x| x.split_whitespace().filter_map(|w| w.parse().ok()).collect());
                n += v.get(3).copied().unwrap_or(0);
            }
        }
    }
    n
}

/// Every passive open goes through SYN cookies: a storm of 500 kernel
/// clients connecting at once is served in full, and during a flood of
/// 5000 spoofed SYNs (crafted, from a raw socket) a legitimate client
/// connects and is echoed. Each client's SYN is answered the first time
/// unless the socket's receive ring dropped it, which is counted.
#[test]
fn xdp_connection_storm_and_syn_flood() {
    let Some((lab, srv)) = xdp_lab(
        "xdp_connection_storm_and_syn_flood",
        "echo",
        &["--max-conns", "2000", "--rx-buf", "4096", "--tx-buf", "4096"],
    ) else {
        return;
    };
    let s = storm(&lab, &["--conns", "500"]);
    assert_eq!((field(&s, "established"), field(&s, "echoed")), (500.0, 500.0), "{s}");
    let f = storm(&lab, &["--flood", "5000"]);
    assert!(field(&f, "syns") >= 2500.0, "{f}");
    let veth = veth_dropped(&lab);
    let log = srv.stop();
    assert_eq!(counter(&log, "syn_cookies_accepted"), Some(501), "{log:?}");
    assert_eq!(counter(&log, "opened"), Some(501));
    assert_eq!(counter(&log, "conn_refused"), Some(0));
    assert_eq!(counter(&log, "syn_replay_failed"), Some(0));
    // The flood reached the stack and was answered. Every SYN that reaches
    // the stack is answered (tests/conn.rs, in memory); on a busy host some
    // may be lost before the XDP program (the veth's ring, the client's
    // neighbour queue), which this test does not cause and cannot count.
    let syns = counter(&log, "syn_received").unwrap();
    let flood = field(&f, "syns") as u64;
    let again = (field(&s, "syn_retrans") + field(&f, "syn_retrans")) as u64;
    assert!(syns > 501 && syns <= 501 + flood + again, "{syns} SYNs for {flood} sent: {log:?}");
    // A client's SYN goes unanswered only if the host lost frames.
    let lost = counter(&log, "xsk_rx_dropped").unwrap() + veth + (501 + flood).saturating_sub(syns);
    assert!(field(&s, "syn_retrans") == 0.0 || lost > 0, "a SYN went unanswered with nothing lost: {s} {log:?}");
    assert!(field(&f, "syn_retrans") == 0.0 || lost > 0, "{f} {log:?}");
}

/// A file removed when dropped (also when the test fails).
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `--pcap`: the bypassed frames, both ways, read back with tcpdump.
#[test]
fn xdp_pcap_capture_reads_back_with_tcpdump() {
    let test = "xdp_pcap_capture_reads_back_with_tcpdump";
    if !tool_available(test, "tcpdump") {
        return;
    }
    let file = TempFile(std::env::temp_dir().join(format!("tg-test-{}.pcap", std::process::id())));
    let path = file.0.to_str().unwrap().to_string();
    let Some((lab, srv)) = xdp_lab(test, "echo", &["--pcap", &path]) else { return };
    for _ in 0..3 {
        assert_eq!(lab.in_client_ns(|| echo_once(b"captured payload")), b"captured payload");
    }
    let log = srv.stop();
    let frames = counter(&log, "pcap_frames").unwrap();
    assert_eq!(counter(&log, "pcap_dropped"), Some(0), "{log:?}");
    assert!(log.iter().any(|l| l.contains(&format!("{frames} frames")) && l.contains(&path)), "{log:?}");
    let out = std::process::Command::new("tcpdump").args(["-r", &path, "-nn", "-tt"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, frames, "every captured frame readable");
    let to = lines.iter().filter(|l| l.contains(&format!(" > {GW_IP}.7777: "))).count();
    let from = lines.iter().filter(|l| l.contains(&format!(" {GW_IP}.7777 > "))).count();
    // 3 connections: at least SYN, data and FIN each way.
    assert!(to >= 9 && from >= 9, "{to} to the port, {from} from it: {text}");
    // Each payload each way (more if one was retransmitted).
    let data = |dir: &str| lines.iter().filter(|l| l.contains(dir) && l.ends_with("length 16")).count();
    assert!(data(&format!(" > {GW_IP}.7777: ")) >= 3 && data(&format!(" {GW_IP}.7777 > ")) >= 3, "{text}");
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let first: f64 = lines[0].split_whitespace().next().unwrap().parse().unwrap();
    assert!((wall - first).abs() < 120.0, "timestamps are not wall-clock time: {first}");
}

#[test]
fn xdp_orders_every_order_acked_once() {
    let Some((lab, srv)) = xdp_lab("xdp_orders_every_order_acked_once", "orders", &[]) else { return };
    let (out, r) = lab.load_report(&["--app", "orders", "--conns", "50", "--rate", "5000", "--duration", "2"]);
    let log = srv.stop();
    assert!(
        out.status.success(),
        "load failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = r["sent"].as_u64().unwrap();
    assert!(sent >= 9000, "{r}");
    assert_eq!(r["answered"].as_u64(), Some(sent));
    for k in ["unanswered", "rejected", "out_of_sequence", "unexpected", "corrupted", "disconnected"] {
        assert_eq!(r[k].as_u64(), Some(0), "{k}: {r}");
    }
    let acked = counter(&log, "orders_acked").unwrap() + counter(&log, "cancels_acked").unwrap();
    assert_eq!(acked, sent, "{log:?}");
}

#[test]
fn xdp_load_generator_on_the_bypass_stack_too() {
    let Some((lab, srv)) = xdp_lab("xdp_load_generator_on_the_bypass_stack_too", "orders", &[]) else { return };
    let out = lab.load(&[
        "--backend",
        "xdp",
        "--iface",
        &lab.if_cli,
        "--local-ip",
        "198.18.0.3",
        "--app",
        "orders",
        "--conns",
        "4",
        "--pingpong",
        "--duration",
        "1",
    ]);
    let log = srv.stop();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("load backend xdp"), "{text}");
    assert!(text.contains("unanswered 0"), "{text}");
    assert_eq!(counter(&log, "closed"), Some(4), "{log:?}");
}

#[test]
fn xdp_other_traffic_still_reaches_the_kernel() {
    if !lab_available("xdp_other_traffic_still_reaches_the_kernel") || !tool_available("ping", "ping") {
        return;
    }
    let lab = Lab::up(true);
    // A second address on the same interface that the kernel owns.
    lab.ip(&["-n", &lab.ns_gw, "addr", "add", "198.18.0.5/24", "dev", &lab.if_gw]);
    let srv = lab.serve_xdp("echo", &[]);
    let listener = lab.in_ns(&lab.ns_gw.clone(), || std::net::TcpListener::bind("198.18.0.5:8888").unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut b = [0u8; 6];
        s.read_exact(&mut b).unwrap();
        s.write_all(&b).unwrap();
    });
    let kernel_reply = lab.in_client_ns(|| {
        let mut s = TcpStream::connect(("198.18.0.5", 8888)).expect("kernel listener");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"kernel").unwrap();
        let mut b = [0u8; 6];
        s.read_exact(&mut b).unwrap();
        b
    });
    server.join().unwrap();
    assert_eq!(&kernel_reply, b"kernel");
    // ping to the kernel's address, and to the stack's (smoltcp answers echo requests).
    for target in ["198.18.0.5", GW_IP] {
        let mut c = lab.cmd_in(&lab.ns_cli, "ping");
        c.args(["-c", "2", "-W", "2", target]);
        let out = run_bounded(c, Duration::from_secs(15));
        assert!(out.status.success(), "ping {target}: {}", String::from_utf8_lossy(&out.stdout));
    }
    // And the stack still serves.
    assert_eq!(lab.in_client_ns(|| echo_once(b"still here")), b"still here");
    let log = srv.stop();
    assert!(counter(&log, "xdp_passed").unwrap() > 0, "nothing passed to the kernel: {log:?}");
}

#[test]
fn xdp_sigkill_leaves_the_interface_to_the_kernel() {
    let Some((lab, srv)) = xdp_lab("xdp_sigkill_leaves_the_interface_to_the_kernel", "echo", &[]) else { return };
    assert!(lab.xdp_attached());
    assert_eq!(lab.in_client_ns(|| echo_once(b"x")), b"x");
    let pid = srv.pid();
    let st = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    assert!(st.success());
    drop(srv);
    // The bpf_link dies with the process: no program, and the kernel serves.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while lab.xdp_attached() {
        assert!(std::time::Instant::now() < deadline, "XDP program still attached after SIGKILL");
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.ip(&["-n", &lab.ns_gw, "addr", "add", "198.18.0.1/24", "dev", &lab.if_gw]);
    let listener = lab.in_ns(&lab.ns_gw.clone(), || std::net::TcpListener::bind("198.18.0.1:7777").unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"kernel").unwrap();
    });
    let got = lab.in_client_ns(|| {
        let mut s = TcpStream::connect((GW_IP, 7777)).expect("the kernel serves the interface again");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = Vec::new();
        s.read_to_end(&mut b).unwrap();
        b
    });
    server.join().unwrap();
    assert_eq!(got, b"kernel");
}

/// The XDP program takes only what the stack must see: a SYN to a port
/// nobody listens on is dropped there and counted, unanswered (a scan gets
/// silence, and the stack's core never sees it).
#[test]
fn xdp_a_closed_port_is_silent_and_counted() {
    let Some((lab, srv)) = xdp_lab("xdp_a_closed_port_is_silent_and_counted", "echo", &[]) else { return };
    let err = lab.in_client_ns(|| {
        TcpStream::connect_timeout(&"198.18.0.1:9".parse().unwrap(), Duration::from_millis(1500))
            .map(|_| ())
            .unwrap_err()
    });
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert_eq!(lab.in_client_ns(|| echo_once(b"open port")), b"open port");
    let log = srv.stop();
    assert!(counter(&log, "xdp_dropped_port").unwrap() >= 1, "{log:?}");
}

/// A ping flood and a UDP flood at the stack's address, as anyone on the
/// segment could send: the XDP program drops them (echo requests past a
/// per-CPU rate, UDP to nobody's port) and counts them, and an established
/// session's round trips stay within its calm p99.9 plus a few ms (before,
/// the stack answered every packet, and the session's worst round trip
/// went to 226 ms). Only the stack's own frames reach it.
#[test]
fn xdp_ping_and_udp_floods_are_dropped_and_a_session_keeps_its_pace() {
    let Some((lab, srv)) = xdp_lab("xdp_ping_and_udp_floods_are_dropped_and_a_session_keeps_its_pace", "echo", &[])
    else {
        return;
    };
    // Up to 300 k packets of each, 10 s at most (the flood's sender runs at
    // the lowest priority: on a busy machine it sends fewer).
    let icmp = storm(&lab, &["--flood", "300000", "--flood-kind", "icmp", "--timeout", "10"]);
    let udp = storm(&lab, &["--flood", "300000", "--flood-kind", "udp", "--timeout", "10"]);
    let log = srv.stop();
    for f in [&icmp, &udp] {
        assert!(field(f, "sent") >= 50_000.0 && field(f, "flood_n") >= 100.0, "{f}");
        // A few ms at most, on a busy host too (measured there: p99 +16 us,
        // p99.9 +1-4 ms with a CPU hog beside the test).
        for (pct, slack) in [("p99", 2000.0), ("p999", 8000.0)] {
            let (calm, flooded) = (field(f, &format!("calm_{pct}_us")), field(f, &format!("flood_{pct}_us")));
            assert!(flooded <= calm + slack, "{pct} {flooded} us under the flood, {calm} us calm: {f}");
        }
    }
    let dropped = |key: &str| counter(&log, key).unwrap_or_else(|| panic!("no {key}: {log:?}")) as f64;
    assert!(dropped("xdp_dropped_icmp_rate") >= 0.9 * field(&icmp, "sent"), "{icmp} {log:?}");
    assert!(dropped("xdp_dropped_port") >= 0.9 * field(&udp, "sent"), "{udp} {log:?}");
    // The stack saw the sessions' frames (a request and at most an ACK and
    // a handshake's worth per echo), not the floods.
    let echoes: f64 = [&icmp, &udp].iter().map(|f| field(f, "calm_n") + field(f, "flood_n")).sum();
    assert!(
        dropped("rx_frames") <= 2.0 * echoes + 10_000.0,
        "{} frames for {echoes} echoes: {log:?}",
        dropped("rx_frames")
    );
    assert_eq!(counter(&log, "aborted"), Some(0));
}

/// Send raw Ethernet frames out of `ifname` (in the calling thread's namespace).
fn send_raw(ifname: &str, frames: &[Vec<u8>]) {
    let c = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: valid NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert!(ifindex > 0, "no interface {ifname}");
    // SAFETY: plain socket(2); closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
    // SAFETY: all-zero is a valid sockaddr_ll; the fields we need are set below.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_ifindex = ifindex as i32;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    for f in frames {
        // SAFETY: `f` is a valid buffer of f.len() bytes; `sa` a valid sockaddr_ll.
        let n = unsafe {
            libc::sendto(
                fd,
                f.as_ptr().cast(),
                f.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(n, f.len() as isize, "sendto: {}", std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
}

#[test]
fn xdp_malformed_frames_are_counted_and_the_stack_keeps_serving() {
    let Some((lab, srv)) = xdp_lab("xdp_malformed_frames_are_counted_and_the_stack_keeps_serving", "echo", &[]) else {
        return;
    };
    let if_cli = lab.if_cli.clone();
    let head = |ethertype: [u8; 2]| -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
        f.extend_from_slice(&ethertype);
        f
    };
    let mut frames = Vec::new();
    let mut x: u32 = 7;
    for i in 0..1000u32 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let f = match i % 4 {
            // IPv4 header cut short: malformed in the XDP program.
            0 => {
                let mut f = head([0x08, 0x00]);
                f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0]);
                f
            }
            // Our address, IHL 2: malformed in the XDP program.
            1 => {
                let mut f = head([0x08, 0x00]);
                f.extend_from_slice(&[0x42, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 198, 18, 0, 2, 198, 18, 0, 1]);
                f
            }
            // ARP cut short: malformed in the XDP program.
            2 => {
                let mut f = head([0x08, 0x06]);
                f.extend_from_slice(&[0, 1, 8, 0]);
                f
            }
            // A well-formed IPv4 header to us, TCP to the listening port,
            // with garbage behind it: the stack drops it.
            _ => {
                let mut f = head([0x08, 0x00]);
                f.extend_from_slice(&[0x45, 0, 0, 60, 0, 0, 0, 0, 64, 6, 0, 0, 198, 18, 0, 2, 198, 18, 0, 1]);
                f.extend_from_slice(&[0x9c, 0x40, 0x1e, 0x61]);
                f.extend((4..40).map(|k| (x >> (k % 24)) as u8));
                f
            }
        };
        frames.push(f);
    }
    let before = lab.in_client_ns(|| echo_once(b"before"));
    assert_eq!(before, b"before");
    lab.in_client_ns(move || send_raw(&if_cli, &frames));
    let after = lab.in_client_ns(|| echo_once(b"after the burst"));
    assert_eq!(after, b"after the burst");
    let log = srv.stop();
    assert!(counter(&log, "xdp_malformed").unwrap() >= 750, "{log:?}");
    // The well-framed garbage reaches the stack and fails its checksum check.
    assert!(counter(&log, "rx_invalid").unwrap() >= 250, "{log:?}");
    assert_eq!(counter(&log, "aborted"), Some(0));
}

#[test]
fn xdp_recovers_from_its_own_lost_segments() {
    // The stack drops every 50th data segment it sends; each must go out
    // again (the stack's own recovery first: smoltcp's RTO is 1 s), and
    // every order is still answered once, in order. The exit line and
    // /metrics show the retransmissions by kind and the socket's own drop
    // counters.
    let Some((lab, srv)) = xdp_lab(
        "xdp_recovers_from_its_own_lost_segments",
        "orders",
        &["--inject", "tx-loss:50", "--metrics", "127.0.0.1:0"],
    ) else {
        return;
    };
    let out = lab.load(&["--conns", "4", "--rate", "500", "--duration", "2", "--drain-ms", "10000"]);
    let addr = {
        let l = srv.log.iter().find(|l| l.contains("metrics on http://")).expect("metrics line");
        l.split("http://").nth(1).and_then(|r| r.split('/').next()).expect("address").to_string()
    };
    // Published every 100 ms: wait for the retransmissions to show.
    let mut text = String::new();
    for _ in 0..50 {
        let a = addr.clone();
        let body = lab.in_ns(&lab.ns_gw.clone(), move || tailgate::sampler::endpoint::http_get(&a, "/metrics"));
        text = String::from_utf8(body.expect("GET /metrics")).unwrap();
        if metric(&text, "tailgate_backend_total{counter=\"retx_sack\"}").unwrap_or(0.0)
            + metric(&text, "tailgate_backend_total{counter=\"retx_timer\"}").unwrap_or(0.0)
            > 0.0
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = srv.stop();
    assert!(out.status.success(), "load: {}", String::from_utf8_lossy(&out.stderr));
    let dropped = counter(&log, "tx_injected_drops").unwrap_or(0);
    assert!(dropped >= 5, "expected injected TX drops: {log:?}");
    let c = |name| counter(&log, name).unwrap_or_else(|| panic!("{name} missing from the exit line: {log:?}"));
    let ours = c("retx_timer") + c("retx_sack");
    assert!(ours > 0, "the stack's own recovery never fired: {log:?}");
    assert!(ours + c("retx_rto") + c("retx_fast") >= dropped, "a dropped segment was never sent again: {log:?}");
    for name in
        ["xsk_rx_dropped", "xsk_rx_ring_full", "xsk_rx_fill_ring_empty", "xsk_rx_invalid_descs", "xsk_tx_invalid_descs"]
    {
        assert!(counter(&log, name).is_some(), "{name} missing from the exit line: {log:?}");
        let key = format!("tailgate_drops_total{{reason=\"{name}\"}}");
        assert!(metric(&text, &key).is_some(), "{key} missing from /metrics");
    }
    for kind in ["retx_timer", "retx_sack", "retx_rto", "retx_fast", "retx_spurious"] {
        let key = format!("tailgate_backend_total{{counter=\"{kind}\"}}");
        assert!(metric(&text, &key).is_some(), "{key} missing from /metrics");
    }
}

/// The value of the sample `key` (name and labels, as printed) in
/// Prometheus text.
fn metric(text: &str, key: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

/// One session from a pinned source port: Logon, then Logout; the gateway
/// answers and closes first (it holds TIME-WAIT), and the client reads to
/// the end. The gateway's message types, in order.
fn logon_logout_from(port: u16) -> Vec<u8> {
    use tailgate::proto::{ClientMsg, Code8, Frame, Parsed};
    // The client's last socket on this 4-tuple may still wait for the
    // gateway's ACK of its FIN (LAST-ACK): until then the kernel refuses the
    // 4-tuple (EADDRNOTAVAIL), and a client tries again.
    let mut tries = 0;
    let s = loop {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind(&std::net::SocketAddr::from(([198, 18, 0, 2], port)).into()).expect("bind the pinned port");
        let to = std::net::SocketAddr::from(([198, 18, 0, 1], 7777));
        match s.connect_timeout(&to.into(), Duration::from_secs(5)) {
            Ok(()) => break s,
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) && tries < 200 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("reconnect from port {port}: {e}"),
        }
    };
    let mut s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    for (seq, m) in [(1, ClientMsg::logon(Code8::new("ACCT0001").unwrap())), (2, ClientMsg::Logout)] {
        let n = m.encode(seq, &mut buf).unwrap();
        s.write_all(&buf[..n]).unwrap();
    }
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("the gateway's replies, then its FIN");
    let mut types = Vec::new();
    let mut rest = &got[..];
    while let Ok(Parsed::Frame(f)) = Frame::parse(rest) {
        types.push(f.msg_type());
        rest = &rest[f.len()..];
    }
    types
}

/// The gateway closes first (a Logout) and the client reconnects from the
/// same source port within TIME-WAIT, as FIX clients that pin their port
/// do, again and again: every session gets in (the TIME-WAIT count once
/// wrapped and refused every connection for up to 60 s).
#[test]
fn xdp_reconnecting_from_the_same_port_during_time_wait() {
    let Some((lab, srv)) = xdp_lab("xdp_reconnecting_from_the_same_port_during_time_wait", "orders", &[]) else {
        return;
    };
    for round in 0..6 {
        let types = lab.in_client_ns(|| logon_logout_from(45_555));
        assert_eq!(types, [0x81, 0x86], "round {round}: LogonAck then Logout");
    }
    let log = srv.stop();
    assert_eq!(counter(&log, "opened"), Some(6), "{log:?}");
    assert_eq!(counter(&log, "conn_refused"), Some(0), "{log:?}");
    assert_eq!(counter(&log, "time_wait_syn_refused"), Some(0), "{log:?}");
}

/// The raw AF_XDP UDP echo (the latency floor of `bench.sh sockperf`)
/// answers its port, and the XDP program drops UDP to any other port of
/// the address (counted).
#[test]
fn xdp_udp_echo_answers_its_port_only() {
    if !lab_available("xdp_udp_echo_answers_its_port_only") {
        return;
    }
    let lab = Lab::up(true);
    let mut c = lab.cmd_in(&lab.ns_gw, BIN);
    c.args(["serve", "--backend", "xdp", "--iface", &lab.if_gw, "--ip", GW_IP, "--port", "7777", "--app", "udp-echo"]);
    let srv = Proc::spawn_until(c, "tailgate: frame loop on ", Duration::from_secs(10));
    let (echoed, other) = lab.in_client_ns(|| {
        let s = std::net::UdpSocket::bind("198.18.0.2:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        s.send_to(b"floor", (GW_IP, 7778)).unwrap();
        s.send_to(b"floor", (GW_IP, 7777)).unwrap();
        let mut b = [0u8; 64];
        let n = s.recv(&mut b).map(|n| b[..n].to_vec()).unwrap_or_default();
        (n, s.recv(&mut b).is_ok())
    });
    assert_eq!(echoed, b"floor");
    assert!(!other, "a datagram to another port was answered");
    let log = srv.stop();
    assert!(counter(&log, "xdp_dropped_port").unwrap() >= 1, "{log:?}");
}

/// The stateless TCP floor (`bench.sh sockperf`'s tcp-floor) carries a
/// kernel TCP client's ping-pong: handshake, each message echoed once, FIN.
#[test]
fn xdp_tcp_floor_echoes_a_kernel_clients_ping_pong() {
    if !lab_available("xdp_tcp_floor_echoes_a_kernel_clients_ping_pong") {
        return;
    }
    let lab = Lab::up(true);
    let mut c = lab.cmd_in(&lab.ns_gw, BIN);
    c.args(["serve", "--backend", "xdp", "--iface", &lab.if_gw, "--ip", GW_IP, "--port", "7777", "--app", "tcp-floor"]);
    let srv = Proc::spawn_until(c, "tailgate: frame loop on ", Duration::from_secs(10));
    let echoes = lab.in_client_ns(|| {
        use std::io::{Read, Write};
        let mut s =
            std::net::TcpStream::connect_timeout(&format!("{GW_IP}:7777").parse().unwrap(), Duration::from_secs(3))
                .expect("handshake with the floor");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = Vec::new();
        for i in 0..3u8 {
            let msg = [b'p', b'i', b'n', b'g', b'0' + i];
            s.write_all(&msg).unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).expect("echo");
            got.push(b);
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(100));
        got
    });
    assert_eq!(echoes, vec![*b"ping0", *b"ping1", *b"ping2"]);
    let log = srv.stop();
    assert_eq!(counter(&log, "syns"), Some(1), "{log:?}");
    assert_eq!(counter(&log, "echoed"), Some(3), "{log:?}");
    assert_eq!(counter(&log, "fins"), Some(1), "{log:?}");
}
