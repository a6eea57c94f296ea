//! The FIX session layer in-process, local mode (no exchange), no accounts:
//! each rule of docs/FIX.md that a client's message can break, and what a
//! garbled or hostile input does (to its own session only).

use super::*;
use crate::fix::{self, Encoder, Msg};
use crate::sampler::tracer::Tracer;

const PORT: u16 = 9878;

struct Fix {
    app: Orders,
    s: Session,
    out: OutBuf,
    seq: u64,
    now: u64,
    comp: &'static str,
}

/// A message's fields, tag to value, as text.
type Fields = Vec<(u32, String)>;

impl Fix {
    fn open(app: &mut Orders, conn: usize) -> Session {
        app.open_from(ConnId(conn), None, Some(PORT), 0)
    }

    fn new() -> Fix {
        let mut app = Orders::new(OrdersConfig::default()).with_fix(FixConfig { port: PORT, ..FixConfig::default() });
        let s = Fix::open(&mut app, 0);
        Fix { app, s, out: OutBuf::with_capacity(64 * 1024), seq: 1, now: 1_000_000, comp: "CLIENT" }
    }

    /// A message of type `ty` from CLIENT with `body` fields, numbered.
    fn msg(&mut self, ty: &str, body: &[(u32, &str)]) -> Vec<u8> {
        let seq = self.seq;
        self.seq += 1;
        encode_as(self.comp, ty, seq, body)
    }

    fn send(&mut self, bytes: &[u8]) -> Verdict {
        let (used, v) = self.app.on_input(&mut self.s, bytes, &mut self.out, &mut Tracer::disabled(), 7, self.now);
        if v == Verdict::Continue {
            assert_eq!(used, bytes.len(), "all input read");
        }
        v
    }

    fn sends(&mut self, ty: &str, body: &[(u32, &str)]) -> Verdict {
        let m = self.msg(ty, body);
        self.send(&m)
    }

    /// Every message the gateway wrote since the last call.
    fn replies(&mut self) -> Vec<(String, Fields)> {
        let bytes = self.out.as_slice().to_vec();
        self.out.clear();
        let mut v = Vec::new();
        let mut off = 0;
        while off < bytes.len() {
            let n = fix::frame(&bytes[off..]).unwrap().expect("whole messages only");
            let m = Msg::parse(&bytes[off..off + n]).unwrap();
            let fields: Fields = m.tags().map(|t| (t, String::from_utf8_lossy(m.get(t).unwrap()).into())).collect();
            v.push((String::from_utf8_lossy(m.msg_type()).into(), fields));
            off += n;
        }
        v
    }

    fn logon(&mut self) {
        assert_eq!(self.sends("A", &[(98, "0"), (108, "30")]), Verdict::Continue);
        let r = self.replies();
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].0, "A");
        assert_eq!(get(&r[0].1, 108), Some("30"));
    }
}

fn encode(ty: &str, seq: u64, body: &[(u32, &str)]) -> Vec<u8> {
    encode_as("CLIENT", ty, seq, body)
}

fn encode_as(comp: &str, ty: &str, seq: u64, body: &[(u32, &str)]) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let mut e = Encoder::new(&mut buf, ty.as_bytes());
    e.bytes(49, comp.as_bytes()).bytes(56, b"TAILGATE").uint(34, seq).bytes(52, b"20261207-17:00:00.123");
    for (t, v) in body {
        e.bytes(*t, v.as_bytes());
    }
    e.finish().unwrap().to_vec()
}

fn get(f: &Fields, tag: u32) -> Option<&str> {
    f.iter().find(|(t, _)| *t == tag).map(|(_, v)| v.as_str())
}

fn order(id: &str) -> Vec<(u32, &str)> {
    vec![(11, id), (55, "ABC"), (54, "1"), (60, "20261207-17:00:00.123"), (38, "10"), (40, "2"), (44, "12.5")]
}

#[test]
fn a_limit_order_is_acknowledged_and_cancelled_as_execution_reports() {
    let mut f = Fix::new();
    f.logon();
    f.sends("D", &order("ord-1"));
    let r = f.replies();
    assert_eq!(r.len(), 1, "{r:?}");
    let (ty, e) = &r[0];
    assert_eq!(ty, "8");
    for (tag, want) in
        [(11, "ord-1"), (150, "0"), (39, "0"), (55, "ABC"), (54, "1"), (38, "10"), (151, "10"), (14, "0")]
    {
        assert_eq!(get(e, tag), Some(want), "tag {tag}: {e:?}");
    }
    assert_eq!(get(e, 34), Some("2"), "numbered after our Logon");
    let cancel = [(41, "ord-1"), (11, "cxl-1"), (55, "ABC"), (54, "1"), (60, "20261207-17:00:00.123")];
    f.sends("F", &cancel);
    let r = f.replies();
    let (ty, e) = &r[0];
    assert_eq!(ty, "8");
    for (tag, want) in [(11, "cxl-1"), (41, "ord-1"), (150, "4"), (39, "4"), (151, "0")] {
        assert_eq!(get(e, tag), Some(want), "tag {tag}: {e:?}");
    }
    // Cancelling it again: an OrderCancelReject naming both ids.
    let again = [(41, "ord-1"), (11, "cxl-2"), (55, "ABC"), (54, "1"), (60, "20261207-17:00:00.123")];
    f.sends("F", &again);
    let r = f.replies();
    assert_eq!(r[0].0, "9", "{r:?}");
    assert_eq!((get(&r[0].1, 11), get(&r[0].1, 41), get(&r[0].1, 434)), (Some("cxl-2"), Some("ord-1"), Some("1")));
}

#[test]
fn a_missing_or_bad_field_gets_a_session_reject_naming_it_and_the_session_goes_on() {
    let mut f = Fix::new();
    f.logon();
    let mut no_symbol = order("o1");
    no_symbol.retain(|(t, _)| *t != 55);
    f.sends("D", &no_symbol);
    let r = f.replies();
    assert_eq!(r[0].0, "3", "{r:?}");
    assert_eq!((get(&r[0].1, 45), get(&r[0].1, 371), get(&r[0].1, 373)), (Some("2"), Some("55"), Some("1")));
    let mut bad_side = order("o2");
    bad_side[2] = (54, "7");
    f.sends("D", &bad_side);
    let r = f.replies();
    assert_eq!((r[0].0.as_str(), get(&r[0].1, 371), get(&r[0].1, 373)), ("3", Some("54"), Some("5")));
    let mut bad_price = order("o3");
    bad_price[6] = (44, "1.23456");
    f.sends("D", &bad_price);
    let r = f.replies();
    assert_eq!((r[0].0.as_str(), get(&r[0].1, 371), get(&r[0].1, 373)), ("3", Some("44"), Some("6")));
    // Still in sequence, and trading.
    f.sends("D", &order("o4"));
    assert_eq!(get(&f.replies()[0].1, 150), Some("0"));
    assert_eq!(f.app.fix.counters.session_rejects, 3);
}

#[test]
fn an_unsupported_type_gets_a_business_reject() {
    let mut f = Fix::new();
    f.logon();
    f.sends("G", &order("o1"));
    let r = f.replies();
    assert_eq!((r[0].0.as_str(), get(&r[0].1, 372), get(&r[0].1, 380)), ("j", Some("G"), Some("3")));
}

#[test]
fn a_test_request_is_answered_with_its_id() {
    let mut f = Fix::new();
    f.logon();
    f.sends("1", &[(112, "ping-7")]);
    let r = f.replies();
    assert_eq!((r[0].0.as_str(), get(&r[0].1, 112)), ("0", Some("ping-7")));
}

#[test]
fn a_gap_is_asked_for_once_and_filled_by_a_gap_fill() {
    let mut f = Fix::new();
    f.logon();
    f.seq += 3; // 2, 3 and 4 lost
    f.sends("0", &[]);
    let r = f.replies();
    assert_eq!((r[0].0.as_str(), get(&r[0].1, 7), get(&r[0].1, 16)), ("2", Some("2"), Some("0")));
    f.sends("0", &[]);
    assert!(f.replies().is_empty(), "asked once");
    // The client fills the gap: a GapFill to 6, then message 6 on.
    let fill = encode("4", 2, &[(43, "Y"), (122, "20261207-17:00:00.000"), (123, "Y"), (36, "6")]);
    f.send(&fill);
    f.seq = 6;
    f.sends("D", &order("o1"));
    assert_eq!(get(&f.replies()[0].1, 150), Some("0"), "in sequence again");
}

#[test]
fn a_sequence_number_too_low_ends_the_session() {
    let mut f = Fix::new();
    f.logon();
    f.seq = 1;
    assert_eq!(f.sends("0", &[]), Verdict::Close);
    let r = f.replies();
    assert_eq!(r[0].0, "5");
    assert!(get(&r[0].1, 58).unwrap().contains("MsgSeqNum too low, expecting 2 but received 1"), "{r:?}");
}

#[test]
fn a_resend_request_is_answered_from_the_store_with_poss_dup() {
    let mut f = Fix::new();
    f.logon();
    f.sends("D", &order("o1"));
    f.sends("D", &order("o2"));
    f.replies();
    f.sends("2", &[(7, "1"), (16, "0")]);
    let r = f.replies();
    // Our Logon (1) gap-filled, the two ExecutionReports (2, 3) resent.
    assert_eq!(
        (r[0].0.as_str(), get(&r[0].1, 34), get(&r[0].1, 123), get(&r[0].1, 36)),
        ("4", Some("1"), Some("Y"), Some("2"))
    );
    for (i, id) in ["o1", "o2"].iter().enumerate() {
        let e = &r[i + 1].1;
        assert_eq!(r[i + 1].0, "8");
        assert_eq!((get(e, 34), get(e, 43), get(e, 11)), (Some(["2", "3"][i]), Some("Y"), Some(*id)));
        assert!(get(e, 122).is_some(), "OrigSendingTime");
    }
    assert_eq!(r.len(), 3);
}

#[test]
fn a_wrong_comp_id_is_rejected_and_logged_out() {
    let mut f = Fix::new();
    f.logon();
    let mut buf = [0u8; 512];
    let mut e = Encoder::new(&mut buf, b"0");
    e.bytes(49, b"SOMEONE").bytes(56, b"TAILGATE").uint(34, 2).bytes(52, b"20261207-17:00:00.123");
    let m = e.finish().unwrap().to_vec();
    assert_eq!(f.send(&m), Verdict::Close);
    let r = f.replies();
    assert_eq!((r[0].0.as_str(), get(&r[0].1, 373)), ("3", Some("9")));
    assert_eq!(r[1].0, "5");
}

#[test]
fn garbage_ends_only_its_own_session() {
    let mut f = Fix::new();
    f.logon();
    let mut other = Fix::open(&mut f.app, 1);
    let mut out2 = OutBuf::with_capacity(64 * 1024);
    let garbage = b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01";
    let (_, v) = f.app.on_input(&mut other, garbage, &mut out2, &mut Tracer::disabled(), 0, f.now);
    assert_eq!(v, Verdict::Close);
    assert_eq!(f.app.fix.counters.framing_errors, 1);
    // The first session trades on.
    f.sends("D", &order("o1"));
    assert_eq!(get(&f.replies()[0].1, 150), Some("0"));
}

#[test]
fn the_first_message_must_be_a_logon() {
    let mut f = Fix::new();
    assert_eq!(f.sends("D", &order("o1")), Verdict::Close);
    let r = f.replies();
    assert_eq!((r[0].0.as_str(), get(&r[0].1, 58)), ("5", Some("the first message must be a Logon")));
}

#[test]
fn silence_brings_a_test_request_then_a_logout() {
    let mut f = Fix::new();
    f.sends("A", &[(98, "0"), (108, "1")]);
    f.replies();
    let ms = 1_000_000;
    let v = f.app.on_tick(&mut f.s, &mut f.out, f.now + 1_300 * ms);
    assert_eq!(v, Verdict::Continue);
    let r = f.replies();
    assert_eq!(r[0].0, "1", "a TestRequest: {r:?}");
    let v = f.app.on_tick(&mut f.s, &mut f.out, f.now + 2_400 * ms);
    assert_eq!(v, Verdict::Close);
    assert_eq!(f.replies()[0].0, "5");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Arbitrary bytes after a Logon, or in place of one: no panic, and
    /// another session on the loop still trades.
    #[test]
    fn arbitrary_input_never_panics_nor_touches_another_session(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400), logon in proptest::prelude::any::<bool>()) {
        let mut g = Fix::new();
        g.comp = "OTHER";
        g.logon();
        let mut f = Fix { s: Fix::open(&mut g.app, 1), ..Fix::new() };
        std::mem::swap(&mut g.app, &mut f.app);
        if logon {
            f.logon();
        }
        let mut input = b"8=FIX.4.4\x019=".to_vec();
        input.extend(&bytes);
        for b in [&input, &bytes] {
            let (_, v) = f.app.on_input(&mut f.s, b, &mut f.out, &mut Tracer::disabled(), 7, f.now);
            if v != Verdict::Continue {
                break;
            }
        }
        std::mem::swap(&mut g.app, &mut f.app);
        g.out.clear();
        g.sends("D", &order("x1"));
        let r = g.replies();
        proptest::prop_assert_eq!(get(&r[0].1, 150), Some("0"));
    }
}

#[test]
fn a_username_other_than_the_sender_comp_id_is_refused() {
    let mut f = Fix::new();
    assert_eq!(f.sends("A", &[(98, "0"), (108, "30"), (553, "OTHER")]), Verdict::Close);
    let r = f.replies();
    assert_eq!((r[0].0.as_str(), get(&r[0].1, 58)), ("5", Some("logon refused: not authorized")));
    assert_eq!(f.app.counters.logons_refused, 1);
}

#[test]
fn a_repeated_tag_is_rejected_and_the_session_goes_on() {
    let mut f = Fix::new();
    f.logon();
    let mut parties = order("o1");
    parties.extend([(453, "2"), (448, "A"), (448, "B")]);
    assert_eq!(f.sends("D", &parties), Verdict::Continue);
    let r = f.replies();
    assert_eq!((r[0].0.as_str(), get(&r[0].1, 371), get(&r[0].1, 373)), ("3", Some("448"), Some("13")));
    f.sends("D", &order("o2"));
    assert_eq!(get(&f.replies()[0].1, 150), Some("0"), "in sequence");
}

#[test]
fn a_restarted_gateway_resumes_each_session_from_its_state_file() {
    use crate::fix::slots::Region;
    let dir =
        std::env::temp_dir().join(format!("tg-fixstate-{}-{:?}", std::process::id(), std::thread::current().id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fix-sessions.tgfs");
    let cfg = FixConfig { port: PORT, ..FixConfig::default() };
    let open = || Region::open(&path, b"TAILGATE", cfg.max_sessions, cfg.store_bytes);
    let life = |region: Region, seq: u64| {
        let (mut app, found) = Orders::new(OrdersConfig::default()).with_fix_region(cfg, region);
        let s = Fix::open(&mut app, 0);
        (Fix { app, s, out: OutBuf::with_capacity(64 * 1024), seq, now: 1_000_000, comp: "CLIENT" }, found)
    };

    // First life: a logon (1 each way) and an order (its ExecutionReport is 2).
    let (mut f, found) = life(open().unwrap(), 1);
    assert_eq!(found, Restored::default());
    f.logon();
    f.sends("D", &order("o1"));
    let r = f.replies();
    assert_eq!((get(&r[0].1, 34), get(&r[0].1, 11)), (Some("2"), Some("o1")));
    let exec1: u64 = get(&r[0].1, 17).unwrap().parse().unwrap();
    // A second gateway is kept out of the file while this one has it.
    let e = open().err().expect("the file is locked");
    assert!(e.contains("another process"), "{e}");
    drop(f);

    // Second life: the client logs on where it left off (MsgSeqNum 3, no
    // reset) and is answered at 3; its ResendRequest brings the report
    // from before the restart; a new ExecID is above every old one.
    let (mut f, found) = life(open().unwrap(), 3);
    assert_eq!(found, Restored { sessions: 1, emptied: 0, stale: 0 });
    assert_eq!(f.sends("A", &[(98, "0"), (108, "30")]), Verdict::Continue);
    let r = f.replies();
    assert_eq!((r[0].0.as_str(), get(&r[0].1, 34)), ("A", Some("3")), "{r:?}");
    f.sends("2", &[(7, "2"), (16, "2")]);
    let r = f.replies();
    assert_eq!(r.len(), 1, "{r:?}");
    let e = &r[0].1;
    assert_eq!((r[0].0.as_str(), get(e, 34), get(e, 43), get(e, 11)), ("8", Some("2"), Some("Y"), Some("o1")));
    assert_eq!(get(e, 17), Some(exec1.to_string().as_str()), "the same ExecID");
    f.sends("D", &order("o2"));
    let r = f.replies();
    assert_eq!(get(&r[0].1, 34), Some("4"));
    assert!(get(&r[0].1, 17).unwrap().parse::<u64>().unwrap() > exec1);
    drop(f);

    // A file made for another CompID or store size is refused, not reread.
    let e = Region::open(&path, b"OTHER", cfg.max_sessions, cfg.store_bytes).err().unwrap();
    assert!(e.contains("CompID"), "{e}");
    let e = Region::open(&path, b"TAILGATE", cfg.max_sessions, cfg.store_bytes * 2).err().unwrap();
    assert!(e.contains("--fix-store-bytes"), "{e}");

    // Left open by another boot (a host crash): every session starts again
    // at 1, and a logon that does not is refused.
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_at(b"another-boot", 132).unwrap();
    }
    let region = open().unwrap();
    assert!(region.stale);
    let (mut f, found) = life(region, 5);
    assert_eq!(found, Restored { sessions: 1, emptied: 0, stale: 1 });
    assert_eq!(f.sends("A", &[(98, "0"), (108, "30")]), Verdict::Close);
    let r = f.replies();
    assert!(get(&r[0].1, 58).unwrap().contains("MsgSeqNum 1 or ResetSeqNumFlag=Y"), "{r:?}");
    drop(f);

    // Readable by others: refused.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let e = open().err().unwrap();
    assert!(e.contains("mode 0600"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_new_session_must_start_at_one() {
    let mut f = Fix::new();
    f.seq = 7;
    assert_eq!(f.sends("A", &[(98, "0"), (108, "30")]), Verdict::Close);
    let r = f.replies();
    assert_eq!(r[0].0, "5");
    assert!(get(&r[0].1, 58).unwrap().contains("no session state for CLIENT"), "{r:?}");
}

#[test]
fn the_longest_unused_session_gives_its_slot_to_a_new_one() {
    let cfg = FixConfig { port: PORT, max_sessions: 1, ..FixConfig::default() };
    let mut app = Orders::new(OrdersConfig::default()).with_fix(cfg);
    let mut next = 0;
    let mut session = |app: &mut Orders, comp: &'static str| {
        let s = Fix::open(app, next);
        next += 1;
        let mut f = Fix {
            app: std::mem::replace(app, Orders::new(OrdersConfig::default())),
            s,
            out: OutBuf::with_capacity(64 * 1024),
            seq: 1,
            now: 1_000_000,
            comp,
        };
        f.logon();
        assert_eq!(f.sends("5", &[]), Verdict::Close);
        f.replies();
        let Fix { app: a, s, .. } = f;
        *app = a;
        app.on_close(s, "logged out");
    };
    session(&mut app, "ALPHA");
    session(&mut app, "BETA");
    assert_eq!(app.fix.counters.slots_reclaimed, 1);
    // ALPHA's slot is BETA's now: ALPHA starts again at 1.
    session(&mut app, "ALPHA");
    assert_eq!(app.fix.counters.slots_reclaimed, 2);
}
