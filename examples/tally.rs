//! Your own protocol on tailgate, in one file: a tally server. Each line a
//! client sends is `ADD n` (add n to the session's tally, reply `OK total`)
//! or `SUM` (reply the total); anything else gets `ERR` and the session
//! is closed. Run it, then talk to it with `nc 127.0.0.1 7100`:
//!
//! ```text
//! cargo run --release --example tally -- 127.0.0.1:7100
//! ```
//!
//! A user writes an [`App`] and calls [`launch::serve`] with a [`LaunchConfig`];
//! the loops, the backend and the event loop come from the crate.

use std::io::Write;
use std::net::SocketAddr;

use tailgate::app::{App, OutBuf, Verdict};
use tailgate::launch::{self, LaunchConfig, Places};
use tailgate::sampler::tracer::Tracer;
use tailgate::transport::ConnId;

/// One tally server per loop; a session is its running total.
#[derive(Default)]
struct Tally {
    lines: u64,
}

impl App for Tally {
    type Session = i64;

    fn name(&self) -> &'static str {
        "tally"
    }
    fn open(&mut self, _conn: ConnId, _now: u64) -> i64 {
        0
    }
    fn on_input(
        &mut self,
        total: &mut i64,
        input: &[u8],
        out: &mut OutBuf,
        tr: &mut Tracer,
        _: u64,
        _: u64,
    ) -> (usize, Verdict) {
        let mut used = 0;
        // Each complete line, while the reply surely fits (backpressure).
        while let Some(end) = input[used..].iter().position(|&b| b == b'\n') {
            if out.spare() < 32 {
                break;
            }
            let line = &input[used..used + end];
            tr.parsed(0, self.lines, line);
            // Replies are formatted into a stack buffer: nothing allocates on the loop.
            let mut buf = [0u8; 32];
            let mut w = std::io::Cursor::new(&mut buf[..]);
            match std::str::from_utf8(line).map(str::trim) {
                Ok("SUM") => writeln!(w, "SUM {total}").ok(),
                Ok(s) => match s.strip_prefix("ADD ").and_then(|n| n.trim().parse::<i64>().ok()) {
                    Some(n) => {
                        *total = total.saturating_add(n);
                        writeln!(w, "OK {total}").ok()
                    }
                    None => {
                        out.put(b"ERR\n");
                        return (used + end + 1, Verdict::Close);
                    }
                },
                Err(_) => return (used + end + 1, Verdict::Abort),
            };
            let n = w.position() as usize;
            out.put(&buf[..n]);
            tr.handled(0);
            self.lines += 1;
            used += end + 1;
        }
        (used, Verdict::Continue)
    }
    fn on_peer_fin(&mut self, _: &mut i64, _leftover: &[u8], _: &mut OutBuf) -> Verdict {
        Verdict::Close
    }
    fn on_tick(&mut self, _: &mut i64, _: &mut OutBuf, _: u64) -> Verdict {
        Verdict::Continue
    }
    fn on_close(&mut self, _: i64, _reason: &str) {}
    fn summary(&self) -> String {
        format!("tally: lines={}", self.lines)
    }
}

fn main() {
    let addr: SocketAddr = std::env::args().nth(1).unwrap_or("127.0.0.1:7100".into()).parse().expect("ADDR");
    tailgate::log::set_level(1);
    let stop = tailgate::runtime::stop_flag().expect("signal handlers");
    let cfg = LaunchConfig::kernel(Places::one(None));
    let ended = launch::serve(cfg, addr, Default::default(), |_| Tally::default(), &stop).expect("serve");
    for l in ended.loops.into_iter().flatten() {
        eprintln!("{} opened={}", l.summary, l.server.opened);
    }
}
