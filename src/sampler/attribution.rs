//! Tail attribution: take the slow tail of the samples, give every slow
//! message one cause by fixed rules over its recorded timestamps and flags,
//! and group by cause and dominant stage. The rules are documented, with
//! their thresholds, in docs/ATTRIBUTION.md; keep the two in step.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

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
pub const CAUSES: [&str; 14] = [
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
    pub const REPLY_RETRANSMITTED: usize = 0;
    pub const LATE_PEER_ACK: usize = 1;
    pub const LOOP_STALL: usize = 2;
    pub const SLOW_HANDLER: usize = 3;
    pub const SAMPLER_INTERFERENCE: usize = 4;
    pub const RETRANSMISSION: usize = 5;
    pub const ZERO_WINDOW: usize = 6;
    pub const FILL_RING_STARVED: usize = 7;
    pub const TX_RING_OR_KICK: usize = 8;
    pub const QUEUED_BEHIND_BURST: usize = 9;
    pub const WAKEUP_LATENCY: usize = 10;
    pub const RX_PATH_DELAY: usize = 11;
    pub const UNEXPLAINED: usize = 12;
    pub const NONE: usize = 13;
}

/// The part of the ACK stage that counts as delay the client saw: all of
/// it when the reply (or a segment before it) was retransmitted, when the
/// ACK came [`LATE_ACK_NS`] or more after the reply, or when it never came
/// in time (then at least the deadline the record was held for). A prompt
/// or merely delayed ACK says nothing about the reply's latency: 0.
pub fn reply_delay(s: &Sample) -> u64 {
    let f = u32::from(s.cause);
    let ack = s.ack_ns();
    if f & cause::ACK_LATE != 0 {
        ack.max(super::tracer::ACK_DEADLINE_NS)
    } else if f & cause::REPLY_RETX != 0 || ack >= LATE_ACK_NS {
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

/// A sample's direct cause (an index into [`CAUSES`]) and its dominant
/// stage.
pub fn classify(s: &Sample, sig: u64, reporter: &[Sample]) -> (usize, usize) {
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

/// The causes that hold the loop or a connection, and so can make a
/// queue: what messages behind it are counted under.
const QUEUE_MAKERS: [usize; 4] = [id::LOOP_STALL, id::SLOW_HANDLER, id::SAMPLER_INTERFERENCE, id::RETRANSMISSION];

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
    sig: u64,
    by_iter: HashMap<u64, Vec<usize>>,
    direct: HashMap<usize, (usize, usize)>,
    root: HashMap<usize, usize>,
}

impl<'a> Roots<'a> {
    fn new(msgs: &'a [Sample], reporter: &'a [Sample], sig: u64) -> Self {
        let mut by_iter: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, s) in msgs.iter().enumerate() {
            by_iter.entry(s.loop_iter).or_default().push(i);
        }
        Roots { msgs, reporter, sig, by_iter, direct: HashMap::new(), root: HashMap::new() }
    }

    fn direct(&mut self, i: usize) -> (usize, usize) {
        if let Some(&d) = self.direct.get(&i) {
            return d;
        }
        let d = classify(&self.msgs[i], self.sig, self.reporter);
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
    let mut roots = Roots::new(&msgs, &reporter, opts.significant_ns);
    let mut groups: BTreeMap<(usize, &'static str, usize), Vec<&Sample>> = BTreeMap::new();
    let mut causes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut delayed: BTreeMap<&'static str, Delayed> = BTreeMap::new();
    let mut injected: Option<Injected> = None;
    let mut messages = Vec::new();
    for &i in &tail {
        let s = &msgs[i];
        let (direct, st) = roots.direct(i);
        let c = roots.root(i, QUEUE_DEPTH);
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
        if opts.messages {
            let stages = s.stages();
            messages.push(TailMessage {
                cause: CAUSES[c],
                via,
                direct: CAUSES[direct],
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
        delayed,
        acked: tail.iter().filter(|&&i| msgs[i].t_acked != 0).count(),
        rows,
        injected,
        messages,
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

fn describe(e: &Example) -> String {
    format!(
        "loop {} conn {} {} id {} iter {}: {} us, flags [{}], payload {}",
        e.loop_index,
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
        if !self.delayed.is_empty() {
            let mut by: Vec<(&str, Delayed)> = self.delayed.iter().map(|(c, d)| (*c, *d)).collect();
            by.sort_by(|a, b| (b.1.direct + b.1.queued).cmp(&(a.1.direct + a.1.queued)).then(a.0.cmp(b.0)));
            let by: Vec<String> = by
                .iter()
                .map(|(c, d)| {
                    format!("{c} {} ({} direct, {} through the queue)", d.direct + d.queued, d.direct, d.queued)
                })
                .collect();
            let _ = writeln!(o, "causes: {}", by.join(", "));
        }
        if let Some(i) = &self.injected {
            let by: Vec<String> = i.causes.iter().map(|(c, n)| format!("{c} {n}")).collect();
            let _ = writeln!(o, "injected: {} tail messages touched by --inject, named: {}", i.tail, by.join(", "));
        }
        if self.rows.is_empty() {
            return o;
        }
        let _ = write!(o, "{:<21} {:<6} {:<8} {:>6} {:>6}", "cause", "via", "stage", "count", "share");
        for s in STAGES {
            let _ = write!(o, " {:>17}", format!("{s} p50/max us"));
        }
        o.push('\n');
        for r in &self.rows {
            let _ = write!(o, "{:<21} {:<6} {:<8} {:>6} {:>5.1}%", r.cause, r.via, r.stage, r.count, r.share * 100.0);
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
                let _ = writeln!(o, "  {:<21} {:<6} {:<8} {}", m.cause, m.via, m.stage, describe(&m.message));
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
        // Parsed late because 30 messages of the same read went first: a
        // burst; because the one before it had a 1 ms handler: that.
        let late = |ns: u64| Sample {
            t_parsed: t + ns,
            t_handled: t + ns,
            t_tx_queued: t + ns,
            t_tx_done: t + ns,
            ..msg(t, US)
        };
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
