//! `compose_up`: `docker compose -f FILE [-p NAME] up -d [SERVICES…]` for a stack whose
//! container is gone. Argv only, never a shell; the child is killed when the pipeline's timeout
//! drops it.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use stackmedic_common::config::{self as common, ConfigErrors};
use tokio::process::Command;

use super::ActionError;

/// The target section key.
pub const SECTION: &str = "compose";

/// A compose stack to bring up (`targets[].compose`).
#[derive(Debug, Clone)]
pub struct ComposeTarget {
    /// The compose file, an absolute path; the command runs in its directory.
    pub file: PathBuf,
    /// Project name (`-p`).
    pub project_name: Option<String>,
    /// The program (`docker`, or `docker-compose`).
    pub program: String,
    /// Arguments before `-f` (`compose` for the Docker CLI plugin).
    pub lead: Vec<String>,
    /// Services to bring up; all when empty.
    pub services: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ComposeTargetFile {
    file: PathBuf,
    project_name: Option<String>,
    #[serde(default = "default_command")]
    command: Vec<String>,
    #[serde(default)]
    services: Vec<String>,
}

fn default_command() -> Vec<String> {
    vec!["docker".into(), "compose".into()]
}

impl ComposeTarget {
    /// Parses and checks the section at `path`.
    pub fn load(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<Self> {
        let f: ComposeTargetFile = common::typed(v, path, errs)?;
        if !f.file.is_absolute() {
            errs.push(
                common::join(path, "file"),
                "must be an absolute path (the remediator's working directory is not the stack's)",
            );
        }
        let Some((program, lead)) = f.command.split_first().filter(|(p, _)| !p.is_empty()) else {
            errs.push(common::join(path, "command"), "must name a program");
            return None;
        };
        Some(ComposeTarget {
            file: f.file.clone(),
            project_name: f.project_name,
            program: program.clone(),
            lead: lead.to_vec(),
            services: f.services,
        })
    }
}

/// The rule keys of `compose_up`: none.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleParams {}

/// A `compose up` of a rule on one stack.
#[derive(Debug, Clone)]
pub struct ComposeUp {
    /// The stack.
    pub target: Arc<ComposeTarget>,
}

/// Most characters of the command's output kept in a failure message.
const OUTPUT_TAIL: usize = 400;

impl ComposeUp {
    /// Runs the compose command and waits for it.
    pub(super) async fn run(&self) -> Result<String, ActionError> {
        let c = &self.target;
        let mut cmd = Command::new(&c.program);
        cmd.args(&c.lead).arg("-f").arg(&c.file);
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
            .map_err(|e| ActionError::Failed(format!("cannot run {}: {e}", c.program)))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout);
            let skip = text.chars().count().saturating_sub(OUTPUT_TAIL);
            let tail: String = text.chars().skip(skip).collect();
            return Err(ActionError::Failed(format!(
                "{} up -d for {} exited with {}: {}",
                c.program,
                c.file.display(),
                out.status,
                tail.trim()
            )));
        }
        Ok(format!(
            "{} {} up -d for {}",
            c.program,
            c.lead.join(" "),
            c.file.display()
        ))
    }
}
