//! The HTML scanner: `integrity` attributes of `<script>` and `<link>` elements in the HTML
//! files under the root, compared with the manifest and with the files they point at.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use url::Url;

use super::integrity::Integrity;
use super::local::{FileChecker, FileDigests};
use super::manifest::{entry_path, safe_segments, Manifest};
use super::{Trouble, HTML_ATTRIBUTES, HTML_DISAGREEING, HTML_FILES};
use crate::metrics::Samples;
use crate::probe::{Health, Item, Problems, RunContext};

/// Largest HTML file scanned.
const MAX_HTML_BYTES: u64 = 8 << 20;
/// Deepest folder level scanned for HTML files.
const MAX_HTML_DEPTH: usize = 16;

/// The HTML part of a run; it runs on the blocking thread after the manifest entries.
pub(super) struct HtmlScan {
    /// The usable manifest entries by path (the key without its query), each with the
    /// key's query.
    manifest: BTreeMap<String, Vec<(Option<String>, Integrity)>>,
    base: Option<Url>,
    max_files: usize,
}

/// What the scan found.
#[derive(Default)]
pub(super) struct HtmlFindings {
    files: usize,
    local: usize,
    external: usize,
    vs_manifest: Vec<String>,
    vs_file: Vec<String>,
}

impl HtmlFindings {
    pub(super) fn export(
        self,
        cx: &RunContext,
        out: &mut Samples,
        problems: &mut Problems<Trouble>,
    ) {
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
        for (against, list) in [("manifest", &self.vs_manifest), ("file", &self.vs_file)] {
            for what in list {
                cx.report(Item::new(
                    "HTML reference",
                    what,
                    Health::Failing,
                    format!("integrity attribute disagrees with the {against}"),
                ));
            }
        }
        for item in self.vs_manifest.into_iter().chain(self.vs_file) {
            problems.push(Trouble::Html, item);
        }
    }
}

impl HtmlScan {
    /// A scan comparing with the usable entries of `manifest`; `base` is the deployed URL,
    /// which root-relative and absolute references may carry.
    pub(super) fn new(manifest: &Manifest, base: Option<Url>, max_files: usize) -> Self {
        let mut by_path: BTreeMap<String, Vec<(Option<String>, Integrity)>> = BTreeMap::new();
        for (key, integrity) in manifest {
            let (Some(place), Ok(integrity)) = (entry_path(key), integrity) else {
                continue;
            };
            by_path
                .entry(place.segments.join("/"))
                .or_default()
                .push((place.query, integrity.clone()));
        }
        Self {
            manifest: by_path,
            base,
            max_files,
        }
    }

    /// The manifest's metadata for a path, preferring the entry with the reference's query
    /// (`app.js?v=3` beside `app.js?v=2`).
    fn manifest_entry(&self, key: &str, query: Option<&str>) -> Option<&Integrity> {
        let entries = self.manifest.get(key)?;
        entries
            .iter()
            .find(|(q, _)| q.as_deref() == query)
            .or_else(|| entries.first())
            .map(|(_, i)| i)
    }

    pub(super) fn run(&self, checker: &mut FileChecker<'_>) -> HtmlFindings {
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
                let attr = Integrity::parse(&r.integrity);
                if !self
                    .manifest_entry(&key, reference_query(&r.url).as_deref())
                    .is_some_and(|m| m.shares_token(&attr))
                {
                    found.vs_manifest.push(what.clone());
                }
                // As a browser judges the file: an attribute that cannot tell a good file from
                // a bad one disagrees with it.
                let file_ok = match (safe_segments(&key), attr.checkable()) {
                    (Some(segs), Ok(alg)) => matches!(
                        checker.digests(&segs, &[alg]),
                        FileDigests::Ok(d) if attr.matches(&d)
                    ),
                    _ => false,
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

/// The query of a reference, if it has one.
fn reference_query(reference: &str) -> Option<String> {
    let base = Url::parse("http://root.invalid/").ok()?;
    base.join(reference.trim())
        .ok()?
        .query()
        .map(str::to_string)
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

/// Fuzzing entry (the `sri_html` target of `fuzz/`): an HTML text as the scanner reads it.
/// Every `integrity` reference is resolved as from a page in `sub/` of a root deployed at
/// `https://127.0.0.1/app/` (and with no deployed URL); a reference that resolves to a
/// manifest key must be a safe path, and its integrity is parsed. Panics only on a bug.
#[doc(hidden)]
pub fn fuzz_html(html: &str) {
    let manifest = Manifest::new();
    let scans = [
        HtmlScan::new(&manifest, Url::parse("https://127.0.0.1/app/").ok(), 1),
        HtmlScan::new(&manifest, None, 1),
    ];
    let dir = ["sub".to_string()];
    for r in integrity_refs(html) {
        for scan in &scans {
            if let Some(key) = scan.resolve(&dir, &r.url) {
                let segments = safe_segments(&key).expect("a resolved key is a safe path");
                assert!(
                    segments.iter().all(|s| s != ".." && !s.is_empty()),
                    "{key:?}"
                );
            }
        }
        let integrity = Integrity::parse(&r.integrity);
        let _ = (integrity.strongest(), integrity.checkable());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(reference_query("css/s.css?v=1#x").as_deref(), Some("v=1"));
        assert_eq!(reference_query("a.js"), None);
    }

    #[test]
    fn a_manifest_key_with_a_query_is_found_by_its_path() {
        let mut h = crate::probe::sri::MultiHasher::new(&[crate::probe::sri::Alg::Sha256]);
        h.update(b"x");
        let d = h.finish();
        let t = crate::probe::sri::sri_token(
            crate::probe::sri::Alg::Sha256,
            &d[&crate::probe::sri::Alg::Sha256],
        );
        let json = format!(
            r#"{{"app.js?v=3": "{t}", "./lib/b.js?v=1": "sha256-%", "lib/b.js?v=2": "{t}"}}"#
        );
        let manifest = crate::probe::sri::parse_manifest(json.as_bytes()).unwrap();
        let scan = HtmlScan::new(&manifest, None, 1);
        assert!(scan.manifest_entry("app.js", Some("v=3")).is_some());
        assert!(scan.manifest_entry("app.js", None).is_some());
        // The entry with the reference's query, not the first of the path.
        assert!(scan.manifest_entry("lib/b.js", Some("v=2")).is_some());
        assert!(scan.manifest_entry("lib/b.js", Some("v=1")).is_some());
    }
}
