//! The exporter's configuration: global defaults and a list of probes, each of exactly one kind.
//!
//! ```yaml
//! global:
//!   interval: 30s
//!   timeout: 10s
//!   max_concurrency: 32
//! probes:
//!   - name: backend-ready
//!     interval: 15s
//!     http:
//!       url: http://127.0.0.1:8080/api/ready
//! ```

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use stackmedic_common::config::{self as cfg, ConfigErrors};
use stackmedic_common::include;

use crate::probe::ProbeKindConfig;

/// The configuration used when no file is given: every container of the local Docker Engine.
pub const EMBEDDED_DEFAULT: &str = "\
# Embedded default: report every container of the local Docker Engine.
probes:
  - name: containers
    interval: 15s
    timeout: 10s
    docker: {}
";

/// What `--config.check` and the log say about a valid configuration without probes.
pub const NO_PROBES: &str =
    "no probes configured (0 probes): the exporter would export only its own metrics";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Defaults and limits.
    pub global: Global,
    /// The probes, in file order, with unique names.
    pub probes: Vec<ProbeSpec>,
}

/// Defaults and limits for all probes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    /// Interval of probes that set none.
    #[serde(default = "default_interval", with = "cfg::duration")]
    pub interval: Duration,
    /// Timeout of probes that set none.
    #[serde(default = "default_timeout", with = "cfg::duration")]
    pub timeout: Duration,
    /// Most probe runs in flight at once.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
}

impl Default for Global {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            timeout: default_timeout(),
            max_concurrency: default_concurrency(),
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_concurrency() -> usize {
    32
}

/// One probe: its name, schedule and kind-specific settings.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    /// Unique name; the `probe` label of every metric the probe exports.
    pub name: String,
    /// Time between the starts of two runs.
    pub interval: Duration,
    /// Longest a run may take before it counts as failed with reason `timeout`.
    pub timeout: Duration,
    /// Kind and kind-specific settings.
    pub kind: ProbeKindConfig,
    /// The entry as written, in compact JSON (a few dozen bytes where the parsed tree takes a
    /// kilobyte, for every probe), to tell an unchanged probe on reload (its state is kept);
    /// see [`ProbeSpec::unchanged`].
    pub raw: Box<str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Common {
    name: String,
    #[serde(default, with = "cfg::duration::option")]
    interval: Option<Duration>,
    #[serde(default, with = "cfg::duration::option")]
    timeout: Option<Duration>,
}

const COMMON_KEYS: &[&str] = &["name", "interval", "timeout"];

/// Loads and validates a configuration file with the probes of the files it includes, or the
/// embedded default when `path` is `None`.
///
/// # Errors
/// Every problem found, each with its path.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    let Some(path) = path else {
        let value = cfg::parse_yaml(EMBEDDED_DEFAULT).map_err(|e| {
            let mut errs = ConfigErrors::default();
            errs.push("", e);
            errs
        })?;
        return from_value(&value);
    };
    // `include: [exporter.d/*.yml]`: the probes of one file per stack.
    let doc = include::read(path, &["probes"])?;
    from_value(&doc.value).map_err(|errs| doc.locate(errs))
}

/// Validates a parsed document.
///
/// # Errors
/// Every problem found, each with its path.
pub fn from_value(value: &Value) -> Result<Config, ConfigErrors> {
    let mut errs = ConfigErrors::default();
    if !cfg::check_keys(value, "", &["global", "probes"], &mut errs) && !value.is_object() {
        return Err(errs);
    }
    let global = match value.get("global") {
        None | Some(Value::Null) => Some(Global::default()),
        Some(g) => cfg::typed::<Global>(g, "global", &mut errs),
    };
    if let Some(g) = &global {
        if g.max_concurrency == 0 {
            errs.push("global.max_concurrency", "must be at least 1");
        }
        if g.timeout > g.interval && !errs.has_any(&["global.timeout", "global.interval"]) {
            errs.push("global.timeout", "must not be longer than global.interval");
        }
    }
    let global = global.unwrap_or_default();
    // A probe that takes its interval or timeout from a global value with a problem is not
    // checked against that value: it is the default, not what the file says.
    let inherited = Inherited {
        interval: errs.has("global.interval") || errs.has("global") && !value["global"].is_object(),
        timeout: errs.has("global.timeout") || errs.has("global") && !value["global"].is_object(),
    };
    let mut probes = Vec::new();
    let mut names = BTreeSet::new();
    for (path, entry) in cfg::list_entries(value.get("probes"), "probes", &mut errs) {
        // Names are checked on the raw entry so that a duplicate is reported even when the
        // entry has other problems.
        if let Some(name) = entry.get("name").and_then(Value::as_str) {
            if !names.insert(name.to_string()) {
                errs.push(
                    cfg::join(&path, "name"),
                    format!("duplicate probe name {name:?}"),
                );
            }
        }
        if let Some(spec) = probe_spec(entry, &path, &global, inherited, &mut errs) {
            probes.push(spec);
        }
    }
    errs.into_result(Config { global, probes })
}

/// Which global defaults of probes had a problem of their own.
#[derive(Debug, Clone, Copy)]
struct Inherited {
    interval: bool,
    timeout: bool,
}

fn probe_spec(
    entry: &Value,
    path: &str,
    global: &Global,
    inherited: Inherited,
    errs: &mut ConfigErrors,
) -> Option<ProbeSpec> {
    let Some(map) = entry.as_object() else {
        errs.push(
            path,
            format!("expected a mapping, found {}", cfg::kind_of(entry)),
        );
        return None;
    };
    let common_part: serde_json::Map<String, Value> = map
        .iter()
        .filter(|(k, _)| COMMON_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // A key that is neither a common setting nor a kind name is a typo (`intervall`), not a
    // second kind: report it as an unknown field so the message points at the real mistake.
    let mut kind_keys: Vec<&String> = Vec::new();
    for key in map.keys().filter(|k| !COMMON_KEYS.contains(&k.as_str())) {
        if ProbeKindConfig::NAMES.contains(&key.as_str()) {
            kind_keys.push(key);
        } else {
            let known: Vec<&str> = COMMON_KEYS
                .iter()
                .chain(ProbeKindConfig::NAMES)
                .copied()
                .collect();
            errs.push(
                cfg::join(path, key),
                format!(
                    "unknown field `{key}`, expected one of {}",
                    cfg::quoted(&known)
                ),
            );
        }
    }
    let common = cfg::typed::<Common>(&Value::Object(common_part), path, errs);
    let kind = match kind_keys.as_slice() {
        [] => {
            errs.push(
                path,
                format!(
                    "no probe kind given; add one of {}",
                    cfg::quoted(ProbeKindConfig::NAMES)
                ),
            );
            None
        }
        [key] => {
            let one: serde_json::Map<String, Value> = [((*key).clone(), map[key.as_str()].clone())]
                .into_iter()
                .collect();
            let mut kind = cfg::typed::<ProbeKindConfig>(&Value::Object(one), path, errs);
            if let Some(k) = &mut kind {
                k.validate(&cfg::join(path, key), errs);
            }
            kind
        }
        many => {
            errs.push(
                path,
                format!(
                    "more than one probe kind given ({}); a probe has exactly one",
                    many.iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            None
        }
    };
    let common = common?;
    let name_ok = !common.name.is_empty()
        && common.name.len() <= 128
        && common
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
    if !name_ok {
        errs.push(
            cfg::join(path, "name"),
            "must be 1 to 128 characters of letters, digits, `_`, `-`, `.` or `:`",
        );
    }
    let interval = common.interval.unwrap_or(global.interval);
    let timeout = common.timeout.unwrap_or(global.timeout.min(interval));
    // A value that is the default because the file's own had a problem is not compared: the
    // problem was reported, and a comparison with the default would be a second one.
    let interval_known = if common.interval.is_some() {
        true
    } else {
        !errs.has(&cfg::join(path, "interval")) && !inherited.interval
    };
    let timeout_known = if common.timeout.is_some() {
        true
    } else {
        !errs.has(&cfg::join(path, "timeout")) && !inherited.timeout && interval_known
    };
    if interval < Duration::from_millis(100) {
        errs.push(cfg::join(path, "interval"), "must be at least 100ms");
    }
    if timeout.is_zero() {
        errs.push(cfg::join(path, "timeout"), "must be longer than 0s");
    }
    if timeout > interval && interval_known && timeout_known {
        errs.push(
            cfg::join(path, "timeout"),
            format!(
                "must not be longer than the interval ({})",
                humantime_fmt(interval)
            ),
        );
    }
    Some(ProbeSpec {
        name: common.name,
        interval,
        timeout,
        kind: kind?,
        raw: entry.to_string().into_boxed_str(),
    })
}

impl ProbeSpec {
    /// Whether `newer` is this probe as written and as read: the same entry and the same
    /// contents of the files it names (a replaced CA file makes a new probe).
    #[must_use]
    pub fn unchanged(&self, newer: &ProbeSpec) -> bool {
        self.raw == newer.raw && self.kind.tls() == newer.kind.tls()
    }
}

fn humantime_fmt(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = load(None).unwrap();
        assert_eq!(c.probes.len(), 1);
        assert_eq!(c.probes[0].kind.name(), "docker");
    }

    #[test]
    fn every_problem_is_reported() {
        let v = cfg::parse_yaml(
            "probes:\n  - name: a\n    http: {url: 'not a url'}\n  - name: a\n    interval: 1s\n    timeout: 5s\n    http: {url: 'http://127.0.0.1/'}\n  - name: c\n  - name: d\n    http: {url: 'http://x/'}\n    cors: {url: 'http://x/', origin: 'http://o'}\n",
        )
        .unwrap();
        let errs = from_value(&v).unwrap_err();
        let text = errs.to_string();
        assert!(text.contains("probes[0].http.url:"), "{text}");
        assert!(text.contains("probes[1].timeout:"), "{text}");
        assert!(text.contains("probes[1].name: duplicate"), "{text}");
        assert!(text.contains("probes[2]: no probe kind given"), "{text}");
        assert!(
            text.contains("probes[3]: more than one probe kind"),
            "{text}"
        );
    }
}
