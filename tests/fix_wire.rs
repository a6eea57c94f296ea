//! Our FIX 4.4 encoding checked by code we did not write: QuickFIX parses
//! each message this crate's encoder writes, with its own FIX44 data
//! dictionary and validation on (BodyLength, CheckSum, required fields,
//! types and enumerated values), and our reader agrees with what it read.
//! QuickFIX comes from scripts/test.sh (`ensure_quickfix`, which sets
//! TAILGATE_QUICKFIX_PYTHON); without it the test says why and skips.

use std::process::Command;

use tailgate::fix::{frame, Encoder, Fields};

/// The standard header every message carries.
fn header<'a>(buf: &'a mut [u8], msg_type: &[u8], seq: u64) -> Encoder<'a> {
    let mut e = Encoder::new(buf, msg_type);
    e.bytes(49, b"TAILGATE").bytes(56, b"CLIENT").uint(34, seq).bytes(52, b"20261207-17:00:00.123");
    e
}

fn messages() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let mut e = header(&mut buf, b"A", 1);
    e.uint(98, 0).uint(108, 30).bytes(141, b"Y").bytes(553, b"ALPHA").bytes(554, b"secret");
    out.push(e.finish().unwrap().to_vec());
    let mut e = header(&mut buf, b"0", 2);
    e.bytes(112, b"TEST1");
    out.push(e.finish().unwrap().to_vec());
    let mut e = header(&mut buf, b"D", 3);
    e.bytes(11, b"ord-1").bytes(1, b"ALPHA").bytes(55, b"TGATE").bytes(54, b"1").bytes(60, b"20261207-17:00:00.123");
    e.decimal(38, 100, 0).bytes(40, b"2").decimal(44, 1_234_500, 4).bytes(59, b"0");
    out.push(e.finish().unwrap().to_vec());
    let mut e = header(&mut buf, b"8", 4);
    e.bytes(37, b"X1").bytes(11, b"ord-1").bytes(17, b"E1").bytes(150, b"F").bytes(39, b"1");
    e.bytes(55, b"TGATE").bytes(54, b"1").decimal(38, 100, 0).decimal(151, 60, 0).decimal(14, 40, 0);
    e.decimal(6, 1_234_500, 4).decimal(31, 1_234_500, 4).decimal(32, 40, 0);
    out.push(e.finish().unwrap().to_vec());
    let mut e = header(&mut buf, b"F", 5);
    e.bytes(41, b"ord-1").bytes(11, b"cxl-1").bytes(55, b"TGATE").bytes(54, b"1");
    e.bytes(60, b"20261207-17:00:00.123").decimal(38, 100, 0);
    out.push(e.finish().unwrap().to_vec());
    let mut e = header(&mut buf, b"9", 6);
    e.bytes(37, b"X1").bytes(11, b"cxl-1").bytes(41, b"ord-1").bytes(39, b"2").bytes(434, b"1").uint(102, 1);
    out.push(e.finish().unwrap().to_vec());
    out
}

#[test]
fn quickfix_reads_what_the_encoder_writes() {
    let Ok(python) = std::env::var("TAILGATE_QUICKFIX_PYTHON") else {
        eprintln!("skipped: QuickFIX is not installed (scripts/test.sh installs it; TAILGATE_QUICKFIX_PYTHON unset)");
        return;
    };
    let mut msgs = messages();
    for m in &msgs {
        assert_eq!(frame(m), Ok(Some(m.len())), "{}", String::from_utf8_lossy(m));
        assert!(Fields::new(m).all(|f| f.is_ok()));
    }
    // A control: an ExecutionReport without ExecType (150), which QuickFIX
    // must refuse (so validation is on, and a refusal shows).
    let mut buf = [0u8; 512];
    let mut e = header(&mut buf, b"8", 7);
    e.bytes(37, b"X1").bytes(17, b"E2").bytes(39, b"1").bytes(55, b"TGATE").bytes(54, b"1");
    e.decimal(151, 60, 0).decimal(14, 40, 0).decimal(6, 0, 0);
    msgs.push(e.finish().unwrap().to_vec());
    let dir = std::env::temp_dir().join(format!("tg-fixwire-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("messages");
    let mut all = Vec::new();
    for m in &msgs {
        all.extend_from_slice(m);
        all.push(b'\n');
    }
    std::fs::write(&file, &all).unwrap();
    let out = Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/quickfix/validate.py"))
        .arg(&file)
        .output()
        .expect("run QuickFIX's python");
    let _ = std::fs::remove_dir_all(&dir);
    let said = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 7, "{said}{}", String::from_utf8_lossy(&out.stderr));
    let types: Vec<&str> = lines[..6].iter().map(|l| l.trim_start_matches("ok ")).collect();
    assert_eq!(types, ["A", "0", "D", "8", "F", "9"], "QuickFIX refused one: {said}");
    assert!(lines[6].starts_with("error:"), "QuickFIX took an ExecutionReport without ExecType: {said}");
    assert!(!out.status.success());
}
