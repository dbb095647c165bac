//! A small parser of the Prometheus text exposition format (version 0.0.4), and a scraper.
//!
//! Each sample line is `name{label="value",...} value [timestamp]`; `# HELP`, `# TYPE` and other
//! comment lines and blank lines are skipped. Label values may contain the escapes `\\`, `\"`
//! and `\n`. Values may be `+Inf`, `-Inf` or `NaN`. Timestamps are accepted and ignored.
//!
//! ```text
//! let samples = metrics::scrape(&format!("http://127.0.0.1:{port}/metrics"))?;
//! assert_eq!(metrics::find(&samples, "stackmedic_probe_success", &[("probe", "ready")]), Some(1.0));
//! ```

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};

/// One sample: a metric name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name, such as `stackmedic_probe_success` or `http_request_duration_seconds_bucket`.
    pub name: String,
    /// Labels, unescaped.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    /// Returns whether the sample is named `name` and has every `(label, value)` pair of
    /// `labels` (other labels may be present too).
    pub fn matches(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.name == name
            && labels
                .iter()
                .all(|(k, v)| self.labels.get(*k).is_some_and(|actual| actual == v))
    }
}

/// Parses a whole exposition text. Errors name the offending line.
pub fn parse(text: &str) -> Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sample = parse_line(line).with_context(|| format!("line {}: {line:?}", index + 1))?;
        samples.push(sample);
    }
    Ok(samples)
}

/// The value of the first sample named `name` that has all of `labels` (a subset match).
pub fn find(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.matches(name, labels))
        .map(|s| s.value)
}

/// All samples named `name` that have all of `labels` (a subset match).
pub fn find_all<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples.iter().filter(|s| s.matches(name, labels)).collect()
}

/// Fetches `url` (a loopback `http://` URL, see [`crate::http`]) and parses the body. A non-2xx
/// status is an error.
pub fn scrape(url: &str) -> Result<Vec<Sample>> {
    let response = crate::http::get(url)?
        .error_for_status()
        .with_context(|| format!("scraping {url}"))?;
    parse(&response.text()).with_context(|| format!("parsing the metrics of {url}"))
}

fn parse_line(line: &str) -> Result<Sample> {
    let mut cursor = Cursor { rest: line };
    let name = cursor.identifier(true);
    if name.is_empty() {
        bail!("expected a metric name");
    }
    let mut labels = BTreeMap::new();
    cursor.skip_spaces();
    if cursor.eat('{') {
        loop {
            cursor.skip_spaces();
            if cursor.eat('}') {
                break;
            }
            let label = cursor.identifier(false);
            if label.is_empty() {
                bail!("expected a label name at {:?}", cursor.rest);
            }
            cursor.skip_spaces();
            if !cursor.eat('=') {
                bail!("expected '=' after label {label:?}");
            }
            cursor.skip_spaces();
            let value = cursor.quoted()?;
            if labels.insert(label.to_owned(), value).is_some() {
                bail!("duplicate label {label:?}");
            }
            cursor.skip_spaces();
            if cursor.eat(',') {
                continue;
            }
            if cursor.eat('}') {
                break;
            }
            bail!("expected ',' or '}}' at {:?}", cursor.rest);
        }
    }
    cursor.skip_spaces();
    let mut fields = cursor.rest.split_whitespace();
    let value_text = fields.next().ok_or_else(|| anyhow!("missing value"))?;
    let value: f64 = value_text
        .parse()
        .map_err(|_| anyhow!("bad value {value_text:?}"))?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| anyhow!("bad timestamp {timestamp:?}"))?;
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn skip_spaces(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`, with `:` allowed too for metric names.
    fn identifier(&mut self, allow_colon: bool) -> &'a str {
        let end = self
            .rest
            .char_indices()
            .find(|&(i, c)| {
                let ok = c.is_ascii_alphabetic()
                    || c == '_'
                    || (allow_colon && c == ':')
                    || (i > 0 && c.is_ascii_digit());
                !ok
            })
            .map(|(i, _)| i)
            .unwrap_or(self.rest.len());
        let (ident, rest) = self.rest.split_at(end);
        self.rest = rest;
        ident
    }

    /// A double-quoted label value with `\\`, `\"` and `\n` escapes.
    fn quoted(&mut self) -> Result<String> {
        if !self.eat('"') {
            bail!("expected '\"' at {:?}", self.rest);
        }
        let mut value = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[i + 1..];
                    return Ok(value);
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, other)) => bail!("unknown escape \\{other} in a label value"),
                    None => break,
                },
                c => value.push(c),
            }
        }
        bail!("unterminated label value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_labels_and_special_values() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total 3\n\
                    b{x=\"1\",y=\"q\\\"uote\\\\ \\nnl\",} +Inf 1700000000000\n\
                    c:rate5m { z = \"\" } NaN\n";
        let samples = parse(text).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(find(&samples, "a_total", &[]), Some(3.0));
        assert_eq!(find(&samples, "b", &[("x", "1")]), Some(f64::INFINITY));
        assert_eq!(samples[1].label("y"), Some("q\"uote\\ \nnl"));
        assert!(samples[2].value.is_nan());
        assert_eq!(samples[2].label("z"), Some(""));
        assert!(parse("bad{x=1} 2").is_err());
        assert!(parse("x 1 notatimestamp").is_err());
        assert!(parse("x{a=\"1\"}").is_err());
    }
}
