//! The admin routes, called directly: the token, the kill switch, limits.

use super::*;
use crate::risk::accounts::{Account, Accounts};
use crate::risk::cidr::Cidr;
use crate::risk::config::RiskConfig;
use crate::risk::limits::{LimitsSpec, Specs};

fn admin() -> Admin {
    let a = |n: &str| Account {
        name: Code8::new(n).unwrap(),
        hash: String::new(),
        sources: vec![Cidr::parse("127.0.0.0/8").unwrap()],
        max_sessions: 1,
        cancel_on_disconnect: true,
    };
    let cfg = RiskConfig {
        accounts: Accounts::new(vec![a("ALPHA"), a("BETA")]).unwrap(),
        specs: Specs { accounts: vec![LimitsSpec::default(); 2], ..Specs::default() },
        ..RiskConfig::default()
    };
    Admin::new(Arc::new(Risk::new(cfg)), b"t0ken".to_vec(), Audit::none())
}

fn call<'a>(method: &'a str, path: &'a str, query: &'a str, token: Option<&'a [u8]>) -> Call<'a> {
    Call { method, path, query, authorization: token, peer: "127.0.0.1:5000".parse().unwrap() }
}

const GOOD: Option<&[u8]> = Some(b"Bearer t0ken");

#[test]
fn no_token_or_a_wrong_one_gets_401_and_changes_nothing() {
    let a = admin();
    for t in
        [None, Some(&b"Bearer nope"[..]), Some(&b"t0ken"[..]), Some(&b"Bearer t0ken2"[..]), Some(&b"Basic t0ken"[..])]
    {
        let (s, _) = a.handle(&call("POST", "/kill", "all", t));
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{t:?}");
        assert_eq!(a.handle(&call("GET", "/accounts", "", t)).0, StatusCode::UNAUTHORIZED);
    }
    assert!(!a.risk.killed(None), "a refused kill does nothing");
    assert_eq!(a.handle(&call("GET", "/accounts", "", GOOD)).0, StatusCode::OK);
}

#[test]
fn kill_and_enable_one_account_or_all() {
    let a = admin();
    let epoch = a.risk.kill_epoch.load(Ordering::Relaxed);
    let (s, v) = a.handle(&call("POST", "/kill", "account=ALPHA&logout=1", GOOD));
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(a.risk.killed(Some(0)) && !a.risk.killed(Some(1)));
    assert!(a.risk.kill_logs_out(Some(0)), "ALPHA's kill logs its sessions out");
    assert!(!a.risk.kill_logs_out(Some(1)));
    assert_eq!(a.risk.kill_epoch.load(Ordering::Relaxed), epoch + 1, "the loops are told");
    let (_, v) = a.handle(&call("GET", "/accounts/ALPHA", "", GOOD));
    assert_eq!(v["killed"], true);
    assert_eq!(a.handle(&call("POST", "/enable", "account=ALPHA", GOOD)).0, StatusCode::OK);
    assert!(!a.risk.killed(Some(0)));
    a.handle(&call("POST", "/kill", "all", GOOD));
    assert!(a.risk.killed(Some(1)) && a.risk.killed(None));
    assert!(!a.risk.kill_logs_out(Some(1)), "a kill without logout logs no one out");
    a.handle(&call("POST", "/enable", "all", GOOD));
    assert!(!a.risk.killed(Some(1)));
    assert_eq!(a.handle(&call("POST", "/kill", "account=NOBODY", GOOD)).0, StatusCode::NOT_FOUND);
    assert_eq!(a.handle(&call("POST", "/kill", "", GOOD)).0, StatusCode::BAD_REQUEST);
    assert_eq!(a.handle(&call("POST", "/kill", "all&account=ALPHA", GOOD)).0, StatusCode::BAD_REQUEST);
    assert_eq!(a.handle(&call("DELETE", "/kill", "all", GOOD)).0, StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn limits_change_at_run_time_and_bad_ones_are_refused() {
    let a = admin();
    let before = a.risk.limits.version();
    let (s, v) = a.handle(&call("POST", "/limits", "account=BETA&max_order_qty=50&market_orders=false", GOOD));
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["limits"]["max_order_qty"], 50);
    assert_eq!(a.risk.limits.version(), before + 1);
    let snap = a.risk.limits.load();
    assert_eq!(snap.of(Some(1)).max_qty, 50);
    assert!(!snap.of(Some(1)).market_orders);
    assert_eq!(snap.of(Some(0)).max_qty, NONE, "the other account keeps its limits");
    a.handle(&call("POST", "/limits", "max_order_qty=7", GOOD));
    assert_eq!(a.risk.limits.load().of(Some(0)).max_qty, 7, "the defaults apply where the account has none");
    assert_eq!(a.risk.limits.load().of(Some(1)).max_qty, 50);
    let (s, v) = a.handle(&call("POST", "/limits", "account=BETA&max_order_qty=lots", GOOD));
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("whole number"));
    assert_eq!(a.handle(&call("POST", "/limits", "account=BETA&colour=red", GOOD)).0, StatusCode::BAD_REQUEST);
    assert_eq!(a.handle(&call("POST", "/limits", "account=BETA", GOOD)).0, StatusCode::BAD_REQUEST);
    assert_eq!(a.handle(&call("POST", "/limits", "account=%zz", GOOD)).0, StatusCode::BAD_REQUEST);
    assert_eq!(a.risk.limits.load().of(Some(1)).max_qty, 50, "refused changes change nothing");
    let (_, v) = a.handle(&call("GET", "/limits", "account=BETA", GOOD));
    assert_eq!(v["max_order_qty"], 50);
}
