//! SRI drift (the assistant backend): recomputes the digests of `sri-manifest.json`
//! (`{ "path": { "sha384": "sha384-…" } }`) against a local root folder and/or a deployed base
//! URL, and optionally checks the `integrity="…"` attributes of the HTML files under the root.
//!
//! Matching follows the SRI specification: of an entry's tokens only those of its strongest
//! algorithm count, and the content matches when any of them does; tokens of unknown
//! algorithms and `?options` are ignored. An entry whose tokens cannot tell a good content
//! from a bad one (no known algorithm, or no well-formed digest of the strongest) is reported
//! as `bad_integrity`. A key's query (`app.js?v=3`) is sent in URL mode and ignored on disk,
//! as the HTML scan does. URL mode follows redirects only within the base URL's origin and
//! `allowed_hosts`.
//!
//! **Invariant:** a manifest path is never read outside the root: absolute paths, `..` and
//! symlinks leading out of the root are reported as `unsafe_path` instead.
//!
//! Hashing streams with a fixed buffer on a blocking thread, so a 1 GiB asset costs the buffer,
//! not its size; a file whose size, modification time, change time and inode are unchanged is
//! taken from a cache instead of being hashed again. URL mode sends the cached `ETag` and reuses
//! the digest on `304 Not Modified`.
//!
//! The parts: [`integrity`] (algorithms, tokens, hashing), [`manifest`] (the manifest file and
//! safe paths), `local` (files under the root), `remote` (the deployed URLs) and `html` (the
//! HTML scanner); this module runs them and reports.

mod html;
pub mod integrity;
mod local;
pub mod manifest;
mod remote;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use stackmedic_common::config::{duration, join};
use stackmedic_common::ConfigErrors;
use url::Url;

pub use integrity::{hash_reader, sri_token, Alg, Digests, Integrity, MultiHasher, HASH_BUFFER};
pub use manifest::{entry_path, parse_manifest, safe_segments, EntryPath, Manifest};

#[doc(hidden)]
pub use html::fuzz_html;

use super::fetch::{self, TlsOptions};
use super::files::CancelOnDrop;
use super::{Health, Item, ProbeError, ProblemKind, Problems, Reason, RunContext, Shared};
use crate::metrics::{Family, Samples};

static MANIFEST_ENTRIES: Family = Family::gauge(
    "stackmedic_sri_manifest_entries",
    "Entries in the SRI manifest.",
);
static MANIFEST_INVALID: Family = Family::gauge(
    "stackmedic_sri_manifest_invalid_entries",
    "Manifest entries that are not checked, by problem: unsafe_path (absolute, `..`, or a symlink out of the root) or bad_integrity (no digest of a known algorithm, no well-formed digest of the strongest, or not a string or list of strings).",
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

/// How old a modification must be before a digest is cached (see `local`), and how long
/// before the server's `Date` a `Last-Modified` must lie before an `ETag` is trusted (see
/// `remote`).
const SETTLE: Duration = Duration::from_secs(2);

fn default_max_entries() -> usize {
    100
}
fn default_max_html_files() -> usize {
    1000
}
fn default_revalidate_after() -> Duration {
    Duration::from_secs(15 * 60)
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
    /// Longest time URL mode trusts `304 Not Modified` for an entry after its last full
    /// fetch: a rewrite that keeps size and modification time keeps a static server's `ETag`.
    #[serde(default = "default_revalidate_after", with = "duration")]
    pub revalidate_after: Duration,
    /// Hosts besides the base URL's own that URL mode follows redirects to (a CDN).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// TLS settings for URL mode.
    #[serde(default)]
    pub tls: TlsOptions,
}

impl SriConfig {
    /// Checks that there is something to compare against and that the URL is usable.
    pub fn validate(&mut self, path: &str, errs: &mut ConfigErrors) {
        if self.base_url.is_some() {
            self.tls.load(&join(path, "tls"), errs);
        }
        let root_bad = errs.has(&join(path, "root"));
        let base_bad = errs.has(&join(path, "base_url"));
        if self.root.is_none() && self.base_url.is_none() && !root_bad && !base_bad {
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
        fetch::scoped::validate_hosts(&self.allowed_hosts, &join(path, "allowed_hosts"), errs);
        if !self.allowed_hosts.is_empty() && self.base_url.is_none() && !base_bad {
            errs.push(join(path, "allowed_hosts"), "only applies with `base_url`");
        }
        if self.scan_html && self.root.is_none() && !root_bad {
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
        if self.base_url.is_none()
            && self.revalidate_after != default_revalidate_after()
            && !base_bad
        {
            errs.push(
                join(path, "revalidate_after"),
                "only applies with `base_url`",
            );
        }
    }
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

impl Verdict {
    fn of(integrity: &Integrity, digests: &Digests) -> Self {
        if integrity.matches(digests) {
            Verdict::Match
        } else {
            Verdict::Drift
        }
    }
}

/// A manifest entry that is checked.
#[derive(Clone)]
struct Target {
    key: String,
    segs: Vec<String>,
    /// The key's query, sent in URL mode.
    query: Option<String>,
    integrity: Integrity,
}

/// Hashing work, for the counters.
#[derive(Debug, Default, Clone, Copy)]
struct Work {
    hashes: u64,
    bytes: u64,
}

impl Work {
    fn add(&mut self, other: Work) {
        self.hashes += other.hashes;
        self.bytes += other.bytes;
    }

    fn export(self, source: &str, out: &mut Samples) {
        out.push(&HASHES, &[("source", source)], self.hashes as f64);
        out.push(&HASHED_BYTES, &[("source", source)], self.bytes as f64);
    }
}

/// What can be wrong in a run, most important first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Trouble {
    Drift,
    Missing,
    Failed(Reason),
    BadIntegrity,
    UnsafePath,
    Html,
}

/// The noun of a manifest entry's item when the entry itself is unusable.
const ENTRY: &str = "manifest entry";

impl ProblemKind for Trouble {
    fn reason(self) -> Reason {
        match self {
            Trouble::Drift | Trouble::Html => Reason::Mismatch,
            Trouble::Missing => Reason::NotFound,
            Trouble::Failed(r) => r,
            Trouble::BadIntegrity | Trouble::UnsafePath => Reason::Parse,
        }
    }

    fn heading(self) -> &'static str {
        match self {
            Trouble::Drift => "digest drift",
            Trouble::Missing => "missing",
            Trouble::Failed(_) => "not checked",
            Trouble::BadIntegrity => "bad manifest entries",
            Trouble::UnsafePath => "manifest paths outside the root, not read",
            Trouble::Html => "html integrity disagrees",
        }
    }
}

/// An `sri` probe.
pub struct SriProbe {
    cfg: SriConfig,
    local: Option<local::Local>,
    remote: Option<remote::Remote>,
}

impl SriProbe {
    /// Builds the probe.
    ///
    /// # Errors
    /// When the HTTP client for URL mode cannot be built.
    pub fn new(cfg: SriConfig, shared: &Shared) -> Result<Self, String> {
        let remote = match &cfg.base_url {
            // Redirects are followed by the probe, within its scope.
            Some(base) => Some(remote::Remote::new(
                base.clone(),
                shared.http.get(&cfg.tls, false)?,
                &cfg.allowed_hosts,
                cfg.max_body_bytes,
                cfg.revalidate_after,
            )),
            None => None,
        };
        let local = cfg.root.clone().map(local::Local::new);
        Ok(Self { cfg, local, remote })
    }

    /// Checks every entry against the root and/or the base URL, then the HTML files.
    ///
    /// # Errors
    /// `parse` for a manifest that cannot be read as one or has unusable entries, `mismatch`
    /// for drift (also of HTML attributes), `not_found` for missing files, `io` and the HTTP
    /// reasons for entries that could not be checked.
    pub async fn run(&self, cx: &RunContext, out: &mut Samples) -> Result<(), ProbeError> {
        let manifest = manifest::load(&self.cfg.manifest).await?;
        out.push(&MANIFEST_ENTRIES, &[], manifest.len() as f64);
        let mut problems = Problems::default();
        let mut unsafe_paths = Vec::new();
        let mut targets = Vec::new();
        for (key, integrity) in &manifest {
            match (entry_path(key), integrity) {
                (None, _) => unsafe_paths.push(key.clone()),
                (Some(_), Err(e)) => {
                    problems.push(Trouble::BadIntegrity, format!("{key}: {e}"));
                    cx.report(
                        Item::new(ENTRY, key, Health::Failing, "unusable integrity value")
                            .detail(e),
                    );
                }
                (Some(place), Ok(i)) => targets.push(Target {
                    key: key.clone(),
                    segs: place.segments,
                    query: place.query,
                    integrity: i.clone(),
                }),
            }
        }

        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        if let Some(local) = &self.local {
            let html = self.cfg.scan_html.then(|| {
                html::HtmlScan::new(
                    &manifest,
                    self.remote.as_ref().map(|r| r.base().clone()),
                    self.cfg.max_html_files,
                )
            });
            let (verdicts, findings) = local.check(targets.clone(), html, cancel.clone()).await?;
            self.report("file", &targets, &verdicts, cx, out, &mut problems);
            if let Some(h) = findings {
                h.export(cx, out, &mut problems);
            }
            local.work().export("file", out);
            // An entry that leaves the root through a symlink is not read here, and not
            // fetched either: URL mode checks exactly the entries local mode checks.
            let (refused, kept): (Vec<_>, Vec<_>) = targets
                .into_iter()
                .zip(verdicts)
                .partition(|(_, v)| *v == Verdict::Unsafe);
            unsafe_paths.extend(refused.into_iter().map(|(t, _)| t.key));
            targets = kept.into_iter().map(|(t, _)| t).collect();
        }
        if let Some(remote) = &self.remote {
            let verdicts = remote.check(cx, &targets, &cancel).await;
            self.report("url", &targets, &verdicts, cx, out, &mut problems);
            remote.work().export("url", out);
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
            problems.count(Trouble::BadIntegrity) as f64,
        );
        for key in unsafe_paths {
            cx.report(
                Item::new(ENTRY, &key, Health::Failing, "outside the root, not read")
                    .detail("absolute, `..`, or a symbolic link out of the root"),
            );
            problems.push(Trouble::UnsafePath, key);
        }
        problems.into_result()
    }

    fn report(
        &self,
        source: &str,
        targets: &[Target],
        verdicts: &[Verdict],
        cx: &RunContext,
        out: &mut Samples,
        problems: &mut Problems<Trouble>,
    ) {
        // How the page names what was compared: a file under the root or a deployed URL.
        let (noun, compared) = if source == "url" {
            ("deployed URL", "deployed URLs")
        } else {
            ("file", "files under the root")
        };
        let (mut checked, mut drifted, mut missing, mut failed) = (0usize, 0usize, 0usize, 0usize);
        let mut per_entry: Vec<(bool, &str)> = Vec::new();
        for (t, v) in targets.iter().zip(verdicts) {
            match v {
                Verdict::Match => {
                    checked += 1;
                    per_entry.push((false, &t.key));
                }
                Verdict::Drift => {
                    checked += 1;
                    drifted += 1;
                    per_entry.push((true, &t.key));
                    problems.push(Trouble::Drift, format!("{source} {}", t.key));
                    cx.report(
                        Item::new(noun, &t.key, Health::Failing, "digest drift").detail(
                            "its content matches none of the manifest's digests of the strongest algorithm",
                        ),
                    );
                }
                Verdict::Missing => {
                    missing += 1;
                    per_entry.push((true, &t.key));
                    problems.push(Trouble::Missing, format!("{source} {}", t.key));
                    cx.report(Item::new(noun, &t.key, Health::Failing, "missing"));
                }
                Verdict::Unsafe => {}
                Verdict::Failed(r, m) => {
                    failed += 1;
                    problems.push(Trouble::Failed(*r), m.clone());
                    cx.report(
                        Item::new(
                            noun,
                            &t.key,
                            Health::Failing,
                            format!("not checked: {}", r.words()),
                        )
                        .detail(m),
                    );
                }
            }
        }
        if drifted + missing + failed == 0 {
            cx.report(Item::new(
                "manifest",
                compared,
                Health::Ok,
                format!("all {checked} checked entries match"),
            ));
        }
        let l = [("source", source)];
        out.push(&CHECKED, &l, checked as f64);
        out.push(&DRIFTED, &l, drifted as f64);
        out.push(&MISSING, &l, missing as f64);
        out.push(&FAILED, &l, failed as f64);
        // Drifted entries first, so that the cap never hides one while clean ones are shown.
        per_entry.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        for (drift, key) in per_entry.into_iter().take(self.cfg.max_entries_reported) {
            out.flag(&ENTRY_DRIFT, &[("source", source), ("path", key)], drift);
        }
    }
}
