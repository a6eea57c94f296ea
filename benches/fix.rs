//! What FIX 4.4 costs the loop per message, against the binary protocol:
//! reading a NewOrderSingle (its frame, BodyLength and CheckSum checked,
//! its fields indexed in place and the order's values read) and writing an
//! ExecutionReport (an acknowledgement's fields, two UTCTimestamps,
//! BodyLength and CheckSum), beside the binary protocol's decode of a
//! NewOrder and encode of an Ack.
//!
//!     cargo bench --bench fix
//!
//! Results: docs/BENCHMARKS.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tailgate::fix::{frame, tag, value, Encoder, Msg};
use tailgate::proto::{ClientMsg, Code8, Frame, GatewayMsg, NewOrder, OrderKind, Parsed, Side};

/// A NewOrderSingle as a client engine writes it (header, a limit order,
/// trailer).
fn new_order_single() -> Vec<u8> {
    let mut buf = [0u8; 512];
    let mut e = Encoder::new(&mut buf, b"D");
    e.uint(tag::MSG_SEQ_NUM, 123_456)
        .bytes(tag::SENDER_COMP_ID, b"ALPHA")
        .bytes(tag::SENDING_TIME, b"20261207-19:34:46.123")
        .bytes(tag::TARGET_COMP_ID, b"TAILGATE")
        .bytes(tag::CL_ORD_ID, b"1099511627777")
        .bytes(tag::SIDE, b"1")
        .bytes(tag::SYMBOL, b"TGATE")
        .bytes(tag::TRANSACT_TIME, b"20261207-19:34:46.123")
        .uint(tag::ORDER_QTY, 100)
        .bytes(tag::ORD_TYPE, b"2")
        .bytes(tag::PRICE, b"10.0050");
    e.finish().unwrap().to_vec()
}

/// What the gateway reads from a NewOrderSingle.
fn read_order(bytes: &[u8]) -> Option<(u64, u64, i64, u64, bool)> {
    let len = frame(bytes).ok()??;
    let m = Msg::parse(&bytes[..len]).ok()?;
    if m.msg_type() != b"D" || m.repeated().is_some() {
        return None;
    }
    let seq = m.get(tag::MSG_SEQ_NUM).and_then(value::uint)?;
    let sending = m.get(tag::SENDING_TIME)?;
    let transact = m.get(tag::TRANSACT_TIME)?;
    if !value::is_timestamp(sending) || !value::is_timestamp(transact) {
        return None;
    }
    let _ = (m.get(tag::SENDER_COMP_ID)?, m.get(tag::TARGET_COMP_ID)?, m.get(tag::SYMBOL)?);
    let id = m.get(tag::CL_ORD_ID).and_then(value::pack_id)?;
    let price = m.get(tag::PRICE).and_then(|p| value::decimal(p, 4))?;
    let qty = m.get(tag::ORDER_QTY).and_then(value::uint)?;
    let buy = m.get(tag::SIDE)? == b"1";
    Some((seq, id, price, qty, buy))
}

/// The ExecutionReport (new) the gateway writes for it.
fn write_ack(out: &mut [u8], seq: u64, wall_ns: u64) -> usize {
    let mut ts = [0u8; value::TIMESTAMP_LEN];
    let mut id = [0u8; value::ID_LEN];
    let mut e = Encoder::new(out, b"8");
    e.uint(tag::MSG_SEQ_NUM, seq)
        .bytes(tag::SENDER_COMP_ID, b"TAILGATE")
        .bytes(tag::SENDING_TIME, value::timestamp(wall_ns, &mut ts))
        .bytes(tag::TARGET_COMP_ID, b"ALPHA")
        .uint(tag::ORDER_ID, 987_654)
        .bytes(tag::CL_ORD_ID, value::write_id(1_099_511_627_777 | 1 << 63, &mut id))
        .uint(tag::EXEC_ID, seq)
        .bytes(tag::EXEC_TYPE, b"0")
        .bytes(tag::ORD_STATUS, b"0")
        .bytes(tag::SIDE, b"1")
        .bytes(tag::SYMBOL, b"TGATE")
        .uint(tag::ORDER_QTY, 100)
        .uint(tag::LEAVES_QTY, 100)
        .uint(tag::CUM_QTY, 0)
        .decimal(tag::AVG_PX, 0, 8)
        .bytes(tag::TRANSACT_TIME, value::timestamp(wall_ns, &mut ts));
    e.finish().map_or(0, <[u8]>::len)
}

fn bench(c: &mut Criterion) {
    let d = new_order_single();
    assert!(read_order(&d).is_some(), "the NewOrderSingle reads");
    let mut out = [0u8; 1024];
    assert!(write_ack(&mut out, 1, 1_796_672_086_123_000_000) > 0);

    let order = NewOrder {
        cl_ord_id: 1_099_511_627_777,
        client_ts: 1,
        price: 100_050,
        qty: 100,
        side: Side::Buy,
        kind: OrderKind::Limit,
        symbol: Code8::new("TGATE").unwrap(),
    };
    let mut bin = [0u8; 256];
    let n = ClientMsg::NewOrder(order).encode(123_456, &mut bin).unwrap();
    let bin = bin[..n].to_vec();

    let mut g = c.benchmark_group("fix");
    g.bench_function("read NewOrderSingle", |b| b.iter(|| read_order(black_box(&d))));
    let mut seq = 0u64;
    g.bench_function("write ExecutionReport", |b| {
        b.iter(|| {
            seq += 1;
            write_ack(black_box(&mut out), seq, 1_796_672_086_123_000_000 + seq)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("binary");
    g.bench_function("read NewOrder", |b| {
        b.iter(|| match Frame::parse(black_box(&bin)) {
            Ok(Parsed::Frame(f)) => ClientMsg::decode(&f).ok(),
            _ => None,
        })
    });
    let mut out = [0u8; 256];
    g.bench_function("write Ack", |b| {
        b.iter(|| {
            seq += 1;
            let ack = GatewayMsg::Ack {
                cl_ord_id: 1_099_511_627_777,
                client_ts: 1,
                gw_recv_ts: seq,
                gw_send_ts: seq,
                order_id: 987_654,
            };
            ack.encode(seq as u32, black_box(&mut out))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
