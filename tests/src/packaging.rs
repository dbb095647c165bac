//! What `scripts/package.sh` produced, as the packaging tests see it: the Debian packages in
//! `dist/`, the container images it recorded in `dist/images.txt`, and helpers for the
//! machine the packages are installed on (dpkg, the service user, the systemd units).
//!
//! `scripts/test.sh` runs `scripts/package.sh` once before the tests, so the tests use the
//! packages and images of that one release build; a missing `dist/` fails them loudly.
//!
//! No systemd runs as PID 1 in the test environment, so [`Service`] starts an installed unit's
//! `ExecStart=` the way systemd would (its `User=`, `Group=` and `SupplementaryGroups=`, drop-ins
//! included, a clean environment), and tests check the unit files with `systemd-analyze`.
//! The sandboxing options of a unit only take effect under systemd and are not exercised here.
//!
//! Installing packages changes the machine: the tests that do so are serialised with the
//! nextest test group `packaging` (`.config/nextest.toml`) and clean up before and after.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::process::Process;

/// The two binaries, each packaged and imaged under its own name.
pub const BINARIES: [&str; 2] = ["stackmedic-exporter", "stackmedic-remediator"];

/// The workspace version, which the packages and image tags carry.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where the packages install the units.
pub const UNIT_DIR: &str = "/usr/lib/systemd/system";

/// `dist/` of the repository.
///
/// # Panics
/// When it does not exist: `scripts/package.sh` has not run.
pub fn dist_dir() -> PathBuf {
    let dist = crate::alerting::repo_root().join("dist");
    if !dist.is_dir() {
        panic!(
            "{} is missing: run scripts/package.sh first (scripts/test.sh runs it before the \
             tests)",
            dist.display()
        );
    }
    dist
}

/// The `.deb` of `binary` in `dist/` (`<binary>_<VERSION>-<revision>_<arch>.deb`).
///
/// # Panics
/// When there is none, or more than one.
pub fn deb_file(binary: &str) -> PathBuf {
    let dist = dist_dir();
    let prefix = format!("{binary}_{VERSION}-");
    let found: Vec<PathBuf> = std::fs::read_dir(&dist)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dist.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .collect();
    match found.as_slice() {
        [one] => one.clone(),
        _ => panic!(
            "expected exactly one {prefix}*.deb in {} (built by scripts/package.sh), found \
             {found:?}",
            dist.display()
        ),
    }
}

/// An image `scripts/package.sh` built, as recorded in `dist/images.txt`.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// `<binary>:<VERSION>`.
    pub reference: String,
    /// The image id (`sha256:…`).
    pub id: String,
}

/// The image of `binary` recorded in `dist/images.txt`, checked to be the one the Docker
/// daemon has under that reference.
///
/// # Panics
/// When it is not recorded, or the daemon's image differs.
pub fn built_image(binary: &str) -> BuiltImage {
    let list = dist_dir().join("images.txt");
    let text = std::fs::read_to_string(&list).unwrap_or_else(|e| {
        panic!(
            "cannot read {} (written by scripts/package.sh unless --no-images): {e}",
            list.display()
        )
    });
    let reference = format!("{binary}:{VERSION}");
    let id = text
        .lines()
        .find_map(|line| {
            let (r, id) = line.split_once(' ')?;
            (r == reference).then(|| id.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("{reference} is not listed in {}:\n{text}", list.display()));
    let current =
        crate::docker::docker_ok(&["image", "inspect", "--format", "{{.Id}}", &reference]);
    assert_eq!(
        current, id,
        "{reference} in the Docker daemon is not the image scripts/package.sh recorded"
    );
    BuiltImage { reference, id }
}

/// Runs `program` with `args` and returns its output, whatever the exit status.
///
/// # Panics
/// When the program cannot be started.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {args:?}: {e}"))
}

/// Runs `program` with `args`, panics with its output unless it succeeds, and returns its
/// stdout.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    if !output.status.success() {
        panic!(
            "`{program} {}` failed with {}:\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Whether dpkg reports `package` as installed.
pub fn package_installed(package: &str) -> bool {
    let output = run("dpkg-query", &["-W", "--showformat=${Status}", package]);
    output.status.success() && String::from_utf8_lossy(&output.stdout) == "install ok installed"
}

/// Whether dpkg knows `package` at all (installed, or removed with its conffiles left).
pub fn package_known(package: &str) -> bool {
    let output = run("dpkg-query", &["-W", "--showformat=${Status}", package]);
    output.status.success() && !String::from_utf8_lossy(&output.stdout).ends_with("not-installed")
}

/// Purges both packages if dpkg knows them, so a test starts from a machine without them.
pub fn purge_packages() {
    let known: Vec<&str> = BINARIES
        .iter()
        .copied()
        .filter(|p| package_known(p))
        .collect();
    if !known.is_empty() {
        let mut args = vec!["--purge"];
        args.extend(&known);
        run_ok("dpkg", &args);
    }
}

/// Removes the system user `stackmedic` (and its group) when no stackmedic package is
/// installed, so a test sees the packages create it.
pub fn remove_service_user() {
    if BINARIES.iter().any(|p| package_known(p)) {
        return;
    }
    if run("getent", &["passwd", "stackmedic"]).status.success() {
        run_ok("userdel", &["stackmedic"]);
    }
    if run("getent", &["group", "stackmedic"]).status.success() {
        run_ok("groupdel", &["stackmedic"]);
    }
}

/// Panics unless `systemd-analyze` exists (Debian package `systemd`; it works without systemd
/// running).
pub fn require_systemd_analyze() -> PathBuf {
    crate::require_program(
        &["/usr/bin/systemd-analyze", "/bin/systemd-analyze"],
        "systemd",
    )
}

/// Whether systemd is the running init system (it never is in the test containers).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// A systemd unit file with its drop-ins, as `section.key → values` in file order.
#[derive(Debug, Clone)]
pub struct Unit {
    name: String,
    entries: Vec<(String, String, String)>,
}

impl Unit {
    /// Reads `path` and then the drop-ins `dropins` (later values append, as systemd's list
    /// settings do; an empty value is kept as written).
    ///
    /// # Panics
    /// When a file cannot be read.
    pub fn read(path: &Path, dropins: &[PathBuf]) -> Unit {
        let mut entries = Vec::new();
        for file in std::iter::once(path).chain(dropins.iter().map(PathBuf::as_path)) {
            let text = std::fs::read_to_string(file)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            let mut section = String::new();
            for line in text.lines() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                    continue;
                }
                if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                    section = name.to_owned();
                } else if let Some((key, value)) = line.split_once('=') {
                    entries.push((
                        section.clone(),
                        key.trim().to_owned(),
                        value.trim().to_owned(),
                    ));
                }
            }
        }
        Unit {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            entries,
        }
    }

    /// The unit's file name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every value of `key` in `section`, in order.
    pub fn values(&self, section: &str, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The single value of `key` in `[Service]`.
    ///
    /// # Panics
    /// When it is absent or set more than once.
    pub fn service(&self, key: &str) -> &str {
        match self.values("Service", key).as_slice() {
            [one] => one,
            other => panic!("{}: expected one {key}=, found {other:?}", self.name),
        }
    }

    /// `SupplementaryGroups=` of `[Service]`, split into group names.
    pub fn supplementary_groups(&self) -> Vec<String> {
        self.values("Service", "SupplementaryGroups")
            .iter()
            .flat_map(|v| v.split_whitespace())
            .map(str::to_owned)
            .collect()
    }
}

/// An installed unit's `ExecStart=` run as systemd would run it, stopped on drop.
#[derive(Debug)]
pub struct Service {
    process: Process,
    port: u16,
}

impl Service {
    /// Starts `unit`'s `ExecStart=` as its `User=`/`Group=` with its `SupplementaryGroups=`
    /// and a clean environment, with `$ARGS` (the `EnvironmentFile=` variable) replaced by
    /// `--web.listen-address=127.0.0.1:<free port>`, and waits until it is ready.
    ///
    /// # Panics
    /// When it does not become ready within 30 s.
    pub fn start(unit: &Unit, log_dir: &Path) -> Service {
        let port = crate::free_port();
        let exec: Vec<String> = unit
            .service("ExecStart")
            .split_whitespace()
            .flat_map(|word| {
                if word == "$ARGS" {
                    vec![format!("--web.listen-address=127.0.0.1:{port}")]
                } else {
                    vec![word.to_owned()]
                }
            })
            .collect();
        let groups = unit.supplementary_groups();
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={}", unit.service("User")))
            .arg(format!("--regid={}", unit.service("Group")));
        if groups.is_empty() {
            command.arg("--clear-groups");
        } else {
            command.arg(format!("--groups={}", groups.join(",")));
        }
        command
            .arg("--")
            .args(&exec)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8");
        let mut process = Process::spawn(unit.name(), command, log_dir);
        if !process.wait_ready(port, Duration::from_secs(30)) {
            panic!(
                "{} (as {:?}) was not ready on port {port}:\n{}",
                unit.name(),
                exec,
                process.describe()
            );
        }
        Service { process, port }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The process guard.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// Waits up to `timeout` until Docker reports the container's health check `healthy`.
///
/// # Panics
/// On timeout, with the health check's log and the container's output.
pub fn wait_healthy(container: &crate::docker::Container, timeout: Duration) {
    let healthy = crate::wait_until(timeout, Duration::from_millis(500), || {
        container.inspect()["State"]["Health"]["Status"] == "healthy"
    });
    if !healthy {
        panic!(
            "container {} did not become healthy within {timeout:?}; state:\n{:#}\nlogs:\n{}",
            container.name(),
            container.inspect()["State"],
            container.logs()
        );
    }
}

/// The group id that owns the Docker socket, as `--group-add` takes it.
///
/// # Panics
/// When the socket is missing.
pub fn docker_socket_gid() -> String {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/var/run/docker.sock")
        .unwrap_or_else(|e| panic!("cannot stat /var/run/docker.sock: {e}"));
    meta.gid().to_string()
}

/// Where [`dependency_repo`] keeps the Debian packages it fetched, one folder per set of
/// dependencies.
pub const DEPENDENCY_CACHE: &str = "/var/cache/stackmedic-tests/debian-deps";

/// The names of the packages `debs` depend on (their `Depends:`, the first of alternatives,
/// versions dropped), sorted.
pub fn dependencies(debs: &[PathBuf]) -> Vec<String> {
    let mut names = Vec::new();
    for deb in debs {
        let depends = run_ok("dpkg-deb", &["-f", &deb.display().to_string(), "Depends"]);
        for part in depends.split(',') {
            let first = part.split('|').next().unwrap_or_default().trim();
            let name = first
                .split(|c: char| c.is_whitespace() || c == '(' || c == ':')
                .next()
                .unwrap_or_default()
                .trim();
            if !name.is_empty() && !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    names
}

/// A local apt repository (a folder with the `.deb` files and a `Packages` index) of what a
/// clean root of [`crate::systemd::systemd_image`] lacks to install `debs`: the packages apt
/// would fetch from the release's mirror for their dependencies, and nothing else. It is
/// fetched once per set of dependencies, like the image's root filesystem, by apt in a
/// container of that image (with the image's own mirror), and cached in
/// [`DEPENDENCY_CACHE`]; a test then installs offline from it, so apt resolves exactly the
/// dependencies the packages declare.
///
/// # Panics
/// When apt cannot fetch them or the index cannot be written.
pub fn dependency_repo(debs: &[PathBuf]) -> PathBuf {
    let image = crate::systemd::systemd_image();
    let names = dependencies(debs);
    let repo = Path::new(DEPENDENCY_CACHE).join(names.join("+"));
    if repo.join("Packages").is_file() {
        return repo;
    }
    let partial = repo.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(partial.join("partial"))
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", partial.display()));
    let mount = format!("{}:/out", partial.display());
    let script = format!(
        "apt-get update -qq && apt-get install -y -qq --download-only --no-install-recommends \
         -o Dir::Cache::archives=/out {}",
        names.join(" ")
    );
    let out = crate::docker::docker(&[
        "run",
        "--rm",
        "--network",
        "host",
        "-v",
        &mount,
        image,
        "sh",
        "-c",
        &script,
    ]);
    assert!(
        out.status.success(),
        "apt could not fetch the dependencies {names:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(partial.join("partial"));
    let _ = std::fs::remove_file(partial.join("lock"));
    let index = Command::new("dpkg-scanpackages")
        .args(["--multiversion", "."])
        .current_dir(&partial)
        .stderr(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run dpkg-scanpackages (package dpkg-dev): {e}"));
    assert!(index.status.success(), "dpkg-scanpackages failed");
    std::fs::write(partial.join("Packages"), &index.stdout)
        .unwrap_or_else(|e| panic!("cannot write the index: {e}"));
    let _ = std::fs::remove_dir_all(&repo);
    std::fs::rename(&partial, &repo)
        .unwrap_or_else(|e| panic!("cannot move {} into place: {e}", partial.display()));
    repo
}
