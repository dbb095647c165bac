//! Freshness (RFC 8216 §6.2.1 and §6.2.2): what the probe remembers of each media playlist
//! between runs, when it last gained a segment, whether it is stale, and sequence regressions;
//! its samples and its state in words for the status page.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use m3u8_rs::MediaPlaylist;

use super::fetch::Modified;
use super::{
    END_LIST, LAST_ADDED, MEDIA_SEQUENCE, REGRESSIONS, SEGMENTS, STALE, STALE_AFTER,
    TARGET_DURATION,
};
use crate::metrics::Samples;
use crate::probe::report::duration_words;
use crate::probe::{Health, Item};
use crate::support::lock;

/// What the probe remembers of one media playlist between runs.
#[derive(Debug, Clone)]
struct StreamState {
    media_sequence: u64,
    newest: Option<(u64, String)>,
    added_at: f64,
    regressions: u64,
}

/// The result of one media playlist in one run.
pub(super) struct Observation {
    pub(super) stale: bool,
    pub(super) stale_after: f64,
    pub(super) age: f64,
    pub(super) added_at: f64,
    pub(super) regressions: u64,
}

/// The remembered state of every media playlist of a probe, keyed by its `variant` label
/// (empty for a media playlist given directly).
pub(super) struct Freshness {
    /// Stale after this many target durations without a new segment.
    multiplier: f64,
    streams: Mutex<HashMap<String, StreamState>>,
}

impl Freshness {
    pub(super) fn new(multiplier: f64) -> Self {
        Self {
            multiplier,
            streams: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets the playlists not in `seen` (a master playlist no longer lists them), so the
    /// state stays bounded.
    pub(super) fn retain(&self, seen: &HashSet<String>) {
        lock(&self.streams).retain(|k, _| seen.contains(k));
    }

    /// Forgets everything (for the fuzzing entry, which observes unrelated playlists).
    pub(super) fn clear(&self) {
        lock(&self.streams).clear();
    }

    /// Updates the remembered state of one media playlist and writes its samples.
    pub(super) fn observe(
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
        let stale_after = self.multiplier * m.target_duration as f64;
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
}

/// The noun of a stream's item: the configured playlist itself, or a variant of it.
pub(super) fn noun(label: &str) -> &'static str {
    if label.is_empty() {
        "stream"
    } else {
        "variant"
    }
}

/// A media playlist's state in words for the status page.
pub(super) fn stream_item(label: &str, m: &MediaPlaylist, obs: &Observation) -> Item {
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

/// Prefixes a failure with the variant it belongs to.
pub(super) fn describe(label: &str, message: &str) -> String {
    if label.is_empty() {
        message.to_string()
    } else {
        format!("variant {label}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Family;

    const LIVE: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.0,\nseg7.ts\n#EXTINF:2.0,\nseg8.ts\n";

    fn probe() -> Freshness {
        Freshness::new(1.5)
    }

    fn media(text: &str) -> MediaPlaylist {
        match super::super::playlist::parse(text.as_bytes()).expect("parses") {
            m3u8_rs::Playlist::MediaPlaylist(m) => m,
            m3u8_rs::Playlist::MasterPlaylist(_) => panic!("expected a media playlist"),
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

    fn header(at: f64) -> Modified {
        Modified { at, exact: false }
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

    #[test]
    fn end_list_is_never_stale() {
        let p = probe();
        let mut out = Samples::default();
        let vod = media(&format!("{LIVE}#EXT-X-ENDLIST\n"));
        let o = p.observe("", &vod, Some(header(0.0)), 1_000_000.0, &[], &mut out);
        assert!(!o.stale);
        assert_eq!(value(&out, &END_LIST), 1.0);
    }
}
