//! Local mode: the manifest's files under the root, hashed on a blocking thread with a cache
//! keyed by file identity and version.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::html::{HtmlFindings, HtmlScan};
use super::integrity::{hash_reader, Alg, Digests};
use super::{Target, Verdict, Work, SETTLE};
use crate::probe::files::FileKey;
use crate::probe::{ProbeError, Reason};
use crate::support::lock;

/// The local half of an `sri` probe: its root and what it has hashed so far.
pub(super) struct Local {
    root: PathBuf,
    cache: Arc<Mutex<FileCache>>,
    work: Mutex<Work>,
}

impl Local {
    pub(super) fn new(root: PathBuf) -> Self {
        Self {
            root,
            cache: Arc::default(),
            work: Mutex::default(),
        }
    }

    /// Hashing work since the probe was built.
    pub(super) fn work(&self) -> Work {
        *lock(&self.work)
    }

    /// Checks the files, and with an HTML scan the HTML files, on one blocking thread.
    pub(super) async fn check(
        &self,
        targets: Vec<Target>,
        html: Option<HtmlScan>,
        cancel: Arc<AtomicBool>,
    ) -> Result<(Vec<Verdict>, Option<HtmlFindings>), ProbeError> {
        let cache = self.cache.clone();
        let root = self.root.clone();
        let job = tokio::task::spawn_blocking(move || {
            let mut cache = lock(&cache);
            let canon_root = std::fs::canonicalize(&root).ok();
            let mut checker = FileChecker {
                root: canon_root,
                cache: &mut cache,
                seen: HashSet::new(),
                cancel: &cancel,
                work: Work::default(),
            };
            let verdicts: Vec<Verdict> = targets
                .iter()
                .map(|t| {
                    let algs = [t.integrity.strongest()];
                    match checker.digests(&t.segs, &algs) {
                        FileDigests::Ok(d) => Verdict::of(&t.integrity, &d),
                        FileDigests::Missing => Verdict::Missing,
                        FileDigests::Unsafe => Verdict::Unsafe,
                        FileDigests::Failed(e) => Verdict::Failed(Reason::Io, e),
                    }
                })
                .collect();
            let findings = html.map(|h| h.run(&mut checker));
            let work = checker.work;
            let seen = std::mem::take(&mut checker.seen);
            // The cache holds only what this run looked at, so it is bounded by the manifest
            // and the HTML references.
            cache.entries.retain(|p, _| seen.contains(p));
            (verdicts, findings, work)
        });
        let (verdicts, findings, work) = job
            .await
            .map_err(|e| ProbeError::new(Reason::Other, format!("hashing task failed: {e}")))?;
        lock(&self.work).add(work);
        Ok((verdicts, findings))
    }
}

#[derive(Default)]
struct FileCache {
    entries: HashMap<PathBuf, (FileKey, Digests)>,
}

/// Reads, hashes and caches files under one canonical root on a blocking thread.
pub(super) struct FileChecker<'a> {
    pub(super) root: Option<PathBuf>,
    cache: &'a mut FileCache,
    seen: HashSet<PathBuf>,
    pub(super) cancel: &'a AtomicBool,
    work: Work,
}

/// The digests of a manifest path under the root, or why there are none.
pub(super) enum FileDigests {
    Ok(Digests),
    Missing,
    Unsafe,
    Failed(String),
}

impl FileChecker<'_> {
    pub(super) fn digests(&mut self, segs: &[String], algs: &[Alg]) -> FileDigests {
        let Some(root) = &self.root else {
            return FileDigests::Missing;
        };
        let path = segs.iter().fold(root.clone(), |p, s| p.join(s));
        let canon = match std::fs::canonicalize(&path) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return FileDigests::Missing,
            Err(e) => return FileDigests::Failed(format!("{}: {e}", path.display())),
        };
        if !canon.starts_with(root) {
            return FileDigests::Unsafe;
        }
        self.seen.insert(canon.clone());
        match self.hash_cached(&canon, algs) {
            Ok(d) => FileDigests::Ok(d),
            Err(e) if e.kind() == io::ErrorKind::NotFound => FileDigests::Missing,
            Err(e) => FileDigests::Failed(format!("{}: {e}", path.display())),
        }
    }

    fn hash_cached(&mut self, path: &Path, algs: &[Alg]) -> io::Result<Digests> {
        let mut f = File::open(path)?;
        let before = f.metadata()?;
        if !before.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let key = FileKey::of(&before);
        if let Some((k, d)) = self.cache.entries.get(path) {
            if *k == key && algs.iter().all(|a| d.contains_key(a)) {
                return Ok(d.clone());
            }
        }
        let (digests, n) = hash_reader(&mut f, algs, self.cancel)?;
        self.work.hashes += 1;
        self.work.bytes += n;
        // A file written while it was read is reported as read but not cached, so the next
        // run hashes it again. So is a file modified just now: a second write within the same
        // timestamp tick, of the same size, would otherwise look unchanged (git's "racy" rule).
        let settled = before
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age >= SETTLE);
        if settled && FileKey::of(&f.metadata()?) == key {
            self.cache
                .entries
                .insert(path.to_path_buf(), (key, digests.clone()));
        } else {
            self.cache.entries.remove(path);
        }
        Ok(digests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cache_notices_in_place_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.js");
        let past = |secs| SystemTime::now() - Duration::from_secs(secs);
        std::fs::write(&p, b"aaaa").unwrap();
        let set_mtime = |t| {
            File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
        };
        set_mtime(past(60)).unwrap();
        let mut cache = FileCache::default();
        let cancel = AtomicBool::new(false);
        let mut c = FileChecker {
            root: Some(std::fs::canonicalize(dir.path()).unwrap()),
            cache: &mut cache,
            seen: HashSet::new(),
            cancel: &cancel,
            work: Work::default(),
        };
        let segs = vec!["a.js".to_string()];
        let first = match c.digests(&segs, &[Alg::Sha384]) {
            FileDigests::Ok(d) => d,
            _ => panic!("not hashed"),
        };
        assert!(matches!(
            c.digests(&segs, &[Alg::Sha384]),
            FileDigests::Ok(_)
        ));
        assert_eq!(c.work.hashes, 1, "unchanged file hashed again");
        std::fs::write(&p, b"bbbb").unwrap();
        set_mtime(past(30)).unwrap();
        let second = match c.digests(&segs, &[Alg::Sha384]) {
            FileDigests::Ok(d) => d,
            _ => panic!("not hashed"),
        };
        assert_eq!(c.work.hashes, 2);
        assert_ne!(first, second);
        // Modified just now: hashed on every look until the modification has settled.
        std::fs::write(&p, b"cccc").unwrap();
        assert!(matches!(
            c.digests(&segs, &[Alg::Sha384]),
            FileDigests::Ok(_)
        ));
        assert!(matches!(
            c.digests(&segs, &[Alg::Sha384]),
            FileDigests::Ok(_)
        ));
        assert_eq!(c.work.hashes, 4);
    }
}
