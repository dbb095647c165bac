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

//!
//! The parts: `location` (where a playlist's URIs may lead), `fetch` (reading playlists and
//! segments, redirects only within the scope, relative URIs resolved against the final URL),
//! `playlist` (parsing and variant labels) and `freshness` (what is remembered between runs,
//! staleness, regressions); this module runs them and reports.

mod fetch;
mod freshness;
mod location;
mod playlist;

use std::collections::HashSet;
use std::path::PathBuf;

use m3u8_rs::Playlist;
use serde::Deserialize;
use stackmedic_common::config::join;
use stackmedic_common::reload::unix_now;
use stackmedic_common::ConfigErrors;
use url::Url;

use self::fetch::{Loader, Media, Modified};
use self::freshness::{describe, noun, stream_item, Freshness};
use self::location::{Location, Scope};
use self::playlist::{parse, variant_labels};
use super::fetch::scoped::RedirectScope;
use super::fetch::{self as http_fetch, TlsOptions};
use super::{Health, Item, ProbeError, ProblemKind, Problems, Reason, RunContext, Shared};
use crate::metrics::{Family, Samples};

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
    http_fetch::DEFAULT_MAX_BODY
}
fn default_max_segment() -> u64 {
    64 << 20
}

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
            (Some(u), None) => http_fetch::validate_url(u, &join(path, "url"), errs),
            (None, Some(p)) => {
                if p.as_os_str().is_empty() {
                    errs.push(join(path, "path"), "must not be empty");
                }
            }
            (Some(_), Some(_)) => errs.push(path, "set either `url` or `path`, not both"),
            (None, None) => {
                if !errs.has_any(&[&join(path, "url"), &join(path, "path")]) {
                    errs.push(path, "set `url` or `path` of the playlist");
                }
            }
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
        http_fetch::scoped::validate_hosts(&self.allowed_hosts, &join(path, "allowed_hosts"), errs);
        if !self.allowed_hosts.is_empty() && self.path.is_some() && !errs.has(&join(path, "url")) {
            errs.push(
                join(path, "allowed_hosts"),
                "only applies to a playlist fetched by `url`",
            );
        }
    }
}

/// One media playlist of a run: its `variant` label and what was read.
type Stream = (String, Result<Media, ProbeError>);

/// An `hls` probe.
pub struct HlsProbe {
    cfg: HlsConfig,
    root: Location,
    /// Reads playlists and segments within the probe's scope.
    loader: Loader,
    /// Per media playlist, what was seen of it.
    freshness: Freshness,
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
        let redirects = match &root {
            Location::Url(u) => Some(RedirectScope::new(u, &cfg.allowed_hosts, "the playlist's")),
            Location::File(_) => None,
        };
        let loader = Loader {
            client,
            scope: Scope::of(&root, &cfg.allowed_hosts),
            redirects,
            max_playlist_bytes: cfg.max_playlist_bytes,
            max_segment_bytes: cfg.max_segment_bytes,
            segment_method: cfg.segment_method,
        };
        Ok(Self {
            freshness: Freshness::new(cfg.stale_multiplier),
            cfg,
            root,
            loader,
        })
    }

    /// Reads the playlist (and the variants of a master playlist) once.
    ///
    /// # Errors
    /// `parse` for a malformed playlist, `stale` for a live stream without new segments, the
    /// transport's reason (`connect`, `not_found`, `http_status`, `timeout`, …) when a playlist
    /// or the newest segment cannot be read.
    pub async fn run(&self, cx: &RunContext, out: &mut Samples) -> Result<(), ProbeError> {
        let doc = match self.loader.load(&self.root, cx).await {
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
                vec![(String::new(), Ok((m, doc.modified, doc.location)))]
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
                // Variant URIs are relative to where the master playlist was found in the end,
                // after redirects.
                let base = &doc.location;
                let fetches = variants.iter().take(self.cfg.max_variants).zip(labels).map(
                    |(v, label)| async move {
                        let result = match base.resolve(&v.uri, &self.loader.scope) {
                            Ok(loc) => self.loader.load_media(&loc, cx).await,
                            Err(e) => Err(ProbeError::new(Reason::Parse, e)),
                        };
                        (label, result)
                    },
                );
                futures_util::future::join_all(fetches).await
            }
        };

        let now = unix_now();
        let mut problems = Problems::default();
        let mut seen = HashSet::new();
        for (label, result) in &streams {
            let labels: Vec<(&'static str, &str)> = if label.is_empty() {
                Vec::new()
            } else {
                vec![("variant", label.as_str())]
            };
            let (media, modified, loc) = match result {
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
            let obs = self
                .freshness
                .observe(label, media, *modified, now, &labels, out);
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
                    let r = self.loader.check_segment(loc, &seg.uri, cx).await;
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
        self.freshness.retain(&seen);
        problems.into_result()
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
        probe.freshness.clear();
        let now = unix_now();
        let mut out = Samples::default();
        probe.freshness.observe("", m, None, now, &[], &mut out);
        let later = Modified {
            at: now,
            exact: true,
        };
        probe
            .freshness
            .observe("", m, Some(later), now + 1.0, &[], &mut out);
    }
}

#[cfg(test)]
mod tests {
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
}
