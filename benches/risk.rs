//! The cost of the pre-trade checks of one order, each alone and all
//! together, and of one journal record, on the loop's side.
//!
//!     cargo bench --bench risk
//!
//! Each check is measured with only its limit set (the others absent), so
//! the difference from `none` is that check's cost; `all` sets every limit
//! at once, with the account's credit shared as across loops (atomics).
//! After criterion's means, `all` is timed order by order for its
//! percentiles (each timing includes one clock read, ~20 ns: an upper
//! bound). Results: docs/BENCHMARKS.md.

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tailgate::journal::writer::{open, JournalConfig};
use tailgate::journal::{kind, Record, HEADER, RECORD};
use tailgate::proto::{Code8, NewOrder, OrderKind, Side};
use tailgate::risk::accounts::AccountState;
use tailgate::risk::checks::{check, Kill, Refs, SessionRisk};
use tailgate::risk::limits::{LimitsSpec, Published, Specs};

fn sym(s: &str) -> u64 {
    u64::from_le_bytes(Code8::new(s).unwrap().0)
}

/// Order `i`: alternating sides, prices inside the collar, quantities
/// that never repeat within the duplicate window.
fn order(i: u64) -> NewOrder {
    NewOrder {
        cl_ord_id: i,
        client_ts: 0,
        price: 9_950 + (i % 100) as i64,
        qty: 1 + (i % 97) as u32,
        side: if i % 2 == 0 { Side::Buy } else { Side::Sell },
        kind: OrderKind::Limit,
        symbol: Code8::new("TGATE").unwrap(),
    }
}

fn all_limits() -> LimitsSpec {
    LimitsSpec {
        max_order_qty: Some(1_000),
        max_order_notional: Some(100_000_000),
        price_collar_bps: Some(500),
        require_reference_price: Some(true),
        max_gross_open_notional: Some(u64::MAX / 4),
        max_net_notional: Some(u64::MAX / 4),
        session_orders_per_sec: Some(1_000_000_000),
        session_burst: Some(1_000_000),
        account_orders_per_sec: Some(1_000_000_000),
        account_burst: Some(1_000_000),
        duplicate_window_ms: Some(1),
        market_orders: Some(false),
    }
}

fn run_one(c: &mut Criterion, name: &str, spec: LimitsSpec) {
    let restricted = vec![sym("BAD"), sym("WORSE"), sym("ZZZ")];
    let snap = Published::new(Specs { defaults: LimitsSpec::default(), accounts: vec![spec], restricted }).load();
    let st = AccountState::default();
    let refs = Refs::new(&[(sym("TGATE"), 10_000)], 4096);
    let mut s = SessionRisk::default();
    let mut i = 0u64;
    let mut now = 1_000_000_000u64;
    c.bench_function(name, |b| {
        b.iter(|| {
            i += 1;
            now += 1_000;
            let o = order(i);
            let r = check(&snap, Some((0, &st)), Kill { all: false }, &refs, &mut s, black_box(&o), now);
            if let Ok(res) = r {
                // The order is done at once: the credit does not grow without bound.
                st.finished(o.side == Side::Buy, res.notional);
            }
            black_box(r)
        })
    });
}

fn checks(c: &mut Criterion) {
    run_one(c, "checks/none", LimitsSpec::default());
    let one = |f: fn(&mut LimitsSpec)| {
        let mut s = LimitsSpec::default();
        f(&mut s);
        s
    };
    run_one(c, "checks/max_order_qty", one(|s| s.max_order_qty = Some(1_000)));
    run_one(c, "checks/max_order_notional", one(|s| s.max_order_notional = Some(100_000_000)));
    run_one(c, "checks/price_collar", one(|s| s.price_collar_bps = Some(500)));
    run_one(c, "checks/credit_gross", one(|s| s.max_gross_open_notional = Some(u64::MAX / 4)));
    run_one(c, "checks/credit_net", one(|s| s.max_net_notional = Some(u64::MAX / 4)));
    run_one(
        c,
        "checks/session_rate",
        one(|s| {
            s.session_orders_per_sec = Some(1_000_000_000);
            s.session_burst = Some(1_000_000)
        }),
    );
    run_one(
        c,
        "checks/account_rate",
        one(|s| {
            s.account_orders_per_sec = Some(1_000_000_000);
            s.account_burst = Some(1_000_000)
        }),
    );
    run_one(c, "checks/duplicate", one(|s| s.duplicate_window_ms = Some(1)));
    run_one(c, "checks/all", all_limits());
}

/// `all`, order by order: p50, p99, p99.9 and max in ns.
fn percentiles() {
    let restricted = vec![sym("BAD"), sym("WORSE"), sym("ZZZ")];
    let snap =
        Published::new(Specs { defaults: LimitsSpec::default(), accounts: vec![all_limits()], restricted }).load();
    let st = AccountState::default();
    let refs = Refs::new(&[(sym("TGATE"), 10_000)], 4096);
    let mut s = SessionRisk::default();
    // Criterion's own runs under `cargo test` (no --bench) are quick ones.
    let n = if std::env::args().any(|a| a == "--bench") { 2_000_000usize } else { 10_000 };
    let mut t = Vec::with_capacity(n);
    let mut now = 1_000_000_000u64;
    for i in 0..n as u64 {
        now += 1_000;
        let o = order(i);
        let t0 = Instant::now();
        let r = check(&snap, Some((0, &st)), Kill { all: false }, &refs, &mut s, black_box(&o), now);
        let d = t0.elapsed();
        if let Ok(res) = r {
            st.finished(o.side == Side::Buy, res.notional);
        }
        t.push(d.as_nanos() as u64);
    }
    t.sort_unstable();
    let q = |p: f64| t[((n as f64 * p) as usize).min(n - 1)];
    println!(
        "checks/all per order ({n} orders, ns, each with one clock read): p50 {} p99 {} p99.9 {} max {}; refused {}",
        q(0.5),
        q(0.99),
        q(0.999),
        t[n - 1],
        st.refused.load(Ordering::Relaxed)
    );
}

fn journal(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("tg-bench-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = JournalConfig { dir: dir.clone(), segment_bytes: HEADER + (1 << 20) * RECORD, sync_ms: 100 };
    let (keeper, mut w) = open(cfg, 1, vec![], None).expect("journal");
    let mut i = 0u64;
    c.bench_function("journal/append", |b| {
        b.iter(|| {
            i += 1;
            let mut r = Record { kind: kind::ORDER, cl_ord_id: i, qty: 5, price: 10_000, ts: i, ..Record::default() };
            black_box(w[0].append(&mut r))
        })
    });
    drop(w);
    drop(keeper);
    let _ = std::fs::remove_dir_all(&dir);
}

fn config() -> Criterion {
    Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500))
}

fn tail(_: &mut Criterion) {
    percentiles();
}

criterion_group! { name = benches; config = config(); targets = checks, journal, tail }
criterion_main!(benches);
