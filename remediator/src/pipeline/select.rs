//! Selection at acceptance: the rule's target (fixed, or chosen by a label among allowed
//! names) and what the alert's labels choose among the action's allow-lists.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::action::{Action, Selection};
use crate::config::{Config, Rule, Target, TargetChoice};

/// A rule's action on the chosen target with the labels' selection.
pub(super) struct Selected<'a> {
    pub target: Arc<Target>,
    pub action: &'a Action,
    pub selection: Selection,
}

/// Why an alert was denied, with the target's name when it is known.
pub(super) struct Refusal {
    pub target: String,
    pub reason: String,
}

/// Chooses the target and allow-listed names for an alert, or says why it is denied.
pub(super) fn select<'a>(
    cfg: &Config,
    rule: &'a Rule,
    labels: &BTreeMap<String, String>,
) -> Result<Selected<'a>, Refusal> {
    let target_name = match &rule.choice {
        TargetChoice::Fixed(t) => t.clone(),
        TargetChoice::Label { label, allowed } => {
            let v = labels.get(label).cloned().unwrap_or_default();
            if !allowed.contains(&v) {
                return Err(Refusal {
                    target: String::new(),
                    reason: format!("label {label}={v:?} does not name an allowed target"),
                });
            }
            v
        }
    };
    let refuse = |reason: String| Refusal {
        target: target_name.clone(),
        reason,
    };
    let (Some(target), Some(action)) = (
        cfg.targets.get(&target_name).cloned(),
        rule.actions.get(&target_name),
    ) else {
        return Err(refuse(format!("unknown target {target_name:?}")));
    };
    let selection = action.select(labels).map_err(refuse)?;
    Ok(Selected {
        target,
        action,
        selection,
    })
}
