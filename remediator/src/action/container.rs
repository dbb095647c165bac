//! `container_restart` and `container_start`: the Docker Engine API, only on allow-listed
//! containers, or in opt-in mode on containers carrying the target's `require_label`.
//!
//! A container named by full ID, ID prefix or name is one subject: before the incident is
//! decided the label's value is resolved through the Engine to the name it reports, and that
//! name is what the allow-list, the opt-in label, the incident and the lock apply to.
//!
//! A target's containers live on its engine (`docker.host`, else the default engine): a
//! container on another engine than the default is the subject `container:NAME@ADDRESS`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{ContainerInspectResponse, HealthStatusEnum};
use bollard::query_parameters::{LogsOptions, RestartContainerOptions, StartContainerOptions};
use bollard::Docker;
use serde::Deserialize;
use serde_json::Value;
use stackmedic_common::config::{self as common, duration, ConfigErrors};
use stackmedic_common::errors::error_chain;

use super::{ActionError, AllowList, Context, Selection};
use crate::docker::{Engine, EngineKeys};

/// The target section key.
pub const SECTION: &str = "docker";

/// Containers a target may act on (`targets[].docker`).
#[derive(Debug, Clone)]
pub struct DockerTarget {
    /// The allow-list of container names; empty in opt-in mode.
    pub containers: Vec<String>,
    /// A Docker label `(key, value)` the container must carry (opt-in).
    pub require_label: Option<(String, String)>,
    /// Grace time before Docker kills the container on restart.
    pub stop_timeout: Duration,
    /// Containers each allow-listed container depends on: they are healed first.
    pub depends_on: BTreeMap<String, Vec<String>>,
    /// The engine the containers run on.
    pub engine: Arc<Engine>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DockerTargetFile {
    #[serde(default)]
    containers: Vec<String>,
    require_label: Option<String>,
    #[serde(default = "default_stop_timeout", with = "duration")]
    stop_timeout: Duration,
    #[serde(default)]
    depends_on: BTreeMap<String, Vec<String>>,
    host: Option<String>,
    ca_file: Option<std::path::PathBuf>,
    cert_file: Option<std::path::PathBuf>,
    key_file: Option<std::path::PathBuf>,
    tls_server_name: Option<String>,
}

fn default_stop_timeout() -> Duration {
    Duration::from_secs(10)
}

impl DockerTarget {
    /// Parses and checks the section at `path`; `default` is the engine of a section that
    /// names none.
    pub fn load(
        v: &Value,
        path: &str,
        default: &Arc<Engine>,
        errs: &mut ConfigErrors,
    ) -> Option<Self> {
        let f: DockerTargetFile = common::typed(v, path, errs)?;
        let engine = Engine::load(
            EngineKeys {
                host: f.host,
                ca_file: f.ca_file,
                cert_file: f.cert_file,
                key_file: f.key_file,
                tls_server_name: f.tls_server_name,
            },
            path,
            default,
            errs,
        );
        for (i, c) in f.containers.iter().enumerate() {
            if !valid_container_name(c) {
                errs.push(
                    format!("{path}.containers[{i}]"),
                    format!("{c:?} is not a valid container name"),
                );
            }
        }
        // Keys with a problem of their own are at their defaults here (reported already).
        if f.containers.is_empty()
            && f.require_label.is_none()
            && !errs.has_any(&[
                &common::join(path, "containers"),
                &common::join(path, "require_label"),
            ])
        {
            errs.push(
                path,
                "give an allow-list in `containers`, or `require_label` for opt-in by Docker label",
            );
        }
        let require_label = match &f.require_label {
            None => None,
            Some(l) => match l.split_once('=') {
                Some((k, v)) if !k.is_empty() => Some((k.to_string(), v.to_string())),
                _ => {
                    errs.push(
                        common::join(path, "require_label"),
                        format!("{l:?} is not of the form key=value"),
                    );
                    None
                }
            },
        };
        for (app, deps) in &f.depends_on {
            let p = format!("{path}.depends_on.{app}");
            if !f.containers.contains(app) {
                errs.push(&p, format!("{app:?} is not in this target's `containers`"));
            }
            for (i, d) in deps.iter().enumerate() {
                if !valid_container_name(d) {
                    errs.push(
                        format!("{p}[{i}]"),
                        format!("{d:?} is not a valid container name"),
                    );
                }
            }
        }
        Some(DockerTarget {
            containers: f.containers,
            require_label,
            stop_timeout: f.stop_timeout,
            depends_on: f.depends_on,
            engine,
        })
    }

    fn label_text(&self) -> Option<String> {
        self.require_label.as_ref().map(|(k, v)| format!("{k}={v}"))
    }
}

/// The rule keys of the container actions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleParams {
    /// The label naming the container; without it the target must list exactly one.
    pub container_label: Option<String>,
}

/// Restart or start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `POST /containers/{name}/restart` with the stop timeout.
    Restart,
    /// `POST /containers/{name}/start`.
    Start,
}

/// A container action of a rule on one target.
#[derive(Debug, Clone)]
pub struct ContainerAction {
    mode: Mode,
    target: Arc<DockerTarget>,
    /// The label naming the container, or the one container the target lists.
    choice: Choice,
}

#[derive(Debug, Clone)]
enum Choice {
    Label(String),
    Fixed(String),
}

impl ContainerAction {
    /// The action of a rule with `params` on the section `target`.
    ///
    /// # Errors
    /// When the rule names no container label and the target does not list exactly one.
    pub fn bind(
        mode: Mode,
        target: Arc<DockerTarget>,
        params: &RuleParams,
    ) -> Result<Self, String> {
        let choice = match (&params.container_label, target.containers.as_slice()) {
            (Some(label), _) => Choice::Label(label.clone()),
            (None, [only]) => Choice::Fixed(only.clone()),
            (None, _) => {
                return Err(
                    "without `container_label` the target must list exactly one container".into(),
                )
            }
        };
        Ok(Self {
            mode,
            target,
            choice,
        })
    }

    /// The allow-list a label chooses from, when a label chooses (opt-in mode has none).
    pub(super) fn allow_list(&self) -> Option<AllowList> {
        match &self.choice {
            Choice::Label(label) if !self.target.containers.is_empty() => Some(AllowList {
                key: "docker.containers".into(),
                label: label.clone(),
                values: self.target.containers.clone(),
            }),
            Choice::Label(_) | Choice::Fixed(_) => None,
        }
    }

    /// Every selection the allow-list permits; `None` in opt-in mode (any labelled container).
    pub(super) fn selections(&self) -> Option<Vec<Selection>> {
        let names: Vec<String> = match &self.choice {
            Choice::Fixed(name) => vec![name.clone()],
            Choice::Label(_) if self.target.containers.is_empty() => return None,
            Choice::Label(_) => self.target.containers.clone(),
        };
        Some(
            names
                .into_iter()
                .map(|n| Selection {
                    container: Some(n),
                    ..Selection::default()
                })
                .collect(),
        )
    }

    pub(super) fn select(&self, labels: &BTreeMap<String, String>) -> Result<Selection, String> {
        let name = match &self.choice {
            Choice::Fixed(name) => name.clone(),
            Choice::Label(label) => {
                let v = labels.get(label).cloned().unwrap_or_default();
                if !valid_container_name(&v) {
                    return Err(format!("label {label}={v:?} is not a valid container name"));
                }
                if !self.target.containers.is_empty() && !self.target.containers.contains(&v) {
                    return Err(format!(
                        "label {label}={v:?} names a container outside the allow-list"
                    ));
                }
                v
            }
        };
        Ok(Selection {
            container: Some(name),
            ..Selection::default()
        })
    }

    pub(super) async fn resolve(
        &self,
        cx: &Context<'_>,
        selection: &Selection,
    ) -> Result<Selection, ActionError> {
        let raw = container_of(selection)?;
        let docker = cx
            .docker
            .get(&self.target.engine)
            .await
            .map_err(ActionError::Failed)?;
        let info = match docker.inspect_container(raw, None).await {
            Ok(info) => info,
            // Gone: the Engine has nothing to resolve it to, so the allow-listed name stands
            // (and the action will fail on it, a failed attempt). Any other error means the
            // Engine could not be asked: the caller waits and tries again.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                return if self.target.containers.iter().any(|c| c == raw) {
                    Ok(selection.clone())
                } else {
                    Err(ActionError::Denied(format!(
                        "container {raw:?} does not exist, so it cannot be checked against the target's allow-list or opt-in label"
                    )))
                };
            }
            Err(e) => {
                return Err(ActionError::Failed(format!(
                    "docker inspect {raw}{}: {}",
                    self.target.engine.on(),
                    error_chain(&e)
                )))
            }
        };
        let name = self.check(raw, &info)?;
        Ok(Selection {
            container: Some(name),
            ..selection.clone()
        })
    }

    /// Asks the Engine for the selected container and [`check`](Self::check)s its record;
    /// returns the client and the name the Engine reports.
    async fn inspect_checked(
        &self,
        cx: &Context<'_>,
        selection: &Selection,
    ) -> Result<(Docker, String), ActionError> {
        let raw = container_of(selection)?;
        let docker = cx
            .docker
            .get(&self.target.engine)
            .await
            .map_err(ActionError::Failed)?;
        let info = docker.inspect_container(raw, None).await.map_err(|e| {
            ActionError::Failed(format!(
                "docker inspect {raw}{}: {}",
                self.target.engine.on(),
                error_chain(&e)
            ))
        })?;
        let name = self.check(raw, &info)?;
        Ok((docker, name))
    }

    /// Checks the Engine's record of a container against the allow-list and the opt-in
    /// label; returns the name the Engine reports.
    fn check(&self, raw: &str, info: &ContainerInspectResponse) -> Result<String, ActionError> {
        let name = info
            .name
            .as_deref()
            .map(|n| n.trim_start_matches('/').to_string())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ActionError::Failed(format!("docker inspect {raw}: no name reported"))
            })?;
        if !self.target.containers.is_empty() && !self.target.containers.contains(&name) {
            return Err(ActionError::Denied(format!(
                "container {name} (named {raw:?} by the alert) is not in the target's allow-list"
            )));
        }
        if let Some((k, v)) = &self.target.require_label {
            let has = info
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(k))
                .is_some_and(|x| x == v);
            if !has {
                return Err(ActionError::Denied(format!(
                    "container {name} does not carry the label {}",
                    self.target.label_text().unwrap_or_default()
                )));
            }
        }
        Ok(name)
    }

    /// The subject of the selected container: `container:NAME`, with `@ADDRESS` on an engine
    /// other than the default.
    pub(super) fn subject(&self, selection: &Selection) -> String {
        self.target
            .engine
            .container_subject(selection.container.as_deref().unwrap_or(""))
    }

    pub(super) async fn run(
        &self,
        cx: &Context<'_>,
        selection: &Selection,
    ) -> Result<String, ActionError> {
        let on = self.target.engine.on();
        // The Engine's record is checked again right before acting: the label or the name may
        // have changed since the incident was decided.
        let (docker, name) = self.inspect_checked(cx, selection).await?;
        match self.mode {
            Mode::Restart => {
                let stop = self.target.stop_timeout.as_secs();
                let options = RestartContainerOptions {
                    t: Some(i32::try_from(stop).unwrap_or(i32::MAX)),
                    ..Default::default()
                };
                docker
                    .restart_container(&name, Some(options))
                    .await
                    .map_err(|e| {
                        ActionError::Failed(format!(
                            "docker restart {name}{on}: {}",
                            error_chain(&e)
                        ))
                    })?;
                Ok(format!(
                    "restarted container {name}{on} (stop timeout {stop}s)"
                ))
            }
            Mode::Start => {
                docker
                    .start_container(&name, None::<StartContainerOptions>)
                    .await
                    .map_err(|e| {
                        ActionError::Failed(format!("docker start {name}{on}: {}", error_chain(&e)))
                    })?;
                Ok(format!("started container {name}{on}"))
            }
        }
    }
}

fn container_of(selection: &Selection) -> Result<&str, ActionError> {
    selection
        .container
        .as_deref()
        .ok_or_else(|| ActionError::Denied("no container selected".into()))
}

/// Docker's rule for container names (IDs and ID prefixes satisfy it too).
#[must_use]
pub fn valid_container_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && s.len() <= 128
}

/// A running container as verification sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// When the Engine last started it; a change means it restarted in between.
    pub started_at: String,
}

/// Why a container is not good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bad {
    /// Not good yet, and it may still become good: starting or unhealthy per its health check,
    /// paused, or the Engine could not be asked.
    NotYet(String),
    /// Down: it exited, is restarting, was never started, or is gone. Waiting does not help:
    /// verification fails at once, with its exit code and last log lines.
    Down(String),
}

/// Most log lines, and bytes of them, quoted from a container that went down.
const LOG_LINES: &str = "5";
const LOG_BYTES: usize = 600;

/// Checks that a container runs and, if it has a health check, is healthy.
///
/// # Errors
/// Its state in words: [`Bad::Down`] when waiting cannot help, [`Bad::NotYet`] otherwise.
pub async fn check_running(docker: &Docker, name: &str) -> Result<Running, Bad> {
    let info: ContainerInspectResponse = match docker.inspect_container(name, None).await {
        Ok(i) => i,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => return Err(Bad::Down(format!("container {name} is gone (removed)"))),
        Err(e) => return Err(Bad::NotYet(format!("container {name}: {e}"))),
    };
    let state = info.state.unwrap_or_default();
    let status = state
        .status
        .map_or_else(|| "not running".to_string(), |s| s.to_string());
    if state.restarting == Some(true) || state.running != Some(true) {
        if state.paused == Some(true) {
            return Err(Bad::NotYet(format!("container {name} is paused")));
        }
        let mut why = format!("container {name} is {status}");
        if let Some(code) = state.exit_code.filter(|_| {
            state
                .started_at
                .as_deref()
                .is_some_and(|s| !s.starts_with("0001"))
        }) {
            why.push_str(&format!(", exit code {code}"));
        }
        if state.oom_killed == Some(true) {
            why.push_str(", killed for lack of memory");
        }
        if let Some(err) = state.error.filter(|e| !e.is_empty()) {
            why.push_str(&format!(", {err}"));
        }
        let logs = last_logs(docker, name).await;
        if !logs.is_empty() {
            why.push_str(&format!("; last log lines: {logs}"));
        }
        return Err(Bad::Down(why));
    }
    match state.health.and_then(|h| h.status) {
        None
        | Some(HealthStatusEnum::EMPTY | HealthStatusEnum::NONE | HealthStatusEnum::HEALTHY) => {
            Ok(Running {
                started_at: state.started_at.unwrap_or_default(),
            })
        }
        Some(s) => Err(Bad::NotYet(format!("container {name} is running but {s}"))),
    }
}

/// When the container's current (or last) instance started, as the Engine writes it, and
/// whether it runs now; `None` when it cannot be asked.
pub async fn started_at(docker: &Docker, name: &str) -> Option<(String, bool)> {
    let state = docker.inspect_container(name, None).await.ok()?.state?;
    Some((state.started_at?, state.running == Some(true)))
}

/// The container's last log lines, joined by ` | ` and bounded; empty when there are none or
/// they cannot be read.
async fn last_logs(docker: &Docker, name: &str) -> String {
    use futures_util::StreamExt as _;
    let options = LogsOptions {
        stdout: true,
        stderr: true,
        tail: LOG_LINES.into(),
        ..Default::default()
    };
    let mut stream = docker.logs(name, Some(options));
    let mut text = String::new();
    let read = async {
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&chunk.to_string());
            if text.len() > 4 * LOG_BYTES {
                break;
            }
        }
    };
    // Logs are a courtesy of the failure message: never wait long for them.
    let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let joined = lines.join(" | ");
    if joined.len() <= LOG_BYTES {
        return joined;
    }
    let mut cut = joined.len() - LOG_BYTES;
    while !joined.is_char_boundary(cut) {
        cut += 1;
    }
    format!("…{}", &joined[cut..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(containers: &[&str], label: Option<&str>) -> ContainerAction {
        let target = Arc::new(DockerTarget {
            containers: containers.iter().map(|c| (*c).to_string()).collect(),
            require_label: None,
            stop_timeout: Duration::from_secs(1),
            depends_on: BTreeMap::new(),
            engine: Arc::default(),
        });
        ContainerAction::bind(
            Mode::Restart,
            target,
            &RuleParams {
                container_label: label.map(str::to_string),
            },
        )
        .unwrap()
    }

    #[test]
    fn labels_select_only_allow_listed_valid_names() {
        let labels = |v: &str| BTreeMap::from([("container".to_string(), v.to_string())]);
        let a = action(&["owui"], Some("container"));
        assert_eq!(
            a.select(&labels("owui")).unwrap().container.as_deref(),
            Some("owui")
        );
        assert!(a
            .select(&labels("other"))
            .unwrap_err()
            .contains("outside the allow-list"));
        assert!(a
            .select(&labels("../x"))
            .unwrap_err()
            .contains("not a valid container name"));
        let opt_in = action(&[], Some("container"));
        assert!(opt_in.select(&labels("4f2a9c")).is_ok());
        let fixed = action(&["only"], None);
        assert_eq!(
            fixed.select(&BTreeMap::new()).unwrap().container.as_deref(),
            Some("only")
        );
        let target = Arc::new(DockerTarget {
            containers: vec!["a".into(), "b".into()],
            require_label: None,
            stop_timeout: Duration::from_secs(1),
            depends_on: BTreeMap::new(),
            engine: Arc::default(),
        });
        assert!(ContainerAction::bind(Mode::Start, target, &RuleParams::default()).is_err());
    }
}
