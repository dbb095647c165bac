//! `compose_up`: `docker compose -f FILE [-p NAME] up -d [SERVICES…]` for a stack whose
//! container is gone. Argv only, never a shell; the child is killed when the timeout drops it.

use std::process::Stdio;

use tokio::process::Command;

use super::{ActionError, Context};

/// Runs the compose command and waits for it; the pipeline's timeout bounds it.
///
/// # Errors
/// A failure with the exit status and the tail of its output.
pub async fn run(ctx: &Context<'_>) -> Result<String, ActionError> {
    let c = ctx
        .target
        .compose
        .as_ref()
        .ok_or_else(|| ActionError::Denied("target has no compose section".into()))?;
    let (program, lead) = c
        .command
        .split_first()
        .ok_or_else(|| ActionError::Denied("empty compose command".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(lead).arg("-f").arg(&c.file);
    if let Some(p) = &c.project_name {
        cmd.arg("-p").arg(p);
    }
    cmd.args(["up", "-d"]).args(&c.services);
    if let Some(dir) = c.file.parent() {
        cmd.current_dir(dir);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = cmd
        .output()
        .await
        .map_err(|e| ActionError::Failed(format!("cannot run {program}: {e}")))?;
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let tail: String = text
        .chars()
        .rev()
        .take(400)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if !out.status.success() {
        return Err(ActionError::Failed(format!(
            "{program} up -d for {} exited with {}: {}",
            c.file.display(),
            out.status,
            tail.trim()
        )));
    }
    Ok(format!(
        "{} {} up -d for {}",
        program,
        lead.join(" "),
        c.file.display()
    ))
}
