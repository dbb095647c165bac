//! The real Docker Engine, through the `docker` CLI (argv, never a shell).
//!
//! No image can be pulled in the test environment, so [`busybox_image`] builds one with
//! `docker import` from a root filesystem holding the statically linked `/bin/busybox` of
//! Debian's `busybox-static` package. Containers run with `--network host` (dockerd runs with
//! `--bridge=none`), and [`Container`] removes its container on drop.
//!
//! `scripts/test.sh` starts dockerd when none runs; [`ensure_docker`] fails the test loudly when
//! it is not reachable.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Tag of the image built by [`busybox_image`].
pub const BUSYBOX_IMAGE: &str = "stackmedic-busybox:test";

/// The statically linked busybox of the Debian `busybox-static` package.
pub const BUSYBOX_BINARY: &str = "/bin/busybox";

/// Runs `docker <args>` and returns its output, whatever the exit status.
///
/// # Panics
/// When the `docker` CLI cannot be started at all.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run the docker CLI (Debian package docker.io) for {args:?}: {e}")
        })
}

/// Runs `docker <args>`, panics with its stderr unless it succeeds, and returns its stdout with
/// surrounding whitespace trimmed.
pub fn docker_ok(args: &[&str]) -> String {
    let output = docker(args);
    if !output.status.success() {
        panic!(
            "`docker {}` failed with {}:\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `.State.StartedAt` of a container: it changes with every start.
pub fn started_at(name: &str) -> String {
    docker_ok(&["inspect", "--format", "{{.State.StartedAt}}", name])
}

/// Whether the container runs now.
pub fn is_running(name: &str) -> bool {
    docker_ok(&["inspect", "--format", "{{.State.Running}}", name]) == "true"
}

/// Panics loudly unless `docker info` succeeds (the Docker daemon is reachable).
pub fn ensure_docker() {
    let output = docker(&["info", "--format", "{{.ServerVersion}}"]);
    if !output.status.success() {
        panic!(
            "the Docker daemon is not reachable (`docker info` failed with {}): {}\n\
             scripts/test.sh starts it: dockerd --bridge=none --iptables=false --ip6tables=false \
             (log in /tmp/stackmedic-dockerd.log)",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Returns [`BUSYBOX_IMAGE`], importing it first if the daemon does not have it.
///
/// The check and import happen once per process; across processes the import is idempotent
/// (`docker image inspect` first) and serialized by a lock directory,
/// `/tmp/stackmedic-busybox-import.lock`, so concurrent tests import it only once.
/// The image holds `/bin/busybox` with a symlink for every applet (`sh`, `sleep`, `true`,
/// `false`, `cat`, `echo`, `wget`, `nc`, …), `/usr/bin`, `/sbin` and `/usr/sbin` pointing at
/// `/bin`, a minimal `/etc/passwd` and `/etc/group`, and `CMD ["/bin/sh"]`.
///
/// # Panics
/// When Docker is not reachable or the import fails.
pub fn busybox_image() -> &'static str {
    static IMPORTED: OnceLock<()> = OnceLock::new();
    IMPORTED.get_or_init(|| {
        ensure_docker();
        let deadline = Instant::now() + IMPORT_LOCK_TIMEOUT;
        loop {
            if image_exists() {
                return;
            }
            // Test processes run concurrently: one imports, the others wait for its image (two
            // imports would leave a dangling duplicate behind). A directory is the lock.
            match std::fs::create_dir(IMPORT_LOCK) {
                Ok(()) => {
                    let result = std::panic::catch_unwind(|| {
                        if !image_exists() {
                            import_busybox(&[]);
                        }
                    });
                    let _ = std::fs::remove_dir(IMPORT_LOCK);
                    if let Err(panic) = result {
                        std::panic::resume_unwind(panic);
                    }
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // A lock left by a killed process: take it over once it is clearly stale.
                    let stale = std::fs::metadata(IMPORT_LOCK)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|modified| modified.elapsed().ok())
                        .is_some_and(|age| age > IMPORT_LOCK_STALE);
                    if stale {
                        let _ = std::fs::remove_dir(IMPORT_LOCK);
                    }
                    if Instant::now() >= deadline {
                        panic!(
                            "timed out waiting for another process to import {BUSYBOX_IMAGE} \
                             (lock {IMPORT_LOCK})"
                        );
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot create the import lock {IMPORT_LOCK}: {e}"),
            }
        }
    });
    BUSYBOX_IMAGE
}

/// Lock directory serializing [`busybox_image`] imports between processes.
const IMPORT_LOCK: &str = "/tmp/stackmedic-busybox-import.lock";
/// Age after which an import lock is considered left behind by a killed process.
const IMPORT_LOCK_STALE: Duration = Duration::from_secs(60);
/// How long [`busybox_image`] waits for another process's import.
const IMPORT_LOCK_TIMEOUT: Duration = Duration::from_secs(180);

fn image_exists() -> bool {
    docker(&["image", "inspect", "--format", "{{.Id}}", BUSYBOX_IMAGE])
        .status
        .success()
}

/// Imports [`BUSYBOX_IMAGE`] into the engine the `docker` CLI reaches with the global options
/// `host` (none: the default engine; `["--host", "unix:///…"]`: another one).
pub(crate) fn import_busybox(host: &[&str]) {
    let busybox = crate::require_program(&[BUSYBOX_BINARY], "busybox-static");
    let work = tempfile::Builder::new()
        .prefix("stackmedic-busybox-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
    let rootfs = work.path().join("rootfs");
    build_rootfs(&busybox, &rootfs);

    let tarball = work.path().join("rootfs.tar");
    let tar = Command::new("tar")
        .arg("--numeric-owner")
        .arg("--owner=0")
        .arg("--group=0")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .output()
        .unwrap_or_else(|e| panic!("cannot run tar: {e}"));
    if !tar.status.success() {
        panic!(
            "tar of the busybox rootfs failed: {}",
            String::from_utf8_lossy(&tar.stderr)
        );
    }
    let tarball = tarball.display().to_string();
    let mut args: Vec<&str> = host.to_vec();
    args.extend([
        "import",
        "--message",
        "stackmedic test image: Debian busybox-static",
        "--change",
        "ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin",
        "--change",
        "CMD [\"/bin/sh\"]",
        &tarball,
        BUSYBOX_IMAGE,
    ]);
    docker_ok(&args);
}

fn build_rootfs(busybox: &Path, rootfs: &Path) {
    use std::os::unix::fs::{symlink, PermissionsExt};

    let mkdir = |relative: &str, mode: u32| {
        let path = rootfs.join(relative);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
    };
    mkdir("", 0o755);
    for dir in [
        "bin", "etc", "root", "proc", "sys", "dev", "run", "var", "usr",
    ] {
        mkdir(dir, 0o755);
    }
    mkdir("tmp", 0o1777);
    mkdir("var/tmp", 0o1777);

    let target = rootfs.join("bin/busybox");
    std::fs::copy(busybox, &target)
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", busybox.display()));
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", target.display()));

    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} --list: {e}", busybox.display()));
    if !list.status.success() {
        panic!("{} --list failed", busybox.display());
    }
    let applets = String::from_utf8_lossy(&list.stdout).into_owned();
    for applet in applets.lines().map(str::trim) {
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        let link = rootfs.join("bin").join(applet);
        symlink("busybox", &link)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", link.display()));
    }
    for essential in ["sh", "sleep", "true", "false", "cat", "echo"] {
        if !rootfs.join("bin").join(essential).exists() {
            panic!("{} has no `{essential}` applet", busybox.display());
        }
    }
    for (link, to) in [
        ("sbin", "bin"),
        ("usr/bin", "../bin"),
        ("usr/sbin", "../bin"),
    ] {
        let path = rootfs.join(link);
        symlink(to, &path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    }
    let write = |relative: &str, contents: &str| {
        let path = rootfs.join(relative);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    };
    write(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    );
    write("etc/group", "root:x:0:\nnogroup:x:65534:\n");
    write("etc/hosts", "127.0.0.1 localhost\n::1 localhost\n");
}

/// A container, force-removed (`docker rm -f`) when dropped.
#[derive(Debug)]
pub struct Container {
    name: String,
    id: String,
}

/// Runs `docker run -d --network host --name <name> <extra_docker_args…> stackmedic-busybox:test
/// <cmd…>` and returns a guard for the container. A leftover container with the same name (from
/// an interrupted earlier run) is removed first; use [`crate::unique_name`] for names that must
/// not collide between concurrently running tests.
///
/// ```text
/// let c = run_busybox(&unique_name("sm-web"), &["--health-cmd", "true"], &["sleep", "300"]);
/// ```
///
/// # Panics
/// When Docker is not reachable, the image cannot be imported or `docker run` fails.
pub fn run_busybox(name: &str, extra_docker_args: &[&str], cmd: &[&str]) -> Container {
    let image = busybox_image();
    let _ = docker(&["rm", "-f", "-v", name]);
    let mut args = vec!["run", "-d", "--network", "host", "--name", name];
    args.extend_from_slice(extra_docker_args);
    args.push(image);
    args.extend_from_slice(cmd);
    let id = docker_ok(&args);
    Container {
        name: name.to_owned(),
        id,
    }
}

impl Container {
    /// Adopts an existing container (created by other means, for example `docker compose` or
    /// the code under test) so that it is removed when the guard is dropped.
    pub fn adopt(name: &str) -> Container {
        let output = docker(&["inspect", "--format", "{{.Id}}", name]);
        let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Container {
            name: name.to_owned(),
            id,
        }
    }

    /// The container name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full container id (empty for an adopted container that did not exist).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `docker inspect <name>` as JSON (the single object, not the array).
    ///
    /// # Panics
    /// When the container does not exist.
    pub fn inspect(&self) -> serde_json::Value {
        let text = docker_ok(&["inspect", &self.name]);
        let mut value: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("docker inspect output is not JSON: {e}: {text}"));
        value
            .get_mut(0)
            .map(serde_json::Value::take)
            .unwrap_or_else(|| panic!("docker inspect returned no object: {text}"))
    }

    /// `.State.Status` (`created`, `running`, `exited`, …), or `None` if the container is gone.
    pub fn status(&self) -> Option<String> {
        let output = docker(&["inspect", "--format", "{{.State.Status}}", &self.name]);
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// `docker logs <name>`: stdout and stderr of the container, concatenated.
    pub fn logs(&self) -> String {
        let output = docker(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
