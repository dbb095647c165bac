//! The manifest `sri-manifest.json`: paths with their integrity metadata, read with a size
//! limit, and the rule that keeps a manifest path inside its root.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde_json::Value;

use super::integrity::Integrity;
use crate::probe::{ProbeError, Reason};

/// Largest manifest read.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// A parsed manifest: each path with its metadata, or why the metadata cannot tell a good
/// content from a bad one.
pub type Manifest = BTreeMap<String, Result<Integrity, String>>;

/// Parses a manifest: a JSON object of paths, each an object of algorithm names to tokens (a
/// string or a list of strings), or directly a token string or list. The tokens of an entry
/// are read as an `integrity` attribute holding all of them would be: unknown algorithms and
/// options are ignored, and only the strongest algorithm present counts.
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
            let integrity = entry_integrity(&v).and_then(|i| i.checkable().map(|_| i));
            (path, integrity)
        })
        .collect())
}

fn entry_integrity(v: &Value) -> Result<Integrity, String> {
    match v {
        Value::String(s) => Ok(Integrity::parse(s)),
        Value::Array(_) => Ok(Integrity::parse(&token_list(v)?)),
        Value::Object(algs) => {
            // The keys name the algorithms for people; the tokens carry their own.
            let mut all = Vec::new();
            for tv in algs.values() {
                all.push(token_list(tv)?);
            }
            Ok(Integrity::parse(&all.join(" ")))
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

/// A manifest key as a place: the path under the root (or the base URL) and the query a URL
/// carries (`app.js?v=3`). A fragment means nothing to either and is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPath {
    /// Segments of the path, each safe to join under the root.
    pub segments: Vec<String>,
    /// The query, without its `?`; sent in URL mode, ignored on disk.
    pub query: Option<String>,
}

/// The path and query of a manifest key, or `None` when its path could leave the root.
#[must_use]
pub fn entry_path(key: &str) -> Option<EntryPath> {
    let without_fragment = key.split_once('#').map_or(key, |(k, _)| k);
    let (path, query) = match without_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (without_fragment, None),
    };
    Some(EntryPath {
        segments: safe_segments(path)?,
        query,
    })
}

/// The path segments of a manifest key (its query and fragment left out), or `None` when it
/// could leave the root: absolute, with `..`, a backslash or a NUL byte, or empty.
#[must_use]
pub fn safe_segments(key: &str) -> Option<Vec<String>> {
    let key = key.split(['?', '#']).next().unwrap_or(key);
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

/// Reads and parses the manifest at `path`.
///
/// # Errors
/// `not_found` or `io` when it cannot be read (or is larger than 16 MiB), `parse` when it is
/// not a manifest.
pub(super) async fn load(path: &Path) -> Result<Manifest, ProbeError> {
    let bytes = read_limited(path, MAX_MANIFEST_BYTES)
        .await
        .map_err(|e| ProbeError::io("cannot read manifest", path, &e))?;
    parse_manifest(&bytes)
        .map_err(|e| ProbeError::new(Reason::Parse, format!("{}: {e}", path.display())))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::sri::integrity::{sri_token, Alg, MultiHasher};

    fn digests_of(data: &[u8]) -> crate::probe::sri::Digests {
        let mut h = MultiHasher::new(&[Alg::Sha384]);
        h.update(data);
        h.finish()
    }

    #[test]
    fn tokens_and_manifest_shapes() {
        let d = digests_of(b"x");
        let t = sri_token(Alg::Sha384, &d[&Alg::Sha384]);
        let json = format!(
            r#"{{"a.js": {{"sha384": "{t}"}}, "b.js": "{t}", "c.js": {{"sha384": ["{t}", "{t}"]}},
               "d.js": {{"md5": "md5-x"}}, "e.js": {{"sha256": "{t}"}}, "f.js": 3,
               "g.js": {{"sha384": "{t}", "md5": "md5-AAAA"}}, "h.js": "{t} sha384-!!!",
               "i.js": "sha384-!!!", "j.js": "{t}?ct=application/javascript", "k.js": [3]}}"#
        );
        let m = parse_manifest(json.as_bytes()).unwrap();
        // One good token is enough; unknown algorithms and malformed tokens beside it are
        // ignored or never match, as in a browser.
        for ok in ["a.js", "b.js", "c.js", "e.js", "g.js", "h.js", "j.js"] {
            assert!(m[ok].is_ok(), "{ok}: {:?}", m[ok]);
            assert!(m[ok].as_ref().unwrap().matches(&d), "{ok}");
        }
        assert!(m["d.js"]
            .as_ref()
            .unwrap_err()
            .contains("no digest of sha256"));
        assert!(m["i.js"]
            .as_ref()
            .unwrap_err()
            .contains("no sha384 digest is the base64"));
        assert!(m["f.js"].is_err() && m["k.js"].is_err());
        assert!(parse_manifest(b"{not json").is_err());
        assert!(parse_manifest(b"[1]").is_err());
    }

    #[test]
    fn keys_with_a_query() {
        assert_eq!(
            entry_path("assets/app.js?v=3#top"),
            Some(EntryPath {
                segments: vec!["assets".into(), "app.js".into()],
                query: Some("v=3".into())
            })
        );
        assert_eq!(entry_path("app.js").unwrap().query, None);
        assert_eq!(
            safe_segments("a/b.js?x=../../etc"),
            Some(vec!["a".into(), "b.js".into()])
        );
        assert_eq!(entry_path("../x?v=1"), None);
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
}
