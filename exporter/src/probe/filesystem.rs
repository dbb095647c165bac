//! Disk space (the camera/PLC app: "Disk-Füllstand `df -h`, besonders HLS-/Backup-Verzeichnisse"): size,
//! free and available bytes and inodes of the filesystem holding a path (`statvfs`, as `df`),
//! and the size and file count of configured folders.
//!
//! A folder walk is bounded: it never follows a symbolic link, stops after `max_entries`
//! entries, and ends by the run's deadline. It runs on a blocking thread (as `statvfs` does:
//! a hung network mount must not stall the runtime), which stops when the run is cancelled.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use stackmedic_common::config::join;
use stackmedic_common::ConfigErrors;

use super::files::CancelOnDrop;
use super::{Health, Item, ProbeError, ProblemKind, Problems, Reason, RunContext};
use crate::metrics::{Family, Samples};

static SIZE: Family = Family::gauge(
    "stackmedic_filesystem_size_bytes",
    "Size of the filesystem holding the path, in bytes.",
);
static FREE: Family = Family::gauge(
    "stackmedic_filesystem_free_bytes",
    "Free bytes of the filesystem, including those reserved for root.",
);
static AVAIL: Family = Family::gauge(
    "stackmedic_filesystem_avail_bytes",
    "Bytes available to unprivileged users (what df shows as Avail).",
);
static INODES: Family = Family::gauge(
    "stackmedic_filesystem_inodes",
    "Inodes of the filesystem (0 for filesystems without a fixed number).",
);
static INODES_FREE: Family = Family::gauge(
    "stackmedic_filesystem_inodes_free",
    "Free inodes of the filesystem.",
);
static FOLDER_BYTES: Family = Family::gauge(
    "stackmedic_folder_size_bytes",
    "Sum of the sizes of the regular files under the folder, in bytes.",
);
static FOLDER_FILES: Family =
    Family::gauge("stackmedic_folder_files", "Regular files under the folder.");
static FOLDER_COMPLETE: Family = Family::gauge(
    "stackmedic_folder_walk_complete",
    "Whether the walk saw every entry (1), or stopped at max_entries or the deadline (0): then size and count are lower bounds.",
);
static FOLDER_UNREADABLE: Family = Family::gauge(
    "stackmedic_folder_unreadable_entries",
    "Entries under the folder that could not be read (permission denied, removed during the walk).",
);

fn default_max_entries() -> u64 {
    100_000
}

/// Below this share of available space the status page warns (the alert FilesystemAlmostFull
/// uses the same 10 %).
const AVAIL_WARNING: f64 = 0.10;

/// A number of bytes in words, in binary units: `512 B`, `3.0 MiB`, `1.5 GiB`.
pub(super) fn bytes_words(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Settings of a `filesystem` probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemConfig {
    /// A path on the filesystem to report (an absolute path).
    pub path: PathBuf,
    /// Folders whose size and file count are reported.
    #[serde(default)]
    pub folders: Vec<FolderConfig>,
    /// Most entries (files, folders, links) a walk visits per folder.
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
}

/// A folder to measure.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderConfig {
    /// An absolute path.
    pub path: PathBuf,
    /// The `folder` label; the path when absent.
    pub name: Option<String>,
}

impl FolderConfig {
    fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.path.display().to_string())
    }
}

impl FilesystemConfig {
    /// Checks that paths are absolute, labels unique and the limit sane.
    pub fn validate(&mut self, path: &str, errs: &mut ConfigErrors) {
        if !self.path.is_absolute() {
            errs.push(join(path, "path"), "must be an absolute path");
        }
        let mut labels = BTreeSet::new();
        for (i, f) in self.folders.iter().enumerate() {
            let at = format!("{path}.folders[{i}]");
            if !f.path.is_absolute() {
                errs.push(join(&at, "path"), "must be an absolute path");
            }
            if f.name.as_deref() == Some("") {
                errs.push(join(&at, "name"), "must not be empty");
            }
            if !labels.insert(f.label()) {
                errs.push(at, format!("duplicate folder {:?}", f.label()));
            }
        }
        if !(1..=10_000_000).contains(&self.max_entries) {
            errs.push(join(path, "max_entries"), "must be 1 to 10000000");
        }
    }
}

/// A `filesystem` probe.
pub struct FilesystemProbe {
    cfg: Arc<FilesystemConfig>,
}

/// What stopped a run, most important first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Problem {
    Missing,
    Unreadable,
    Deadline,
}

impl ProblemKind for Problem {
    fn reason(self) -> Reason {
        match self {
            Problem::Missing => Reason::NotFound,
            Problem::Unreadable => Reason::Io,
            Problem::Deadline => Reason::Timeout,
        }
    }
    fn heading(self) -> &'static str {
        match self {
            Problem::Missing => "missing",
            Problem::Unreadable => "unreadable",
            Problem::Deadline => "walk cut short by the deadline",
        }
    }
}

/// The result of walking one folder.
#[derive(Debug, Default, PartialEq, Eq)]
struct Walk {
    bytes: u64,
    files: u64,
    unreadable: u64,
    /// Why the walk stopped early, if it did.
    stopped: Option<Stop>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    MaxEntries,
    Deadline,
}

impl FilesystemProbe {
    /// Builds the probe.
    #[must_use]
    pub fn new(cfg: FilesystemConfig) -> Self {
        Self { cfg: Arc::new(cfg) }
    }

    /// Reads the filesystem's figures and walks the folders.
    ///
    /// # Errors
    /// `not_found` (the path or a folder does not exist), `io` (cannot be read), `timeout`
    /// (a walk was cut short by the run's deadline; what it counted is still exported).
    pub async fn run(&self, cx: &RunContext, out: &mut Samples) -> Result<(), ProbeError> {
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let cfg = self.cfg.clone();
        let deadline = cx.deadline().into_std();
        let job = tokio::task::spawn_blocking(move || measure(&cfg, deadline, &cancel));
        match tokio::time::timeout_at(cx.deadline(), job).await {
            Ok(Ok((samples, items, result))) => {
                out.0.extend(samples.0);
                for item in items {
                    cx.report(item);
                }
                result
            }
            Ok(Err(e)) => Err(ProbeError::new(Reason::Other, format!("walk failed: {e}"))),
            Err(_) => Err(cx.expired("statvfs")),
        }
    }
}

/// What one run measured: samples, status page items and the result.
type Measured = (Samples, Vec<Item>, Result<(), ProbeError>);

fn measure(cfg: &FilesystemConfig, deadline: Instant, cancel: &AtomicBool) -> Measured {
    let mut out = Samples::default();
    let mut items = Vec::new();
    let mut problems = Problems::default();
    let path = cfg.path.display().to_string();
    match rustix::fs::statvfs(&cfg.path) {
        Ok(s) => {
            let unit = s.f_frsize.max(1);
            let (size, avail) = (s.f_blocks * unit, s.f_bavail * unit);
            out.push(&SIZE, &[], size as f64);
            out.push(&FREE, &[], (s.f_bfree * unit) as f64);
            out.push(&AVAIL, &[], avail as f64);
            out.push(&INODES, &[], s.f_files as f64);
            out.push(&INODES_FREE, &[], s.f_ffree as f64);
            items.push(filesystem_item(&path, size, avail, s.f_files, s.f_ffree));
        }
        Err(e) => {
            let kind = if e == rustix::io::Errno::NOENT {
                Problem::Missing
            } else {
                Problem::Unreadable
            };
            problems.push(kind, format!("{path}: {e}"));
            items.push(
                Item::new("filesystem", &path, Health::Failing, "cannot be read")
                    .detail(e.to_string()),
            );
        }
    }
    for folder in &cfg.folders {
        let label = folder.label();
        let labels = [("folder", label.as_str())];
        match std::fs::metadata(&folder.path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                problems.push(Problem::Missing, format!("{label}: not a folder"));
                items.push(Item::new(FOLDER, &label, Health::Failing, "not a folder"));
                continue;
            }
            Err(e) => {
                let (kind, state) = if e.kind() == std::io::ErrorKind::NotFound {
                    (Problem::Missing, "missing")
                } else {
                    (Problem::Unreadable, "cannot be read")
                };
                problems.push(kind, format!("{label}: {e}"));
                items.push(Item::new(FOLDER, &label, Health::Failing, state).detail(e.to_string()));
                continue;
            }
        }
        let w = walk(&folder.path, cfg.max_entries, deadline, cancel);
        out.push(&FOLDER_BYTES, &labels, w.bytes as f64);
        out.push(&FOLDER_FILES, &labels, w.files as f64);
        out.push(&FOLDER_UNREADABLE, &labels, w.unreadable as f64);
        out.flag(&FOLDER_COMPLETE, &labels, w.stopped.is_none());
        let counted = format!("{} in {} files", bytes_words(w.bytes), w.files);
        let mut item = match w.stopped {
            None => Item::new(FOLDER, &label, Health::Ok, counted),
            Some(Stop::MaxEntries) => Item::new(
                FOLDER,
                &label,
                Health::Warning,
                format!("at least {counted}"),
            )
            .detail("the walk stopped at max_entries"),
            Some(Stop::Deadline) => {
                problems.push(Problem::Deadline, label.clone());
                Item::new(
                    FOLDER,
                    &label,
                    Health::Warning,
                    format!("at least {counted}"),
                )
                .detail("the walk was cut short by the run's deadline")
            }
        };
        if w.unreadable > 0 {
            item = item.detail(format!("{} entries could not be read", w.unreadable));
        }
        items.push(item);
    }
    (out, items, problems.into_result())
}

/// The folder noun of the status page.
const FOLDER: &str = "folder";

/// The filesystem as the status page shows it: nothing available is failing, less than 10 %
/// (or 5 % of the inodes) a warning.
fn filesystem_item(path: &str, size: u64, avail: u64, inodes: u64, inodes_free: u64) -> Item {
    let share = if size == 0 {
        1.0
    } else {
        avail as f64 / size as f64
    };
    let state = format!(
        "{:.0} % available ({} of {})",
        share * 100.0,
        bytes_words(avail),
        bytes_words(size)
    );
    let health = if size > 0 && avail == 0 {
        Health::Failing
    } else if share < AVAIL_WARNING {
        Health::Warning
    } else {
        Health::Ok
    };
    let mut item = Item::new("filesystem", path, health, state);
    if inodes > 0 && (inodes_free as f64) < inodes as f64 * 0.05 {
        item = item.problem(
            Health::Warning,
            format!("{inodes_free} of {inodes} inodes free"),
        );
    }
    item
}

/// Walks `root` depth first without following symbolic links (a link is counted as an entry,
/// never as a file or a folder to enter), so a loop or a link out of the tree is harmless.
fn walk(root: &Path, max_entries: u64, deadline: Instant, cancel: &AtomicBool) -> Walk {
    let mut w = Walk::default();
    let mut pending = vec![root.to_path_buf()];
    let mut entries = 0u64;
    while let Some(dir) = pending.pop() {
        let list = match std::fs::read_dir(&dir) {
            Ok(l) => l,
            Err(_) => {
                w.unreadable += 1;
                continue;
            }
        };
        for entry in list {
            if entries >= max_entries {
                w.stopped = Some(Stop::MaxEntries);
                return w;
            }
            // Checking the clock every entry costs little next to the stat it accompanies.
            if cancel.load(Ordering::Relaxed) || Instant::now() >= deadline {
                w.stopped = Some(Stop::Deadline);
                return w;
            }
            entries += 1;
            let Ok(entry) = entry else {
                w.unreadable += 1;
                continue;
            };
            // DirEntry::metadata does not follow symbolic links.
            match entry.metadata() {
                Ok(m) if m.is_dir() => pending.push(entry.path()),
                Ok(m) if m.is_file() => {
                    w.files += 1;
                    w.bytes += m.len();
                }
                Ok(_) => {}
                Err(_) => w.unreadable += 1,
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn walks_without_following_links_and_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("hls");
        std::fs::create_dir_all(root.join("cam/a")).unwrap();
        std::fs::write(root.join("cam/a/1.ts"), vec![0u8; 1000]).unwrap();
        std::fs::write(root.join("cam/2.ts"), vec![0u8; 24]).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("big"), vec![0u8; 50_000]).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("cam/link")).unwrap();
        std::os::unix::fs::symlink(&root, root.join("cam/a/loop")).unwrap();
        let far = Instant::now() + Duration::from_secs(60);
        let never = AtomicBool::new(false);
        let w = walk(&root, 1000, far, &never);
        assert_eq!(
            w,
            Walk {
                bytes: 1024,
                files: 2,
                unreadable: 0,
                stopped: None
            }
        );
        let w = walk(&root, 2, far, &never);
        assert_eq!(w.stopped, Some(Stop::MaxEntries));
        let w = walk(&root, 1000, Instant::now(), &never);
        assert_eq!(w.stopped, Some(Stop::Deadline));
    }

    #[test]
    fn items_warn_before_the_disk_is_full() {
        assert_eq!(bytes_words(512), "512 B");
        assert_eq!(bytes_words(3 << 20), "3.0 MiB");
        let ok = filesystem_item("/srv", 1000, 500, 100, 50);
        assert_eq!(
            (ok.health, ok.state.as_str()),
            (Health::Ok, "50 % available (500 B of 1000 B)")
        );
        assert_eq!(
            filesystem_item("/srv", 1000, 50, 0, 0).health,
            Health::Warning
        );
        assert_eq!(
            filesystem_item("/srv", 1000, 0, 0, 0).health,
            Health::Failing
        );
        let inodes = filesystem_item("/srv", 1000, 500, 100, 4);
        assert_eq!(inodes.health, Health::Warning);
        assert_eq!(inodes.state, "4 of 100 inodes free");
    }

    #[test]
    fn config_problems_have_paths() {
        let mut c = FilesystemConfig {
            path: "relative".into(),
            folders: vec![
                FolderConfig {
                    path: "/a".into(),
                    name: Some("x".into()),
                },
                FolderConfig {
                    path: "b".into(),
                    name: Some("x".into()),
                },
            ],
            max_entries: 0,
        };
        let mut errs = ConfigErrors::default();
        c.validate("probes[0].filesystem", &mut errs);
        let text = errs.to_string();
        for want in [
            "probes[0].filesystem.path: must be an absolute path",
            "probes[0].filesystem.folders[1].path: must be an absolute path",
            "probes[0].filesystem.folders[1]: duplicate folder \"x\"",
            "probes[0].filesystem.max_entries: must be 1 to 10000000",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
    }
}
