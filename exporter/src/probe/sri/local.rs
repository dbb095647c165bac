//! Local mode: the manifest's files under the root, hashed on blocking threads with a cache
//! keyed by file identity and version. Files the cache cannot answer are hashed side by side,
//! one thread per core, each with its own fixed buffer, so memory does not grow with file size.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

    /// Checks the files, and with an HTML scan the HTML files, on a blocking thread (and
    /// helpers while several files need hashing).
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
                this_run: HashMap::new(),
                seen: HashSet::new(),
                cancel: &cancel,
                work: Work::default(),
            };
            let resolved: Vec<Result<PathBuf, FileDigests>> =
                targets.iter().map(|t| checker.resolve(&t.segs)).collect();
            checker.hash_changed(
                resolved
                    .iter()
                    .zip(&targets)
                    .filter_map(|(r, t)| Some((r.as_ref().ok()?, t.integrity.strongest()))),
            );
            let verdicts: Vec<Verdict> = resolved
                .into_iter()
                .zip(&targets)
                .map(|(r, t)| {
                    let digests = match r {
                        Ok(canon) => checker.digests_at(canon, &[t.integrity.strongest()]),
                        Err(d) => d,
                    };
                    match digests {
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

/// Most threads hashing at once for one probe.
const MAX_HASH_THREADS: usize = 8;

/// A file hashed in this run.
struct Hashed {
    key: FileKey,
    digests: Digests,
    bytes: u64,
    /// Unchanged while it was read, and last modified long enough ago to be cached.
    cacheable: bool,
}

/// Reads, hashes and caches files under one canonical root on a blocking thread.
pub(super) struct FileChecker<'a> {
    pub(super) root: Option<PathBuf>,
    cache: &'a mut FileCache,
    /// Digests computed in this run, also of files too fresh to be cached, so that a file is
    /// hashed once per run.
    this_run: HashMap<PathBuf, (FileKey, Digests)>,
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
    /// The canonical path of a manifest path under the root.
    fn resolve(&self, segs: &[String]) -> Result<PathBuf, FileDigests> {
        let Some(root) = &self.root else {
            return Err(FileDigests::Missing);
        };
        let path = segs.iter().fold(root.clone(), |p, s| p.join(s));
        let canon = match std::fs::canonicalize(&path) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(FileDigests::Missing),
            Err(e) => return Err(FileDigests::Failed(format!("{}: {e}", path.display()))),
        };
        if !canon.starts_with(root) {
            return Err(FileDigests::Unsafe);
        }
        Ok(canon)
    }

    pub(super) fn digests(&mut self, segs: &[String], algs: &[Alg]) -> FileDigests {
        match self.resolve(segs) {
            Ok(canon) => self.digests_at(canon, algs),
            Err(d) => d,
        }
    }

    /// The digests of a file found by [`FileChecker::resolve`].
    fn digests_at(&mut self, canon: PathBuf, algs: &[Alg]) -> FileDigests {
        self.seen.insert(canon.clone());
        match self.hash_cached(&canon, algs) {
            Ok(d) => FileDigests::Ok(d),
            Err(e) if e.kind() == io::ErrorKind::NotFound => FileDigests::Missing,
            Err(e) => FileDigests::Failed(format!("{}: {e}", canon.display())),
        }
    }

    /// Hashes the files among `wanted` (resolved paths) that neither the cache nor this run
    /// knows in their current version, side by side on up to one thread per core.
    /// [`FileChecker::digests`] then finds them; a file that cannot be read here is left to
    /// it, which reports why.
    fn hash_changed<'p>(&mut self, wanted: impl Iterator<Item = (&'p PathBuf, Alg)>) {
        let mut jobs: Vec<(&PathBuf, [Alg; 1])> = Vec::new();
        let mut queued = HashSet::new();
        for (canon, alg) in wanted {
            let Ok(meta) = std::fs::metadata(canon) else {
                continue;
            };
            let key = FileKey::of(&meta);
            let known = |m: &HashMap<PathBuf, (FileKey, Digests)>| {
                m.get(canon)
                    .is_some_and(|(k, d)| *k == key && d.contains_key(&alg))
            };
            if !meta.is_file()
                || known(&self.cache.entries)
                || known(&self.this_run)
                || !queued.insert(canon)
            {
                continue;
            }
            jobs.push((canon, [alg]));
        }
        // One file is hashed by `digests` itself, on this thread.
        if jobs.len() < 2 {
            return;
        }
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(MAX_HASH_THREADS)
            .min(jobs.len());
        let next = AtomicUsize::new(0);
        let cancel = self.cancel;
        let results: Vec<(usize, Hashed)> = std::thread::scope(|scope| {
            let worker = || {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, algs)) = jobs.get(i) else {
                        return done;
                    };
                    if let Ok(h) = hash_file(path, algs, cancel) {
                        done.push((i, h));
                    }
                }
            };
            let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(worker)).collect();
            let mut all = worker();
            for h in helpers {
                // A worker that panicked leaves its files to `digests`.
                all.extend(h.join().unwrap_or_default());
            }
            all
        });
        for (i, h) in results {
            self.record(jobs[i].0.clone(), h);
        }
    }

    fn record(&mut self, path: PathBuf, h: Hashed) {
        self.work.hashes += 1;
        self.work.bytes += h.bytes;
        if h.cacheable {
            self.cache
                .entries
                .insert(path.clone(), (h.key, h.digests.clone()));
        } else {
            self.cache.entries.remove(&path);
        }
        self.this_run.insert(path, (h.key, h.digests));
    }

    fn hash_cached(&mut self, path: &Path, algs: &[Alg]) -> io::Result<Digests> {
        let meta = std::fs::metadata(path)?;
        let key = FileKey::of(&meta);
        for known in [&self.cache.entries, &self.this_run] {
            if let Some((k, d)) = known.get(path) {
                if *k == key && algs.iter().all(|a| d.contains_key(a)) {
                    return Ok(d.clone());
                }
            }
        }
        let h = hash_file(path, algs, self.cancel)?;
        let digests = h.digests.clone();
        self.record(path.to_path_buf(), h);
        Ok(digests)
    }
}

/// Hashes one file, noting whether its digests may be cached: a file written while it was
/// read is reported as read but not cached, so the next run hashes it again. So is a file
/// modified just now: a second write within the same timestamp tick, of the same size, would
/// otherwise look unchanged (git's "racy" rule).
fn hash_file(path: &Path, algs: &[Alg], cancel: &AtomicBool) -> io::Result<Hashed> {
    let mut f = File::open(path)?;
    let before = f.metadata()?;
    if !before.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let key = FileKey::of(&before);
    let (digests, bytes) = hash_reader(&mut f, algs, cancel)?;
    let settled = before
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age >= SETTLE);
    let cacheable = settled && FileKey::of(&f.metadata()?) == key;
    Ok(Hashed {
        key,
        digests,
        bytes,
        cacheable,
    })
}

#[cfg(test)]
mod tests {
    use super::super::integrity::HASH_BUFFER;
    use super::*;
    use std::time::Duration;

    /// One run's look at a file, as `Local::check` makes it: a checker over the shared cache.
    fn look(root: &Path, cache: &mut FileCache, work: &mut Work, name: &str) -> Digests {
        let cancel = AtomicBool::new(false);
        let mut c = FileChecker {
            root: Some(std::fs::canonicalize(root).unwrap()),
            cache,
            this_run: HashMap::new(),
            seen: HashSet::new(),
            cancel: &cancel,
            work: Work::default(),
        };
        let segs = vec![name.to_string()];
        let d = match c.digests(&segs, &[Alg::Sha384]) {
            FileDigests::Ok(d) => d,
            _ => panic!("not hashed"),
        };
        // A second look in the same run never hashes again.
        assert!(matches!(
            c.digests(&segs, &[Alg::Sha384]),
            FileDigests::Ok(_)
        ));
        work.add(c.work);
        d
    }

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
        let mut work = Work::default();
        let first = look(dir.path(), &mut cache, &mut work, "a.js");
        look(dir.path(), &mut cache, &mut work, "a.js");
        assert_eq!(work.hashes, 1, "unchanged file hashed again");
        std::fs::write(&p, b"bbbb").unwrap();
        set_mtime(past(30)).unwrap();
        let second = look(dir.path(), &mut cache, &mut work, "a.js");
        assert_eq!(work.hashes, 2);
        assert_ne!(first, second);
        // Modified just now: hashed in every run until the modification has settled.
        std::fs::write(&p, b"cccc").unwrap();
        look(dir.path(), &mut cache, &mut work, "a.js");
        look(dir.path(), &mut cache, &mut work, "a.js");
        assert_eq!(work.hashes, 4);
    }

    #[test]
    fn changed_files_are_hashed_side_by_side_once_each() {
        use sha2::Digest as _;
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let names: Vec<String> = (0..6).map(|i| format!("f{i}.js")).collect();
        for (i, n) in names.iter().enumerate() {
            // Sizes around the buffer, so that reads end inside and at its edge.
            let len = HASH_BUFFER * (i % 3) + i * 1000;
            let bytes: Vec<u8> = (0..len).map(|j| (j * 31 + i) as u8).collect();
            std::fs::write(root.join(n), bytes).unwrap();
        }
        let mut cache = FileCache::default();
        let cancel = AtomicBool::new(false);
        let mut c = FileChecker {
            root: Some(root.clone()),
            cache: &mut cache,
            this_run: HashMap::new(),
            seen: HashSet::new(),
            cancel: &cancel,
            work: Work::default(),
        };
        let mut paths: Vec<PathBuf> = names.iter().map(|n| root.join(n)).collect();
        // The same file twice is hashed once.
        paths.push(root.join("f0.js"));
        c.hash_changed(paths.iter().map(|p| (p, Alg::Sha512)));
        assert_eq!(c.work.hashes, 6);
        for n in &names {
            let FileDigests::Ok(d) = c.digests(std::slice::from_ref(n), &[Alg::Sha512]) else {
                panic!("{n} not hashed");
            };
            // Checked against an independent implementation.
            let expected = sha2::Sha512::digest(std::fs::read(root.join(n)).unwrap());
            assert_eq!(d[&Alg::Sha512], expected.to_vec(), "{n}");
        }
        assert_eq!(c.work.hashes, 6, "a file hashed twice in one run");
    }
}
