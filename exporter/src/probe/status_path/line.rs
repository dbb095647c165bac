//! Reading one access-log line: the `X-Status-Path` value it records and, when it records one,
//! the time of the request.
//!
//! Two formats: `regex` (any line format, nginx's by default), where a named capture holds the
//! value and the time is a `time` capture or else the line's nginx `$time_local` or
//! `$time_iso8601`; and `caddy`, Caddy's JSON access log, where the value is the response
//! header as Caddy logs it (`"resp_headers": {"X-Status-Path": ["legacy"]}`) and the time is
//! `ts`.

use std::sync::OnceLock;

use chrono::DateTime;
use serde::Deserialize;
use serde_json::Value;
use stackmedic_common::config::Regex;

/// The format of an access log's lines.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Any text format; a regex with a named capture finds the value (default).
    #[default]
    Regex,
    /// Caddy's JSON access log (its default since Caddy 2.5).
    Caddy,
}

/// What a line says.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A request: its header value (`None` when the header was absent) and its time as Unix
    /// time, when the line records one.
    Hit {
        /// The header value.
        value: Option<String>,
        /// When the request was logged.
        time: Option<f64>,
    },
    /// Not a line of the expected format.
    Unmatched,
}

/// Reads lines of one format.
#[derive(Debug, Clone)]
pub enum LineReader {
    /// See [`LogFormat::Regex`].
    Regex {
        /// The expression with the value's capture.
        regex: Regex,
        /// The capture's name.
        capture: String,
    },
    /// See [`LogFormat::Caddy`].
    Caddy {
        /// The response header, compared without regard to case.
        header: String,
    },
}

impl LineReader {
    /// What `line` says.
    #[must_use]
    pub fn read(&self, line: &str) -> Parsed {
        match self {
            LineReader::Regex { regex, capture } => {
                let Some(c) = regex.get().captures(line) else {
                    return Parsed::Unmatched;
                };
                let value = c.name(capture).map(|m| m.as_str().to_string());
                let time = match c.name("time") {
                    Some(t) => parse_time(t.as_str()),
                    None => find_time(line),
                };
                Parsed::Hit { value, time }
            }
            LineReader::Caddy { header } => read_caddy(line, header),
        }
    }
}

fn read_caddy(line: &str, header: &str) -> Parsed {
    let Ok(Value::Object(doc)) = serde_json::from_str::<Value>(line) else {
        return Parsed::Unmatched;
    };
    // Every access-log entry of Caddy has `resp_headers`; other entries that share the file
    // (server messages) do not.
    let Some(Value::Object(headers)) = doc.get("resp_headers") else {
        return Parsed::Unmatched;
    };
    let value = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(header))
        .and_then(|(_, v)| match v {
            Value::Array(values) => values.first().and_then(Value::as_str),
            Value::String(s) => Some(s.as_str()),
            _ => None,
        })
        .map(str::to_string);
    let time = doc.get("ts").and_then(|ts| match ts {
        Value::Number(n) => n.as_f64().map(unix_from_number),
        Value::String(s) => parse_time(s),
        _ => None,
    });
    Parsed::Hit { value, time }
}

/// Caddy's `ts` is Unix seconds by default; with `time_format unix_milli_float` (or nano) it is
/// milliseconds (nanoseconds). Values are told apart by size: seconds stay below 1e11 until
/// the year 5138.
fn unix_from_number(n: f64) -> f64 {
    if n > 1e17 {
        n / 1e9
    } else if n > 1e14 {
        n / 1e6
    } else if n > 1e11 {
        n / 1e3
    } else {
        n
    }
}

/// nginx's `$time_local` (`10/Oct/2026:13:55:36 +0200`) or an RFC 3339 / ISO 8601 time
/// (`$time_iso8601`, `2026-10-10T13:55:36+02:00`), as Unix time.
#[must_use]
pub fn parse_time(text: &str) -> Option<f64> {
    let text = text.trim();
    let t = DateTime::parse_from_str(text, "%d/%b/%Y:%H:%M:%S %z")
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()?;
    Some(t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9)
}

/// The first nginx time in a line: `[$time_local]` as in the combined format, or
/// `$time_iso8601`.
fn find_time(line: &str) -> Option<f64> {
    static TIME: OnceLock<regex::Regex> = OnceLock::new();
    let re = TIME.get_or_init(|| {
        regex::Regex::new(
            r"(\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})|(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))",
        )
        .expect("time pattern compiles")
    });
    let c = re.captures(line)?;
    parse_time(c.get(1).or_else(|| c.get(2))?.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regex_reader() -> LineReader {
        LineReader::Regex {
            regex: Regex(regex::Regex::new(r#"xsp="(?P<status_path>[^"]*)""#).unwrap()),
            capture: "status_path".into(),
        }
    }

    #[test]
    fn nginx_times() {
        let local =
            r#"127.0.0.1 - - [22/Nov/2026:03:00:00 +0100] "GET / HTTP/1.1" 200 xsp="legacy""#;
        assert_eq!(
            regex_reader().read(local),
            Parsed::Hit {
                value: Some("legacy".into()),
                time: Some(1_795_312_800.0)
            }
        );
        let iso = r#"2026-11-22T02:00:00+00:00 "GET /" xsp="-""#;
        assert_eq!(
            regex_reader().read(iso),
            Parsed::Hit {
                value: Some("-".into()),
                time: Some(1_795_312_800.0)
            }
        );
        assert_eq!(
            regex_reader().read(r#"no time xsp="api""#),
            Parsed::Hit {
                value: Some("api".into()),
                time: None
            }
        );
        assert_eq!(regex_reader().read("no value"), Parsed::Unmatched);
    }

    #[test]
    fn caddy_lines() {
        let r = LineReader::Caddy {
            header: "X-Status-Path".into(),
        };
        let line = r#"{"level":"info","ts":1795312800.25,"logger":"http.log.access","msg":"handled request","request":{"uri":"/status/summary"},"status":200,"resp_headers":{"Server":["Caddy"],"X-Status-Path":["legacy"]}}"#;
        assert_eq!(
            r.read(line),
            Parsed::Hit {
                value: Some("legacy".into()),
                time: Some(1_795_312_800.25)
            }
        );
        let no_header = r#"{"ts":1795312800250.0,"resp_headers":{"Server":["Caddy"]}}"#;
        assert_eq!(
            r.read(no_header),
            Parsed::Hit {
                value: None,
                time: Some(1_795_312_800.25)
            }
        );
        let iso = r#"{"ts":"2026-11-22T02:00:00.5Z","resp_headers":{"x-status-path":"api"}}"#;
        assert_eq!(
            r.read(iso),
            Parsed::Hit {
                value: Some("api".into()),
                time: Some(1_795_312_800.5)
            }
        );
        assert_eq!(
            r.read(r#"{"level":"info","msg":"serving initial configuration"}"#),
            Parsed::Unmatched
        );
        assert_eq!(r.read("not json"), Parsed::Unmatched);
    }
}
