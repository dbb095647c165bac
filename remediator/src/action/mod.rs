//! Action kinds, one module each, behind one enum dispatched by exhaustive `match`.
//!
//! Each kind owns its data: the target section it needs (`docker`, `http`, `ads`, `compose`,
//! `systemd`, `cleanup`),
//! the rule keys it takes, their validation, how alert labels select among its allow-lists,
//! how a selection becomes the canonical subject, and `run`. The configuration loader hands
//! each rule's action its own typed section, so an action never re-checks what the loader
//! proved. An action only acts: matching, incidents, locks, persistence, verification and
//! audit belong to the pipeline.
//!
//! This module imports neither `config` nor `store`; both import it.

pub mod ads_route;
pub mod cleanup;
pub mod compose;
pub mod container;
pub mod http_sequence;
pub mod systemd;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stackmedic_common::config::{self as common, ConfigErrors};

use crate::docker::{DockerClient, Engine};
use crate::systemd_bus::SystemdBuses;
use crate::vocab::vocabulary;

vocabulary! {
    /// The kinds of action, as named by a rule's `action`.
    pub enum ActionKind {
        /// Restart an allow-listed container through the Docker Engine API.
        ContainerRestart = "container_restart",
        /// Start an allow-listed container through the Docker Engine API.
        ContainerStart = "container_start",
        /// Ordered admin-API calls with delays and expected statuses.
        HttpSequence = "http_sequence",
        /// A native TwinCAT route add over UDP.
        AdsRouteAdd = "ads_route_add",
        /// `docker compose -f FILE up -d`.
        ComposeUp = "compose_up",
        /// Restart an allow-listed systemd unit over D-Bus.
        SystemdRestart = "systemd_restart",
        /// Start an allow-listed systemd unit over D-Bus.
        SystemdStart = "systemd_start",
        /// Remove old files under one configured folder.
        Cleanup = "cleanup",
    }
}

impl ActionKind {
    /// The target section this kind acts through.
    #[must_use]
    pub fn section(self) -> &'static str {
        match self {
            ActionKind::ContainerRestart | ActionKind::ContainerStart => container::SECTION,
            ActionKind::HttpSequence => http_sequence::SECTION,
            ActionKind::AdsRouteAdd => ads_route::SECTION,
            ActionKind::ComposeUp => compose::SECTION,
            ActionKind::SystemdRestart | ActionKind::SystemdStart => systemd::SECTION,
            ActionKind::Cleanup => cleanup::SECTION,
        }
    }

    /// This kind's rule keys, besides the keys every rule has.
    #[must_use]
    pub fn rule_keys(self) -> &'static [&'static str] {
        match self {
            ActionKind::ContainerRestart | ActionKind::ContainerStart => {
                common::field_names::<container::RuleParams>()
            }
            ActionKind::HttpSequence => common::field_names::<http_sequence::RuleParams>(),
            ActionKind::AdsRouteAdd => common::field_names::<ads_route::RuleParams>(),
            ActionKind::ComposeUp => common::field_names::<compose::RuleParams>(),
            ActionKind::SystemdRestart | ActionKind::SystemdStart => {
                common::field_names::<systemd::RuleParams>()
            }
            ActionKind::Cleanup => common::field_names::<cleanup::RuleParams>(),
        }
    }

    /// Parses this kind's rule keys (everything of the rule but the keys every rule has),
    /// recording problems under `path`.
    pub fn parse_params(
        self,
        keys: &Value,
        path: &str,
        errs: &mut ConfigErrors,
    ) -> Option<RuleParams> {
        Some(match self {
            ActionKind::ContainerRestart => {
                RuleParams::ContainerRestart(common::typed(keys, path, errs)?)
            }
            ActionKind::ContainerStart => {
                RuleParams::ContainerStart(common::typed(keys, path, errs)?)
            }
            ActionKind::HttpSequence => RuleParams::HttpSequence(common::typed(keys, path, errs)?),
            ActionKind::AdsRouteAdd => RuleParams::AdsRouteAdd(common::typed(keys, path, errs)?),
            ActionKind::ComposeUp => RuleParams::ComposeUp(common::typed(keys, path, errs)?),
            ActionKind::SystemdRestart => {
                RuleParams::SystemdRestart(common::typed(keys, path, errs)?)
            }
            ActionKind::SystemdStart => RuleParams::SystemdStart(common::typed(keys, path, errs)?),
            ActionKind::Cleanup => RuleParams::Cleanup(common::typed(keys, path, errs)?),
        })
    }
}

/// The target section keys, each once, in kind order.
#[must_use]
pub fn section_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = Vec::new();
    for kind in ActionKind::ALL {
        if !keys.contains(&kind.section()) {
            keys.push(kind.section());
        }
    }
    keys
}

/// A target's kind sections, each parsed into the type of the kind that uses it.
#[derive(Debug, Clone, Default)]
pub struct Sections {
    /// Containers the target may restart or start.
    pub docker: Option<Arc<container::DockerTarget>>,
    /// An admin API.
    pub http: Option<Arc<http_sequence::HttpTarget>>,
    /// A TwinCAT router.
    pub ads: Option<Arc<ads_route::AdsTarget>>,
    /// A compose stack.
    pub compose: Option<Arc<compose::ComposeTarget>>,
    /// Units of a service manager.
    pub systemd: Option<Arc<systemd::SystemdTarget>>,
    /// A folder to clean up.
    pub cleanup: Option<Arc<cleanup::CleanupTarget>>,
    /// Sections present in the file that have problems of their own (reported): a rule needing
    /// one is not reported again as lacking it or as not fitting it.
    pub failed: Vec<&'static str>,
}

impl Sections {
    /// Parses the sections present in a target mapping at `path`; `engine` is the default
    /// Docker Engine, for a `docker` section that names none.
    pub fn load(
        target: &serde_json::Map<String, Value>,
        path: &str,
        engine: &Arc<Engine>,
        errs: &mut ConfigErrors,
    ) -> Sections {
        let mut s = Sections::default();
        for kind in ActionKind::ALL {
            let key = kind.section();
            let Some(v) = target.get(key) else { continue };
            let p = common::join(path, key);
            let loaded = match kind {
                ActionKind::ContainerRestart | ActionKind::ContainerStart => {
                    if s.docker.is_none() && !s.failed.contains(&key) {
                        s.docker = container::DockerTarget::load(v, &p, engine, errs).map(Arc::new);
                    }
                    s.docker.is_some()
                }
                ActionKind::HttpSequence => {
                    s.http = http_sequence::HttpTarget::load(v, &p, errs).map(Arc::new);
                    s.http.is_some()
                }
                ActionKind::AdsRouteAdd => {
                    s.ads = ads_route::AdsTarget::load(v, &p, errs).map(Arc::new);
                    s.ads.is_some()
                }
                ActionKind::ComposeUp => {
                    s.compose = compose::ComposeTarget::load(v, &p, errs).map(Arc::new);
                    s.compose.is_some()
                }
                ActionKind::SystemdRestart | ActionKind::SystemdStart => {
                    if s.systemd.is_none() && !s.failed.contains(&key) {
                        s.systemd = systemd::SystemdTarget::load(v, &p, errs).map(Arc::new);
                    }
                    s.systemd.is_some()
                }
                ActionKind::Cleanup => {
                    s.cleanup = cleanup::CleanupTarget::load(v, &p, errs).map(Arc::new);
                    s.cleanup.is_some()
                }
            };
            // A section with a problem of its own (loaded or not) is not reported again by the
            // rules that act through it.
            if (!loaded || errs.has(&p)) && !s.failed.contains(&key) {
                s.failed.push(key);
            }
        }
        s
    }
}

impl Sections {
    /// The dependencies its sections declare, as subjects: `docker.depends_on`, and the
    /// compose file's `depends_on`.
    #[must_use]
    pub fn dependencies(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(d) = &self.docker {
            for (app, deps) in &d.depends_on {
                for dep in deps {
                    out.push((format!("container:{app}"), format!("container:{dep}")));
                }
            }
        }
        if let Some(c) = &self.compose {
            for (app, dep) in c.dependencies() {
                out.push((format!("container:{app}"), format!("container:{dep}")));
            }
        }
        out
    }
}

/// A rule's kind-specific keys, one variant per kind.
#[derive(Debug, Clone)]
pub enum RuleParams {
    /// `container_label`.
    ContainerRestart(container::RuleParams),
    /// `container_label`.
    ContainerStart(container::RuleParams),
    /// `params` and `steps`.
    HttpSequence(http_sequence::RuleParams),
    /// No keys.
    AdsRouteAdd(ads_route::RuleParams),
    /// No keys.
    ComposeUp(compose::RuleParams),
    /// `unit_label`.
    SystemdRestart(systemd::RuleParams),
    /// `unit_label`.
    SystemdStart(systemd::RuleParams),
    /// No keys.
    Cleanup(cleanup::RuleParams),
}

impl RuleParams {
    /// Checks what does not depend on the target (such as an `http_sequence`'s steps).
    pub fn validate(&self, path: &str, errs: &mut ConfigErrors) {
        match self {
            RuleParams::HttpSequence(p) => p.validate(path, errs),
            RuleParams::ContainerRestart(_)
            | RuleParams::ContainerStart(_)
            | RuleParams::AdsRouteAdd(_)
            | RuleParams::ComposeUp(_)
            | RuleParams::SystemdRestart(_)
            | RuleParams::SystemdStart(_)
            | RuleParams::Cleanup(_) => {}
        }
    }

    /// The action of a rule on one target, or a message saying what the target lacks.
    ///
    /// # Errors
    /// When the target has no section for this kind, or the section does not fit the rule.
    pub fn bind(&self, sections: &Sections) -> Result<Action, String> {
        let missing =
            |kind: ActionKind| format!("{kind} needs the target section `{}`", kind.section());
        Ok(match self {
            RuleParams::ContainerRestart(p) => {
                let d = sections
                    .docker
                    .clone()
                    .ok_or_else(|| missing(ActionKind::ContainerRestart))?;
                Action::ContainerRestart(container::ContainerAction::bind(
                    container::Mode::Restart,
                    d,
                    p,
                )?)
            }
            RuleParams::ContainerStart(p) => {
                let d = sections
                    .docker
                    .clone()
                    .ok_or_else(|| missing(ActionKind::ContainerStart))?;
                Action::ContainerStart(container::ContainerAction::bind(
                    container::Mode::Start,
                    d,
                    p,
                )?)
            }
            RuleParams::HttpSequence(p) => {
                let h = sections
                    .http
                    .clone()
                    .ok_or_else(|| missing(ActionKind::HttpSequence))?;
                Action::HttpSequence(http_sequence::Sequence::bind(h, p))
            }
            RuleParams::AdsRouteAdd(_) => {
                let a = sections
                    .ads
                    .clone()
                    .ok_or_else(|| missing(ActionKind::AdsRouteAdd))?;
                Action::AdsRouteAdd(ads_route::RouteAdd { target: a })
            }
            RuleParams::ComposeUp(p) => {
                let c = sections
                    .compose
                    .clone()
                    .ok_or_else(|| missing(ActionKind::ComposeUp))?;
                let container = match &p.container_label {
                    None => None,
                    Some(label) => {
                        let allowed = sections
                            .docker
                            .as_ref()
                            .map(|d| d.containers.clone())
                            .filter(|c| !c.is_empty())
                            .ok_or_else(|| {
                                "compose_up with `container_label` needs the target's `docker.containers`, the allow-list the label chooses from".to_string()
                            })?;
                        Some((label.clone(), allowed))
                    }
                };
                Action::ComposeUp(compose::ComposeUp {
                    target: c,
                    container,
                })
            }
            RuleParams::SystemdRestart(p) => {
                let t = sections
                    .systemd
                    .clone()
                    .ok_or_else(|| missing(ActionKind::SystemdRestart))?;
                Action::SystemdRestart(systemd::UnitAction::bind(systemd::Mode::Restart, t, p)?)
            }
            RuleParams::SystemdStart(p) => {
                let t = sections
                    .systemd
                    .clone()
                    .ok_or_else(|| missing(ActionKind::SystemdStart))?;
                Action::SystemdStart(systemd::UnitAction::bind(systemd::Mode::Start, t, p)?)
            }
            RuleParams::Cleanup(_) => {
                let c = sections
                    .cleanup
                    .clone()
                    .ok_or_else(|| missing(ActionKind::Cleanup))?;
                Action::Cleanup(cleanup::Cleanup { target: c })
            }
        })
    }
}

/// What a rule does to one target, with that target's section.
#[derive(Debug, Clone)]
pub enum Action {
    /// See [`container::ContainerAction`].
    ContainerRestart(container::ContainerAction),
    /// See [`container::ContainerAction`].
    ContainerStart(container::ContainerAction),
    /// See [`http_sequence::Sequence`].
    HttpSequence(http_sequence::Sequence),
    /// See [`ads_route::RouteAdd`].
    AdsRouteAdd(ads_route::RouteAdd),
    /// See [`compose::ComposeUp`].
    ComposeUp(compose::ComposeUp),
    /// See [`systemd::UnitAction`].
    SystemdRestart(systemd::UnitAction),
    /// See [`systemd::UnitAction`].
    SystemdStart(systemd::UnitAction),
    /// See [`cleanup::Cleanup`].
    Cleanup(cleanup::Cleanup),
}

/// Values an alert label must take for an action to act, as the configuration writes them;
/// read by the contract check (`--config.check --rules.file …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    /// Where the values are written (`params.stream.allowed`, `docker.containers`).
    pub key: String,
    /// The label.
    pub label: String,
    /// The values.
    pub values: Vec<String>,
}

/// What alert labels chose among an action's allow-lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// The container, for container actions: the label's value at first, the name the Engine
    /// reports once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Path parameters of an `http_sequence`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// The unit, for systemd actions: the allow-listed name at first, the unit's primary name
    /// once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// What an action may use besides its own data.
pub struct Context<'a> {
    /// The Docker Engines' clients, one per engine.
    pub docker: &'a DockerClient,
    /// The process' shared HTTP client.
    pub http: &'a reqwest::Client,
    /// Connections to service managers' buses.
    pub systemd: &'a SystemdBuses,
}

/// Why an action did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ActionError {
    /// It ran and failed: counts as a failed attempt.
    #[error("{0}")]
    Failed(String),
    /// It was refused before acting (for example, a container without the opt-in label).
    #[error("{0}")]
    Denied(String),
}

impl Action {
    /// The kind.
    #[must_use]
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::ContainerRestart(_) => ActionKind::ContainerRestart,
            Action::ContainerStart(_) => ActionKind::ContainerStart,
            Action::HttpSequence(_) => ActionKind::HttpSequence,
            Action::AdsRouteAdd(_) => ActionKind::AdsRouteAdd,
            Action::ComposeUp(_) => ActionKind::ComposeUp,
            Action::SystemdRestart(_) => ActionKind::SystemdRestart,
            Action::SystemdStart(_) => ActionKind::SystemdStart,
            Action::Cleanup(_) => ActionKind::Cleanup,
        }
    }

    /// The allow-lists the alert's labels are checked against.
    #[must_use]
    pub fn allow_lists(&self) -> Vec<AllowList> {
        match self {
            Action::ContainerRestart(a) | Action::ContainerStart(a) => {
                a.allow_list().into_iter().collect()
            }
            Action::HttpSequence(a) => a.allow_lists(),
            Action::SystemdRestart(a) | Action::SystemdStart(a) => {
                a.allow_list().into_iter().collect()
            }
            Action::ComposeUp(a) => a.allow_list().into_iter().collect(),
            Action::AdsRouteAdd(_) | Action::Cleanup(_) => Vec::new(),
        }
    }

    /// Every selection its allow-lists permit, or `None` when they do not bound it (a
    /// container chosen by an opt-in label).
    #[must_use]
    pub fn selections(&self) -> Option<Vec<Selection>> {
        match self {
            Action::ContainerRestart(a) | Action::ContainerStart(a) => a.selections(),
            Action::HttpSequence(a) => Some(a.selections()),
            Action::SystemdRestart(a) | Action::SystemdStart(a) => Some(a.selections()),
            Action::ComposeUp(a) => Some(a.selections()),
            Action::AdsRouteAdd(_) | Action::Cleanup(_) => Some(vec![Selection::default()]),
        }
    }

    /// Whether the selection names a container that is allow-listed by name: then that name
    /// is its subject even when the Engine cannot be asked.
    #[must_use]
    pub fn allow_listed(&self, selection: &Selection) -> bool {
        match (self, &selection.container) {
            (Action::ContainerRestart(_) | Action::ContainerStart(_), Some(c)) => self
                .selections()
                .is_some_and(|all| all.iter().any(|s| s.container.as_deref() == Some(c))),
            _ => false,
        }
    }

    /// Lets the alert's labels choose among the allow-lists.
    ///
    /// # Errors
    /// Why the labels are refused (a value outside an allow-list, an invalid name).
    pub fn select(&self, labels: &BTreeMap<String, String>) -> Result<Selection, String> {
        match self {
            Action::ContainerRestart(a) | Action::ContainerStart(a) => a.select(labels),
            Action::HttpSequence(a) => a.select(labels),
            Action::SystemdRestart(a) | Action::SystemdStart(a) => a.select(labels),
            Action::ComposeUp(a) => a.select(labels),
            Action::AdsRouteAdd(_) | Action::Cleanup(_) => Ok(Selection::default()),
        }
    }

    /// The subject of a selection on `target`: what incidents and locks apply to, one per real
    /// thing whatever target, rule or alias names it. A container is `container:NAME` (the name
    /// the Engine reports), also for a `compose_up` that brings it back, with `@ADDRESS` when
    /// the target's engine is not the default one (a `compose` target is always on the
    /// default engine); a systemd unit
    /// `unit:NAME` (its primary name), with `@BUS` when the target names a bus other than the
    /// system bus; a `compose_up` without a container `compose:PROJECT`; an `http_sequence`
    /// with parameters `target?name=value&…`; any other the target.
    #[must_use]
    pub fn subject(&self, target: &str, selection: &Selection) -> String {
        match self {
            Action::ContainerRestart(a) | Action::ContainerStart(a) => a.subject(selection),
            Action::ComposeUp(a) => match &selection.container {
                Some(c) => format!("container:{c}"),
                None => format!("compose:{}", a.target.project()),
            },
            Action::SystemdRestart(a) | Action::SystemdStart(a) => {
                let unit = selection.unit.as_deref().unwrap_or("");
                match a.bus() {
                    bus if bus == crate::systemd_bus::DEFAULT_SYSTEM_BUS => format!("unit:{unit}"),
                    bus => format!("unit:{unit}@{bus}"),
                }
            }
            Action::HttpSequence(_) if !selection.params.is_empty() => {
                let parts: Vec<String> = selection
                    .params
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!("{target}?{}", parts.join("&"))
            }
            Action::HttpSequence(_) | Action::AdsRouteAdd(_) | Action::Cleanup(_) => {
                target.to_string()
            }
        }
    }

    /// Makes a selection canonical before the incident is decided: a container named by full
    /// ID, ID prefix or name becomes the name the Engine reports, checked against the
    /// allow-list and the opt-in label; a unit named by an alias becomes its primary name.
    ///
    /// # Errors
    /// `Denied` when the resolved thing may not be acted on; `Failed` when it cannot be
    /// resolved now (the selection then stays as the labels gave it).
    pub async fn resolve(
        &self,
        cx: &Context<'_>,
        selection: &Selection,
    ) -> Result<Selection, ActionError> {
        match self {
            Action::ContainerRestart(a) | Action::ContainerStart(a) => {
                a.resolve(cx, selection).await
            }
            Action::SystemdRestart(a) | Action::SystemdStart(a) => a.resolve(cx, selection).await,
            Action::HttpSequence(_)
            | Action::AdsRouteAdd(_)
            | Action::ComposeUp(_)
            | Action::Cleanup(_) => Ok(selection.clone()),
        }
    }

    /// Runs the action; returns a short description of what was done.
    ///
    /// # Errors
    /// A failure or a refusal, with its reason.
    pub async fn run(
        &self,
        cx: &Context<'_>,
        selection: &Selection,
    ) -> Result<String, ActionError> {
        match self {
            Action::ContainerRestart(a) | Action::ContainerStart(a) => a.run(cx, selection).await,
            Action::HttpSequence(a) => a.run(cx, selection).await,
            Action::AdsRouteAdd(a) => a.run().await,
            Action::ComposeUp(a) => a.run().await,
            Action::SystemdRestart(a) | Action::SystemdStart(a) => a.run(cx, selection).await,
            Action::Cleanup(a) => a.run().await,
        }
    }

    /// What a dry run of the action would do, when the kind can tell without acting (the
    /// files a cleanup would remove, the state of the unit a systemd action would act on).
    pub async fn dry_run(&self, cx: &Context<'_>, selection: &Selection) -> Option<String> {
        match self {
            Action::Cleanup(a) => Some(a.dry_run().await),
            Action::SystemdRestart(a) | Action::SystemdStart(a) => {
                Some(a.dry_run(cx, selection).await)
            }
            Action::ContainerRestart(_)
            | Action::ContainerStart(_)
            | Action::HttpSequence(_)
            | Action::AdsRouteAdd(_)
            | Action::ComposeUp(_) => None,
        }
    }

    /// What the action's own verification checks (`unit x.service`), for kinds that have one.
    #[must_use]
    pub fn checks(&self, selection: &Selection) -> Option<String> {
        match self {
            Action::SystemdRestart(_) | Action::SystemdStart(_) => {
                Some(format!("unit {}", selection.unit.as_deref().unwrap_or("")))
            }
            Action::ContainerRestart(_)
            | Action::ContainerStart(_)
            | Action::HttpSequence(_)
            | Action::AdsRouteAdd(_)
            | Action::ComposeUp(_)
            | Action::Cleanup(_) => None,
        }
    }

    /// One round of the action's own verification (see [`Action::checks`]): `Ok` with a token
    /// that changes when the thing acted on starts again, or why the outcome is not good.
    /// `Ok` with an empty token for kinds without one.
    ///
    /// # Errors
    /// The state in words when it is not good.
    pub async fn check(&self, cx: &Context<'_>, selection: &Selection) -> Result<String, String> {
        match self {
            Action::SystemdRestart(a) | Action::SystemdStart(a) => a.check(cx, selection).await,
            Action::ContainerRestart(_)
            | Action::ContainerStart(_)
            | Action::HttpSequence(_)
            | Action::AdsRouteAdd(_)
            | Action::ComposeUp(_)
            | Action::Cleanup(_) => Ok(String::new()),
        }
    }

    /// The containers the action acted on, which verification must find running.
    #[must_use]
    pub fn acted_on(&self, selection: &Selection) -> Vec<String> {
        match self {
            Action::ContainerRestart(_) | Action::ContainerStart(_) | Action::ComposeUp(_) => {
                selection.container.iter().cloned().collect()
            }
            Action::HttpSequence(_)
            | Action::AdsRouteAdd(_)
            | Action::SystemdRestart(_)
            | Action::SystemdStart(_)
            | Action::Cleanup(_) => Vec::new(),
        }
    }
}

/// Sleeps, skipping zero.
pub(crate) async fn pause(d: Option<std::time::Duration>) {
    if let Some(d) = d.filter(|d| !d.is_zero()) {
        tokio::time::sleep(d).await;
    }
}
