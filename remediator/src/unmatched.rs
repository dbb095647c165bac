//! Firing alerts no rule matched, so a misnamed label is visible instead of silent: the
//! counter in [`crate::metrics`], a log line at info the first time an alert name is seen under
//! a configuration, and the page's line "unmatched in the last hour: …" from here.
//!
//! Kept in memory, bounded by construction whatever senders send: at most [`MAX_NAMES`] alert
//! names and [`MAX_BYTES`] bytes (the least recently seen name is forgotten first), counts kept
//! per minute, and at most [`LOG_LINES_PER_MINUTE`] log lines a minute. What is forgotten or
//! not logged is counted ([`Unmatched::dropped`], exported as
//! `stackmedic_remediator_unmatched_dropped_total`). After a restart the page's line starts
//! empty.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How far back the page looks.
pub const WINDOW_SECONDS: f64 = 3600.0;

/// Most alert names remembered; the least recently seen is forgotten first.
pub const MAX_NAMES: usize = 200;

/// Most bytes the remembered names and their counts take, as [`entry_bytes`] reckons them.
pub const MAX_BYTES: usize = 256 * 1024;

/// Most "no rule matches" log lines a minute; the further ones are counted, and said in one
/// line when the next minute's first line is logged.
pub const LOG_LINES_PER_MINUTE: u64 = 10;

/// Counts are kept per this many seconds.
const BUCKET_SECONDS: f64 = 60.0;

/// Buckets a name keeps: one window's worth.
const MAX_BUCKETS: usize = (WINDOW_SECONDS / BUCKET_SECONDS) as usize + 1;

/// Bytes an entry takes besides its name: the map's slot, the entry and a full set of buckets.
const ENTRY_OVERHEAD: usize = 128 + MAX_BUCKETS * std::mem::size_of::<(i64, u32)>();

/// Unmatched alerts of the last hour, by alert name.
#[derive(Default)]
pub struct Unmatched {
    inner: Mutex<Inner>,
    dropped_names: AtomicU64,
    dropped_log_lines: AtomicU64,
}

#[derive(Default)]
struct Inner {
    seen: HashMap<String, Entry>,
    /// Bytes of `seen`, as [`entry_bytes`] reckons them.
    bytes: usize,
    /// The minute of the log lines counted in `logged_this_minute`.
    log_minute: i64,
    logged_this_minute: u64,
    /// Lines not logged since the last line that was.
    not_logged: u64,
}

struct Entry {
    /// Per minute (epoch seconds / 60), oldest first: how often it was unmatched.
    buckets: VecDeque<(i64, u32)>,
    last_seen: f64,
    /// The configuration generation it was last logged under, plus one (0: never).
    logged_under: u64,
}

/// What [`Unmatched`] forgot or did not log, since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dropped {
    /// Alert names forgotten to stay within [`MAX_NAMES`] and [`MAX_BYTES`].
    pub names: u64,
    /// "No rule matches" log lines not written, beyond [`LOG_LINES_PER_MINUTE`].
    pub log_lines: u64,
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

/// The bytes an entry for `name` is reckoned to take.
fn entry_bytes(name: &str) -> usize {
    name.len() + ENTRY_OVERHEAD
}

fn bucket(t: f64) -> i64 {
    (t / BUCKET_SECONDS).floor() as i64
}

impl Entry {
    /// Drops the buckets that ended before the window.
    fn expire(&mut self, now: f64) {
        while self
            .buckets
            .front()
            .is_some_and(|(b, _)| ((*b + 1) as f64) * BUCKET_SECONDS <= now - WINDOW_SECONDS)
        {
            self.buckets.pop_front();
        }
    }

    fn count(&self) -> usize {
        self.buckets.iter().map(|(_, n)| *n as usize).sum()
    }
}

impl Unmatched {
    /// Records an unmatched alert seen at `now` under configuration `generation`; returns
    /// whether to log it: the first time for that name under that configuration, within
    /// [`LOG_LINES_PER_MINUTE`].
    pub fn record(&self, alertname: &str, generation: u64, now: f64) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let name = crate::limits::value(alertname);
        if !g.seen.contains_key(name.as_str()) {
            let needed = entry_bytes(&name);
            while !g.seen.is_empty() && (g.seen.len() >= MAX_NAMES || g.bytes + needed > MAX_BYTES)
            {
                let oldest = g
                    .seen
                    .iter()
                    .min_by(|a, b| a.1.last_seen.total_cmp(&b.1.last_seen))
                    .map(|(k, _)| k.clone());
                let Some(k) = oldest else { break };
                g.seen.remove(&k);
                g.bytes -= entry_bytes(&k);
                self.dropped_names.fetch_add(1, Ordering::Relaxed);
            }
            g.bytes += needed;
            g.seen.insert(
                name.clone(),
                Entry {
                    buckets: VecDeque::new(),
                    last_seen: now,
                    logged_under: 0,
                },
            );
        }
        let Some(entry) = g.seen.get_mut(name.as_str()) else {
            return false;
        };
        entry.last_seen = entry.last_seen.max(now);
        let b = bucket(now);
        match entry.buckets.back_mut() {
            Some((last, n)) if *last == b => *n = n.saturating_add(1),
            _ => entry.buckets.push_back((b, 1)),
        }
        entry.expire(now);
        while entry.buckets.len() > MAX_BUCKETS {
            entry.buckets.pop_front();
        }
        let first_time = entry.logged_under != generation + 1;
        if !first_time {
            return false;
        }
        entry.logged_under = generation + 1;
        let minute = bucket(now);
        if g.log_minute != minute {
            g.log_minute = minute;
            g.logged_this_minute = 0;
        }
        if g.logged_this_minute >= LOG_LINES_PER_MINUTE {
            g.not_logged += 1;
            self.dropped_log_lines.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        g.logged_this_minute += 1;
        if g.not_logged > 0 {
            tracing::info!(
                alert_names = g.not_logged,
                "further alert names no rule matches were not logged (at most {LOG_LINES_PER_MINUTE} a minute); they are counted in stackmedic_remediator_unmatched_alerts_total and shown on the page"
            );
            g.not_logged = 0;
        }
        true
    }

    /// Alert names unmatched within the last hour before `now`, most frequent first.
    #[must_use]
    pub fn recent(&self, now: f64) -> Vec<Recent> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut freed = 0;
        g.seen.retain(|name, e| {
            e.expire(now);
            let keep = !e.buckets.is_empty();
            if !keep {
                freed += entry_bytes(name);
            }
            keep
        });
        g.bytes -= freed;
        let mut out: Vec<Recent> = g
            .seen
            .iter()
            .map(|(name, e)| Recent {
                alertname: name.clone(),
                count: e.count(),
                last_seen: e.last_seen,
            })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then(a.alertname.cmp(&b.alertname)));
        out
    }

    /// What was forgotten or not logged since start.
    #[must_use]
    pub fn dropped(&self) -> Dropped {
        Dropped {
            names: self.dropped_names.load(Ordering::Relaxed),
            log_lines: self.dropped_log_lines.load(Ordering::Relaxed),
        }
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
        // Counted per minute: what was seen in a minute that ended an hour ago is gone.
        let later = u.recent(WINDOW_SECONDS + 400.0);
        assert_eq!(later.len(), 1, "{later:?}");
        assert_eq!(
            (later[0].alertname.as_str(), later[0].count),
            ("OwuiDwn", 1)
        );
        assert!(u.recent(10_000.0).is_empty());
        assert_eq!(u.dropped(), Dropped::default());
    }

    #[test]
    fn bounded_by_count_and_bytes_and_the_log_by_rate() {
        let u = Unmatched::default();
        let mut logged = 0u64;
        for i in 0..10_000 {
            // Ten names a second: 100 a minute.
            if u.record(&format!("Name{i}"), 1, 1_000.0 + f64::from(i) / 10.0) {
                logged += 1;
            }
        }
        let minutes = (10_000.0f64 / 10.0 / 60.0).ceil() as u64 + 1;
        assert!(logged <= LOG_LINES_PER_MINUTE * minutes, "{logged} lines");
        let d = u.dropped();
        assert_eq!(d.log_lines, 10_000 - logged);
        let recent = u.recent(2_000.0);
        assert_eq!(recent.len(), MAX_NAMES);
        assert_eq!(d.names, 10_000 - MAX_NAMES as u64);
        // The names kept are the latest.
        assert!(recent.iter().any(|r| r.alertname == "Name9999"));
        assert!(!recent.iter().any(|r| r.alertname == "Name0"));

        // Long names hit the byte bound first (names are cut to the stored value size).
        let u = Unmatched::default();
        let long = "x".repeat(5_000);
        for i in 0..1_000 {
            u.record(&format!("{i:04}{long}"), 1, 1_000.0);
        }
        let inner = u.inner.lock().unwrap();
        assert!(inner.bytes <= MAX_BYTES, "{} bytes", inner.bytes);
        assert!(inner.seen.len() < MAX_NAMES, "{} names", inner.seen.len());
        let reckoned: usize = inner.seen.keys().map(|k| entry_bytes(k)).sum();
        assert_eq!(inner.bytes, reckoned);
        assert_eq!(
            u.dropped().names,
            1_000 - inner.seen.len() as u64,
            "every forgotten name is counted"
        );
    }
}
