//! Fixtures for tests that need root and network namespaces.
//!
//! Every fixture has a unique name and cleans up in `Drop`, also when the test
//! fails. Without root the tests skip with a message, unless
//! `TAILGATE_REQUIRE_LAB=1` (set by scripts/test.sh), in which case a missing
//! capability is a failure: CI must not pass by skipping.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tailgate");
pub const GW_IP: &str = "198.18.0.1";
pub const CLI_IP: &str = "198.18.0.2";
pub const EX_IP: &str = "198.18.0.4";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn required() -> bool {
    std::env::var("TAILGATE_REQUIRE_LAB").map(|v| v == "1").unwrap_or(false)
}

/// Returns false (and says why) when the lab cannot be built here.
pub fn lab_available(test: &str) -> bool {
    let is_root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false);
    let has_ip = Command::new("ip").arg("-V").output().is_ok();
    let has_ethtool = Command::new("ethtool").arg("--version").output().is_ok();
    let why = if !is_root {
        "not root"
    } else if !has_ip {
        "iproute2 (ip) not installed"
    } else if !has_ethtool {
        "ethtool not installed"
    } else {
        return true;
    };
    if required() {
        panic!("{test}: the lab is required (TAILGATE_REQUIRE_LAB=1) but unavailable: {why}");
    }
    eprintln!("SKIP {test}: needs root, iproute2 and ethtool for network namespaces ({why})");
    false
}

/// Is an external tool present? Required tools fail the test under TAILGATE_REQUIRE_LAB=1.
pub fn tool_available(test: &str, tool: &str) -> bool {
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file())).unwrap_or(false);
    if !found {
        if required() {
            panic!("{test}: '{tool}' is required (TAILGATE_REQUIRE_LAB=1) but not installed");
        }
        eprintln!("SKIP {test}: '{tool}' not installed");
    }
    found
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A private lab: two namespaces and a veth pair, removed on drop.
pub struct Lab {
    pub ns_gw: String,
    pub ns_cli: String,
    pub if_gw: String,
    pub if_cli: String,
    /// The exchange's namespace (with `up_exchange`), and its interface.
    pub ns_ex: String,
    pub if_ex: String,
    if_exb: String,
    br: String,
}

impl Lab {
    pub fn up(bypass: bool) -> Lab {
        Lab::up_queues(bypass, 1)
    }

    /// A lab whose veth ends have `queues` rx and tx queues each.
    pub fn up_queues(bypass: bool, queues: usize) -> Lab {
        Lab::make(bypass, queues, false)
    }

    /// Three namespaces: clients, gateway, and the exchange (EX_IP) behind
    /// a bridge in the clients' namespace (`lab.sh up --exchange`).
    pub fn up_exchange(bypass: bool) -> Lab {
        Lab::make(bypass, 1, true)
    }

    fn make(bypass: bool, queues: usize, exchange: bool) -> Lab {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{}", std::process::id() % 100_000, n);
        let lab = Lab {
            ns_gw: format!("tgt{tag}g"),
            ns_cli: format!("tgt{tag}c"),
            if_gw: format!("tg{tag}g"),
            if_cli: format!("tg{tag}c"),
            ns_ex: format!("tgt{tag}x"),
            if_ex: format!("tg{tag}x"),
            if_exb: format!("tg{tag}b"),
            br: format!("tg{tag}r"),
        };
        let mut cmd = lab.script();
        cmd.arg("up");
        if bypass {
            cmd.arg("--bypass");
        }
        if exchange {
            cmd.arg("--exchange");
        }
        cmd.args(["--queues", &queues.to_string()]);
        let out = cmd.output().expect("run scripts/lab.sh");
        assert!(out.status.success(), "lab.sh up failed: {}", String::from_utf8_lossy(&out.stderr));
        lab
    }

    /// Run `lab.sh up` again on an existing lab (idempotence); true on success.
    pub fn up_named(lab: &Lab, bypass: bool) -> bool {
        let mut cmd = lab.script();
        cmd.arg("up");
        if bypass {
            cmd.arg("--bypass");
        }
        cmd.output().map(|o| o.status.success()).unwrap_or(false)
    }

    fn script(&self) -> Command {
        let mut c = Command::new(root().join("scripts/lab.sh"));
        c.env("TG_NS_GW", &self.ns_gw)
            .env("TG_NS_CLI", &self.ns_cli)
            .env("TG_IF_GW", &self.if_gw)
            .env("TG_IF_CLI", &self.if_cli)
            .env("TG_IP_GW", GW_IP)
            .env("TG_IP_CLI", CLI_IP)
            .env("TG_NS_EX", &self.ns_ex)
            .env("TG_IF_EX", &self.if_ex)
            .env("TG_IF_EXB", &self.if_exb)
            .env("TG_BR", &self.br)
            .env("TG_IP_EX", EX_IP);
        c
    }

    /// A command run inside namespace `ns`.
    pub fn cmd_in(&self, ns: &str, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, prog]);
        c
    }

    /// Run `ip` with these arguments; panic with its stderr on failure.
    pub fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Is an XDP program attached to the gateway interface?
    pub fn xdp_attached(&self) -> bool {
        let out = Command::new("ip").args(["-n", &self.ns_gw, "link", "show", "dev", &self.if_gw]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
    }

    /// Start `tailgate serve --backend xdp` on the gateway interface.
    pub fn serve_xdp(&self, app: &str, extra: &[&str]) -> Proc {
        let mut args = vec!["--backend", "xdp", "--iface", &self.if_gw, "--ip", GW_IP, "--port", "7777", "--app", app];
        args.extend_from_slice(extra);
        self.serve(&args)
    }

    /// Start `tailgate serve` in the gateway namespace and wait until it listens.
    pub fn serve(&self, args: &[&str]) -> Proc {
        let mut c = self.cmd_in(&self.ns_gw, BIN);
        c.arg("serve").args(args);
        Proc::spawn_until(c, "tailgate: serving ", Duration::from_secs(10))
    }

    /// Run `tailgate load` against the gateway (GW_IP port 7777) in the
    /// client namespace to completion.
    pub fn load(&self, args: &[&str]) -> Output {
        let mut c = self.cmd_in(&self.ns_cli, BIN);
        c.args(["load", "--ip", GW_IP, "--port", "7777"]).args(args);
        run_bounded(c, Duration::from_secs(120))
    }

    /// [`Lab::load`] with `--json` to a file of its own: the output and the
    /// report (the run's output in the panic if no report was written).
    pub fn load_report(&self, args: &[&str]) -> (Output, serde_json::Value) {
        let path = std::env::temp_dir().join(format!(
            "tg-load-{}-{}.json",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut all = args.to_vec();
        all.extend(["--json", path.to_str().expect("a UTF-8 temporary path")]);
        let out = self.load(&all);
        let text = std::fs::read_to_string(&path);
        let _ = std::fs::remove_file(&path);
        let text = text.unwrap_or_else(|e| {
            panic!(
                "no JSON report ({e}); stdout: {} stderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out, serde_json::from_str(&text).expect("valid JSON report"))
    }

    /// Run `f` on a thread that has entered the client namespace, so that
    /// sockets it creates live there.
    pub fn in_client_ns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.in_ns(&self.ns_cli.clone(), f)
    }

    /// Run `f` on a thread inside namespace `ns`.
    pub fn in_ns<T: Send + 'static>(&self, ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            rustix::thread::move_into_link_name_space(file.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
                .expect("setns into the client namespace");
            f()
        })
        .join()
        .expect("client thread panicked")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.script().arg("down").stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// tshark on the capture `path`, TCP port `port` dissected as SoupBinTCP,
/// with `args`: its standard output (a failure panics).
pub fn tshark_soup(path: &str, port: &str, args: &[&str]) -> String {
    let mut c = Command::new("tshark");
    c.args(["-n", "-r", path, "-d", &format!("tcp.port=={port},soupbintcp")]).args(args);
    let out = run_bounded(c, Duration::from_secs(60));
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a command with a time limit; kill it (by PID) if it overruns.
pub fn run_bounded(mut c: Command, limit: Duration) -> Output {
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err_t = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command overran {limit:?}: {c:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: out_t.join().unwrap().into_bytes(), stderr: err_t.join().unwrap().into_bytes() }
}

/// A background process we started; killed by PID on drop.
pub struct Proc {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl Proc {
    /// Spawn and wait for a stderr line containing `ready`.
    pub fn spawn_until(mut c: Command, ready: &str, limit: Duration) -> Proc {
        let mut child = c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut p = Proc { child: Some(child), lines: rx, log: Vec::new() };
        let deadline = Instant::now() + limit;
        loop {
            match p.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => {
                    let hit = l.contains(ready);
                    p.log.push(l);
                    if hit {
                        return p;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("process exited before '{ready}': {:?}", p.log)
                }
            }
            assert!(Instant::now() < deadline, "no '{ready}' within {limit:?}: {:?}", p.log);
        }
    }

    /// Wait (at most `limit`) for a stderr line containing `needle`.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> bool {
        if self.log.iter().any(|l| l.contains(needle)) {
            return true;
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(20)) {
                let hit = l.contains(needle);
                self.log.push(l);
                if hit {
                    return true;
                }
            }
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Wait (at most `limit`, then kill) for the process to exit by
    /// itself: its exit code and every stderr line.
    pub fn wait_exit(mut self, limit: Duration) -> (Option<i32>, Vec<String>) {
        let mut code = None;
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + limit;
            loop {
                if let Ok(Some(s)) = c.try_wait() {
                    code = s.code();
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.log.push(l);
        }
        (code, std::mem::take(&mut self.log))
    }

    /// SIGTERM, wait for exit, return every stderr line.
    pub fn stop(mut self) -> Vec<String> {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.wait();
        }
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.log.push(l);
        }
        std::mem::take(&mut self.log)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Find `key=<u64>` in a log line.
pub fn counter(lines: &[String], key: &str) -> Option<u64> {
    let pat = format!("{key}=");
    lines.iter().rev().find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix(&pat)).and_then(leading_number))
}

/// The digits at the start of `v` ("12;" -> 12).
fn leading_number(v: &str) -> Option<u64> {
    let end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    v[..end].parse().ok()
}

/// Connect to the gateway's echo port, send `chunks` x 64 KiB of
/// pseudo-random bytes while reading the echo, half-close, and return
/// (hash sent, hash received, bytes received). Run inside the client namespace.
pub fn echo_hashed(chunks: usize) -> ([u8; 32], [u8; 32], usize) {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((GW_IP, 7777)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut r = s.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 65536];
        let mut total = 0usize;
        loop {
            let n = r.read(&mut buf).expect("read echo");
            if n == 0 {
                break; // the server's FIN after it echoed everything
            }
            h.update(&buf[..n]);
            total += n;
        }
        (h.finalize().into(), total)
    });
    let mut h = Sha256::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = vec![0u8; 64 * 1024];
    for _ in 0..chunks {
        for b in chunk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        h.update(&chunk);
        s.write_all(&chunk).expect("write");
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (got, len) = reader.join().unwrap();
    (h.finalize().into(), got, len)
}

/// A directory of a test's own under the temporary directory, removed on
/// drop (kept when `TG_KEEP_TEST_DIR` is set, to look at after a failure).
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(tag: &str, what: &str) -> TestDir {
        let d = std::env::temp_dir().join(format!("tg-{tag}-{}-{what}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TestDir(d)
    }

    /// Write `text` to `name`, readable only by its owner (a password, a token).
    pub fn secret(&self, name: &str, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    pub fn path(&self, p: &str) -> String {
        self.0.join(p).to_str().unwrap().to_string()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os("TG_KEEP_TEST_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The exchange simulator's port on the three-namespace lab.
pub const EX_PORT: &str = "26400";

/// `tailgate exchange` in the lab's exchange namespace, with account
/// gw0:pw0 and `extra` flags, serving.
pub fn exchange_up(lab: &Lab, extra: &[&str]) -> Proc {
    let mut c = lab.cmd_in(&lab.ns_ex, BIN);
    c.args(["exchange", "--ip", EX_IP, "--port", EX_PORT, "--account", "gw0:pw0"]).args(extra);
    Proc::spawn_until(c, "tailgate: serving on", Duration::from_secs(10))
}

/// The order gateway on `backend` (port 7777) with its upstream session
/// gw0 (the password in `dir`'s `pw`, the state in its `state`) and
/// `extra` flags, logged in to the exchange.
pub fn gateway_up(lab: &Lab, dir: &TestDir, backend: &str, extra: &[&str]) -> Proc {
    let (pw, state) = (dir.path("pw"), dir.path("state"));
    let addr = format!("{EX_IP}:{EX_PORT}");
    let mut args: Vec<&str> = vec!["--upstream", &addr, "--upstream-user", "gw0", "--upstream-password-file", &pw];
    args.extend(["--upstream-state", &state]);
    args.extend(extra);
    let mut p = if backend == "xdp" {
        lab.serve_xdp("orders", &args)
    } else {
        let mut a = vec!["--backend", "kernel", "--ip", GW_IP, "--port", "7777", "--app", "orders"];
        a.extend(args);
        lab.serve(&a)
    };
    assert!(p.wait_for("logged in as gw0", Duration::from_secs(10)), "the gateway logged in: {:?}", p.log);
    p
}
