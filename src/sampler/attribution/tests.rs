//! The attribution rules and the report, on crafted samples.

use super::*;

const US: u64 = 1000;

/// A 10 us message delivered at `t` that arrived `wait` before the poll.
fn msg(t: u64, wait: u64) -> Sample {
    Sample {
        t_rx_frame: t - wait,
        t_delivered: t,
        t_parsed: t + US,
        t_handled: t + 3 * US,
        t_tx_queued: t + 5 * US,
        t_tx_done: t + 6 * US,
        prev_busy_ns: 2 * US as u32,
        prev_msgs: 1,
        msg_type: kind::LIMIT,
        ..Sample::default()
    }
}

fn cause_of(s: &Sample) -> &'static str {
    CAUSES[classify(s, 20 * US, &[]).0]
}

#[test]
fn each_rule_names_its_cause() {
    let t = 1_000_000_000;
    assert_eq!(cause_of(&msg(t, US)), "none");
    // Waited 900 us while the loop was busy 1 ms outside handlers.
    let s = Sample { prev_busy_ns: 1_000_000, ..msg(t, 900 * US) };
    assert_eq!(cause_of(&s), "loop_stall");
    // Its own handler took 500 us.
    let s = Sample { t_handled: t + 500 * US, t_tx_queued: t + 501 * US, t_tx_done: t + 502 * US, ..msg(t, US) };
    assert_eq!(cause_of(&s), "slow_handler");
    // Waited behind the previous iteration's 800 us of handlers.
    let s = Sample { prev_handler_ns: 800_000, prev_busy_ns: 3_000, ..msg(t, 700 * US) };
    assert_eq!(cause_of(&s), "slow_handler");
    let s = Sample { cause: cause::RETRANSMIT as u16, ..msg(t, 5_000 * US) };
    assert_eq!(cause_of(&s), "retransmission");
    // A 30 us stall cannot explain a 5 ms wait behind a lost segment.
    let s = Sample { cause: cause::RETRANSMIT as u16, prev_busy_ns: 30_000, ..msg(t, 5_000 * US) };
    assert_eq!(cause_of(&s), "retransmission");
    // A retransmit flag with no wait explains nothing.
    let s = Sample { cause: cause::RETRANSMIT as u16, ..msg(t, US) };
    assert_eq!(cause_of(&s), "none");
    let s = Sample { cause: cause::ZERO_WINDOW as u16, ..msg(t, US) };
    assert_eq!(cause_of(&s), "zero_window");
    let s = Sample { cause: cause::FILL_RING_STARVED as u16, ..msg(t, 100 * US) };
    assert_eq!(cause_of(&s), "fill_ring_starved");
    let s = Sample { t_tx_done: t + 200 * US, ..msg(t, US) };
    assert_eq!(cause_of(&s), "tx_ring_or_kick");
    let s = Sample { cause: cause::SAMPLER as u16, prev_iter_ns: 60_000, ..msg(t, 50 * US) };
    assert_eq!(cause_of(&s), "sampler_interference");
    // A slow sampler in a 60 us iteration cannot explain a 200 ms wait.
    let s = Sample { cause: (cause::SAMPLER | cause::RETRANSMIT) as u16, prev_iter_ns: 60_000, ..msg(t, 200_000 * US) };
    assert_eq!(cause_of(&s), "retransmission");
    // 30 messages ahead in this iteration, 60 us of queueing: a burst.
    let s = Sample { queue_ns: 60_000, iter_handler_ns: 15_000, batch_pos: 30, ..msg(t, US) };
    assert_eq!(cause_of(&s), "queued_behind_burst");
    // The same queueing behind one message: the loop stalled.
    let s = Sample { queue_ns: 60_000, iter_handler_ns: 1_000, batch_pos: 1, ..msg(t, US) };
    assert_eq!(cause_of(&s), "loop_stall");
    // Waited 100 us while the loop polled (its previous iteration was
    // short): the frame reached the ring late.
    assert_eq!(cause_of(&msg(t, 100 * US)), "rx_path_delay");
    // The same after a poll that slept: the loop woke late.
    assert_eq!(cause_of(&Sample { cause: cause::SLEPT as u16, ..msg(t, 100 * US) }), "wakeup_latency");
    // Waited behind a previous iteration of 30 messages that took 600 us.
    assert_eq!(cause_of(&Sample { prev_msgs: 30, prev_iter_ns: 600_000, ..msg(t, 300 * US) }), "queued_behind_burst");
    // ... which cannot explain a 5 ms wait.
    assert_eq!(cause_of(&Sample { prev_msgs: 30, prev_iter_ns: 600_000, ..msg(t, 5_000 * US) }), "rx_path_delay");
    // A 200 ms wait behind a lost segment, then a 30 us handler: the
    // handler is not where the time went.
    let s = Sample { cause: cause::RETRANSMIT as u16, t_handled: t + 31 * US, ..msg(t, 200_000 * US) };
    assert_eq!(cause_of(&s), "retransmission");
    // A 30 us handler after a 100 us poll-to-ring delay: the delay.
    let s = Sample { t_handled: t + 31 * US, t_tx_queued: t + 32 * US, t_tx_done: t + 33 * US, ..msg(t, 100 * US) };
    assert_eq!(cause_of(&s), "rx_path_delay");
    // A slow stage nothing explains.
    assert_eq!(cause_of(&Sample { t_parsed: t + 100 * US, ..msg(t, US) }), "unexplained");
    // Parsed late because 30 messages of the same read went first: a
    // burst; because the one before it had a 1 ms handler: that.
    let late =
        |ns: u64| Sample { t_parsed: t + ns, t_handled: t + ns, t_tx_queued: t + ns, t_tx_done: t + ns, ..msg(t, US) };
    assert_eq!(cause_of(&Sample { batch_pos: 30, ..late(100 * US) }), "queued_behind_burst");
    assert_eq!(cause_of(&Sample { batch_pos: 1, iter_handler_ns: 1_000_000, ..late(1_001 * US) }), "slow_handler");
}

#[test]
fn a_reply_that_waited_for_a_retransmission_or_a_late_ack_is_named_by_it() {
    let t = 1_000_000_000;
    let acked = |ack: u64, flags: u32| Sample { t_acked: t + 6 * US + ack, cause: flags as u16, ..msg(t, US) };
    // A 30 ms ACK is a delayed ACK: nothing the client saw.
    let s = acked(30_000 * US, 0);
    assert_eq!((reply_delay(&s), seen_ns(&s), cause_of(&s)), (0, s.latency_ns(), "none"));
    // The same ACK after a retransmission: the client waited for it.
    let s = acked(30_000 * US, cause::REPLY_RETX);
    assert_eq!((reply_delay(&s), cause_of(&s)), (30_000 * US, "reply_retransmitted"));
    assert_eq!(classify(&s, 20 * US, &[]).1, ACK_STAGE);
    // The same again, but the copy was spurious (the peer had the reply):
    // the client waited for nothing; the report counts a late peer ACK.
    let s = acked(30_000 * US, cause::REPLY_RETX | cause::REPLY_SPURIOUS);
    assert_eq!((reply_delay(&s), seen_ns(&s), cause_of(&s)), (0, s.latency_ns(), "none"));
    let calm = acked(100 * US, 0);
    let r = analyse(&[s, calm, s], 0, Options { threshold_ns: Some(1_000 * US), ..Options::default() });
    assert_eq!(r.tail, 0);
    let sp = r.spurious.expect("spurious replies counted");
    assert_eq!((sp.replies, sp.ack_max_us), (2, us(s.ack_ns())));
    assert!(r.render().contains("late_peer_ack: 2 replies retransmitted for nothing"), "{}", r.render());
    assert!(analyse(&[calm], 0, Options::default()).spurious.is_none());
    // 300 ms without a retransmission: longer than any delayed ACK.
    assert_eq!(cause_of(&acked(300_000 * US, 0)), "late_peer_ack");
    // No ACK by the deadline: late, by at least the deadline.
    let s = Sample { cause: cause::ACK_LATE as u16, ..msg(t, US) };
    assert_eq!((reply_delay(&s), cause_of(&s)), (super::super::tracer::ACK_DEADLINE_NS, "late_peer_ack"));
    // A gateway stall longer than the reply's trouble is still the stall.
    let s = Sample { prev_busy_ns: 9_000_000, ..acked(100 * US, cause::REPLY_RETX) };
    let s = Sample { t_rx_frame: s.t_delivered - 8_000 * US, ..s };
    assert_eq!(cause_of(&s), "loop_stall");
}

/// `n` messages in iteration `iter` at `t`, each built by `f(i)`.
fn iteration(iter: u64, n: u8, f: impl Fn(u8) -> Sample) -> Vec<Sample> {
    (0..n).map(|i| Sample { loop_iter: iter, batch_pos: i, trace_id: iter * 1000 + u64::from(i), ..f(i) }).collect()
}

#[test]
fn messages_queued_behind_a_slow_handler_are_counted_under_it_through_the_queue() {
    let t = 1_000_000_000;
    // Iteration 10: one message whose handler took 1 ms.
    let mut v = iteration(10, 1, |_| Sample {
        t_handled: t + 1_000 * US,
        t_tx_queued: t + 1_001 * US,
        t_tx_done: t + 1_002 * US,
        ..msg(t, US)
    });
    // Iteration 11: 12 messages that arrived during it, waited for the
    // handler (directly), and took 5 us each to serve.
    let t11 = t + 1_010 * US;
    v.extend(iteration(11, 12, |i| Sample {
        prev_handler_ns: 1_000_000,
        prev_busy_ns: 2_000,
        prev_msgs: 1,
        queue_ns: u32::from(i) * 5_000,
        iter_handler_ns: u32::from(i) * 2_000,
        ..msg(t11, 600 * US)
    }));
    // Iteration 12: 5 messages that waited behind iteration 11's batch.
    let t12 = t11 + 500 * US;
    v.extend(iteration(12, 5, |_| Sample {
        prev_handler_ns: 24_000,
        prev_busy_ns: 2_000,
        prev_msgs: 12,
        prev_iter_ns: 490_000,
        ..msg(t12, 400 * US)
    }));
    // Elsewhere: a genuine burst. Iteration 20's 12 messages were on
    // time; iteration 21's waited behind them.
    let t20 = t + 100_000 * US;
    v.extend(iteration(20, 12, |_| msg(t20, US)));
    v.extend(iteration(21, 5, |_| Sample {
        prev_busy_ns: 2_000,
        prev_msgs: 12,
        prev_iter_ns: 490_000,
        ..msg(t20 + 500 * US, 400 * US)
    }));
    let r = analyse(&v, 0, Options { threshold_ns: Some(300 * US), messages: true, ..Options::default() });
    let d = r.delayed["slow_handler"];
    // The slow message itself and iteration 11's twelve directly;
    // iteration 12's five through the queue iteration 11 made.
    assert_eq!(d, Delayed { direct: 13, queued: 5 }, "{:#?}", r.delayed);
    assert_eq!(r.delayed["queued_behind_burst"], Delayed { direct: 0, queued: 5 });
    assert_eq!(r.top_cause, "slow_handler");
    let m = r.messages.iter().find(|m| m.message.trace_id == 12_000).unwrap();
    assert_eq!((m.cause, m.via, m.direct, m.stage), ("slow_handler", "queue", "queued_behind_burst", "wait"));
    let m = r.messages.iter().find(|m| m.message.trace_id == 21_000).unwrap();
    assert_eq!((m.cause, m.via), ("queued_behind_burst", "queue"));
    assert!(r.rows.iter().any(|row| row.cause == "slow_handler" && row.via == "queue"), "{:#?}", r.rows);
    let text = r.render();
    assert!(text.contains("through the queue"), "{text}");
    // A lone outlier among the makers does not make the queue its own:
    // one maker of iteration 20 delayed by the loop, eleven on time.
    let mut w = v.clone();
    if let Some(s) = w.iter_mut().find(|s| s.trace_id == 20_000) {
        *s = Sample { prev_busy_ns: 2_000_000, loop_iter: 20, trace_id: 20_000, ..msg(t20, 1_500 * US) };
    }
    let r = analyse(&w, 0, Options { threshold_ns: Some(300 * US), ..Options::default() });
    assert_eq!(r.delayed["queued_behind_burst"], Delayed { direct: 0, queued: 5 });
    // A receive-path delay shared by 20 messages of one poll is a burst
    // queued in the kernel; two messages held together are not.
    let t30 = t + 200_000 * US;
    let mut x = iteration(30, 20, |_| msg(t30, 900 * US));
    x.extend(iteration(40, 2, |_| msg(t30 + 10_000 * US, 900 * US)));
    let r = analyse(&x, 0, Options { threshold_ns: Some(300 * US), ..Options::default() });
    assert_eq!(r.delayed["queued_behind_burst"], Delayed { direct: 0, queued: 20 });
    assert_eq!(r.delayed["rx_path_delay"], Delayed { direct: 2, queued: 0 });
    // Likewise 20 replies that left in one 500 us flush; one does not.
    let kicked = |t: u64| Sample { t_tx_done: t + 500 * US, ..msg(t, US) };
    let mut y = iteration(50, 20, |_| kicked(t30));
    y.extend(iteration(60, 1, |_| kicked(t30 + 10_000 * US)));
    let r = analyse(&y, 0, Options { threshold_ns: Some(300 * US), ..Options::default() });
    assert_eq!(r.delayed["queued_behind_burst"], Delayed { direct: 0, queued: 20 });
    assert_eq!(r.delayed["tx_ring_or_kick"], Delayed { direct: 1, queued: 0 });
}

#[test]
fn reporter_overlap_on_the_same_core_is_interference() {
    let t = 10_000_000;
    let s = msg(t, 50 * US);
    let r = Sample { t_rx_frame: t - 40 * US, t_handled: t, core: 0, msg_type: kind::REPORTER, ..Sample::default() };
    assert_eq!(CAUSES[classify(&s, 20 * US, &[r]).0], "sampler_interference");
    let elsewhere = Sample { core: 1, ..r };
    assert_eq!(CAUSES[classify(&s, 20 * US, &[elsewhere]).0], "rx_path_delay");
    // 21 us of reporter work cannot explain a 500 us wait.
    let s = msg(t, 500 * US);
    let short = Sample { t_rx_frame: t - 21 * US, ..r };
    assert_eq!(CAUSES[classify(&s, 20 * US, &[short]).0], "rx_path_delay");
}

#[test]
fn report_groups_the_tail_and_names_the_top_cause() {
    let mut v = Vec::new();
    let mut t = 1_000_000_000;
    for i in 0..10_000u64 {
        t += 100 * US;
        let mut s = msg(t, 2 * US);
        s.trace_id = i;
        if i % 1000 == 0 {
            s = Sample { prev_busy_ns: 2_000_000, ..msg(t, 1_500 * US) };
        } else if i % 2500 == 1 {
            s = Sample { t_handled: t + 900 * US, t_tx_queued: t + 901 * US, t_tx_done: 0, ..msg(t, US) };
        }
        v.push(s);
    }
    let r = analyse(&v, 0, Options { threshold_ns: Some(500 * US), ..Options::default() });
    assert_eq!(r.samples, 10_000);
    assert_eq!(r.tail, 14);
    assert_eq!(r.top_cause, "loop_stall");
    assert_eq!(r.causes["loop_stall"], 10);
    assert_eq!(r.causes["slow_handler"], 4);
    assert_eq!((r.rows[0].cause, r.rows[0].stage, r.rows[0].count), ("loop_stall", "wait", 10));
    assert_eq!(r.rows[0].stages["wait"].max_us, 1500.0);
    let text = r.render();
    assert!(text.contains("top cause: loop_stall"), "{text}");
    assert!(text.contains("slow_handler"), "{text}");
    // The default threshold is the p99.9 itself.
    let r = analyse(&v, 3, Options::default());
    assert_eq!(r.threshold_from, "p99.9");
    assert!(r.tail >= 10 && r.render().contains("dropped 3"));
    assert!(r.injected.is_none() && r.messages.is_empty());
    let empty = analyse(&[], 0, Options::default());
    assert_eq!((empty.tail, empty.top_cause), (0, "none"));
}

#[test]
fn injected_messages_are_counted_by_cause_and_listed_on_request() {
    let t = 10_000_000;
    let stalled = Sample { prev_busy_ns: 2_000_000, cause: cause::INJECTED as u16, ..msg(t, 1_500 * US) };
    let slowed = Sample {
        t_handled: t + 900 * US,
        t_tx_queued: t + 901 * US,
        t_tx_done: t + 902 * US,
        cause: cause::INJECTED as u16,
        ..msg(t, US)
    };
    let natural = Sample { prev_busy_ns: 3_000_000, trace_id: 9, ..msg(t, 2_500 * US) };
    let v = [stalled, slowed, natural, msg(t, US)];
    let r = analyse(&v, 0, Options { threshold_ns: Some(500 * US), messages: true, ..Options::default() });
    let i = r.injected.as_ref().expect("injected summary");
    assert_eq!(i.tail, 2);
    assert_eq!((i.causes["loop_stall"], i.causes["slow_handler"]), (1, 1));
    assert_eq!(r.causes["loop_stall"], 2);
    assert_eq!(r.messages.len(), 3);
    let m = r.messages.iter().find(|m| m.message.trace_id == 9).unwrap();
    assert_eq!((m.cause, m.stage, m.stages_us["wait"], m.prev_busy_us), ("loop_stall", "wait", 2500.0, 3000.0));
    assert!(r.messages.iter().filter(|m| m.message.flags.contains(&"injected")).count() == 2);
    let text = r.render();
    assert!(text.contains("injected: 2 tail messages"), "{text}");
    assert!(text.contains("tail messages:"), "{text}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["messages"][0]["cause"], "loop_stall");
    assert!(json["messages"][0]["trace_id"].is_u64(), "{json:#}");
}

/// The exchange's answer to an order: named by its exchange leg when that
/// is most of the order's time, by the ordinary rules otherwise.
#[test]
fn the_exchange_leg_is_named_when_it_is_most_of_the_time() {
    use crate::sampler::{upstream_flag, Upstream};
    let t = 1_000_000_000;
    let answer = |leg: u64, flags: u8, cause: u32| {
        let mut s = msg(t, US);
        s.msg_type = kind::EXCHANGE;
        s.cause = cause as u16;
        // The order arrived 10 us before it was sent; the answer came `leg` later.
        let sent = s.t_rx_frame - leg;
        s.set_upstream(Upstream { order_in: sent - 10 * US, sent, flags });
        s
    };
    let slow = answer(5_000 * US, 0, 0);
    assert_eq!(slow.latency_ns(), 5_000 * US + 10 * US + 6 * US + US, "the order's time, both ways and the leg");
    assert_eq!(cause_of(&slow), "exchange_slow");
    assert_eq!(classify(&slow, 20 * US, &[]).1, EXCHANGE_LEG);
    assert_eq!(stage_name(EXCHANGE_LEG), "exchange");
    assert_eq!(cause_of(&answer(5_000 * US, 0, cause::RETRANSMIT)), "upstream_retransmission");
    assert_eq!(cause_of(&answer(5_000 * US, upstream_flag::RESENT, 0)), "upstream_down");
    // A leg below S: the gateway's own stages decide (here nothing is slow).
    assert_eq!(cause_of(&answer(15 * US, 0, 0)), "none");
    // An ordinary message is never named after the exchange.
    assert!(msg(t, US).upstream().is_none());
}

/// The off-CPU trace has the last word: messages a preempted loop left
/// waiting (the rules would say a burst, or the receive path) are a loop
/// stall named by what ran; a slow handler the thread ran through stays
/// one; without a trace the report says what is missing.
#[test]
fn the_off_cpu_trace_names_a_stall_and_overrides_the_rules_guess() {
    use crate::sampler::offcpu::record::{Interval, What};
    let t = 1_000_000_000;
    let mut name = [0u8; 16];
    name[..6].copy_from_slice(b"tg-hog");
    let hog = Interval {
        start_ns: t - 6_000 * US,
        end_ns: t - 100 * US,
        tid: 9,
        cpu: 1,
        what: What::Preempted,
        id: 77,
        switches: 1,
        name,
    };
    // Forty messages that waited through it, delivered in one poll: the
    // rules alone see a burst queued in the kernel, or a slow receive path.
    let waited: Vec<Sample> = (0..40u64)
        .map(|i| Sample {
            trace_id: i,
            batch_pos: i as u8,
            queue_ns: (i * 2 * US) as u32,
            core: 1,
            ..msg(t, 5_900 * US)
        })
        .collect();
    let slow = Sample {
        trace_id: 99,
        core: 1,
        t_handled: t + 10_000 * US + 900 * US,
        t_tx_queued: t + 10_000 * US + 901 * US,
        t_tx_done: t + 10_000 * US + 902 * US,
        ..msg(t + 10_000 * US, US)
    };
    let mut v = waited.clone();
    v.push(slow);
    let opts = Options { threshold_ns: Some(500 * US), messages: true, ..Options::default() };
    let plain = analyse(&v, 0, opts);
    assert!(!plain.offcpu_traced && plain.stalls.is_empty());
    assert_ne!(plain.causes.get("loop_stall").copied().unwrap_or(0), 41, "{:#?}", plain.causes);
    v.push(hog.to_sample());
    let r = analyse(&v, 0, opts);
    assert!(r.offcpu_traced);
    assert_eq!(r.stalls.get("preempted by tg-hog"), Some(&40), "{:#?}", r.stalls);
    assert_eq!(r.causes.get("loop_stall"), Some(&40), "{:#?}", r.causes);
    assert_eq!(r.causes.get("slow_handler"), Some(&1), "the handler it ran through: {:#?}", r.causes);
    assert!(r
        .messages
        .iter()
        .filter(|m| m.cause == "loop_stall")
        .all(|m| m.stall.as_deref() == Some("preempted by tg-hog")));
    assert_eq!(r.samples, 41, "the interval is not a message");
    assert!(r.render().contains("loop stalls (40), what took the core: preempted by tg-hog 40"), "{}", r.render());
    // A stall the rules name, without a trace: the report says why it is not named.
    let stalled = vec![Sample { prev_busy_ns: 1_000_000, ..msg(t, 900 * US) }];
    let text = analyse(&stalled, 0, opts).render();
    assert!(text.contains("no off-CPU trace in this log"), "{text}");
}

/// A slow handler is judged inside its own stage: preempted with little
/// work of its own, a loop stall; slow work of its own, preempted or not,
/// a slow handler.
#[test]
fn a_preempted_handler_is_a_stall_and_a_slow_one_stays_slow() {
    use crate::sampler::offcpu::record::{Interval, What};
    let t = 1_000_000_000;
    let handler = |start: u64, len: u64| Sample {
        core: 1,
        t_handled: start + len,
        t_tx_queued: start + len + US,
        t_tx_done: start + len + 2 * US,
        t_parsed: start,
        ..msg(start - US, US)
    };
    let mut name = [0u8; 16];
    name[..4].copy_from_slice(b"kthr");
    let off = |start: u64, len: u64| {
        Interval {
            start_ns: start,
            end_ns: start + len,
            tid: 9,
            cpu: 1,
            what: What::Preempted,
            id: 1,
            switches: 1,
            name,
        }
        .to_sample()
    };
    // 1,400 us in the handler, 1,390 of them preempted: a loop stall.
    let preempted = Sample { trace_id: 1, ..handler(t, 1_400 * US) };
    // 1,400 us, 700 of them preempted: 700 us of its own work, slow.
    let slow = Sample { trace_id: 2, ..handler(t + 10_000 * US, 1_400 * US) };
    let v = vec![preempted, slow, off(t + 5 * US, 1_390 * US), off(t + 10_000 * US + 100 * US, 700 * US)];
    let r = analyse(&v, 0, Options { threshold_ns: Some(500 * US), messages: true, ..Options::default() });
    let cause = |id: u64| r.messages.iter().find(|m| m.message.trace_id == id).unwrap().cause;
    assert_eq!(cause(1), "loop_stall");
    assert_eq!(
        r.messages.iter().find(|m| m.message.trace_id == 1).unwrap().stall.as_deref(),
        Some("preempted by kthr")
    );
    assert_eq!(cause(2), "slow_handler");
    // A handler that spent 1,000 of its 1,200 us faulting pages in: a loop
    // stall, "page fault".
    let mut v = vec![Sample { trace_id: 3, ..handler(t, 1_200 * US) }];
    let burst = Interval {
        start_ns: t + 50 * US,
        end_ns: t + 1_050 * US,
        tid: 9,
        cpu: 1,
        what: What::Fault,
        id: 900,
        switches: 0,
        name: [0; 16],
    };
    v.push(burst.to_sample());
    let r = analyse(&v, 0, Options { threshold_ns: Some(500 * US), messages: true, ..Options::default() });
    let m = &r.messages[0];
    assert_eq!((m.cause, m.stall.as_deref()), ("loop_stall", Some("page fault")));
}
