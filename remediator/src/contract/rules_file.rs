//! Prometheus rule files as the contract reads them: the alerting rules, each with its static
//! labels and what its expression says about the labels it yields.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use stackmedic_common::config as common;

use super::domain::{Domain, Labels};
use super::promql::{self, Hints};

/// The label that marks an alert as remediable.
pub const REMEDIATION_LABEL: &str = "remediation";

/// One alerting rule.
#[derive(Debug, Clone)]
pub struct Alert {
    /// The file it is in, as given.
    pub file: String,
    /// Its group.
    pub group: String,
    /// Its name.
    pub name: String,
    /// The labels its alerts carry, as far as knowable.
    pub labels: Labels,
    /// Its `remediation` label, when it has one.
    pub remediation: Option<String>,
    /// Its expression with runs of white space made one space, to tell alerts of the same
    /// condition (a remediable alert and its `…Persistent` twin).
    pub expr: String,
}

#[derive(Debug, Deserialize)]
struct RuleFile {
    #[serde(default)]
    groups: Vec<Group>,
}

#[derive(Debug, Deserialize)]
struct Group {
    name: String,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    alert: Option<String>,
    expr: Option<serde_json::Value>,
    #[serde(default)]
    labels: BTreeMap<String, serde_json::Value>,
}

/// The alerts of a rule file; `notes` gets a line for each expression that could not be read
/// (its alert's labels are then taken as unknown).
///
/// # Errors
/// A message when the file cannot be read or is not a rule file.
pub fn read(path: &Path, hints: &dyn Hints, notes: &mut Vec<String>) -> Result<Vec<Alert>, String> {
    let file = path.display().to_string();
    let value = common::read_yaml_file(path).map_err(|e| {
        e.problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let parsed: RuleFile = serde_json::from_value(value)
        .map_err(|e| format!("{file}: not a Prometheus rule file: {e}"))?;
    let mut alerts = Vec::new();
    for group in parsed.groups {
        for rule in group.rules {
            let Some(name) = rule.alert else { continue };
            let expr = match &rule.expr {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let mut labels = promql::labels_of(&expr, hints).unwrap_or_else(|e| {
                notes.push(format!(
                    "{file}: alert {name}: its expression was not understood ({e}); its labels are taken as unknown"
                ));
                Labels {
                    known: BTreeMap::new(),
                    open: true,
                }
            });
            let mut remediation = None;
            for (k, v) in &rule.labels {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if k == REMEDIATION_LABEL && !text.is_empty() {
                    remediation = Some(text.clone());
                }
                let domain = if text.contains("{{") {
                    Domain::any()
                } else {
                    Domain::one_of([text], format!("set by the rule in {file}"))
                };
                labels.known.insert(k.clone(), domain);
            }
            labels.known.insert(
                "alertname".into(),
                Domain::one_of([name.clone()], String::new()),
            );
            alerts.push(Alert {
                file: file.clone(),
                group: group.name.clone(),
                name,
                labels,
                remediation,
                expr: expr.split_whitespace().collect::<Vec<_>>().join(" "),
            });
        }
    }
    Ok(alerts)
}
