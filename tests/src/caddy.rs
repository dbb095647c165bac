//! A private, real Caddy (`/usr/bin/caddy`, Debian package `caddy`) for a test, writing its
//! JSON access log, the format Caddy uses by default since 2.5.
//!
//! [`Caddy::start`] writes a `Caddyfile` into a fresh temporary directory and runs
//! `caddy run --adapter caddyfile` in the foreground, with the admin endpoint off, automatic
//! HTTPS off and `HOME`/`XDG_*` pointing into that directory, so nothing outside it is touched.
//! The one site listens on `http://127.0.0.1:<port>`, on a free port, and logs every request as
//! JSON to `<dir>/access.log`. The caller gives the inside of the site block (`handle`,
//! `header`, `respond` directives). The instance is stopped when the guard is dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::process::Process;

/// Path of the Caddy binary.
pub const CADDY: &str = "/usr/bin/caddy";

const START_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 4;

/// A running Caddy; see the [module docs](self).
#[derive(Debug)]
pub struct Caddy {
    // Field order matters: the process is stopped before its directory is deleted.
    process: Process,
    port: u16,
    dir: TempDir,
}

impl Caddy {
    /// Starts Caddy with `site_body` as the inside of its only site block.
    ///
    /// # Panics
    /// When Caddy is not installed, rejects the configuration, or does not accept connections
    /// within 20 s; the message includes its log.
    pub fn start(site_body: &str) -> Caddy {
        let caddy = crate::require_program(&[CADDY], "caddy");
        let dir = tempfile::Builder::new()
            .prefix("stackmedic-caddy-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for caddy: {e}"));
        let mut last = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = crate::free_port();
            let d = dir.path().display();
            let caddyfile = format!(
                "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {d}/data\n}}\n\
                 http://127.0.0.1:{port} {{\n\tbind 127.0.0.1\n\tlog {{\n\t\toutput file {d}/access.log\n\t\tformat json\n\t}}\n{site_body}\n}}\n"
            );
            let file = dir.path().join("Caddyfile");
            std::fs::write(&file, caddyfile)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
            let mut cmd = Command::new(&caddy);
            cmd.args(["run", "--adapter", "caddyfile", "--config"])
                .arg(&file)
                .env("HOME", dir.path())
                .env("XDG_DATA_HOME", dir.path().join("data"))
                .env("XDG_CONFIG_HOME", dir.path().join("config"));
            let mut process = Process::spawn(&format!("caddy-{attempt}"), cmd, dir.path());
            let up = crate::wait_until(START_TIMEOUT, Duration::from_millis(25), || {
                !process.is_running() || crate::port_accepts(port)
            });
            if up && process.is_running() {
                return Caddy { process, port, dir };
            }
            last = process.describe();
            process.stop();
            if !last.contains("address already in use") {
                break;
            }
        }
        panic!("caddy did not start:\n{last}");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The temporary directory holding the `Caddyfile`, the logs and Caddy's data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The JSON access log.
    pub fn access_log(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    /// The process guard.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}
