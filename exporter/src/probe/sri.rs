//! SRI drift (seed 003): recomputes the digests of `sri-manifest.json`
//! (`{ "path": { "sha384": "sha384-…" } }`) against a local root folder and/or a deployed base
//! URL, and optionally checks the `integrity="…"` attributes of the HTML files under the root.
//!
//! Matching follows the SRI specification: of an entry's tokens only those of its strongest
//! algorithm count, and the content matches when any of them does.
//!
//! **Invariant:** a manifest path is never read outside the root: absolute paths, `..` and
//! symlinks leading out of the root are reported as `unsafe_path` instead.
//!
//! Hashing streams with a fixed buffer on a blocking thread, so a 1 GiB asset costs the buffer,
//! not its size; a file whose size, modification time, change time and inode are unchanged is
//! taken from a cache instead of being hashed again. URL mode sends the cached `ETag` and reuses
//! the digest on `304 Not Modified`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use stackmedic_common::config::join;
use stackmedic_common::ConfigErrors;
use url::Url;

use super::files::{CancelOnDrop, FileKey};
use super::{ProbeError, Reason, RunContext, Shared};
use crate::fetch::{self, TlsOptions};
use crate::metrics::{Family, Samples};

static MANIFEST_ENTRIES: Family = Family::gauge(
    "stackmedic_sri_manifest_entries",
    "Entries in the SRI manifest.",
);
static MANIFEST_INVALID: Family = Family::gauge(
    "stackmedic_sri_manifest_invalid_entries",
    "Manifest entries that are not checked, by problem: unsafe_path (absolute, `..`, or a symlink out of the root) or bad_integrity (unknown algorithm, bad digest).",
);
static CHECKED: Family = Family::gauge(
    "stackmedic_sri_entries_checked",
    "Entries whose content was compared with the manifest, by source: file (root) or url (base_url).",
);
static DRIFTED: Family = Family::gauge(
    "stackmedic_sri_entries_drifted",
    "Checked entries whose content matches none of the digests of their strongest algorithm, by source.",
);
static MISSING: Family = Family::gauge(
    "stackmedic_sri_entries_missing",
    "Entries whose file does not exist (file) or whose URL answers 404 or 410 (url), by source.",
);
static FAILED: Family = Family::gauge(
    "stackmedic_sri_entries_failed",
    "Entries that could not be checked (read error, other HTTP status, transport error), by source.",
);
static ENTRY_DRIFT: Family = Family::gauge(
    "stackmedic_sri_entry_drift",
    "Per entry and source: 1 when the content drifted or is missing, 0 when it matches; at most max_entries_reported entries per source, drifted ones first.",
);
static HASHES: Family = Family::counter(
    "stackmedic_sri_hashes_total",
    "Contents hashed, by source; unchanged files and 304 responses are served from the cache and not counted.",
);
static HASHED_BYTES: Family = Family::counter(
    "stackmedic_sri_hashed_bytes_total",
    "Bytes hashed, by source.",
);
static HTML_FILES: Family = Family::gauge(
    "stackmedic_sri_html_files_scanned",
    "HTML files under the root scanned for integrity attributes.",
);
static HTML_ATTRIBUTES: Family = Family::gauge(
    "stackmedic_sri_html_integrity_attributes",
    "Integrity attributes found in the scanned HTML files, by scope: local (under the root or base_url) or external.",
);
static HTML_DISAGREEING: Family = Family::gauge(
    "stackmedic_sri_html_integrity_disagreeing",
    "Local integrity attributes that disagree with the manifest (no shared digest, or not in it) or with the file they point at, by against.",
);

/// Bytes read per `read` call while hashing.
pub const HASH_BUFFER: usize = 128 * 1024;
/// How old a modification must be before a digest is cached (see [`FileChecker`]).
const SETTLE: Duration = Duration::from_secs(2);
/// Largest manifest read.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// Largest HTML file scanned.
const MAX_HTML_BYTES: u64 = 8 << 20;
/// Deepest folder level scanned for HTML files.
const MAX_HTML_DEPTH: usize = 16;
/// URL requests in flight at once.
const URL_CONCURRENCY: usize = 4;
/// Label values of the sources.
const SOURCES: [&str; 2] = ["file", "url"];

fn default_max_entries() -> usize {
    100
}
fn default_max_html_files() -> usize {
    1000
}
fn default_max_body() -> u64 {
    1 << 30
}

/// Settings of an `sri` probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SriConfig {
    /// The manifest, e.g. `/srv/www/sri-manifest.json`.
    pub manifest: PathBuf,
    /// Folder the manifest paths are relative to.
    pub root: Option<PathBuf>,
    /// Deployed URL the manifest paths are relative to, e.g. `https://host/`.
    pub base_url: Option<Url>,
    /// Also check the `integrity` attributes of `*.html` files under `root`.
    #[serde(default)]
    pub scan_html: bool,
    /// Most HTML files scanned per run.
    #[serde(default = "default_max_html_files")]
    pub max_html_files: usize,
    /// Most `stackmedic_sri_entry_drift` series per source.
    #[serde(default = "default_max_entries")]
    pub max_entries_reported: usize,
    /// Largest asset fetched in URL mode.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// TLS settings for URL mode.
    #[serde(default)]
    pub tls: TlsOptions,
}

impl SriConfig {
    /// Checks that there is something to compare against and that the URL is usable.
    pub fn validate(&self, path: &str, errs: &mut ConfigErrors) {
        if self.root.is_none() && self.base_url.is_none() {
            errs.push(path, "set `root`, `base_url` or both");
        }
        if self.manifest.as_os_str().is_empty() {
            errs.push(join(path, "manifest"), "must not be empty");
        }
        if let Some(u) = &self.base_url {
            fetch::validate_url(u, &join(path, "base_url"), errs);
            if u.query().is_some() || u.fragment().is_some() {
                errs.push(join(path, "base_url"), "must not have a query or fragment");
            }
        }
        if self.scan_html && self.root.is_none() {
            errs.push(join(path, "scan_html"), "needs `root`");
        }
        if self.max_entries_reported > 10_000 {
            errs.push(
                join(path, "max_entries_reported"),
                "must be at most 10000 (each entry is a series)",
            );
        }
        if self.max_body_bytes == 0 {
            errs.push(join(path, "max_body_bytes"), "must be at least 1");
        }
    }
}

/// A hash algorithm of SRI, ordered by strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Alg {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Alg {
    /// The algorithm of an SRI prefix such as `sha384`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "sha256" => Some(Self::Sha256),
            "sha384" => Some(Self::Sha384),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The SRI prefix.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    fn len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }
}

/// Digests of one content, by algorithm.
pub type Digests = BTreeMap<Alg, Vec<u8>>;

/// Several hashes fed from one pass over the content.
#[derive(Default)]
pub struct MultiHasher {
    sha256: Option<Sha256>,
    sha384: Option<Sha384>,
    sha512: Option<Sha512>,
}

impl MultiHasher {
    /// A hasher for each of `algs`.
    #[must_use]
    pub fn new(algs: &[Alg]) -> Self {
        let mut h = Self::default();
        for a in algs {
            match a {
                Alg::Sha256 => h.sha256 = Some(Sha256::new()),
                Alg::Sha384 => h.sha384 = Some(Sha384::new()),
                Alg::Sha512 => h.sha512 = Some(Sha512::new()),
            }
        }
        h
    }

    /// Feeds bytes to every hash.
    pub fn update(&mut self, data: &[u8]) {
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha384 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha512 {
            h.update(data);
        }
    }

    /// The digests.
    #[must_use]
    pub fn finish(self) -> Digests {
        let mut d = Digests::new();
        if let Some(h) = self.sha256 {
            d.insert(Alg::Sha256, h.finalize().to_vec());
        }
        if let Some(h) = self.sha384 {
            d.insert(Alg::Sha384, h.finalize().to_vec());
        }
        if let Some(h) = self.sha512 {
            d.insert(Alg::Sha512, h.finalize().to_vec());
        }
        d
    }
}

/// Hashes a reader to its end with a [`HASH_BUFFER`]-sized buffer, checking `cancel` between
/// reads; returns the digests and the bytes read.
///
/// # Errors
/// A read error, or `Interrupted` when `cancel` was set.
pub fn hash_reader(
    r: &mut impl Read,
    algs: &[Alg],
    cancel: &AtomicBool,
) -> io::Result<(Digests, u64)> {
    let mut hasher = MultiHasher::new(algs);
    let mut buf = vec![0u8; HASH_BUFFER];
    let mut total = 0u64;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hasher.finish(), total))
}

/// The SRI form `alg-base64` of a digest.
#[must_use]
pub fn sri_token(alg: Alg, digest: &[u8]) -> String {
    format!("{}-{}", alg.name(), STANDARD.encode(digest))
}

/// Parsed integrity metadata: one or more `alg-digest` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integrity {
    tokens: Vec<(Alg, Vec<u8>)>,
}

impl Integrity {
    /// Parses whitespace-separated tokens such as `sha384-… sha512-…`; `?options` are ignored.
    ///
    /// # Errors
    /// An unknown algorithm, a digest that is not base64 or has the wrong length, or no token.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        for token in text.split_ascii_whitespace() {
            tokens.push(parse_token(token)?);
        }
        if tokens.is_empty() {
            return Err("no integrity token".into());
        }
        Ok(Self { tokens })
    }

    /// The strongest algorithm; only its tokens decide a match.
    #[must_use]
    pub fn strongest(&self) -> Alg {
        self.tokens
            .iter()
            .map(|(a, _)| *a)
            .max()
            .unwrap_or(Alg::Sha256)
    }

    /// Whether digests of a content match: any token of the strongest algorithm equals the
    /// content's digest of that algorithm.
    #[must_use]
    pub fn matches(&self, digests: &Digests) -> bool {
        let alg = self.strongest();
        let Some(actual) = digests.get(&alg) else {
            return false;
        };
        self.tokens
            .iter()
            .any(|(a, d)| *a == alg && d.as_slice() == actual.as_slice())
    }

    /// Whether two metadata share a token.
    #[must_use]
    pub fn shares_token(&self, other: &Integrity) -> bool {
        self.tokens.iter().any(|t| other.tokens.contains(t))
    }
}

fn parse_token(token: &str) -> Result<(Alg, Vec<u8>), String> {
    let Some((alg, rest)) = token.split_once('-') else {
        return Err(format!("{:?} is not of the form alg-digest", short(token)));
    };
    let alg = Alg::parse(alg)
        .ok_or_else(|| format!("unknown algorithm {alg:?} (expected sha256, sha384 or sha512)"))?;
    let b64 = rest.split_once('?').map_or(rest, |(d, _)| d);
    // The SRI grammar allows base64 and base64url, with or without padding.
    let digest = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(b64).ok())
        .ok_or_else(|| format!("{} digest {:?} is not base64", alg.name(), short(b64)))?;
    if digest.len() != alg.len() {
        return Err(format!(
            "{} digest has {} bytes, expected {}",
            alg.name(),
            digest.len(),
            alg.len()
        ));
    }
    Ok((alg, digest))
}

fn short(s: &str) -> String {
    s.chars().take(24).collect()
}

/// A parsed manifest: each path with its metadata, or why the metadata is unusable.
pub type Manifest = BTreeMap<String, Result<Integrity, String>>;

/// Parses a manifest: a JSON object of paths, each an object of algorithm names to tokens (a
/// string or a list of strings), or directly a token string or list.
///
/// # Errors
/// The document is not JSON or not an object; problems of single entries are kept per entry.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest is not JSON: {e}"))?;
    let Value::Object(map) = doc else {
        return Err("manifest is not a JSON object of paths".into());
    };
    Ok(map
        .into_iter()
        .map(|(path, v)| {
            let integrity = entry_integrity(&v);
            (path, integrity)
        })
        .collect())
}

fn entry_integrity(v: &Value) -> Result<Integrity, String> {
    match v {
        Value::String(s) => Integrity::parse(s),
        Value::Array(_) => Integrity::parse(&token_list(v)?),
        Value::Object(algs) => {
            let mut tokens = Vec::new();
            for (key, tv) in algs {
                let alg = Alg::parse(key).ok_or_else(|| {
                    format!("unknown algorithm {key:?} (expected sha256, sha384 or sha512)")
                })?;
                let parsed = Integrity::parse(&token_list(tv)?)?;
                for (a, d) in parsed.tokens {
                    if a != alg {
                        return Err(format!("key {key:?} holds a {} token", a.name()));
                    }
                    tokens.push((a, d));
                }
            }
            if tokens.is_empty() {
                return Err("no integrity token".into());
            }
            Ok(Integrity { tokens })
        }
        other => Err(format!(
            "expected an object of algorithms, found {}",
            stackmedic_common::config::kind_of(other)
        )),
    }
}

fn token_list(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "integrity tokens must be strings".to_string())
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(" ")),
        _ => Err("integrity tokens must be a string or a list of strings".into()),
    }
}

/// The path segments of a manifest key, or `None` when it could leave the root: absolute,
/// with `..`, a backslash or a NUL byte, or empty.
#[must_use]
pub fn safe_segments(key: &str) -> Option<Vec<String>> {
    if key.starts_with('/') || key.contains('\\') || key.contains('\0') {
        return None;
    }
    let mut segs = Vec::new();
    for s in key.split('/') {
        match s {
            "" | "." => {}
            ".." => return None,
            s => segs.push(s.to_string()),
        }
    }
    (!segs.is_empty()).then_some(segs)
}

/// What a check of one entry found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Match,
    Drift,
    Missing,
    /// A symlink leads out of the root.
    Unsafe,
    Failed(Reason, String),
}

#[derive(Default)]
struct FileCache {
    entries: HashMap<PathBuf, (FileKey, Digests)>,
}

/// Hashing work done in one run, for the counters.
#[derive(Debug, Default, Clone, Copy)]
struct Work {
    hashes: u64,
    bytes: u64,
}

/// Reads, hashes and caches files under one canonical root on a blocking thread.
struct FileChecker<'a> {
    root: Option<PathBuf>,
    cache: &'a mut FileCache,
    seen: HashSet<PathBuf>,
    cancel: &'a AtomicBool,
    work: Work,
}

enum FileDigests {
    Ok(Digests),
    Missing,
    Unsafe,
    Failed(String),
}

impl FileChecker<'_> {
    fn digests(&mut self, segs: &[String], algs: &[Alg]) -> FileDigests {
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

/// A manifest entry that is checked.
#[derive(Clone)]
struct Target {
    key: String,
    segs: Vec<String>,
    integrity: Integrity,
}

/// Cached digest of a URL, reused on `304 Not Modified`.
struct UrlCached {
    etag: String,
    digests: Digests,
}

/// An `sri` probe.
pub struct SriProbe {
    cfg: SriConfig,
    base: Option<Url>,
    client: Option<reqwest::Client>,
    cache: Arc<Mutex<FileCache>>,
    url_cache: Mutex<HashMap<String, UrlCached>>,
    totals: Mutex<[Work; 2]>,
}

impl SriProbe {
    /// Builds the probe.
    ///
    /// # Errors
    /// When the HTTP client for URL mode cannot be built.
    pub fn new(cfg: SriConfig, shared: &Shared) -> Result<Self, String> {
        let client = match &cfg.base_url {
            Some(_) => Some(shared.http.get(&cfg.tls, true)?),
            None => None,
        };
        let base = cfg.base_url.clone().map(|mut u| {
            // Without a trailing slash the last segment would be replaced, not extended.
            if !u.path().ends_with('/') {
                let p = format!("{}/", u.path());
                u.set_path(&p);
            }
            u
        });
        Ok(Self {
            cfg,
            base,
            client,
            cache: Arc::default(),
            url_cache: Mutex::default(),
            totals: Mutex::default(),
        })
    }

    /// Checks every entry against the root and/or the base URL, then the HTML files.
    ///
    /// # Errors
    /// `parse` for a manifest that cannot be read as one or has unusable entries, `mismatch`
    /// for drift (also of HTML attributes), `not_found` for missing files, `io` and the HTTP
    /// reasons for entries that could not be checked.
    pub async fn run(&self, cx: &RunContext, out: &mut Samples) -> Result<(), ProbeError> {
        let manifest = self.load_manifest().await?;
        out.push(&MANIFEST_ENTRIES, &[], manifest.len() as f64);
        let mut problems = Problems::default();
        let mut unsafe_paths = Vec::new();
        let mut targets = Vec::new();
        for (key, integrity) in &manifest {
            match (safe_segments(key), integrity) {
                (None, _) => unsafe_paths.push(key.clone()),
                (Some(_), Err(e)) => problems.bad_integrity.push(format!("{key}: {e}")),
                (Some(segs), Ok(i)) => targets.push(Target {
                    key: key.clone(),
                    segs,
                    integrity: i.clone(),
                }),
            }
        }

        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        if let Some(root) = &self.cfg.root {
            let (verdicts, html) = self
                .check_root(root.clone(), targets.clone(), &manifest, cancel.clone())
                .await?;
            for (t, v) in targets.iter().zip(&verdicts) {
                if *v == Verdict::Unsafe {
                    unsafe_paths.push(t.key.clone());
                }
            }
            self.report("file", &targets, &verdicts, out, &mut problems);
            if let Some(h) = html {
                h.export(out, &mut problems);
            }
        }
        if let Some(base) = &self.base {
            let verdicts = self.check_urls(cx, base, &targets, &cancel).await;
            self.report("url", &targets, &verdicts, out, &mut problems);
        }
        let totals = *lock(&self.totals);
        for (i, source) in SOURCES.iter().enumerate() {
            let configured = if i == 0 {
                self.cfg.root.is_some()
            } else {
                self.base.is_some()
            };
            if configured {
                out.push(&HASHES, &[("source", source)], totals[i].hashes as f64);
                out.push(&HASHED_BYTES, &[("source", source)], totals[i].bytes as f64);
            }
        }
        unsafe_paths.sort();
        unsafe_paths.dedup();
        out.push(
            &MANIFEST_INVALID,
            &[("problem", "unsafe_path")],
            unsafe_paths.len() as f64,
        );
        out.push(
            &MANIFEST_INVALID,
            &[("problem", "bad_integrity")],
            problems.bad_integrity.len() as f64,
        );
        problems.unsafe_paths = unsafe_paths;
        problems.into_result()
    }

    async fn load_manifest(&self) -> Result<Manifest, ProbeError> {
        let path = &self.cfg.manifest;
        let bytes = read_limited(path, MAX_MANIFEST_BYTES).await.map_err(|e| {
            let reason = if e.kind() == io::ErrorKind::NotFound {
                Reason::NotFound
            } else {
                Reason::Io
            };
            ProbeError::new(reason, format!("manifest {}: {e}", path.display()))
        })?;
        parse_manifest(&bytes)
            .map_err(|e| ProbeError::new(Reason::Parse, format!("{}: {e}", path.display())))
    }

    /// Checks the files, and with `scan_html` the HTML files, on one blocking thread.
    async fn check_root(
        &self,
        root: PathBuf,
        targets: Vec<Target>,
        manifest: &Manifest,
        cancel: Arc<AtomicBool>,
    ) -> Result<(Vec<Verdict>, Option<HtmlFindings>), ProbeError> {
        let cache = self.cache.clone();
        let html = self.cfg.scan_html.then(|| HtmlScan {
            manifest: manifest
                .iter()
                .filter_map(|(k, v)| {
                    Some((k.trim_start_matches("./").to_string(), v.clone().ok()?))
                })
                .collect(),
            base: self.base.clone(),
            max_files: self.cfg.max_html_files,
        });
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
                        FileDigests::Ok(d) if t.integrity.matches(&d) => Verdict::Match,
                        FileDigests::Ok(_) => Verdict::Drift,
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
        add_work(&self.totals, 0, work);
        Ok((verdicts, findings))
    }

    async fn check_urls(
        &self,
        cx: &RunContext,
        base: &Url,
        targets: &[Target],
        cancel: &Arc<AtomicBool>,
    ) -> Vec<Verdict> {
        let Some(client) = &self.client else {
            return Vec::new();
        };
        // The futures are collected first: a lazy `map` closure in the stream makes the
        // probe's future fail the runner's `Send` bound (a higher-ranked lifetime limitation).
        let mut checks = Vec::with_capacity(targets.len());
        let mut urls = HashSet::with_capacity(targets.len());
        for t in targets {
            let mut url = base.clone();
            if let Ok(mut segs) = url.path_segments_mut() {
                segs.pop_if_empty().extend(&t.segs);
            }
            urls.insert(url.to_string());
            checks.push(self.check_url(cx, client, url, &t.integrity, cancel.clone()));
        }
        let verdicts = futures_util::stream::iter(checks)
            .buffered(URL_CONCURRENCY)
            .collect()
            .await;
        // The cache holds only the manifest's current URLs.
        lock(&self.url_cache).retain(|u, _| urls.contains(u));
        verdicts
    }

    async fn check_url(
        &self,
        cx: &RunContext,
        client: &reqwest::Client,
        url: Url,
        integrity: &Integrity,
        cancel: Arc<AtomicBool>,
    ) -> Verdict {
        let alg = integrity.strongest();
        let cached_etag = lock(&self.url_cache)
            .get(url.as_str())
            .filter(|c| c.digests.contains_key(&alg))
            .map(|c| c.etag.clone());
        let mut req = client.get(url.clone()).timeout(cx.timeout);
        if let Some(etag) = &cached_etag {
            req = req.header(http::header::IF_NONE_MATCH, etag);
        }
        let mut resp = match fetch::open(req, self.cfg.max_body_bytes).await {
            Ok(r) => r,
            Err(e) => return Verdict::Failed(e.reason, format!("{url}: {}", e.message)),
        };
        let status = resp.status.as_u16();
        if status == 304 && cached_etag.is_some() {
            if let Some(c) = lock(&self.url_cache).get(url.as_str()) {
                return verdict(integrity, &c.digests);
            }
        }
        if status == 404 || status == 410 {
            return Verdict::Missing;
        }
        if status != 200 {
            return Verdict::Failed(Reason::HttpStatus, format!("{url}: status {status}"));
        }
        let etag = resp
            .headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .filter(|_| settled_response(&resp.headers))
            .map(str::to_string);
        // Chunks go to a hasher on a blocking thread through a short queue, so a big asset
        // neither sits in memory nor hashes on the async workers.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
        let hasher = tokio::task::spawn_blocking(move || {
            let mut h = MultiHasher::new(&[alg]);
            let mut n = 0u64;
            while let Some(chunk) = rx.blocking_recv() {
                if cancel.load(Ordering::Relaxed) {
                    break;
                }
                h.update(&chunk);
                n += chunk.len() as u64;
            }
            (h.finish(), n)
        });
        let mut failure = None;
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if tx.send(c).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let (digests, n) = match hasher.await {
            Ok(r) => r,
            Err(e) => return Verdict::Failed(Reason::Other, format!("hashing task failed: {e}")),
        };
        if let Some(e) = failure {
            return Verdict::Failed(e.reason, format!("{url}: {}", e.message));
        }
        add_work(
            &self.totals,
            1,
            Work {
                hashes: 1,
                bytes: n,
            },
        );
        let mut cache = lock(&self.url_cache);
        match etag {
            Some(etag) => {
                cache.insert(
                    url.to_string(),
                    UrlCached {
                        etag,
                        digests: digests.clone(),
                    },
                );
            }
            None => {
                cache.remove(url.as_str());
            }
        }
        verdict(integrity, &digests)
    }

    fn report(
        &self,
        source: &str,
        targets: &[Target],
        verdicts: &[Verdict],
        out: &mut Samples,
        problems: &mut Problems,
    ) {
        let mut counts = [0usize; 4];
        let mut per_entry: Vec<(bool, &str)> = Vec::new();
        for (t, v) in targets.iter().zip(verdicts) {
            match v {
                Verdict::Match => {
                    counts[0] += 1;
                    per_entry.push((false, &t.key));
                }
                Verdict::Drift => {
                    counts[0] += 1;
                    counts[1] += 1;
                    per_entry.push((true, &t.key));
                    problems.drift.push(format!("{source} {}", t.key));
                }
                Verdict::Missing => {
                    counts[2] += 1;
                    per_entry.push((true, &t.key));
                    problems.missing.push(format!("{source} {}", t.key));
                }
                Verdict::Unsafe => {}
                Verdict::Failed(r, m) => {
                    counts[3] += 1;
                    problems.failed.get_or_insert((*r, m.clone()));
                }
            }
        }
        let l = [("source", source)];
        out.push(&CHECKED, &l, counts[0] as f64);
        out.push(&DRIFTED, &l, counts[1] as f64);
        out.push(&MISSING, &l, counts[2] as f64);
        out.push(&FAILED, &l, counts[3] as f64);
        // Drifted entries first, so that the cap never hides one while clean ones are shown.
        per_entry.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        for (drift, key) in per_entry.into_iter().take(self.cfg.max_entries_reported) {
            out.flag(&ENTRY_DRIFT, &[("source", source), ("path", key)], drift);
        }
    }
}

/// Whether a response's `ETag` may be trusted for later `304`s: nginx and most static servers
/// build it from the modification time in whole seconds and the size, so a same-size write
/// within the second of the served version keeps the `ETag`. It is trusted only when the
/// `Last-Modified` lies at least [`SETTLE`] plus one second before the server's `Date`.
fn settled_response(headers: &http::HeaderMap) -> bool {
    let date = |name: http::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
    };
    match (date(http::header::LAST_MODIFIED), date(http::header::DATE)) {
        (Some(modified), Some(now)) => (now - modified).num_seconds() > SETTLE.as_secs() as i64,
        _ => false,
    }
}

fn verdict(integrity: &Integrity, digests: &Digests) -> Verdict {
    if integrity.matches(digests) {
        Verdict::Match
    } else {
        Verdict::Drift
    }
}

fn add_work(totals: &Mutex<[Work; 2]>, i: usize, w: Work) {
    let mut t = lock(totals);
    t[i].hashes += w.hashes;
    t[i].bytes += w.bytes;
}

async fn read_limited(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let f = tokio::fs::File::open(path).await?;
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf).await?;
    if buf.len() as u64 > max {
        return Err(io::Error::other(format!("larger than {max} bytes")));
    }
    Ok(buf)
}

/// What failed in a run, turned into one [`ProbeError`] at its end.
#[derive(Default)]
struct Problems {
    drift: Vec<String>,
    missing: Vec<String>,
    failed: Option<(Reason, String)>,
    unsafe_paths: Vec<String>,
    bad_integrity: Vec<String>,
    html: Vec<String>,
}

impl Problems {
    fn into_result(self) -> Result<(), ProbeError> {
        fn list(v: &[String]) -> String {
            let mut s = v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            if v.len() > 5 {
                s.push_str(&format!(" and {} more", v.len() - 5));
            }
            s
        }
        if !self.drift.is_empty() {
            return Err(ProbeError::new(
                Reason::Mismatch,
                format!("digest drift: {}", list(&self.drift)),
            ));
        }
        if !self.missing.is_empty() {
            return Err(ProbeError::new(
                Reason::NotFound,
                format!("missing: {}", list(&self.missing)),
            ));
        }
        if let Some((reason, message)) = self.failed {
            return Err(ProbeError::new(reason, message));
        }
        if !self.bad_integrity.is_empty() {
            return Err(ProbeError::new(
                Reason::Parse,
                format!("bad manifest entries: {}", list(&self.bad_integrity)),
            ));
        }
        if !self.unsafe_paths.is_empty() {
            return Err(ProbeError::new(
                Reason::Parse,
                format!(
                    "manifest paths outside the root, not read: {}",
                    list(&self.unsafe_paths)
                ),
            ));
        }
        if !self.html.is_empty() {
            return Err(ProbeError::new(
                Reason::Mismatch,
                format!("html integrity disagrees: {}", list(&self.html)),
            ));
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The HTML part of a run; it runs on the blocking thread after the manifest entries.
struct HtmlScan {
    manifest: BTreeMap<String, Integrity>,
    base: Option<Url>,
    max_files: usize,
}

#[derive(Default)]
struct HtmlFindings {
    files: usize,
    local: usize,
    external: usize,
    vs_manifest: Vec<String>,
    vs_file: Vec<String>,
}

impl HtmlFindings {
    fn export(self, out: &mut Samples, problems: &mut Problems) {
        out.push(&HTML_FILES, &[], self.files as f64);
        out.push(&HTML_ATTRIBUTES, &[("scope", "local")], self.local as f64);
        out.push(
            &HTML_ATTRIBUTES,
            &[("scope", "external")],
            self.external as f64,
        );
        out.push(
            &HTML_DISAGREEING,
            &[("against", "manifest")],
            self.vs_manifest.len() as f64,
        );
        out.push(
            &HTML_DISAGREEING,
            &[("against", "file")],
            self.vs_file.len() as f64,
        );
        problems.html.extend(self.vs_manifest);
        problems.html.extend(self.vs_file);
    }
}

impl HtmlScan {
    fn run(&self, checker: &mut FileChecker<'_>) -> HtmlFindings {
        let mut found = HtmlFindings::default();
        let Some(root) = checker.root.clone() else {
            return found;
        };
        let mut files = Vec::new();
        collect_html(&root, 0, self.max_files, &mut files);
        for file in files {
            if checker.cancel.load(Ordering::Relaxed) {
                break;
            }
            let Ok(text) = read_text(&file) else {
                continue;
            };
            found.files += 1;
            let rel_dir: Vec<String> = file
                .parent()
                .and_then(|d| d.strip_prefix(&root).ok())
                .map(|d| {
                    d.components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            let rel_file = file
                .strip_prefix(&root)
                .unwrap_or(&file)
                .display()
                .to_string();
            for r in integrity_refs(&text) {
                let Some(key) = self.resolve(&rel_dir, &r.url) else {
                    found.external += 1;
                    continue;
                };
                found.local += 1;
                let what = format!("{rel_file} -> {key}");
                let Ok(attr) = Integrity::parse(&r.integrity) else {
                    found.vs_manifest.push(what.clone());
                    found.vs_file.push(what);
                    continue;
                };
                if !self
                    .manifest
                    .get(&key)
                    .is_some_and(|m| m.shares_token(&attr))
                {
                    found.vs_manifest.push(what.clone());
                }
                let file_ok = match safe_segments(&key) {
                    Some(segs) => matches!(
                        checker.digests(&segs, &[attr.strongest()]),
                        FileDigests::Ok(d) if attr.matches(&d)
                    ),
                    None => false,
                };
                if !file_ok {
                    found.vs_file.push(what);
                }
            }
        }
        found
    }

    /// The manifest key a reference from an HTML file in `dir` points at, or `None` when it
    /// points elsewhere (another host, outside the root).
    fn resolve(&self, dir: &[String], reference: &str) -> Option<String> {
        let mut page = Url::parse("http://root.invalid/").ok()?;
        page.path_segments_mut().ok()?.extend(dir).push("");
        let target = page.join(reference.trim()).ok()?;
        let path = if target.host_str() == Some("root.invalid") {
            let p = target.path().to_string();
            // A root-relative reference carries the deployed prefix (`/app/x.js` under
            // `https://host/app/`), which the root folder does not have.
            match &self.base {
                Some(b) if b.path() != "/" => match p.strip_prefix(b.path()) {
                    Some(rest) => rest.to_string(),
                    None => p.trim_start_matches('/').to_string(),
                },
                _ => p.trim_start_matches('/').to_string(),
            }
        } else {
            let b = self.base.as_ref()?;
            let mut t = target.clone();
            t.set_query(None);
            t.set_fragment(None);
            t.as_str().strip_prefix(b.as_str())?.to_string()
        };
        let key = percent_decode(&path);
        safe_segments(&key)?;
        Some(key)
    }
}

fn collect_html(dir: &Path, depth: usize, max: usize, out: &mut Vec<PathBuf>) {
    if depth > MAX_HTML_DEPTH || out.len() >= max {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        if out.len() >= max {
            return;
        }
        // Symlinks are not followed: a link could loop or lead out of the root.
        let Ok(ft) = e.file_type() else { continue };
        let p = e.path();
        if ft.is_dir() {
            collect_html(&p, depth + 1, max, out);
        } else if ft.is_file()
            && p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("html") || x.eq_ignore_ascii_case("htm"))
        {
            out.push(p);
        }
    }
}

fn read_text(path: &Path) -> io::Result<String> {
    let mut buf = Vec::new();
    File::open(path)?
        .take(MAX_HTML_BYTES)
        .read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An element with an `integrity` attribute.
#[derive(Debug, PartialEq, Eq)]
struct HtmlRef {
    url: String,
    integrity: String,
}

/// The `src` (script) or `href` (link) and `integrity` of every `<script>` and `<link>` that
/// has both; comments are skipped.
fn integrity_refs(html: &str) -> Vec<HtmlRef> {
    let mut refs = Vec::new();
    let lower = html.to_ascii_lowercase();
    let mut pos = 0;
    while let Some(off) = lower[pos..].find('<') {
        let start = pos + off;
        if lower[start..].starts_with("<!--") {
            pos = lower[start..]
                .find("-->")
                .map_or(lower.len(), |e| start + e + 3);
            continue;
        }
        let name_end = lower[start + 1..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .map_or(lower.len(), |e| start + 1 + e);
        let tag = &lower[start + 1..name_end];
        let (attrs, end) = parse_attributes(html, name_end);
        pos = end.max(start + 1);
        let url_attr = match tag {
            "script" => "src",
            "link" => "href",
            _ => continue,
        };
        let get = |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        if let (Some(url), Some(integrity)) = (get(url_attr), get("integrity")) {
            refs.push(HtmlRef { url, integrity });
        }
    }
    refs
}

/// Attributes from `pos` to the end of the tag, with lower-case names; and the position after
/// the tag.
fn parse_attributes(html: &str, mut pos: usize) -> (Vec<(String, String)>, usize) {
    let b = html.as_bytes();
    let mut attrs = Vec::new();
    loop {
        while pos < b.len() && (b[pos].is_ascii_whitespace() || b[pos] == b'/') {
            pos += 1;
        }
        if pos >= b.len() {
            return (attrs, pos);
        }
        if b[pos] == b'>' {
            return (attrs, pos + 1);
        }
        let name_start = pos;
        while pos < b.len() && !b[pos].is_ascii_whitespace() && !b"=>/".contains(&b[pos]) {
            pos += 1;
        }
        let name = html[name_start..pos].to_ascii_lowercase();
        while pos < b.len() && b[pos].is_ascii_whitespace() {
            pos += 1;
        }
        let mut value = String::new();
        if pos < b.len() && b[pos] == b'=' {
            pos += 1;
            while pos < b.len() && b[pos].is_ascii_whitespace() {
                pos += 1;
            }
            if pos < b.len() && (b[pos] == b'"' || b[pos] == b'\'') {
                let q = b[pos];
                let vs = pos + 1;
                let ve = b[vs..]
                    .iter()
                    .position(|c| *c == q)
                    .map_or(b.len(), |e| vs + e);
                value = html[vs..ve].to_string();
                pos = (ve + 1).min(b.len());
            } else {
                let vs = pos;
                while pos < b.len() && !b[pos].is_ascii_whitespace() && b[pos] != b'>' {
                    pos += 1;
                }
                value = html[vs..pos].to_string();
            }
        }
        if !name.is_empty() {
            attrs.push((name, value.replace("&amp;", "&")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests_of(data: &[u8]) -> Digests {
        let mut h = MultiHasher::new(&[Alg::Sha256, Alg::Sha384, Alg::Sha512]);
        h.update(data);
        h.finish()
    }

    #[test]
    fn strongest_algorithm_decides() {
        let d = digests_of(b"alert(1)");
        let good384 = sri_token(Alg::Sha384, &d[&Alg::Sha384]);
        let good256 = sri_token(Alg::Sha256, &d[&Alg::Sha256]);
        let other = digests_of(b"other");
        let bad512 = sri_token(Alg::Sha512, &other[&Alg::Sha512]);
        let bad384 = sri_token(Alg::Sha384, &other[&Alg::Sha384]);
        assert!(Integrity::parse(&good384).unwrap().matches(&d));
        // A good weaker token does not save a bad stronger one.
        let i = Integrity::parse(&format!("{good384} {bad512}")).unwrap();
        assert!(!i.matches(&d));
        // Any token of the strongest algorithm may match.
        let i = Integrity::parse(&format!("{bad384} {good256} {good384}")).unwrap();
        assert!(i.matches(&d));
        assert_eq!(i.strongest(), Alg::Sha384);
    }

    #[test]
    fn tokens_and_manifest_shapes() {
        let d = digests_of(b"x");
        let t = sri_token(Alg::Sha384, &d[&Alg::Sha384]);
        assert!(Integrity::parse(&format!("{t}?ct=application/javascript")).is_ok());
        assert!(Integrity::parse("md5-AAAA")
            .unwrap_err()
            .contains("unknown algorithm"));
        assert!(Integrity::parse("sha384-!!!")
            .unwrap_err()
            .contains("not base64"));
        assert!(Integrity::parse("sha256-AAAA")
            .unwrap_err()
            .contains("bytes"));
        assert!(Integrity::parse("  ").is_err());
        let json = format!(
            r#"{{"a.js": {{"sha384": "{t}"}}, "b.js": "{t}", "c.js": {{"sha384": ["{t}", "{t}"]}},
               "d.js": {{"md5": "x"}}, "e.js": {{"sha256": "{t}"}}, "f.js": 3}}"#
        );
        let m = parse_manifest(json.as_bytes()).unwrap();
        assert!(m["a.js"].is_ok() && m["b.js"].is_ok() && m["c.js"].is_ok());
        assert!(m["d.js"]
            .as_ref()
            .unwrap_err()
            .contains("unknown algorithm"));
        assert!(m["e.js"].as_ref().unwrap_err().contains("holds a sha384"));
        assert!(m["f.js"].is_err());
        assert!(parse_manifest(b"{not json").is_err());
        assert!(parse_manifest(b"[1]").is_err());
    }

    #[test]
    fn unsafe_paths() {
        assert_eq!(
            safe_segments("./assets//app.js"),
            Some(vec!["assets".to_string(), "app.js".to_string()])
        );
        for bad in ["/etc/passwd", "../x", "a/../../x", "a\\b", "", "./"] {
            assert_eq!(safe_segments(bad), None, "{bad}");
        }
    }

    #[test]
    fn html_references() {
        let html = r#"<!-- <script src="c.js" integrity="sha384-x"></script> -->
            <SCRIPT defer src='/js/app.js' integrity="sha384-abc" crossorigin></SCRIPT>
            <link rel=stylesheet href=css/s.css?v=1 integrity=sha256-def>
            <img src="a.png" integrity="nope">"#;
        let refs = integrity_refs(html);
        assert_eq!(refs.len(), 2, "{refs:?}");
        assert_eq!(refs[0].url, "/js/app.js");
        assert_eq!(refs[1].url, "css/s.css?v=1");
        let scan = HtmlScan {
            manifest: BTreeMap::new(),
            base: Some(Url::parse("https://host/app/").unwrap()),
            max_files: 10,
        };
        let dir = vec!["sub".to_string()];
        assert_eq!(
            scan.resolve(&dir, "x%20y.js?v=2").as_deref(),
            Some("sub/x y.js")
        );
        assert_eq!(scan.resolve(&dir, "../a.js").as_deref(), Some("a.js"));
        assert_eq!(scan.resolve(&dir, "/app/b.js").as_deref(), Some("b.js"));
        assert_eq!(
            scan.resolve(&dir, "https://host/app/c.js").as_deref(),
            Some("c.js")
        );
        assert_eq!(scan.resolve(&dir, "https://cdn.example/c.js"), None);
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
