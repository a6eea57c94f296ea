//! The admin interface: the kill switch, re-enable, an account's exposure,
//! and its limits, over HTTP on its own thread (never a loop's core).
//!
//! ```text
//! GET  /accounts                       every account: sessions, exposure, kill state, checks
//! GET  /accounts/NAME                  one account, with its effective limits
//! POST /kill?account=NAME[&logout=1]   block NAME's new orders, cancel its working orders
//! POST /kill?all[&logout=1]            the same for the whole gateway
//! POST /enable?account=NAME | ?all     lift a kill
//! GET  /limits[?account=NAME]          the defaults, or NAME's effective limits
//! POST /limits?[account=NAME&]KEY=VALUE[&KEY=VALUE...]   change limits (VALUE `default` clears)
//! ```
//!
//! Every request must carry `Authorization: Bearer TOKEN` (the token of
//! `--admin-token-file`): without it, or with a wrong one, the answer is
//! 401. Every request, allowed or not, is appended to the audit log
//! ([`audit`]) before it is answered. A change of limits is published as a
//! new snapshot that each loop takes at its next order; a kill moves an
//! epoch that each loop looks at once per iteration.

pub mod audit;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{json, Value};

use self::audit::Audit;
use crate::proto::Code8;
use crate::risk::limits::{Limits, NONE};
use crate::risk::Risk;

/// What the admin thread holds.
pub struct Admin {
    risk: Arc<Risk>,
    token: Vec<u8>,
    audit: Audit,
}

/// One request, as the router sees it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    /// The `Authorization` header's value.
    pub authorization: Option<&'a [u8]>,
    pub peer: SocketAddr,
}

/// Equal, in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `%XX` and `+` decoded; `None` if malformed or not UTF-8.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn params(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k).ok_or("a malformed query")?, decode(v).ok_or("a malformed query")?))
        })
        .collect()
}

fn limits_json(l: &Limits) -> Value {
    let lim = |v: u64| if v == NONE { Value::Null } else { json!(v) };
    let rate = |r: crate::risk::limits::Rate| match 1_000_000_000u64.checked_div(r.interval_ns) {
        None => Value::Null,
        Some(per_sec) => json!({"orders_per_sec": per_sec, "burst": r.burst}),
    };
    json!({
        "max_order_qty": lim(l.max_qty),
        "max_order_notional": lim(l.max_notional),
        "price_collar_bps": l.collar_bps,
        "require_reference_price": l.require_reference,
        "max_gross_open_notional": lim(l.max_gross),
        "max_net_notional": lim(l.max_net),
        "session_rate": rate(l.session_rate),
        "account_rate": rate(l.account_rate),
        "duplicate_window_ms": l.duplicate_window_ns / 1_000_000,
        "market_orders": l.market_orders,
    })
}

type Answer = (StatusCode, Value);

fn err(status: StatusCode, msg: impl Into<String>) -> Answer {
    (status, json!({ "error": msg.into() }))
}

impl Admin {
    pub fn new(risk: Arc<Risk>, token: Vec<u8>, audit: Audit) -> Admin {
        Admin { risk, token, audit }
    }

    fn account_json(&self, i: usize, with_limits: bool) -> Value {
        let a = &self.risk.accounts;
        let s = &a.state[i];
        let r = Ordering::Relaxed;
        let mut v = json!({
            "name": a.name(i),
            "sessions": s.sessions.load(r),
            "max_sessions": a.list[i].max_sessions,
            "killed": s.killed.load(r) || self.risk.kill_all.load(r),
            "open_orders": s.orders.load(r),
            "open_notional": s.gross(),
            "open_buy_notional": s.open_buy.load(r),
            "open_sell_notional": s.open_sell.load(r),
            "net_notional": s.net.load(r),
            "orders_accepted": s.accepted.load(r),
            "orders_refused": s.refused.load(r),
            "cancel_on_disconnect": a.list[i].cancel_on_disconnect,
        });
        if with_limits {
            v["limits"] = limits_json(self.risk.limits.load().of(Some(i)));
        }
        v
    }

    fn find(&self, name: &str) -> Result<usize, Answer> {
        Code8::new(name)
            .filter(|c| c.as_str() == name)
            .and_then(|c| self.risk.accounts.find(c))
            .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("no account {name:?}")))
    }

    /// Which account a query names: `Ok(None)` for `all`.
    fn target(&self, p: &[(String, String)]) -> Result<Option<usize>, Answer> {
        let all = p.iter().any(|(k, _)| k == "all");
        let acct = p.iter().find(|(k, _)| k == "account").map(|(_, v)| v.as_str());
        match (all, acct) {
            (true, None) => Ok(None),
            (false, Some(n)) => self.find(n).map(Some),
            _ => Err(err(StatusCode::BAD_REQUEST, "give account=NAME or all")),
        }
    }

    fn route(&self, c: &Call<'_>) -> Answer {
        let p = match params(c.query) {
            Ok(p) => p,
            Err(e) => return err(StatusCode::BAD_REQUEST, e),
        };
        let n = self.risk.accounts.list.len();
        match (c.method, c.path) {
            ("GET", "/accounts") => {
                (StatusCode::OK, json!((0..n).map(|i| self.account_json(i, false)).collect::<Vec<_>>()))
            }
            ("GET", path) if path.starts_with("/accounts/") => {
                let Some(name) = decode(&path["/accounts/".len()..]) else {
                    return err(StatusCode::BAD_REQUEST, "a malformed account name");
                };
                match self.find(&name) {
                    Ok(i) => (StatusCode::OK, self.account_json(i, true)),
                    Err(a) => a,
                }
            }
            ("POST", "/kill") => {
                let t = match self.target(&p) {
                    Ok(t) => t,
                    Err(a) => return a,
                };
                let logout = p.iter().any(|(k, v)| k == "logout" && v != "0" && v != "false");
                self.risk.kill(t, logout);
                let who = t.map_or("*", |i| self.risk.accounts.name(i));
                crate::log_warn!("admin: KILL {who} (logout: {logout}) from {}", c.peer);
                (StatusCode::OK, json!({"killed": who, "logout": logout}))
            }
            ("POST", "/enable") => {
                let t = match self.target(&p) {
                    Ok(t) => t,
                    Err(a) => return a,
                };
                self.risk.enable(t);
                let who = t.map_or("*", |i| self.risk.accounts.name(i));
                crate::log_warn!("admin: enable {who} from {}", c.peer);
                (StatusCode::OK, json!({"enabled": who}))
            }
            ("GET", "/limits") => match p.iter().find(|(k, _)| k == "account") {
                None => (StatusCode::OK, limits_json(&self.risk.limits.load().defaults)),
                Some((_, name)) => match self.find(name) {
                    Ok(i) => (StatusCode::OK, limits_json(self.risk.limits.load().of(Some(i)))),
                    Err(a) => a,
                },
            },
            ("POST", "/limits") => {
                let acct = match p.iter().find(|(k, _)| k == "account") {
                    None => None,
                    Some((_, name)) => match self.find(name) {
                        Ok(i) => Some(i),
                        Err(a) => return a,
                    },
                };
                let changes: Vec<&(String, String)> = p.iter().filter(|(k, _)| k != "account").collect();
                if changes.is_empty() {
                    return err(StatusCode::BAD_REQUEST, "give KEY=VALUE for each limit to change");
                }
                let r = self.risk.limits.change(|s| {
                    let spec = match acct {
                        Some(i) => s.accounts.get_mut(i).ok_or("no such account")?,
                        None => &mut s.defaults,
                    };
                    for (k, v) in &changes {
                        spec.set(k, v)?;
                    }
                    Ok(())
                });
                match r {
                    Ok(version) => {
                        let snap = self.risk.limits.load();
                        crate::log_warn!(
                            "admin: limits of {} changed from {}: {}",
                            acct.map_or("the defaults", |i| self.risk.accounts.name(i)),
                            c.peer,
                            c.query
                        );
                        (StatusCode::OK, json!({"version": version, "limits": limits_json(snap.of(acct))}))
                    }
                    Err(e) => err(StatusCode::BAD_REQUEST, e),
                }
            }
            ("GET" | "POST", _) => err(StatusCode::NOT_FOUND, "see docs/ADMIN.md for the routes"),
            _ => err(StatusCode::METHOD_NOT_ALLOWED, "GET or POST"),
        }
    }

    /// Answer one request: 401 without the token; audited either way.
    pub fn handle(&self, c: &Call<'_>) -> Answer {
        // The request's time is when it came, before it takes effect.
        let ts = crate::clock::realtime_ns();
        let ok = c.authorization.and_then(|h| h.strip_prefix(b"Bearer ")).is_some_and(|t| same(t, &self.token));
        let answer = if ok {
            self.route(c)
        } else {
            err(StatusCode::UNAUTHORIZED, "a valid Authorization: Bearer TOKEN is needed")
        };
        self.audit.record(c, ts, answer.0.as_u16(), &answer.1);
        answer
    }
}

/// The admin endpoint's thread: stopped and joined when dropped.
pub struct AdminServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serve `admin` on `addr` from a thread of its own, kept off the loops'
/// `cores` (or on `pin`).
pub fn start(admin: Admin, addr: SocketAddr, cores: Vec<usize>, pin: Option<usize>) -> Result<AdminServer, String> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| format!("--admin {addr}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("--admin {addr}: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let admin = Arc::new(admin);
    let thread = std::thread::Builder::new()
        .name("tg-admin".into())
        .spawn(move || {
            crate::runtime::place_helper_off(&cores, pin, "admin");
            let stats = Arc::new(crate::sampler::endpoint::EndpointStats::default());
            crate::sampler::endpoint::serve_with(listener, "admin", st, stats, move |req, peer| {
                let call = Call {
                    method: req.method().as_str(),
                    path: req.uri().path(),
                    query: req.uri().query().unwrap_or(""),
                    authorization: req.headers().get(hyper::header::AUTHORIZATION).map(|v| v.as_bytes()),
                    peer,
                };
                let (status, body) = admin.handle(&call);
                let mut r =
                    crate::sampler::endpoint::response(status, "application/json", format!("{body}\n").into_bytes());
                if status == StatusCode::UNAUTHORIZED {
                    r.headers_mut()
                        .insert(hyper::header::WWW_AUTHENTICATE, hyper::header::HeaderValue::from_static("Bearer"));
                }
                r
            });
        })
        .map_err(|e| format!("starting the admin endpoint: {e}"))?;
    Ok(AdminServer { stop, thread: Some(thread), addr })
}

#[cfg(test)]
mod tests;
