//! What is known about the labels an alert can carry: per label, the values it can take (where
//! that is knowable from the rule file and the exporter's configuration), and whether further
//! labels may be present. Matchers are evaluated against this knowledge in three values: they
//! match for sure, never, or maybe.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::matcher::{Matcher, Op};

/// Three-valued truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tri {
    /// For every value the label can take.
    Yes,
    /// For none.
    No,
    /// For some, or unknowable.
    Maybe,
}

impl Tri {
    /// Both must hold.
    #[must_use]
    pub fn and(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::No, _) | (_, Tri::No) => Tri::No,
            (Tri::Yes, Tri::Yes) => Tri::Yes,
            _ => Tri::Maybe,
        }
    }

    /// Whether it can hold.
    #[must_use]
    pub fn possible(self) -> bool {
        self != Tri::No
    }

    fn of(all: bool, any: bool) -> Tri {
        match (all, any) {
            (true, _) => Tri::Yes,
            (false, false) => Tri::No,
            (false, true) => Tri::Maybe,
        }
    }
}

/// The values a label present on an alert can take.
#[derive(Debug, Clone)]
pub enum Values {
    /// Unknown.
    Any,
    /// Exactly one of these.
    OneOf(BTreeSet<String>),
    /// A value the regular expression matches, or one of `also`.
    Matching {
        /// The expression, as the source anchors it.
        regex: regex::Regex,
        /// Values allowed besides.
        also: BTreeSet<String>,
    },
}

/// The values of a label, with where that knowledge comes from (for messages).
#[derive(Debug, Clone)]
pub struct Domain {
    /// The values.
    pub values: Values,
    /// Where they come from, such as `the names of the hls probes of examples/exporter.yml`.
    pub source: String,
}

impl Domain {
    /// Any value.
    #[must_use]
    pub fn any() -> Domain {
        Domain {
            values: Values::Any,
            source: String::new(),
        }
    }

    /// Exactly these values.
    #[must_use]
    pub fn one_of(values: impl IntoIterator<Item = String>, source: impl Into<String>) -> Domain {
        Domain {
            values: Values::OneOf(values.into_iter().collect()),
            source: source.into(),
        }
    }

    /// Whether the value is known.
    #[must_use]
    pub fn is_known(&self) -> bool {
        !matches!(self.values, Values::Any)
    }

    /// Whether the label can take `value`.
    #[must_use]
    pub fn can_be(&self, value: &str) -> Tri {
        match &self.values {
            Values::Any => Tri::Maybe,
            Values::OneOf(set) => {
                if set.contains(value) {
                    if set.len() == 1 {
                        Tri::Yes
                    } else {
                        Tri::Maybe
                    }
                } else {
                    Tri::No
                }
            }
            Values::Matching { regex, also } => {
                if regex.is_match(value) || also.contains(value) {
                    Tri::Maybe
                } else {
                    Tri::No
                }
            }
        }
    }

    /// The union of two domains of the same label (an `or` of two series sets).
    #[must_use]
    pub fn union(&self, other: &Domain) -> Domain {
        match (&self.values, &other.values) {
            (Values::OneOf(a), Values::OneOf(b)) => Domain {
                values: Values::OneOf(a.union(b).cloned().collect()),
                source: join_sources(&self.source, &other.source),
            },
            (Values::Matching { regex, also }, Values::OneOf(b))
            | (Values::OneOf(b), Values::Matching { regex, also }) => Domain {
                values: Values::Matching {
                    regex: regex.clone(),
                    also: also.union(b).cloned().collect(),
                },
                source: join_sources(&self.source, &other.source),
            },
            _ => Domain::any(),
        }
    }
}

fn join_sources(a: &str, b: &str) -> String {
    if b.is_empty() || a == b {
        a.to_string()
    } else if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}; {b}")
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.values {
            Values::Any => f.write_str("any value")?,
            Values::OneOf(set) => {
                let v: Vec<String> = set.iter().map(|s| format!("{s:?}")).collect();
                write!(f, "{}", v.join(", "))?;
            }
            Values::Matching { regex, also } => {
                write!(f, "values matching {:?}", regex.as_str())?;
                if !also.is_empty() {
                    let v: Vec<String> = also.iter().map(|s| format!("{s:?}")).collect();
                    write!(f, " or {}", v.join(", "))?;
                }
            }
        }
        if !self.source.is_empty() {
            write!(f, " ({})", self.source)?;
        }
        Ok(())
    }
}

/// The labels of an alert as far as they are knowable: those certainly present with their
/// values, and whether others may be present too.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    /// Labels present, with their values.
    pub known: BTreeMap<String, Domain>,
    /// Whether labels not in `known` may be present.
    pub open: bool,
}

impl Labels {
    /// Whether `matcher` matches these labels.
    #[must_use]
    pub fn matches(&self, matcher: &Matcher) -> Tri {
        match self.known.get(&matcher.name) {
            Some(domain) => match_domain(matcher, domain),
            None if self.open => {
                // Absent (the empty string) or present with any value.
                if matches_value(matcher, "") {
                    Tri::Maybe
                } else {
                    match_domain(matcher, &Domain::any())
                }
            }
            None => Tri::of(matches_value(matcher, ""), matches_value(matcher, "")),
        }
    }

    /// Whether all `matchers` match these labels.
    #[must_use]
    pub fn matches_all<'a>(&self, matchers: impl IntoIterator<Item = &'a Matcher>) -> Tri {
        matchers
            .into_iter()
            .fold(Tri::Yes, |acc, m| acc.and(self.matches(m)))
    }

    /// The domain of `label`, or `None` when the label is certainly absent.
    #[must_use]
    pub fn domain(&self, label: &str) -> Option<Domain> {
        match self.known.get(label) {
            Some(d) => Some(d.clone()),
            None if self.open => Some(Domain::any()),
            None => None,
        }
    }
}

fn matches_value(m: &Matcher, v: &str) -> bool {
    let labels = BTreeMap::from([(m.name.clone(), v.to_string())]);
    m.matches(&labels)
}

fn match_domain(m: &Matcher, domain: &Domain) -> Tri {
    match &domain.values {
        Values::OneOf(set) => {
            let hits = set.iter().filter(|v| matches_value(m, v)).count();
            Tri::of(hits == set.len(), hits > 0)
        }
        Values::Matching { regex, also } => match &m.op {
            Op::Equal(v) if !regex.is_match(v) && !also.contains(v) => Tri::No,
            _ => Tri::Maybe,
        },
        Values::Any => match &m.op {
            // A present label is never empty.
            Op::Equal(v) if v.is_empty() => Tri::No,
            Op::NotEqual(v) if v.is_empty() => Tri::Yes,
            _ => Tri::Maybe,
        },
    }
}

/// The values a matcher selects when it names them literally (`a="x"`, `a=~"x|y"`).
#[must_use]
pub fn literal_values(m: &Matcher) -> Option<BTreeSet<String>> {
    match &m.op {
        Op::Equal(v) if !v.is_empty() => Some(BTreeSet::from([v.clone()])),
        Op::Regex(r) => literal_alternatives(r.as_str()),
        _ => None,
    }
}

/// `^(?:a|b|c)$` as written by the matcher parser, when every alternative is a plain name.
fn literal_alternatives(anchored: &str) -> Option<BTreeSet<String>> {
    let inner = anchored.strip_prefix("^(?:")?.strip_suffix(")$")?;
    let inner = inner
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(inner);
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':'))
    };
    let parts: Vec<&str> = inner.split('|').collect();
    parts
        .iter()
        .all(|p| plain(p))
        .then(|| parts.iter().map(|p| (*p).to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Matcher {
        Matcher::parse(s).unwrap()
    }

    #[test]
    fn matchers_against_what_is_known() {
        let labels = Labels {
            known: BTreeMap::from([
                (
                    "alertname".to_string(),
                    Domain::one_of(["ContainerDown".to_string()], ""),
                ),
                (
                    "stream".to_string(),
                    Domain::one_of(["cam-a".to_string(), "cam-b".to_string()], "probes"),
                ),
            ]),
            open: false,
        };
        assert_eq!(labels.matches(&m("alertname=\"ContainerDown\"")), Tri::Yes);
        assert_eq!(labels.matches(&m("alertname=~\"A|B\"")), Tri::No);
        assert_eq!(labels.matches(&m("stream=\"cam-a\"")), Tri::Maybe);
        assert_eq!(labels.matches(&m("stream=\"cam-c\"")), Tri::No);
        assert_eq!(labels.matches(&m("route_via=\"router\"")), Tri::No);
        assert_eq!(labels.matches(&m("route_via!=\"router\"")), Tri::Yes);
        let open = Labels {
            open: true,
            ..labels
        };
        assert_eq!(open.matches(&m("route_via=\"router\"")), Tri::Maybe);
    }

    #[test]
    fn literal_alternations_are_read_back() {
        assert_eq!(
            literal_values(&m("alertname=~\"OwuiDown|ContainerUnhealthy\"")),
            Some(BTreeSet::from([
                "OwuiDown".to_string(),
                "ContainerUnhealthy".to_string()
            ]))
        );
        assert_eq!(literal_values(&m("alertname=~\"Owui.*\"")), None);
        assert_eq!(
            literal_values(&m("alertname=\"X\"")),
            Some(BTreeSet::from(["X".to_string()]))
        );
    }
}
