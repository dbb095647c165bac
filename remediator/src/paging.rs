//! The `StackmedicRemediationFailed` alert of an escalated incident, as posted to Alertmanager.
//! Built by the store in the transaction that escalates, from what it holds of the incident
//! and the alert that opened it; [`crate::escalation`] posts it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::action::ActionKind;
use crate::clock::rfc3339_millis;

/// The name of the alert the remediator posts when it gives up; it never acts on it.
pub const ALERTNAME: &str = "StackmedicRemediationFailed";

/// The labels the remediator sets on every escalation, which `escalation.labels` may not
/// change: `alertname` is what keeps the remediator from acting on its own escalation, the
/// others say what was escalated (the page, the outbox's views and Alertmanager's grouping
/// read them).
pub const GUARD_LABELS: [&str; 5] = [
    "alertname",
    "original_alertname",
    "remediation_rule",
    "remediation_target",
    "remediation_action",
];

/// How escalations are labelled (`escalation.labels`); `None` where no `escalation` section is
/// configured, so nobody can be paged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageSpec {
    /// Extra labels on every escalation.
    pub labels: BTreeMap<String, String>,
}

/// What an escalation is about.
pub struct About<'a> {
    /// The labels of the alert the incident was escalated on.
    pub labels: &'a BTreeMap<String, String>,
    /// Its `startsAt`, as Alertmanager wrote it.
    pub starts_at: &'a str,
    /// The rule.
    pub rule: &'a str,
    /// The target.
    pub target: &'a str,
    /// The action kind.
    pub action: ActionKind,
    /// The canonical subject.
    pub subject: &'a str,
    /// Why: what the last attempt did and why it failed, or the flapping count.
    pub why: &'a str,
}

/// Whether `name` is a Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`), as Alertmanager
/// requires of every label of a posted alert.
#[must_use]
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The alert posted for an escalated incident. Its labels and `startsAt` are fixed here, so
/// every post is the same alert; `endsAt` is set at each post.
#[must_use]
pub fn alert(spec: &PageSpec, about: &About<'_>) -> Value {
    let mut labels = about.labels.clone();
    // Alertmanager refuses a whole alert for one invalid label name, and a refused escalation
    // would be retried forever: a sender's label that is not a label name is left out.
    labels.retain(|name, _| is_label_name(name));
    let original = labels.get("alertname").cloned().unwrap_or_default();
    labels.insert("alertname".into(), ALERTNAME.into());
    labels.insert("severity".into(), "page".into());
    labels.insert("original_alertname".into(), original.clone());
    labels.insert("remediation_rule".into(), about.rule.to_string());
    labels.insert("remediation_target".into(), about.target.to_string());
    labels.insert("remediation_action".into(), about.action.as_str().into());
    for (k, v) in &spec.labels {
        labels.insert(k.clone(), v.clone());
    }
    json!([{
        "labels": labels,
        "annotations": {
            "summary": format!("stackmedic-remediator could not fix {original} on {}", about.subject),
            "description": format!(
                "Rule {} ran {} on {} and gave up: {}. No more actions are taken on this subject until its alerts resolve or on-call resets it; a human must look.",
                about.rule, about.action, about.subject, about.why
            ),
            "remediation_tried": about.why,
            "alerts": format!("{original} since {}", about.starts_at),
        },
        "startsAt": rfc3339_millis(SystemTime::now()),
    }])
}
