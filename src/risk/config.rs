//! The config file's `[[accounts]]`, `[limits]` and `[prices]` tables
//! (docs/CONFIG.md, "Accounts and limits").
//!
//! A password is stored only as its argon2id hash (`tailgate
//! hash-password` makes one); a plain-text `password` key is refused, and
//! so is an account with no `sources`.

use serde::Deserialize;
use toml::Table;

use super::accounts::{Account, Accounts};
use super::cidr::Cidr;
use super::limits::{LimitsSpec, Specs};
use crate::proto::Code8;

/// Below these argon2id costs a hash is accepted with a warning (the
/// OWASP minimum: 19 MiB, two passes).
pub const MIN_MEMORY_KIB: u32 = 19 * 1024;
pub const MIN_PASSES: u32 = 2;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountToml {
    name: String,
    password_hash: Option<String>,
    password: Option<serde::de::IgnoredAny>,
    sources: Option<Vec<String>>,
    max_sessions: Option<u32>,
    cancel_on_disconnect: Option<bool>,
    #[serde(default)]
    limits: LimitsSpec,
}

/// What the tables hold, checked.
#[derive(Debug, Default)]
pub struct RiskConfig {
    pub accounts: Accounts,
    pub specs: Specs,
    /// Reference prices by symbol (`u64` code), sorted.
    pub prices: Vec<(u64, i64)>,
    /// Warnings to log (weak hashes).
    pub warnings: Vec<String>,
}

/// A symbol as the protocol carries it: 1 to 8 upper-case letters or digits.
pub fn symbol_code(s: &str) -> Option<u64> {
    let c = Code8::new(s)?;
    (c.as_str() == s && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
        .then(|| u64::from_le_bytes(c.0))
}

/// Check an argon2id PHC string; `Ok(Some(warning))` for a weak one.
pub fn check_hash(h: &str) -> Result<Option<String>, String> {
    let p = argon2::PasswordHash::new(h).map_err(|e| format!("not a PHC hash string ({e})"))?;
    if p.algorithm.as_str() != "argon2id" {
        return Err(format!("the hash is {}, and only argon2id is accepted", p.algorithm));
    }
    let params = argon2::Params::try_from(&p).map_err(|e| format!("its argon2id parameters: {e}"))?;
    if p.salt.is_none() || p.hash.is_none() {
        return Err("the hash string has no salt or no hash".into());
    }
    Ok((params.m_cost() < MIN_MEMORY_KIB || params.t_cost() < MIN_PASSES).then(|| {
        format!(
            "its argon2id cost (m={} KiB, t={}) is below m={MIN_MEMORY_KIB}, t={MIN_PASSES}: a stolen config is easy to crack",
            params.m_cost(),
            params.t_cost()
        )
    }))
}

/// Read the tables of `text` (a whole config file; other tables are
/// serve's flags and are not looked at here). `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<RiskConfig, String> {
    let doc: Table = toml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    let mut cfg = RiskConfig::default();
    if let Some(limits) = doc.get("limits") {
        let mut t = limits.as_table().ok_or_else(|| format!("{file}: [limits] must be a table"))?.clone();
        if let Some(r) = t.remove("restricted_symbols") {
            let list = r.as_array().ok_or_else(|| format!("{file}: [limits] restricted_symbols: expected an array"))?;
            for s in list {
                let code = s.as_str().and_then(symbol_code).ok_or_else(|| {
                    format!(
                        "{file}: [limits] restricted_symbols: {s} is not a symbol (1-8 upper-case letters or digits)"
                    )
                })?;
                cfg.specs.restricted.push(code);
            }
        }
        cfg.specs.defaults = t.try_into().map_err(|e| format!("{file}: [limits]: {e}"))?;
    }
    if let Some(prices) = doc.get("prices") {
        let t = prices.as_table().ok_or_else(|| format!("{file}: [prices] must be a table of SYMBOL = price"))?;
        for (sym, v) in t {
            let code = symbol_code(sym).ok_or_else(|| format!("{file}: [prices] {sym}: not a symbol"))?;
            let px = v.as_integer().filter(|&p| p > 0).ok_or_else(|| {
                format!("{file}: [prices] {sym}: the reference price must be a positive integer (ticks)")
            })?;
            cfg.prices.push((code, px));
        }
        cfg.prices.sort_unstable();
    }
    let mut list = Vec::new();
    if let Some(accts) = doc.get("accounts") {
        let arr = accts
            .as_array()
            .ok_or_else(|| format!("{file}: accounts are [[accounts]] entries (an array of tables)"))?;
        for (i, v) in arr.iter().enumerate() {
            let at = format!("{file}: [[accounts]] entry {}", i + 1);
            let a: AccountToml = v.clone().try_into().map_err(|e| format!("{at}: {e}"))?;
            let at = format!("{at} ({:?})", a.name);
            let name = Code8::new(&a.name)
                .filter(|c| c.as_str() == a.name && a.name.bytes().all(|b| b.is_ascii_graphic()))
                .ok_or_else(|| format!("{at}: the name must be 1 to 8 printable ASCII characters, no spaces"))?;
            if a.password.is_some() {
                return Err(format!(
                    "{at}: `password` is refused: store only its hash, `password_hash` (make one with `tailgate hash-password`)"
                ));
            }
            let hash =
                a.password_hash.ok_or_else(|| format!("{at}: needs `password_hash` (`tailgate hash-password`)"))?;
            if let Some(w) = check_hash(&hash).map_err(|e| format!("{at}: password_hash: {e}"))? {
                cfg.warnings.push(format!("{at}: password_hash: {w}"));
            }
            let sources = a.sources.ok_or_else(|| {
                format!(
                    "{at}: needs `sources`, the networks it may log on from (\"0.0.0.0/0\" allows any IPv4 address)"
                )
            })?;
            if sources.is_empty() {
                return Err(format!("{at}: `sources` is empty: the account could never log on"));
            }
            let sources = sources
                .iter()
                .map(|s| Cidr::parse(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{at}: sources: {e}"))?;
            let max_sessions = a.max_sessions.unwrap_or(1);
            if max_sessions == 0 {
                return Err(format!("{at}: max_sessions = 0: the account could never log on"));
            }
            list.push(Account {
                name,
                hash,
                sources,
                max_sessions,
                cancel_on_disconnect: a.cancel_on_disconnect.unwrap_or(true),
            });
            cfg.specs.accounts.push(a.limits);
        }
    }
    // One cost for all: an account whose hash costs more or less than the
    // others (and than the decoy an unknown account is hashed against)
    // would tell a stranger, by its timing, that it exists.
    let cost = |h: &str| {
        argon2::PasswordHash::new(h)
            .ok()
            .and_then(|p| argon2::Params::try_from(&p).ok())
            .map(|p| (p.m_cost(), p.t_cost(), p.p_cost()))
    };
    if let Some(first) = list.first() {
        let c0 = cost(&first.hash);
        if let Some(other) = list.iter().find(|a| cost(&a.hash) != c0) {
            return Err(format!(
                "{file}: [[accounts]] {:?} and {:?} have hashes of different argon2id costs: give every account the same                  (tailgate hash-password uses one), or a stranger could tell accounts apart by the time a logon takes",
                first.name.as_str(),
                other.name.as_str()
            ));
        }
    }
    cfg.accounts = Accounts::new(list).map_err(|e| format!("{file}: {e}"))?;
    Ok(cfg)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A cheap argon2id hash of `pw` (tests only: far below the minimum cost).
    pub(crate) fn cheap_hash(pw: &str) -> String {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let params = argon2::Params::new(64, 1, 1, None).unwrap();
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"tailgate-test-salt").unwrap();
        a.hash_password(pw.as_bytes(), &salt).unwrap().to_string()
    }

    fn file(accounts: &str) -> String {
        format!(
            "[listen]\nport = 1\n[limits]\nmax_order_qty = 1000\nrestricted_symbols = [\"BAD\"]\n\
             [prices]\nTGATE = 10000\n{accounts}"
        )
    }

    #[test]
    fn accounts_limits_and_prices_are_read() {
        let h = cheap_hash("s3cret");
        let text = file(&format!(
            "[[accounts]]\nname = \"ALPHA\"\npassword_hash = \"{h}\"\nsources = [\"198.18.0.0/15\"]\n\
             max_sessions = 2\n[accounts.limits]\nmax_order_qty = 10\n\
             [[accounts]]\nname = \"BETA\"\npassword_hash = \"{h}\"\nsources = [\"10.0.0.1\"]\ncancel_on_disconnect = false\n"
        ));
        let c = parse(&text, "t.toml").unwrap();
        assert_eq!(c.accounts.list.len(), 2);
        let a = &c.accounts.list[0];
        assert_eq!((a.name.as_str(), a.max_sessions, a.cancel_on_disconnect), ("ALPHA", 2, true));
        assert!(!c.accounts.list[1].cancel_on_disconnect);
        assert_eq!(c.specs.accounts[0].max_order_qty, Some(10));
        assert_eq!(c.specs.defaults.max_order_qty, Some(1000));
        assert_eq!(c.specs.restricted, vec![symbol_code("BAD").unwrap()]);
        assert_eq!(c.prices, vec![(symbol_code("TGATE").unwrap(), 10000)]);
        assert_eq!(c.warnings.len(), 2, "cheap hashes are warned about");
    }

    #[test]
    fn plain_passwords_and_unsafe_accounts_are_refused() {
        let h = cheap_hash("x");
        let cases = [
            ("name = \"A\"\npassword = \"hunter2\"\nsources = [\"10.0.0.0/8\"]", "`password` is refused"),
            ("name = \"A\"\nsources = [\"10.0.0.0/8\"]", "needs `password_hash`"),
            (&format!("name = \"A\"\npassword_hash = \"{h}\""), "needs `sources`"),
            (&format!("name = \"A\"\npassword_hash = \"{h}\"\nsources = []"), "is empty"),
            (&format!("name = \"A\"\npassword_hash = \"{h}\"\nsources = [\"10.0.0.1/8\"]"), "bits set past"),
            (&format!("name = \"TOO-LONG-NAME\"\npassword_hash = \"{h}\"\nsources = [\"::1\"]"), "1 to 8"),
            ("name = \"A\"\npassword_hash = \"$2b$12$abcdefghijklmnopqrstuv\"\nsources = [\"::1\"]", "PHC"),
            (&format!("name = \"A\"\npassword_hash = \"{h}\"\nsources = [\"::1\"]\nmax_sessions = 0"), "never log on"),
            (&format!("name = \"A\"\npassword_hash = \"{h}\"\nsources = [\"::1\"]\ncolour = 1"), "unknown field"),
        ];
        for (entry, want) in cases {
            let e = parse(&file(&format!("[[accounts]]\n{entry}\n")), "t.toml").unwrap_err();
            assert!(e.contains(want), "{entry:?}: {e}");
        }
        let e = parse(&format!("[[accounts]]\nname=\"A\"\npassword_hash=\"{h}\"\nsources=[\"::1\"]\n[[accounts]]\nname=\"A\"\npassword_hash=\"{h}\"\nsources=[\"::1\"]\n"), "t.toml").unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let dear = {
            use argon2::password_hash::{PasswordHasher, SaltString};
            let params = argon2::Params::new(128, 1, 1, None).unwrap();
            let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
            a.hash_password(b"x", &SaltString::encode_b64(b"tailgate-test-salt").unwrap()).unwrap().to_string()
        };
        let e = parse(&format!("[[accounts]]\nname=\"A\"\npassword_hash=\"{h}\"\nsources=[\"::1\"]\n[[accounts]]\nname=\"B\"\npassword_hash=\"{dear}\"\nsources=[\"::1\"]\n"), "t.toml").unwrap_err();
        assert!(e.contains("different argon2id costs"), "{e}");
        let e = parse("[limits]\nmax_order_qty = \"lots\"\n", "t.toml").unwrap_err();
        assert!(e.contains("[limits]"), "{e}");
        let e = parse("[limits]\nmax_qty = 1\n", "t.toml").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let e = parse("[prices]\nTGATE = -5\n", "t.toml").unwrap_err();
        assert!(e.contains("positive"), "{e}");
    }
}
