//! Firing alerts no rule matched, so a misnamed label is visible instead of silent: the
//! counter in [`crate::metrics`], a log line at info the first time an alert name is seen under
//! a configuration, and the page's line "unmatched in the last hour: …" from here.
//!
//! Kept in memory: after a restart the page's line starts empty.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Mutex;

/// How far back the page looks.
pub const WINDOW_SECONDS: f64 = 3600.0;

/// Most alert names remembered; the least recently seen is forgotten first.
const MAX_NAMES: usize = 200;

/// Unmatched alerts of the last hour, by alert name.
#[derive(Default)]
pub struct Unmatched {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Times seen within the window, oldest first, per alert name.
    seen: BTreeMap<String, VecDeque<f64>>,
    /// Names already logged under the configuration of `generation`.
    logged: HashSet<String>,
    generation: u64,
}

/// An alert name with how often it was unmatched in the window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Recent {
    /// The alert name.
    pub alertname: String,
    /// Firing alerts unmatched in the last hour.
    pub count: usize,
    /// When it was last seen.
    pub last_seen: f64,
}

/// Most times kept per name: enough to count a busy hour, bounded in a storm.
const MAX_TIMES: usize = 10_000;

impl Unmatched {
    /// Records an unmatched alert seen at `now` under configuration `generation`; returns
    /// whether this is the first time for that name under that configuration (to be logged).
    pub fn record(&self, alertname: &str, generation: u64, now: f64) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.generation != generation {
            g.generation = generation;
            g.logged.clear();
        }
        if !g.seen.contains_key(alertname) && g.seen.len() >= MAX_NAMES {
            let oldest = g
                .seen
                .iter()
                .min_by(|a, b| {
                    let last = |v: &VecDeque<f64>| v.back().copied().unwrap_or(0.0);
                    last(a.1).total_cmp(&last(b.1))
                })
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                g.seen.remove(&k);
            }
        }
        let times = g.seen.entry(alertname.to_string()).or_default();
        times.push_back(now);
        while times.len() > MAX_TIMES || times.front().is_some_and(|t| *t < now - WINDOW_SECONDS) {
            times.pop_front();
        }
        g.logged.insert(alertname.to_string())
    }

    /// Alert names unmatched within the last hour before `now`, most frequent first.
    #[must_use]
    pub fn recent(&self, now: f64) -> Vec<Recent> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.seen.retain(|_, times| {
            while times.front().is_some_and(|t| *t < now - WINDOW_SECONDS) {
                times.pop_front();
            }
            !times.is_empty()
        });
        let mut out: Vec<Recent> = g
            .seen
            .iter()
            .map(|(name, times)| Recent {
                alertname: name.clone(),
                count: times.len(),
                last_seen: times.back().copied().unwrap_or(now),
            })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then(a.alertname.cmp(&b.alertname)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_last_hour_and_logs_once_per_configuration() {
        let u = Unmatched::default();
        assert!(u.record("OwuiDwn", 1, 100.0));
        assert!(!u.record("OwuiDwn", 1, 200.0));
        assert!(u.record("Other", 1, 300.0));
        assert!(u.record("OwuiDwn", 2, 400.0), "a reload logs it again");
        let r = u.recent(500.0);
        assert_eq!(r[0].alertname, "OwuiDwn");
        assert_eq!(r[0].count, 3);
        assert_eq!(r[1].count, 1);
        let later = u.recent(WINDOW_SECONDS + 350.0);
        assert_eq!(later.len(), 1, "{later:?}");
        assert_eq!(
            (later[0].alertname.as_str(), later[0].count),
            ("OwuiDwn", 1)
        );
        assert!(u.recent(10_000.0).is_empty());
    }
}
