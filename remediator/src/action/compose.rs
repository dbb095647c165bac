//! `compose_up`: `docker compose -f FILE [-p NAME] up -d [SERVICES…]` for a stack whose
//! container is gone. Argv only, never a shell; the child is killed when the pipeline's timeout
//! drops it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
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
    /// Where the section is in the configuration (`targets[1].compose`), for messages.
    pub path: String,
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
            path: path.to_string(),
            file: f.file.clone(),
            project_name: f.project_name,
            program: program.clone(),
            lead: lead.to_vec(),
            services: f.services,
        })
    }
}

/// The rule keys of `compose_up`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleParams {
    /// The label naming the container the stack brings back, among the target's
    /// `docker.containers`: the compose up then acts on that container's subject (one incident
    /// and one lock with a restart of it) and verifies it.
    pub container_label: Option<String>,
}

/// A `compose up` of a rule on one stack.
#[derive(Debug, Clone)]
pub struct ComposeUp {
    /// The stack.
    pub target: Arc<ComposeTarget>,
    /// The label choosing the container it brings back, and the allow-list it chooses from.
    pub container: Option<(String, Vec<String>)>,
}

impl ComposeTarget {
    /// The container dependencies the compose file declares (`depends_on` of its services,
    /// the short list or the long form), as `(container, container it depends on)`, with
    /// container names as Compose gives them (`container_name`, or `PROJECT-SERVICE-1`).
    /// Empty when the file cannot be read here (`--config.check` warns of it).
    #[must_use]
    pub fn dependencies(&self) -> Vec<(String, String)> {
        let Ok(text) = std::fs::read_to_string(&self.file) else {
            return Vec::new();
        };
        let Ok(doc) = common::parse_yaml(&text) else {
            return Vec::new();
        };
        let Some(services) = doc.get("services").and_then(Value::as_object) else {
            return Vec::new();
        };
        let project = self.project();
        let name = |service: &str| {
            services
                .get(service)
                .and_then(|s| s.get("container_name"))
                .and_then(Value::as_str)
                .map_or_else(|| format!("{project}-{service}-1"), str::to_string)
        };
        let mut out = Vec::new();
        for (service, def) in services {
            let deps: Vec<String> = match def.get("depends_on") {
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                Some(Value::Object(map)) => map.keys().cloned().collect(),
                _ => Vec::new(),
            };
            for d in deps {
                out.push((name(service), name(&d)));
            }
        }
        out
    }

    /// The Compose project: `project_name`, or as Compose names it, the compose file's folder
    /// name in lower case without the characters a project name may not have.
    #[must_use]
    pub fn project(&self) -> String {
        if let Some(p) = &self.project_name {
            return p.clone();
        }
        let folder = self
            .file
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        folder
            .chars()
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
            .skip_while(|c| !c.is_ascii_alphanumeric())
            .collect()
    }
}

impl ComposeUp {
    /// The allow-list the container label chooses from.
    pub(super) fn allow_list(&self) -> Option<super::AllowList> {
        self.container
            .as_ref()
            .map(|(label, values)| super::AllowList {
                key: "docker.containers".into(),
                label: label.clone(),
                values: values.clone(),
            })
    }

    /// Every selection it can make: each allow-listed container, or the stack.
    pub(super) fn selections(&self) -> Vec<super::Selection> {
        match &self.container {
            Some((_, allowed)) => allowed
                .iter()
                .map(|c| super::Selection {
                    container: Some(c.clone()),
                    ..super::Selection::default()
                })
                .collect(),
            None => vec![super::Selection::default()],
        }
    }

    /// Lets the alert's label choose the container among the allow-list (exactly: the
    /// container may be gone, so it cannot be resolved through the Engine).
    pub(super) fn select(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<super::Selection, String> {
        let Some((label, allowed)) = &self.container else {
            return Ok(super::Selection::default());
        };
        let v = labels.get(label).cloned().unwrap_or_default();
        if !allowed.contains(&v) {
            return Err(format!(
                "label {label}={v:?} names a container outside the allow-list"
            ));
        }
        Ok(super::Selection {
            container: Some(v),
            ..super::Selection::default()
        })
    }
}

/// Most characters of the command's output kept in a failure message.
const OUTPUT_TAIL: usize = 400;

/// Where the Docker CLI looks for its plugins besides `$DOCKER_CONFIG/cli-plugins` (or
/// `~/.docker/cli-plugins`).
const CLI_PLUGIN_DIRS: [&str; 4] = [
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
];

/// What the Docker CLI answers when `compose` is not one of its commands: older releases read
/// `compose -f` as an unknown flag of `docker` itself, newer ones name the unknown command.
const NO_PLUGIN_ANSWERS: [&str; 3] = [
    "unknown shorthand flag: 'f'",
    "'compose' is not a docker command",
    "unknown command: docker compose",
];

/// What checking a compose target's command on this host found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCheck {
    /// The command cannot run here.
    pub errors: Vec<String>,
    /// The command may fail here.
    pub warnings: Vec<String>,
}

impl ComposeTarget {
    /// The command as run, argv only.
    #[must_use]
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec![self.program.clone()];
        argv.extend(self.lead.iter().cloned());
        argv.push("-f".into());
        argv.push(self.file.display().to_string());
        if let Some(p) = &self.project_name {
            argv.push("-p".into());
            argv.push(p.clone());
        }
        argv.push("up".into());
        argv.push("-d".into());
        argv.extend(self.services.iter().cloned());
        argv
    }

    /// Whether the command is the Docker CLI's Compose plugin (`docker compose`).
    fn is_docker_plugin(&self) -> bool {
        Path::new(&self.program)
            .file_name()
            .is_some_and(|n| n == "docker")
            && self.lead.first().is_some_and(|a| a == "compose")
    }

    /// Checks, by reading the file system only, that the command can run on this host: the
    /// compose file readable (a warning: it may appear later), the program in `PATH` (or at its
    /// absolute path), and for `docker compose` the Compose plugin in one of the Docker CLI's
    /// plugin folders (a warning only, since the CLI can be told of further folders).
    #[must_use]
    pub fn check_host(&self) -> HostCheck {
        let mut check = HostCheck::default();
        // The command runs with this process's view of the file system: a service sandboxed
        // away from /home (ProtectHome=yes, as the packaged unit has) cannot read a compose
        // file there, and compose up would fail on every attempt.
        if let Err(e) = std::fs::File::open(&self.file) {
            let hint = if self.file.starts_with("/home") {
                " (a service whose unit has ProtectHome=yes sees no /home: give it the stack's \
                 folder with a drop-in, as docs/remediator.md shows, or keep the compose file \
                 elsewhere)"
            } else {
                ""
            };
            check.warnings.push(format!(
                "{}: {} cannot be read by this process: {e}; compose_up would fail{hint}",
                common::join(&self.path, "file"),
                self.file.display()
            ));
        }
        let command = common::join(&self.path, "command");
        if find_program(&self.program).is_none() {
            check.errors.push(format!(
                "{command}: {} is not installed (not found in PATH)",
                self.program
            ));
            return check;
        }
        if self.is_docker_plugin() && compose_plugin().is_none() {
            check.warnings.push(format!(
                "{command}: the docker compose plugin is not installed (no docker-compose in \
                 the Docker CLI's plugin folders): compose_up would fail; install it, or set \
                 `command: [docker-compose]`"
            ));
        }
        check
    }
}

/// The path of `program`: itself when it contains a `/`, else the first match in `PATH`.
fn find_program(program: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

/// The Docker CLI's Compose plugin, if one is installed where the CLI looks by default.
fn compose_plugin() -> Option<PathBuf> {
    let user = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
        .map(|d| d.join("cli-plugins"));
    user.into_iter()
        .chain(CLI_PLUGIN_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join("docker-compose"))
        .find(|p| p.is_file())
}

/// `argv` as one line for messages, quoting words with spaces or quotes.
fn show(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl ComposeUp {
    /// Runs the compose command and waits for it.
    pub(super) async fn run(&self) -> Result<String, ActionError> {
        let c = &self.target;
        let argv = c.argv();
        let line = show(&argv);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        if let Some(dir) = c.file.parent() {
            // A missing working folder fails the spawn like a missing program would.
            if !dir.is_dir() {
                return Err(ActionError::Failed(format!(
                    "cannot run {line}: the compose file's folder {} does not exist",
                    dir.display()
                )));
            }
            cmd.current_dir(dir);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = cmd.output().await.map_err(|e| {
            ActionError::Failed(if e.kind() == std::io::ErrorKind::NotFound {
                format!("cannot run {line}: {} is not installed", c.program)
            } else {
                format!("cannot run {line}: {e}")
            })
        })?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout);
            let skip = text.chars().count().saturating_sub(OUTPUT_TAIL);
            let tail: String = text.chars().skip(skip).collect();
            let cause =
                if c.is_docker_plugin() && NO_PLUGIN_ANSWERS.iter().any(|a| text.contains(a)) {
                    ": the docker compose plugin is not installed"
                } else {
                    ""
                };
            return Err(ActionError::Failed(format!(
                "{line} exited with {}{cause} ({})",
                out.status,
                tail.trim()
            )));
        }
        Ok(format!("ran {line}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(command: &[&str]) -> ComposeTarget {
        ComposeTarget {
            path: "targets[0].compose".into(),
            file: PathBuf::from("/tmp/compose file.yml"),
            project_name: Some("stack".into()),
            program: command[0].into(),
            lead: command[1..].iter().map(|s| (*s).to_string()).collect(),
            services: vec!["web".into()],
        }
    }

    #[test]
    fn argv_is_what_runs_and_is_shown_quoted() {
        let t = target(&["docker", "compose"]);
        assert_eq!(
            t.argv(),
            [
                "docker",
                "compose",
                "-f",
                "/tmp/compose file.yml",
                "-p",
                "stack",
                "up",
                "-d",
                "web"
            ]
        );
        assert_eq!(
            show(&t.argv()),
            "docker compose -f '/tmp/compose file.yml' -p stack up -d web"
        );
        assert!(t.is_docker_plugin());
        assert!(!target(&["docker-compose"]).is_docker_plugin());
        assert!(target(&["/usr/bin/docker", "compose"]).is_docker_plugin());
    }

    #[test]
    fn a_missing_program_is_an_error_of_the_command_key() {
        let check = target(&["stackmedic-no-such-compose"]).check_host();
        assert_eq!(
            check.errors,
            ["targets[0].compose.command: stackmedic-no-such-compose is not installed (not found in PATH)"]
        );
        assert!(target(&["/bin/sh"]).check_host().errors.is_empty());
    }

    #[tokio::test]
    async fn a_failure_shows_the_real_argv_and_its_output() {
        // `sh -f … up -d` fails with sh's own message; the argv shown is the one that ran.
        let up = ComposeUp {
            container: None,
            target: Arc::new(target(&["/bin/sh", "-c", "echo broken >&2; exit 3", "sh"])),
        };
        let e = up.run().await.unwrap_err().to_string();
        assert!(
            e.starts_with("/bin/sh -c 'echo broken >&2; exit 3' sh -f '/tmp/compose file.yml' -p stack up -d web exited with exit status: 3"),
            "{e}"
        );
        assert!(e.contains("(broken)"), "{e}");
        let missing = ComposeUp {
            container: None,
            target: Arc::new(target(&["stackmedic-no-such-compose"])),
        };
        let e = missing.run().await.unwrap_err().to_string();
        assert!(
            e.contains("stackmedic-no-such-compose is not installed"),
            "{e}"
        );
    }
}
