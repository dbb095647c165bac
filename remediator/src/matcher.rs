//! Alertmanager-style label matchers: `name="value"`, `name!="value"`, `name=~"regex"` and
//! `name!~"regex"`, with regular expressions anchored at both ends as Alertmanager anchors them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer};

/// How a matcher compares a label value.
#[derive(Debug, Clone)]
pub enum Op {
    /// `=`: equal.
    Equal(String),
    /// `!=`: not equal.
    NotEqual(String),
    /// `=~`: the anchored regular expression matches.
    Regex(regex::Regex),
    /// `!~`: the anchored regular expression does not match.
    NotRegex(regex::Regex),
}

/// One matcher on one label. An absent label matches as the empty string.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub op: Op,
    text: String,
}

impl Matcher {
    /// Parses `name<op>value`, where the value may be double-quoted.
    ///
    /// # Errors
    /// Returns a message when the name, operator, quoting or regular expression is invalid.
    pub fn parse(text: &str) -> Result<Self, String> {
        let s = text.trim();
        let name_end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| format!("matcher {text:?} has no operator (=, !=, =~, !~)"))?;
        let name = &s[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("matcher {text:?} has an invalid label name"));
        }
        let rest = s[name_end..].trim_start();
        let (op, value) = ["=~", "!~", "!=", "="]
            .iter()
            .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v.trim())))
            .ok_or_else(|| format!("matcher {text:?} has no operator (=, !=, =~, !~)"))?;
        let value = unquote(value).map_err(|e| format!("matcher {text:?}: {e}"))?;
        let regex = |v: &str| {
            regex::Regex::new(&format!("^(?:{v})$"))
                .map_err(|e| format!("matcher {text:?}: invalid regular expression: {e}"))
        };
        let op = match op {
            "=" => Op::Equal(value),
            "!=" => Op::NotEqual(value),
            "=~" => Op::Regex(regex(&value)?),
            _ => Op::NotRegex(regex(&value)?),
        };
        Ok(Self {
            name: name.to_string(),
            op,
            text: s.to_string(),
        })
    }

    /// Whether the labels satisfy this matcher.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match &self.op {
            Op::Equal(x) => v == x,
            Op::NotEqual(x) => v != x,
            Op::Regex(r) => r.is_match(v),
            Op::NotRegex(r) => !r.is_match(v),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Matcher::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn unquote(v: &str) -> Result<String, String> {
    let Some(inner) = v.strip_prefix('"') else {
        return Ok(v.to_string());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or_else(|| "unterminated quoted value".to_string())?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => return Err("value ends with a backslash".into()),
            },
            '"' => return Err("unescaped quote inside the value".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Whether every matcher matches.
#[must_use]
pub fn all_match(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn operators() {
        let l = labels(&[("alertname", "OwuiDown"), ("severity", "critical")]);
        for (m, want) in [
            ("alertname=\"OwuiDown\"", true),
            ("alertname=OwuiDown", true),
            ("alertname!=\"OwuiDown\"", false),
            ("severity=~\"crit.*|page\"", true),
            ("severity=~\"crit\"", false),
            ("severity!~\"warning|info\"", true),
            ("missing=\"\"", true),
            ("missing=~\".+\"", false),
        ] {
            assert_eq!(Matcher::parse(m).unwrap().matches(&l), want, "{m}");
        }
    }

    #[test]
    fn invalid() {
        for m in ["=x", "a", "a=~\"(\"", "a=\"x", "1a=b"] {
            assert!(Matcher::parse(m).is_err(), "{m}");
        }
    }
}
