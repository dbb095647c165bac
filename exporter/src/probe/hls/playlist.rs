//! Reading a playlist: parsing it (RFC 8216), and the `variant` label of each variant of a
//! master playlist.

use std::collections::HashSet;

use m3u8_rs::Playlist;

use crate::probe::{ProbeError, Reason};
use crate::support::truncate;

/// Longest `variant` label value; longer variant URIs are cut.
pub(super) const MAX_LABEL: usize = 64;

/// Parses a playlist; a media playlist must state its target duration (RFC 8216 §4.3.3.1).
pub(super) fn parse(body: &[u8]) -> Result<Playlist, ProbeError> {
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

/// One `variant` label per variant, all distinct: its URI cut to [`MAX_LABEL`] characters, or
/// its index when that is empty or already taken, or the index with a `#n` suffix when a URI
/// took the index too (a label set given twice would make the scrape fail).
pub(super) fn variant_labels<'a>(uris: impl Iterator<Item = &'a str>) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.0,\nseg7.ts\n#EXTINF:2.0,\nseg8.ts\n";

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
}
