//! The contract between the exporter's probes, the Prometheus rules, Alertmanager's routes and
//! the remediator's rules, checked from their files alone (`stackmedic-remediator
//! --config.check --config.file R --rules.file F … [--alertmanager.config.file A]
//! [--exporter.config.file E …]`). Nothing is run and nothing is asked over the network.
//!
//! A finding is one of:
//! - a remediable alert (one with a `remediation` label) that no remediator rule matches;
//! - a remediator rule whose `alertname` matcher names an alert no rule file defines, or that can
//!   never match an alert it names (another matcher excludes it);
//! - an allow-list (`targets` of `target_label`, a target's `docker.containers`, an
//!   `http_sequence`'s `params.*.allowed`) naming a value the alert's label cannot take, where
//!   that is knowable: from the rule's labels and expression, and from the exporter's probe names
//!   and watched containers; or a label the alert never carries;
//! - an Alertmanager route, receiver or inhibition that would keep a remediable alert, or its
//!   resolve, from the remediator;
//! - with several replicas of the remediator (webhooks to `/webhook` at different URLs, in one
//!   receiver or in several reached through `continue`): a remediable alert that reaches some
//!   replicas but not every one (then nothing acts on it while those it reaches are down), or a
//!   replica's webhook sent without resolves or with other credentials than another's;
//! - a remediable alert whose paging twin (the `…Persistent` alert of the same condition) and
//!   the remediator's escalation (`StackmedicRemediationFailed`) would both reach on-call for
//!   one cause: no inhibition mutes one of them while the other fires for the same subject, or
//!   one mutes it for every subject.
//!
//! Every finding names the file and the alert, rule, route or inhibition it is about.

pub mod alertmanager;
pub mod domain;
pub mod exporter;
pub mod promql;
pub mod rules_file;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::action::AllowList;
use crate::config::{Config, Rule, TargetChoice};
use crate::matcher::{Matcher, Op};
use domain::{literal_values, Domain, Labels, Tri};
use rules_file::Alert;
use stackmedic_common::include::Included;

/// The files the contract is checked over.
pub struct Sources<'a> {
    /// The remediator's configuration file, as given.
    pub remediator_file: &'a Path,
    /// The remediator's configuration, loaded from it.
    pub config: &'a Config,
    /// Where each of its targets and rules was written: the file itself or one it includes.
    pub remediator_origins: &'a Included,
    /// Prometheus rule files, or glob patterns of them (`alerts/*.rules.yml`, as Prometheus'
    /// `rule_files` take them).
    pub rule_files: &'a [PathBuf],
    /// Alertmanager's configuration file.
    pub alertmanager_file: Option<&'a Path>,
    /// stackmedic-exporter configuration files.
    pub exporter_files: &'a [PathBuf],
}

/// One way the files disagree.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// The file it is in.
    pub file: String,
    /// What in the file: `alert ContainerDown`, `rules[2] "stream-restart"`, `inhibit_rules[3]`.
    pub subject: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.subject, self.message)
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// What disagrees; empty when the contract holds.
    pub findings: Vec<Finding>,
    /// What could not be checked, and why (not a finding).
    pub notes: Vec<String>,
    /// Alerting rules read.
    pub alerts: usize,
    /// Remediable ones among them.
    pub remediable: usize,
}

impl Report {
    fn push(&mut self, file: &str, subject: impl Into<String>, message: impl Into<String>) {
        let f = Finding {
            file: file.to_string(),
            subject: subject.into(),
            message: message.into(),
        };
        if !self.findings.contains(&f) {
            self.findings.push(f);
        }
    }
}

/// Checks the contract over `sources`.
#[must_use]
pub fn check(sources: &Sources<'_>) -> Report {
    let mut report = Report::default();
    let rem_file = sources.remediator_file.display().to_string();

    let exporter_paths: Vec<&Path> = sources
        .exporter_files
        .iter()
        .map(PathBuf::as_path)
        .collect();
    let exporters = if exporter_paths.is_empty() {
        None
    } else {
        match exporter::Exporters::read(&exporter_paths) {
            Ok(e) => Some(e),
            Err(errors) => {
                for e in errors {
                    report.push("", "exporter configuration", e);
                }
                None
            }
        }
    };
    let hints: &dyn promql::Hints = match &exporters {
        Some(e) => e,
        None => &promql::NoHints,
    };

    guard_notes(sources, &mut report.notes);
    let mut alerts: Vec<Alert> = Vec::new();
    let rule_files = expand_rule_files(&mut report, sources.rule_files);
    for file in &rule_files {
        match rules_file::read(file, hints, &mut report.notes) {
            Ok(a) => alerts.extend(a),
            Err(e) => report.push(&file.display().to_string(), "rule file", e),
        }
    }
    report.alerts = alerts.len();
    report.remediable = alerts.iter().filter(|a| a.remediation.is_some()).count();
    let names: BTreeSet<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
    let rule_files_text = rule_files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");

    for (i, rule) in sources.config.rules.iter().enumerate() {
        // Named where it was written: the remediator's file, or the file it includes.
        let origin = sources.remediator_origins.origin("rules", i);
        let file = origin
            .file
            .as_ref()
            .map_or_else(|| rem_file.clone(), |f| f.display().to_string());
        let subject = format!("rules[{}] {:?}", origin.index, rule.name);
        check_rule_names(&mut report, &file, &subject, rule, &names, &rule_files_text);
        for alert in &alerts {
            check_rule_on_alert(&mut report, &file, &subject, rule, alert);
        }
    }
    let included = match sources.remediator_origins.files.len() {
        0 => String::new(),
        1 => ", nor of the file it includes".to_string(),
        n => format!(", nor of the {n} files it includes"),
    };

    for alert in alerts.iter().filter(|a| a.remediation.is_some()) {
        let matched = sources
            .config
            .rules
            .iter()
            .any(|r| alert.labels.matches_all(&r.matchers).possible());
        if !matched {
            report.push(
                &alert.file,
                format!("alert {}", alert.name),
                format!(
                    "remediable (remediation={:?}), but no rule of {rem_file} matches it{included}",
                    alert.remediation.as_deref().unwrap_or_default()
                ),
            );
        }
    }

    if let Some(path) = sources.alertmanager_file {
        match alertmanager::Config::read(path) {
            Ok(am) => {
                check_alertmanager(&mut report, &am, &alerts);
                check_one_page_per_cause(&mut report, &am, &alerts, sources.config);
            }
            Err(errors) => {
                for e in errors {
                    report.push(&path.display().to_string(), "configuration", e);
                }
            }
        }
    }
    report
}

/// The rule files named by `given`, each pattern expanded like Prometheus' `rule_files`: in
/// name order, a file named twice read once. A pattern that matches no file is a finding (a
/// rule file is never optional to the check).
fn expand_rule_files(report: &mut Report, given: &[PathBuf]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    for pattern in given {
        let text = pattern.display().to_string();
        if !text.contains(['*', '?', '[']) {
            if !files.contains(pattern) {
                files.push(pattern.clone());
            }
            continue;
        }
        let matched: Vec<PathBuf> = match glob::glob(&text) {
            Ok(paths) => {
                let mut m: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
                m.sort();
                m
            }
            Err(e) => {
                report.push(&text, "rule file", format!("invalid pattern: {e}"));
                continue;
            }
        };
        if matched.is_empty() {
            report.push(&text, "rule file", "the pattern matches no file");
        }
        for file in matched {
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }
    files
}

/// The rule's `alertname` matchers name alerts the rule files define.
fn check_rule_names(
    report: &mut Report,
    file: &str,
    subject: &str,
    rule: &Rule,
    names: &BTreeSet<&str>,
    rule_files: &str,
) {
    for m in rule.matchers.iter().filter(|m| m.name == "alertname") {
        if let Some(literals) = literal_values(m) {
            for name in literals.iter().filter(|n| !names.contains(n.as_str())) {
                report.push(
                    file,
                    subject,
                    format!(
                        "matcher {m} names alert {name}, which no rule file defines ({rule_files})"
                    ),
                );
            }
        } else if matches!(m.op, Op::Regex(_))
            && !names.iter().any(|n| {
                let labels =
                    std::collections::BTreeMap::from([("alertname".to_string(), (*n).to_string())]);
                m.matches(&labels)
            })
        {
            report.push(
                file,
                subject,
                format!("matcher {m} matches no alert of {rule_files}"),
            );
        }
    }
}

/// What a rule does with one alert: whether another matcher excludes an alert it names, and
/// whether its allow-lists name values the alert's labels can take.
fn check_rule_on_alert(report: &mut Report, file: &str, subject: &str, rule: &Rule, alert: &Alert) {
    let t = alert.labels.matches_all(&rule.matchers);
    if t == Tri::No {
        let names_it = rule.matchers.iter().any(|m| {
            m.name == "alertname" && literal_values(m).is_some_and(|l| l.contains(&alert.name))
        });
        if names_it {
            let failing: Vec<String> = rule
                .matchers
                .iter()
                .filter(|m| alert.labels.matches(m) == Tri::No)
                .map(|m| explain(m, alert))
                .collect();
            report.push(
                file,
                subject,
                format!(
                    "can never match alert {} ({}): {}",
                    alert.name,
                    alert.file,
                    failing.join("; ")
                ),
            );
        }
        return;
    }
    let mut lists: Vec<(String, AllowList)> = Vec::new();
    if let TargetChoice::Label { label, allowed } = &rule.choice {
        lists.push((
            "targets".into(),
            AllowList {
                key: "targets".into(),
                label: label.clone(),
                values: allowed.clone(),
            },
        ));
    }
    for (target, action) in &rule.actions {
        for list in action.allow_lists() {
            let at = if list.key.starts_with("params.") {
                list.key.clone()
            } else {
                format!("target {target:?} {}", list.key)
            };
            lists.push((at, list));
        }
    }
    for (at, list) in lists {
        match alert.labels.domain(&list.label) {
            None => report.push(
                file,
                subject,
                format!(
                    "{at} chooses by the label {}, which alert {} ({}) never carries",
                    list.label, alert.name, alert.file
                ),
            ),
            Some(d) if d.is_known() => {
                for v in list.values.iter().filter(|v| d.can_be(v) == Tri::No) {
                    report.push(
                        file,
                        subject,
                        format!(
                            "{at} names {v:?}, which the label {} of alert {} ({}) cannot take: it is {d}",
                            list.label, alert.name, alert.file
                        ),
                    );
                }
            }
            Some(_) => {}
        }
    }
}

fn explain(m: &Matcher, alert: &Alert) -> String {
    match alert.labels.domain(&m.name) {
        Some(d) if d.is_known() => format!("{m}, but {} is {d}", m.name),
        Some(_) => format!("{m}"),
        None => format!("{m}, but the alert never carries {}", m.name),
    }
}

fn check_alertmanager(report: &mut Report, am: &alertmanager::Config, alerts: &[Alert]) {
    if am.remediator.is_empty() {
        report.push(
            &am.file,
            "receivers",
            "no receiver has a webhook to the remediator's /webhook, so no remediable alert reaches it",
        );
        return;
    }
    let remediable: Vec<(&Alert, Vec<Vec<alertmanager::Leaf>>)> = alerts
        .iter()
        .filter(|a| a.remediation.is_some())
        .map(|a| (a, am.ways(&a.labels)))
        .collect();
    // The replicas: the URLs of the remediator's webhooks in receivers that routes name, each
    // URL once (the first webhook of the file that names it stands for it in messages).
    let hooks = am.routed_webhooks();
    let mut replicas: Vec<&alertmanager::RemediatorWebhook> = Vec::new();
    for hook in &hooks {
        if !replicas.iter().any(|r| r.url == hook.url) {
            replicas.push(hook);
        }
    }
    // A webhook without resolves beside others with them is the odd replica, reported once by
    // check_replica_webhooks; without any, the remediator never learns of a resolve.
    let resolves_elsewhere = hooks.iter().any(|h| h.send_resolved);
    check_replica_webhooks(report, am, &hooks);
    for (alert, ways) in &remediable {
        let about = format!("alert {} ({})", alert.name, alert.file);
        let ends = |way: &Vec<alertmanager::Leaf>| -> String {
            way.iter()
                .map(|l| format!("{} ({})", l.receiver, l.path))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let reaches = |way: &Vec<alertmanager::Leaf>| {
            way.iter().any(|l| am.remediator.contains_key(&l.receiver))
        };
        let missing: Vec<&Vec<alertmanager::Leaf>> = ways.iter().filter(|w| !reaches(w)).collect();
        if let Some(way) = missing.first() {
            let message = if missing.len() == ways.len() {
                format!(
                    "{about} is not routed to the remediator: it ends at {}",
                    ends(way)
                )
            } else {
                format!(
                    "{about} may not reach the remediator: depending on labels not known here it ends at {}",
                    ends(way)
                )
            };
            report.push(&am.file, "route", message);
        }
        // Every replica must get every remediable alert: a replica that alone receives an
        // alert is a single point of failure for it, whatever the shared store does.
        let partial: Vec<(&Vec<alertmanager::Leaf>, Vec<&str>)> = ways
            .iter()
            .filter(|w| reaches(w))
            .filter_map(|w| {
                let urls: Vec<&str> = am.webhooks_on(w).iter().map(|h| h.url.as_str()).collect();
                let absent: Vec<&str> = replicas
                    .iter()
                    .map(|r| r.url.as_str())
                    .filter(|u| !urls.contains(u))
                    .collect();
                (!absent.is_empty()).then_some((w, absent))
            })
            .collect();
        if let Some((way, absent)) = partial.first() {
            let shown = |url: &str| -> String {
                replicas
                    .iter()
                    .find(|r| r.url == url)
                    .map_or_else(|| url.to_string(), |r| format!("{url} ({})", r.path))
            };
            let reached: Vec<String> = replicas
                .iter()
                .filter(|r| !absent.contains(&r.url.as_str()))
                .map(|r| shown(&r.url))
                .collect();
            let absent: Vec<String> = absent.iter().map(|u| shown(u)).collect();
            let (replica, down) = if reached.len() == 1 {
                ("replica", "that replica is")
            } else {
                ("replicas", "those replicas are")
            };
            let how = if partial.len() == ways.len() {
                ""
            } else {
                " (depending on labels not known here)"
            };
            report.push(
                &am.file,
                "route",
                format!(
                    "{about}{how} reaches the remediator's {replica} {} but not {}: it ends at {}; while {down} down, no replica receives it and nothing acts on it",
                    reached.join(", "),
                    absent.join(", "),
                    ends(way),
                ),
            );
        }
        for leaf in ways.iter().flatten() {
            let Some(hooks) = am.remediator.get(&leaf.receiver) else {
                continue;
            };
            if !leaf.mute.is_empty() {
                report.push(
                    &am.file,
                    &leaf.path,
                    format!(
                        "mute_time_intervals {} keep {about} from the remediator",
                        leaf.mute.join(", ")
                    ),
                );
            }
            if !leaf.active.is_empty() {
                report.push(
                    &am.file,
                    &leaf.path,
                    format!(
                        "active_time_intervals {} keep {about} from the remediator outside them",
                        leaf.active.join(", ")
                    ),
                );
            }
            for hook in hooks {
                if !hook.send_resolved && !resolves_elsewhere {
                    report.push(
                        &am.file,
                        &hook.path,
                        format!(
                            "send_resolved is false: the remediator never learns that {about} resolved"
                        ),
                    );
                }
                if hook.max_alerts > 0 {
                    report.push(
                        &am.file,
                        &hook.path,
                        format!(
                            "max_alerts {} drops alerts beyond it from a notification, {about} among them",
                            hook.max_alerts
                        ),
                    );
                }
            }
        }
        for inhibition in &am.inhibitions {
            let t = alert.labels.matches_all(&inhibition.target);
            if t.possible() {
                report.push(
                    &am.file,
                    &inhibition.path,
                    format!(
                        "{} {about}, its firing and its resolve, towards the remediator (target matchers {})",
                        if t == Tri::Yes { "mutes" } else { "may mute" },
                        if inhibition.target_text.is_empty() {
                            "none: every alert".to_string()
                        } else {
                            inhibition.target_text.clone()
                        }
                    ),
                );
            }
        }
    }
}

/// The webhooks to the remediator that routes send to go to replicas of one remediator, which
/// share one configuration: each must be sent what the others are. A webhook without
/// resolves beside one with them, or with other credentials than the first one's, is a finding
/// (`max_alerts` above 0 is a finding of each webhook already).
fn check_replica_webhooks(
    report: &mut Report,
    am: &alertmanager::Config,
    hooks: &[&alertmanager::RemediatorWebhook],
) {
    if let Some(sends) = hooks.iter().find(|h| h.send_resolved) {
        for hook in hooks.iter().filter(|h| !h.send_resolved) {
            report.push(
                &am.file,
                &hook.path,
                format!(
                    "send_resolved is false, unlike {} (to {}): the replica at {} is never sent a resolve, and while the replicas that are sent resolves are down, no alert's resolve reaches the remediator",
                    sends.path, sends.url, hook.url
                ),
            );
        }
    }
    let Some((first, rest)) = hooks.split_first() else {
        return;
    };
    for hook in rest.iter().filter(|h| h.auth != first.auth) {
        report.push(
            &am.file,
            &hook.path,
            format!(
                "its credentials to {} ({}) differ from those of {} to {} ({}): replicas share one configuration and accept the same credentials, so one of the two webhooks is refused (401) and its replica gets no alert",
                hook.url, hook.auth.shown, first.path, first.url, first.auth.shown
            ),
        );
    }
}

/// The labels of the escalation the remediator posts when it gives up on `alert`
/// (`crate::escalation`): the alert's own, its name moved to `original_alertname`, paging
/// severity, the rule, target and action, and `escalation.labels`.
fn escalation_labels(alert: &Alert, config: &Config) -> Option<Labels> {
    let esc = config.escalation.as_ref()?;
    let mut labels = alert.labels.clone();
    let one = |v: &str| Domain::one_of([v.to_string()], "set by the remediator's escalation");
    labels
        .known
        .insert("alertname".into(), one(crate::escalation::ALERTNAME));
    labels.known.insert("severity".into(), one("page"));
    labels
        .known
        .insert("original_alertname".into(), one(&alert.name));
    for set in [
        "remediation_rule",
        "remediation_target",
        "remediation_action",
    ] {
        labels.known.insert(set.into(), Domain::any());
    }
    for (k, v) in &esc.labels {
        labels.known.insert(k.clone(), one(v));
    }
    Some(labels)
}

/// The labels by which the rules that may match `alert` choose its subject: a rule's
/// `target_label` and the labels of its allow-lists.
fn subject_labels(alert: &Alert, config: &Config) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for rule in config
        .rules
        .iter()
        .filter(|r| alert.labels.matches_all(&r.matchers).possible())
    {
        if let TargetChoice::Label { label, .. } = &rule.choice {
            out.insert(label.clone());
        }
        for action in rule.actions.values() {
            out.extend(action.allow_lists().into_iter().map(|l| l.label));
        }
    }
    out
}

/// Whether `inhibition` surely mutes `target` while `source` fires, both of the same subject:
/// every label of its `equal` can have the same value on both.
fn inhibits(inhibition: &alertmanager::Inhibition, source: &Labels, target: &Labels) -> bool {
    source.matches_all(&inhibition.source) == Tri::Yes
        && target.matches_all(&inhibition.target) == Tri::Yes
        && inhibition
            .equal
            .iter()
            .all(|l| match (source.domain(l), target.domain(l)) {
                (Some(a), Some(b)) => match (&a.values, &b.values) {
                    (domain::Values::OneOf(x), domain::Values::OneOf(y)) => !x.is_disjoint(y),
                    _ => true,
                },
                // Absent on both sides is equal for Alertmanager (both empty).
                (None, None) => true,
                // Carried by one side only: never equal, unless the other side is open.
                (Some(_), None) => target.open,
                (None, Some(_)) => source.open,
            })
}

/// One page per cause: for each remediable alert with a `…Persistent` twin, the twin and the
/// remediator's escalation must not both reach a human for the same subject.
fn check_one_page_per_cause(
    report: &mut Report,
    am: &alertmanager::Config,
    alerts: &[Alert],
    config: &Config,
) {
    let humans = |labels: &Labels| -> Vec<String> {
        let mut r: Vec<String> = am
            .ways(labels)
            .iter()
            .flatten()
            .filter(|l| !am.remediator.contains_key(&l.receiver))
            .map(|l| l.receiver.clone())
            .collect();
        r.sort();
        r.dedup();
        r
    };
    for alert in alerts.iter().filter(|a| a.remediation.is_some()) {
        let Some(escalation) = escalation_labels(alert, config) else {
            // Without escalation the remediator pages nobody: the twin is the only page.
            return;
        };
        let escalation_to = humans(&escalation);
        if escalation_to.is_empty() {
            continue;
        }
        let persistent = format!("{}Persistent", alert.name);
        let twins = alerts.iter().filter(|t| {
            t.remediation.is_none()
                && (t.name == persistent || (!alert.expr.is_empty() && t.expr == alert.expr))
        });
        for twin in twins {
            let twin_to = humans(&twin.labels);
            if twin_to.is_empty() {
                continue;
            }
            let about = format!("alert {} ({})", alert.name, alert.file);
            let muting: Vec<&alertmanager::Inhibition> = am
                .inhibitions
                .iter()
                .filter(|i| {
                    inhibits(i, &escalation, &twin.labels) || inhibits(i, &twin.labels, &escalation)
                })
                .collect();
            let Some(first) = muting.first() else {
                report.push(
                    &am.file,
                    "inhibit_rules",
                    format!(
                        "{about}: its paging twin {} ({}, to {}) and the remediator's escalation {} (to {}) both reach on-call for one cause: no inhibition mutes one of them while the other fires for the same subject",
                        twin.name,
                        twin.file,
                        twin_to.join(", "),
                        crate::escalation::ALERTNAME,
                        escalation_to.join(", "),
                    ),
                );
                continue;
            };
            let missing: Vec<String> = subject_labels(alert, config)
                .into_iter()
                .filter(|l| !first.equal.contains(l))
                .collect();
            if !missing.is_empty() {
                report.push(
                    &am.file,
                    &first.path,
                    format!(
                        "mutes {} ({}) of every {} while the escalation of one {about} fires: add {} to its equal",
                        twin.name,
                        twin.file,
                        missing.join(", "),
                        missing.join(", "),
                    ),
                );
            }
        }
    }
}

/// A note for each target whose blast-radius guard can never hold an action: it has fewer
/// subjects than the guard's minimum (or no bounded set of them). Not a finding: a target of one
/// container is common and right.
fn guard_notes(sources: &Sources<'_>, notes: &mut Vec<String>) {
    let file = sources.remediator_file.display();
    for (name, target) in &sources.config.targets {
        let n = sources.config.subjects.get(name).map_or(0, |s| s.len());
        if target.guard.enabled && !target.guard.can_hold(n) {
            notes.push(format!(
                "{file}: target {name}: {n} subject(s), fewer than blast_radius.min_subjects ({}): the blast-radius guard can never hold its actions",
                target.guard.min_subjects
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A remediable alert whose other labels are unknown.
    fn remediable(name: &str) -> Alert {
        let one = |v: &str| Domain::one_of([v.to_string()], "");
        Alert {
            file: "rules.yml".into(),
            group: "g".into(),
            name: name.into(),
            labels: Labels {
                known: BTreeMap::from([
                    ("alertname".to_string(), one(name)),
                    ("remediation".to_string(), one("container_restart")),
                ]),
                open: true,
            },
            remediation: Some("container_restart".into()),
            expr: String::new(),
        }
    }

    /// The findings of the Alertmanager configuration `yaml` for `alerts`, as text.
    fn findings(yaml: &str, alerts: &[Alert]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("am.yml");
        std::fs::write(&path, yaml).unwrap();
        let am = alertmanager::Config::read(&path).unwrap();
        let mut report = Report::default();
        check_alertmanager(&mut report, &am, alerts);
        report
            .findings
            .iter()
            .map(|f| format!("{}: {}", f.subject, f.message))
            .collect()
    }

    const HOOK: &str = "send_resolved: true\n        http_config: {authorization: {credentials_file: /run/secrets/token}}";

    /// One receiver with a webhook per replica.
    fn one_receiver(second: &str) -> String {
        format!(
            "route:\n  receiver: other\n  routes:\n    - receiver: remediator\n      matchers: ['remediation=~\".+\"']\n\
             receivers:\n  - name: other\n  - name: remediator\n    webhook_configs:\n\
             \x20     - url: http://127.0.0.1:8791/webhook\n        {HOOK}\n\
             \x20     - url: http://127.0.0.1:8792/webhook\n        {second}\n"
        )
    }

    /// One receiver per replica, the first route going on (`continue`) to the second.
    fn continued(first_continues: bool, second_matchers: &str) -> String {
        format!(
            "route:\n  receiver: other\n  routes:\n\
             \x20   - receiver: replica-a\n      matchers: ['remediation=~\".+\"']\n      continue: {first_continues}\n\
             \x20   - receiver: replica-b\n      matchers: [{second_matchers}]\n\
             receivers:\n  - name: other\n\
             \x20 - name: replica-a\n    webhook_configs:\n      - url: http://127.0.0.1:8791/webhook\n        {HOOK}\n\
             \x20 - name: replica-b\n    webhook_configs:\n      - url: http://127.0.0.1:8792/webhook/\n        {HOOK}\n"
        )
    }

    #[test]
    fn one_receiver_with_a_webhook_per_replica_holds() {
        let f = findings(&one_receiver(HOOK), &[remediable("ContainerDown")]);
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn a_receiver_per_replica_through_continue_holds() {
        let yaml = continued(true, "'remediation=~\".+\"'");
        let f = findings(&yaml, &[remediable("ContainerDown")]);
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn an_alert_reaching_one_replica_of_two_is_a_finding() {
        // Without `continue` the first replica's route ends the way: the second never gets it.
        let yaml = continued(false, "'remediation=~\".+\"'");
        let f = findings(&yaml, &[remediable("ContainerDown")]);
        assert_eq!(
            f,
            [
                "route: alert ContainerDown (rules.yml) reaches the remediator's replica \
              http://127.0.0.1:8791/webhook (receivers[1].webhook_configs[0]) but not \
              http://127.0.0.1:8792/webhook (receivers[2].webhook_configs[0]): it ends at \
              replica-a (route.routes[0]); while that replica is down, no replica receives it \
              and nothing acts on it"
            ]
        );
    }

    #[test]
    fn an_alert_the_second_replica_may_not_get_is_a_finding_and_others_are_not() {
        // The second route takes only ContainerDown: ContainerMissing reaches replica A alone,
        // and an alert whose container is unknown may or may not reach B.
        let yaml = continued(true, "'alertname=\"ContainerDown\"'");
        let f = findings(
            &yaml,
            &[remediable("ContainerDown"), remediable("ContainerMissing")],
        );
        assert_eq!(f.len(), 1, "{f:#?}");
        assert!(
            f[0].starts_with("route: alert ContainerMissing (rules.yml) reaches the remediator's replica http://127.0.0.1:8791/webhook (receivers[1].webhook_configs[0]) but not http://127.0.0.1:8792/webhook"),
            "{f:#?}"
        );

        let yaml = continued(true, "'container=\"owui\"'");
        let f = findings(&yaml, &[remediable("ContainerDown")]);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert!(
            f[0].starts_with("route: alert ContainerDown (rules.yml) (depending on labels not known here) reaches the remediator's replica http://127.0.0.1:8791/webhook"),
            "{f:#?}"
        );
    }

    #[test]
    fn a_replica_sent_no_resolves_is_the_finding_not_the_others() {
        let f = findings(
            &one_receiver("send_resolved: false\n        http_config: {authorization: {credentials_file: /run/secrets/token}}"),
            &[remediable("ContainerDown")],
        );
        assert_eq!(
            f,
            [
                "receivers[1].webhook_configs[1]: send_resolved is false, unlike \
              receivers[1].webhook_configs[0] (to http://127.0.0.1:8791/webhook): the replica at \
              http://127.0.0.1:8792/webhook is never sent a resolve, and while the replicas that \
              are sent resolves are down, no alert's resolve reaches the remediator"
            ]
        );
        // Neither sent resolves: each webhook's own finding, per alert.
        let both = one_receiver("send_resolved: false\n        http_config: {authorization: {credentials_file: /run/secrets/token}}")
            .replacen("send_resolved: true", "send_resolved: false", 1);
        let f = findings(&both, &[remediable("ContainerDown")]);
        assert_eq!(f.len(), 2, "{f:#?}");
        assert!(f.iter().all(|f| f.contains("send_resolved is false: the remediator never learns that alert ContainerDown (rules.yml) resolved")), "{f:#?}");
    }

    #[test]
    fn a_replica_sent_other_credentials_is_a_finding() {
        for (second, shown) in [
            ("send_resolved: true", "none"),
            (
                "http_config: {authorization: {credentials_file: /run/secrets/other}}",
                "Bearer credentials from file /run/secrets/other",
            ),
            (
                "http_config: {basic_auth: {username: am, password_file: /run/secrets/token}}",
                "basic auth as \"am\", password from file /run/secrets/token",
            ),
            (
                "http_config: {authorization: {credentials: s3cret}}",
                "Bearer credentials written in the file",
            ),
        ] {
            let f = findings(&one_receiver(second), &[remediable("ContainerDown")]);
            assert_eq!(
                f,
                [format!(
                    "receivers[1].webhook_configs[1]: its credentials to http://127.0.0.1:8792/webhook \
                     ({shown}) differ from those of receivers[1].webhook_configs[0] to \
                     http://127.0.0.1:8791/webhook (Bearer credentials from file \
                     /run/secrets/token): replicas share one configuration and accept the same \
                     credentials, so one of the two webhooks is refused (401) and its replica gets \
                     no alert"
                )],
                "{second}"
            );
            assert!(!f[0].contains("s3cret"), "a secret is never shown");
        }
        // The older bearer_token_file, and a type written out, are the same credentials.
        let same = one_receiver("http_config: {bearer_token_file: /run/secrets/token}");
        assert!(findings(&same, &[remediable("ContainerDown")]).is_empty());
        let same = one_receiver(
            "http_config: {authorization: {type: Bearer, credentials_file: /run/secrets/token}}",
        );
        assert!(findings(&same, &[remediable("ContainerDown")]).is_empty());
    }

    #[test]
    fn a_replica_limited_in_alerts_per_notification_is_a_finding() {
        let f = findings(
            &one_receiver("max_alerts: 10\n        http_config: {authorization: {credentials_file: /run/secrets/token}}"),
            &[remediable("ContainerDown")],
        );
        assert_eq!(
            f,
            [
                "receivers[1].webhook_configs[1]: max_alerts 10 drops alerts beyond it from a \
              notification, alert ContainerDown (rules.yml) among them"
            ]
        );
    }
}
