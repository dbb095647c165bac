//! Status path (seed 003): how many responses carry `X-Status-Path: api`, `legacy`, another
//! value or none — by active sampling of an endpoint, and by counting real client hits in an
//! access log (nginx or Caddy) that survives rotation by rename-and-reopen and by copytruncate.
//!
//! Both kinds export the time of the last legacy hit and the time since which no legacy hit was
//! seen, so "0 legacy hits for 24 h" is
//! `time() - stackmedic_status_path_legacy_quiet_since_timestamp_seconds >= 86400`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use stackmedic_common::config::{join, Regex};
use stackmedic_common::reload::unix_now;
use stackmedic_common::ConfigErrors;
use url::Url;

use super::fetch::{self, TlsOptions};
use super::{ProbeError, Reason, RunContext, Shared};
use crate::metrics::{Family, Samples};
use crate::support::lock;

static HITS: Family = Family::counter(
    "stackmedic_status_path_hits_total",
    "Responses (sampled) or access-log lines (real clients) by X-Status-Path class: api, legacy, other, missing.",
);
static LAST_HIT: Family = Family::gauge(
    "stackmedic_status_path_last_hit_timestamp_seconds",
    "Unix time of the last hit of each X-Status-Path class; absent until one is seen.",
);
static QUIET_SINCE: Family = Family::gauge(
    "stackmedic_status_path_legacy_quiet_since_timestamp_seconds",
    "Unix time since which no legacy hit was seen: the last legacy hit, or when counting began.",
);
static LOG_LINES: Family = Family::counter(
    "stackmedic_access_log_lines_total",
    "Access-log lines read, by result: counted, unmatched (regex did not match), excluded (own probes).",
);
static LOG_ROTATIONS: Family = Family::counter(
    "stackmedic_access_log_rotations_total",
    "Log rotations detected, by kind: rename (new file at the path) or truncate (copytruncate).",
);

/// The value classes, in label order.
const CLASSES: [&str; 4] = ["api", "legacy", "other", "missing"];

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
    pub fn classify(&self, value: Option<&str>) -> usize {
        Self::classify_with(&self.api_values, &self.legacy_values, value)
    }

    /// [`Self::classify`] on borrowed lists.
    #[must_use]
    pub fn classify_with(api: &[String], legacy: &[String], value: Option<&str>) -> usize {
        match value.map(str::trim) {
            None | Some("" | "-") => 3,
            Some(v) if api.iter().any(|a| a.eq_ignore_ascii_case(v)) => 0,
            Some(v) if legacy.iter().any(|a| a.eq_ignore_ascii_case(v)) => 1,
            Some(_) => 2,
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

    fn hit(&mut self, class: usize, at: f64) {
        self.hits[class] += 1;
        self.last[class] = Some(self.last[class].map_or(at, |t| t.max(at)));
    }

    fn export(&self, out: &mut Samples) {
        for (i, c) in CLASSES.iter().enumerate() {
            out.push(&HITS, &[("value", c)], self.hits[i] as f64);
            if let Some(t) = self.last[i] {
                out.push(&LAST_HIT, &[("value", c)], t);
            }
        }
        out.push(
            &QUIET_SINCE,
            &[],
            self.last[1].map_or(self.since, |t| t.max(self.since)),
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
    /// Checks URL, header name and sample count.
    pub fn validate(&mut self, path: &str, errs: &mut ConfigErrors) {
        fetch::validate_url(&self.url, &join(path, "url"), errs);
        self.tls.load(&join(path, "tls"), errs);
        if http::HeaderName::try_from(self.header.as_str()).is_err() {
            errs.push(
                join(path, "header"),
                format!("invalid header name {:?}", self.header),
            );
        }
        if !(1..=100).contains(&self.samples) {
            errs.push(join(path, "samples"), "must be between 1 and 100");
        }
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

/// Where counting starts when the log is first opened.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// Only lines written after the exporter started (default).
    #[default]
    End,
    /// The whole current file.
    Beginning,
}

fn default_log_regex() -> Regex {
    Regex(regex::Regex::new(r#"xsp="(?P<status_path>[^"]*)""#).expect("default regex compiles"))
}
fn default_capture() -> String {
    "status_path".into()
}
fn default_exclude() -> Option<Regex> {
    Some(Regex(
        regex::Regex::new(r"stackmedic-exporter/").expect("default regex compiles"),
    ))
}
fn default_max_read() -> u64 {
    64 << 20
}

/// Settings of an `access_log` probe (passive counting).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// The log file.
    pub path: PathBuf,
    /// Regex with a named capture holding the header value. The default matches
    /// `xsp="$sent_http_x_status_path"` at the end of an nginx log format.
    #[serde(default = "default_log_regex")]
    pub regex: Regex,
    /// Name of the capture group.
    #[serde(default = "default_capture")]
    pub capture: String,
    /// Only lines matching this regex are considered (for example the status endpoints'
    /// request lines); all lines when absent. Other lines count as `excluded`.
    #[serde(default)]
    pub include: Option<Regex>,
    /// Lines matching this regex are not client hits (by default the exporter's own requests,
    /// recognised by their User-Agent); `null` counts every line.
    #[serde(default = "default_exclude")]
    pub exclude: Option<Regex>,
    /// Header values counted as `api`.
    #[serde(default = "default_api")]
    pub api_values: Vec<String>,
    /// Header values counted as `legacy`.
    #[serde(default = "default_legacy")]
    pub legacy_values: Vec<String>,
    /// Where counting starts on first open.
    #[serde(default)]
    pub start_at: StartAt,
    /// Most bytes read per run, so a huge backlog is spread over several runs.
    #[serde(default = "default_max_read")]
    pub max_read_bytes: u64,
}

impl AccessLogConfig {
    /// Checks that the regex has the named capture.
    pub fn validate(&mut self, path: &str, errs: &mut ConfigErrors) {
        if !self
            .regex
            .get()
            .capture_names()
            .flatten()
            .any(|n| n == self.capture)
        {
            errs.push(
                join(path, "regex"),
                format!("has no named capture `(?P<{}>…)`", self.capture),
            );
        }
        if self.max_read_bytes == 0 {
            errs.push(join(path, "max_read_bytes"), "must be at least 1");
        }
    }
}

/// An `access_log` probe.
pub struct AccessLogProbe {
    cfg: Arc<AccessLogConfig>,
    state: Arc<Mutex<TailState>>,
}

struct TailState {
    file: Option<OpenLog>,
    tally: Tally,
    counted: u64,
    unmatched: u64,
    excluded: u64,
    renamed: u64,
    truncated: u64,
}

struct OpenLog {
    file: File,
    ino: u64,
    dev: u64,
    offset: u64,
    partial: Vec<u8>,
}

impl AccessLogProbe {
    /// Builds the probe; the file is opened on the first run.
    #[must_use]
    pub fn new(cfg: AccessLogConfig) -> Self {
        Self {
            cfg: Arc::new(cfg),
            state: Arc::new(Mutex::new(TailState {
                file: None,
                tally: Tally::new(),
                counted: 0,
                unmatched: 0,
                excluded: 0,
                renamed: 0,
                truncated: 0,
            })),
        }
    }

    /// Reads what was appended since the last run, following rotation.
    ///
    /// # Errors
    /// `io` when the log cannot be opened or read.
    pub async fn run(&self, _cx: &RunContext, out: &mut Samples) -> Result<(), ProbeError> {
        let cfg = self.cfg.clone();
        let state = self.state.clone();
        // File reads block; they run on the blocking pool so a slow disk never stalls the runtime.
        let (result, samples) = tokio::task::spawn_blocking(move || {
            let mut st = lock(&state);
            let r = tail(&cfg, &mut st);
            let mut s = Samples::default();
            export_tail(&st, &mut s);
            (r, s)
        })
        .await
        .map_err(|e| ProbeError::new(Reason::Other, format!("tail task failed: {e}")))?;
        out.0.extend(samples.0);
        result
    }
}

fn export_tail(st: &TailState, out: &mut Samples) {
    st.tally.export(out);
    out.push(&LOG_LINES, &[("result", "counted")], st.counted as f64);
    out.push(&LOG_LINES, &[("result", "unmatched")], st.unmatched as f64);
    out.push(&LOG_LINES, &[("result", "excluded")], st.excluded as f64);
    out.push(&LOG_ROTATIONS, &[("kind", "rename")], st.renamed as f64);
    out.push(&LOG_ROTATIONS, &[("kind", "truncate")], st.truncated as f64);
}

fn io_err(what: &str, path: &std::path::Path, e: &std::io::Error) -> ProbeError {
    let reason = if e.kind() == std::io::ErrorKind::NotFound {
        Reason::NotFound
    } else {
        Reason::Io
    };
    ProbeError::new(reason, format!("cannot {what} {}: {e}", path.display()))
}

fn tail(cfg: &AccessLogConfig, st: &mut TailState) -> Result<(), ProbeError> {
    let mut budget = cfg.max_read_bytes;
    if st.file.is_none() {
        let file = File::open(&cfg.path).map_err(|e| io_err("open", &cfg.path, &e))?;
        let meta = file.metadata().map_err(|e| io_err("stat", &cfg.path, &e))?;
        let offset = match cfg.start_at {
            StartAt::End => meta.len(),
            StartAt::Beginning => 0,
        };
        st.file = Some(OpenLog {
            file,
            ino: meta.ino(),
            dev: meta.dev(),
            offset,
            partial: Vec::new(),
        });
    }
    // What is at the path now: the same file, a truncated one, a new one, or nothing yet.
    let at_path = std::fs::metadata(&cfg.path).ok();
    let log = st.file.as_mut().expect("opened above");
    let same_file = at_path
        .as_ref()
        .is_some_and(|m| m.ino() == log.ino && m.dev() == log.dev);
    if same_file {
        let len = at_path.as_ref().map_or(0, std::fs::Metadata::len);
        if len < log.offset {
            // copytruncate: the content moved elsewhere and the file starts over.
            log.offset = 0;
            log.partial.clear();
            st.truncated += 1;
        }
        return read_new(cfg, st, &mut budget);
    }
    // Renamed away (or deleted): drain the old file through the handle we still hold, then
    // switch to the new file at the path, if there is one yet.
    read_new(cfg, st, &mut budget)?;
    if at_path.is_some() {
        match File::open(&cfg.path) {
            Ok(file) => {
                let meta = file.metadata().map_err(|e| io_err("stat", &cfg.path, &e))?;
                let old = st.file.replace(OpenLog {
                    file,
                    ino: meta.ino(),
                    dev: meta.dev(),
                    offset: 0,
                    partial: Vec::new(),
                });
                // A last line without its newline in the old file is complete by now.
                if let Some(old) = old {
                    if !old.partial.is_empty() {
                        count_line(cfg, st, &old.partial);
                    }
                }
                st.renamed += 1;
                read_new(cfg, st, &mut budget)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("open", &cfg.path, &e)),
        }
    }
    Ok(())
}

fn read_new(cfg: &AccessLogConfig, st: &mut TailState, budget: &mut u64) -> Result<(), ProbeError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if *budget == 0 {
            return Ok(());
        }
        let log = st.file.as_mut().expect("caller opened the log");
        log.file
            .seek(SeekFrom::Start(log.offset))
            .map_err(|e| io_err("seek", &cfg.path, &e))?;
        let want = buf
            .len()
            .min(usize::try_from(*budget).unwrap_or(usize::MAX));
        let n = log
            .file
            .read(&mut buf[..want])
            .map_err(|e| io_err("read", &cfg.path, &e))?;
        if n == 0 {
            return Ok(());
        }
        log.offset += n as u64;
        *budget -= n as u64;
        let mut data = std::mem::take(&mut log.partial);
        data.extend_from_slice(&buf[..n]);
        let mut start = 0;
        let mut lines = Vec::new();
        while let Some(pos) = data[start..].iter().position(|b| *b == b'\n') {
            lines.push(start..start + pos);
            start += pos + 1;
        }
        let rest = data[start..].to_vec();
        for r in lines {
            count_line(cfg, st, &data[r]);
        }
        // A line longer than 64 KiB without a newline is cut rather than held forever.
        let log = st.file.as_mut().expect("caller opened the log");
        log.partial = if rest.len() > 64 * 1024 {
            Vec::new()
        } else {
            rest
        };
    }
}

fn count_line(cfg: &AccessLogConfig, st: &mut TailState, raw: &[u8]) {
    let line = String::from_utf8_lossy(raw);
    let line = line.trim_end_matches('\r');
    if line.is_empty() {
        return;
    }
    if cfg.exclude.as_ref().is_some_and(|x| x.get().is_match(line))
        || cfg
            .include
            .as_ref()
            .is_some_and(|x| !x.get().is_match(line))
    {
        st.excluded += 1;
        return;
    }
    match cfg.regex.get().captures(line) {
        Some(c) => {
            let value = c.name(&cfg.capture).map(|m| m.as_str());
            let class = ValueClasses::classify_with(&cfg.api_values, &cfg.legacy_values, value);
            st.tally.hit(class, unix_now());
            st.counted += 1;
        }
        None => st.unmatched += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn cfg(path: PathBuf) -> AccessLogConfig {
        AccessLogConfig {
            path,
            regex: default_log_regex(),
            capture: default_capture(),
            exclude: default_exclude(),
            include: None,
            api_values: default_api(),
            legacy_values: default_legacy(),
            start_at: StartAt::Beginning,
            max_read_bytes: default_max_read(),
        }
    }

    fn legacy(st: &TailState) -> u64 {
        st.tally.hits[1]
    }

    #[test]
    fn counts_across_rename_and_truncate_without_double_counting() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("access.log");
        let c = cfg(p.clone());
        let mut f = File::create(&p).unwrap();
        writeln!(f, "GET / \"curl/8\" xsp=\"legacy\"").unwrap();
        writeln!(f, "GET / \"curl/8\" xsp=\"api\"").unwrap();
        write!(f, "GET / \"curl/8\" xsp=\"leg").unwrap();
        let probe = AccessLogProbe::new(c.clone());
        let mut st = lock(&probe.state);
        tail(&c, &mut st).unwrap();
        assert_eq!(legacy(&st), 1);
        writeln!(f, "acy\"").unwrap();
        writeln!(f, "GET / \"stackmedic-exporter/0.1\" xsp=\"legacy\"").unwrap();
        tail(&c, &mut st).unwrap();
        assert_eq!(legacy(&st), 2);
        assert_eq!(st.excluded, 1);
        // Rename rotation: one more line into the old file after the move, then a new file.
        std::fs::rename(&p, dir.path().join("access.log.1")).unwrap();
        writeln!(f, "GET / \"curl/8\" xsp=\"legacy\"").unwrap();
        let mut g = File::create(&p).unwrap();
        writeln!(g, "GET / \"curl/8\" xsp=\"legacy\"").unwrap();
        tail(&c, &mut st).unwrap();
        assert_eq!(legacy(&st), 4);
        assert_eq!(st.renamed, 1);
        tail(&c, &mut st).unwrap();
        assert_eq!(legacy(&st), 4, "no double counting");
        // copytruncate.
        g.set_len(0).unwrap();
        let mut g = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        writeln!(g, "GET / \"curl/8\" xsp=\"-\"").unwrap();
        tail(&c, &mut st).unwrap();
        assert_eq!(st.truncated, 1);
        assert_eq!(st.tally.hits[3], 1);
        assert_eq!(legacy(&st), 4);
    }

    #[test]
    fn classes() {
        let c = ValueClasses::default();
        assert_eq!(c.classify(Some("api")), 0);
        assert_eq!(c.classify(Some("LEGACY")), 1);
        assert_eq!(c.classify(Some("v3")), 2);
        assert_eq!(c.classify(Some("-")), 3);
        assert_eq!(c.classify(None), 3);
    }
}
