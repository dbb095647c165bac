//! Containers (the Open WebUI stack, the gateway and the assistant backend): per container of a Docker Engine whose name matches a
//! regex — running, state, health status, restart count, start time, last exit code. An engine
//! that is down or gone is reported as `stackmedic_docker_up 0`, never a crash.

use std::collections::BTreeSet;
use std::sync::Mutex;

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use bollard::query_parameters::ListContainersOptions;
use bollard::Docker;
use serde::Deserialize;
use stackmedic_common::config::{join, Regex};
use stackmedic_common::ConfigErrors;

use super::{Health, Item, ProbeError, Reason, RunContext};
use crate::metrics::{Family, Samples};
use crate::support::{error_chain, lock, truncate};

pub(super) static DOCKER_UP: Family = Family::gauge(
    "stackmedic_docker_up",
    "Whether the Docker Engine answered (1) or not (0).",
);
static MATCHED: Family = Family::gauge(
    "stackmedic_containers_matched",
    "Containers whose name matches the probe's pattern.",
);
static EXISTS: Family = Family::gauge(
    "stackmedic_container_exists",
    "Whether a container named in `expected` exists (1) or not (0).",
);
static RUNNING: Family = Family::gauge(
    "stackmedic_container_running",
    "Whether the container is running (1) or not (0); 0 for an expected container that is gone.",
);
static STATE: Family = Family::gauge(
    "stackmedic_container_state",
    "State set of the container state: created, running, paused, restarting, removing, stopping, exited, dead.",
);
static HEALTH: Family = Family::gauge(
    "stackmedic_container_health_status",
    "State set of the health check status: healthy, unhealthy, starting, none (no health check).",
);
static RESTARTS: Family = Family::counter(
    "stackmedic_container_restarts_total",
    "Restarts of the container by its restart policy, as counted by the Docker Engine.",
);
static STARTED: Family = Family::gauge(
    "stackmedic_container_started_timestamp_seconds",
    "Unix time at which the container last started.",
);
static FINISHED: Family = Family::gauge(
    "stackmedic_container_finished_timestamp_seconds",
    "Unix time at which the container last stopped, by the Docker Engine's clock; its creation time while it has never run.",
);
static EXIT_CODE: Family = Family::gauge(
    "stackmedic_container_last_exit_code",
    "Exit code of the container's last run (0 while it has not exited).",
);

/// Every state the Engine reports (`State.Status`), in label order; [`state_label`] names
/// each one.
const STATES: &[&str] = &[
    "created",
    "running",
    "paused",
    "restarting",
    "removing",
    "stopping",
    "exited",
    "dead",
];

/// The `state` label of a container state; `None` when the Engine reported none. The match is
/// exhaustive, so a state a newer Engine API adds does not compile until it is listed here and
/// in [`STATES`].
fn state_label(status: ContainerStateStatusEnum) -> Option<&'static str> {
    use ContainerStateStatusEnum as S;
    match status {
        S::CREATED => Some("created"),
        S::RUNNING => Some("running"),
        S::PAUSED => Some("paused"),
        S::RESTARTING => Some("restarting"),
        S::REMOVING => Some("removing"),
        S::STOPPING => Some("stopping"),
        S::EXITED => Some("exited"),
        S::DEAD => Some("dead"),
        S::EMPTY => None,
    }
}
const HEALTH_STATES: &[&str] = &["healthy", "unhealthy", "starting", "none"];

fn match_all() -> Regex {
    Regex(regex::Regex::new(".*").expect("static regex compiles"))
}

/// Settings of a `docker` probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerConfig {
    /// Engine address, `unix:///var/run/docker.sock` by default (or `DOCKER_HOST`).
    pub host: Option<String>,
    /// Only containers whose name matches (unanchored; use `^owui$` for an exact name).
    #[serde(default = "match_all")]
    pub name_pattern: Regex,
    /// Names that must exist: a missing one is reported as not running instead of vanishing.
    #[serde(default)]
    pub expected: Vec<String>,
}

impl DockerConfig {
    /// Checks the engine address.
    pub fn validate(&mut self, path: &str, errs: &mut ConfigErrors) {
        if let Some(h) = &self.host {
            if !h.starts_with("unix://") {
                errs.push(join(path, "host"), "only unix:// sockets are supported");
            }
        }
        for (i, n) in self.expected.iter().enumerate() {
            if n.is_empty() || n.contains('/') {
                errs.push(
                    format!("{path}.expected[{i}]"),
                    format!("{n:?} is not a container name"),
                );
            }
        }
    }
}

/// A `docker` probe.
pub struct DockerProbe {
    cfg: DockerConfig,
    // Set up on first use: bollard refuses a client for a socket that does not exist (yet),
    // and an engine that is down when the exporter starts must be reported, not stop it.
    docker: Mutex<Option<Docker>>,
}

impl DockerProbe {
    /// Builds the probe; the client is set up and connected on the first run.
    ///
    /// # Errors
    /// Never at present; the signature matches the other probes.
    pub fn new(cfg: DockerConfig) -> Result<Self, String> {
        Ok(Self {
            cfg,
            docker: Mutex::new(None),
        })
    }

    fn client(&self) -> Result<Docker, bollard::errors::Error> {
        let mut slot = lock(&self.docker);
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let docker = match &self.cfg.host {
            Some(h) => Docker::connect_with_unix(h, 10, bollard::API_DEFAULT_VERSION),
            None => Docker::connect_with_local_defaults(),
        }?;
        *slot = Some(docker.clone());
        Ok(docker)
    }

    /// Lists and inspects the matching containers, and reports each with its state.
    ///
    /// # Errors
    /// `connect` when the engine is down, `docker` when it answers with an error.
    pub async fn run(&self, cx: &RunContext, out: &mut Samples) -> Result<(), ProbeError> {
        let listed = match self.client() {
            Ok(docker) => docker
                .list_containers(Some(ListContainersOptions {
                    all: true,
                    ..Default::default()
                }))
                .await
                .map(|list| (docker, list)),
            Err(e) => Err(e),
        };
        let (docker, list) = match listed {
            Ok(v) => v,
            Err(e) => {
                out.flag(&DOCKER_UP, &[], false);
                let error = docker_error(self.cfg.host.as_deref(), &e);
                for name in &self.cfg.expected {
                    out.flag(&RUNNING, &[("container", name)], false);
                    cx.report(
                        Item::new(CONTAINER, name, Health::Unknown, "not known").detail(format!(
                            "the Docker Engine did not answer: {}",
                            error.message
                        )),
                    );
                }
                return Err(error);
            }
        };
        out.flag(&DOCKER_UP, &[], true);
        let names: Vec<String> = list
            .iter()
            .filter_map(|c| {
                c.names
                    .as_ref()?
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())
            })
            .filter(|n| self.cfg.name_pattern.get().is_match(n))
            .collect();
        out.push(&MATCHED, &[], names.len() as f64);
        let inspected =
            futures_util::future::join_all(names.iter().map(|n| docker.inspect_container(n, None)))
                .await;
        let mut seen = BTreeSet::new();
        for (name, r) in names.iter().zip(inspected) {
            // A container removed between list and inspect is simply not reported this time.
            if let Ok(info) = r {
                export(name, &info, out);
                cx.report(describe(name, &info));
                seen.insert(name.as_str());
            }
        }
        let mut missing = Vec::new();
        for name in &self.cfg.expected {
            let exists = seen.contains(name.as_str());
            out.flag(&EXISTS, &[("container", name)], exists);
            if !exists {
                out.flag(&RUNNING, &[("container", name)], false);
                missing.push(name.as_str());
                cx.report(
                    Item::new(CONTAINER, name, Health::Failing, "missing")
                        .detail("expected, but no container of this name exists"),
                );
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ProbeError::new(
                Reason::NotFound,
                format!("expected container(s) missing: {}", missing.join(", ")),
            ))
        }
    }
}

fn export(name: &str, info: &ContainerInspectResponse, out: &mut Samples) {
    let labels = [("container", name)];
    let state = info.state.as_ref();
    let status = state.and_then(|s| s.status).and_then(state_label);
    let running = state.and_then(|s| s.running).unwrap_or(false);
    out.flag(&RUNNING, &labels, running);
    // A container without a reported state has every state series at 0.
    out.state_set(&STATE, &labels, "state", STATES, status.unwrap_or_default());
    let health = state
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.status)
        .map(|h| h.to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "none".to_string());
    out.state_set(&HEALTH, &labels, "status", HEALTH_STATES, &health);
    out.push(&RESTARTS, &labels, info.restart_count.unwrap_or(0) as f64);
    if let Some(t) = state
        .and_then(|s| s.started_at.as_deref())
        .and_then(parse_time)
    {
        out.push(&STARTED, &labels, t);
    }
    // The Engine's own time of the stop, so that "stopped for 2 s" does not depend on when this
    // probe, a scrape or a rule evaluation happened to run (alerts/stackmedic.rules.yml,
    // ContainerDown). A container that never ran reports the zero time: its creation counts.
    if let Some(t) = state
        .and_then(|s| s.finished_at.as_deref())
        .and_then(parse_time)
        .or_else(|| info.created.as_deref().and_then(parse_time))
    {
        out.push(&FINISHED, &labels, t);
    }
    out.push(
        &EXIT_CODE,
        &labels,
        state.and_then(|s| s.exit_code).unwrap_or(0) as f64,
    );
}

/// The noun of the items this family reports.
const CONTAINER: &str = "container";

/// Longest health check output shown.
const MAX_HEALTH_OUTPUT: usize = 200;

/// A container's state in words for the status page. Whatever the alerts call down (not
/// running: exited, created, dead, restarting) is failing, as is a failing health check.
fn describe(name: &str, info: &ContainerInspectResponse) -> Item {
    use bollard::models::{ContainerStateStatusEnum as S, HealthStatusEnum as H};
    let state = info.state.as_ref();
    let status = state.and_then(|s| s.status).unwrap_or(S::EMPTY);
    let health = state.and_then(|s| s.health.as_ref());
    let started = state
        .and_then(|s| s.started_at.as_deref())
        .and_then(parse_time);
    let finished = state
        .and_then(|s| s.finished_at.as_deref())
        .and_then(parse_time);
    let exit_code = state.and_then(|s| s.exit_code).unwrap_or(0);
    let oom = state.and_then(|s| s.oom_killed).unwrap_or(false);
    let restarts = info.restart_count.unwrap_or(0);
    let item = |h: Health, words: String| Item::new(CONTAINER, name, h, words);
    let mut it = match status {
        S::RUNNING => match health.and_then(|h| h.status).unwrap_or(H::NONE) {
            H::UNHEALTHY => item(Health::Failing, "running, unhealthy".into()).detail(
                health_failures(health.and_then(|h| h.failing_streak), health_output(health)),
            ),
            H::STARTING => item(Health::Warning, "running, health check starting".into()),
            H::HEALTHY => item(Health::Ok, "running, healthy".into()),
            H::NONE | H::EMPTY => item(Health::Ok, "running".into()),
        }
        // When the container started, not when its health changed: the Engine keeps no
        // time of that.
        .at("started", started),
        S::EXITED => item(
            Health::Failing,
            if oom {
                format!("exited with code {exit_code}, out of memory")
            } else {
                format!("exited with code {exit_code}")
            },
        )
        .at("since", finished),
        S::RESTARTING => item(Health::Failing, "restarting".into())
            .detail(format!("last exit code {exit_code}"))
            .at("last exit", finished),
        S::CREATED => item(Health::Failing, "created, never started".into()),
        S::DEAD => item(Health::Failing, "dead".into()).at("since", finished),
        S::PAUSED => item(Health::Warning, "paused".into()),
        S::REMOVING => item(Health::Warning, "being removed".into()),
        S::STOPPING => item(Health::Warning, "stopping".into()),
        S::EMPTY => item(Health::Unknown, "state not reported".into()),
    };
    if restarts > 0 {
        it = it.detail(format!("restarted {restarts} times by its restart policy"));
    }
    if let Some(error) = state.and_then(|s| s.error.as_deref()) {
        it = it.detail(error);
    }
    it
}

/// How a failing health check failed: the streak and the last check's output.
fn health_failures(streak: Option<i64>, output: Option<String>) -> String {
    let streak = streak
        .filter(|n| *n > 1)
        .map(|n| format!("health check failed {n} times in a row"))
        .unwrap_or_else(|| "health check failed".into());
    match output {
        Some(o) => format!("{streak}; last output: {o}"),
        None => streak,
    }
}

/// The last health check's output, trimmed and cut; `None` when it printed nothing.
fn health_output(health: Option<&bollard::models::Health>) -> Option<String> {
    let last = health?.log.as_ref()?.last()?;
    let out = last.output.as_deref()?.trim();
    (!out.is_empty()).then(|| truncate(out, MAX_HEALTH_OUTPUT))
}

/// Docker's RFC 3339 times; its zero time (`0001-01-01T00:00:00Z`) means never.
fn parse_time(s: &str) -> Option<f64> {
    let t = humantime_rfc3339(s)?;
    (t > 0.0).then_some(t)
}

fn humantime_rfc3339(s: &str) -> Option<f64> {
    let st = humantime::parse_rfc3339_weak(s).ok()?;
    st.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}

/// The error of a request to the engine at `host` (the configured socket, or the default
/// one), with its whole cause chain: a socket the exporter may not open reads "permission
/// denied", not only "client error (Connect)".
fn docker_error(host: Option<&str>, e: &bollard::errors::Error) -> ProbeError {
    use bollard::errors::Error as E;
    let reason = match e {
        E::DockerResponseServerError { .. } => Reason::Docker,
        E::RequestTimeoutError => Reason::Timeout,
        _ => Reason::Connect,
    };
    let at = host.map(|h| format!(" at {h}")).unwrap_or_default();
    ProbeError::new(reason, format!("docker engine{at}: {}", error_chain(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_times() {
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        let t = parse_time("2024-05-01T12:00:00.123456789Z").unwrap();
        assert!((t - 1_714_564_800.123).abs() < 0.01);
    }

    #[test]
    fn every_engine_state_is_in_the_state_set() {
        use ContainerStateStatusEnum as S;
        let all = [
            S::CREATED,
            S::RUNNING,
            S::PAUSED,
            S::RESTARTING,
            S::REMOVING,
            S::STOPPING,
            S::EXITED,
            S::DEAD,
        ];
        for s in all {
            let label = state_label(s).expect("a label");
            // The label is the Engine's own word for the state.
            assert_eq!(label, s.to_string());
            assert!(STATES.contains(&label), "{label} missing from STATES");
        }
        assert_eq!(STATES.len(), all.len());
        assert_eq!(state_label(S::EMPTY), None);
    }

    #[test]
    fn a_stopping_container_has_its_state_series_set() {
        use bollard::models::ContainerState;
        let info = ContainerInspectResponse {
            state: Some(ContainerState {
                status: Some(ContainerStateStatusEnum::STOPPING),
                running: Some(true),
                ..ContainerState::default()
            }),
            ..ContainerInspectResponse::default()
        };
        let mut out = Samples::default();
        export("web", &info, &mut out);
        let states: Vec<(String, f64)> = out
            .0
            .iter()
            .filter(|s| s.family.name == "stackmedic_container_state")
            .map(|s| (s.labels[1].1.clone(), s.value))
            .collect();
        assert_eq!(states.len(), STATES.len());
        for (state, v) in states {
            assert_eq!(v, if state == "stopping" { 1.0 } else { 0.0 }, "{state}");
        }
    }
}
