//! Strict configuration loading that reports every problem with its path.
//!
//! A file is parsed from YAML into a generic tree first. Each part of it (the global section,
//! each list entry) is then deserialized into its typed form on its own, so one bad entry does
//! not hide the problems of the next, and every problem carries a path such as
//! `probes[3].http.url`. Types that can be checked while deserializing (durations, regular
//! expressions, URLs) are parsed there; cross-field checks run afterwards and push onto the same
//! [`ConfigErrors`].

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// One configuration problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path inside the document, such as `probes[3].url`; empty for the document itself.
    pub path: String,
    /// What is wrong, lower case, without a trailing period.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one configuration document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The problems in document order.
    pub problems: Vec<Problem>,
}

impl ConfigErrors {
    /// Records a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// True when no problem was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// `Ok(value)` when no problem was recorded, otherwise the problems.
    ///
    /// # Errors
    /// Returns `self` when it holds at least one problem.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and parses a YAML file into a generic tree.
///
/// # Errors
/// A file that cannot be read or is not valid YAML gives one problem naming the file.
pub fn read_yaml_file(path: &Path) -> Result<Value, ConfigErrors> {
    let mut errs = ConfigErrors::default();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_yaml(&text).map_err(|e| {
            errs.push("", format!("{}: {e}", path.display()));
            errs
        }),
        Err(e) => {
            errs.push("", format!("cannot read {}: {e}", path.display()));
            Err(errs)
        }
    }
}

/// Parses YAML text into a generic tree; an empty document is an empty mapping.
///
/// # Errors
/// Returns the parser's message, which includes the line and column.
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    let value: Value = serde_saphyr::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
    Ok(match value {
        Value::Null => Value::Object(Default::default()),
        v => v,
    })
}

/// Joins a base path and a child path as `base.child` or `base[3]`.
#[must_use]
pub fn join(base: &str, child: &str) -> String {
    if base.is_empty() {
        child.to_string()
    } else if child.is_empty() {
        base.to_string()
    } else if child.starts_with('[') {
        format!("{base}{child}")
    } else {
        format!("{base}.{child}")
    }
}

/// Deserializes `value` into `T`, recording a problem with its full path on failure.
pub fn typed<T: DeserializeOwned>(value: &Value, path: &str, errs: &mut ConfigErrors) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let inner = if inner == "." { String::new() } else { inner };
            let message = clean_serde_message(&e.into_inner().to_string());
            errs.push(join(path, &inner), message);
            None
        }
    }
}

/// Takes serde's messages as they are, less trailing location noise from the generic tree.
fn clean_serde_message(m: &str) -> String {
    m.trim_end_matches('.').to_string()
}

/// Splits a list at `path` (absent is empty) into its entries, with their paths.
pub fn list_entries<'a>(
    value: Option<&'a Value>,
    path: &str,
    errs: &mut ConfigErrors,
) -> Vec<(String, &'a Value)> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{path}[{i}]"), v))
            .collect(),
        Some(other) => {
            errs.push(path, format!("expected a list, found {}", kind_of(other)));
            Vec::new()
        }
    }
}

/// Checks that a mapping holds only the given keys, recording each unknown key.
pub fn check_keys(value: &Value, path: &str, known: &[&str], errs: &mut ConfigErrors) -> bool {
    let Some(map) = value.as_object() else {
        errs.push(
            path,
            format!("expected a mapping, found {}", kind_of(value)),
        );
        return false;
    };
    let mut ok = true;
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            errs.push(
                join(path, key),
                format!("unknown field `{key}`, expected one of {}", quoted(known)),
            );
            ok = false;
        }
    }
    ok
}

/// Describes a YAML value's kind for messages.
#[must_use]
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Formats names as `` `a`, `b` ``.
#[must_use]
pub fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses a duration such as `15s`, `1m30s`, `500ms` or `2h`.
///
/// # Errors
/// Returns a message when the text is not a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration {text:?}: {e} (use forms like 15s, 1m30s, 500ms)"))
}

/// Serde support for durations written as `15s`, `1m30s`, `500ms`.
pub mod duration {
    use super::*;

    /// Deserializes a duration string.
    ///
    /// # Errors
    /// Fails on anything but a duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }

    /// Serde support for an optional duration.
    pub mod option {
        use super::*;

        /// Deserializes an optional duration string.
        ///
        /// # Errors
        /// Fails on anything but a duration string or null.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(s) => parse_duration(&s)
                    .map(Some)
                    .map_err(serde::de::Error::custom),
            }
        }
    }
}

/// A regular expression compiled while the configuration is loaded.
#[derive(Debug, Clone)]
pub struct Regex(pub regex::Regex);

impl Regex {
    /// The compiled expression.
    #[must_use]
    pub fn get(&self) -> &regex::Regex {
        &self.0
    }
}

impl PartialEq for Regex {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl<'de> Deserialize<'de> for Regex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex::Regex::new(&s)
            .map(Regex)
            .map_err(|e| serde::de::Error::custom(format!("invalid regular expression: {e}")))
    }
}

/// Reads a secret from a file (trailing newline removed) or an environment variable.
///
/// # Errors
/// Fails when the file cannot be read, the variable is unset, or the secret is empty.
pub fn read_secret(file: Option<&Path>, env: Option<&str>) -> Result<String, String> {
    let value = match (file, env) {
        (Some(f), _) => std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read secret file {}: {e}", f.display()))?,
        (None, Some(var)) => {
            std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?
        }
        (None, None) => return Err("no secret file or environment variable given".into()),
    };
    let value = value.trim_end_matches(['\r', '\n']).to_string();
    if value.is_empty() {
        return Err("secret is empty".into());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(with = "duration")]
        every: Duration,
        pattern: Regex,
    }

    #[test]
    fn typed_reports_nested_path() {
        let v = parse_yaml("every: 15s\npattern: '(unclosed'\n").unwrap();
        let mut errs = ConfigErrors::default();
        assert!(typed::<Inner>(&v, "probes[2].docker", &mut errs).is_none());
        assert_eq!(errs.problems.len(), 1);
        assert_eq!(errs.problems[0].path, "probes[2].docker.pattern");
        assert!(errs.problems[0]
            .message
            .contains("invalid regular expression"));
    }

    #[test]
    fn unknown_key_and_bad_duration() {
        let v = parse_yaml("every: soon\npattern: x\n").unwrap();
        let mut errs = ConfigErrors::default();
        assert!(typed::<Inner>(&v, "a", &mut errs).is_none());
        assert_eq!(errs.problems[0].path, "a.every");
        assert!(errs.problems[0].message.contains("invalid duration"));
        let v = parse_yaml("every: 1s\npattern: x\nextra: 1\n").unwrap();
        assert!(typed::<Inner>(&v, "a", &mut errs).is_none());
        assert!(errs.problems[1].message.contains("unknown field `extra`"));
    }

    #[test]
    fn yaml_syntax_error_is_reported() {
        assert!(parse_yaml("a: [1, 2\n").is_err());
        assert_eq!(parse_yaml("").unwrap(), Value::Object(Default::default()));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("10").is_err());
    }
}
