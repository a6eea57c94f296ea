//! Tail attribution: take the slow tail of the samples, give every slow
//! message one cause by fixed rules over its recorded timestamps and flags,
//! and group by cause and dominant stage. The rules are documented, with
//! their thresholds, in docs/ATTRIBUTION.md; keep the two in step.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{cause, kind, Sample, ACK_STAGE, STAGES};

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

/// An ACK this long after the reply left is late even without a
/// retransmission: longer than any delayed ACK (Linux holds one 200 ms at
/// most, `TCP_DELACK_MAX`).
pub const LATE_ACK_NS: u64 = 250_000_000;

/// Messages delivered by one poll from which a receive-path delay they
/// share is a burst queued in the kernel (the softirq's budget, the
/// backlog) rather than the receive path stalling on its own (at the lab's
/// rates a stalled receive path batches a handful), and a TX delay they
/// share is the burst's own replies going out in one flush.
pub const RX_BURST_MIN: usize = 16;

/// How many iterations back a queue is followed to what made it.
pub const QUEUE_DEPTH: usize = 16;

/// The causes, in the order the rules try them.
pub const CAUSES: [&str; 17] = [
    "exchange_slow",
    "upstream_retransmission",
    "upstream_down",
    "reply_retransmitted",
    "late_peer_ack",
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

/// Indices into [`CAUSES`].
pub mod id {
    pub const EXCHANGE_SLOW: usize = 0;
    pub const UPSTREAM_RETRANSMISSION: usize = 1;
    pub const UPSTREAM_DOWN: usize = 2;
    pub const REPLY_RETRANSMITTED: usize = 3;
    pub const LATE_PEER_ACK: usize = 4;
    pub const LOOP_STALL: usize = 5;
    pub const SLOW_HANDLER: usize = 6;
    pub const SAMPLER_INTERFERENCE: usize = 7;
    pub const RETRANSMISSION: usize = 8;
    pub const ZERO_WINDOW: usize = 9;
    pub const FILL_RING_STARVED: usize = 10;
    pub const TX_RING_OR_KICK: usize = 11;
    pub const QUEUED_BEHIND_BURST: usize = 12;
    pub const WAKEUP_LATENCY: usize = 13;
    pub const RX_PATH_DELAY: usize = 14;
    pub const UNEXPLAINED: usize = 15;
    pub const NONE: usize = 16;
}

/// The part of the ACK stage that counts as delay the client saw: all of
/// it when the reply (or a segment before it) was retransmitted, when the
/// ACK came [`LATE_ACK_NS`] or more after the reply, or when it never came
/// in time (then at least the deadline the record was held for). A prompt
/// or merely delayed ACK says nothing about the reply's latency: 0. Nor
/// does one (short of [`LATE_ACK_NS`]) whose retransmission was spurious:
/// the peer had the reply before our copy, and only its ACK was late.
pub fn reply_delay(s: &Sample) -> u64 {
    let f = u32::from(s.cause);
    let ack = s.ack_ns();
    if f & cause::ACK_LATE != 0 {
        ack.max(super::tracer::ACK_DEADLINE_NS)
    } else if ack >= LATE_ACK_NS || (f & cause::REPLY_RETX != 0 && f & cause::REPLY_SPURIOUS == 0) {
        ack
    } else {
        0
    }
}

/// The message's latency as the client saw it, as far as the gateway can
/// tell: in the gateway, plus [`reply_delay`].
pub fn seen_ns(s: &Sample) -> u64 {
    s.latency_ns() + reply_delay(s)
}

/// The stages the rules look at: [`Sample::stages`], with the ACK stage
/// cut to [`reply_delay`].
fn rule_stages(s: &Sample) -> [u64; 7] {
    let mut st = s.stages();
    st[ACK_STAGE] = reply_delay(s);
    st
}

/// The stage index that stands for the exchange leg in a row (after
/// [`STAGES`]): from the Enter Order queued to the exchange's answer.
pub const EXCHANGE_LEG: usize = STAGES.len();

/// A stage's name, the exchange leg's included.
pub fn stage_name(i: usize) -> &'static str {
    STAGES.get(i).copied().unwrap_or("exchange")
}

/// A sample's direct cause (an index into [`CAUSES`]) and its dominant
/// stage.
pub fn classify(s: &Sample, sig: u64, reporter: &[Sample]) -> (usize, usize) {
    if let Some(u) = s.upstream() {
        // The exchange's answer to an order: the exchange leg explains it
        // when it is at least half of the order's time and significant.
        let leg = u.leg_ns(s.arrival());
        if leg >= sig && leg.saturating_mul(2) >= s.latency_ns() {
            let c = if u.flags & crate::sampler::upstream_flag::RESENT != 0 {
                id::UPSTREAM_DOWN
            } else if u32::from(s.cause) & cause::RETRANSMIT != 0 {
                id::UPSTREAM_RETRANSMISSION
            } else {
                id::EXCHANGE_SLOW
            };
            return (c, EXCHANGE_LEG);
        }
    }
    let st = rule_stages(s);
    let [wait, queue, parse, handler, tx, tx_done, reply] = st;
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
    let c = if dominant == ACK_STAGE && reply >= sig {
        // The reply's trouble outweighs anything in the gateway.
        if flag(cause::REPLY_RETX) {
            id::REPLY_RETRANSMITTED
        } else {
            id::LATE_PEER_ACK
        }
    } else if (dominant == 0 && covers(prev_busy, wait) && prev_busy > u64::from(s.prev_msgs) * PER_MESSAGE_NS)
        || (dominant == 1 && covers(in_iter_other, queue) && in_iter_other > u64::from(s.batch_pos) * PER_MESSAGE_NS)
    {
        id::LOOP_STALL
    } else if (dominant == 3 && handler >= sig)
        || (dominant == 0 && covers(prev_handler, wait) && prev_handler > u64::from(s.prev_msgs) * PER_MESSAGE_NS)
        || (dominant == 1 && covers(iter_handler, queue) && iter_handler > u64::from(s.batch_pos) * PER_MESSAGE_NS)
        || (dominant == 2 && covers(iter_handler, parse) && iter_handler > u64::from(s.batch_pos) * PER_MESSAGE_NS)
    {
        // The handler time must be where the message spent most of its time
        // (a 25 us handler does not explain a 200 ms wait for a
        // retransmission), and more than many quick handlers add up to (a
        // burst of 500 messages at 2 us each is a burst, not a slow handler).
        id::SLOW_HANDLER
    } else if (flag(cause::SAMPLER) && dominant == 0 && covers(prev_iteration, wait))
        || overlaps_reporter(s, reporter, sig)
    {
        // The sampler ran in the previous iteration: it explains at most
        // that iteration's length.
        id::SAMPLER_INTERFERENCE
    } else if flag(cause::RETRANSMIT) && wait >= sig {
        id::RETRANSMISSION
    } else if flag(cause::ZERO_WINDOW) {
        id::ZERO_WINDOW
    } else if flag(cause::FILL_RING_STARVED) && wait >= sig && dominant == 0 {
        id::FILL_RING_STARVED
    } else if (dominant == 4 || dominant == 5)
        && (tx >= sig || tx_done >= sig || flag(cause::TX_FULL | cause::KICK_WAIT))
    {
        // Where the TX path's trouble shows: in the message's own send or
        // kick. The flags alone (set for a whole iteration) do not make a
        // burst's queue the TX ring's fault.
        id::TX_RING_OR_KICK
    } else if (dominant == 0 && s.prev_msgs >= BURST_MIN && covers(prev_iteration, wait))
        || (queue >= sig && s.batch_pos >= BURST_MIN)
        || (dominant == 2 && parse >= sig && s.batch_pos >= BURST_MIN)
    {
        id::QUEUED_BEHIND_BURST
    } else if dominant == 0 && wait >= sig && flag(cause::SLEPT) {
        id::WAKEUP_LATENCY
    } else if dominant == 0 && wait >= sig {
        // The loop was polling (its previous iteration cannot account for
        // the wait) and the frame was not there: it reached the ring or the
        // socket late.
        id::RX_PATH_DELAY
    } else if st.iter().any(|&v| v >= sig) {
        id::UNEXPLAINED
    } else {
        id::NONE
    };
    (c, dominant)
}

/// Causes the off-CPU trace overrides (the sampler's view of a thread that
/// was not running): what the kernel saw took the core instead.
const OVERRIDDEN_BY_TRACE: [usize; 8] = [
    id::SLOW_HANDLER,
    id::SAMPLER_INTERFERENCE,
    id::FILL_RING_STARVED,
    id::TX_RING_OR_KICK,
    id::QUEUED_BEHIND_BURST,
    id::WAKEUP_LATENCY,
    id::RX_PATH_DELAY,
    id::UNEXPLAINED,
];

/// The causes that hold the loop or a connection, and so can make a
/// queue: what messages behind it are counted under.
const QUEUE_MAKERS: [usize; 7] = [
    id::EXCHANGE_SLOW,
    id::UPSTREAM_RETRANSMISSION,
    id::UPSTREAM_DOWN,
    id::LOOP_STALL,
    id::SLOW_HANDLER,
    id::SAMPLER_INTERFERENCE,
    id::RETRANSMISSION,
];

/// Root causes: what made the queue a message waited in.
///
/// A message whose direct cause is `queued_behind_burst` waited behind
/// other messages: those of the previous iteration (its dominant stage is
/// `wait`) or those before it in its own iteration (`queue`, `parse`).
/// Those messages piled up for a reason of their own: if at least half of
/// them have one root cause among [`QUEUE_MAKERS`] (a stall, a slow
/// handler, the sampler, a retransmission: what holds the loop or the
/// connection), that cause made the queue and this message is counted
/// under it, through the queue. Followed back at most [`QUEUE_DEPTH`]
/// iterations. Otherwise (the messages were on time and simply many, or
/// slow only in their own sends and receive path, which a burst's volume
/// explains) the root is the burst itself.
struct Roots<'a> {
    msgs: &'a [Sample],
    reporter: &'a [Sample],
    stalls: &'a Stalls,
    sig: u64,
    by_iter: HashMap<u64, Vec<usize>>,
    direct: HashMap<usize, (usize, usize)>,
    root: HashMap<usize, usize>,
}

impl<'a> Roots<'a> {
    fn new(msgs: &'a [Sample], reporter: &'a [Sample], stalls: &'a Stalls, sig: u64) -> Self {
        let mut by_iter: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, s) in msgs.iter().enumerate() {
            by_iter.entry(s.loop_iter).or_default().push(i);
        }
        Roots { msgs, reporter, stalls, sig, by_iter, direct: HashMap::new(), root: HashMap::new() }
    }

    /// A message's direct cause: the rules', unless the off-CPU trace saw
    /// the loop's thread off its core for most of the message's time (then
    /// a loop stall, and the messages queued behind it follow it there).
    fn direct(&mut self, i: usize) -> (usize, usize) {
        if let Some(&d) = self.direct.get(&i) {
            return d;
        }
        let mut d = classify(&self.msgs[i], self.sig, self.reporter);
        let s = &self.msgs[i];
        let overridden = match d.0 {
            // A handler that did its own slow work stays slow, preempted
            // or not; one that was only preempted was not slow.
            id::SLOW_HANDLER if d.1 == 3 => self.stalls.preempted_handler(s, self.sig),
            c => OVERRIDDEN_BY_TRACE.contains(&c) && self.stalls.took_core(s, self.sig).is_some(),
        };
        if overridden {
            d.0 = id::LOOP_STALL;
        }
        self.direct.insert(i, d);
        d
    }

    fn root(&mut self, i: usize, depth: usize) -> usize {
        let (c, stage) = self.direct(i);
        if (c == id::RX_PATH_DELAY || c == id::TX_RING_OR_KICK)
            && self.by_iter.get(&self.msgs[i].loop_iter).map_or(0, Vec::len) >= RX_BURST_MIN
        {
            // Held in the receive path, or in one flush of the TX ring,
            // together with many others: the frames queued behind a burst
            // (before the loop saw them, or behind the burst's replies).
            return id::QUEUED_BEHIND_BURST;
        }
        if c != id::QUEUED_BEHIND_BURST || depth == 0 {
            return c;
        }
        if let Some(&r) = self.root.get(&i) {
            return r;
        }
        let s = self.msgs[i];
        let makers: Vec<usize> = if stage == 0 {
            self.by_iter.get(&s.loop_iter.wrapping_sub(1)).cloned().unwrap_or_default()
        } else {
            let same = self.by_iter.get(&s.loop_iter).cloned().unwrap_or_default();
            same.into_iter().filter(|&j| self.msgs[j].batch_pos < s.batch_pos).collect()
        };
        let mut votes = [0usize; CAUSES.len()];
        for &j in &makers {
            votes[self.root(j, depth - 1)] += 1;
        }
        let r = QUEUE_MAKERS
            .iter()
            .copied()
            .rev()
            .max_by_key(|&c| votes[c])
            .filter(|&c| votes[c] > 0 && votes[c] * 2 >= makers.len())
            .unwrap_or(id::QUEUED_BEHIND_BURST);
        self.root.insert(i, r);
        r
    }
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
    /// The loop that served it (one per NIC queue; 0 with one loop), and
    /// its iteration there.
    #[serde(rename = "loop")]
    pub loop_index: u8,
    pub loop_iter: u64,
    pub latency_us: f64,
    pub flags: Vec<&'static str>,
    pub payload_hex: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// The root cause.
    pub cause: &'static str,
    /// "direct": the cause delayed these messages itself; "queue": they
    /// waited behind messages it delayed (or, for `queued_behind_burst`,
    /// behind a burst).
    pub via: &'static str,
    pub stage: &'static str,
    pub count: usize,
    pub share: f64,
    pub stages: BTreeMap<&'static str, StageStat>,
    pub example: Example,
}

/// One tail message with its cause (`report --messages`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TailMessage {
    /// The root cause, and how it delayed the message ("direct" or
    /// "queue"), with the direct cause (`queued_behind_burst` when it
    /// waited behind others).
    pub cause: &'static str,
    pub via: &'static str,
    pub direct: &'static str,
    pub stage: &'static str,
    /// A loop stall's root cause, with the off-CPU trace ([`Stalls`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall: Option<String>,
    /// Its arrival and last stamp (CLOCK_MONOTONIC ns; the sample log's
    /// clock base turns them into wall time).
    pub t_arrival_ns: u64,
    pub t_end_ns: u64,
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

/// Tail messages a root cause delayed itself, and through the queue.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Delayed {
    pub direct: usize,
    pub queued: usize,
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
    /// Tail messages per root cause, over all stages.
    pub causes: BTreeMap<&'static str, usize>,
    /// The same, split: delayed directly and through the queue.
    pub delayed: BTreeMap<&'static str, Delayed>,
    /// Tail messages whose reply's ACK was seen (the ACK stage present).
    pub acked: usize,
    pub rows: Vec<Row>,
    /// Present when the tail holds messages a fault injector touched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub injected: Option<Injected>,
    /// Every tail message, with `Options::messages`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<TailMessage>,
    /// The log holds an off-CPU trace; what took the core in the tail's
    /// loop stalls ("preempted by COMM", ..., "unexplained"), by count.
    pub offcpu_traced: bool,
    pub stalls: BTreeMap<String, usize>,
    /// Replies whose retransmission was spurious: a late peer ACK (our
    /// timer fired too early), not delay the client saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spurious: Option<Spurious>,
}

/// Replies retransmitted for nothing: the peer had them, and its ACK
/// came late. Their ACK stage is left out of the client's latency.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Spurious {
    pub replies: usize,
    /// Their ACK stage (reply sent to ACK), p50 and max.
    pub ack_p50_us: f64,
    pub ack_max_us: f64,
}

fn spurious(msgs: &[Sample]) -> Option<Spurious> {
    let mut acks: Vec<u64> =
        msgs.iter().filter(|s| u32::from(s.cause) & cause::REPLY_SPURIOUS != 0).map(Sample::ack_ns).collect();
    acks.sort_unstable();
    let max = *acks.last()?;
    Some(Spurious { replies: acks.len(), ack_p50_us: us(pct(&acks, 0.5)), ack_max_us: us(max) })
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
    let stalls = Stalls::new(samples);
    let (reporter, msgs): (Vec<Sample>, Vec<Sample>) =
        samples.iter().filter(|s| s.msg_type != kind::OFFCPU).partition(|s| s.msg_type == kind::REPORTER);
    let mut stall_causes: BTreeMap<String, usize> = BTreeMap::new();
    let mut lat: Vec<u64> = msgs.iter().map(seen_ns).collect();
    lat.sort_unstable();
    let p999 = pct(&lat, 0.999);
    let (threshold, from) = match opts.threshold_ns {
        Some(t) => (t, "given"),
        None => (p999, "p99.9"),
    };
    let tail: Vec<usize> = if msgs.is_empty() {
        Vec::new()
    } else {
        (0..msgs.len()).filter(|&i| seen_ns(&msgs[i]) >= threshold).collect()
    };
    let mut roots = Roots::new(&msgs, &reporter, &stalls, opts.significant_ns);
    let mut groups: BTreeMap<(usize, &'static str, usize), Vec<&Sample>> = BTreeMap::new();
    let mut causes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut delayed: BTreeMap<&'static str, Delayed> = BTreeMap::new();
    let mut injected: Option<Injected> = None;
    let mut messages = Vec::new();
    for &i in &tail {
        let s = &msgs[i];
        let (direct, st) = roots.direct(i);
        let c = roots.root(i, QUEUE_DEPTH);
        // With the off-CPU trace: what took the core.
        let stall = if c == id::LOOP_STALL { stalls.name(s, opts.significant_ns) } else { None };
        let via = if direct == id::QUEUED_BEHIND_BURST || c == id::QUEUED_BEHIND_BURST { "queue" } else { "direct" };
        groups.entry((c, via, st)).or_default().push(s);
        *causes.entry(CAUSES[c]).or_default() += 1;
        let d = delayed.entry(CAUSES[c]).or_default();
        if via == "queue" {
            d.queued += 1;
        } else {
            d.direct += 1;
        }
        if u32::from(s.cause) & cause::INJECTED != 0 {
            let inj = injected.get_or_insert_with(Injected::default);
            inj.tail += 1;
            *inj.causes.entry(CAUSES[c]).or_default() += 1;
        }
        if let Some(w) = &stall {
            *stall_causes.entry(w.clone()).or_default() += 1;
        }
        if opts.messages {
            let stages = s.stages();
            messages.push(TailMessage {
                cause: CAUSES[c],
                via,
                direct: CAUSES[direct],
                stage: stage_name(st),
                stall,
                t_arrival_ns: s.arrival(),
                t_end_ns: s.end(),
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
        .map(|((c, via, st), v)| {
            let per: Vec<[u64; 7]> = v.iter().map(|s| s.stages()).collect();
            let mut stages = BTreeMap::new();
            for (i, name) in STAGES.iter().enumerate() {
                let mut xs: Vec<u64> = per.iter().map(|st| st[i]).collect();
                xs.sort_unstable();
                stages.insert(*name, StageStat { p50_us: us(pct(&xs, 0.5)), max_us: us(*xs.last().unwrap_or(&0)) });
            }
            let worst = v.iter().max_by_key(|s| seen_ns(s)).copied().copied().unwrap_or_default();
            Row {
                cause: CAUSES[c],
                via,
                stage: stage_name(st),
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
        spurious: spurious(&msgs),
        causes,
        delayed,
        acked: tail.iter().filter(|&&i| msgs[i].t_acked != 0).count(),
        rows,
        injected,
        messages,
        offcpu_traced: stalls.traced(),
        stalls: stall_causes,
    }
}

fn example(s: &Sample) -> Example {
    let n = usize::from(s.payload_len).min(s.payload.len());
    Example {
        trace_id: s.trace_id,
        conn: s.conn,
        msg_type: kind::name(s.msg_type),
        loop_index: s.loop_index(),
        loop_iter: s.iteration(),
        latency_us: us(seen_ns(s)),
        flags: (0..cause::NAMES.len())
            .filter(|i| u32::from(s.cause) & (1 << i) != 0)
            .map(|i| cause::NAMES[i])
            .collect(),
        payload_hex: s.payload[..n].iter().map(|b| format!("{b:02x}")).collect(),
    }
}

mod render;
mod stall;
pub use render::plot;
pub use stall::Stalls;

#[cfg(test)]
mod tests;
