//! The README's commands, followed verbatim.
//!
//! The "Install" section: every `sh` block of the section runs in order, as root, through
//! `bash -e` in the repository root, and after each block the test checks what the README
//! promises for it (the packages installed, the Docker socket granted by the drop-in, the purge,
//! the containers answering and healthy, the Compose services answering, the binaries from
//! source).
//!
//! The "Using it" and "Wiring it together" sections: their blocks run in order as one shell
//! session (the secrets a block loads stay set for the next), with the workspace's binaries in
//! `PATH`; a command that starts a server (the exporter, the remediator, Prometheus,
//! Alertmanager, each without `--config.check`) runs in the background, and the test then checks
//! that all four answer on the README's ports and that Prometheus scrapes both binaries. Every
//! other `sh` block of the README is listed in `NOT_RUN_HERE` with the reason, so a new command
//! cannot go unrun unnoticed.
//!
//! No systemd runs as PID 1 here, so a `systemctl` line cannot run: the test checks its unit
//! instead (`systemd-analyze verify` with the drop-in) and does what `systemctl restart` would,
//! starting the unit's `ExecStart=` as its user with the drop-in's groups. Where systemd runs,
//! the lines run as written.
//!
//! The blocks use the names and ports the README gives (containers `stackmedic-exporter` and
//! `stackmedic-remediator`, ports 8790 and 8791, the Compose project `deploy`): leftovers of
//! those are removed before and after.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use stackmedic_tests::alerting::{read_repo_file, repo_root};
use stackmedic_tests::docker::{docker, ensure_docker, run_busybox, Container};
use stackmedic_tests::metrics::{find, scrape};
use stackmedic_tests::packaging::{
    built_image, dist_dir, docker_socket_gid, package_installed, package_known, purge_packages,
    require_systemd_analyze, run, systemd_running, wait_healthy, Service, Unit, BINARIES, UNIT_DIR,
    VERSION,
};
use stackmedic_tests::remediator::{alert, payload};
use stackmedic_tests::{http, is_root, unique_name, wait_until};

const DROPIN_DIR: &str = "/etc/systemd/system/stackmedic-exporter.service.d";
const DROPIN: &str = "/etc/systemd/system/stackmedic-exporter.service.d/docker-socket.conf";
const FROM_SOURCE: [&str; 2] = [
    "/usr/local/bin/stackmedic-exporter",
    "/usr/local/bin/stackmedic-remediator",
];

/// The `sh` blocks of the README's "## Install" section.
fn install_blocks() -> Vec<Vec<String>> {
    section_blocks("Install")
}

/// The `sh` blocks of the README's section `## <title>` (up to the next `## `), each as its
/// commands (continuation lines joined, comments and blank lines dropped).
fn section_blocks(title: &str) -> Vec<Vec<String>> {
    let readme = read_repo_file("README.md");
    let start = readme
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("README.md has an \"## {title}\" section"));
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```sh" {
            continue;
        }
        let mut commands = Vec::new();
        let mut current = String::new();
        for line in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            let line = line.trim();
            if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
                continue;
            }
            match line.strip_suffix('\\') {
                Some(part) => {
                    current.push_str(part.trim_end());
                    current.push(' ');
                }
                None => {
                    current.push_str(line);
                    commands.push(std::mem::take(&mut current));
                }
            }
        }
        assert!(
            current.is_empty(),
            "a block ends in a continuation: {current}"
        );
        blocks.push(commands);
    }
    blocks
}

/// `bash -e -c script` in the repository root, as a user's shell would run it: without the
/// variables cargo and nextest set for this test.
fn shell(script: &str) -> Command {
    let mut command = Command::new("bash");
    command
        .args(["-e", "-o", "pipefail", "-c", script])
        .current_dir(repo_root())
        .stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("NEXTEST")
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_")
            || [
                "CARGO",
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .contains(&key.as_ref())
        {
            command.env_remove(key.as_ref());
        }
    }
    command
}

/// Runs `script` with [`shell`] and fails with its output unless it succeeds.
fn bash(script: &str) {
    let output = shell(script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash: {e}"));
    assert!(
        output.status.success(),
        "README command(s) failed with {}:\n{script}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Everything the README's blocks create under fixed names, removed.
fn clean_up() {
    for name in ["stackmedic-exporter", "stackmedic-remediator"] {
        let _ = docker(&["rm", "-f", "-v", name]);
    }
    let _ = Command::new("docker-compose")
        .args([
            "-f",
            "deploy/compose.yml",
            "down",
            "--volumes",
            "--remove-orphans",
        ])
        .current_dir(repo_root())
        .env("DOCKER_GID", docker_socket_gid())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = docker(&["volume", "rm", "-f", "stackmedic-remediator"]);
    let _ = std::fs::remove_dir_all(DROPIN_DIR);
    for file in FROM_SOURCE {
        let _ = std::fs::remove_file(file);
    }
    purge_packages();
}

struct CleanUpOnDrop;

impl Drop for CleanUpOnDrop {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(clean_up);
    }
}

/// Waits until both services answer on the README's ports, the remediator on a webhook too.
fn both_answer(what: &str) {
    let exporter = wait_until(Duration::from_secs(40), Duration::from_millis(250), || {
        scrape("http://127.0.0.1:8790/metrics").is_ok_and(|s| {
            find(&s, "stackmedic_probe_success", &[("probe", "containers")]) == Some(1.0)
        })
    });
    assert!(
        exporter,
        "{what}: the exporter's containers probe never succeeded on :8790"
    );
    let ready = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        http::get("http://127.0.0.1:8791/-/ready").is_ok_and(|r| r.status == 200)
    });
    assert!(
        ready,
        "{what}: the remediator does not answer on 127.0.0.1:8791"
    );
    let body = payload(vec![alert(
        "firing",
        &[
            ("alertname", "ContainerDown"),
            ("container", "sm-readme-absent"),
        ],
        "2026-11-22T10:00:00Z",
    )]);
    let r = http::post_json("http://127.0.0.1:8791/webhook", &body).unwrap();
    assert_eq!(r.status, 200, "{what}: webhook: {}", r.text());
}

/// What the README's block of systemctl lines stands for, without systemd running: the unit
/// with the drop-in is valid, and the service started as systemd would start it reaches the
/// Docker socket.
fn restart_with_dropin(line: &str) {
    let unit_path = Path::new(UNIT_DIR).join("stackmedic-exporter.service");
    if line.starts_with("systemctl daemon-reload") {
        let output = run(
            &require_systemd_analyze().display().to_string(),
            &["verify", &unit_path.display().to_string()],
        );
        assert!(
            output.status.success() && output.stderr.is_empty(),
            "systemd-analyze verify with the drop-in: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }
    assert_eq!(
        line, "systemctl restart stackmedic-exporter",
        "unknown systemctl line"
    );
    let unit = Unit::read(&unit_path, &[PathBuf::from(DROPIN)]);
    assert_eq!(unit.supplementary_groups(), ["docker"]);
    let seen = run_busybox(&unique_name("sm-readme-seen"), &[], &["sleep", "600"]);
    let logs = tempfile::tempdir().unwrap();
    let mut service = Service::start(&unit, logs.path());
    let url = service.url("/metrics");
    let sees = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        scrape(&url).is_ok_and(|s| {
            find(
                &s,
                "stackmedic_container_running",
                &[("container", seen.name())],
            ) == Some(1.0)
        })
    });
    assert!(
        sees,
        "with the drop-in the service user should reach the Docker socket:\n{}",
        service.process().describe()
    );
}

#[test]
fn readme_install_section_is_followed_verbatim() {
    assert!(
        is_root(),
        "the README's commands run as root: run the tests as root"
    );
    ensure_docker();
    dist_dir();
    clean_up();
    let _clean = CleanUpOnDrop;

    let blocks = install_blocks();
    let mut done = Vec::new();
    for commands in &blocks {
        let first = commands
            .first()
            .expect("an empty sh block in README's Install section");
        let kind = if commands.iter().any(|c| c.contains("scripts/package.sh")) {
            "package"
        } else if first.starts_with("apt install ") {
            "apt install"
        } else if commands.iter().any(|c| c.contains("docker-socket.conf")) {
            "docker socket"
        } else if first.starts_with("apt purge ") {
            "apt purge"
        } else if first.starts_with("docker run ") {
            "docker run"
        } else if first.contains("docker-compose ") {
            "compose"
        } else if first.starts_with("cargo build ") {
            "from source"
        } else {
            panic!("README's Install section has a block this test does not know: {commands:?}")
        };
        if commands.iter().any(|c| c.starts_with("systemctl ")) && !systemd_running() {
            for command in commands {
                if command.starts_with("systemctl ") {
                    restart_with_dropin(command);
                } else {
                    bash(command);
                }
            }
        } else {
            bash(&commands.join("\n"));
        }

        match kind {
            "package" => {
                for binary in BINARIES {
                    built_image(binary);
                }
            }
            "apt install" => {
                for package in BINARIES {
                    assert!(package_installed(package), "{package} is not installed");
                }
            }
            "docker socket" => assert!(Path::new(DROPIN).is_file()),
            "apt purge" => {
                for package in BINARIES {
                    assert!(!package_known(package), "{package} is still known to dpkg");
                }
                assert!(!Path::new("/etc/stackmedic").exists());
                assert!(!Path::new("/var/lib/stackmedic-remediator").exists());
            }
            "docker run" => {
                both_answer("docker run");
                for name in ["stackmedic-exporter", "stackmedic-remediator"] {
                    let container = Container::adopt(name);
                    wait_healthy(&container, Duration::from_secs(90));
                    assert_eq!(
                        container.inspect()["Config"]["Image"],
                        format!("{name}:{VERSION}")
                    );
                }
                clean_up();
            }
            "compose" => {
                both_answer("docker-compose");
                clean_up();
            }
            "from source" => {
                for file in FROM_SOURCE {
                    let out = run(file, &["--version"]);
                    assert!(out.status.success(), "{file} --version");
                    let text = String::from_utf8_lossy(&out.stdout);
                    assert!(text.contains(VERSION), "{file} --version: {text}");
                }
            }
            _ => unreachable!(),
        }
        done.push(kind);
    }
    assert_eq!(
        done,
        [
            "package",
            "apt install",
            "docker socket",
            "apt purge",
            "docker run",
            "compose",
            "from source"
        ],
        "the README's Install section should cover, in this order: building, the packages, \
         the socket opt-in, the purge, the images, Compose and the build from source"
    );
}

/// README `sh` commands no test runs, each with the reason.
const NOT_RUN_HERE: &[(&str, &str)] = &[
    (
        "cargo run --release -p stackmedic-exporter",
        "a release build of the exporter the Install section builds, packages and runs",
    ),
    (
        "./scripts/test.sh",
        "the test command itself: .ci/run runs it, and with it this test",
    ),
    (
        "./scripts/tailer-model.sh 5000",
        "the same model-based test the suite runs with 300 sequences (exporter_tailer_model)",
    ),
    (
        "./scripts/incident-model.sh 20000",
        "the same model-based test the suite runs with 1,000 sequences (remediator incident_model)",
    ),
    (
        "cp /usr/share/stackmedic/grafana/provisioning/datasources/stackmedic.yml /etc/grafana/provisioning/datasources/",
        "Grafana is not among the test peers; alerts_dashboards.rs and packaging_deb.rs check these files",
    ),
    (
        "cp /usr/share/stackmedic/grafana/provisioning/dashboards/stackmedic.yml /etc/grafana/provisioning/dashboards/",
        "Grafana is not among the test peers; alerts_dashboards.rs and packaging_deb.rs check these files",
    ),
];

/// Servers the "Using it" and "Wiring it together" sections start, by the start of their
/// command line, with the port each listens on by default.
const SERVERS: [(&str, u16); 4] = [
    ("stackmedic-exporter --config.file", 8790),
    ("stackmedic-remediator --config.file", 8791),
    ("prometheus --config.file", 9090),
    ("prometheus-alertmanager --config.file", 9093),
];

/// What the sections' commands leave on the machine, removed before and after.
const LEFT_BEHIND: [&str; 4] = [
    "/etc/prometheus/stackmedic-remediator.token",
    "/var/lib/prometheus/stackmedic",
    "/var/lib/prometheus/alertmanager-stackmedic",
    "/var/lib/stackmedic-remediator",
];

fn remove_left_behind() {
    for path in LEFT_BEHIND {
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_dir_all(path);
    }
}

/// Stops the process group of the session when dropped, and removes what it left.
struct Session(u32);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0)])
            .status();
        std::thread::sleep(Duration::from_millis(500));
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .status();
        remove_left_behind();
    }
}

#[test]
fn readme_usage_and_wiring_sections_run_as_written() {
    use std::os::unix::process::CommandExt as _;

    assert!(
        is_root(),
        "the README's commands run as root: run the tests as root"
    );
    // Every sh block is run here, by the Install test above, or listed with its reason.
    const QUICK_START: &str = "Quick start (fresh Debian machine with Rust)";
    let readme = read_repo_file("README.md");
    let counted: usize = [QUICK_START, "Install", "Using it", "Wiring it together"]
        .iter()
        .map(|s| section_blocks(s).len())
        .sum();
    assert_eq!(
        readme.matches("```sh").count(),
        counted,
        "README has sh blocks outside the sections this file runs"
    );
    let without_comment = |c: &str| c.split(" #").next().unwrap_or_default().trim().to_owned();
    for command in section_blocks(QUICK_START).into_iter().flatten() {
        let command = without_comment(&command);
        assert!(
            NOT_RUN_HERE.iter().any(|(c, _)| *c == command),
            "README command neither run nor listed in NOT_RUN_HERE: {command}"
        );
    }
    let all: Vec<String> = [QUICK_START, "Using it", "Wiring it together"]
        .iter()
        .flat_map(|s| section_blocks(s))
        .flatten()
        .map(|c| without_comment(&c))
        .collect();
    for (command, _) in NOT_RUN_HERE {
        assert!(
            all.iter().any(|c| c == command),
            "NOT_RUN_HERE lists a command the README no longer has: {command}"
        );
    }

    remove_left_behind();
    let bin_dir = stackmedic_tests::bin_path("stackmedic-exporter")
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut script = String::new();
    for command in ["Using it", "Wiring it together"]
        .iter()
        .flat_map(|s| section_blocks(s))
        .flatten()
    {
        if NOT_RUN_HERE
            .iter()
            .any(|(c, _)| *c == without_comment(&command))
        {
            continue;
        }
        let server = SERVERS.iter().any(|(start, _)| command.starts_with(start))
            && !command.contains("--config.check");
        let logged = format!("{command} >>session.log 2>&1");
        script.push_str(&if server {
            format!("{logged} &\n")
        } else {
            format!("{command}\n")
        });
    }
    let logs = tempfile::tempdir().unwrap();
    let script = script.replace(
        "session.log",
        &logs.path().join("session.log").display().to_string(),
    );
    let mut command = shell(&script);
    command.env("PATH", &path).process_group(0);
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bash");
    let session = Session(child.id());
    let output = child.wait_with_output().expect("wait for bash");
    let server_log = std::fs::read_to_string(logs.path().join("session.log")).unwrap_or_default();
    assert!(
        output.status.success(),
        "README commands failed with {}:\n{script}\n--- stdout\n{}\n--- stderr\n{}\n--- servers\n{server_log}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("contract holds: "), "{stdout}");
    for (start, port) in SERVERS {
        let up = wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
            http::get(&format!("http://127.0.0.1:{port}/-/ready")).is_ok_and(|r| r.status == 200)
        });
        assert!(up, "`{start} …` does not answer on {port}:\n{server_log}");
    }
    // Prometheus scrapes both binaries from the example configuration.
    let scraped = wait_until(Duration::from_secs(60), Duration::from_millis(500), || {
        http::get("http://127.0.0.1:9090/api/v1/targets?state=active")
            .ok()
            .and_then(|r| r.json().ok())
            .and_then(|v| v["data"]["activeTargets"].as_array().cloned())
            .is_some_and(|targets| {
                ["stackmedic-exporter", "stackmedic-remediator"]
                    .iter()
                    .all(|job| {
                        targets
                            .iter()
                            .any(|t| t["labels"]["job"] == *job && t["health"] == "up")
                    })
            })
    });
    assert!(
        scraped,
        "Prometheus does not scrape both binaries:\n{server_log}"
    );
    drop(session);
}
