//! A second, private Docker Engine beside the one `scripts/test.sh` starts: a real `dockerd`
//! with its own data root, exec root (and so its own containerd), pid file and configuration
//! file, listening on a Unix socket of its own and on a loopback TCP port with TLS that
//! requires client certificates (`--tlsverify`), like an engine on another host.
//!
//! The certificates are made by `openssl` ([`crate::tls`]): a CA with the engine's server
//! certificate for `127.0.0.1` and a client certificate it trusts, and a second CA with a client
//! certificate the engine does not trust (and that does not trust the engine). The test's own
//! setup (importing the busybox image, running containers) goes through the Unix socket with
//! the `docker` CLI; the code under test reaches the engine over TCP with TLS.
//!
//! ```text
//! let engine = Dockerd::start();
//! let c = engine.run_busybox(&unique_name("sm-app"), &[], &["sleep", "300"]);
//! // docker: {host: engine.tcp_address(), ca_file: engine.ca_file(), …}
//! ```
//!
//! It runs as dockerd must here: `--bridge=none --iptables=false --ip6tables=false`, containers
//! with `--network host`. Dropping it removes its containers, stops the daemon and its
//! containerd, unmounts what they left mounted and deletes its directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::docker::BUSYBOX_IMAGE;
use crate::process::Process;

/// How long the daemon may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// A private `dockerd`; stopped and cleaned up when dropped. See the [module docs](self).
#[derive(Debug)]
pub struct Dockerd {
    // Field order matters: the process is stopped (in `Drop`) before the directory is deleted.
    process: Process,
    port: u16,
    dir: tempfile::TempDir,
}

impl Dockerd {
    /// Makes the certificates, starts the daemon, waits until it answers on its socket and
    /// imports [`BUSYBOX_IMAGE`] into it.
    ///
    /// # Panics
    /// When `dockerd` or `openssl` is missing, or the daemon does not come up (with its log).
    pub fn start() -> Dockerd {
        assert!(
            crate::is_root(),
            "a second dockerd needs root, as the first (scripts/test.sh runs as root)"
        );
        let dockerd =
            crate::require_program(&["/usr/sbin/dockerd", "/usr/bin/dockerd"], "docker.io");
        // Short: the daemon's containerd socket lives under the exec root, and a Unix socket
        // path has at most 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("sm-dockerd-")
            .tempdir_in("/tmp")
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let certs = dir.path().join("certs");
        let untrusted = dir.path().join("untrusted");
        for d in [&certs, &untrusted] {
            std::fs::create_dir(d).unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
            crate::tls::make_certificates(d);
            crate::tls::make_client_certificate(d);
        }
        // An empty configuration file: whatever /etc/docker/daemon.json says is for the first
        // engine.
        let config = dir.path().join("daemon.json");
        std::fs::write(&config, "{}\n").expect("write daemon.json");
        for sub in ["data", "exec"] {
            std::fs::create_dir(dir.path().join(sub)).expect("create the daemon's folders");
        }
        let mut last = String::new();
        // A free port may be taken before the daemon binds it: try a few.
        for _ in 0..3 {
            let port = crate::free_port();
            let path = |p: &str| dir.path().join(p).display().to_string();
            let mut command = Command::new(&dockerd);
            command
                .arg(format!("--config-file={}", config.display()))
                .arg(format!("--data-root={}", path("data")))
                .arg(format!("--exec-root={}", path("exec")))
                .arg(format!("--pidfile={}", path("docker.pid")))
                .arg(format!("--host=unix://{}", path("docker.sock")))
                .arg(format!("--host=tcp://127.0.0.1:{port}"))
                .arg("--tlsverify")
                .arg(format!("--tlscacert={}", path("certs/ca.crt")))
                .arg(format!("--tlscert={}", path("certs/server.crt")))
                .arg(format!("--tlskey={}", path("certs/server.key")))
                .args([
                    "--bridge=none",
                    "--iptables=false",
                    "--ip6tables=false",
                    "--ip-forward=false",
                    "--shutdown-timeout=2",
                ]);
            let mut process = Process::spawn("dockerd", command, dir.path());
            let socket = format!("unix://{}", path("docker.sock"));
            let up = crate::wait_until(START_TIMEOUT, Duration::from_millis(200), || {
                !process.is_running()
                    || cli(&socket, &["version", "--format", "{{.Server.Version}}"])
                        .status
                        .success()
            }) && process.is_running();
            if up && crate::port_accepts(port) {
                let engine = Dockerd { process, port, dir };
                crate::docker::import_busybox(&["--host", &engine.socket_address()]);
                return engine;
            }
            last = process.describe();
            process.stop();
            unmount_under(dir.path());
            if !last.contains("address already in use") {
                break;
            }
        }
        panic!("the second dockerd did not come up within {START_TIMEOUT:?}:\n{last}");
    }

    /// `tcp://127.0.0.1:<port>`, where it speaks TLS and requires a client certificate.
    #[must_use]
    pub fn tcp_address(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// The TCP port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `unix:///…/docker.sock`, its own socket (no TLS).
    #[must_use]
    pub fn socket_address(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    /// The CA the engine's server certificate chains to (and that signed the trusted client).
    #[must_use]
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("certs/ca.crt")
    }

    /// A client certificate the engine trusts.
    #[must_use]
    pub fn client_cert(&self) -> PathBuf {
        self.dir.path().join("certs/client.crt")
    }

    /// The key of [`Dockerd::client_cert`].
    #[must_use]
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("certs/client.key")
    }

    /// A CA that did not sign the engine's certificate.
    #[must_use]
    pub fn untrusted_ca_file(&self) -> PathBuf {
        self.dir.path().join("untrusted/ca.crt")
    }

    /// A client certificate, with its key, signed by a CA the engine does not trust.
    #[must_use]
    pub fn untrusted_client(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("untrusted/client.crt"),
            self.dir.path().join("untrusted/client.key"),
        )
    }

    /// Runs `docker --host unix:///…/docker.sock <args>`, whatever its exit status.
    pub fn docker(&self, args: &[&str]) -> Output {
        cli(&self.socket_address(), args)
    }

    /// As [`Dockerd::docker`]; panics with stderr unless it succeeds; returns trimmed stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "`docker --host {} {}` failed with {}:\n{}{}",
            self.socket_address(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs `docker run -d --network host --name <name> <extra…> stackmedic-busybox:test
    /// <cmd…>` on this engine; the container goes with the engine.
    pub fn run_busybox(&self, name: &str, extra_docker_args: &[&str], cmd: &[&str]) -> String {
        let mut args = vec!["run", "-d", "--network", "host", "--name", name];
        args.extend_from_slice(extra_docker_args);
        args.push(BUSYBOX_IMAGE);
        args.extend_from_slice(cmd);
        self.docker_ok(&args)
    }

    /// `docker inspect --format <format> <name>` on this engine, trimmed.
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.docker_ok(&["inspect", "--format", format, name])
    }

    /// The daemon's process guard (its log, whether it runs).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// The daemon's folder (its log is `dockerd.stderr.log` there).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", "-v", id]);
        }
        self.process.stop();
        unmount_under(self.dir.path());
    }
}

/// `docker --host <host> <args>`.
fn cli(host: &str, args: &[&str]) -> Output {
    Command::new("docker")
        .arg("--host")
        .arg(host)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the docker CLI (Debian package docker.io): {e}"))
}

/// Unmounts what a stopped daemon left mounted under `dir` (its network namespace file, an
/// overlay of a container it could not stop), deepest first, so the folder can be deleted.
fn unmount_under(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount")
            .args(["--lazy", p])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
