//! A private, real Alertmanager (`/usr/bin/prometheus-alertmanager`, Debian package
//! `prometheus-alertmanager`), and the path of `amtool`.
//!
//! [`Alertmanager::start`] writes the caller's configuration into a fresh temporary directory and
//! runs `prometheus-alertmanager --config.file=<dir>/alertmanager.yml --storage.path=<dir>/data
//! --web.listen-address=127.0.0.1:<port> --cluster.listen-address=` (an empty cluster address
//! disables clustering, so nothing listens besides the web port), then waits until `/-/ready`
//! answers 200. Placeholders replaced in the configuration: `{port}` and `{dir}`.
//!
//! [`Alertmanager::start_cluster`] starts members clustered with each other on loopback ports
//! (a highly available pair); [`Alertmanager::restart`] brings a member back empty, as after a
//! restart in production, and [`Alertmanager::kill`] kills one.
//!
//! ```text
//! let am = Alertmanager::start(&format!(
//!     "route: {{receiver: remediator, group_wait: 0s}}\n\
//!      receivers: [{{name: remediator, webhook_configs: [{{url: 'http://127.0.0.1:{port}/webhook'}}]}}]\n"
//! ));
//! let alerts = am.alerts()?;
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::process::Process;

/// Path of the Alertmanager binary on Debian.
pub const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// Path of amtool on Debian.
pub const AMTOOL: &str = "/usr/bin/amtool";

/// The alert name of the remediator's escalations.
pub const ESCALATION: &str = "StackmedicRemediationFailed";

/// The path of `amtool` (Debian package `prometheus-alertmanager`), for `amtool check-config`,
/// `amtool config routes test`, `amtool alert query --alertmanager.url=…`, ….
///
/// # Panics
/// When it is not installed.
pub fn amtool() -> PathBuf {
    crate::require_program(&[AMTOOL], "prometheus-alertmanager")
}

/// A running Alertmanager; stopped when dropped. See the [module docs](self).
#[derive(Debug)]
pub struct Alertmanager {
    // Field order matters: the process is stopped before its directory is deleted.
    process: Process,
    port: u16,
    /// The cluster flags it was started with (`--cluster.listen-address=` alone when it is
    /// not clustered), kept for [`Alertmanager::restart`].
    cluster_args: Vec<String>,
    starts: u32,
    dir: TempDir,
}

impl Alertmanager {
    /// Starts Alertmanager with configuration `config_yaml` (placeholders replaced).
    ///
    /// # Panics
    /// When Alertmanager is not installed, rejects the configuration, or is not ready within
    /// 60 s; the message includes its log.
    pub fn start(config_yaml: &str) -> Alertmanager {
        Self::start_with_cluster(config_yaml, vec!["--cluster.listen-address=".to_owned()])
    }

    /// Starts `n` Alertmanagers with configuration `config_yaml`, clustered with each other on
    /// `127.0.0.1` (each one's `--cluster.peer` names the others), as a highly available pair
    /// or more is run. Gossip and the wait for a peer's notification are shortened so that a
    /// test does not wait the production defaults (`--cluster.gossip-interval=50ms`,
    /// `--cluster.pushpull-interval=1s`, `--cluster.peer-timeout=1s`).
    ///
    /// Alertmanager keeps alerts in memory and does not share them between members: each one
    /// holds what was posted to it (Prometheus posts to every member). Members share silences
    /// and which notifications were sent.
    pub fn start_cluster(config_yaml: &str, n: usize) -> Vec<Alertmanager> {
        let ports: Vec<u16> = (0..n).map(|_| crate::free_port()).collect();
        ports
            .iter()
            .map(|own| {
                let mut args = vec![
                    format!("--cluster.listen-address=127.0.0.1:{own}"),
                    format!("--cluster.advertise-address=127.0.0.1:{own}"),
                    "--cluster.gossip-interval=50ms".to_owned(),
                    "--cluster.pushpull-interval=1s".to_owned(),
                    "--cluster.peer-timeout=1s".to_owned(),
                    "--cluster.settle-timeout=5s".to_owned(),
                    "--cluster.reconnect-interval=1s".to_owned(),
                ];
                args.extend(
                    ports
                        .iter()
                        .filter(|p| *p != own)
                        .map(|p| format!("--cluster.peer=127.0.0.1:{p}")),
                );
                Self::start_with_cluster(config_yaml, args)
            })
            .collect()
    }

    fn command(binary: &Path, dir: &Path, port: u16, cluster_args: &[String]) -> Command {
        let mut command = Command::new(binary);
        command
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--web.external-url=http://127.0.0.1:{port}/"))
            .args(cluster_args);
        command
    }

    fn start_with_cluster(config_yaml: &str, cluster_args: Vec<String>) -> Alertmanager {
        let binary = crate::require_program(&[ALERTMANAGER], "prometheus-alertmanager");
        let dir = tempfile::Builder::new()
            .prefix("stackmedic-alertmanager-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let config_path = dir.path().join("alertmanager.yml");
        let (process, port) = crate::prometheus::start_ready_server(
            "alertmanager",
            dir.path(),
            Duration::from_secs(60),
            |port| {
                let text = config_yaml
                    .replace("{port}", &port.to_string())
                    .replace("{dir}", &dir.path().display().to_string());
                std::fs::write(&config_path, &text)
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));
                (
                    Self::command(&binary, dir.path(), port, &cluster_args),
                    text,
                )
            },
        );
        Alertmanager {
            process,
            port,
            cluster_args,
            starts: 1,
            dir,
        }
    }

    /// Stops Alertmanager (SIGTERM) and starts it again on the same ports, configuration and
    /// storage: it comes back without any alert (they are kept in memory only), as after a
    /// restart in production.
    ///
    /// # Panics
    /// When it is not ready again within 60 s.
    pub fn restart(&mut self) {
        self.process.stop();
        self.start_again();
    }

    /// Kills Alertmanager (SIGKILL) at once: a member that died.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts a stopped or killed Alertmanager again, as [`Alertmanager::restart`] does.
    ///
    /// # Panics
    /// When it is not ready within 60 s.
    pub fn start_again(&mut self) {
        let binary = crate::require_program(&[ALERTMANAGER], "prometheus-alertmanager");
        self.starts += 1;
        let command = Self::command(&binary, self.dir.path(), self.port, &self.cluster_args);
        self.process = Process::spawn(
            &format!("alertmanager-start{}", self.starts),
            command,
            self.dir.path(),
        );
        if !self.process.wait_ready(self.port, Duration::from_secs(60)) {
            panic!(
                "alertmanager was not ready again at {}:\n{}",
                self.url("/-/ready"),
                self.process.describe()
            );
        }
    }

    /// When this Alertmanager started, from `GET /api/v2/status` (`uptime`, RFC 3339).
    pub fn started_at(&self) -> Result<String> {
        let status = crate::http::get(&self.url("/api/v2/status"))?
            .error_for_status()
            .context("reading Alertmanager's status")?
            .json()?;
        status["uptime"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no uptime in {status}"))
    }

    /// The port Alertmanager listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, as used in Prometheus' `alerting.alertmanagers` targets.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port><path>`; `path` should start with `/` (`url("")` is the base
    /// URL, for `amtool --alertmanager.url` or the remediator's escalation target).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The temporary directory (configuration, `data/`, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `GET /api/v2/alerts`: the array of alerts Alertmanager holds (active, silenced and
    /// inhibited), each with `labels`, `annotations`, `status`, `startsAt`, ….
    pub fn alerts(&self) -> Result<serde_json::Value> {
        crate::http::get(&self.url("/api/v2/alerts"))?
            .error_for_status()
            .context("listing Alertmanager alerts")?
            .json()
    }

    /// The alerts Alertmanager holds whose `alertname` is `name`; empty when it cannot be
    /// asked.
    pub fn alerts_named(&self, name: &str) -> Vec<serde_json::Value> {
        self.alerts()
            .ok()
            .and_then(|a| a.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .collect()
    }

    /// The remediator's escalations ([`ESCALATION`]) that Alertmanager holds as active; empty
    /// when it cannot be asked.
    pub fn active_escalations(&self) -> Vec<serde_json::Value> {
        self.alerts_named(ESCALATION)
            .into_iter()
            .filter(|a| a["status"]["state"] == "active")
            .collect()
    }

    /// `original_alertname` of the remediator's escalations ([`ESCALATION`]) that Alertmanager
    /// holds as active, sorted; empty when it cannot be asked.
    pub fn paged(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .active_escalations()
            .into_iter()
            .filter_map(|a| {
                a["labels"]["original_alertname"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        names.sort();
        names
    }

    /// `POST /api/v2/alerts` with `alerts` (a JSON array of `{"labels": {...}, ...}`), as
    /// Prometheus or the remediator's escalation does.
    pub fn post_alerts(&self, alerts: &serde_json::Value) -> Result<()> {
        crate::http::post_json(&self.url("/api/v2/alerts"), alerts)?
            .error_for_status()
            .context("posting alerts to Alertmanager")?;
        Ok(())
    }

    /// The underlying process guard (pid, logs, describe).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Stops Alertmanager now. Dropping does the same.
    pub fn stop(&mut self) {
        self.process.stop();
    }
}
