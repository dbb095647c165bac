//! Where a playlist or segment lives, and where a playlist's URIs may lead: a playlist
//! fetched over HTTP(S) only to http(s) URLs on its own host or `allowed_hosts`, a local
//! playlist only to files in its folder.

use std::path::{Path, PathBuf};

use url::Url;

use crate::probe::{ProbeError, Reason};

/// Where a playlist or segment lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Location {
    Url(Url),
    File(PathBuf),
}

impl Location {
    /// Resolves a URI found in a playlist against the playlist's own location, within
    /// `scope`: a playlist fetched over HTTP(S) leads only to http(s) URLs on the allowed
    /// hosts, a local playlist only to files in its folder. A playlist is outside input; it
    /// must not make the exporter read a local file or call an arbitrary host.
    pub(super) fn resolve(&self, uri: &str, scope: &Scope) -> Result<Location, String> {
        let uri = uri.trim();
        match self {
            Location::Url(base) => {
                let target = base
                    .join(uri)
                    .map_err(|e| format!("cannot resolve {uri:?}: {e}"))?;
                if !matches!(target.scheme(), "http" | "https") {
                    return Err(format!(
                        "URI {uri:?} leaves http(s) (scheme {:?}); a playlist fetched over \
                         HTTP may only point at http(s) URLs",
                        target.scheme()
                    ));
                }
                let host = target.host_str().unwrap_or_default().to_ascii_lowercase();
                if !scope.hosts.contains(&host) {
                    return Err(format!(
                        "URI {uri:?} points at host {host:?}, not the playlist's; list it in \
                         allowed_hosts to follow it"
                    ));
                }
                Ok(Location::Url(target))
            }
            Location::File(p) => {
                if Url::parse(uri).is_ok() {
                    return Err(format!(
                        "URI {uri:?} of a local playlist is not a relative path in its folder"
                    ));
                }
                // A segment URI may carry a query string, which means nothing on disk.
                let rel = uri.split(['?', '#']).next().unwrap_or(uri);
                let dir = p.parent().unwrap_or_else(|| Path::new("."));
                let joined = normalize(&dir.join(rel));
                match &scope.folder {
                    Some(folder) if joined.starts_with(folder) => Ok(Location::File(joined)),
                    _ => Err(format!(
                        "URI {uri:?} leads out of the playlist's folder; a local playlist may \
                         only point at files in it"
                    )),
                }
            }
        }
    }
}

/// Where the URIs of the probe's playlists may lead.
#[derive(Debug, Clone)]
pub(super) struct Scope {
    /// Hosts (lower case) of URLs: the configured playlist's and `allowed_hosts`.
    pub(super) hosts: Vec<String>,
    /// The configured local playlist's folder, normalized.
    pub(super) folder: Option<PathBuf>,
}

impl Scope {
    pub(super) fn of(root: &Location, allowed_hosts: &[String]) -> Self {
        match root {
            Location::Url(u) => Self {
                hosts: u
                    .host_str()
                    .into_iter()
                    .map(str::to_string)
                    .chain(allowed_hosts.iter().cloned())
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                folder: None,
            },
            Location::File(p) => Self {
                hosts: Vec::new(),
                folder: Some(normalize(p.parent().unwrap_or_else(|| Path::new(".")))),
            },
        }
    }

    /// Checks that a local file, followed through its symbolic links, is in the folder. A
    /// file that does not exist is left to the caller, which reports it as missing.
    pub(super) async fn contains(&self, path: &Path) -> Result<(), ProbeError> {
        let Some(folder) = &self.folder else {
            return Ok(());
        };
        let (Ok(real_folder), Ok(real)) = (
            tokio::fs::canonicalize(folder).await,
            tokio::fs::canonicalize(path).await,
        ) else {
            return Ok(());
        };
        if real.starts_with(&real_folder) {
            Ok(())
        } else {
            Err(ProbeError::new(
                Reason::Parse,
                format!(
                    "{} leads out of the playlist's folder through a symbolic link",
                    path.display()
                ),
            ))
        }
    }
}

/// A path with `.` and `..` taken out as written, without asking the file system.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                // Above the root, or above a relative start, a `..` keeps the path outside.
                if !out.pop() || out.as_os_str().is_empty() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_resolve_against_the_playlist_within_its_scope() {
        let u = Location::Url(Url::parse("http://127.0.0.1:8080/cam/live.m3u8").expect("url"));
        let scope = Scope::of(&u, &["cdn.example".to_string()]);
        assert_eq!(
            u.resolve("seg1.ts", &scope).expect("resolves"),
            Location::Url(Url::parse("http://127.0.0.1:8080/cam/seg1.ts").expect("url"))
        );
        assert!(u.resolve("https://CDN.example/a/seg1.ts", &scope).is_ok());
        for bad in [
            "file:///etc/passwd",
            "//other.example/seg1.ts",
            "http://127.0.0.2:8080/seg1.ts",
            "rtsp://127.0.0.1/stream",
            "data:video/mp2t;base64,AAAA",
        ] {
            assert!(u.resolve(bad, &scope).is_err(), "{bad}");
        }
        let f = Location::File(PathBuf::from("/srv/hls/cam/live.m3u8"));
        let scope = Scope::of(&f, &[]);
        assert_eq!(
            f.resolve("low/seg1.ts?x=1", &scope).expect("resolves"),
            Location::File(PathBuf::from("/srv/hls/cam/low/seg1.ts"))
        );
        let variant = Location::File(PathBuf::from("/srv/hls/cam/low/index.m3u8"));
        assert_eq!(
            variant.resolve("../seg2.ts", &scope).expect("resolves"),
            Location::File(PathBuf::from("/srv/hls/cam/seg2.ts"))
        );
        for bad in [
            "rtsp://cam/stream",
            "file:///etc/passwd",
            "/etc/passwd",
            "../other/seg1.ts",
            "low/../../x.ts",
            "http://127.0.0.1/seg.ts",
        ] {
            assert!(f.resolve(bad, &scope).is_err(), "{bad}");
        }
    }
}
