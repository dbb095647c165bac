//! What a probe reports of each thing it watches — a container, a stream, a manifest entry in
//! drift, a backup volume, a PLC — for the status page: its health, its state in words, why,
//! and since when.
//!
//! Metrics answer PromQL; an item answers the person on call. A probe family reports items
//! through [`RunContext::report`](super::RunContext::report) during its run; the runner keeps
//! those of the latest run beside its samples. A family that reports nothing still appears on
//! the page through its probe's own result, so a new family plugs in without any item, and
//! gains detail by reporting some.
//!
//! **Invariant:** what a run reports is bounded: at most [`MAX_ITEMS`] items are kept, the
//! worst first, and every text is cut to a fixed length.

use std::sync::Mutex;

use crate::support::{lock, truncate};

/// Most items kept of one run; the rest are only counted.
pub const MAX_ITEMS: usize = 200;
/// Longest item name kept, in characters.
const MAX_NAME: usize = 120;
/// Longest state kept, in characters.
const MAX_STATE: usize = 160;
/// Longest detail kept, in characters.
const MAX_DETAIL: usize = 400;

/// How a watched thing is doing. The order is the page's: worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    /// Down, broken or out of date: someone has to act.
    Failing,
    /// Working, but not as it should (paused, health check still starting, readable by
    /// others).
    Warning,
    /// Not known this run (its source did not answer).
    Unknown,
    /// As it should be.
    Ok,
}

impl Health {
    /// Every value, worst first.
    pub const ALL: &'static [Health] = &[
        Health::Failing,
        Health::Warning,
        Health::Unknown,
        Health::Ok,
    ];

    /// The word the page shows, and its CSS class.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Failing => "failing",
            Health::Warning => "warning",
            Health::Unknown => "unknown",
            Health::Ok => "ok",
        }
    }

    /// Whether someone should look at it.
    #[must_use]
    pub fn is_problem(self) -> bool {
        matches!(self, Health::Failing | Health::Warning)
    }
}

/// A point in time that belongs to an item's state, with what it is (`since`, `newest`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moment {
    /// What the time is, as the page says it before the time.
    pub label: &'static str,
    /// Unix time.
    pub at: f64,
}

/// One watched thing and how it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// What kind of thing it is, as a noun (`container`, `stream`, `volume`).
    pub what: &'static str,
    /// Its name (a container name, a variant, a manifest path); empty for the probe's target
    /// itself, which the page names by the probe.
    pub name: String,
    /// How it is.
    pub health: Health,
    /// Its state in words (`exited with code 3`, `stale: no new segment for 41 s`).
    pub state: String,
    /// Why, or what else on-call needs (the health check's last output, the error message).
    pub detail: String,
    /// When its state began, or another time that matters for it.
    pub moment: Option<Moment>,
}

impl Item {
    /// An item with its health and state; texts longer than the page's limits are cut.
    pub fn new(
        what: &'static str,
        name: impl Into<String>,
        health: Health,
        state: impl Into<String>,
    ) -> Self {
        Self {
            what,
            name: truncate(&name.into(), MAX_NAME),
            health,
            state: truncate(&state.into(), MAX_STATE),
            detail: String::new(),
            moment: None,
        }
    }

    /// With a detail; several calls join their texts with "; ".
    #[must_use]
    pub fn detail(mut self, detail: impl AsRef<str>) -> Self {
        let detail = detail.as_ref().trim();
        if detail.is_empty() {
            return self;
        }
        if !self.detail.is_empty() {
            self.detail.push_str("; ");
        }
        self.detail.push_str(detail);
        self.detail = truncate(&self.detail, MAX_DETAIL);
        self
    }

    /// With one more problem: the health becomes the worse of both, and the state names the
    /// problem (after the earlier ones, or instead of a fine state).
    #[must_use]
    pub fn problem(mut self, health: Health, state: impl AsRef<str>) -> Self {
        if self.health == Health::Ok {
            self.state = state.as_ref().to_string();
        } else {
            self.state = format!("{}; {}", self.state, state.as_ref());
        }
        self.state = truncate(&self.state, MAX_STATE);
        self.health = self.health.min(health);
        self
    }

    /// With a time that matters for its state; `None` and times before 1970 are left out.
    #[must_use]
    pub fn at(mut self, label: &'static str, at: Option<f64>) -> Self {
        self.moment = at
            .filter(|t| t.is_finite() && *t > 0.0)
            .map(|at| Moment { label, at });
        self
    }
}

/// A length of time in words, as precise as a person needs it: `1.5 s`, `41 s`, `3 min 20 s`,
/// `2 h 5 min`, `3 d 4 h`.
#[must_use]
pub fn duration_words(secs: f64) -> String {
    let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
    if secs < 10.0 {
        // Tenths matter below ten seconds (a 1.5 s threshold), but not for whole ones.
        return if (secs - secs.round()).abs() < 0.05 {
            format!("{secs:.0} s")
        } else {
            format!("{secs:.1} s")
        };
    }
    // Whole seconds from here on; the float is finite, non-negative and below 2^64 in practice.
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=599 if s.is_multiple_of(60) => format!("{} min", s / 60),
        60..=599 => format!("{} min {} s", s / 60, s % 60),
        600..=3599 => format!("{} min", s / 60),
        3600..=86_399 => with_rest(s / 3600, "h", s % 3600 / 60, "min"),
        _ => with_rest(s / 86_400, "d", s % 86_400 / 3600, "h"),
    }
}

/// `2 h 5 min`, or `2 h` when the smaller unit is zero.
fn with_rest(n: u64, unit: &str, rest: u64, rest_unit: &str) -> String {
    if rest == 0 {
        format!("{n} {unit}")
    } else {
        format!("{n} {unit} {rest} {rest_unit}")
    }
}

/// How many items of a run had each health, including those not kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Failing items.
    pub failing: usize,
    /// Items with a warning.
    pub warning: usize,
    /// Items in an unknown state.
    pub unknown: usize,
    /// Items that are fine.
    pub ok: usize,
}

impl Tally {
    /// Counts one item.
    pub fn add(&mut self, health: Health) {
        *self.slot(health) += 1;
    }

    /// The count of one health.
    #[must_use]
    pub fn get(&self, health: Health) -> usize {
        match health {
            Health::Failing => self.failing,
            Health::Warning => self.warning,
            Health::Unknown => self.unknown,
            Health::Ok => self.ok,
        }
    }

    /// All items counted.
    #[must_use]
    pub fn total(&self) -> usize {
        self.failing + self.warning + self.unknown + self.ok
    }

    /// The worst health counted, `None` when nothing was.
    #[must_use]
    pub fn worst(&self) -> Option<Health> {
        Health::ALL.iter().copied().find(|h| self.get(*h) > 0)
    }

    fn slot(&mut self, health: Health) -> &mut usize {
        match health {
            Health::Failing => &mut self.failing,
            Health::Warning => &mut self.warning,
            Health::Unknown => &mut self.unknown,
            Health::Ok => &mut self.ok,
        }
    }
}

/// The items of one run: the worst [`MAX_ITEMS`] of them, in the order reported within each
/// health, and the count of all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Items {
    /// The items kept, worst first.
    pub list: Vec<Item>,
    /// Every item reported, by health.
    pub tally: Tally,
}

impl Items {
    /// Items reported but not kept.
    #[must_use]
    pub fn omitted(&self) -> usize {
        self.tally.total().saturating_sub(self.list.len())
    }

    fn from_reported(mut list: Vec<Item>) -> Self {
        let mut tally = Tally::default();
        for item in &list {
            tally.add(item.health);
        }
        // A stable sort: within one health the family's own order (by name, by importance)
        // stays, and the cap never drops a failing item while a fine one is kept.
        list.sort_by_key(|i| i.health);
        list.truncate(MAX_ITEMS);
        Self { list, tally }
    }
}

/// Where a run's items are collected; shared by reference with the running probe.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    items: Mutex<Vec<Item>>,
}

impl Collector {
    pub(crate) fn push(&self, item: Item) {
        lock(&self.items).push(item);
    }

    pub(crate) fn take(&self) -> Items {
        Items::from_reported(std::mem::take(&mut *lock(&self.items)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_keeps_the_worst_and_counts_all() {
        let c = Collector::default();
        for i in 0..MAX_ITEMS + 50 {
            c.push(Item::new(
                "container",
                format!("ok-{i}"),
                Health::Ok,
                "running",
            ));
        }
        c.push(Item::new("container", "late", Health::Failing, "exited"));
        c.push(Item::new("container", "slow", Health::Warning, "starting"));
        let items = c.take();
        assert_eq!(items.list.len(), MAX_ITEMS);
        assert_eq!(items.list[0].name, "late");
        assert_eq!(items.list[1].name, "slow");
        assert_eq!(items.list[2].name, "ok-0");
        assert_eq!(items.tally.total(), MAX_ITEMS + 52);
        assert_eq!(items.omitted(), 52);
        assert_eq!(items.tally.worst(), Some(Health::Failing));
        assert!(c.take().list.is_empty(), "taken once");
    }

    #[test]
    fn durations_in_words() {
        assert_eq!(duration_words(1.5), "1.5 s");
        assert_eq!(duration_words(1.0), "1 s");
        assert_eq!(duration_words(-3.0), "0 s");
        assert_eq!(duration_words(f64::NAN), "0 s");
        assert_eq!(duration_words(41.2), "41 s");
        assert_eq!(duration_words(200.0), "3 min 20 s");
        assert_eq!(duration_words(120.0), "2 min");
        assert_eq!(duration_words(1500.0), "25 min");
        assert_eq!(duration_words(7500.0), "2 h 5 min");
        assert_eq!(duration_words(3.0 * 86_400.0 + 4.0 * 3600.0), "3 d 4 h");
        assert_eq!(duration_words(86_400.0 + 59.0), "1 d");
        assert_eq!(duration_words(7200.0), "2 h");
    }

    #[test]
    fn problems_add_up() {
        let fine = Item::new("stream", "", Health::Ok, "live");
        let one = fine.clone().problem(Health::Failing, "stale");
        assert_eq!((one.health, one.state.as_str()), (Health::Failing, "stale"));
        let two = one.problem(Health::Warning, "segment missing");
        assert_eq!(
            (two.health, two.state.as_str()),
            (Health::Failing, "stale; segment missing")
        );
        let warned = fine.problem(Health::Warning, "paused");
        assert_eq!(warned.health, Health::Warning);
    }

    #[test]
    fn texts_are_cut_and_details_joined() {
        let item = Item::new("entry", "x".repeat(1000), Health::Failing, "y".repeat(1000))
            .detail("first")
            .detail("  ")
            .detail("second")
            .at("since", Some(0.0));
        assert_eq!(item.name.chars().count(), MAX_NAME);
        assert_eq!(item.state.chars().count(), MAX_STATE);
        assert_eq!(item.detail, "first; second");
        assert_eq!(item.moment, None);
        let long = Item::new("entry", "a", Health::Ok, "b").detail("é".repeat(2000));
        assert_eq!(long.detail.chars().count(), MAX_DETAIL);
    }
}
