//! `rules[]`: which firing alerts lead to which action on which target. The keys every rule
//! has are parsed here; the rest belong to the rule's action kind, which parses them and binds
//! them to each target the rule may act on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use stackmedic_common::config::{self as common, duration, ConfigErrors};

use super::targets::Target;
use crate::action::{Action, ActionKind};
use crate::matcher::Matcher;

/// A rule (`rules[]`).
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// All must match the alert's labels.
    pub matchers: Vec<Matcher>,
    /// The action kind.
    pub kind: ActionKind,
    /// How the target is chosen.
    pub choice: TargetChoice,
    /// The action on each target the rule may choose, by target name.
    pub actions: BTreeMap<String, Action>,
    /// Dry-run this rule even when the global switch is off.
    pub dry_run: bool,
    /// Wait this long after accepting before acting; a resolve in between cancels the job.
    pub delay: Duration,
}

/// How a rule's target is chosen.
#[derive(Debug, Clone)]
pub enum TargetChoice {
    /// Always this target.
    Fixed(String),
    /// The value of `label`, which must be one of `allowed`.
    Label {
        /// The label.
        label: String,
        /// Target names the label may pick.
        allowed: Vec<String>,
    },
}

/// Keys every rule has; the others belong to its action kind.
const COMMON_KEYS: [&str; 8] = [
    "name",
    "matchers",
    "action",
    "target",
    "target_label",
    "targets",
    "dry_run",
    "delay",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    #[serde(default)]
    matchers: Vec<Matcher>,
    action: String,
    target: Option<String>,
    target_label: Option<String>,
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default, with = "duration::option")]
    delay: Option<Duration>,
}

/// Parses one rule at `path` against the loaded targets; `unusable` are the names of targets
/// in the file that could not be loaded.
pub fn load(
    v: &Value,
    path: &str,
    targets: &BTreeMap<String, Arc<Target>>,
    unusable: &BTreeSet<String>,
    errs: &mut ConfigErrors,
) -> Option<Rule> {
    let Some(map) = v.as_object() else {
        errs.push(
            path,
            format!("expected a mapping, found {}", common::kind_of(v)),
        );
        return None;
    };
    let (common_part, kind_part): (serde_json::Map<_, _>, serde_json::Map<_, _>) = map
        .clone()
        .into_iter()
        .partition(|(k, _)| COMMON_KEYS.contains(&k.as_str()));
    let f: RuleFile = common::typed(&Value::Object(common_part), path, errs)?;
    if f.name.is_empty() {
        errs.push(common::join(path, "name"), "must not be empty");
    }
    let kind = ActionKind::parse(&f.action);
    if kind.is_none() && !errs.has(&common::join(path, "action")) {
        let names: Vec<&str> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
        errs.push(
            common::join(path, "action"),
            format!(
                "unknown action {:?}, expected one of {}",
                f.action,
                common::quoted(&names)
            ),
        );
    }
    // The other keys belong to the action kind. A key that is not one of them is named with
    // every key a rule of this kind takes, not only the kind's own. Without a known kind they
    // cannot be told apart and are left alone.
    let mut params = None;
    if let Some(kind) = kind {
        let own = kind.rule_keys();
        let mut known: Vec<&str> = COMMON_KEYS.to_vec();
        known.extend(own);
        let mut kind_keys = serde_json::Map::new();
        for (key, value) in kind_part {
            if own.contains(&key.as_str()) {
                kind_keys.insert(key, value);
            } else {
                errs.push(
                    common::join(path, &key),
                    format!(
                        "unknown field `{key}`, expected one of {}",
                        common::quoted(&known)
                    ),
                );
            }
        }
        params = kind.parse_params(&Value::Object(kind_keys), path, errs);
        if let Some(p) = &params {
            p.validate(path, errs);
        }
    }
    let (choice, field) = match (f.target, f.target_label) {
        (Some(t), None) => {
            if !f.targets.is_empty() {
                errs.push(
                    common::join(path, "targets"),
                    "only used with `target_label`",
                );
            }
            (TargetChoice::Fixed(t), "target")
        }
        (None, Some(label)) => {
            if f.targets.is_empty() && !errs.has(&common::join(path, "targets")) {
                errs.push(
                    common::join(path, "targets"),
                    "`target_label` needs the list of targets the label may choose",
                );
            }
            (
                TargetChoice::Label {
                    label,
                    allowed: f.targets,
                },
                "targets",
            )
        }
        (None, None)
            if errs.has_any(&[
                &common::join(path, "target"),
                &common::join(path, "target_label"),
            ]) =>
        {
            return None;
        }
        _ => {
            errs.push(path, "give exactly one of `target` and `target_label`");
            return None;
        }
    };
    let names: Vec<String> = match &choice {
        TargetChoice::Fixed(t) => vec![t.clone()],
        TargetChoice::Label { allowed, .. } => allowed.clone(),
    };
    let mut actions = BTreeMap::new();
    for name in names {
        let Some(t) = targets.get(&name) else {
            if unusable.contains(&name) {
                continue;
            }
            errs.push(
                common::join(path, field),
                format!("unknown target {name:?}"),
            );
            continue;
        };
        let Some(kind) = kind else { continue };
        // A section that failed to load was reported with its own problems; a rule needing it
        // is not reported again as if the section were missing.
        if t.sections.failed.contains(&kind.section()) {
            continue;
        }
        if let Some(p) = &params {
            match p.bind(&t.sections) {
                Ok(a) => {
                    actions.insert(name, a);
                }
                Err(e) => errs.push(
                    common::join(path, "action"),
                    format!("target {name:?}: {e}"),
                ),
            }
        }
    }
    let kind = kind?;
    Some(Rule {
        name: f.name,
        matchers: f.matchers,
        kind,
        choice,
        actions,
        dry_run: f.dry_run,
        delay: f.delay.unwrap_or_default(),
    })
}
