//! Action kinds, one module each, dispatched by one exhaustive `match`.
//!
//! An action only acts: authentication, matching, cooldowns, locks, persistence, verification
//! and audit belong to the pipeline. Every action receives a [`Context`] holding its target,
//! rule and the allow-listed names chosen by labels, and nothing taken from labels otherwise.

mod ads_route;
mod compose;
mod container;
mod http_sequence;

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Rule, Target};
use crate::docker::DockerClient;
use crate::store::Selection;

pub use container::check_running;

/// The kinds of action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Restart an allow-listed container through the Docker Engine API.
    ContainerRestart,
    /// Start an allow-listed container through the Docker Engine API.
    ContainerStart,
    /// Ordered admin-API calls with delays and expected statuses.
    HttpSequence,
    /// A native TwinCAT route add over UDP.
    AdsRouteAdd,
    /// `docker compose -f FILE up -d`.
    ComposeUp,
}

impl ActionKind {
    /// Every kind, for metrics initialisation and docs.
    pub const ALL: [ActionKind; 5] = [
        ActionKind::ContainerRestart,
        ActionKind::ContainerStart,
        ActionKind::HttpSequence,
        ActionKind::AdsRouteAdd,
        ActionKind::ComposeUp,
    ];

    /// The configuration name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::ContainerRestart => "container_restart",
            ActionKind::ContainerStart => "container_start",
            ActionKind::HttpSequence => "http_sequence",
            ActionKind::AdsRouteAdd => "ads_route_add",
            ActionKind::ComposeUp => "compose_up",
        }
    }

    /// Parses a configuration name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Checks that `target` has what this kind needs.
    ///
    /// # Errors
    /// A message naming what is missing.
    pub fn check_target(self, t: &Target, has_container_label: bool) -> Result<(), String> {
        match self {
            ActionKind::ContainerRestart | ActionKind::ContainerStart => match &t.docker {
                None => Err(format!("{} needs a `docker` section", self.as_str())),
                Some(d) if !has_container_label && d.containers.len() != 1 => Err(
                    "without `container_label` the target must list exactly one container".into(),
                ),
                Some(_) => Ok(()),
            },
            ActionKind::HttpSequence => t
                .http
                .as_ref()
                .map(|_| ())
                .ok_or_else(|| "http_sequence needs an `http` section".into()),
            ActionKind::AdsRouteAdd => t
                .ads
                .as_ref()
                .map(|_| ())
                .ok_or_else(|| "ads_route_add needs an `ads` section".into()),
            ActionKind::ComposeUp => t
                .compose
                .as_ref()
                .map(|_| ())
                .ok_or_else(|| "compose_up needs a `compose` section".into()),
        }
    }

    /// Whether the action names a container that verification must then find running.
    #[must_use]
    pub fn acts_on_container(self) -> bool {
        matches!(
            self,
            ActionKind::ContainerRestart | ActionKind::ContainerStart
        )
    }
}

/// Everything an action may use.
pub struct Context<'a> {
    /// The Docker Engine.
    pub docker: &'a DockerClient,
    /// The process' shared HTTP client.
    pub http: &'a reqwest::Client,
    /// The target, from the configuration.
    pub target: &'a Target,
    /// The rule, from the configuration.
    pub rule: &'a Rule,
    /// Allow-listed names chosen by labels.
    pub selection: &'a Selection,
}

/// Why an action did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// It ran and failed: counts as a failed attempt.
    #[error("{0}")]
    Failed(String),
    /// It was refused before acting (for example, a container without the opt-in label).
    #[error("{0}")]
    Denied(String),
}

/// Runs the action; returns a short description of what was done.
///
/// # Errors
/// A failure or a refusal, with its reason.
pub async fn run(kind: ActionKind, ctx: &Context<'_>) -> Result<String, ActionError> {
    match kind {
        ActionKind::ContainerRestart => container::restart(ctx).await,
        ActionKind::ContainerStart => container::start(ctx).await,
        ActionKind::HttpSequence => http_sequence::run(ctx).await,
        ActionKind::AdsRouteAdd => ads_route::run(ctx).await,
        ActionKind::ComposeUp => compose::run(ctx).await,
    }
}

/// The checks an action makes before acting, run alone in dry-run mode so a dry run reports a
/// denial the real run would meet (such as a container without the opt-in label).
///
/// # Errors
/// A refusal, or a failure to check.
pub async fn preflight(kind: ActionKind, ctx: &Context<'_>) -> Result<(), ActionError> {
    match kind {
        ActionKind::ContainerRestart | ActionKind::ContainerStart => {
            container::prepare(ctx).await.map(|_| ())
        }
        ActionKind::HttpSequence | ActionKind::AdsRouteAdd | ActionKind::ComposeUp => Ok(()),
    }
}

/// Sleeps, saturating absurd configuration values.
pub(crate) async fn pause(d: Option<Duration>) {
    if let Some(d) = d.filter(|d| !d.is_zero()) {
        tokio::time::sleep(d).await;
    }
}
