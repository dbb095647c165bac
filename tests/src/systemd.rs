//! A real systemd as PID 1 in a container, whose system bus the remediator reaches through a
//! socket in a host directory.
//!
//! The image is a Debian root filesystem made by `debootstrap` (minbase with `systemd` and
//! `dbus`, in the host's own Debian release, from the host's configured mirror), turned into an
//! image with `docker import`. Building the root filesystem downloads about 40 MB and takes
//! about a minute, so its tarball is cached in [`ROOTFS_CACHE`] and built once per machine;
//! importing it takes a second and is done once per image store.
//!
//! Each [`SystemdContainer`] runs with `--network host`, its units bind-mounted read-only into
//! `/usr/local/lib/systemd/system`, `/run/dbus` bind-mounted from a host directory (so the
//! system bus socket is a host path: [`SystemdContainer::bus_address`]) and `/srv/shared` from
//! another (for what the units write, such as backup archives). The container runs without
//! `--privileged`; the cgroup hierarchy is mounted read-only.
//!
//! A systemd that does not come up is a test failure with its state and log in the message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::docker::{docker, docker_ok, ensure_docker, Container};

/// Tag of the image built by [`systemd_image`].
pub const SYSTEMD_IMAGE: &str = "stackmedic-systemd:test";

/// Where the root filesystem tarball is cached between runs.
pub const ROOTFS_CACHE: &str = "/var/cache/stackmedic-tests/debian-systemd-rootfs.tar";

/// Lock directory serializing the build and the import between test processes.
const LOCK: &str = "/tmp/stackmedic-systemd-image.lock";
/// Age after which a lock is taken to be left by a killed process (debootstrap takes ~1 min).
const LOCK_STALE: Duration = Duration::from_secs(900);
/// How long a test waits for another process's build.
const LOCK_TIMEOUT: Duration = Duration::from_secs(1200);

/// Returns [`SYSTEMD_IMAGE`], building the root filesystem and importing it first if needed.
///
/// # Panics
/// When Docker is unreachable, `debootstrap` is missing or fails, or the import fails.
pub fn systemd_image() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        ensure_docker();
        let deadline = Instant::now() + LOCK_TIMEOUT;
        loop {
            if image_exists() {
                return;
            }
            match std::fs::create_dir(LOCK) {
                Ok(()) => {
                    let result = std::panic::catch_unwind(|| {
                        if !image_exists() {
                            import(&rootfs_tarball());
                        }
                    });
                    let _ = std::fs::remove_dir(LOCK);
                    if let Err(panic) = result {
                        std::panic::resume_unwind(panic);
                    }
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(LOCK)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|m| m.elapsed().ok())
                        .is_some_and(|age| age > LOCK_STALE);
                    if stale {
                        let _ = std::fs::remove_dir(LOCK);
                    }
                    if Instant::now() >= deadline {
                        panic!("timed out waiting for another process to build {SYSTEMD_IMAGE} (lock {LOCK})");
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => panic!("cannot create the lock {LOCK}: {e}"),
            }
        }
    });
    SYSTEMD_IMAGE
}

fn image_exists() -> bool {
    docker(&["image", "inspect", "--format", "{{.Id}}", SYSTEMD_IMAGE])
        .status
        .success()
}

fn import(tarball: &Path) {
    docker_ok(&[
        "import",
        "--message",
        "stackmedic test image: Debian minbase with systemd and dbus",
        "--change",
        "ENV container=docker",
        "--change",
        "CMD [\"/lib/systemd/systemd\"]",
        &tarball.display().to_string(),
        SYSTEMD_IMAGE,
    ]);
}

/// The cached root filesystem tarball, built with `debootstrap` when absent.
fn rootfs_tarball() -> PathBuf {
    let tarball = PathBuf::from(ROOTFS_CACHE);
    if tarball.is_file() {
        return tarball;
    }
    let debootstrap = crate::require_program(&["/usr/sbin/debootstrap"], "debootstrap");
    let cache = tarball.parent().unwrap_or(Path::new("/var/cache"));
    std::fs::create_dir_all(cache)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", cache.display()));
    let work = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(cache)
        .unwrap_or_else(|e| panic!("cannot create a build folder in {}: {e}", cache.display()));
    let rootfs = work.path().join("rootfs");
    let (suite, mirror) = host_release();
    let mut command = Command::new(&debootstrap);
    command
        .args(["--variant=minbase", "--include=systemd,dbus"])
        .arg(&suite)
        .arg(&rootfs);
    // Without a mirror debootstrap uses its own default.
    if let Some(m) = &mirror {
        command.arg(m);
    }
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run debootstrap: {e}"));
    if !out.status.success() {
        panic!(
            "debootstrap {suite} failed with {}:\n{}\n{}",
            out.status,
            tail(&out.stdout),
            tail(&out.stderr)
        );
    }
    // Smaller and quieter: no package lists, docs or translations; no login prompts or
    // seat management in a container.
    for dir in [
        "var/cache/apt",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/locale",
        "usr/share/man",
    ] {
        let path = rootfs.join(dir);
        let _ = std::fs::remove_dir_all(&path);
        let _ = std::fs::create_dir_all(&path);
    }
    for masked in ["getty.target", "systemd-logind.service"] {
        let link = rootfs.join("etc/systemd/system").join(masked);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/null", &link)
            .unwrap_or_else(|e| panic!("cannot mask {masked}: {e}"));
    }
    let partial = work.path().join("rootfs.tar");
    let tar = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&partial)
        .arg(".")
        .output()
        .unwrap_or_else(|e| panic!("cannot run tar: {e}"));
    if !tar.status.success() {
        panic!("tar of the rootfs failed: {}", tail(&tar.stderr));
    }
    // Renamed into place only when complete, so a killed build never leaves a partial tarball.
    std::fs::rename(&partial, &tarball)
        .unwrap_or_else(|e| panic!("cannot move the tarball to {}: {e}", tarball.display()));
    tarball
}

/// The host's Debian release (`VERSION_CODENAME`) and its first configured mirror.
fn host_release() -> (String, Option<String>) {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let suite = os
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "bookworm".to_string());
    let mut sources = String::new();
    for file in [
        "/etc/apt/sources.list.d/debian.sources",
        "/etc/apt/sources.list",
    ] {
        sources.push_str(&std::fs::read_to_string(file).unwrap_or_default());
        sources.push('\n');
    }
    let mirror = sources.lines().find_map(|l| {
        let l = l.trim();
        let uri = if let Some(rest) = l.strip_prefix("URIs:") {
            rest.split_whitespace().next()
        } else if let Some(rest) = l.strip_prefix("deb ") {
            rest.split_whitespace().find(|w| w.contains("://"))
        } else {
            None
        }?;
        (!uri.contains("security")).then(|| uri.to_string())
    });
    (suite, mirror)
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let skip = text.chars().count().saturating_sub(3000);
    text.chars().skip(skip).collect()
}

/// A running systemd container; removed (and its directories deleted) when dropped.
#[derive(Debug)]
pub struct SystemdContainer {
    // Field order: the container goes before its directories.
    container: Container,
    dir: TempDir,
}

impl SystemdContainer {
    /// Starts systemd with `units` (file name, contents) and waits until it is running and its
    /// system bus answers.
    ///
    /// # Panics
    /// When the image cannot be built, `docker run` fails or systemd does not come up within
    /// 60 s.
    pub fn start(units: &[(&str, &str)]) -> SystemdContainer {
        Self::start_image(systemd_image(), units, &[])
    }

    /// [`SystemdContainer::start`] of `image` (one made from [`systemd_image`], such as a
    /// commit of it with packages installed), with `extra` arguments for `docker run` before
    /// the image (capabilities a test's units need, say).
    ///
    /// # Panics
    /// As [`SystemdContainer::start`].
    pub fn start_image(image: &str, units: &[(&str, &str)], extra: &[&str]) -> SystemdContainer {
        let dir = tempfile::Builder::new()
            .prefix("stackmedic-systemd-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        for sub in ["units", "dbus", "shared"] {
            std::fs::create_dir(dir.path().join(sub))
                .unwrap_or_else(|e| panic!("cannot create {sub}: {e}"));
        }
        for (name, text) in units {
            std::fs::write(dir.path().join("units").join(name), text)
                .unwrap_or_else(|e| panic!("cannot write unit {name}: {e}"));
        }
        let name = crate::unique_name("sm-systemd");
        let volume = |host: &str, inside: &str, ro: bool| {
            format!(
                "{}:{inside}{}",
                dir.path().join(host).display(),
                if ro { ":ro" } else { "" }
            )
        };
        let units_mount = volume("units", "/usr/local/lib/systemd/system", true);
        let dbus_mount = volume("dbus", "/run/dbus", false);
        let shared_mount = volume("shared", "/srv/shared", false);
        let _ = docker(&["rm", "-f", "-v", &name]);
        let args = [
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "--stop-signal",
            "SIGRTMIN+3",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--tmpfs",
            "/tmp",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:ro",
            "-v",
            &units_mount,
            "-v",
            &dbus_mount,
            "-v",
            &shared_mount,
        ];
        let mut args: Vec<&str> = args.to_vec();
        args.extend_from_slice(extra);
        args.push(image);
        docker_ok(&args);
        let container = Container::adopt(&name);
        let me = SystemdContainer { container, dir };
        me.wait_running(Duration::from_secs(60));
        me
    }

    fn wait_running(&self, timeout: Duration) {
        let socket = self.dir.path().join("dbus/system_bus_socket");
        let mut last = String::new();
        let ok = crate::wait_until(timeout, Duration::from_millis(250), || {
            let out = self.systemctl(&["is-system-running"]);
            last = String::from_utf8_lossy(&out.stdout).trim().to_string();
            socket.exists() && matches!(last.as_str(), "running" | "degraded")
        });
        if !ok {
            let failed = self.systemctl(&["--failed", "--no-pager"]);
            panic!(
                "systemd in container {} did not come up within {timeout:?} (is-system-running: \
                 {last:?}, bus socket present: {}):\n{}\ncontainer log:\n{}",
                self.container.name(),
                socket.exists(),
                String::from_utf8_lossy(&failed.stdout),
                self.container.logs()
            );
        }
    }

    /// `unix:path=…` of the system bus socket, on the host.
    pub fn bus_address(&self) -> String {
        format!(
            "unix:path={}",
            self.dir.path().join("dbus/system_bus_socket").display()
        )
    }

    /// The host directory mounted as `/srv/shared` in the container.
    pub fn shared_dir(&self) -> PathBuf {
        self.dir.path().join("shared")
    }

    /// The container.
    pub fn container(&self) -> &Container {
        &self.container
    }

    /// `systemctl <args>` inside the container, for the test's own set-up and checks.
    pub fn systemctl(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", self.container.name(), "systemctl"];
        all.extend_from_slice(args);
        docker(&all)
    }

    /// A property of a unit (`systemctl show -p NAME --value UNIT`).
    pub fn property(&self, unit: &str, name: &str) -> String {
        let out = self.systemctl(&["show", "-p", name, "--value", unit]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `command` inside the container (`docker exec`), for the test's own checks.
    pub fn exec(&self, command: &[&str]) -> Output {
        let mut all = vec!["exec", self.container.name()];
        all.extend_from_slice(command);
        docker(&all)
    }

    /// `journalctl -u UNIT` inside the container, for failure messages.
    pub fn journal(&self, unit: &str) -> String {
        let out = docker(&[
            "exec",
            self.container.name(),
            "journalctl",
            "--no-pager",
            "-n",
            "50",
            "-u",
            unit,
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
