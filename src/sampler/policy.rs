//! Which messages are recorded.
//!
//! * A rate per message kind, in percent (`--sample market=100,limit=10`).
//!   The decision is deterministic: a per-kind credit accumulates the rate
//!   and a record is taken each time it passes 100 %, so 10 % records
//!   exactly every tenth message of that kind, with no random number.
//! * Auto-halving: every 100 ms the loop measures its message rate; above
//!   `max_rate` (messages/s) every rate is halved once per doubling of the
//!   excess (2x the limit: halved, 4x: quartered), and restored as soon as
//!   the rate is back under the limit.
//! * Tail bias: a message slower than `tail_ns` is recorded whatever the
//!   rate of its kind, so the slow tail is never sampled away.
//!
//! Configured by flags or an optional TOML file (flags win); see
//! [`SamplingConfig::from_toml`] for the file's keys.

use serde::Deserialize;

use super::kind;

/// Sampling configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplingConfig {
    /// Record nothing and read no extra clocks (`--sample off`).
    pub enabled: bool,
    /// Percent (0..=100) per [`kind`].
    pub rates: [u8; kind::COUNT],
    /// Messages per second above which rates are halved; 0: never.
    pub max_rate: u64,
    /// Messages slower than this are always recorded; 0: no tail bias.
    pub tail_ns: u64,
    /// Ring capacity in records (a power of two).
    pub ring: usize,
    /// Hold each record for its reply's ACK (the `ack` stage).
    pub acks: bool,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            enabled: true,
            rates: [100; kind::COUNT],
            max_rate: 0,
            tail_ns: 100_000,
            ring: super::ring::DEFAULT_CAPACITY,
            acks: true,
        }
    }
}

/// The optional file: `[sampling]` with these keys, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    sampling: Option<FileSampling>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSampling {
    enabled: Option<bool>,
    /// Percent for every kind not listed in `rates`.
    default_rate: Option<u8>,
    rates: Option<std::collections::BTreeMap<String, u8>>,
    max_rate: Option<u64>,
    tail_us: Option<u64>,
    ring: Option<usize>,
    acks: Option<bool>,
}

impl SamplingConfig {
    /// Apply a `--sample` spec: `off`, `on`, or `KIND=PCT[,KIND=PCT...]`
    /// where KIND is a message kind or `all`.
    pub fn apply_spec(&mut self, spec: &str) -> Result<(), String> {
        match spec {
            "off" => {
                self.enabled = false;
                return Ok(());
            }
            "on" => {
                self.enabled = true;
                return Ok(());
            }
            _ => {}
        }
        self.enabled = true;
        for part in spec.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("--sample {spec:?}: expected off, on, or KIND=PERCENT[,...], got {part:?}"))?;
            let pct = parse_pct(v).map_err(|e| format!("--sample {spec:?}: {k}: {e}"))?;
            self.set_rate(k.trim(), pct).map_err(|e| format!("--sample {spec:?}: {e}"))?;
        }
        Ok(())
    }

    fn set_rate(&mut self, k: &str, pct: u8) -> Result<(), String> {
        if k == "all" {
            self.rates = [pct; kind::COUNT];
            return Ok(());
        }
        let i = kind::parse(k)
            .ok_or_else(|| format!("unknown message kind {k:?} (kinds: all, {})", kind::NAMES.join(", ")))?;
        self.rates[usize::from(i)] = pct;
        Ok(())
    }

    /// Read a TOML file:
    ///
    /// ```toml
    /// [sampling]
    /// enabled = true
    /// default_rate = 100          # percent, every kind not in `rates`
    /// rates = { market = 100, limit = 10, cancel = 50 }
    /// max_rate = 200000           # messages/s; above it rates halve
    /// tail_us = 100               # slower than this: always recorded
    /// ring = 65536                # records, a power of two
    /// acks = true                 # hold each record for its reply's ACK
    /// ```
    pub fn from_toml(text: &str, what: &str) -> Result<SamplingConfig, String> {
        let f: File = toml::from_str(text).map_err(|e| format!("{what}: {e}"))?;
        let mut c = SamplingConfig::default();
        let Some(s) = f.sampling else { return Ok(c) };
        if let Some(e) = s.enabled {
            c.enabled = e;
        }
        if let Some(r) = s.default_rate {
            c.set_rate("all", check_pct(r).map_err(|e| format!("{what}: default_rate: {e}"))?)?;
        }
        for (k, v) in s.rates.unwrap_or_default() {
            let pct = check_pct(v).map_err(|e| format!("{what}: rates.{k}: {e}"))?;
            c.set_rate(&k, pct).map_err(|e| format!("{what}: rates: {e}"))?;
        }
        if let Some(m) = s.max_rate {
            c.max_rate = m;
        }
        if let Some(t) = s.tail_us {
            c.tail_ns = t.saturating_mul(1000);
        }
        if let Some(r) = s.ring {
            c.ring = r;
        }
        if let Some(a) = s.acks {
            c.acks = a;
        }
        c.validate().map_err(|e| format!("{what}: {e}"))?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !self.ring.is_power_of_two() || self.ring < 2 {
            return Err(format!("sampler ring {}: must be a power of two >= 2", self.ring));
        }
        Ok(())
    }

    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        if !self.enabled {
            return "sampling off".into();
        }
        let rates: Vec<String> = if self.rates.iter().all(|&r| r == self.rates[0]) {
            vec![format!("all={}", self.rates[0])]
        } else {
            kind::NAMES.iter().zip(self.rates).map(|(n, r)| format!("{n}={r}")).collect()
        };
        format!(
            "sampling {}%; max_rate {}; tail bias {}; ring {}",
            rates.join(","),
            if self.max_rate == 0 { "off".to_string() } else { format!("{}/s", self.max_rate) },
            if self.tail_ns == 0 { "off".to_string() } else { format!(">= {} us", self.tail_ns / 1000) },
            self.ring
        )
    }
}

fn parse_pct(v: &str) -> Result<u8, String> {
    let n: u64 = v.trim().trim_end_matches('%').parse().map_err(|_| format!("{v:?} is not a whole percentage"))?;
    check_pct(u8::try_from(n).unwrap_or(u8::MAX)).map_err(|_| format!("{n}% is over 100"))
}

fn check_pct(v: u8) -> Result<u8, String> {
    if v > 100 {
        return Err(format!("{v}% is over 100"));
    }
    Ok(v)
}

/// The sampling decision, one per loop.
#[derive(Debug)]
pub struct Policy {
    rates: [u32; kind::COUNT],
    credit: [u32; kind::COUNT],
    max_rate: u64,
    tail_ns: u64,
    /// Current halving: effective rate = rate >> shift.
    pub shift: u32,
    window_start: u64,
    window_msgs: u64,
}

/// How often the message rate is measured.
pub const WINDOW_NS: u64 = 100_000_000;

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Skip,
    Record,
    /// Recorded because it was slow (tail bias), not by its rate.
    Tail,
}

impl Policy {
    pub fn new(cfg: &SamplingConfig) -> Self {
        Policy {
            rates: cfg.rates.map(|r| u32::from(r) * 10),
            credit: [0; kind::COUNT],
            max_rate: cfg.max_rate,
            tail_ns: cfg.tail_ns,
            shift: 0,
            window_start: 0,
            window_msgs: 0,
        }
    }

    /// Decide for one message of `k` that took `latency_ns`.
    #[inline]
    pub fn decide(&mut self, k: u8, latency_ns: u64) -> Decision {
        self.window_msgs += 1;
        let i = usize::from(k).min(kind::COUNT - 1);
        let rate = self.rates[i] >> self.shift; // per mille
        let c = &mut self.credit[i];
        *c += rate;
        if *c >= 1000 {
            *c -= 1000;
            return Decision::Record;
        }
        if self.tail_ns != 0 && latency_ns >= self.tail_ns {
            return Decision::Tail;
        }
        Decision::Skip
    }

    /// Called with the loop's clock; re-measures the rate every window.
    pub fn tick(&mut self, now: u64) {
        if self.window_start == 0 {
            self.window_start = now;
            return;
        }
        let dt = now.saturating_sub(self.window_start);
        if dt < WINDOW_NS {
            return;
        }
        let rate = self.window_msgs.saturating_mul(1_000_000_000) / dt.max(1);
        self.shift = halvings(rate, self.max_rate);
        self.window_start = now;
        self.window_msgs = 0;
    }
}

/// How many times to halve at `rate` messages/s with limit `max` (0: none).
pub fn halvings(rate: u64, max: u64) -> u32 {
    if max == 0 || rate <= max {
        return 0;
    }
    let mut shift = 0;
    while (max << shift) < rate && shift < 16 {
        shift += 1;
    }
    shift
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_set_rates_and_errors_name_the_problem() {
        let mut c = SamplingConfig::default();
        c.apply_spec("all=0,market=100,limit=10,cancel=50").unwrap();
        assert_eq!(c.rates[usize::from(kind::MARKET)], 100);
        assert_eq!(c.rates[usize::from(kind::LIMIT)], 10);
        assert_eq!(c.rates[usize::from(kind::CANCEL)], 50);
        assert_eq!(c.rates[usize::from(kind::LOGON)], 0);
        c.apply_spec("off").unwrap();
        assert!(!c.enabled);
        let e = c.apply_spec("bogus=5").unwrap_err();
        assert!(e.contains("bogus") && e.contains("market"), "{e}");
        let e = c.apply_spec("limit=150").unwrap_err();
        assert!(e.contains("150"), "{e}");
        let e = c.apply_spec("limit").unwrap_err();
        assert!(e.contains("KIND=PERCENT"), "{e}");
        let e = c.apply_spec("limit=x").unwrap_err();
        assert!(e.contains("\"x\""), "{e}");
    }

    #[test]
    fn rates_are_exact_and_tail_bias_overrides_them() {
        let mut c = SamplingConfig::default();
        c.apply_spec("all=10,market=100,cancel=50").unwrap();
        c.tail_ns = 50_000;
        let mut p = Policy::new(&c);
        let count = |p: &mut Policy, k, lat| (0..1000).filter(|_| p.decide(k, lat) != Decision::Skip).count();
        assert_eq!(count(&mut p, kind::LIMIT, 1_000), 100);
        assert_eq!(count(&mut p, kind::MARKET, 1_000), 1000);
        assert_eq!(count(&mut p, kind::CANCEL, 1_000), 500);
        // Slow messages: all of them, whatever the rate.
        assert_eq!(count(&mut p, kind::LIMIT, 60_000), 1000);
        assert_eq!(p.decide(kind::LIMIT, 60_000), Decision::Tail);
    }

    #[test]
    fn rates_halve_above_the_limit_and_come_back() {
        assert_eq!(halvings(100, 0), 0);
        assert_eq!(halvings(1000, 1000), 0);
        assert_eq!(halvings(1500, 1000), 1);
        assert_eq!(halvings(4000, 1000), 2);
        assert_eq!(halvings(4001, 1000), 3);
        let c = SamplingConfig { max_rate: 1000, tail_ns: 0, ..SamplingConfig::default() };
        let mut p = Policy::new(&c);
        p.tick(1);
        // 400 messages in 100 ms = 4000/s: quartered.
        for _ in 0..400 {
            p.decide(kind::LIMIT, 0);
        }
        p.tick(1 + WINDOW_NS);
        assert_eq!(p.shift, 2);
        let n = (0..1000).filter(|_| p.decide(kind::LIMIT, 0) == Decision::Record).count();
        assert_eq!(n, 250);
        // The next window is quiet again (the 1000 above count: 10000/s,
        // so one more window first).
        p.tick(1 + 2 * WINDOW_NS);
        p.tick(1 + 3 * WINDOW_NS);
        assert_eq!(p.shift, 0);
    }

    #[test]
    fn toml_file_sets_everything_and_rejects_unknown_keys() {
        let c = SamplingConfig::from_toml(
            "[sampling]\ndefault_rate = 20\nrates = { market = 100 }\nmax_rate = 5000\ntail_us = 80\nring = 1024\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.rates[usize::from(kind::MARKET)], 100);
        assert_eq!(c.rates[usize::from(kind::LIMIT)], 20);
        assert_eq!((c.max_rate, c.tail_ns, c.ring), (5000, 80_000, 1024));
        let e = SamplingConfig::from_toml("[sampling]\nrate = 5\n", "t.toml").unwrap_err();
        assert!(e.contains("t.toml") && e.contains("rate"), "{e}");
        let e = SamplingConfig::from_toml("[sampling]\nring = 1000\n", "t.toml").unwrap_err();
        assert!(e.contains("1000"), "{e}");
        let e = SamplingConfig::from_toml("[sampling]\nrates = { nope = 1 }\n", "t.toml").unwrap_err();
        assert!(e.contains("nope"), "{e}");
    }
}
