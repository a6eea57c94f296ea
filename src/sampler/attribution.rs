//! Tail attribution: take the slow tail of the samples, give every slow
//! message one cause by fixed rules over its recorded timestamps and flags,
//! and group by cause and dominant stage. The rules are documented, with
//! their thresholds, in docs/ATTRIBUTION.md; keep the two in step.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{cause, kind, Sample, STAGES};

/// Report options.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The tail is every message at least this slow; `None`: the p99.9.
    pub threshold_ns: Option<u64>,
    /// A stage or a loop interval counts when it is at least this long.
    pub significant_ns: u64,
    /// List every tail message with its cause (`report --messages`).
    pub messages: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { threshold_ns: None, significant_ns: 20_000, messages: false }
    }
}

/// Messages before this one in an iteration (or in the previous one) from
/// which waiting behind them is a burst rather than a stall.
pub const BURST_MIN: u8 = 4;
/// Loop time per message that a burst explains; busy time beyond
/// `messages x this` is a stall.
pub const PER_MESSAGE_NS: u64 = 10_000;

/// The causes, in the order the rules try them.
pub const CAUSES: [&str; 12] = [
    "loop_stall",
    "slow_handler",
    "sampler_interference",
    "retransmission",
    "zero_window",
    "fill_ring_starved",
    "tx_ring_or_kick",
    "queued_behind_burst",
    "wakeup_latency",
    "rx_path_delay",
    "unexplained",
    "none",
];

/// A sample's cause (an index into [`CAUSES`]) and its dominant stage.
pub fn classify(s: &Sample, sig: u64, reporter: &[Sample]) -> (usize, usize) {
    let st = s.stages();
    let [wait, queue, _parse, handler, tx, tx_done] = st;
    // Ties go to the earliest stage.
    let dominant = (0..STAGES.len()).rev().max_by_key(|&i| st[i]).unwrap_or(0);
    let prev_busy = u64::from(s.prev_busy_ns);
    let prev_handler = u64::from(s.prev_handler_ns);
    let iter_handler = u64::from(s.iter_handler_ns);
    let in_iter_other = queue.saturating_sub(iter_handler);
    // How long the loop was away in the previous iteration.
    let prev_iteration = u64::from(s.prev_iter_ns);
    let flag = |f: u32| u32::from(s.cause) & f != 0;

    // A loop interval explains a wait only if it covers at least half of it.
    let covers = |interval: u64, waited: u64| interval >= sig && interval * 2 >= waited;
    let c = if (dominant == 0 && covers(prev_busy, wait) && prev_busy > u64::from(s.prev_msgs) * PER_MESSAGE_NS)
        || (dominant == 1 && covers(in_iter_other, queue) && in_iter_other > u64::from(s.batch_pos) * PER_MESSAGE_NS)
    {
        0
    } else if (dominant == 3 && handler >= sig)
        || (dominant == 0 && covers(prev_handler, wait))
        || (dominant == 1 && covers(iter_handler, queue))
    {
        // The handler time must be where the message spent most of its time:
        // a 25 us handler does not explain a 200 ms wait for a retransmission.
        1
    } else if (flag(cause::SAMPLER) && dominant == 0 && covers(prev_iteration, wait))
        || overlaps_reporter(s, reporter, sig)
    {
        // The sampler ran in the previous iteration: it explains at most
        // that iteration's length.
        2
    } else if flag(cause::RETRANSMIT) && wait >= sig {
        3
    } else if flag(cause::ZERO_WINDOW) {
        4
    } else if flag(cause::FILL_RING_STARVED) && wait >= sig && dominant == 0 {
        5
    } else if flag(cause::TX_FULL) || flag(cause::KICK_WAIT) || ((tx >= sig || tx_done >= sig) && dominant >= 4) {
        6
    } else if (dominant == 0 && s.prev_msgs >= BURST_MIN && covers(prev_iteration, wait))
        || (queue >= sig && s.batch_pos >= BURST_MIN)
    {
        7
    } else if dominant == 0 && wait >= sig && flag(cause::SLEPT) {
        8
    } else if dominant == 0 && wait >= sig {
        // The loop was polling (its previous iteration cannot account for
        // the wait) and the frame was not there: it reached the ring or the
        // socket late.
        9
    } else if st.iter().any(|&v| v >= sig) {
        10
    } else {
        11
    };
    (c, dominant)
}

/// Did reporter busy periods on this message's core, while it waited,
/// cover at least half of its wait (and a significant time)?
fn overlaps_reporter(s: &Sample, reporter: &[Sample], sig: u64) -> bool {
    let (a, b) = (s.arrival(), s.t_delivered);
    let covered: u64 = reporter
        .iter()
        .filter(|r| r.core == s.core)
        .map(|r| r.t_handled.min(b).saturating_sub(r.t_rx_frame.max(a)))
        .sum();
    covered >= sig && covered * 2 >= b.saturating_sub(a)
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct StageStat {
    pub p50_us: f64,
    pub max_us: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Example {
    pub trace_id: u64,
    pub conn: u32,
    #[serde(rename = "type")]
    pub msg_type: &'static str,
    pub loop_iter: u64,
    pub latency_us: f64,
    pub flags: Vec<&'static str>,
    pub payload_hex: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub cause: &'static str,
    pub stage: &'static str,
    pub count: usize,
    pub share: f64,
    pub stages: BTreeMap<&'static str, StageStat>,
    pub example: Example,
}

/// One tail message with its cause (`report --messages`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TailMessage {
    pub cause: &'static str,
    pub stage: &'static str,
    #[serde(flatten)]
    pub message: Example,
    /// Each stage in microseconds.
    pub stages_us: BTreeMap<&'static str, f64>,
    /// The loop's unexplained time and handler time in the previous
    /// iteration, in microseconds (what a stall or a slow handler leaves).
    pub prev_busy_us: f64,
    pub prev_handler_us: f64,
    /// Handler time earlier in its own iteration, in microseconds.
    pub iter_handler_us: f64,
}

/// Tail messages that a fault injector touched (flag `injected`), by the
/// cause the report gave them: how well the report recognised the fault
/// it was shown, beside the machine's own noise.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Injected {
    pub tail: usize,
    pub causes: BTreeMap<&'static str, usize>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub samples: usize,
    pub tail: usize,
    pub threshold_us: f64,
    /// "p99.9" or "given".
    pub threshold_from: &'static str,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub sampler_dropped: u64,
    /// Reporter busy periods recorded (longer than 20 us), and the cores
    /// they ran on.
    pub reporter_periods: usize,
    pub reporter_cores: Vec<u8>,
    /// The cause with the most tail messages ("none" for an empty tail).
    pub top_cause: &'static str,
    /// Tail messages per cause, over all stages.
    pub causes: BTreeMap<&'static str, usize>,
    pub rows: Vec<Row>,
    /// Present when the tail holds messages a fault injector touched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub injected: Option<Injected>,
    /// Every tail message, with `Options::messages`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<TailMessage>,
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Attribute the tail of `samples` (records of any kind; reporter records
/// are used for interference only).
pub fn analyse(samples: &[Sample], dropped: u64, opts: Options) -> Report {
    let (reporter, msgs): (Vec<Sample>, Vec<Sample>) = samples.iter().partition(|s| s.msg_type == kind::REPORTER);
    let mut lat: Vec<u64> = msgs.iter().map(Sample::latency_ns).collect();
    lat.sort_unstable();
    let p999 = pct(&lat, 0.999);
    let (threshold, from) = match opts.threshold_ns {
        Some(t) => (t, "given"),
        None => (p999, "p99.9"),
    };
    let tail: Vec<&Sample> =
        if msgs.is_empty() { Vec::new() } else { msgs.iter().filter(|s| s.latency_ns() >= threshold).collect() };
    let mut groups: BTreeMap<(usize, usize), Vec<&Sample>> = BTreeMap::new();
    let mut causes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut injected: Option<Injected> = None;
    let mut messages = Vec::new();
    for s in &tail {
        let (c, st) = classify(s, opts.significant_ns, &reporter);
        groups.entry((c, st)).or_default().push(s);
        *causes.entry(CAUSES[c]).or_default() += 1;
        if u32::from(s.cause) & cause::INJECTED != 0 {
            let i = injected.get_or_insert_with(Injected::default);
            i.tail += 1;
            *i.causes.entry(CAUSES[c]).or_default() += 1;
        }
        if opts.messages {
            let stages = s.stages();
            messages.push(TailMessage {
                cause: CAUSES[c],
                stage: STAGES[st],
                message: example(s),
                stages_us: STAGES.iter().zip(stages).map(|(n, v)| (*n, us(v))).collect(),
                prev_busy_us: us(u64::from(s.prev_busy_ns)),
                prev_handler_us: us(u64::from(s.prev_handler_ns)),
                iter_handler_us: us(u64::from(s.iter_handler_ns)),
            });
        }
    }
    let mut rows: Vec<Row> = groups
        .into_iter()
        .map(|((c, st), v)| {
            let per: Vec<[u64; 6]> = v.iter().map(|s| s.stages()).collect();
            let mut stages = BTreeMap::new();
            for (i, name) in STAGES.iter().enumerate() {
                let mut xs: Vec<u64> = per.iter().map(|st| st[i]).collect();
                xs.sort_unstable();
                stages.insert(*name, StageStat { p50_us: us(pct(&xs, 0.5)), max_us: us(*xs.last().unwrap_or(&0)) });
            }
            let worst = v.iter().max_by_key(|s| s.latency_ns()).copied().copied().unwrap_or_default();
            Row {
                cause: CAUSES[c],
                stage: STAGES[st],
                count: v.len(),
                share: (v.len() as f64 / tail.len().max(1) as f64 * 1000.0).round() / 1000.0,
                stages,
                example: example(&worst),
            }
        })
        .collect();
    rows.sort_by(|a, b| b.count.cmp(&a.count).then(a.cause.cmp(b.cause)));
    // Most tail messages; ties go to the rule tried first (`max_by_key`
    // keeps the last of equals, and the causes are walked in reverse).
    let top_cause = CAUSES
        .iter()
        .rev()
        .filter_map(|c| causes.get(c).map(|n| (*c, *n)))
        .max_by_key(|&(_, n)| n)
        .map_or("none", |(c, _)| c);
    Report {
        samples: msgs.len(),
        tail: tail.len(),
        threshold_us: us(threshold),
        threshold_from: from,
        p50_us: us(pct(&lat, 0.5)),
        p99_us: us(pct(&lat, 0.99)),
        p999_us: us(p999),
        max_us: us(*lat.last().unwrap_or(&0)),
        sampler_dropped: dropped,
        reporter_periods: reporter.len(),
        reporter_cores: {
            let mut c: Vec<u8> = reporter.iter().map(|r| r.core).collect();
            c.sort_unstable();
            c.dedup();
            c
        },
        top_cause,
        causes,
        rows,
        injected,
        messages,
    }
}

fn example(s: &Sample) -> Example {
    let n = usize::from(s.payload_len).min(32);
    Example {
        trace_id: s.trace_id,
        conn: s.conn,
        msg_type: kind::name(s.msg_type),
        loop_iter: s.loop_iter,
        latency_us: us(s.latency_ns()),
        flags: (0..cause::NAMES.len())
            .filter(|i| u32::from(s.cause) & (1 << i) != 0)
            .map(|i| cause::NAMES[i])
            .collect(),
        payload_hex: s.payload[..n].iter().map(|b| format!("{b:02x}")).collect(),
    }
}

fn describe(e: &Example) -> String {
    format!(
        "conn {} {} id {} iter {}: {} us, flags [{}], payload {}",
        e.conn,
        e.msg_type,
        e.trace_id,
        e.loop_iter,
        e.latency_us,
        e.flags.join(","),
        e.payload_hex
    )
}

impl Report {
    /// The table for a terminal.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "samples {}: p50 {} us, p99 {} us, p99.9 {} us, max {} us",
            self.samples, self.p50_us, self.p99_us, self.p999_us, self.max_us
        );
        if self.sampler_dropped > 0 {
            let _ = writeln!(
                o,
                "WARNING: the sampler ring overflowed and dropped {} records; the tail may be incomplete",
                self.sampler_dropped
            );
        }
        if self.reporter_periods > 0 {
            let cores: Vec<String> = self.reporter_cores.iter().map(|c| c.to_string()).collect();
            let _ = writeln!(
                o,
                "reporter: {} busy periods over 20 us, on cores {}",
                self.reporter_periods,
                cores.join(",")
            );
        }
        let _ = writeln!(
            o,
            "tail: {} messages at or above {} us ({}); top cause: {}",
            self.tail, self.threshold_us, self.threshold_from, self.top_cause
        );
        if let Some(i) = &self.injected {
            let by: Vec<String> = i.causes.iter().map(|(c, n)| format!("{c} {n}")).collect();
            let _ = writeln!(o, "injected: {} tail messages touched by --inject, named: {}", i.tail, by.join(", "));
        }
        if self.rows.is_empty() {
            return o;
        }
        let _ = write!(o, "{:<21} {:<8} {:>6} {:>6}", "cause", "stage", "count", "share");
        for s in STAGES {
            let _ = write!(o, " {:>17}", format!("{s} p50/max us"));
        }
        o.push('\n');
        for r in &self.rows {
            let _ = write!(o, "{:<21} {:<8} {:>6} {:>5.1}%", r.cause, r.stage, r.count, r.share * 100.0);
            for s in STAGES {
                let st = r.stages[s];
                let _ = write!(o, " {:>17}", format!("{}/{}", st.p50_us, st.max_us));
            }
            o.push('\n');
            let _ = writeln!(o, "  e.g. {}", describe(&r.example));
        }
        if !self.messages.is_empty() {
            let _ = writeln!(o, "tail messages:");
            for m in &self.messages {
                let _ = writeln!(o, "  {:<21} {:<8} {}", m.cause, m.stage, describe(&m.message));
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
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
        let s =
            Sample { cause: (cause::SAMPLER | cause::RETRANSMIT) as u16, prev_iter_ns: 60_000, ..msg(t, 200_000 * US) };
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
        assert_eq!(
            cause_of(&Sample { prev_msgs: 30, prev_iter_ns: 600_000, ..msg(t, 300 * US) }),
            "queued_behind_burst"
        );
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
    }

    #[test]
    fn reporter_overlap_on_the_same_core_is_interference() {
        let t = 10_000_000;
        let s = msg(t, 50 * US);
        let r =
            Sample { t_rx_frame: t - 40 * US, t_handled: t, core: 0, msg_type: kind::REPORTER, ..Sample::default() };
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
}
