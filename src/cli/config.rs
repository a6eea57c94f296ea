//! `serve --config FILE`: serve's flags from a TOML file, and
//! `serve --print-config`: the effective configuration as that file.
//!
//! Every serve flag is a key, the flag's name without `--`, in the table
//! named by its `--help` heading (`HEADINGS`). The file's keys become
//! `--key=value` arguments after the command line's, except for the flags
//! the command line gives itself: flags override the file. Each value is
//! checked by its flag's own parser before the merge, so an error names the
//! file, the line, the table and the key. docs/CONFIG.md describes the file.

use std::any::TypeId;
use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use toml::de::{DeTable, DeValue};

use super::list::List;

pub(crate) const LISTEN: &str = "Listen and app";
pub(crate) const XDP: &str = "XDP";
pub(crate) const LOOPS: &str = "Loops and CPUs";
pub(crate) const CONNECTIONS: &str = "Connections";
pub(crate) const CAPTURE: &str = "Capture";
pub(crate) const SAMPLING: &str = "Sampling and metrics";
pub(crate) const INJECT: &str = "Fault injection";
pub(crate) const UPSTREAM: &str = "Upstream (the exchange)";
pub(crate) const ADMIN: &str = "Admin";
pub(crate) const JOURNAL: &str = "Journal";
pub(crate) const CONFIG: &str = "Configuration file";

/// The config file's tables, in the order `--print-config` prints them,
/// with the `--help` heading whose flags each one holds.
pub(crate) const HEADINGS: [(&str, &str); 10] = [
    ("listen", LISTEN),
    ("upstream", UPSTREAM),
    ("admin", ADMIN),
    ("journal", JOURNAL),
    ("xdp", XDP),
    ("loops", LOOPS),
    ("connections", CONNECTIONS),
    ("capture", CAPTURE),
    ("sampling", SAMPLING),
    ("inject", INJECT),
];

/// Tables that are not flags: the accounts and limits, read by
/// `cli/accounts.rs` (`risk::config`).
const RISK_TABLES: [&str; 3] = ["accounts", "limits", "prices"];

/// What a key's TOML value may be, from its flag's parser.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Int,
    Switch,
    List,
    Many,
    Text,
}

fn kind(arg: &clap::Arg) -> Kind {
    let t = arg.get_value_parser().type_id();
    let ints =
        [TypeId::of::<u8>(), TypeId::of::<u16>(), TypeId::of::<u32>(), TypeId::of::<u64>(), TypeId::of::<usize>()];
    if matches!(arg.get_action(), ArgAction::Append) {
        Kind::Many
    } else if ints.iter().any(|i| t == *i) {
        Kind::Int
    } else if t == TypeId::of::<bool>() {
        Kind::Switch
    } else if t == TypeId::of::<List>() {
        Kind::List
    } else {
        Kind::Text
    }
}

/// A serve flag that is a config key: its table, key and kind.
struct Key<'a> {
    table: &'static str,
    arg: &'a clap::Arg,
}

impl Key<'_> {
    fn name(&self) -> &str {
        self.arg.get_long().unwrap_or_default()
    }
}

/// Serve's config keys in `--help` order, table by table.
fn keys(serve: &Command) -> Vec<Key<'_>> {
    let mut v = Vec::new();
    for (table, heading) in HEADINGS {
        for arg in serve.get_arguments() {
            if arg.get_help_heading() == Some(heading) && !arg.is_hide_set() && arg.get_long().is_some() {
                v.push(Key { table, arg });
            }
        }
    }
    v
}

/// A config error: printed as `tailgate: error: …`, exit status 2.
pub(crate) struct ConfigError(pub(crate) String);

/// Parse the command line, reading `serve --config FILE` into it; print
/// `--print-config` and stop there. `Err` carries the exit status, the
/// error already printed.
pub(crate) fn parse_args(cmd: Command, argv: Vec<OsString>) -> Result<ArgMatches, ExitCode> {
    let first = cmd.clone().try_get_matches_from(&argv).unwrap_or_else(|e| e.exit());
    let Some(("serve", sm)) = first.subcommand() else { return Ok(first) };
    let serve = cmd.find_subcommand("serve").expect("serve is a subcommand").clone();
    let mut argv = argv;
    if let Some(path) = sm.get_one::<std::path::PathBuf>("config") {
        match from_file(&serve, sm, path) {
            Ok(extra) => argv.extend(extra),
            Err(ConfigError(e)) => {
                eprintln!("tailgate: error: {e}");
                return Err(ExitCode::from(2));
            }
        }
        // The accounts and limits are read again by serve; a mistake in
        // them is a config error like any other.
        let checked = std::fs::read_to_string(path)
            .map_err(|e| format!("--config {}: {e}", path.display()))
            .and_then(|text| tailgate::risk::config::parse(&text, &path.display().to_string()));
        if let Err(e) = checked {
            eprintln!("tailgate: error: {e}");
            return Err(ExitCode::from(2));
        }
    }
    let m = cmd.try_get_matches_from(&argv).unwrap_or_else(|e| e.exit());
    let sm = m.subcommand_matches("serve").expect("still serve");
    for required in ["ip", "port"] {
        if sm.get_raw(required).is_none() {
            eprintln!("tailgate: error: serve needs --{required}, or `{required}` in [listen] of --config FILE");
            return Err(ExitCode::from(2));
        }
    }
    if sm.get_flag("print_config") {
        print!("{}", render(&serve, sm));
        return Err(ExitCode::SUCCESS);
    }
    Ok(m)
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The file's keys as `--key=value` arguments, each checked by its flag's
/// parser; keys the command line gives are left out.
pub(crate) fn from_file(serve: &Command, given: &ArgMatches, path: &Path) -> Result<Vec<OsString>, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("--config {file}: {e}")))?;
    let doc = DeTable::parse(&text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(&text, s.start));
        ConfigError(format!("{file}:{line}: not TOML: {}", e.message().trim_end()))
    })?;
    let keys = keys(serve);
    let home = |name: &str| keys.iter().find(|k| k.name() == name).map(|k| k.table);
    let mut out = Vec::new();
    for (tname, tval) in doc.get_ref().iter() {
        let tline = line_of(&text, tname.span().start);
        let tname = tname.get_ref().as_ref();
        let at = |line: usize| format!("{file}:{line}");
        if RISK_TABLES.contains(&tname) {
            continue;
        }
        if tname == "upstream" {
            if let Some(sessions) = tval.get_ref().as_array() {
                out.extend(sessions_of(sessions, given, &at(tline))?);
                continue;
            }
        }
        let Some(table) = tval.get_ref().as_table() else {
            let hint = match home(tname) {
                Some(t) => format!(" (it belongs in [{t}])"),
                None => String::new(),
            };
            return Err(ConfigError(format!("{}: key `{tname}` is outside any table{hint}", at(tline))));
        };
        if !HEADINGS.iter().any(|(t, _)| *t == tname) {
            let why = format!(
                "is not a table of serve's config (tables: {}, and [[accounts]], [limits], [prices])",
                table_names()
            );
            return Err(ConfigError(format!("{}: [{tname}] {why}", at(tline))));
        }
        for (kname, kval) in table.iter() {
            let line = line_of(&text, kname.span().start);
            let kname = kname.get_ref().as_ref();
            let Some(key) = keys.iter().find(|k| k.name() == kname && k.table == tname) else {
                let hint = match home(kname) {
                    Some(t) => format!(" (it belongs in [{t}])"),
                    None => " (docs/CONFIG.md lists the keys)".to_string(),
                };
                return Err(ConfigError(format!("{}: unknown key `{kname}` in [{tname}]{hint}", at(line))));
            };
            let id = key.arg.get_id().as_str();
            if given.value_source(id) == Some(ValueSource::CommandLine) {
                continue;
            }
            let values = values(key, kval.get_ref())
                .map_err(|e| ConfigError(format!("{}: [{tname}] {kname}: {e}", at(line))))?;
            for v in values {
                let flag = OsString::from(format!("--{kname}={v}"));
                if let Err(e) = serve.clone().try_get_matches_from([OsString::from("serve"), flag.clone()]) {
                    let msg = e.to_string();
                    let first = msg.lines().next().unwrap_or_default().trim_start_matches("error: ");
                    return Err(ConfigError(format!("{}: [{tname}] {kname}: {first}", at(line))));
                }
                out.push(flag);
            }
        }
    }
    Ok(out)
}

/// `[[upstream]]`: one table per loop's exchange session, in loop order
/// (`address`, `username`, `password_file`, `state`), as `--upstream`,
/// `--upstream-user`, `--upstream-password-file` and `--upstream-state`. Every session goes to
/// one address with one password file; flags on the command line win.
fn sessions_of(
    sessions: &[toml::Spanned<DeValue<'_>>],
    given: &ArgMatches,
    at: &str,
) -> Result<Vec<OsString>, ConfigError> {
    let err = |m: String| ConfigError(format!("{at}: [[upstream]] {m}"));
    let (mut addr, mut pwf, mut state, mut users) = (None::<String>, None::<String>, None::<String>, Vec::new());
    for (i, s) in sessions.iter().enumerate() {
        let t = s.get_ref().as_table().ok_or_else(|| err(format!("entry {}: not a table", i + 1)))?;
        let get = |k: &str| -> Result<Option<String>, ConfigError> {
            match t.get(k).map(|v| v.get_ref()) {
                None => Ok(None),
                Some(DeValue::String(v)) => Ok(Some(v.to_string())),
                Some(_) => Err(err(format!("entry {}: `{k}` must be a string", i + 1))),
            }
        };
        for (k, _) in t.iter() {
            let k = k.get_ref().as_ref();
            if k == "password" {
                return Err(err(format!(
                    "entry {}: `password` is not read: put it in a file only its owner can read, and name it in `password_file`",
                    i + 1
                )));
            }
            if !["address", "username", "password_file", "state"].contains(&k) {
                return Err(err(format!(
                    "entry {}: unknown key `{k}` (address, username, password_file, state)",
                    i + 1
                )));
            }
        }
        let need = |v: Option<String>, k: &str| v.ok_or_else(|| err(format!("entry {}: needs `{k}`", i + 1)));
        let a = need(get("address")?, "address")?;
        let p = need(get("password_file")?, "password_file")?;
        users.push(need(get("username")?, "username")?);
        let st = get("state")?;
        if addr.as_ref().is_some_and(|x| *x != a) || pwf.as_ref().is_some_and(|x| *x != p) || (i > 0 && state != st) {
            return Err(err(
                "every session goes to one address with one password_file and one state in this version".into()
            ));
        }
        (addr, pwf, state) = (Some(a), Some(p), st);
    }
    let mut out = Vec::new();
    let cli = |id: &str| given.value_source(id) == Some(ValueSource::CommandLine);
    if let (Some(a), false) = (addr, cli("upstream")) {
        out.push(OsString::from(format!("--upstream={a}")));
    }
    if let (Some(p), false) = (pwf, cli("upstream_password_file")) {
        out.push(OsString::from(format!("--upstream-password-file={p}")));
    }
    if let (Some(d), false) = (state, cli("upstream_state")) {
        out.push(OsString::from(format!("--upstream-state={d}")));
    }
    if !cli("upstream_user") {
        out.extend(users.into_iter().map(|u| OsString::from(format!("--upstream-user={u}"))));
    }
    Ok(out)
}

fn table_names() -> String {
    HEADINGS.iter().map(|(t, _)| format!("[{t}]")).collect::<Vec<_>>().join(" ")
}

fn integer(v: &DeValue<'_>) -> Option<String> {
    let i = v.as_integer()?;
    i128::from_str_radix(i.as_str(), i.radix()).ok().map(|n| n.to_string())
}

/// A key's TOML value as its flag's value(s).
fn values(key: &Key<'_>, v: &DeValue<'_>) -> Result<Vec<String>, String> {
    let found = || {
        let t = v.type_str();
        let a = if t.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
        format!("found {a} {t}")
    };
    let one = |s: String| Ok(vec![s]);
    match kind(key.arg) {
        Kind::Int => integer(v).map_or_else(|| Err(format!("expected an integer, {}", found())), one),
        Kind::Switch => match v {
            DeValue::Boolean(b) => one(if *b { "on" } else { "off" }.into()),
            _ => Err(format!("expected true or false, {}", found())),
        },
        Kind::List => match v {
            DeValue::Integer(_) => one(integer(v).unwrap_or_default()),
            DeValue::String(s) => one(s.to_string()),
            DeValue::Array(a) => {
                let items: Option<Vec<String>> = a.iter().map(|e| integer(e.get_ref())).collect();
                let items = items.ok_or("expected an array of integers")?;
                one(items.join(","))
            }
            _ => Err(format!("expected an integer, an array of integers or a string such as \"0-3\", {}", found())),
        },
        Kind::Many => match v {
            DeValue::String(s) => one(s.to_string()),
            DeValue::Array(a) => a
                .iter()
                .map(|e| {
                    e.get_ref().as_str().map(str::to_string).ok_or_else(|| "expected an array of strings".to_string())
                })
                .collect(),
            _ => Err(format!("expected a string or an array of strings, {}", found())),
        },
        Kind::Text => match v {
            DeValue::String(s) => one(s.to_string()),
            _ => Err(format!("expected a string, {}", found())),
        },
    }
}

/// The effective configuration (flags, the file, defaults) as a config file.
pub(crate) fn render(serve: &Command, m: &ArgMatches) -> String {
    let mut out = String::from(
        "# tailgate serve: the effective configuration (flags over --config over defaults).\n\
         # Load it with `tailgate serve --config FILE`; docs/CONFIG.md describes each key.\n",
    );
    let mut last = "";
    for key in keys(serve) {
        if key.table != last {
            out.push_str(&format!("\n[{}]\n", key.table));
            last = key.table;
        }
        let id = key.arg.get_id().as_str();
        let name = key.name();
        let Some(raw) = m.get_raw(id) else {
            out.push_str(&format!("# {name} (not set)\n"));
            continue;
        };
        let raw: Vec<String> = raw.map(|s| s.to_string_lossy().into_owned()).collect();
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        let value = match kind(key.arg) {
            Kind::Int => {
                raw[0].trim_start_matches('+').parse::<i128>().map_or_else(|_| quote(&raw[0]), |n| n.to_string())
            }
            Kind::Switch => m.get_one::<bool>(id).copied().unwrap_or_default().to_string(),
            Kind::List => match raw[0].parse::<u64>() {
                Ok(n) => n.to_string(),
                Err(_) => quote(&raw[0]),
            },
            Kind::Many => format!("[{}]", raw.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ")),
            Kind::Text => quote(&raw[0]),
        };
        out.push_str(&format!("{name} = {value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
    }
}
