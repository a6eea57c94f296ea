//! `tailgate exchange` as a process, on loopback (kernel backend): a firm
//! logs in and trades, the simulator is stopped and started again on the
//! same journal, and a login asking for number 1 gets every message again.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;
use tailgate::venue::ouch::{self, Enter, Inbound, Outbound};
use tailgate::venue::soup::{self, Packet};

fn start(port: u16, journal: &std::path::Path) -> Proc {
    let mut c = Command::new(BIN);
    c.args(["exchange", "--backend", "kernel", "--ip", "127.0.0.1", "--port", &port.to_string()]);
    c.args(["--account", "alice:pw1", "--journal", journal.to_str().unwrap()]);
    Proc::spawn_until(c, "tailgate: serving ", Duration::from_secs(10))
}

fn send(s: &mut TcpStream, p: Packet<'_>) {
    let mut b = [0u8; 256];
    let n = soup::encode(&p, &mut b).unwrap();
    s.write_all(&b[..n]).unwrap();
}

/// Read packets until `want` Sequenced messages came (or 5 s).
fn read(s: &mut TcpStream, want: usize) -> (Option<u64>, Vec<Outbound>) {
    let (mut buf, mut accepted, mut msgs) = (Vec::new(), None, Vec::new());
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while msgs.len() < want && std::time::Instant::now() < deadline {
        let mut b = [0u8; 4096];
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&b[..n]),
            Err(_) => {}
        }
        while let Ok(Some((p, n))) = soup::parse(&buf) {
            match p {
                Packet::LoginAccepted { next_seq, .. } => accepted = Some(next_seq),
                Packet::Sequenced(m) => msgs.push(ouch::parse_outbound(m).unwrap()),
                _ => {}
            }
            buf.drain(..n);
        }
    }
    (accepted, msgs)
}

/// Log in; a refusal because the previous connection's close has not
/// reached the venue yet (session not available) is tried again.
fn login(port: u16, seq: u64) -> TcpStream {
    for _ in 0..50 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut u, mut p) = ([b' '; 6], [b' '; 10]);
        soup::put_alpha(&mut u, b"alice");
        soup::put_alpha(&mut p, b"pw1");
        send(&mut s, Packet::LoginRequest { username: u, password: p, session: [b' '; 10], seq });
        let mut b = [0u8; 4];
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // Login Rejected is 4 bytes; Login Accepted starts with its length, 31.
        s.peek(&mut b).unwrap();
        if b[2] != soup::kind::LOGIN_REJECTED {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("alice could not log in");
}

#[test]
fn a_restarted_exchange_replays_from_its_journal() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = std::env::temp_dir().join(format!("tg-exchange-{}", std::process::id()));
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _remove = Remove(dir.clone());
    let ex = start(port, &dir);
    let mut s = login(port, 1);
    for (i, side) in [(1u32, b'B'), (2, b'S')] {
        let m = Inbound::Enter(Enter {
            user_ref: i,
            side,
            qty: 10,
            symbol: *b"AAPL    ",
            price: 1_000_000,
            tif: b'0',
            display: b'Y',
            capacity: b'A',
            iso: b'N',
            cross: b'N',
            cl_ord_id: *b"c             ",
        });
        let mut b = [0u8; 64];
        let n = ouch::encode_inbound(&m, &mut b).unwrap();
        send(&mut s, Packet::Unsequenced(&b[..n]));
    }
    // Accepted 1, accepted 2, and the execution on each side (alice traded with herself).
    let (acc, first) = read(&mut s, 4);
    assert_eq!(acc, Some(1));
    assert_eq!(first.len(), 4, "{first:?}");
    assert!(matches!(first[2], Outbound::Executed { qty: 10, .. }), "{first:?}");
    drop(s);
    let log = ex.stop();
    assert!(log.iter().any(|l| l.contains("orders=2") && l.contains("executions=1")), "{log:?}");
    // Started again on the same journal: it numbers on, and replays.
    let ex = start(port, &dir);
    let mut s = login(port, 1);
    let (acc, again) = read(&mut s, 4);
    assert_eq!(acc, Some(1));
    assert_eq!(again, first, "the replay is what was sent");
    drop(s);
    let mut s = login(port, 0);
    let (acc, none) = read(&mut s, 1);
    assert_eq!((acc, none.len()), (Some(5), 0), "0 asks for what comes next");
    drop(s);
    ex.stop();
}
