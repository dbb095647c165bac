//! Backup age (the backup timers): backup archives in one or more folders, named by a pattern with the
//! captures `volume` and `timestamp` (`owui-data__20261122T030000Z.tar.gz`). Per volume: newest
//! and oldest backup time, newest size, count and total size; per folder: whether it exists and
//! whether others may access it (backups hold secrets: `chmod 700`). Optionally the newest
//! archive of each volume is read to its end (gzip and tar), bounded in time, to tell a corrupt
//! or truncated one.
//!
//! The verification result is kept per file identity, so an unchanged archive is read once, not
//! every interval.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone as _};
use serde::{Deserialize, Deserializer};
use stackmedic_common::config::{duration, join, Regex};
use stackmedic_common::ConfigErrors;

use super::files::{CancelOnDrop, FileKey};
use super::report::duration_words;
use super::{Health, Item, ProbeError, ProblemKind, Problems, Reason, RunContext};
use crate::metrics::{Family, Samples};
use crate::support::lock;

static FOLDER_EXISTS: Family = Family::gauge(
    "stackmedic_backup_folder_exists",
    "Whether the backup folder exists and is a directory (1) or not (0).",
);
static FOLDER_OTHERS: Family = Family::gauge(
    "stackmedic_backup_folder_accessible_by_others",
    "1 when the folder's mode grants others any permission (mode & 0o007), 0 when not; backups hold secrets and belong in a 0700 folder.",
);
static FILES: Family = Family::gauge(
    "stackmedic_backup_files",
    "Files in the folder by result: matched (by the pattern, with a usable time), unmatched, bad_timestamp (matched, time not parsable).",
);
static VOLUMES: Family = Family::gauge(
    "stackmedic_backup_volumes",
    "Distinct volumes with at least one backup in the folder (all of them, also those beyond max_volumes).",
);
static COUNT: Family = Family::gauge(
    "stackmedic_backup_count",
    "Backups of the volume in the folder; 0 for an expected volume without any.",
);
static NEWEST: Family = Family::gauge(
    "stackmedic_backup_newest_timestamp_seconds",
    "Unix time of the volume's newest backup (from its name, or its modification time).",
);
static OLDEST: Family = Family::gauge(
    "stackmedic_backup_oldest_timestamp_seconds",
    "Unix time of the volume's oldest backup; it moves forward when retention runs.",
);
static NEWEST_SIZE: Family = Family::gauge(
    "stackmedic_backup_newest_size_bytes",
    "Size of the volume's newest backup in bytes.",
);
static TOTAL_SIZE: Family = Family::gauge(
    "stackmedic_backup_size_bytes",
    "Total size of the volume's backups in the folder, in bytes.",
);
static NEWEST_VALID: Family = Family::gauge(
    "stackmedic_backup_newest_valid",
    "With verify_newest: 1 when the newest archive was read to its end without error, 0 when it is corrupt or truncated; absent while not verified.",
);

/// How long an archive must be unmodified before it is verified.
const WRITE_SETTLE: Duration = Duration::from_secs(10);

/// The default pattern: `<volume>__<timestamp>.tar.gz`, as the backup runbook's scripts name them.
pub const DEFAULT_PATTERN: &str =
    r"^(?P<volume>[A-Za-z0-9_.-]+?)__(?P<timestamp>[0-9A-Za-z:.+_-]+)\.(?:tar\.gz|tgz)$";

/// Naive formats tried by `auto`, in order (`Z` is a literal).
const NAIVE_FORMATS: &[&str] = &[
    "%Y%m%dT%H%M%SZ",
    "%Y%m%dT%H%M%S",
    "%Y-%m-%dT%H-%M-%SZ",
    "%Y-%m-%dT%H-%M-%S",
    "%Y-%m-%d_%H-%M-%S",
    "%Y-%m-%d-%H-%M-%S",
    "%Y-%m-%d_%H%M%S",
    "%Y%m%d-%H%M%S",
    "%Y%m%d_%H%M%S",
    "%Y%m%d%H%M%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H%M%S",
    "%Y-%m-%dT%H%M%SZ",
];
const DATE_FORMATS: &[&str] = &["%Y-%m-%d", "%Y%m%d"];

fn default_pattern() -> Regex {
    Regex(regex::Regex::new(DEFAULT_PATTERN).expect("default pattern compiles"))
}
fn default_verify_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_volumes() -> usize {
    100
}

/// How the `timestamp` capture is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TimestampFormat {
    /// RFC 3339, Unix seconds or milliseconds, and the common `strftime` forms (default).
    #[default]
    Auto,
    /// Unix seconds.
    Unix,
    /// RFC 3339.
    Rfc3339,
    /// A `strftime` format such as `%Y%m%dT%H%M%SZ`.
    Strftime(String),
}

impl<'de> Deserialize<'de> for TimestampFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "auto" => Self::Auto,
            "unix" => Self::Unix,
            "rfc3339" => Self::Rfc3339,
            _ => {
                let bad = chrono::format::StrftimeItems::new(&s)
                    .any(|i| matches!(i, chrono::format::Item::Error));
                if bad || !s.contains('%') {
                    return Err(serde::de::Error::custom(format!(
                        "{s:?} is neither auto, unix, rfc3339 nor a strftime format"
                    )));
                }
                Self::Strftime(s)
            }
        })
    }
}

/// The zone of timestamps without an offset.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Zone {
    /// UTC (default).
    #[default]
    Utc,
    /// The exporter's local time zone.
    Local,
}

/// One backup folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderConfig {
    /// The folder, e.g. `/srv/ai-stack/backups`.
    pub path: PathBuf,
    /// The `folder` label; the path when absent. Two entries for the same path (one pattern
    /// each) need names to tell their series apart.
    pub name: Option<String>,
    /// File names to count, with the named captures `volume` and optionally `timestamp`.
    #[serde(default = "default_pattern")]
    pub pattern: Regex,
    /// How the `timestamp` capture is read.
    #[serde(default)]
    pub timestamp_format: TimestampFormat,
    /// The zone of timestamps without an offset.
    #[serde(default)]
    pub timezone: Zone,
    /// The volume of every matching file, for patterns without a `volume` capture.
    pub volume: Option<String>,
    /// Volumes that must have a backup; a missing one is reported with count 0.
    #[serde(default)]
    pub expected_volumes: Vec<String>,
    /// The run fails as `stale` when a volume's newest backup is older than this.
    #[serde(default, with = "duration::option")]
    pub max_age: Option<Duration>,
}

impl FolderConfig {
    /// The `folder` label of the entry's series.
    #[must_use]
    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.path.display().to_string())
    }
}

/// Settings of a `backup` probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// The folders.
    pub folders: Vec<FolderConfig>,
    /// Read the newest archive of each volume to its end.
    #[serde(default)]
    pub verify_newest: bool,
    /// Longest time all verifications of one run may take.
    #[serde(default = "default_verify_timeout", with = "duration")]
    pub verify_timeout: Duration,
    /// Most volumes reported per folder (expected volumes are always reported).
    #[serde(default = "default_max_volumes")]
    pub max_volumes: usize,
}

impl BackupConfig {
    /// Checks captures, volume names and limits.
    pub fn validate(&mut self, path: &str, errs: &mut ConfigErrors) {
        if self.folders.is_empty() && !errs.has(&join(path, "folders")) {
            errs.push(join(path, "folders"), "must list at least one folder");
        }
        let mut seen = HashSet::new();
        for (i, f) in self.folders.iter().enumerate() {
            let fp = format!("{path}.folders[{i}]");
            if !f.path.is_absolute() {
                errs.push(join(&fp, "path"), "must be an absolute path");
            }
            if !seen.insert(f.label()) {
                errs.push(
                    &fp,
                    format!(
                        "folder label {:?} is used twice; set distinct `name`s",
                        f.label()
                    ),
                );
            }
            if f.name.as_deref() == Some("") {
                errs.push(join(&fp, "name"), "must not be empty");
            }
            let names: Vec<&str> = f.pattern.get().capture_names().flatten().collect();
            let has_volume = names.contains(&"volume");
            match (&f.volume, has_volume) {
                (None, false) if errs.has(&join(&fp, "volume")) => {}
                (None, false) => errs.push(
                    join(&fp, "pattern"),
                    "has no `volume` capture; add one or set `volume`",
                ),
                (Some(_), true) => errs.push(
                    join(&fp, "volume"),
                    "conflicts with the pattern's `volume` capture",
                ),
                (Some(v), false) if v.is_empty() => {
                    errs.push(join(&fp, "volume"), "must not be empty");
                }
                _ => {}
            }
            if !names.contains(&"timestamp") && f.timestamp_format != TimestampFormat::Auto {
                errs.push(
                    join(&fp, "timestamp_format"),
                    "the pattern has no `timestamp` capture (the modification time is used)",
                );
            }
            for (j, v) in f.expected_volumes.iter().enumerate() {
                if v.is_empty() {
                    errs.push(format!("{fp}.expected_volumes[{j}]"), "must not be empty");
                }
            }
            if f.max_age.is_some_and(|d| d.is_zero()) {
                errs.push(join(&fp, "max_age"), "must be positive");
            }
        }
        if self.verify_timeout.is_zero() {
            errs.push(join(path, "verify_timeout"), "must be positive");
        }
        if self.max_volumes == 0 || self.max_volumes > 10_000 {
            errs.push(join(path, "max_volumes"), "must be between 1 and 10000");
        }
    }
}

/// Reads a timestamp capture as Unix seconds.
#[must_use]
pub fn parse_timestamp(s: &str, format: &TimestampFormat, zone: Zone) -> Option<f64> {
    let naive = |n: NaiveDateTime| -> Option<f64> {
        let t = match zone {
            Zone::Utc => n.and_utc().timestamp_millis(),
            Zone::Local => Local.from_local_datetime(&n).earliest()?.timestamp_millis(),
        };
        Some(t as f64 / 1000.0)
    };
    let with_formats = |formats: &[&str]| -> Option<f64> {
        for f in formats {
            if let Ok(t) = DateTime::parse_from_str(s, f) {
                return Some(t.timestamp_millis() as f64 / 1000.0);
            }
            if let Ok(n) = NaiveDateTime::parse_from_str(s, f) {
                return naive(n);
            }
            if let Ok(d) = NaiveDate::parse_from_str(s, f) {
                return naive(d.and_hms_opt(0, 0, 0)?);
            }
        }
        None
    };
    let unix = |s: &str| -> Option<f64> {
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = s.parse().ok()?;
        match s.len() {
            9..=11 => Some(n as f64),
            13 => Some(n as f64 / 1000.0),
            _ => None,
        }
    };
    let rfc3339 = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis() as f64 / 1000.0)
    };
    match format {
        TimestampFormat::Unix => unix(s),
        TimestampFormat::Rfc3339 => rfc3339(s),
        TimestampFormat::Strftime(f) => with_formats(&[f.as_str()]),
        TimestampFormat::Auto => unix(s)
            .or_else(|| rfc3339(s))
            .or_else(|| with_formats(NAIVE_FORMATS))
            .or_else(|| with_formats(DATE_FORMATS)),
    }
}

/// Why an archive failed verification.
#[derive(Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// The archive is corrupt or truncated.
    Corrupt(String),
    /// The deadline passed (or the run was cancelled) before the end was reached.
    TimedOut,
    /// The archive could not be opened.
    Io(String),
}

/// How an archive is packed, by its name; `None` for names that are not verified.
fn packing(name: &str) -> Option<(bool, bool)> {
    let n = name.to_ascii_lowercase();
    if n.ends_with(".tar.gz") || n.ends_with(".tgz") {
        Some((true, true))
    } else if n.ends_with(".tar") {
        Some((false, true))
    } else if n.ends_with(".gz") {
        Some((true, false))
    } else {
        None
    }
}

/// Reads an archive to its end: every gzip member with its checksum, every tar entry's data
/// and the padding after the end marker. Gives the number of tar entries.
///
/// # Errors
/// [`VerifyError`]: corrupt or truncated, deadline passed, or not openable.
pub fn verify_archive(
    path: &Path,
    deadline: Instant,
    cancel: &AtomicBool,
) -> Result<u64, VerifyError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (gz, tar) = packing(&name).unwrap_or((true, true));
    let file = File::open(path).map_err(|e| VerifyError::Io(e.to_string()))?;
    let bounded = Bounded {
        inner: file,
        deadline,
        cancel,
    };
    let reader: Box<dyn Read + '_> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            256 * 1024,
            bounded,
        )))
    } else {
        Box::new(BufReader::with_capacity(256 * 1024, bounded))
    };
    let expired = || Instant::now() >= deadline || cancel.load(Ordering::Relaxed);
    let classify = |e: io::Error| {
        if expired() {
            VerifyError::TimedOut
        } else {
            VerifyError::Corrupt(e.to_string())
        }
    };
    if !tar {
        let mut r = reader;
        io::copy(&mut r, &mut io::sink()).map_err(classify)?;
        return Ok(0);
    }
    let mut archive = tar::Archive::new(reader);
    let mut entries = 0u64;
    for entry in archive.entries().map_err(classify)? {
        let mut entry = entry.map_err(classify)?;
        io::copy(&mut entry, &mut io::sink()).map_err(classify)?;
        entries += 1;
    }
    // The rest of the stream (tar record padding, the gzip trailer) holds the checksum that
    // tells a truncated archive from a complete one.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(classify)?;
    Ok(entries)
}

/// A reader that fails once its deadline passed or its run was cancelled.
struct Bounded<'a, R> {
    inner: R,
    deadline: Instant,
    cancel: &'a AtomicBool,
}

impl<R: Read> Read for Bounded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if Instant::now() >= self.deadline || self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "verification timed out",
            ));
        }
        self.inner.read(buf)
    }
}

/// One matched backup file.
#[derive(Debug, Clone)]
struct Backup {
    name: String,
    path: PathBuf,
    time: f64,
    size: u64,
    key: FileKey,
}

type VerifyCache = HashMap<PathBuf, (FileKey, bool)>;

/// A `backup` probe.
pub struct BackupProbe {
    cfg: Arc<BackupConfig>,
    verified: Arc<Mutex<VerifyCache>>,
}

impl BackupProbe {
    /// Builds the probe.
    #[must_use]
    pub fn new(cfg: BackupConfig) -> Self {
        Self {
            cfg: Arc::new(cfg),
            verified: Arc::default(),
        }
    }

    /// Lists every folder, and verifies the newest archives when configured, on a blocking
    /// thread.
    ///
    /// # Errors
    /// `not_found` for a missing folder or expected volume, `io` for an unreadable folder,
    /// `parse` for a corrupt newest archive, `stale` for a backup older than `max_age`,
    /// `timeout` when verification did not finish in time.
    pub async fn run(&self, cx: &RunContext, out: &mut Samples) -> Result<(), ProbeError> {
        let cfg = self.cfg.clone();
        let verified = self.verified.clone();
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        // Verification stops at the run's deadline at the latest, so that a slow archive ends
        // as this probe's own `timeout` with every other sample kept.
        let budget = cfg.verify_timeout.min(cx.remaining());
        let (samples, items, result) = tokio::task::spawn_blocking(move || {
            let mut out = Samples::default();
            let deadline = Instant::now() + budget;
            let mut run = Run {
                cfg: &cfg,
                verified: &verified,
                deadline,
                cancel: &cancel,
                problems: Problems::default(),
                now: unix_time(SystemTime::now()),
                checked: HashSet::new(),
                items: Vec::new(),
            };
            for f in &cfg.folders {
                run.folder(f, &mut out);
            }
            let checked = std::mem::take(&mut run.checked);
            lock(&verified).retain(|p, _| checked.contains(p));
            (out, run.items, run.problems.into_result())
        })
        .await
        .map_err(|e| ProbeError::new(Reason::Other, format!("backup scan failed: {e}")))?;
        out.0.extend(samples.0);
        for item in items {
            cx.report(item);
        }
        result
    }
}

struct Run<'a> {
    cfg: &'a BackupConfig,
    verified: &'a Mutex<VerifyCache>,
    deadline: Instant,
    cancel: &'a AtomicBool,
    problems: Problems<Trouble>,
    now: f64,
    checked: HashSet<PathBuf>,
    /// What the status page shows: each volume, and each folder with a problem.
    items: Vec<Item>,
}

impl Run<'_> {
    fn folder(&mut self, f: &FolderConfig, out: &mut Samples) {
        let label = f.label();
        let fl = [("folder", label.as_str())];
        let meta = match std::fs::metadata(&f.path) {
            Ok(m) if m.is_dir() => m,
            Ok(_) => {
                out.flag(&FOLDER_EXISTS, &fl, false);
                self.problems
                    .push(Trouble::NotFound, format!("{label} is not a directory"));
                self.items.push(Item::new(
                    FOLDER,
                    &label,
                    Health::Failing,
                    "not a directory",
                ));
                return;
            }
            Err(e) => {
                out.flag(&FOLDER_EXISTS, &fl, false);
                if e.kind() == io::ErrorKind::NotFound {
                    self.problems
                        .push(Trouble::NotFound, format!("{label} does not exist"));
                    self.items
                        .push(Item::new(FOLDER, &label, Health::Failing, "missing"));
                } else {
                    self.problems.push(Trouble::Io, format!("{label}: {e}"));
                    self.items.push(
                        Item::new(FOLDER, &label, Health::Failing, "cannot read")
                            .detail(e.to_string()),
                    );
                }
                return;
            }
        };
        out.flag(&FOLDER_EXISTS, &fl, true);
        let others = meta.mode() & 0o007;
        out.flag(&FOLDER_OTHERS, &fl, others != 0);
        if others != 0 {
            self.items.push(
                Item::new(
                    FOLDER,
                    &label,
                    Health::Warning,
                    format!("accessible by others (mode {:o})", meta.mode() & 0o7777),
                )
                .detail("backups hold secrets; the folder belongs in mode 0700"),
            );
        }
        let rd = match std::fs::read_dir(&f.path) {
            Ok(rd) => rd,
            Err(e) => {
                self.problems.push(Trouble::Io, format!("{label}: {e}"));
                self.items.push(
                    Item::new(FOLDER, &label, Health::Failing, "cannot read").detail(e.to_string()),
                );
                return;
            }
        };
        let mut by_volume: BTreeMap<String, Vec<Backup>> = BTreeMap::new();
        let (mut unmatched, mut bad_time) = (0usize, 0usize);
        for entry in rd.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(caps) = f.pattern.get().captures(&name) else {
                unmatched += 1;
                continue;
            };
            let path = entry.path();
            // Follows symlinks: a link to an archive counts as that archive.
            let Ok(m) = std::fs::metadata(&path) else {
                continue;
            };
            if !m.is_file() {
                unmatched += 1;
                continue;
            }
            let volume = match (&f.volume, caps.name("volume")) {
                (Some(v), _) => v.clone(),
                (None, Some(v)) => v.as_str().to_string(),
                (None, None) => {
                    unmatched += 1;
                    continue;
                }
            };
            let time = match caps.name("timestamp") {
                Some(t) => match parse_timestamp(t.as_str(), &f.timestamp_format, f.timezone) {
                    Some(t) => t,
                    None => {
                        bad_time += 1;
                        continue;
                    }
                },
                None => m.modified().map(unix_time).unwrap_or(0.0),
            };
            by_volume.entry(volume).or_default().push(Backup {
                name,
                path,
                time,
                size: m.size(),
                key: FileKey::of(&m),
            });
        }
        let matched: usize = by_volume.values().map(Vec::len).sum();
        out.push(
            &FILES,
            &[("folder", &label), ("result", "matched")],
            matched as f64,
        );
        out.push(
            &FILES,
            &[("folder", &label), ("result", "unmatched")],
            unmatched as f64,
        );
        out.push(
            &FILES,
            &[("folder", &label), ("result", "bad_timestamp")],
            bad_time as f64,
        );
        out.push(&VOLUMES, &fl, by_volume.len() as f64);

        // Expected volumes first, then the others by name, up to the cap.
        let mut report: Vec<&str> = f.expected_volumes.iter().map(String::as_str).collect();
        for v in by_volume.keys() {
            if report.len() >= self.cfg.max_volumes.max(f.expected_volumes.len()) {
                break;
            }
            if !report.contains(&v.as_str()) {
                report.push(v);
            }
        }
        for volume in report {
            let vl = [("folder", label.as_str()), ("volume", volume)];
            let Some(backups) = by_volume.get(volume) else {
                out.push(&COUNT, &vl, 0.0);
                self.problems.push(
                    Trouble::NotFound,
                    format!("no backup of {volume} in {label}"),
                );
                self.items.push(
                    Item::new(VOLUME, volume, Health::Failing, "no backup")
                        .detail(format!("expected in {label}, none found")),
                );
                continue;
            };
            self.volume(f, &label, volume, backups, out);
        }
    }

    fn volume(
        &mut self,
        f: &FolderConfig,
        label: &str,
        volume: &str,
        backups: &[Backup],
        out: &mut Samples,
    ) {
        let vl = [("folder", label), ("volume", volume)];
        let by_age = |a: &&Backup, b: &&Backup| a.time.total_cmp(&b.time).then(a.name.cmp(&b.name));
        let (Some(newest), Some(oldest)) =
            (backups.iter().max_by(by_age), backups.iter().min_by(by_age))
        else {
            return;
        };
        out.push(&COUNT, &vl, backups.len() as f64);
        out.push(&NEWEST, &vl, newest.time);
        out.push(&OLDEST, &vl, oldest.time);
        out.push(&NEWEST_SIZE, &vl, newest.size as f64);
        out.push(
            &TOTAL_SIZE,
            &vl,
            backups.iter().map(|b| b.size as f64).sum::<f64>(),
        );
        let age = self.now - newest.time;
        let mut item = Item::new(
            VOLUME,
            volume,
            Health::Ok,
            format!("newest backup {} old", duration_words(age)),
        )
        .detail(format!(
            "{} in {label}, newest {}, oldest {} old",
            plural(backups.len(), "backup"),
            size_words(newest.size),
            duration_words(self.now - oldest.time)
        ))
        .at("newest", Some(newest.time));
        if let Some(max) = f.max_age {
            if age > max.as_secs_f64() {
                self.problems.push(
                    Trouble::Stale,
                    format!("{volume} in {label}: newest backup is {}s old", age.round()),
                );
                item = item.problem(
                    Health::Failing,
                    format!(
                        "stale: newest backup {} old, allowed {}",
                        duration_words(age),
                        duration_words(max.as_secs_f64())
                    ),
                );
            }
        }
        // An archive modified in the last seconds may still be being written; read now it would
        // look truncated. It is verified on a later run.
        let written = self.now - newest.key.modified_secs() >= WRITE_SETTLE.as_secs_f64();
        if self.cfg.verify_newest && written && packing(&newest.name).is_some() {
            match self.verify(newest) {
                Ok(valid) => {
                    out.flag(&NEWEST_VALID, &vl, valid);
                    if !valid {
                        self.problems
                            .push(Trouble::Corrupt, newest.path.display().to_string());
                        item = item
                            .problem(Health::Failing, "newest archive corrupt or truncated")
                            .detail(newest.path.display().to_string());
                    }
                }
                Err(unreadable) => {
                    if let Some(e) = &unreadable {
                        self.problems
                            .push(Trouble::Io, format!("{}: {e}", newest.path.display()));
                        item = item
                            .problem(Health::Failing, "newest archive cannot be read")
                            .detail(format!("{}: {e}", newest.path.display()));
                    } else {
                        item = item.problem(Health::Warning, "newest archive not verified in time");
                    }
                    self.problems
                        .push(Trouble::Unverified, newest.path.display().to_string());
                }
            }
        }
        self.items.push(item);
    }

    /// Whether the archive is valid, from the cache or by reading it; `None` when it could not
    /// be read to its end in time.
    /// Whether the archive is valid; `Err(None)` when its verification did not finish in
    /// time, `Err(Some(why))` when it could not be opened.
    fn verify(&mut self, b: &Backup) -> Result<bool, Option<String>> {
        self.checked.insert(b.path.clone());
        if let Some((key, valid)) = lock(self.verified).get(&b.path) {
            if *key == b.key {
                return Ok(*valid);
            }
        }
        let valid = match verify_archive(&b.path, self.deadline, self.cancel) {
            Ok(_) => true,
            Err(VerifyError::Corrupt(e)) => {
                tracing::debug!(archive = %b.path.display(), error = %e, "corrupt backup archive");
                false
            }
            Err(VerifyError::TimedOut) => return Err(None),
            Err(VerifyError::Io(e)) => return Err(Some(e)),
        };
        // An archive still being written changes while it is read; its result is not kept.
        let unchanged = std::fs::metadata(&b.path)
            .map(|m| FileKey::of(&m) == b.key)
            .unwrap_or(false);
        if unchanged {
            lock(self.verified).insert(b.path.clone(), (b.key, valid));
        }
        Ok(valid)
    }
}

/// What can be wrong with the backups of one run, most important first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Trouble {
    NotFound,
    Io,
    Corrupt,
    Stale,
    Unverified,
}

impl ProblemKind for Trouble {
    fn reason(self) -> Reason {
        match self {
            Trouble::NotFound => Reason::NotFound,
            Trouble::Io => Reason::Io,
            Trouble::Corrupt => Reason::Parse,
            Trouble::Stale => Reason::Stale,
            Trouble::Unverified => Reason::Timeout,
        }
    }

    fn heading(self) -> &'static str {
        match self {
            Trouble::NotFound | Trouble::Io | Trouble::Stale => "",
            Trouble::Corrupt => "corrupt or truncated archive",
            Trouble::Unverified => "verification did not finish in time",
        }
    }
}

/// The nouns of the items this family reports.
const FOLDER: &str = "folder";
const VOLUME: &str = "volume";

/// `1 backup`, `7 backups`.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A size in words with a decimal unit: `512 B`, `1.2 MB`.
fn size_words(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

fn unix_time(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: f64 = 1_795_316_400.0; // 2026-11-22T03:00:00Z

    #[test]
    fn sizes_in_words() {
        assert_eq!(size_words(0), "0 B");
        assert_eq!(size_words(999), "999 B");
        assert_eq!(size_words(1_234), "1.2 kB");
        assert_eq!(size_words(1_250_000), "1.2 MB");
        assert_eq!(size_words(3_000_000_000), "3.0 GB");
        assert_eq!(plural(1, "backup"), "1 backup");
        assert_eq!(plural(7, "backup"), "7 backups");
    }

    #[test]
    fn timestamp_formats() {
        let auto = TimestampFormat::Auto;
        for s in [
            "20261122T030000Z",
            "2026-11-22T03-00-00",
            "20261122-030000",
            "2026-11-22T03:00:00Z",
            "2026-11-22T04:00:00+01:00",
            "1795316400",
            "1795316400000",
            "2026-11-22_03-00-00",
        ] {
            assert_eq!(parse_timestamp(s, &auto, Zone::Utc), Some(T), "{s}");
        }
        assert_eq!(
            parse_timestamp("2026-11-22", &auto, Zone::Utc),
            Some(T - 3.0 * 3600.0)
        );
        assert_eq!(parse_timestamp("yesterday", &auto, Zone::Utc), None);
        assert_eq!(parse_timestamp("20261322T030000Z", &auto, Zone::Utc), None);
        let custom = TimestampFormat::Strftime("%d.%m.%Y-%H%M".into());
        assert_eq!(
            parse_timestamp("22.11.2026-0300", &custom, Zone::Utc),
            Some(T)
        );
        assert_eq!(
            parse_timestamp("1795316400", &TimestampFormat::Rfc3339, Zone::Utc),
            None
        );
    }

    #[test]
    fn default_pattern_matches_the_backup_scripts_names() {
        let p = default_pattern();
        let c = p
            .get()
            .captures("owui-data__20261122T030000Z.tar.gz")
            .unwrap();
        assert_eq!(&c["volume"], "owui-data");
        assert_eq!(&c["timestamp"], "20261122T030000Z");
        let c = p
            .get()
            .captures("context6-data__2026-11-22T03:00:00Z.tar.gz")
            .unwrap();
        assert_eq!(&c["volume"], "context6-data");
        assert!(p.get().captures("owui-data.tar.gz").is_none());
        assert!(p.get().captures("notes.txt").is_none());
    }

    #[test]
    fn config_checks() {
        let mut errs = ConfigErrors::default();
        let v = serde_json::json!({
            "folders": [
                { "path": "relative", "pattern": "^(?P<timestamp>\\d+)\\.tar$" },
                { "path": "/x", "timestamp_format": "%Y%m%d", "volume": "v" }
            ],
            "verify_timeout": "0s"
        });
        let mut c: BackupConfig =
            stackmedic_common::config::typed(&v, "probes[0].backup", &mut errs).unwrap();
        c.validate("probes[0].backup", &mut errs);
        let paths: Vec<&str> = errs.problems.iter().map(|p| p.path.as_str()).collect();
        assert!(
            paths.contains(&"probes[0].backup.folders[0].path"),
            "{errs}"
        );
        assert!(
            paths.contains(&"probes[0].backup.folders[0].pattern"),
            "{errs}"
        );
        assert!(
            paths.contains(&"probes[0].backup.folders[1].volume"),
            "{errs}"
        );
        assert!(paths.contains(&"probes[0].backup.verify_timeout"), "{errs}");
        let v = serde_json::json!({ "folders": [{ "path": "/x" }, { "path": "/x" }] });
        let mut errs = ConfigErrors::default();
        let mut c: BackupConfig = stackmedic_common::config::typed(&v, "b", &mut errs).unwrap();
        c.validate("b", &mut errs);
        assert!(errs.to_string().contains("used twice"), "{errs}");
        let v = serde_json::json!({ "folders": [{ "path": "/x", "timestamp_format": "nope" }] });
        let mut errs = ConfigErrors::default();
        // The bad format is reported; the rest of the section is still checked.
        let c = stackmedic_common::config::typed::<BackupConfig>(&v, "b", &mut errs);
        assert!(c.is_some_and(|c| c.folders.len() == 1));
        assert!(errs.to_string().contains("strftime"), "{errs}");
    }
}
