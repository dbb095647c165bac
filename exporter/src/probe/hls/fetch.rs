//! Fetching: a playlist read by URL (redirects followed only within the probe's scope) or
//! from a file, with when it was last modified and where it was finally found; the newest
//! segment fetched or looked up.

use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::Method;
use m3u8_rs::{MediaPlaylist, Playlist};
use url::Url;

use super::location::{Location, Scope};
use super::playlist::parse;
use super::SegmentMethod;
use crate::probe::fetch::scoped::{self, RedirectScope};
use crate::probe::fetch::Fetched;
use crate::probe::{ProbeError, Reason, RunContext};

/// A playlist as read: its bytes, when it was last modified (when known), and where it was
/// read from in the end (after redirects), which its relative URIs are resolved against.
pub(super) struct Document {
    pub(super) body: Bytes,
    pub(super) modified: Option<Modified>,
    pub(super) location: Location,
}

/// When a playlist was last written, at the latest.
#[derive(Debug, Clone, Copy)]
pub(super) struct Modified {
    /// Unix time.
    pub(super) at: f64,
    /// A local file's mtime, on this host's clock: it dates every change exactly. A
    /// `Last-Modified` header has whole seconds on another host's clock, so it only dates the
    /// first observation.
    pub(super) exact: bool,
}

/// A media playlist as read, with its modification time and final location.
pub(super) type Media = (MediaPlaylist, Option<Modified>, Location);

/// Reads playlists and segments within the probe's scope.
pub(super) struct Loader {
    pub(super) client: reqwest::Client,
    /// Where a playlist's URIs may lead.
    pub(super) scope: Scope,
    /// Where redirects may lead (a playlist fetched by URL).
    pub(super) redirects: Option<RedirectScope>,
    pub(super) max_playlist_bytes: u64,
    pub(super) max_segment_bytes: u64,
    pub(super) segment_method: SegmentMethod,
}

impl Loader {
    /// Reads a media playlist (a variant); a master playlist there is a problem.
    pub(super) async fn load_media(
        &self,
        loc: &Location,
        cx: &RunContext,
    ) -> Result<Media, ProbeError> {
        let doc = self.load(loc, cx).await?;
        match parse(&doc.body)? {
            Playlist::MediaPlaylist(m) => Ok((m, doc.modified, doc.location)),
            Playlist::MasterPlaylist(_) => Err(ProbeError::new(
                Reason::Parse,
                "a variant is itself a master playlist",
            )),
        }
    }

    /// Reads a playlist, bounded by `max_playlist_bytes`.
    pub(super) async fn load(
        &self,
        loc: &Location,
        cx: &RunContext,
    ) -> Result<Document, ProbeError> {
        match loc {
            Location::Url(url) => {
                let (resp, final_url) = self
                    .fetch(cx, Method::GET, url, self.max_playlist_bytes)
                    .await?;
                check_status(resp.status, &final_url)?;
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
                    location: Location::Url(final_url),
                })
            }
            Location::File(path) => {
                self.scope.contains(path).await?;
                let meta = tokio::fs::metadata(path)
                    .await
                    .map_err(|e| ProbeError::io("cannot read", path, &e))?;
                if meta.len() > self.max_playlist_bytes {
                    return Err(ProbeError::new(
                        Reason::BodyTooLarge,
                        format!(
                            "{} exceeds the limit of {} bytes",
                            path.display(),
                            self.max_playlist_bytes
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
                    location: loc.clone(),
                })
            }
        }
    }

    /// Requests `url` in full, following redirects only within the scope; returns the
    /// response and the URL that gave it.
    async fn fetch(
        &self,
        cx: &RunContext,
        method: Method,
        url: &Url,
        max_body: u64,
    ) -> Result<(Fetched, Url), ProbeError> {
        let Some(redirects) = &self.redirects else {
            return Err(ProbeError::new(
                Reason::Other,
                format!("{url}: a local playlist fetches no URL"),
            ));
        };
        let (resp, final_url) = scoped::open(
            cx,
            &self.client,
            &method,
            url,
            &http::HeaderMap::new(),
            max_body,
            redirects,
        )
        .await?;
        Ok((resp.read_all().await?, final_url))
    }

    /// Fetches (or, for a file, looks up) the newest segment, resolved against the media
    /// playlist's final location.
    pub(super) async fn check_segment(
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
                let method = match self.segment_method {
                    SegmentMethod::Head => Method::HEAD,
                    SegmentMethod::Get => Method::GET,
                };
                let (resp, final_url) = self.fetch(cx, method, url, self.max_segment_bytes).await?;
                check_status(resp.status, &final_url)
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
