//! HLS stream freshness (the camera/PLC app): a playlist read by URL or from a file; a master playlist is
//! followed to its variants (at most `max_variants`). Per media playlist: media sequence, target
//! duration, segment count, when the playlist last gained a segment, stale per RFC 8216 §6.2.1,
//! media-sequence regressions (§6.2.2), end of list, and optionally whether the newest segment
//! can be fetched.
//!
//! RFC 8216 §6.2.1 obliges a live server to publish a playlist with at least one new segment no
//! later than 1.5 × the target duration after the previous one, so a playlist without
//! `#EXT-X-ENDLIST` that gained nothing for `stale_multiplier` × target duration is stale. The
//! time a segment was added is the playlist file's mtime (same host, same clock), or for a URL
//! the time this probe first saw it: `Last-Modified` has whole seconds on another host's clock,
//! so it only stands in for the very first observation, when nothing was seen yet — a stream
//! that died before the exporter started is stale at once. In URL mode the probe therefore
//! notices a stale stream within the threshold plus up to two intervals of the last segment;
//! in file mode within the threshold plus one interval.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::Method;
use m3u8_rs::{MediaPlaylist, Playlist};
use serde::Deserialize;
use stackmedic_common::config::join;
use stackmedic_common::reload::unix_now;
use stackmedic_common::ConfigErrors;
use url::Url;

use super::fetch::{self, TlsOptions};
use super::report::duration_words;
use super::{Health, Item, ProbeError, ProblemKind, Problems, Reason, RunContext, Shared};
use crate::metrics::{Family, Samples};
use crate::support::{lock, truncate};

static VARIANTS: Family = Family::gauge(
    "stackmedic_hls_variants",
    "Variant streams listed by the master playlist (before the max_variants cap); absent for a media playlist.",
);
static PLAYLIST_UP: Family = Family::gauge(
    "stackmedic_hls_playlist_up",
    "Whether the media playlist was read and parsed (1) or not (0).",
);
static MEDIA_SEQUENCE: Family = Family::gauge(
    "stackmedic_hls_media_sequence",
    "The playlist's EXT-X-MEDIA-SEQUENCE: the sequence number of its first segment.",
);
static TARGET_DURATION: Family = Family::gauge(
    "stackmedic_hls_target_duration_seconds",
    "The playlist's EXT-X-TARGETDURATION, in seconds.",
);
static SEGMENTS: Family = Family::gauge(
    "stackmedic_hls_segments",
    "Media segments listed in the playlist.",
);
static LAST_ADDED: Family = Family::gauge(
    "stackmedic_hls_last_segment_added_timestamp_seconds",
    "Unix time at which the playlist last gained a segment, as observed by the probe (the first observation uses the file's mtime or Last-Modified).",
);
static STALE: Family = Family::gauge(
    "stackmedic_hls_stale",
    "Whether a live playlist gained no segment within stale_multiplier x target duration (RFC 8216 6.2.1); always 0 after EXT-X-ENDLIST.",
);
static STALE_AFTER: Family = Family::gauge(
    "stackmedic_hls_stale_after_seconds",
    "Time without a new segment after which the playlist counts as stale: stale_multiplier x target duration.",
);
static REGRESSIONS: Family = Family::counter(
    "stackmedic_hls_sequence_regressions_total",
    "Times the playlist's media sequence decreased between two runs (RFC 8216 6.2.2), such as after a restart of the packager.",
);
static END_LIST: Family = Family::gauge(
    "stackmedic_hls_end_list",
    "Whether the playlist carries EXT-X-ENDLIST (1: the stream ended or is VOD) or not (0).",
);
static SEGMENT_FETCHABLE: Family = Family::gauge(
    "stackmedic_hls_newest_segment_fetchable",
    "Whether the playlist's newest segment could be fetched (1) or not (0); only with check_newest_segment.",
);

fn default_multiplier() -> f64 {
    1.5
}
fn default_max_variants() -> usize {
    8
}
fn default_max_playlist() -> u64 {
    fetch::DEFAULT_MAX_BODY
}
fn default_max_segment() -> u64 {
    64 << 20
}

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 10;

/// Longest `variant` label value; longer variant URIs are cut.
const MAX_LABEL: usize = 64;

/// How the newest segment is fetched.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum SegmentMethod {
    /// HEAD (default): the server only has to find it.
    #[default]
    Head,
    /// GET: the whole segment is read, up to `max_segment_bytes`.
    Get,
}

/// Settings of an `hls` probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsConfig {
    /// The playlist's URL; exactly one of `url` and `path`.
    pub url: Option<Url>,
    /// The playlist's file path, for a packager writing to a local folder.
    pub path: Option<PathBuf>,
    /// Stale after this many target durations without a new segment (RFC 8216 says 1.5).
    #[serde(default = "default_multiplier")]
    pub stale_multiplier: f64,
    /// Most variants of a master playlist followed; the rest are counted but not read.
    #[serde(default = "default_max_variants")]
    pub max_variants: usize,
    /// Fetch the newest segment of each media playlist.
    #[serde(default)]
    pub check_newest_segment: bool,
    /// Method of the segment fetch.
    #[serde(default)]
    pub segment_method: SegmentMethod,
    /// Largest playlist read.
    #[serde(default = "default_max_playlist")]
    pub max_playlist_bytes: u64,
    /// Largest segment read by a GET.
    #[serde(default = "default_max_segment")]
    pub max_segment_bytes: u64,
    /// Hosts besides the playlist's own that variant and segment URIs of a playlist fetched
    /// over HTTP(S) may point at (a CDN). Local playlists never leave their folder.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsOptions,
}

impl HlsConfig {
    /// Checks the source, the multiplier and the bounds.
    pub fn validate(&mut self, path: &str, errs: &mut ConfigErrors) {
        self.tls.load(&join(path, "tls"), errs);
        match (&self.url, &self.path) {
            (Some(u), None) => fetch::validate_url(u, &join(path, "url"), errs),
            (None, Some(p)) => {
                if p.as_os_str().is_empty() {
                    errs.push(join(path, "path"), "must not be empty");
                }
            }
            (Some(_), Some(_)) => errs.push(path, "set either `url` or `path`, not both"),
            (None, None) => errs.push(path, "set `url` or `path` of the playlist"),
        }
        if !(self.stale_multiplier.is_finite()
            && self.stale_multiplier >= 0.5
            && self.stale_multiplier <= 100.0)
        {
            errs.push(
                join(path, "stale_multiplier"),
                "must be between 0.5 and 100",
            );
        }
        if !(1..=64).contains(&self.max_variants) {
            errs.push(join(path, "max_variants"), "must be between 1 and 64");
        }
        if self.max_playlist_bytes == 0 {
            errs.push(join(path, "max_playlist_bytes"), "must be at least 1");
        }
        if self.max_segment_bytes == 0 {
            errs.push(join(path, "max_segment_bytes"), "must be at least 1");
        }
        for (i, host) in self.allowed_hosts.iter().enumerate() {
            if url::Host::parse(host).is_err() || host.contains(['/', ':', '@']) {
                errs.push(
                    format!("{}[{i}]", join(path, "allowed_hosts")),
                    format!("{host:?} is not a host name or IP address"),
                );
            }
        }
        if !self.allowed_hosts.is_empty() && self.path.is_some() {
            errs.push(
                join(path, "allowed_hosts"),
                "only applies to a playlist fetched by `url`",
            );
        }
    }
}

/// Where a playlist or segment lives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Url(Url),
    File(PathBuf),
}

impl Location {
    /// Resolves a URI found in a playlist against the playlist's own location, within
    /// `scope`: a playlist fetched over HTTP(S) leads only to http(s) URLs on the allowed
    /// hosts, a local playlist only to files in its folder. A playlist is outside input; it
    /// must not make the exporter read a local file or call an arbitrary host.
    fn resolve(&self, uri: &str, scope: &Scope) -> Result<Location, String> {
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

/// Where the URIs of the probe's playlists, and the redirects of its requests, may lead.
#[derive(Debug, Clone)]
struct Scope {
    /// Hosts (lower case) of URLs: the configured playlist's and `allowed_hosts`.
    hosts: Vec<String>,
    /// `allowed_hosts` alone (lower case).
    allowed_hosts: Vec<String>,
    /// The configured playlist URL's origin (scheme, host, port).
    origin: Option<url::Origin>,
    /// The configured local playlist's folder, normalized.
    folder: Option<PathBuf>,
}

impl Scope {
    fn of(root: &Location, allowed_hosts: &[String]) -> Self {
        match root {
            Location::Url(u) => Self {
                hosts: u
                    .host_str()
                    .into_iter()
                    .map(str::to_string)
                    .chain(allowed_hosts.iter().cloned())
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                allowed_hosts: allowed_hosts
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                origin: Some(u.origin()),
                folder: None,
            },
            Location::File(p) => Self {
                hosts: Vec::new(),
                allowed_hosts: Vec::new(),
                origin: None,
                folder: Some(normalize(p.parent().unwrap_or_else(|| Path::new(".")))),
            },
        }
    }

    /// Checks a redirect from `from` to `to`: it is followed only to the configured playlist's
    /// origin, to the origin of the URL that was asked for, or to an `allowed_hosts` host over
    /// http(s). A server must not be able to send the probe to another port or host.
    fn allows_redirect(&self, from: &Url, to: &Url) -> Result<(), ProbeError> {
        let origin = to.origin();
        let host = to.host_str().unwrap_or_default().to_ascii_lowercase();
        if self.origin.as_ref() == Some(&origin)
            || from.origin() == origin
            || (matches!(to.scheme(), "http" | "https") && self.allowed_hosts.contains(&host))
        {
            return Ok(());
        }
        Err(ProbeError::new(
            Reason::HttpStatus,
            format!(
                "redirect from {from} to {to} leaves the playlist's origin; not followed \
                 (configure the final URL, or list its host in allowed_hosts)"
            ),
        ))
    }

    /// Checks that a local file, followed through its symbolic links, is in the folder. A
    /// file that does not exist is left to the caller, which reports it as missing.
    async fn contains(&self, path: &Path) -> Result<(), ProbeError> {
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

/// A playlist as read: its bytes and, when known, when it was last modified.
struct Document {
    body: Bytes,
    modified: Option<Modified>,
}

/// When a playlist was last written, at the latest.
#[derive(Debug, Clone, Copy)]
struct Modified {
    /// Unix time.
    at: f64,
    /// A local file's mtime, on this host's clock: it dates every change exactly. A
    /// `Last-Modified` header has whole seconds on another host's clock, so it only dates the
    /// first observation.
    exact: bool,
}

/// One media playlist of a run: its `variant` label, where it lives, and what was read.
type Stream = (
    String,
    Location,
    Result<(MediaPlaylist, Option<Modified>), ProbeError>,
);

/// What the probe remembers of one media playlist between runs.
#[derive(Debug, Clone)]
struct StreamState {
    media_sequence: u64,
    newest: Option<(u64, String)>,
    added_at: f64,
    regressions: u64,
}

/// The result of one media playlist in one run.
struct Observation {
    stale: bool,
    stale_after: f64,
    age: f64,
    added_at: f64,
    regressions: u64,
}

/// An `hls` probe.
pub struct HlsProbe {
    cfg: HlsConfig,
    root: Location,
    client: reqwest::Client,
    /// Where the playlists' URIs may lead.
    scope: Scope,
    /// Per media playlist, keyed by its `variant` label (empty for a media playlist given
    /// directly).
    streams: Mutex<HashMap<String, StreamState>>,
}

impl HlsProbe {
    /// Builds the probe.
    ///
    /// # Errors
    /// When its HTTP client cannot be built, or neither a URL nor a path is set.
    pub fn new(cfg: HlsConfig, shared: &Shared) -> Result<Self, String> {
        // Redirects are followed by the probe itself, only within its scope.
        let client = shared.http.get(&cfg.tls, false)?;
        let root = match (&cfg.url, &cfg.path) {
            (Some(u), _) => Location::Url(u.clone()),
            // Absolute, so that the folder a local playlist's URIs must stay in is well defined.
            (None, Some(p)) => Location::File(
                std::path::absolute(p)
                    .map_err(|e| format!("cannot make {} absolute: {e}", p.display()))?,
            ),
            (None, None) => return Err("hls probe has neither url nor path".into()),
        };
        let scope = Scope::of(&root, &cfg.allowed_hosts);
        Ok(Self {
            cfg,
            root,
            scope,
            client,
            streams: Mutex::new(HashMap::new()),
        })
    }

    /// Reads the playlist (and the variants of a master playlist) once.
    ///
    /// # Errors
    /// `parse` for a malformed playlist, `stale` for a live stream without new segments, the
    /// transport's reason (`connect`, `not_found`, `http_status`, `timeout`, …) when a playlist
    /// or the newest segment cannot be read.
    pub async fn run(&self, cx: &RunContext, out: &mut Samples) -> Result<(), ProbeError> {
        let doc = match self.load(&self.root, cx).await {
            Ok(d) => d,
            Err(e) => {
                out.flag(&PLAYLIST_UP, &[], false);
                return Err(e);
            }
        };
        let playlist = match parse(&doc.body) {
            Ok(p) => p,
            Err(e) => {
                out.flag(&PLAYLIST_UP, &[], false);
                return Err(e);
            }
        };
        let streams: Vec<Stream> = match playlist {
            Playlist::MediaPlaylist(m) => {
                vec![(String::new(), self.root.clone(), Ok((m, doc.modified)))]
            }
            Playlist::MasterPlaylist(master) => {
                let variants: Vec<_> = master.variants.iter().filter(|v| !v.is_i_frame).collect();
                out.push(&VARIANTS, &[], variants.len() as f64);
                let labels = variant_labels(
                    variants
                        .iter()
                        .take(self.cfg.max_variants)
                        .map(|v| v.uri.as_str()),
                );
                let fetches = variants.iter().take(self.cfg.max_variants).zip(labels).map(
                    |(v, label)| async move {
                        let loc = self.root.resolve(&v.uri, &self.scope);
                        let result = match &loc {
                            Ok(loc) => self.load_media(loc, cx).await,
                            Err(e) => Err(ProbeError::new(Reason::Parse, e.clone())),
                        };
                        (label, loc.unwrap_or_else(|_| self.root.clone()), result)
                    },
                );
                futures_util::future::join_all(fetches).await
            }
        };

        let now = unix_now();
        let mut problems = Problems::default();
        let mut seen = HashSet::new();
        for (label, loc, result) in &streams {
            let labels: Vec<(&'static str, &str)> = if label.is_empty() {
                Vec::new()
            } else {
                vec![("variant", label.as_str())]
            };
            let (media, modified) = match result {
                Ok(m) => m,
                Err(e) => {
                    out.flag(&PLAYLIST_UP, &labels, false);
                    problems.push(Trouble::Unreadable(e.reason), describe(label, &e.message));
                    cx.report(
                        Item::new(
                            noun(label),
                            label.as_str(),
                            Health::Failing,
                            format!("unreadable: {}", e.reason.words()),
                        )
                        .detail(&e.message),
                    );
                    continue;
                }
            };
            seen.insert(label.clone());
            out.flag(&PLAYLIST_UP, &labels, true);
            let obs = self.observe(label, media, *modified, now, &labels, out);
            let mut item = stream_item(label, media, &obs);
            if obs.stale {
                problems.push(
                    Trouble::Stale,
                    describe(
                        label,
                        &format!(
                            "no new segment for {:.1}s (stale after {:.1}s)",
                            obs.age, obs.stale_after
                        ),
                    ),
                );
            }
            if self.cfg.check_newest_segment {
                if let Some(seg) = media.segments.last() {
                    let r = self.check_segment(loc, &seg.uri, cx).await;
                    out.flag(&SEGMENT_FETCHABLE, &labels, r.is_ok());
                    if let Err(e) = r {
                        item = item
                            .problem(Health::Failing, "newest segment not fetchable")
                            .detail(&e.message);
                        problems.push(Trouble::Segment(e.reason), describe(label, &e.message));
                    }
                }
            }
            cx.report(item);
        }
        // Forget streams a master playlist no longer lists, so the state stays bounded.
        lock(&self.streams).retain(|k, _| seen.contains(k));
        problems.into_result()
    }

    /// Updates the remembered state of one media playlist and writes its samples.
    fn observe(
        &self,
        key: &str,
        m: &MediaPlaylist,
        modified: Option<Modified>,
        now: f64,
        labels: &[(&'static str, &str)],
        out: &mut Samples,
    ) -> Observation {
        // The newest segment's sequence number; a playlist numbered up to the end of the range
        // (no valid stream is) stops there instead of overflowing.
        let newest = m.segments.last().map(|s| {
            (
                m.media_sequence.saturating_add(m.segments.len() as u64 - 1),
                s.uri.clone(),
            )
        });
        let mut streams = lock(&self.streams);
        let st = streams
            .entry(key.to_string())
            .and_modify(|st| {
                if m.media_sequence < st.media_sequence {
                    st.regressions += 1;
                }
                // A new newest segment is growth; so is a different one at a lower sequence
                // number, which is what a restarted packager publishes.
                if newest.is_some() && newest != st.newest {
                    st.added_at = match modified {
                        Some(m) if m.exact => m.at.clamp(st.added_at, now),
                        _ => now,
                    };
                }
                st.media_sequence = m.media_sequence;
                st.newest.clone_from(&newest);
            })
            .or_insert_with(|| StreamState {
                media_sequence: m.media_sequence,
                newest: newest.clone(),
                added_at: modified.map_or(now, |m| m.at.min(now)),
                regressions: 0,
            });
        let stale_after = self.cfg.stale_multiplier * m.target_duration as f64;
        let age = (now - st.added_at).max(0.0);
        let stale = !m.end_list && age > stale_after;
        out.push(&MEDIA_SEQUENCE, labels, m.media_sequence as f64);
        out.push(&TARGET_DURATION, labels, m.target_duration as f64);
        out.push(&SEGMENTS, labels, m.segments.len() as f64);
        out.push(&LAST_ADDED, labels, st.added_at);
        out.push(&STALE_AFTER, labels, stale_after);
        out.flag(&STALE, labels, stale);
        out.push(&REGRESSIONS, labels, st.regressions as f64);
        out.flag(&END_LIST, labels, m.end_list);
        Observation {
            stale,
            stale_after,
            age,
            added_at: st.added_at,
            regressions: st.regressions,
        }
    }

    async fn load_media(
        &self,
        loc: &Location,
        cx: &RunContext,
    ) -> Result<(MediaPlaylist, Option<Modified>), ProbeError> {
        let doc = self.load(loc, cx).await?;
        match parse(&doc.body)? {
            Playlist::MediaPlaylist(m) => Ok((m, doc.modified)),
            Playlist::MasterPlaylist(_) => Err(ProbeError::new(
                Reason::Parse,
                "a variant is itself a master playlist",
            )),
        }
    }

    /// Reads a playlist, bounded by `max_playlist_bytes`.
    async fn load(&self, loc: &Location, cx: &RunContext) -> Result<Document, ProbeError> {
        match loc {
            Location::Url(url) => {
                let resp = self
                    .fetch(cx, Method::GET, url, self.cfg.max_playlist_bytes)
                    .await?;
                check_status(resp.status, url)?;
                let modified = resp
                    .headers
                    .get(http::header::LAST_MODIFIED)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| httpdate::parse_http_date(v).ok())
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    // The header has whole seconds: the end of that second is the latest time
                    // the playlist can have been written, so a healthy stream is not called
                    // stale at the first observation.
                    .map(|d| Modified {
                        at: d.as_secs_f64() + 1.0,
                        exact: false,
                    });
                Ok(Document {
                    body: resp.body,
                    modified,
                })
            }
            Location::File(path) => {
                self.scope.contains(path).await?;
                let meta = tokio::fs::metadata(path)
                    .await
                    .map_err(|e| ProbeError::io("cannot read", path, &e))?;
                if meta.len() > self.cfg.max_playlist_bytes {
                    return Err(ProbeError::new(
                        Reason::BodyTooLarge,
                        format!(
                            "{} exceeds the limit of {} bytes",
                            path.display(),
                            self.cfg.max_playlist_bytes
                        ),
                    ));
                }
                let body = tokio::fs::read(path)
                    .await
                    .map_err(|e| ProbeError::io("cannot read", path, &e))?;
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| Modified {
                        at: d.as_secs_f64(),
                        exact: true,
                    });
                Ok(Document {
                    body: body.into(),
                    modified,
                })
            }
        }
    }

    /// Requests `url`, following at most [`MAX_REDIRECTS`] redirects, each only within the
    /// probe's scope ([`Scope::allows_redirect`]). A redirect without `Location` is returned
    /// as it is, for [`check_status`] to report.
    async fn fetch(
        &self,
        cx: &RunContext,
        method: Method,
        url: &Url,
        max_body: u64,
    ) -> Result<fetch::Fetched, ProbeError> {
        let mut current = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let req = self.client.request(method.clone(), current.clone());
            let resp = fetch::send(cx, req, max_body).await?;
            let location = resp
                .headers
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok());
            let (true, Some(location)) = (resp.status.is_redirection(), location) else {
                return Ok(resp);
            };
            let next = current.join(location).map_err(|e| {
                ProbeError::new(
                    Reason::HttpStatus,
                    format!("redirect from {current} to an invalid location: {e}"),
                )
            })?;
            self.scope.allows_redirect(&current, &next)?;
            current = next;
        }
        Err(ProbeError::new(
            Reason::HttpStatus,
            format!("{url}: more than {MAX_REDIRECTS} redirects"),
        ))
    }

    /// Fetches (or, for a file, looks up) the newest segment.
    async fn check_segment(
        &self,
        playlist: &Location,
        uri: &str,
        cx: &RunContext,
    ) -> Result<(), ProbeError> {
        let loc = playlist
            .resolve(uri, &self.scope)
            .map_err(|e| ProbeError::new(Reason::Parse, e))?;
        match &loc {
            Location::Url(url) => {
                let method = match self.cfg.segment_method {
                    SegmentMethod::Head => Method::HEAD,
                    SegmentMethod::Get => Method::GET,
                };
                let resp = self
                    .fetch(cx, method, url, self.cfg.max_segment_bytes)
                    .await?;
                check_status(resp.status, url)
            }
            Location::File(path) => {
                self.scope.contains(path).await?;
                let meta = tokio::fs::metadata(path)
                    .await
                    .map_err(|e| ProbeError::io("cannot read", path, &e))?;
                if meta.is_file() {
                    Ok(())
                } else {
                    Err(ProbeError::new(
                        Reason::NotFound,
                        format!("{} is not a file", path.display()),
                    ))
                }
            }
        }
    }
}

/// Parses a playlist; a media playlist must state its target duration (RFC 8216 §4.3.3.1).
fn parse(body: &[u8]) -> Result<Playlist, ProbeError> {
    if !body.starts_with(b"#EXTM3U") {
        return Err(ProbeError::new(
            Reason::Parse,
            "not a playlist: it does not begin with #EXTM3U",
        ));
    }
    let playlist = m3u8_rs::parse_playlist_res(body).map_err(|e| {
        ProbeError::new(
            Reason::Parse,
            format!("malformed playlist: {}", truncate(&format!("{e:?}"), 200)),
        )
    })?;
    if let Playlist::MediaPlaylist(m) = &playlist {
        if m.target_duration == 0 {
            return Err(ProbeError::new(
                Reason::Parse,
                "malformed media playlist: no valid #EXT-X-TARGETDURATION",
            ));
        }
        if let Some(bad) = m.segments.iter().find(|s| s.uri.trim().is_empty()) {
            return Err(ProbeError::new(
                Reason::Parse,
                format!(
                    "malformed media playlist: a segment has no URI (duration {})",
                    bad.duration
                ),
            ));
        }
    }
    Ok(playlist)
}

fn check_status(status: http::StatusCode, url: &Url) -> Result<(), ProbeError> {
    if status.is_success() {
        Ok(())
    } else if matches!(status.as_u16(), 404 | 410) {
        Err(ProbeError::new(
            Reason::NotFound,
            format!("{url}: status {}", status.as_u16()),
        ))
    } else {
        Err(ProbeError::new(
            Reason::HttpStatus,
            format!("{url}: status {}", status.as_u16()),
        ))
    }
}

/// What went wrong with one media playlist, in order of importance: a playlist that cannot
/// be read hides everything else about its stream, a stale stream matters more than a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Trouble {
    Unreadable(Reason),
    Stale,
    Segment(Reason),
}

impl ProblemKind for Trouble {
    fn reason(self) -> Reason {
        match self {
            Trouble::Unreadable(r) | Trouble::Segment(r) => r,
            Trouble::Stale => Reason::Stale,
        }
    }

    fn heading(self) -> &'static str {
        ""
    }
}

/// Prefixes a failure with the variant it belongs to.
/// The noun of a stream's item: the configured playlist itself, or a variant of it.
fn noun(label: &str) -> &'static str {
    if label.is_empty() {
        "stream"
    } else {
        "variant"
    }
}

/// A media playlist's state in words for the status page.
fn stream_item(label: &str, m: &MediaPlaylist, obs: &Observation) -> Item {
    let item = if obs.stale {
        Item::new(
            noun(label),
            label,
            Health::Failing,
            format!("stale: no new segment for {}", duration_words(obs.age)),
        )
        .detail(format!(
            "a live playlist must gain a segment within {} ({} × its target duration of {} s)",
            duration_words(obs.stale_after),
            obs.stale_after / m.target_duration.max(1) as f64,
            m.target_duration
        ))
    } else if m.end_list {
        Item::new(noun(label), label, Health::Ok, "ended (EXT-X-ENDLIST)")
            .detail("a finished or on-demand playlist: no new segments are expected")
    } else {
        Item::new(noun(label), label, Health::Ok, "live").detail(format!(
            "stale after {} without a new segment",
            duration_words(obs.stale_after)
        ))
    };
    let item = if obs.regressions > 0 {
        item.detail(format!(
            "media sequence went back {} times (the packager restarted)",
            obs.regressions
        ))
    } else {
        item
    };
    item.at("last new segment", Some(obs.added_at))
}

fn describe(label: &str, message: &str) -> String {
    if label.is_empty() {
        message.to_string()
    } else {
        format!("variant {label}: {message}")
    }
}

/// One `variant` label per variant, all distinct: its URI cut to [`MAX_LABEL`] characters, or
/// its index when that is empty or already taken, or the index with a `#n` suffix when a URI
/// took the index too (a label set given twice would make the scrape fail).
fn variant_labels<'a>(uris: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut taken = HashSet::new();
    uris.enumerate()
        .map(|(i, uri)| {
            let mut label = truncate(uri, MAX_LABEL);
            let mut n = 0;
            while label.is_empty() || taken.contains(&label) {
                label = if n == 0 {
                    i.to_string()
                } else {
                    format!("{i}#{n}")
                };
                n += 1;
            }
            taken.insert(label.clone());
            label
        })
        .collect()
}

/// Fuzzing entry (the `hls` target of `fuzz/`): a playlist body as the probe handles it. It is
/// parsed; a master playlist's variants are labelled (the labels must be distinct); the URIs
/// the probe would follow (variants, or a media playlist's newest segment) are resolved
/// against a URL and a file location, and a resolved one must stay in its scope; a media
/// playlist is observed as two runs would. Panics only on a bug.
#[doc(hidden)]
pub fn fuzz_playlist(body: &[u8]) {
    let Ok(playlist) = parse(body) else {
        return;
    };
    let roots = [
        Location::Url(Url::parse("http://127.0.0.1:8080/live/index.m3u8").expect("a valid URL")),
        Location::File(PathBuf::from("/srv/hls/live/index.m3u8")),
    ];
    for root in &roots {
        let scope = Scope::of(root, &["127.0.0.2".to_string()]);
        let uris: Vec<&str> = match &playlist {
            Playlist::MasterPlaylist(m) => {
                let uris: Vec<&str> = m
                    .variants
                    .iter()
                    .filter(|v| !v.is_i_frame)
                    .take(default_max_variants())
                    .map(|v| v.uri.as_str())
                    .collect();
                let labels = variant_labels(uris.iter().copied());
                let distinct: HashSet<&String> = labels.iter().collect();
                assert_eq!(
                    distinct.len(),
                    uris.len(),
                    "variant labels collide: {labels:?}"
                );
                uris
            }
            Playlist::MediaPlaylist(m) => m
                .segments
                .last()
                .map(|s| s.uri.as_str())
                .into_iter()
                .collect(),
        };
        for uri in uris {
            match root.resolve(uri, &scope) {
                Ok(Location::Url(u)) => {
                    assert!(
                        matches!(u.scheme(), "http" | "https"),
                        "{uri:?} left http(s): {u}"
                    );
                    let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
                    assert!(scope.hosts.contains(&host), "{uri:?} left the hosts: {u}");
                }
                Ok(Location::File(p)) => assert!(
                    scope.folder.as_ref().is_some_and(|f| p.starts_with(f)),
                    "{uri:?} left the folder: {}",
                    p.display()
                ),
                Err(_) => {}
            }
        }
    }
    if let Playlist::MediaPlaylist(m) = &playlist {
        static PROBE: std::sync::OnceLock<HlsProbe> = std::sync::OnceLock::new();
        let probe = PROBE.get_or_init(|| {
            let cfg: HlsConfig = serde_json::from_value(serde_json::json!({
                "url": "http://127.0.0.1:8080/live/index.m3u8"
            }))
            .expect("a valid configuration");
            let shared = Shared::default();
            HlsProbe::new(cfg, &shared).expect("a probe")
        });
        lock(&probe.streams).clear();
        let now = unix_now();
        let mut out = Samples::default();
        probe.observe("", m, None, now, &[], &mut out);
        let later = Modified {
            at: now,
            exact: true,
        };
        probe.observe("", m, Some(later), now + 1.0, &[], &mut out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.0,\nseg7.ts\n#EXTINF:2.0,\nseg8.ts\n";

    fn probe() -> HlsProbe {
        let cfg: HlsConfig =
            serde_json::from_value(serde_json::json!({"path": "/x/live.m3u8"})).expect("config");
        HlsProbe::new(cfg, &Shared::default()).expect("probe")
    }

    fn media(text: &str) -> MediaPlaylist {
        match parse(text.as_bytes()).expect("parses") {
            Playlist::MediaPlaylist(m) => m,
            Playlist::MasterPlaylist(_) => panic!("expected a media playlist"),
        }
    }

    fn value(out: &Samples, family: &Family) -> f64 {
        out.0
            .iter()
            .rev()
            .find(|s| s.family.name == family.name)
            .map(|s| s.value)
            .expect("sample present")
    }

    #[test]
    fn growth_staleness_and_regressions() {
        let p = probe();
        let mut out = Samples::default();
        let m = media(LIVE);
        // First observation: the mtime stands in for the time the newest segment was added.
        let o = p.observe("", &m, Some(header(1000.0)), 1002.0, &[], &mut out);
        assert!(!o.stale);
        assert_eq!(value(&out, &LAST_ADDED), 1000.0);
        assert_eq!(value(&out, &STALE_AFTER), 3.0);
        // Unchanged for longer than 1.5 × 2 s: stale.
        let o = p.observe("", &m, Some(header(1000.0)), 1003.5, &[], &mut out);
        assert!(o.stale);
        // A new segment: fresh, dated by the observation (a header dates only the first).
        let grown = media(&format!("{LIVE}#EXTINF:2.0,\nseg9.ts\n"));
        let o = p.observe("", &grown, Some(header(1003.0)), 1004.0, &[], &mut out);
        assert!(!o.stale);
        assert_eq!(value(&out, &LAST_ADDED), 1004.0);
        assert_eq!(value(&out, &REGRESSIONS), 0.0);
        // A restarted packager starts again at sequence 0: a regression, and growth.
        let restarted = media("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg0.ts\n");
        let o = p.observe("", &restarted, None, 1005.0, &[], &mut out);
        assert!(!o.stale);
        assert_eq!(value(&out, &REGRESSIONS), 1.0);
        assert_eq!(value(&out, &LAST_ADDED), 1005.0);
        // A local file's mtime dates each change exactly.
        let next = media(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg0.ts\n#EXTINF:2.0,\nseg1.ts\n",
        );
        let exact = Modified {
            at: 1005.5,
            exact: true,
        };
        p.observe("", &next, Some(exact), 1006.2, &[], &mut out);
        assert_eq!(value(&out, &LAST_ADDED), 1005.5);
    }

    fn header(at: f64) -> Modified {
        Modified { at, exact: false }
    }

    #[test]
    fn end_list_is_never_stale() {
        let p = probe();
        let mut out = Samples::default();
        let vod = media(&format!("{LIVE}#EXT-X-ENDLIST\n"));
        let o = p.observe("", &vod, Some(header(0.0)), 1_000_000.0, &[], &mut out);
        assert!(!o.stale);
        assert_eq!(value(&out, &END_LIST), 1.0);
    }

    #[test]
    fn malformed_playlists() {
        for text in [
            "",
            "hello\n",
            "<html>not found</html>",
            "#EXTM3U\n#EXTINF:2.0,\nseg.ts\n",
            "#EXTM3U\n#EXT-X-TARGETDURATION:abc\n#EXTINF:2.0,\nseg.ts\n",
        ] {
            let e = parse(text.as_bytes()).expect_err(text);
            assert_eq!(e.reason, Reason::Parse, "{text}: {e}");
        }
        assert!(parse(LIVE.as_bytes()).is_ok());
    }

    #[test]
    fn master_playlists_and_labels() {
        let text = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nlow/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2000000\nhigh/index.m3u8\n";
        match parse(text.as_bytes()).expect("parses") {
            Playlist::MasterPlaylist(m) => assert_eq!(m.variants.len(), 2),
            Playlist::MediaPlaylist(_) => panic!("expected a master playlist"),
        }
        let long = "x".repeat(100);
        let labels = variant_labels(["a.m3u8", "a.m3u8", "", long.as_str()].into_iter());
        assert_eq!(labels, vec!["a.m3u8", "1", "2", &"x".repeat(64)]);
        // A URI that is an index taken by a fallback (found by fuzzing: two variants labelled
        // "3" made the scrape fail).
        let labels = variant_labels(["3", "a", "a", "a", "3", "3#1"].into_iter());
        assert_eq!(labels, vec!["3", "a", "2", "3#1", "4", "5"]);
    }

    #[test]
    fn config_errors() {
        let cases: &[(&str, &str)] = &[
            ("{}", "probes[0].hls: set `url` or `path` of the playlist"),
            (
                "{url: 'http://127.0.0.1/a.m3u8', path: /a.m3u8}",
                "probes[0].hls: set either `url` or `path`, not both",
            ),
            (
                "{url: 'ftp://127.0.0.1/a.m3u8'}",
                "probes[0].hls.url: scheme must be http or https",
            ),
            (
                "{path: /a.m3u8, stale_multiplier: 0}",
                "probes[0].hls.stale_multiplier: must be between 0.5 and 100",
            ),
            (
                "{path: /a.m3u8, max_variants: 0}",
                "probes[0].hls.max_variants: must be between 1 and 64",
            ),
            (
                "{path: /a.m3u8, segment_method: POST}",
                "probes[0].hls.segment_method: unknown variant `POST`",
            ),
            ("{path: /a.m3u8, stale: 3}", "unknown field `stale`"),
        ];
        for (hls, expected) in cases {
            let yaml = format!("probes:\n  - name: s\n    hls: {hls}\n");
            let v = stackmedic_common::config::parse_yaml(&yaml).expect("yaml");
            let text = crate::config::from_value(&v).expect_err(hls).to_string();
            assert!(text.contains(expected), "{hls}: {text}");
        }
    }

    #[test]
    fn redirects_stay_within_the_origin_or_the_allowed_hosts() {
        let root = Url::parse("http://127.0.0.1:8080/cam/live.m3u8").expect("url");
        let scope = Scope::of(&Location::Url(root.clone()), &["cdn.example".to_string()]);
        let to = |u: &str| Url::parse(u).expect("url");
        for ok in [
            "http://127.0.0.1:8080/other/live.m3u8",
            "https://CDN.example/cam/live.m3u8",
            "http://cdn.example:9000/x.ts",
        ] {
            assert!(scope.allows_redirect(&root, &to(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "http://127.0.0.1:8081/cam/live.m3u8",
            "https://127.0.0.1:8080/cam/live.m3u8",
            "http://127.0.0.2:8080/cam/live.m3u8",
            "file:///etc/passwd",
        ] {
            let e = scope.allows_redirect(&root, &to(bad)).expect_err(bad);
            assert_eq!(e.reason, Reason::HttpStatus);
        }
        // A CDN may redirect within its own origin.
        let cdn = to("http://cdn.example:9000/a.ts");
        assert!(scope
            .allows_redirect(&cdn, &to("http://cdn.example:9000/b.ts"))
            .is_ok());
    }

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
