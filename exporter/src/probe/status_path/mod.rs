//! Status path (the assistant backend): how many responses carry `X-Status-Path: api`, `legacy`, another
//! value or none — by active sampling of an endpoint (this module), and by counting real client
//! hits in an nginx or Caddy access log ([`access_log`]) that it follows across rotation.
//!
//! Both kinds export the time of the last legacy hit and the time since which no legacy hit was
//! seen, so "0 legacy hits for 24 h" is
//! `time() - stackmedic_status_path_legacy_quiet_since_timestamp_seconds >= 86400`.

pub mod access_log;
pub mod line;

use std::sync::Mutex;

use serde::Deserialize;
use stackmedic_common::config::join;
use stackmedic_common::reload::unix_now;
use stackmedic_common::ConfigErrors;
use url::Url;

pub use access_log::{AccessLogConfig, AccessLogProbe};

use super::fetch::{self, TlsOptions};
use super::{ProbeError, RunContext, Shared};
use crate::metrics::{Family, Samples};
use crate::support::lock;

static HITS: Family = Family::counter(
    "stackmedic_status_path_hits_total",
    "Responses (sampled) or access-log lines (real clients) by X-Status-Path class: api, legacy, other, missing.",
);
static LAST_HIT: Family = Family::gauge(
    "stackmedic_status_path_last_hit_timestamp_seconds",
    "Unix time of the last hit of each X-Status-Path class (for an access log, the time the line records); absent until one is seen.",
);
static QUIET_SINCE: Family = Family::gauge(
    "stackmedic_status_path_legacy_quiet_since_timestamp_seconds",
    "Unix time since which no legacy hit was seen: the last legacy hit, or when counting began.",
);

fn default_header() -> String {
    "X-Status-Path".into()
}
fn default_legacy() -> Vec<String> {
    vec!["legacy".into()]
}
fn default_api() -> Vec<String> {
    vec!["api".into()]
}
fn one() -> u32 {
    1
}

/// The class of a response by its header value; one value of the `value` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// One of the `api_values`.
    Api,
    /// One of the `legacy_values`.
    Legacy,
    /// Any other value.
    Other,
    /// No header, an empty value, or nginx's `-`.
    Missing,
}

impl Class {
    /// Every class, in label order.
    pub const ALL: [Class; 4] = [Class::Api, Class::Legacy, Class::Other, Class::Missing];

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Api => "api",
            Class::Legacy => "legacy",
            Class::Other => "other",
            Class::Missing => "missing",
        }
    }

    fn index(self) -> usize {
        match self {
            Class::Api => 0,
            Class::Legacy => 1,
            Class::Other => 2,
            Class::Missing => 3,
        }
    }
}

/// How header values map onto the four classes.
#[derive(Debug, Clone)]
pub struct ValueClasses {
    /// Values counted as `api`.
    pub api_values: Vec<String>,
    /// Values counted as `legacy`.
    pub legacy_values: Vec<String>,
}

impl Default for ValueClasses {
    fn default() -> Self {
        Self {
            api_values: default_api(),
            legacy_values: default_legacy(),
        }
    }
}

impl ValueClasses {
    /// The class of a header value; `None`, empty and nginx's `-` are `missing`.
    #[must_use]
    pub fn classify(&self, value: Option<&str>) -> Class {
        match value.map(str::trim) {
            None | Some("" | "-") => Class::Missing,
            Some(v) if self.api_values.iter().any(|a| a.eq_ignore_ascii_case(v)) => Class::Api,
            Some(v) if self.legacy_values.iter().any(|a| a.eq_ignore_ascii_case(v)) => {
                Class::Legacy
            }
            Some(_) => Class::Other,
        }
    }
}

/// Hit counts and times shared by both kinds.
#[derive(Debug)]
struct Tally {
    hits: [u64; 4],
    last: [Option<f64>; 4],
    since: f64,
}

impl Tally {
    fn new() -> Self {
        Self {
            hits: [0; 4],
            last: [None; 4],
            since: unix_now(),
        }
    }

    /// Counts a hit of `class` at Unix time `at`; the last-hit time only moves forward.
    fn hit(&mut self, class: Class, at: f64) {
        let i = class.index();
        self.hits[i] += 1;
        self.last[i] = Some(self.last[i].map_or(at, |t| t.max(at)));
    }

    fn hits(&self, class: Class) -> u64 {
        self.hits[class.index()]
    }

    fn export(&self, out: &mut Samples) {
        for class in Class::ALL {
            let l = [("value", class.as_str())];
            out.push(&HITS, &l, self.hits(class) as f64);
            if let Some(t) = self.last[class.index()] {
                out.push(&LAST_HIT, &l, t);
            }
        }
        out.push(
            &QUIET_SINCE,
            &[],
            self.last[Class::Legacy.index()].map_or(self.since, |t| t.max(self.since)),
        );
    }
}

/// Settings of a `status_path` probe (active sampling).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// The endpoint to sample, e.g. `https://host/status/summary`.
    pub url: Url,
    /// The header to read.
    #[serde(default = "default_header")]
    pub header: String,
    /// Requests per run.
    #[serde(default = "one")]
    pub samples: u32,
    /// Header values counted as `api`.
    #[serde(default = "default_api")]
    pub api_values: Vec<String>,
    /// Header values counted as `legacy`.
    #[serde(default = "default_legacy")]
    pub legacy_values: Vec<String>,
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsOptions,
}

impl SampleConfig {
    /// Checks URL, header name and sample count; reads the CA file.
    pub fn validate(&mut self, path: &str, errs: &mut ConfigErrors) {
        fetch::validate_url(&self.url, &join(path, "url"), errs);
        self.tls.load(&join(path, "tls"), errs);
        validate_header(&self.header, &join(path, "header"), errs);
        if !(1..=100).contains(&self.samples) {
            errs.push(join(path, "samples"), "must be between 1 and 100");
        }
    }
}

fn validate_header(name: &str, path: &str, errs: &mut ConfigErrors) {
    if http::HeaderName::try_from(name).is_err() {
        errs.push(path, format!("invalid header name {name:?}"));
    }
}

/// A `status_path` probe.
pub struct SampleProbe {
    cfg: SampleConfig,
    client: reqwest::Client,
    classes: ValueClasses,
    tally: Mutex<Tally>,
}

impl SampleProbe {
    /// Builds the probe.
    ///
    /// # Errors
    /// When its HTTP client cannot be built.
    pub fn new(cfg: SampleConfig, shared: &Shared) -> Result<Self, String> {
        let client = shared.http.get(&cfg.tls, true)?;
        let classes = ValueClasses {
            api_values: cfg.api_values.clone(),
            legacy_values: cfg.legacy_values.clone(),
        };
        Ok(Self {
            cfg,
            client,
            classes,
            tally: Mutex::new(Tally::new()),
        })
    }

    /// Runs once: `samples` requests, each counted by its header value.
    ///
    /// # Errors
    /// The first transport failure; responses counted before it stay counted.
    pub async fn run(&self, cx: &RunContext, out: &mut Samples) -> Result<(), ProbeError> {
        let mut result = Ok(());
        for _ in 0..self.cfg.samples {
            let req = self.client.get(self.cfg.url.clone());
            match fetch::send(cx, req, fetch::DEFAULT_MAX_BODY).await {
                Ok(resp) => {
                    let value = resp
                        .headers
                        .get(self.cfg.header.as_str())
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                    let class = self.classes.classify(value.as_deref());
                    lock(&self.tally).hit(class, unix_now());
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        lock(&self.tally).export(out);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let c = ValueClasses::default();
        assert_eq!(c.classify(Some("api")), Class::Api);
        assert_eq!(c.classify(Some("LEGACY")), Class::Legacy);
        assert_eq!(c.classify(Some("v3")), Class::Other);
        assert_eq!(c.classify(Some("-")), Class::Missing);
        assert_eq!(c.classify(None), Class::Missing);
    }
}
