//! The examples a user starts from (examples/): the tally server of its
//! own protocol, on loopback. The relay's tests are tests/relay.rs and the
//! example's own in-memory tests.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn the_tally_example_speaks_its_protocol() {
    let bin = std::path::Path::new(BIN).parent().unwrap().join("examples/tally");
    assert!(bin.is_file(), "{} is not built: run `cargo build --examples` (scripts/test.sh does)", bin.display());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut c = Command::new(&bin);
    c.arg(format!("127.0.0.1:{port}"));
    let p = Proc::spawn_until(c, "tailgate: serving ", Duration::from_secs(10));
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"ADD 5\nADD -7\nSUM\nADD x\n").unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).expect("the server closes after ERR");
    assert_eq!(got, "OK 5\nOK -2\nSUM -2\nERR\n");
    let log = p.stop();
    assert_eq!(counter(&log, "lines"), Some(3), "{log:?}");
    assert_eq!(counter(&log, "opened"), Some(1), "{log:?}");
}
