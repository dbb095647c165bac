//! The manifest `sri-manifest.json`: paths with their integrity metadata, read with a size
//! limit, and the rule that keeps a manifest path inside its root.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde_json::Value;

use super::integrity::{Alg, Integrity};
use crate::probe::{ProbeError, Reason};

/// Largest manifest read.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

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
    use crate::probe::sri::integrity::{sri_token, MultiHasher};

    fn digests_of(data: &[u8]) -> crate::probe::sri::Digests {
        let mut h = MultiHasher::new(&[Alg::Sha384]);
        h.update(data);
        h.finish()
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
}
