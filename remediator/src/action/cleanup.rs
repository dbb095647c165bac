//! `cleanup`: removes old files under one configured folder — those whose name matches the
//! target's pattern and that are older than its minimum age — always keeping the newest of each
//! group, at most a number of files and of bytes per run, oldest first.
//!
//! Nothing of it comes from an alert: the folder, pattern and limits are the target's. The walk
//! and the removal work on directory file descriptors (`openat`, `statat`, `unlinkat`), so:
//! a symbolic link is never followed (a link is neither a file to remove nor a folder to enter),
//! a folder on another filesystem is not entered, the walk never goes above the configured folder
//! (names come from the directory itself, one component at a time), and a folder is never
//! removed (`unlinkat` without `AT_REMOVEDIR` refuses one). A file that changed between planning
//! and removal (another inode, another size or time) is left alone.
//!
//! The audit lists every file removed (or, in a dry run, that would be): a run never removes a
//! file its listing has no room for, which bounds the listing to [`LISTING_BUDGET`].

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use serde::Deserialize;
use serde_json::Value;
use stackmedic_common::config::{self as common, duration, ConfigErrors};

use super::ActionError;
use crate::clock::{now, rfc3339};

/// The target section key.
pub const SECTION: &str = "cleanup";

/// Most characters of the list of files one run removes; the run stops before a file that
/// would not fit, so the audit names every file it removed.
pub const LISTING_BUDGET: usize = 32 * 1024;

// The audit row keeps the listing whole: the store cuts a job's detail only beyond
// DETAIL_BYTES, which leaves room for the summary and the pipeline's words around the listing.
const _: () = assert!(LISTING_BUDGET + 4 * 1024 <= crate::limits::DETAIL_BYTES);

/// Most entries a walk visits; a larger folder is refused rather than judged on a partial view
/// (which could take a file for old that is in fact among the newest of its group).
pub const MAX_ENTRIES: usize = 200_000;

/// Upper bound of `max_files`.
const MAX_FILES_LIMIT: usize = 1000;

/// Upper bound of `max_depth`.
const MAX_DEPTH_LIMIT: usize = 8;

/// A folder to clean up (`targets[].cleanup`).
#[derive(Debug, Clone)]
pub struct CleanupTarget {
    /// The folder, an absolute path.
    pub folder: PathBuf,
    /// File names to consider; a capture named `group` groups them (with their folder).
    pub pattern: Regex,
    /// Only files last modified longer ago than this are removed.
    pub min_age: Duration,
    /// Files kept in each group however old they are, newest first.
    pub keep_newest: usize,
    /// Most files removed per run.
    pub max_files: usize,
    /// Most bytes removed per run.
    pub max_bytes: Option<u64>,
    /// Levels of folders looked into: 1 is the folder's own files.
    pub max_depth: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CleanupTargetFile {
    folder: PathBuf,
    pattern: String,
    #[serde(with = "duration")]
    min_age: Duration,
    #[serde(default = "default_keep_newest")]
    keep_newest: usize,
    #[serde(default = "default_max_files")]
    max_files: usize,
    max_bytes: Option<u64>,
    #[serde(default = "default_max_depth")]
    max_depth: usize,
}

fn default_keep_newest() -> usize {
    1
}
fn default_max_files() -> usize {
    100
}
fn default_max_depth() -> usize {
    1
}

impl CleanupTarget {
    /// Parses and checks the section at `path`.
    pub fn load(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<Self> {
        let f: CleanupTargetFile = common::typed(v, path, errs)?;
        let mut ok = true;
        let mut problem = |key: &str, why: String| {
            errs.push(common::join(path, key), why);
            ok = false;
        };
        if !f.folder.is_absolute() || f.folder.components().any(|c| c.as_os_str() == "..") {
            problem("folder", "must be an absolute path without `..`".into());
        } else if f.folder.parent().is_none() {
            problem("folder", "must not be the root folder".into());
        }
        let pattern = match Regex::new(&f.pattern) {
            Ok(r) => Some(r),
            Err(e) => {
                problem("pattern", format!("invalid regular expression: {e}"));
                None
            }
        };
        if f.min_age.is_zero() {
            problem(
                "min_age",
                "must be greater than 0s (a file being written is young)".into(),
            );
        }
        if !(1..=MAX_FILES_LIMIT).contains(&f.max_files) {
            problem("max_files", format!("must be 1 to {MAX_FILES_LIMIT}"));
        }
        if f.max_bytes == Some(0) {
            problem("max_bytes", "must be greater than 0".into());
        }
        if !(1..=MAX_DEPTH_LIMIT).contains(&f.max_depth) {
            problem("max_depth", format!("must be 1 to {MAX_DEPTH_LIMIT}"));
        }
        let pattern = pattern?;
        ok.then_some(CleanupTarget {
            folder: f.folder,
            pattern,
            min_age: f.min_age,
            keep_newest: f.keep_newest,
            max_files: f.max_files,
            max_bytes: f.max_bytes,
            max_depth: f.max_depth,
        })
    }
}

/// The rule keys of `cleanup`: none (everything it may touch is the target's).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleParams {}

/// A cleanup of a rule on one folder.
#[derive(Debug, Clone)]
pub struct Cleanup {
    /// The folder and its limits.
    pub target: Arc<CleanupTarget>,
}

impl Cleanup {
    /// Removes what the plan selects; the description lists every file removed.
    pub(super) async fn run(&self) -> Result<String, ActionError> {
        let target = self.target.clone();
        tokio::task::spawn_blocking(move || {
            let plan = plan(&target, now())?;
            remove(&target, plan)
        })
        .await
        .map_err(|e| ActionError::Failed(format!("cleanup task: {e}")))?
    }

    /// What a run would remove now, for a dry run's audit.
    pub(super) async fn dry_run(&self) -> String {
        let target = self.target.clone();
        let planned = tokio::task::spawn_blocking(move || plan(&target, now())).await;
        match planned {
            Ok(Ok(p)) => p.describe("would remove"),
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("cleanup task: {e}"),
        }
    }
}

/// A regular file found by the walk.
#[derive(Debug)]
struct Candidate {
    /// The directory holding it, open.
    dir: Arc<OwnedFd>,
    /// Its name in `dir`.
    name: String,
    /// Its path below the configured folder, for the audit.
    relative: String,
    id: FileId,
    group: (String, String),
}

/// What identifies a file between planning and removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
}

impl FileId {
    // The field types of `struct stat` differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    fn of(st: &Stat) -> Self {
        FileId {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: st.st_mtime as i64,
        }
    }
}

/// What a run removes, and what it saw.
#[derive(Debug, Default)]
struct Plan {
    folder: String,
    selected: Vec<Candidate>,
    matching: usize,
    kept_newest: usize,
    too_young: usize,
    /// Old enough, but beyond the run's limits (files, bytes, listing).
    left_by_limits: usize,
    listing_chars: usize,
}

impl Plan {
    fn bytes(&self) -> u64 {
        self.selected.iter().map(|c| c.id.size).sum()
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "{} files match, {} kept as newest of their group, {} younger than min_age",
            self.matching, self.kept_newest, self.too_young
        );
        if self.left_by_limits > 0 {
            s.push_str(&format!(
                ", {} old enough but beyond this run's limits",
                self.left_by_limits
            ));
        }
        s
    }

    fn describe(&self, verb: &str) -> String {
        if self.selected.is_empty() {
            return format!("{verb} nothing under {}: {}", self.folder, self.summary());
        }
        let list: Vec<String> = self.selected.iter().map(entry).collect();
        format!(
            "{verb} {} files ({} bytes) under {} ({}): {}",
            self.selected.len(),
            self.bytes(),
            self.folder,
            self.summary(),
            list.join(", ")
        )
    }
}

/// One file as the audit lists it: `cam-yard/seg-1.ts (4096 B, 2026-11-20T10:00:00Z)`.
fn entry(c: &Candidate) -> String {
    format!(
        "{} ({} B, {})",
        c.relative,
        c.id.size,
        rfc3339(c.id.mtime as f64)
    )
}

fn open_dir(dir: impl AsFd, name: &str) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Walks the folder and selects the files to remove.
fn plan(t: &CleanupTarget, now: f64) -> Result<Plan, ActionError> {
    let folder = t.folder.display().to_string();
    let root = rustix::fs::open(
        &t.folder,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ActionError::Failed(format!("cannot open the folder {folder}: {e}")))?;
    let root_dev = FileId::of(
        &rustix::fs::fstat(&root)
            .map_err(|e| ActionError::Failed(format!("cannot stat {folder}: {e}")))?,
    )
    .dev;
    let mut found: Vec<Candidate> = Vec::new();
    let mut visited = 0usize;
    // (directory, its path below the folder, its depth: 1 for the folder itself)
    let mut stack: Vec<(Arc<OwnedFd>, String, usize)> = vec![(Arc::new(root), String::new(), 1)];
    while let Some((dir, relative_dir, depth)) = stack.pop() {
        let entries = rustix::fs::Dir::read_from(dir.as_fd()).map_err(|e| {
            ActionError::Failed(format!("cannot read {folder}/{relative_dir}: {e}"))
        })?;
        for item in entries {
            let item = item.map_err(|e| {
                ActionError::Failed(format!("cannot read {folder}/{relative_dir}: {e}"))
            })?;
            let Ok(name) = item.file_name().to_str() else {
                // A name that is not UTF-8 cannot be matched or listed: left alone.
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            visited += 1;
            if visited > MAX_ENTRIES {
                return Err(ActionError::Failed(format!(
                    "{folder} holds more than {MAX_ENTRIES} entries: nothing removed, since the newest files of each group cannot be known"
                )));
            }
            let name = name.to_string();
            let Ok(st) = rustix::fs::statat(dir.as_fd(), name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            else {
                continue;
            };
            let id = FileId::of(&st);
            let relative = if relative_dir.is_empty() {
                name.clone()
            } else {
                format!("{relative_dir}/{name}")
            };
            match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile if id.dev == root_dev => {
                    let Some(caps) = t.pattern.captures(&name) else {
                        continue;
                    };
                    let group = caps
                        .name("group")
                        .map(|m| m.as_str().to_string())
                        .unwrap_or_default();
                    found.push(Candidate {
                        dir: dir.clone(),
                        name,
                        relative,
                        id,
                        group: (relative_dir.clone(), group),
                    });
                }
                FileType::Directory if depth < t.max_depth && id.dev == root_dev => {
                    // Opened without following a link, then checked to be the folder that was
                    // stat'ed: a swap in between is not entered.
                    let Ok(sub) = open_dir(dir.as_fd(), &name) else {
                        continue;
                    };
                    let same = rustix::fs::fstat(&sub)
                        .map(|s| FileId::of(&s))
                        .is_ok_and(|s| s.dev == id.dev && s.ino == id.ino);
                    if same {
                        stack.push((Arc::new(sub), relative, depth + 1));
                    }
                }
                // Links, devices, sockets, folders beyond max_depth or on another filesystem.
                _ => {}
            }
        }
    }
    Ok(select(t, found, now, folder))
}

/// Keeps the newest of each group, drops the young, and takes the oldest of the rest within
/// the run's limits.
fn select(t: &CleanupTarget, found: Vec<Candidate>, now: f64, folder: String) -> Plan {
    let mut plan = Plan {
        folder,
        matching: found.len(),
        ..Plan::default()
    };
    let mut groups: BTreeMap<(String, String), Vec<Candidate>> = BTreeMap::new();
    for c in found {
        groups.entry(c.group.clone()).or_default().push(c);
    }
    let cutoff = now - t.min_age.as_secs_f64();
    let mut eligible = Vec::new();
    for (_, mut files) in groups {
        files.sort_by(|a, b| {
            b.id.mtime
                .cmp(&a.id.mtime)
                .then_with(|| b.relative.cmp(&a.relative))
        });
        for (i, c) in files.into_iter().enumerate() {
            if i < t.keep_newest {
                plan.kept_newest += 1;
            } else if (c.id.mtime as f64) > cutoff {
                plan.too_young += 1;
            } else {
                eligible.push(c);
            }
        }
    }
    eligible.sort_by(|a, b| {
        a.id.mtime
            .cmp(&b.id.mtime)
            .then_with(|| a.relative.cmp(&b.relative))
    });
    let mut bytes = 0u64;
    let mut full = false;
    for c in eligible {
        let line = entry(&c).len() + 2;
        let over_bytes = t.max_bytes.is_some_and(|max| bytes + c.id.size > max);
        if full
            || plan.selected.len() >= t.max_files
            || over_bytes
            || plan.listing_chars + line > LISTING_BUDGET
        {
            // Oldest first, and the limits are not a knapsack: once one is reached the run
            // stops, so what it leaves is always the newer files.
            full = true;
            plan.left_by_limits += 1;
            continue;
        }
        bytes += c.id.size;
        plan.listing_chars += line;
        plan.selected.push(c);
    }
    plan
}

/// Removes the planned files that are still what was planned.
fn remove(t: &CleanupTarget, plan: Plan) -> Result<String, ActionError> {
    if plan.selected.is_empty() {
        return Err(ActionError::Failed(format!(
            "nothing to remove under {}: {}",
            plan.folder,
            plan.summary()
        )));
    }
    let mut removed = Vec::new();
    let mut bytes = 0u64;
    let mut left = Vec::new();
    for c in &plan.selected {
        let now_id = rustix::fs::statat(c.dir.as_fd(), c.name.as_str(), AtFlags::SYMLINK_NOFOLLOW);
        let still = now_id.as_ref().is_ok_and(|st| {
            FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && FileId::of(st) == c.id
        });
        if !still {
            left.push(format!("{} (changed since it was chosen)", c.relative));
            continue;
        }
        match rustix::fs::unlinkat(c.dir.as_fd(), c.name.as_str(), AtFlags::empty()) {
            Ok(()) => {
                bytes += c.id.size;
                removed.push(entry(c));
            }
            Err(e) => left.push(format!("{} ({e})", c.relative)),
        }
    }
    let folder = t.folder.display();
    let mut text = format!(
        "removed {} files ({bytes} bytes) under {folder} ({}): {}",
        removed.len(),
        plan.summary(),
        if removed.is_empty() {
            "none".to_string()
        } else {
            removed.join(", ")
        }
    );
    if !left.is_empty() {
        text.push_str(&format!("; not removed: {}", left.join(", ")));
    }
    if removed.is_empty() {
        return Err(ActionError::Failed(text));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, File};
    use std::time::SystemTime;

    fn target(folder: &std::path::Path, pattern: &str) -> CleanupTarget {
        CleanupTarget {
            folder: folder.to_path_buf(),
            pattern: Regex::new(pattern).unwrap(),
            min_age: Duration::from_secs(3600),
            keep_newest: 1,
            max_files: 100,
            max_bytes: None,
            max_depth: 1,
        }
    }

    /// Writes `name` with `size` bytes, last modified `age_h` hours ago.
    fn file(dir: &std::path::Path, name: &str, size: usize, age_h: u64) {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, vec![b'x'; size]).unwrap();
        let t = SystemTime::now() - Duration::from_secs(age_h * 3600);
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn keeps_newest_per_group_and_young_files() {
        let d = tempfile::tempdir().unwrap();
        for (name, age) in [
            ("a__1.tar.gz", 50),
            ("a__2.tar.gz", 40),
            ("a__3.tar.gz", 30),
            ("b__1.tar.gz", 60),
            ("b__2.tar.gz", 0),
            ("notes.txt", 100),
        ] {
            file(d.path(), name, 10, age);
        }
        let mut t = target(d.path(), r"^(?P<group>[a-z]+)__\d+\.tar\.gz$");
        t.keep_newest = 1;
        let out = remove(&t, plan(&t, now()).unwrap()).unwrap();
        assert!(out.starts_with("removed 3 files (30 bytes)"), "{out}");
        // b__1 is old, but b__2 (young) is b's newest; a__3 is a's newest.
        assert_eq!(names(d.path()), ["a__3.tar.gz", "b__2.tar.gz", "notes.txt"]);
        assert!(out.contains("a__1.tar.gz (10 B, "), "{out}");
        assert!(out.contains("b__1.tar.gz"), "{out}");
        // Nothing left to do is a failed attempt that says why.
        let again = remove(&t, plan(&t, now()).unwrap())
            .unwrap_err()
            .to_string();
        assert!(again.contains("nothing to remove"), "{again}");
        assert!(again.contains("2 files match, 2 kept as newest"), "{again}");
    }

    #[test]
    fn limits_take_the_oldest_first_and_stop() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..10u64 {
            file(d.path(), &format!("seg-{i}.ts"), 100, 100 - i);
        }
        let mut t = target(d.path(), r"^seg-\d+\.ts$");
        t.max_files = 3;
        let p = plan(&t, now()).unwrap();
        let chosen: Vec<&str> = p.selected.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(chosen, ["seg-0.ts", "seg-1.ts", "seg-2.ts"]);
        assert_eq!(p.left_by_limits, 6);
        t.max_files = 100;
        t.max_bytes = Some(450);
        let p = plan(&t, now()).unwrap();
        assert_eq!(p.selected.len(), 4);
        assert_eq!(p.bytes(), 400);
    }

    #[test]
    fn never_follows_links_leaves_the_folder_or_removes_folders() {
        let outside = tempfile::tempdir().unwrap();
        file(outside.path(), "victim.ts", 10, 100);
        file(outside.path(), "deep/victim2.ts", 10, 100);
        let d = tempfile::tempdir().unwrap();
        file(d.path(), "keep.ts", 10, 1);
        file(d.path(), "old.ts", 10, 100);
        std::os::unix::fs::symlink(outside.path().join("victim.ts"), d.path().join("link.ts"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path().join("deep"), d.path().join("linkdir")).unwrap();
        fs::create_dir(d.path().join("dir.ts")).unwrap();
        file(d.path(), "sub/old2.ts", 10, 100);
        file(d.path(), "sub/new2.ts", 10, 2);
        let mut t = target(d.path(), r"\.ts$");
        t.keep_newest = 1;
        t.max_depth = 3;
        let out = remove(&t, plan(&t, now()).unwrap()).unwrap();
        assert!(out.contains("removed 2 files"), "{out}");
        assert!(
            out.contains("old.ts") && out.contains("sub/old2.ts"),
            "{out}"
        );
        assert!(outside.path().join("victim.ts").exists());
        assert!(outside.path().join("deep/victim2.ts").exists());
        assert!(d.path().join("link.ts").symlink_metadata().is_ok());
        assert!(d.path().join("dir.ts").is_dir());
        assert_eq!(names(&d.path().join("sub")), ["new2.ts"]);
        // Depth 1: the subfolder is not looked into.
        file(d.path(), "sub/old3.ts", 10, 100);
        t.max_depth = 1;
        let p = plan(&t, now()).unwrap();
        assert!(p.selected.is_empty(), "{}", p.describe("would remove"));
    }

    #[test]
    fn a_file_changed_after_planning_is_left_alone() {
        let d = tempfile::tempdir().unwrap();
        file(d.path(), "a.ts", 10, 100);
        file(d.path(), "b.ts", 10, 100);
        file(d.path(), "c.ts", 10, 1);
        let t = target(d.path(), r"\.ts$");
        let p = plan(&t, now()).unwrap();
        fs::remove_file(d.path().join("a.ts")).unwrap();
        std::os::unix::fs::symlink(d.path().join("c.ts"), d.path().join("a.ts")).unwrap();
        let out = remove(&t, p).unwrap();
        assert!(out.contains("removed 1 files"), "{out}");
        assert!(out.contains("a.ts (changed since it was chosen)"), "{out}");
        assert!(d.path().join("c.ts").exists());
        assert!(d.path().join("a.ts").symlink_metadata().is_ok());
    }

    #[test]
    fn the_listing_is_bounded_and_names_every_removed_file() {
        let d = tempfile::tempdir().unwrap();
        let long = "x".repeat(200);
        for i in 0..400u64 {
            file(d.path(), &format!("{long}-{i:03}.ts"), 1, 100);
        }
        let mut t = target(d.path(), r"\.ts$");
        t.keep_newest = 0;
        t.max_files = 1000;
        let out = remove(&t, plan(&t, now()).unwrap()).unwrap();
        let removed = 400 - names(d.path()).len();
        assert!(removed > 0 && removed < 400, "{removed}");
        assert_eq!(out.matches(".ts (1 B, ").count(), removed);
        assert!(out.len() < LISTING_BUDGET + 1000, "{}", out.len());
    }

    #[test]
    fn config_problems_are_reported_with_their_paths() {
        let v = serde_json::json!({
            "folder": "relative/x", "pattern": "(", "min_age": "0s",
            "max_files": 0, "max_bytes": 0, "max_depth": 9
        });
        let mut errs = ConfigErrors::default();
        assert!(CleanupTarget::load(&v, "targets[0].cleanup", &mut errs).is_none());
        let text = errs.to_string();
        for key in [
            "folder",
            "pattern",
            "min_age",
            "max_files",
            "max_bytes",
            "max_depth",
        ] {
            assert!(
                text.contains(&format!("targets[0].cleanup.{key}")),
                "{text}"
            );
        }
    }
}
