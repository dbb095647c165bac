//! `container_restart` and `container_start`: the Docker Engine API, only on allow-listed
//! containers (or, in opt-in mode, containers carrying the target's `require_label`).

use bollard::models::{ContainerInspectResponse, HealthStatusEnum};
use bollard::query_parameters::{RestartContainerOptions, StartContainerOptions};
use bollard::Docker;

use super::{ActionError, Context};
use crate::config::{valid_container_name, DockerTarget};

/// Restarts the selected container with the target's stop timeout.
///
/// # Errors
/// A refusal when the container is not allowed, a failure when Docker refuses.
pub async fn restart(ctx: &Context<'_>) -> Result<String, ActionError> {
    let (docker, name) = prepare(ctx).await?;
    let stop = ctx
        .target
        .docker
        .as_ref()
        .map_or(10, |d| d.stop_timeout.as_secs());
    let options = RestartContainerOptions {
        t: Some(i32::try_from(stop).unwrap_or(i32::MAX)),
        ..Default::default()
    };
    docker
        .restart_container(&name, Some(options))
        .await
        .map_err(|e| ActionError::Failed(format!("docker restart {name}: {e}")))?;
    Ok(format!("restarted container {name} (stop timeout {stop}s)"))
}

/// Starts the selected container; a running container is left alone.
///
/// # Errors
/// A refusal when the container is not allowed, a failure when Docker refuses.
pub async fn start(ctx: &Context<'_>) -> Result<String, ActionError> {
    let (docker, name) = prepare(ctx).await?;
    docker
        .start_container(&name, None::<StartContainerOptions>)
        .await
        .map_err(|e| ActionError::Failed(format!("docker start {name}: {e}")))?;
    Ok(format!("started container {name}"))
}

/// Resolves the container and checks it against the allow-list and opt-in label, on the
/// engine's own record of it.
pub(super) async fn prepare(ctx: &Context<'_>) -> Result<(Docker, String), ActionError> {
    let d = ctx
        .target
        .docker
        .as_ref()
        .ok_or_else(|| ActionError::Denied("target has no docker section".into()))?;
    let name = match &ctx.selection.container {
        Some(n) => n.clone(),
        None if d.containers.len() == 1 => d.containers[0].clone(),
        None => return Err(ActionError::Denied("no container selected".into())),
    };
    allowed(d, &name).map_err(ActionError::Denied)?;
    let docker = ctx.docker.get().await.map_err(ActionError::Failed)?;
    let info = docker
        .inspect_container(&name, None)
        .await
        .map_err(|e| ActionError::Failed(format!("docker inspect {name}: {e}")))?;
    if let Some(required) = &d.require_label {
        let (k, v) = required.split_once('=').unwrap_or((required, ""));
        let has = info
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(k))
            .is_some_and(|x| x == v);
        if !has {
            return Err(ActionError::Denied(format!(
                "container {name} does not carry the label {required}"
            )));
        }
    }
    Ok((docker, name))
}

/// Whether a name may be acted on under this docker section.
///
/// # Errors
/// A message saying why not.
pub fn allowed(d: &DockerTarget, name: &str) -> Result<(), String> {
    if !valid_container_name(name) {
        return Err(format!("{name:?} is not a valid container name"));
    }
    if !d.containers.is_empty() && !d.containers.iter().any(|c| c == name) {
        return Err(format!(
            "container {name:?} is not in the target's allow-list"
        ));
    }
    Ok(())
}

/// Checks that a container runs and, if it has a health check, is healthy.
///
/// # Errors
/// A message describing its state.
pub async fn check_running(docker: &Docker, name: &str) -> Result<(), String> {
    let info: ContainerInspectResponse = docker
        .inspect_container(name, None)
        .await
        .map_err(|e| format!("container {name}: {e}"))?;
    let state = info.state.unwrap_or_default();
    if state.running != Some(true) || state.restarting == Some(true) {
        return Err(format!(
            "container {name} is {}",
            state
                .status
                .map_or_else(|| "not running".to_string(), |s| s.to_string())
        ));
    }
    match state.health.and_then(|h| h.status) {
        None
        | Some(HealthStatusEnum::EMPTY | HealthStatusEnum::NONE | HealthStatusEnum::HEALTHY) => {
            Ok(())
        }
        Some(s) => Err(format!("container {name} is running but {s}")),
    }
}
