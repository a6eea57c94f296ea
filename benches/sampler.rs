//! The cost of recording one sample on the hot path, side by side with the
//! naive way (format a line and push it onto a shared Vec under a mutex).
//!
//!     cargo bench --bench sampler
//!
//! A reader thread drains the ring every 100 us while the benchmark writes,
//! as the reporter thread will, and the writer publishes once per 16
//! samples, standing for once per loop iteration. Results: docs/BENCHMARKS.md.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tailgate::sampler::ring::{ring, DEFAULT_CAPACITY};
use tailgate::sampler::Sample;

fn sample(n: u64) -> Sample {
    Sample { trace_id: n, t_rx_frame: n, t_handled: n + 100, conn: 7, msg_type: 3, ..Sample::default() }
}

fn record(c: &mut Criterion) {
    let mut g = c.benchmark_group("record_one_sample");
    g.measurement_time(Duration::from_secs(3));

    let (mut p, mut consumer) = ring(DEFAULT_CAPACITY).expect("ring");
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let reader = std::thread::spawn(move || {
        let mut n = 0u64;
        // As the reporter thread will: drain, then sleep a little.
        while !stop2.load(Ordering::Relaxed) {
            while consumer.pop().is_some() {
                n += 1;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        n
    });
    let mut i = 0u64;
    // One publish per 16 samples stands for one per loop iteration.
    g.bench_function("ring_push", |b| {
        b.iter(|| {
            i += 1;
            let ok = p.push(black_box(&sample(i)));
            if i % 16 == 0 {
                p.publish();
            }
            black_box(ok)
        })
    });
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();

    let log: Mutex<Vec<String>> = Mutex::new(Vec::with_capacity(1 << 20));
    let mut j = 0u64;
    g.bench_function("format_and_mutex_push", |b| {
        b.iter(|| {
            j += 1;
            let s = sample(j);
            let line = format!(
                "trace={} rx={} handled={} conn={} type={}",
                s.trace_id, s.t_rx_frame, s.t_handled, s.conn, s.msg_type
            );
            let mut v = log.lock().expect("lock");
            if v.len() >= 1 << 20 {
                v.clear();
            }
            v.push(black_box(line));
        })
    });
    g.finish();
}

criterion_group!(benches, record);
criterion_main!(benches);
