//! `systemd_restart` and `systemd_start`: a start or restart job of an allow-listed unit,
//! enqueued over systemd's D-Bus API (never a `systemctl` child), waited for until systemd
//! removes it, and judged by its result.
//!
//! A unit named by an alias is one subject with its primary name: before the incident is
//! decided the name is resolved through systemd (`LoadUnit`, `Id`). Verification then reads the
//! unit's `ActiveState` (and, for a oneshot service such as a backup, its `Result`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use stackmedic_common::config::{self as common, ConfigErrors};

use super::{ActionError, Context, Selection};
use crate::systemd_bus::{JobKind, UnitState, DEFAULT_SYSTEM_BUS};

/// The target section key.
pub const SECTION: &str = "systemd";

/// Unit types an action may start or restart.
const UNIT_SUFFIXES: [&str; 5] = [".service", ".socket", ".target", ".timer", ".path"];

/// Units a target may start or restart (`targets[].systemd`).
#[derive(Debug, Clone)]
pub struct SystemdTarget {
    /// The bus systemd is reached on.
    pub bus_address: String,
    /// The allow-list of unit names.
    pub units: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemdTargetFile {
    bus_address: Option<String>,
    #[serde(default)]
    units: Vec<String>,
}

impl SystemdTarget {
    /// Parses and checks the section at `path`.
    pub fn load(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<Self> {
        let f: SystemdTargetFile = common::typed(v, path, errs)?;
        if f.units.is_empty() && !errs.has(&common::join(path, "units")) {
            errs.push(
                common::join(path, "units"),
                "list the units the target may start or restart",
            );
        }
        for (i, u) in f.units.iter().enumerate() {
            if let Err(why) = check_unit_name(u) {
                errs.push(format!("{path}.units[{i}]"), why);
            }
        }
        let bus_address = match f.bus_address {
            Some(a) => {
                if let Err(e) = zbus::Address::try_from(a.as_str()) {
                    errs.push(
                        common::join(path, "bus_address"),
                        format!("{a:?} is not a D-Bus address: {e}"),
                    );
                }
                a
            }
            // As systemd's own tools find the system bus.
            None => std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
                .ok()
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| DEFAULT_SYSTEM_BUS.to_string()),
        };
        Some(SystemdTarget {
            bus_address,
            units: f.units,
        })
    }
}

/// Checks systemd's unit name syntax (`name[@instance].type`) for the types actions use.
///
/// # Errors
/// Why the name is refused.
pub fn check_unit_name(name: &str) -> Result<(), String> {
    let Some(suffix) = UNIT_SUFFIXES.iter().find(|s| name.ends_with(*s)) else {
        return Err(format!(
            "{name:?} is not a unit name ending in one of {}",
            UNIT_SUFFIXES.join(", ")
        ));
    };
    let stem = &name[..name.len() - suffix.len()];
    let valid_chars = stem
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\' | '@'));
    if stem.is_empty() || stem.starts_with('@') || !valid_chars || name.len() > 255 {
        return Err(format!("{name:?} is not a valid unit name"));
    }
    Ok(())
}

/// The rule keys of the systemd actions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleParams {
    /// The label naming the unit; without it the target must list exactly one.
    pub unit_label: Option<String>,
}

/// Which job the action enqueues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `RestartUnit` (starts a unit that is not running).
    Restart,
    /// `StartUnit` (nothing to do for an active unit; runs a oneshot again when it is inactive).
    Start,
}

/// A systemd action of a rule on one target.
#[derive(Debug, Clone)]
pub struct UnitAction {
    mode: Mode,
    target: Arc<SystemdTarget>,
    choice: Choice,
}

#[derive(Debug, Clone)]
enum Choice {
    Label(String),
    Fixed(String),
}

impl UnitAction {
    /// The bus of the unit's systemd.
    #[must_use]
    pub fn bus(&self) -> &str {
        &self.target.bus_address
    }

    /// The action of a rule with `params` on the section `target`.
    ///
    /// # Errors
    /// When the rule names no unit label and the target does not list exactly one unit.
    pub fn bind(
        mode: Mode,
        target: Arc<SystemdTarget>,
        params: &RuleParams,
    ) -> Result<Self, String> {
        let choice = match (&params.unit_label, target.units.as_slice()) {
            (Some(label), _) => Choice::Label(label.clone()),
            (None, [only]) => Choice::Fixed(only.clone()),
            (None, _) => {
                return Err("without `unit_label` the target must list exactly one unit".into())
            }
        };
        Ok(Self {
            mode,
            target,
            choice,
        })
    }

    /// The allow-list a unit label is checked against (none for a fixed unit).
    /// Every selection the allow-list permits.
    pub(super) fn selections(&self) -> Vec<Selection> {
        let units = match &self.choice {
            Choice::Fixed(u) => vec![u.clone()],
            Choice::Label(_) => self.target.units.clone(),
        };
        units
            .into_iter()
            .map(|u| Selection {
                unit: Some(u),
                ..Selection::default()
            })
            .collect()
    }

    pub(super) fn allow_list(&self) -> Option<super::AllowList> {
        match &self.choice {
            Choice::Label(label) => Some(super::AllowList {
                key: "systemd.units".into(),
                label: label.clone(),
                values: self.target.units.clone(),
            }),
            Choice::Fixed(_) => None,
        }
    }

    pub(super) fn select(&self, labels: &BTreeMap<String, String>) -> Result<Selection, String> {
        let unit = match &self.choice {
            Choice::Fixed(u) => u.clone(),
            Choice::Label(label) => {
                let v = labels.get(label).cloned().unwrap_or_default();
                // Only an exact allow-listed name passes, so a label never names another unit.
                if !self.target.units.contains(&v) {
                    return Err(format!(
                        "label {label}={v:?} names a unit outside the allow-list"
                    ));
                }
                v
            }
        };
        Ok(Selection {
            unit: Some(unit),
            ..Selection::default()
        })
    }

    /// Resolves the selected name to the unit's primary name; an alias of an allow-listed name
    /// is acted on under the name systemd reports.
    pub(super) async fn resolve(
        &self,
        cx: &Context<'_>,
        selection: &Selection,
    ) -> Result<Selection, ActionError> {
        let raw = unit_of(selection)?;
        let state = cx
            .systemd
            .unit_state(&self.target.bus_address, raw)
            .await
            .map_err(ActionError::Failed)?;
        Ok(Selection {
            unit: Some(state.id),
            ..selection.clone()
        })
    }

    pub(super) async fn run(
        &self,
        cx: &Context<'_>,
        selection: &Selection,
    ) -> Result<String, ActionError> {
        let unit = unit_of(selection)?;
        let bus = &self.target.bus_address;
        let before = cx
            .systemd
            .unit_state(bus, unit)
            .await
            .map_err(ActionError::Failed)?;
        if before.load_state != "loaded" {
            return Err(ActionError::Failed(format!(
                "unit {unit} is {} (LoadState), so it cannot be started",
                before.load_state
            )));
        }
        let (kind, verb) = match self.mode {
            Mode::Restart => (JobKind::Restart, "restart"),
            Mode::Start => (JobKind::Start, "start"),
        };
        let end = cx
            .systemd
            .run_job(bus, unit, kind)
            .await
            .map_err(ActionError::Failed)?;
        let after = cx.systemd.unit_state(bus, unit).await;
        let now = match &after {
            Ok(s) => describe(s),
            Err(e) => format!("state unknown: {e}"),
        };
        if end.result != "done" {
            return Err(ActionError::Failed(format!(
                "{verb} job {} of unit {unit} ended with result {:?} (was {}; now {now})",
                end.id,
                end.result,
                describe(&before)
            )));
        }
        Ok(format!(
            "{verb} job {} of unit {unit} done (was {}; now {now})",
            end.id,
            describe(&before)
        ))
    }

    /// The unit's state, for a dry run's audit.
    pub(super) async fn dry_run(&self, cx: &Context<'_>, selection: &Selection) -> String {
        let verb = match self.mode {
            Mode::Restart => "restart",
            Mode::Start => "start",
        };
        let Ok(unit) = unit_of(selection) else {
            return "no unit selected".into();
        };
        match cx.systemd.unit_state(&self.target.bus_address, unit).await {
            Ok(s) => format!("would {verb} unit {unit}, now {}", describe(&s)),
            Err(e) => format!("would {verb} unit {unit}; its state cannot be read: {e}"),
        }
    }

    /// The unit's verification state: `Ok` with a token that changes when the unit is started
    /// again (its invocation), or why it is not good.
    pub(super) async fn check(
        &self,
        cx: &Context<'_>,
        selection: &Selection,
    ) -> Result<String, String> {
        let unit = unit_of(selection).map_err(|e| e.to_string())?;
        let s = cx
            .systemd
            .unit_state(&self.target.bus_address, unit)
            .await?;
        judge(&s)
    }
}

/// Whether a unit's state is the outcome the action wants.
///
/// # Errors
/// The state in words when it is not good.
pub fn judge(s: &UnitState) -> Result<String, String> {
    if s.runs_to_completion() {
        // A finished oneshot is inactive; its last run's Result says whether it worked, and a
        // run still going on is not an outcome yet. The token stays the same: a timer starting
        // it again within stable_for is not a failure.
        let result = s.service.as_ref().map_or("", |x| x.result.as_str());
        return match (s.active_state.as_str(), result) {
            ("inactive" | "active", "success") => Ok(String::new()),
            _ => Err(format!("unit {} is {}", s.id, describe(s))),
        };
    }
    match s.active_state.as_str() {
        "active" | "reloading" => Ok(s.invocation.clone()),
        _ => Err(format!("unit {} is {}", s.id, describe(s))),
    }
}

/// `active (running)`, `failed (failed), result exit-code`.
fn describe(s: &UnitState) -> String {
    let mut out = format!("{} ({})", s.active_state, s.sub_state);
    if let Some(svc) = &s.service {
        if svc.result != "success" || s.runs_to_completion() {
            out.push_str(&format!(", result {}", svc.result));
        }
    }
    out
}

fn unit_of(selection: &Selection) -> Result<&str, ActionError> {
    selection
        .unit
        .as_deref()
        .ok_or_else(|| ActionError::Denied("no unit selected".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd_bus::ServiceState;

    #[test]
    fn unit_names_follow_systemd_syntax() {
        for ok in [
            "ai_stack_backup.service",
            "ai-stack-owui-ensure.service",
            "getty@tty1.service",
            "backup.timer",
        ] {
            assert!(check_unit_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".service",
            "a b.service",
            "../x.service",
            "x.device",
            "x",
            "@x.service",
            "x;y.service",
        ] {
            assert!(check_unit_name(bad).is_err(), "{bad}");
        }
    }

    fn action(units: &[&str], label: Option<&str>) -> Result<UnitAction, String> {
        let target = Arc::new(SystemdTarget {
            bus_address: DEFAULT_SYSTEM_BUS.into(),
            units: units.iter().map(|u| (*u).to_string()).collect(),
        });
        UnitAction::bind(
            Mode::Restart,
            target,
            &RuleParams {
                unit_label: label.map(str::to_string),
            },
        )
    }

    #[test]
    fn labels_select_only_allow_listed_units() {
        let labels = |v: &str| BTreeMap::from([("unit".to_string(), v.to_string())]);
        let a = action(&["app.service", "backup.service"], Some("unit")).unwrap();
        assert_eq!(
            a.select(&labels("app.service")).unwrap().unit.as_deref(),
            Some("app.service")
        );
        for refused in ["other.service", "", "app.service\n", "app"] {
            assert!(a
                .select(&labels(refused))
                .unwrap_err()
                .contains("outside the allow-list"));
        }
        let fixed = action(&["app.service"], None).unwrap();
        assert_eq!(
            fixed.select(&BTreeMap::new()).unwrap().unit.as_deref(),
            Some("app.service")
        );
        assert!(action(&["a.service", "b.service"], None).is_err());
    }

    fn state(active: &str, service: Option<(&str, bool, &str)>) -> UnitState {
        UnitState {
            id: "x.service".into(),
            load_state: "loaded".into(),
            active_state: active.into(),
            sub_state: "dead".into(),
            invocation: "ab".into(),
            service: service.map(|(t, remain, result)| ServiceState {
                service_type: t.into(),
                remain_after_exit: remain,
                result: result.into(),
            }),
        }
    }

    #[test]
    fn oneshots_are_judged_by_result_others_by_active_state() {
        assert_eq!(
            judge(&state("active", Some(("simple", false, "success")))).unwrap(),
            "ab"
        );
        assert!(judge(&state("failed", Some(("simple", false, "exit-code")))).is_err());
        assert!(judge(&state("activating", Some(("simple", false, "success")))).is_err());
        assert!(judge(&state("inactive", Some(("oneshot", false, "success")))).is_ok());
        assert!(judge(&state("failed", Some(("oneshot", false, "exit-code")))).is_err());
        assert!(judge(&state("activating", Some(("oneshot", false, "success")))).is_err());
        // A oneshot that stays active after exiting is judged like any other unit.
        assert!(judge(&state("inactive", Some(("oneshot", true, "success")))).is_err());
        assert!(judge(&state("active", None)).is_ok());
    }
}
