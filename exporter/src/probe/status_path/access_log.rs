//! The `access_log` probe: real client hits counted from an nginx or Caddy access log, followed
//! across rotation by the [`Tailer`](crate::probe::tail::Tailer). Each line is counted once, at
//! the time it records.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use stackmedic_common::config::{duration, join, Regex};
use stackmedic_common::reload::unix_now;
use stackmedic_common::ConfigErrors;

use super::line::{LineReader, LogFormat, Parsed};
use super::{default_api, default_header, default_legacy, validate_header, Tally, ValueClasses};
use crate::metrics::{Family, Samples};
use crate::probe::tail::{self, Skipped, StartAt, TailOptions, Tailer};
use crate::probe::{ProbeError, Reason, RunContext};
use crate::support::lock;

static LOG_LINES: Family = Family::counter(
    "stackmedic_access_log_lines_total",
    "Access-log lines read, by result: counted, unmatched (not of the format, or longer than 64 KiB), excluded (own probes, or not included).",
);
static LOG_ROTATIONS: Family = Family::counter(
    "stackmedic_access_log_rotations_total",
    "Log rotations detected, by kind: rename (another file at the path) or truncate (the file started over).",
);
static LOG_SKIPPED: Family = Family::counter(
    "stackmedic_access_log_skipped_bytes_total",
    "Bytes known not to have been read, by reason: too_many_rotated (rotated files let go unread beyond max_rotated_files), compressed (rotated files of a compressor other than gzip), truncated (a truncated file's unread rest when no copy of it was found).",
);
static LOG_FOUND: Family = Family::counter(
    "stackmedic_access_log_rotated_found_total",
    "Rotated files found in the log's folder and read: rotated away between two runs, let go and written again, or the copy of a truncated file.",
);
static LOG_ROTATED_OPEN: Family = Family::gauge(
    "stackmedic_access_log_rotated_files",
    "Rotated files still followed (a writer may still write them), at most max_rotated_files.",
);
static LOG_BEHIND: Family = Family::gauge(
    "stackmedic_access_log_behind",
    "1 when the last run stopped at max_read_bytes with more to read, 0 when it read everything.",
);

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
fn default_rotated_idle() -> Duration {
    tail::DEFAULT_ROTATED_IDLE
}
fn default_max_rotated() -> usize {
    tail::DEFAULT_MAX_ROTATED
}

/// Settings of an `access_log` probe (passive counting).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// The log file.
    pub path: PathBuf,
    /// The format of its lines.
    #[serde(default)]
    pub format: LogFormat,
    /// `regex` format: an expression with a named capture holding the header value, and
    /// optionally one named `time`. The default matches `xsp="$sent_http_x_status_path"` at
    /// the end of an nginx log format.
    pub regex: Option<Regex>,
    /// `regex` format: the name of the value's capture.
    pub capture: Option<String>,
    /// `caddy` format: the response header whose value is counted.
    pub header: Option<String>,
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
    /// Where counting starts in a file present at the first run.
    #[serde(default)]
    pub start_at: StartAt,
    /// Most bytes read per run, so a huge backlog is spread over several runs.
    #[serde(default = "default_max_read")]
    pub max_read_bytes: u64,
    /// How long a rotated file is still read after it last changed (a writer such as Caddy
    /// keeps writing its renamed log); a removed one is let go once read.
    #[serde(default = "default_rotated_idle", with = "duration")]
    pub rotated_idle_timeout: Duration,
    /// Most rotated files followed at once; beyond this the oldest is let go, and what it
    /// held unread is counted in `stackmedic_access_log_skipped_bytes_total`.
    #[serde(default = "default_max_rotated")]
    pub max_rotated_files: usize,
}

impl AccessLogConfig {
    /// Checks that the keys fit the format and that the regex has the named capture.
    pub fn validate(&mut self, path: &str, errs: &mut ConfigErrors) {
        // With a `format` that had a problem, the keys of either format may be meant.
        let format_known = !errs.has(&join(path, "format"));
        match self.format {
            LogFormat::Regex => {
                if self.header.is_some() && format_known {
                    errs.push(join(path, "header"), "only applies to `format: caddy`");
                }
                let capture = self.capture.clone().unwrap_or_else(default_capture);
                let regex = self.regex.clone().unwrap_or_else(default_log_regex);
                if !regex.get().capture_names().flatten().any(|n| n == capture) {
                    errs.push(
                        join(path, "regex"),
                        format!("has no named capture `(?P<{capture}>…)`"),
                    );
                }
            }
            LogFormat::Caddy => {
                for (key, set) in [
                    ("regex", self.regex.is_some()),
                    ("capture", self.capture.is_some()),
                ] {
                    if set && format_known {
                        errs.push(join(path, key), "only applies to `format: regex`");
                    }
                }
                if let Some(h) = &self.header {
                    validate_header(h, &join(path, "header"), errs);
                }
            }
        }
        if self.max_read_bytes == 0 {
            errs.push(join(path, "max_read_bytes"), "must be at least 1");
        }
        if self.rotated_idle_timeout.is_zero() {
            errs.push(join(path, "rotated_idle_timeout"), "must be longer than 0s");
        }
        if !(1..=1000).contains(&self.max_rotated_files) {
            errs.push(join(path, "max_rotated_files"), "must be 1 to 1000");
        }
    }

    fn reader(&self) -> LineReader {
        match self.format {
            LogFormat::Regex => LineReader::Regex {
                regex: self.regex.clone().unwrap_or_else(default_log_regex),
                capture: self.capture.clone().unwrap_or_else(default_capture),
            },
            LogFormat::Caddy => LineReader::Caddy {
                header: self.header.clone().unwrap_or_else(default_header),
            },
        }
    }
}

/// An `access_log` probe.
pub struct AccessLogProbe {
    state: Arc<Mutex<LogState>>,
}

/// Everything the probe keeps between runs; runs take it to a blocking thread.
struct LogState {
    tailer: Tailer,
    budget: u64,
    counter: LineCounter,
    renamed: u64,
    truncated: u64,
    found: u64,
    skipped: Skipped,
    rotated_open: usize,
    behind: bool,
}

/// Counts lines by what they say.
struct LineCounter {
    reader: LineReader,
    classes: ValueClasses,
    include: Option<Regex>,
    exclude: Option<Regex>,
    tally: Tally,
    counted: u64,
    unmatched: u64,
    excluded: u64,
}

impl LineCounter {
    fn count(&mut self, raw: &[u8], read_at: f64) {
        let line = String::from_utf8_lossy(raw);
        if line.trim().is_empty() {
            return;
        }
        if self
            .exclude
            .as_ref()
            .is_some_and(|x| x.get().is_match(&line))
            || self
                .include
                .as_ref()
                .is_some_and(|x| !x.get().is_match(&line))
        {
            self.excluded += 1;
            return;
        }
        match self.reader.read(&line) {
            Parsed::Hit { value, time } => {
                let class = self.classes.classify(value.as_deref());
                // The line's own time, never later than now (a clock ahead of ours must not
                // date a hit in the future); the time it was read when it records none.
                let at = time.map_or(read_at, |t| t.min(read_at));
                self.tally.hit(class, at);
                self.counted += 1;
            }
            Parsed::Unmatched => self.unmatched += 1,
        }
    }
}

impl AccessLogProbe {
    /// Builds the probe; the file is opened on the first run.
    #[must_use]
    pub fn new(cfg: &AccessLogConfig) -> Self {
        Self {
            state: Arc::new(Mutex::new(LogState {
                tailer: Tailer::new(
                    cfg.path.clone(),
                    TailOptions {
                        start_at: cfg.start_at,
                        rotated_idle: cfg.rotated_idle_timeout,
                        max_rotated: cfg.max_rotated_files,
                    },
                ),
                budget: cfg.max_read_bytes,
                counter: LineCounter {
                    reader: cfg.reader(),
                    classes: ValueClasses {
                        api_values: cfg.api_values.clone(),
                        legacy_values: cfg.legacy_values.clone(),
                    },
                    include: cfg.include.clone(),
                    exclude: cfg.exclude.clone(),
                    tally: Tally::new(),
                    counted: 0,
                    unmatched: 0,
                    excluded: 0,
                },
                renamed: 0,
                truncated: 0,
                found: 0,
                skipped: Skipped::default(),
                rotated_open: 0,
                behind: false,
            })),
        }
    }

    /// Reads what was appended since the last run, following rotation.
    ///
    /// # Errors
    /// `not_found` while no log file exists (nothing is lost: a file that appears later is
    /// read from its start), `io` when it cannot be read.
    pub async fn run(&self, _cx: &RunContext, out: &mut Samples) -> Result<(), ProbeError> {
        let state = self.state.clone();
        // File reads block; they run on the blocking pool so a slow disk never stalls the runtime.
        let (result, samples) = tokio::task::spawn_blocking(move || {
            let mut st = lock(&state);
            let r = st.poll();
            let mut s = Samples::default();
            st.export(&mut s);
            (r, s)
        })
        .await
        .map_err(|e| ProbeError::new(Reason::Other, format!("tail task failed: {e}")))?;
        out.0.extend(samples.0);
        result
    }
}

impl LogState {
    fn poll(&mut self) -> Result<(), ProbeError> {
        let read_at = unix_now();
        let counter = &mut self.counter;
        let report = self
            .tailer
            .poll(self.budget, &mut |line| counter.count(line, read_at))
            .map_err(|e| ProbeError::io("cannot read", self.tailer.path(), &e))?;
        self.renamed += report.renamed;
        self.truncated += report.truncated;
        self.found += report.found + report.copies;
        self.skipped.too_many_rotated += report.skipped.too_many_rotated;
        self.skipped.compressed += report.skipped.compressed;
        self.skipped.truncated += report.skipped.truncated;
        self.rotated_open = report.rotated_open;
        self.counter.unmatched += report.overlong;
        self.behind = !report.caught_up;
        if report.open {
            Ok(())
        } else {
            Err(ProbeError::new(
                Reason::NotFound,
                format!(
                    "{} does not exist (yet); it is read from its start once it does",
                    self.tailer.path().display()
                ),
            ))
        }
    }

    fn export(&self, out: &mut Samples) {
        let c = &self.counter;
        c.tally.export(out);
        out.push(&LOG_LINES, &[("result", "counted")], c.counted as f64);
        out.push(&LOG_LINES, &[("result", "unmatched")], c.unmatched as f64);
        out.push(&LOG_LINES, &[("result", "excluded")], c.excluded as f64);
        out.push(&LOG_ROTATIONS, &[("kind", "rename")], self.renamed as f64);
        out.push(
            &LOG_ROTATIONS,
            &[("kind", "truncate")],
            self.truncated as f64,
        );
        for (reason, n) in [
            ("too_many_rotated", self.skipped.too_many_rotated),
            ("compressed", self.skipped.compressed),
            ("truncated", self.skipped.truncated),
        ] {
            out.push(&LOG_SKIPPED, &[("reason", reason)], n as f64);
        }
        out.push(&LOG_FOUND, &[], self.found as f64);
        out.push(&LOG_ROTATED_OPEN, &[], self.rotated_open as f64);
        out.flag(&LOG_BEHIND, &[], self.behind);
    }
}

/// Fuzzing entry (the `access_log` target of `fuzz/`): bytes as the tailer hands them over,
/// one line per `\n` (a trailing `\r` dropped, lines over [`crate::probe::tail::MAX_LINE_BYTES`]
/// skipped), counted by the default nginx format and by Caddy's JSON format with the default
/// filters; every non-blank line is counted once, as a hit, unmatched or excluded. Panics only
/// on a bug.
#[doc(hidden)]
pub fn fuzz_lines(data: &[u8]) {
    // Built once: compiling the default expressions costs more than counting the lines.
    static FORMATS: std::sync::OnceLock<[(AccessLogConfig, LineReader); 2]> =
        std::sync::OnceLock::new();
    let formats = FORMATS.get_or_init(|| {
        [
            serde_json::json!({"path": "/var/log/nginx/access.log"}),
            serde_json::json!({"path": "/var/log/caddy/access.log", "format": "caddy"}),
        ]
        .map(|v| {
            let cfg: AccessLogConfig = serde_json::from_value(v).expect("a valid configuration");
            let reader = cfg.reader();
            (cfg, reader)
        })
    });
    for (cfg, reader) in formats {
        let mut counter = LineCounter {
            reader: reader.clone(),
            classes: ValueClasses {
                api_values: cfg.api_values.clone(),
                legacy_values: cfg.legacy_values.clone(),
            },
            include: cfg.include.clone(),
            exclude: cfg.exclude.clone(),
            tally: Tally::new(),
            counted: 0,
            unmatched: 0,
            excluded: 0,
        };
        let now = unix_now();
        let mut lines = 0;
        for line in data.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > crate::probe::tail::MAX_LINE_BYTES {
                continue;
            }
            if !String::from_utf8_lossy(line).trim().is_empty() {
                lines += 1;
            }
            counter.count(line, now);
        }
        assert_eq!(
            counter.counted + counter.unmatched + counter.excluded,
            lines
        );
        let mut out = Samples::default();
        counter.tally.export(&mut out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::status_path::Class;
    use std::io::Write;

    fn cfg(path: PathBuf) -> AccessLogConfig {
        let mut c: AccessLogConfig =
            serde_json::from_value(serde_json::json!({ "path": path, "start_at": "beginning" }))
                .expect("config");
        let mut errs = ConfigErrors::default();
        c.validate("a", &mut errs);
        assert!(errs.is_empty(), "{errs}");
        c
    }

    #[test]
    fn counts_across_rename_and_truncate_without_double_counting() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("access.log");
        let c = cfg(p.clone());
        let mut f = std::fs::File::create(&p).unwrap();
        writeln!(f, "GET / \"curl/8\" xsp=\"legacy\"").unwrap();
        writeln!(f, "GET / \"curl/8\" xsp=\"api\"").unwrap();
        write!(f, "GET / \"curl/8\" xsp=\"leg").unwrap();
        let probe = AccessLogProbe::new(&c);
        let mut st = lock(&probe.state);
        let legacy = |st: &LogState| st.counter.tally.hits(Class::Legacy);
        st.poll().unwrap();
        assert_eq!(legacy(&st), 1);
        writeln!(f, "acy\"").unwrap();
        writeln!(f, "GET / \"stackmedic-exporter/0.1\" xsp=\"legacy\"").unwrap();
        st.poll().unwrap();
        assert_eq!(legacy(&st), 2);
        assert_eq!(st.counter.excluded, 1);
        // Rename rotation: one more line into the old file after the move, then a new file.
        std::fs::rename(&p, dir.path().join("access.log.1")).unwrap();
        writeln!(f, "GET / \"curl/8\" xsp=\"legacy\"").unwrap();
        let mut g = std::fs::File::create(&p).unwrap();
        writeln!(g, "GET / \"curl/8\" xsp=\"legacy\"").unwrap();
        st.poll().unwrap();
        assert_eq!(legacy(&st), 4);
        assert_eq!(st.renamed, 1);
        st.poll().unwrap();
        assert_eq!(legacy(&st), 4, "no double counting");
        // copytruncate.
        g.set_len(0).unwrap();
        let mut g = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        writeln!(g, "GET / \"curl/8\" xsp=\"-\"").unwrap();
        st.poll().unwrap();
        assert_eq!(st.truncated, 1);
        assert_eq!(st.counter.tally.hits(Class::Missing), 1);
        assert_eq!(legacy(&st), 4);
    }
}
