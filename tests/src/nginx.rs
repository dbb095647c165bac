//! A private, real nginx (`/usr/sbin/nginx`, Debian package `nginx`) for a test.
//!
//! [`Nginx::start`] writes a complete `nginx.conf` into a fresh temporary directory and starts
//! `nginx -c <dir>/nginx.conf -p <dir>/ -e <dir>/error.log` in the foreground (`daemon off`,
//! one worker). Everything nginx writes stays in that directory: `nginx.pid`, `error.log`,
//! `access.log` (combined format, unless the server block sets its own) and the
//! `*_temp` directories. It listens on `127.0.0.1:<port>` only, on a free port it chooses.
//!
//! The caller gives the **inside** of the `server { }` block. Placeholders replaced in it:
//! `{port}` (the chosen port), `{dir}` (the temporary directory) and `{www}` (`<dir>/www`, an
//! empty directory created for static files). A `listen 127.0.0.1:{port};` directive is added
//! unless the block has its own `listen` directives (which must then use loopback addresses
//! and `{port}`: `127.0.0.1:{port}`, and `127.0.0.2:{port}` to stand in for a second host).
//!
//! ```text
//! let nginx = Nginx::start("location / { root {www}; }");
//! nginx.write("www/index.html", "hello");
//! let body = http::get(&nginx.url("/index.html"))?.text();
//! ```
//!
//! When running as root the workers run as root too (`user root root;`), so files in any test
//! directory are readable. The instance is stopped (`SIGTERM`, so the workers exit with the
//! master) when the guard is dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{tail, Process};

/// Path of the nginx binary.
pub const NGINX: &str = "/usr/sbin/nginx";

const START_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 4;

/// A running nginx; see the [module docs](self).
#[derive(Debug)]
pub struct Nginx {
    // Field order matters: the process is stopped before its directory is deleted.
    process: Process,
    port: u16,
    conf: PathBuf,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx with `server_body` as the inside of its only `server { }` block.
    ///
    /// # Panics
    /// When nginx is not installed, the configuration is rejected, or nginx does not accept
    /// connections within 20 s; the message includes nginx's error log.
    pub fn start(server_body: &str) -> Nginx {
        Self::start_with_http(server_body, "")
    }

    /// Like [`Nginx::start`], with `http_directives` added to the `http { }` context before the
    /// server block (for example a `log_format`, which nginx only accepts there). The same
    /// placeholders are replaced in it.
    pub fn start_with_http(server_body: &str, http_directives: &str) -> Nginx {
        let nginx = crate::require_program(&[NGINX], "nginx");
        let dir = tempfile::Builder::new()
            .prefix("stackmedic-nginx-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for nginx: {e}"));
        make_world_readable(dir.path());
        let www = dir.path().join("www");
        std::fs::create_dir(&www).unwrap_or_else(|e| panic!("cannot create {www:?}: {e}"));
        make_world_readable(&www);

        let mut last_failure = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = crate::free_port();
            let conf = dir.path().join("nginx.conf");
            let text = render_config(dir.path(), port, server_body, http_directives);
            std::fs::write(&conf, &text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));

            let mut command = Command::new(&nginx);
            command.args(prefix_args(dir.path(), &conf));
            let mut process = Process::spawn(&format!("nginx-{attempt}"), command, dir.path());
            // nginx writes its pid file only after it has bound its listening sockets, so a
            // pid file plus an accepting port means this nginx (not a port thief) listens.
            let pid_file = dir.path().join("nginx.pid");
            let up = crate::wait_until(START_TIMEOUT, Duration::from_millis(25), || {
                !process.is_running() || (pid_file.exists() && crate::port_accepts(port))
            });
            if up && process.is_running() {
                return Nginx {
                    process,
                    port,
                    conf,
                    dir,
                };
            }
            let error_log =
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            process.stop();
            last_failure = format!(
                "{}\n--- error.log ---\n{}\n--- nginx.conf ---\n{text}",
                process.describe(),
                tail(&error_log, 4000)
            );
            if !error_log.contains("Address already in use") {
                break;
            }
        }
        panic!("nginx did not start:\n{last_failure}");
    }

    /// The port nginx listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory holding the configuration, logs and `www/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<dir>/www`, an empty directory for static files (placeholder `{www}`).
    pub fn www(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    /// `http://127.0.0.1:<port><path>`; `path` should start with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Path of the default access log, `<dir>/access.log` (combined format).
    pub fn access_log(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    /// Path of the error log, `<dir>/error.log`.
    pub fn error_log(&self) -> PathBuf {
        self.dir.path().join("error.log")
    }

    /// Path of the generated `nginx.conf`.
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// Writes `contents` to `<dir>/<relative>`, creating parent directories (world-readable).
    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Reopens the log files, as logrotate does: runs `nginx -s reopen` with the same `-c`/`-p`,
    /// then waits until both the master and the worker have logged "reopening logs" to
    /// `error.log`, so requests made after this returns are logged to the new files.
    ///
    /// Move `access.log` away before calling this to simulate a rotation; do not move
    /// `error.log` (it is how completion is observed).
    ///
    /// # Panics
    /// When the signal cannot be sent or the reopen is not observed within 10 s.
    pub fn reopen(&mut self) {
        let before = self.reopen_count();
        let nginx = crate::require_program(&[NGINX], "nginx");
        let output = Command::new(&nginx)
            .args(prefix_args(self.dir.path(), &self.conf))
            .args(["-s", "reopen"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run nginx -s reopen: {e}"));
        if !output.status.success() {
            panic!(
                "nginx -s reopen failed with {}: {}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr),
                self.process.describe()
            );
        }
        // One line from the master and one from the single worker.
        let done = crate::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            self.reopen_count() >= before + 2
        });
        if !done {
            panic!(
                "nginx did not log the reopen within 10 s\n--- error.log ---\n{}\n{}",
                tail(
                    &std::fs::read_to_string(self.error_log()).unwrap_or_default(),
                    4000
                ),
                self.process.describe()
            );
        }
    }

    /// Processes that have reopened their logs. nginx also logs the received signal as
    /// "signal 10 (SIGUSR1) received from N, reopening logs" before it reopens anything, so only
    /// the bare ": reopening logs" lines (one per process, written when it reopens) count.
    fn reopen_count(&self) -> usize {
        std::fs::read_to_string(self.error_log())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with(": reopening logs"))
            .count()
    }

    /// Stops nginx (`SIGTERM`, then `SIGKILL` after a grace period). Dropping does the same.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// The underlying process guard (pid, stderr, describe).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}

fn prefix_args(dir: &Path, conf: &Path) -> Vec<String> {
    vec![
        "-p".to_owned(),
        format!("{}/", dir.display()),
        "-c".to_owned(),
        conf.display().to_string(),
        "-e".to_owned(),
        dir.join("error.log").display().to_string(),
    ]
}

fn substitute(text: &str, dir: &Path, port: u16) -> String {
    text.replace("{port}", &port.to_string())
        .replace("{www}", &dir.join("www").display().to_string())
        .replace("{dir}", &dir.display().to_string())
}

fn render_config(dir: &Path, port: u16, server_body: &str, http_directives: &str) -> String {
    let d = dir.display();
    let body = substitute(server_body, dir, port);
    let http_extra = substitute(http_directives, dir, port);
    let has_listen = body
        .lines()
        .any(|line| line.trim_start().starts_with("listen "));
    for line in body.lines().chain(http_extra.lines()) {
        let line = line.trim_start();
        // Another loopback address on the same port stands in for a second host.
        let loopback = line
            .strip_prefix("listen 127.")
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(host, rest)| {
                host.split('.').count() == 3
                    && host.split('.').all(|n| n.parse::<u8>().is_ok())
                    && rest.starts_with(&port.to_string())
            });
        if line.starts_with("listen ") && !loopback {
            panic!(
                "nginx test servers must listen on 127.0.0.1:{{port}} (or another loopback \
                 address at {{port}}) only, got {line:?}"
            );
        }
    }
    let listen = if has_listen {
        String::new()
    } else {
        format!("listen 127.0.0.1:{port};")
    };
    let user = if crate::is_root() {
        "user root root;"
    } else {
        ""
    };
    let mime = if Path::new("/etc/nginx/mime.types").is_file() {
        "include /etc/nginx/mime.types;"
    } else {
        ""
    };
    format!(
        "# Generated by stackmedic-tests for one test; everything stays in {d}.
{user}
daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log notice;

events {{
    worker_connections 256;
}}

http {{
    {mime}
    default_type application/octet-stream;
    access_log {d}/access.log combined;
    client_body_temp_path {d}/client_body_temp;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
    server_tokens off;

{http_extra}

    server {{
        {listen}
        server_name localhost;
{body}
    }}
}}
"
    )
}

fn make_world_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}
