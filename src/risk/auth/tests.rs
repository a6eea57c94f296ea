//! The verifier's verdicts, the throttle's steps, and a round trip through
//! a loop's port.

use super::*;
use crate::risk::accounts::{Account, Accounts};
use crate::risk::cidr::Cidr;
use crate::risk::config::{tests::cheap_hash, RiskConfig};

fn risk() -> Arc<Risk> {
    let a = Account {
        name: Code8::new("ALPHA").unwrap(),
        hash: cheap_hash("s3cret"),
        sources: vec![Cidr::parse("198.18.0.0/15").unwrap()],
        max_sessions: 1,
        cancel_on_disconnect: true,
    };
    Arc::new(Risk::new(RiskConfig { accounts: Accounts::new(vec![a]).unwrap(), ..RiskConfig::default() }))
}

fn req(account: &str, pw: &str, source: &str) -> Request {
    Request {
        conn: 7,
        gen: 9,
        account: Code8::new(account).unwrap(),
        source: source.parse().unwrap(),
        password: Password::new(pw).unwrap(),
    }
}

#[test]
fn each_refusal_has_its_reason() {
    let r = risk();
    let d = decoy(&r);
    assert_eq!(verify(&r, &d, &req("ALPHA", "s3cret", "198.18.0.2")), Ok(0));
    assert_eq!(verify(&r, &d, &req("ALPHA", "wrong", "198.18.0.2")), Err(Refusal::BadPassword));
    assert_eq!(verify(&r, &d, &req("NOBODY", "s3cret", "198.18.0.2")), Err(Refusal::UnknownAccount));
    assert_eq!(verify(&r, &d, &req("ALPHA", "s3cret", "203.0.113.1")), Err(Refusal::SourceNotAllowed));
    assert_eq!(verify(&r, &d, &req("ALPHA", "", "198.18.0.2")), Err(Refusal::BadPassword));
}

#[test]
fn the_throttle_backs_off_then_bans_and_a_success_clears_it() {
    let mut t = Throttle::default();
    let src: IpAddr = "198.18.0.9".parse().unwrap();
    let other: IpAddr = "198.18.0.10".parse().unwrap();
    let t0 = Instant::now();
    for i in 0..FREE_FAILURES {
        assert!(t.may_try(src, t0), "free failure {i}");
        assert!(!t.failed(src, t0));
    }
    assert!(t.may_try(src, t0));
    t.failed(src, t0);
    assert!(!t.may_try(src, t0), "backoff after the free failures");
    assert!(!t.may_try(src, t0 + Duration::from_millis(999)));
    assert!(t.may_try(src, t0 + Duration::from_secs(1)), "the first backoff is one second");
    assert!(t.may_try(other, t0), "another source is not throttled");
    let mut now = t0;
    let mut banned = false;
    for _ in FREE_FAILURES + 1..BAN_FAILURES {
        now += MAX_BACKOFF;
        banned |= t.failed(src, now);
    }
    assert!(banned, "the tenth failure bans");
    assert!(!t.may_try(src, now + MAX_BACKOFF * 2));
    assert!(t.may_try(src, now + BAN), "the ban ends");
    // A success does not clear the record: the next failure counts on.
    assert!(!t.failed(src, now + BAN + Duration::from_secs(1)));
    assert!(t.may_try(src, now + BAN + Duration::from_secs(1)));
    // IPv6 sources are their /64.
    let a: IpAddr = "2001:db8:1:2::5".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
    for _ in 0..=FREE_FAILURES {
        t.failed(a, t0);
    }
    assert!(!t.may_try(b, t0), "another address of the same /64 waits too");
    assert!(t.may_try("2001:db8:1:3::5".parse().unwrap(), t0));
}

#[test]
fn a_loop_asks_and_the_verifier_answers() {
    let (v, mut ports) = start(risk(), 1, vec![], None).unwrap();
    let p = &mut ports[0];
    assert!(p.ask(&req("ALPHA", "s3cret", "198.18.0.2")));
    assert!(p.ask(&req("ALPHA", "nope", "198.18.0.3")));
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 2 && Instant::now() < deadline {
        match p.answer() {
            Some(a) => got.push(a),
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].conn, got[0].gen, got[0].verdict), (7, 9, Ok(0)));
    assert_eq!(got[1].verdict, Err(Refusal::BadPassword));
    assert_eq!(p.waiting(), 0);
    assert_eq!(v.counters.accepted.load(Ordering::Relaxed), 1);
    assert_eq!(v.counters.bad_password.load(Ordering::Relaxed), 1);
    // A full queue is refused at once, on the loop.
    for _ in 0..QUEUE - p.waiting() {
        p.ask(&req("NOBODY", "x", "198.18.0.4"));
    }
    assert!(!p.ask(&req("ALPHA", "s3cret", "198.18.0.2")), "the queue is bounded");
}

#[test]
fn hashes_made_here_verify() {
    let h = hash_password(b"pa55").unwrap();
    assert!(h.starts_with("$argon2id$"));
    assert_eq!(crate::risk::config::check_hash(&h), Ok(None), "the default cost is not weak");
    let ph = PasswordHash::new(&h).unwrap();
    assert!(argon2::Argon2::default().verify_password(b"pa55", &ph).is_ok());
}

#[test]
fn a_source_that_must_wait_is_shut_out_at_the_gate_for_its_wait() {
    let (v, mut ports) = start(risk(), 1, vec![], None).unwrap();
    let p = &mut ports[0];
    let src: IpAddr = "198.18.0.9".parse().unwrap();
    let other: IpAddr = "198.18.0.10".parse().unwrap();
    // The free failures leave the door open; the next one shuts it.
    for n in 0..=FREE_FAILURES {
        assert!(!v.gate.refuses(src, crate::clock::mono_ns()), "open before failure {n}");
        assert!(p.ask(&req("ALPHA", "nope", "198.18.0.9")));
        let deadline = Instant::now() + Duration::from_secs(20);
        while p.answer().is_none() {
            assert!(Instant::now() < deadline, "no answer");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let now = crate::clock::mono_ns();
    assert!(v.gate.refuses(src, now), "shut after {} failures", FREE_FAILURES + 1);
    assert!(!v.gate.refuses(other, now), "another source is not");
    // For the backoff's one second, no more.
    assert!(v.gate.refuses(src, now + 900_000_000));
    assert!(!v.gate.refuses(src, now + 1_000_000_001));
}
