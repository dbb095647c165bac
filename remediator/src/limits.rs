//! How much of an alert the remediator keeps. Matching and selection see an alert as it came;
//! what is stored, logged, re-posted in an escalation and shown on the page and in the JSON is
//! cut to the sizes here, so a sender cannot make the database, the page or the memory of the
//! jobs in flight grow with the size of its labels. `docs/remediator.md` documents the sizes;
//! the page and `GET /api/actions` state them.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Longest label value, annotation value, alert name or reason kept, in bytes; a longer one is
/// cut at a character boundary and marked with [`cut`]'s suffix.
pub const VALUE_BYTES: usize = 1024;

/// Longest label or annotation name kept, in bytes.
pub const NAME_BYTES: usize = 128;

/// Most bytes of names and values kept of one alert's labels, and of its annotations; entries
/// beyond (in name order, `alertname` always first) are dropped.
pub const MAP_BYTES: usize = 8 * 1024;

/// Longest detail of an audit row about a job (what an action did and saw, or in a dry run
/// would do), in bytes; a longer one is cut like a value. Larger than [`VALUE_BYTES`] so that a
/// cleanup's listing of every file it removed fits whole (its own budget is below this); the
/// incident and an escalation keep only the first [`VALUE_BYTES`] of it.
pub const DETAIL_BYTES: usize = 40 * 1024;

/// Longest fingerprint or start time kept as it came; a longer one is replaced by a digest of
/// it, so two long values stay apart.
pub const IDENTITY_BYTES: usize = 64;

/// `s` itself when it has at most `max` bytes, else its first bytes up to a character boundary
/// and `…(+N bytes)`, N being the bytes cut.
#[must_use]
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…(+{} bytes)", &s[..end], s.len() - end)
}

/// A value as kept: [`cut`] to [`VALUE_BYTES`].
#[must_use]
pub fn value(s: &str) -> String {
    cut(s, VALUE_BYTES)
}

/// An audit row's detail as kept: [`cut`] to [`DETAIL_BYTES`].
#[must_use]
pub fn detail(s: &str) -> String {
    cut(s, DETAIL_BYTES)
}

/// A fingerprint or start time as kept: itself up to [`IDENTITY_BYTES`], else `sha256:` and
/// the first 16 bytes of its SHA-256 in hex.
#[must_use]
pub fn identity(s: &str) -> String {
    if s.len() <= IDENTITY_BYTES {
        return s.to_owned();
    }
    let digest = Sha256::digest(s.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Labels or annotations as kept: names cut to [`NAME_BYTES`], values to [`VALUE_BYTES`], and
/// at most [`MAP_BYTES`] in all; `alertname` is kept first.
#[must_use]
pub fn map(m: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut used = 0;
    let first = m.get_key_value("alertname");
    for (k, v) in first
        .into_iter()
        .chain(m.iter().filter(|(k, _)| *k != "alertname"))
    {
        let name = cut(k, NAME_BYTES);
        let value = value(v);
        let size = name.len() + value.len();
        if used + size > MAP_BYTES {
            // A smaller later entry may still fit; the order stays deterministic.
            continue;
        }
        used += size;
        out.insert(name, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_short_text_and_marks_what_it_cuts() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcdef", 3), "abc…(+3 bytes)");
        // "é" is two bytes: the cut never splits a character.
        assert_eq!(cut("aé", 2), "a…(+2 bytes)");
        let long = "x".repeat(1 << 20);
        let kept = value(&long);
        assert!(kept.len() < VALUE_BYTES + 32, "{}", kept.len());
        assert!(kept.ends_with(&format!("…(+{} bytes)", (1 << 20) - VALUE_BYTES)));
    }

    #[test]
    fn identity_digests_only_long_values_and_keeps_them_apart() {
        assert_eq!(identity("4f2a9c01d3b5e6f7"), "4f2a9c01d3b5e6f7");
        let a = identity(&"a".repeat(100));
        let b = identity(&format!("{}b", "a".repeat(99)));
        assert!(a.starts_with("sha256:") && a.len() == 39, "{a}");
        assert_ne!(a, b);
        assert_eq!(a, identity(&"a".repeat(100)));
    }

    #[test]
    fn map_bounds_names_values_and_total_and_keeps_alertname() {
        let mut m = BTreeMap::new();
        m.insert("alertname".to_owned(), "Z".repeat(5000));
        m.insert("a".repeat(500), "v".to_owned());
        for i in 0..100 {
            m.insert(format!("l{i:03}"), "w".repeat(2000));
        }
        let kept = map(&m);
        assert!(kept["alertname"].starts_with("ZZZ") && kept["alertname"].len() < 1100);
        assert!(kept.contains_key(&cut(&"a".repeat(500), NAME_BYTES)));
        let total: usize = kept.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(total <= MAP_BYTES, "{total}");
        assert!(kept.len() >= 7, "{}", kept.len());
        let small: BTreeMap<String, String> = [("alertname".to_owned(), "A".to_owned())].into();
        assert_eq!(map(&small), small);
    }
}
