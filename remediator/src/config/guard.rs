//! When not to act: the blast-radius guard's settings (`global.blast_radius`, overridden per
//! target), each target's subjects (what the guard counts), and the subjects' dependencies
//! (`docker.depends_on`, a compose file's `depends_on`), with their cycles reported as errors.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use stackmedic_common::config::{self as common, duration, ConfigErrors};

use super::{Rule, Target};

/// The blast-radius guard: a new action is held when, counting its own subject, more than
/// `fraction` of its target's subjects, and at least `min_subjects`, are failing.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlastRadius {
    /// On by default.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Share of the target's subjects failing beyond which actions are held.
    #[serde(default = "default_fraction")]
    pub fraction: f64,
    /// Fewest failing subjects that hold actions.
    #[serde(default = "default_min_subjects")]
    pub min_subjects: u32,
    /// How long a new action of a guarded target (or of a subject with dependencies) waits
    /// before it is decided, so alerts of one mass outage arriving over a few seconds are seen
    /// together.
    #[serde(default = "default_settle", with = "duration")]
    pub settle: Duration,
}

fn default_enabled() -> bool {
    true
}
fn default_fraction() -> f64 {
    0.5
}
fn default_min_subjects() -> u32 {
    3
}
fn default_settle() -> Duration {
    Duration::from_secs(5)
}

impl Default for BlastRadius {
    fn default() -> Self {
        BlastRadius {
            enabled: default_enabled(),
            fraction: default_fraction(),
            min_subjects: default_min_subjects(),
            settle: default_settle(),
        }
    }
}

/// A target's `blast_radius`: any key it sets overrides the global one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlastRadiusFile {
    enabled: Option<bool>,
    fraction: Option<f64>,
    min_subjects: Option<u32>,
    #[serde(default, with = "duration::option")]
    settle: Option<Duration>,
}

impl BlastRadius {
    /// Checks the values at `path`.
    pub fn check(&self, path: &str, errs: &mut ConfigErrors) {
        if !(self.fraction > 0.0 && self.fraction < 1.0) {
            errs.push(
                common::join(path, "fraction"),
                format!("{} is not between 0 and 1 (exclusive)", self.fraction),
            );
        }
        if self.min_subjects == 0 {
            errs.push(common::join(path, "min_subjects"), "must be at least 1");
        }
    }

    /// These settings with a target's overrides.
    #[must_use]
    pub fn with(&self, file: &BlastRadiusFile) -> BlastRadius {
        BlastRadius {
            enabled: file.enabled.unwrap_or(self.enabled),
            fraction: file.fraction.unwrap_or(self.fraction),
            min_subjects: file.min_subjects.unwrap_or(self.min_subjects),
            settle: file.settle.unwrap_or(self.settle),
        }
    }

    /// Whether the guard can hold an action of a target with `subjects` subjects.
    #[must_use]
    pub fn can_hold(&self, subjects: usize) -> bool {
        self.enabled && subjects >= self.min_subjects as usize
    }

    /// Whether `failing` of `of` subjects hold actions.
    #[must_use]
    pub fn holds(&self, failing: usize, of: usize) -> bool {
        self.can_hold(of)
            && failing >= self.min_subjects as usize
            && failing as f64 > self.fraction * of as f64
    }
}

/// Every target's subjects, as far as its allow-lists bound them: what the rules acting on it
/// can select. A target a rule acts on without an allow-list (opt-in by Docker label) has no
/// bounded set, and only an unreachable engine holds its actions.
#[must_use]
pub fn subjects(rules: &[std::sync::Arc<Rule>]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut unbounded = BTreeSet::new();
    for rule in rules {
        for (target, action) in &rule.actions {
            match action.selections() {
                Some(selections) => {
                    let set = out.entry(target.clone()).or_default();
                    for s in selections {
                        set.insert(action.subject(target, &s));
                    }
                }
                None => {
                    unbounded.insert(target.clone());
                }
            }
        }
    }
    for t in unbounded {
        out.remove(&t);
    }
    out
}

/// The subjects' dependencies from every target (`docker.depends_on`, compose files'
/// `depends_on`), merged; a cycle is reported at `targets` with its path.
pub fn dependencies(
    targets: &BTreeMap<String, std::sync::Arc<Target>>,
    errs: &mut ConfigErrors,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for t in targets.values() {
        for (from, to) in t.sections.dependencies() {
            graph.entry(from).or_default().insert(to);
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        errs.push(
            "targets",
            format!("dependencies form a cycle: {}", cycle.join(" → ")),
        );
    }
    graph
}

/// A cycle of `graph` as the subjects along it (the first repeated at the end), if any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_holds_beyond_its_fraction_and_minimum() {
        let g = BlastRadius::default();
        assert!(
            !g.can_hold(2),
            "two subjects can never reach the minimum of 3"
        );
        assert!(!g.holds(3, 6), "3 of 6 is half, not more");
        assert!(g.holds(4, 6));
        assert!(g.holds(5, 6));
        assert!(!g.holds(2, 3), "2 of 3 is more than half, but fewer than 3");
        assert!(g.holds(3, 3));
        let off = BlastRadius {
            enabled: false,
            ..g
        };
        assert!(!off.holds(6, 6));
    }

    #[test]
    fn cycles_are_found_with_their_path() {
        let g = |edges: &[(&str, &str)]| {
            let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (a, b) in edges {
                m.entry((*a).into()).or_default().insert((*b).into());
            }
            m
        };
        assert_eq!(find_cycle(&g(&[("app", "db"), ("web", "app")])), None);
        assert_eq!(
            find_cycle(&g(&[("app", "db"), ("db", "cache"), ("cache", "app")])),
            Some(vec![
                "app".to_string(),
                "db".into(),
                "cache".into(),
                "app".into()
            ])
        );
        assert_eq!(
            find_cycle(&g(&[("a", "a")])),
            Some(vec!["a".to_string(), "a".into()])
        );
    }
}
