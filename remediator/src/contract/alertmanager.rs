//! Alertmanager's configuration as the contract reads it: the routing tree, the receivers that
//! send to the remediator, and the inhibition rules. Routing is evaluated as Alertmanager does
//! it (children in order, the first match wins unless it says `continue`), on what is known of
//! an alert's labels; where a label's value is unknown both ways are followed.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use stackmedic_common::config as common;

use super::domain::{Labels, Tri};
use crate::matcher::Matcher;

/// Most ways through the routing tree followed for one alert.
const MAX_WAYS: usize = 256;

/// A route of the tree.
#[derive(Debug, Clone)]
pub struct Route {
    /// Where it is (`route.routes[1]`).
    pub path: String,
    receiver: Option<String>,
    matchers: Vec<Matcher>,
    cont: bool,
    mute_time_intervals: Vec<String>,
    active_time_intervals: Vec<String>,
    routes: Vec<Route>,
}

/// A receiver's webhook to the remediator.
#[derive(Debug, Clone)]
pub struct RemediatorWebhook {
    /// Where it is (`receivers[0].webhook_configs[0]`).
    pub path: String,
    /// Whether resolved alerts are sent.
    pub send_resolved: bool,
    /// Most alerts per notification; 0 is all.
    pub max_alerts: u64,
}

/// An inhibition rule.
#[derive(Debug, Clone)]
pub struct Inhibition {
    /// Where it is (`inhibit_rules[3]`).
    pub path: String,
    /// Its source matchers.
    pub source: Vec<Matcher>,
    /// Its target matchers.
    pub target: Vec<Matcher>,
    /// Its target matchers as written, for messages.
    pub target_text: String,
    /// The labels whose values source and target must share (`equal`).
    pub equal: Vec<String>,
}

/// The parts of an Alertmanager configuration the contract checks.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file, as given.
    pub file: String,
    /// The routing tree.
    pub route: Route,
    /// Receivers that send to the remediator (a webhook whose URL path ends in `/webhook`),
    /// by name.
    pub remediator: BTreeMap<String, Vec<RemediatorWebhook>>,
    /// The inhibition rules.
    pub inhibitions: Vec<Inhibition>,
}

/// Where an alert ends up on one way through the tree.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The route.
    pub path: String,
    /// Its receiver.
    pub receiver: String,
    /// Its `mute_time_intervals`.
    pub mute: Vec<String>,
    /// Its `active_time_intervals`.
    pub active: Vec<String>,
}

impl Config {
    /// Reads the file.
    ///
    /// # Errors
    /// Every problem found (unreadable file, a malformed matcher), each as a message.
    pub fn read(path: &Path) -> Result<Config, Vec<String>> {
        let file = path.display().to_string();
        let value = common::read_yaml_file(path).map_err(|e| {
            e.problems
                .iter()
                .map(|p| format!("{file}: {p}"))
                .collect::<Vec<_>>()
        })?;
        let mut errors = Vec::new();
        let route = match value.get("route") {
            Some(r) => route(r, "route", &mut errors),
            None => {
                errors.push(format!("{file}: no `route`"));
                None
            }
        };
        let mut remediator = BTreeMap::new();
        for (i, r) in value
            .get("receivers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(name) = r.get("name").and_then(Value::as_str) else {
                continue;
            };
            let hooks: Vec<RemediatorWebhook> = r
                .get("webhook_configs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
                .filter(|(_, w)| {
                    w.get("url")
                        .and_then(Value::as_str)
                        .and_then(|u| url::Url::parse(u).ok())
                        .is_some_and(|u| u.path().trim_end_matches('/').ends_with("/webhook"))
                })
                .map(|(j, w)| RemediatorWebhook {
                    path: format!("receivers[{i}].webhook_configs[{j}]"),
                    send_resolved: w
                        .get("send_resolved")
                        .and_then(Value::as_bool)
                        .unwrap_or(true),
                    max_alerts: w.get("max_alerts").and_then(Value::as_u64).unwrap_or(0),
                })
                .collect();
            if !hooks.is_empty() {
                remediator.insert(name.to_string(), hooks);
            }
        }
        let mut inhibitions = Vec::new();
        for (i, rule) in value
            .get("inhibit_rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let path = format!("inhibit_rules[{i}]");
            let (source, _) = matchers(
                rule,
                ["source_matchers", "source_match", "source_match_re"],
                &path,
                &mut errors,
            );
            let (target, text) = matchers(
                rule,
                ["target_matchers", "target_match", "target_match_re"],
                &path,
                &mut errors,
            );
            let equal = rule
                .get("equal")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|l| l.as_str().map(str::to_string))
                .collect();
            inhibitions.push(Inhibition {
                path,
                source,
                target,
                target_text: text,
                equal,
            });
        }
        match route {
            Some(route) if errors.is_empty() => Ok(Config {
                file,
                route,
                remediator,
                inhibitions,
            }),
            _ => Err(errors
                .into_iter()
                .map(|e| {
                    if e.starts_with(&file) {
                        e
                    } else {
                        format!("{file}: {e}")
                    }
                })
                .collect()),
        }
    }

    /// The ways an alert with `labels` can take through the routing tree, each as the routes
    /// it ends at.
    #[must_use]
    pub fn ways(&self, labels: &Labels) -> Vec<Vec<Leaf>> {
        walk(&self.route, labels, "")
    }
}

fn route(v: &Value, path: &str, errors: &mut Vec<String>) -> Option<Route> {
    let (matchers, _) = matchers(v, ["matchers", "match", "match_re"], path, errors);
    let strings = |key: &str| -> Vec<String> {
        v.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let routes = v
        .get("routes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, c)| route(c, &format!("{path}.routes[{i}]"), errors))
        .collect();
    Some(Route {
        path: path.to_string(),
        receiver: v
            .get("receiver")
            .and_then(Value::as_str)
            .map(str::to_string),
        matchers,
        cont: v.get("continue").and_then(Value::as_bool).unwrap_or(false),
        mute_time_intervals: strings("mute_time_intervals"),
        active_time_intervals: strings("active_time_intervals"),
        routes,
    })
}

/// The matchers of `keys` (a list of matcher strings, a map of equalities, a map of regular
/// expressions), and how they are written.
fn matchers(
    v: &Value,
    [list, equal, regex]: [&str; 3],
    path: &str,
    errors: &mut Vec<String>,
) -> (Vec<Matcher>, String) {
    let mut out = Vec::new();
    let mut texts = Vec::new();
    for line in v.get(list).and_then(Value::as_array).into_iter().flatten() {
        let Some(line) = line.as_str() else { continue };
        for m in split_matchers(line) {
            texts.push(m.clone());
            match Matcher::parse(&m) {
                Ok(m) => out.push(m),
                Err(e) => errors.push(format!("{path}.{list}: {e}")),
            }
        }
    }
    for (key, op) in [(equal, "="), (regex, "=~")] {
        for (name, value) in v.get(key).and_then(Value::as_object).into_iter().flatten() {
            let value = value.as_str().unwrap_or_default();
            let text = format!("{name}{op}{}", Value::String(value.to_string()));
            texts.push(text.clone());
            match Matcher::parse(&text) {
                Ok(m) => out.push(m),
                Err(e) => errors.push(format!("{path}.{key}: {e}")),
            }
        }
    }
    (out, texts.join(", "))
}

/// One line of Alertmanager's `matchers` may hold several, as `{a="x", b=~"y"}` or
/// `a="x", b=~"y"`.
fn split_matchers(line: &str) -> Vec<String> {
    let s = line.trim();
    let s = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(s);
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    out.push(current);
    out.into_iter()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

fn walk(node: &Route, labels: &Labels, parent_receiver: &str) -> Vec<Vec<Leaf>> {
    let receiver = node.receiver.as_deref().unwrap_or(parent_receiver);
    // Each way: the leaves reached so far, and whether a match without `continue` ended it.
    let mut ways: Vec<(Vec<Leaf>, bool)> = vec![(Vec::new(), false)];
    for child in &node.routes {
        let t = labels.matches_all(&child.matchers);
        if t == Tri::No {
            continue;
        }
        let below = walk(child, labels, receiver);
        let mut next = Vec::new();
        for (leaves, stopped) in ways {
            if stopped {
                next.push((leaves, true));
                continue;
            }
            if t == Tri::Maybe {
                next.push((leaves.clone(), false));
            }
            for b in &below {
                let mut l = leaves.clone();
                l.extend(b.iter().cloned());
                next.push((l, !child.cont));
            }
        }
        next.truncate(MAX_WAYS);
        ways = next;
    }
    ways.into_iter()
        .map(|(leaves, _)| {
            if leaves.is_empty() {
                vec![Leaf {
                    path: node.path.clone(),
                    receiver: receiver.to_string(),
                    mute: node.mute_time_intervals.clone(),
                    active: node.active_time_intervals.clone(),
                }]
            } else {
                leaves
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_lines_with_several_matchers() {
        assert_eq!(
            split_matchers(r#"{alertname="A", severity=~"page|ticket"}"#),
            [r#"alertname="A""#, r#"severity=~"page|ticket""#]
        );
        assert_eq!(split_matchers(r#"a="x,y""#), [r#"a="x,y""#]);
    }
}
