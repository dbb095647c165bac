//! A private, real `dnsmasq` (Debian package `dnsmasq-base`) answering DNS on a loopback port.
//!
//! [`Dnsmasq::start`] runs `dnsmasq --keep-in-foreground` with no configuration file, no
//! upstream servers (`--no-resolv`), no hosts file, listening on `127.0.0.1:<port>` only (UDP and
//! TCP, a free port it chooses) and logging every query to its stderr. The records come from
//! `--address=/name/ip` (and `--address=/name/` for a name that does not exist: NXDOMAIN);
//! names it has no record for are refused, as a server without upstreams does.
//!
//! ```text
//! let dns = Dnsmasq::start(&["--address=/leitstand.home.arpa/127.0.0.10"]);
//! let server = format!("127.0.0.1:{}", dns.port());
//! ```

use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::process::Process;

/// The dnsmasq binary of Debian's `dnsmasq-base`.
pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// A running dnsmasq, stopped when dropped.
#[derive(Debug)]
pub struct Dnsmasq {
    // The process is stopped before its directory is deleted.
    process: Process,
    port: u16,
    _dir: TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq with the extra `args` (record options such as `--address=/x/127.0.0.9`)
    /// and waits until it accepts TCP connections on its port.
    ///
    /// # Panics
    /// When dnsmasq is not installed or does not come up within 10 s, with its log.
    pub fn start(args: &[&str]) -> Dnsmasq {
        let program = crate::require_program(&[DNSMASQ], "dnsmasq-base");
        let dir = tempfile::Builder::new()
            .prefix("stackmedic-dnsmasq-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let mut last = String::new();
        for attempt in 1..=4 {
            let port = crate::free_port();
            let mut cmd = Command::new(&program);
            cmd.arg("--keep-in-foreground")
                .arg("--conf-file=/dev/null")
                .arg("--no-resolv")
                .arg("--no-hosts")
                .arg("--no-poll")
                .arg("--pid-file=")
                .arg("--user=root")
                .arg("--bind-interfaces")
                .arg("--listen-address=127.0.0.1")
                .arg("--except-interface=nonexistent")
                .arg(format!("--port={port}"))
                .arg("--log-queries")
                .arg("--log-facility=-")
                .args(args);
            let mut process = Process::spawn(&format!("dnsmasq-{attempt}"), cmd, dir.path());
            let up = crate::wait_until(Duration::from_secs(10), Duration::from_millis(25), || {
                !process.is_running() || crate::port_accepts(port)
            });
            if up && process.is_running() {
                return Dnsmasq {
                    process,
                    port,
                    _dir: dir,
                };
            }
            last = process.describe();
            process.stop();
            if !last.contains("Address already in use") {
                break;
            }
        }
        panic!("dnsmasq did not start:\n{last}");
    }

    /// The port it answers on (UDP and TCP).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its log (every query it answered).
    pub fn log(&self) -> String {
        self.process.stderr()
    }
}
