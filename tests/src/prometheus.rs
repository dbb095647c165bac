//! A private, real Prometheus server (`/usr/bin/prometheus`, Debian package `prometheus`), and
//! the path of `promtool`.
//!
//! [`Prometheus::start`] writes the caller's configuration into a fresh temporary directory and
//! runs `prometheus --config.file=<dir>/prometheus.yml --storage.tsdb.path=<dir>/data
//! --web.listen-address=127.0.0.1:<port> --web.enable-lifecycle --rules.alert.resend-delay=1s`
//! on a free port, then waits until `/-/ready` answers 200. The short resend delay (default 1m)
//! matters: an alert that fires before Prometheus has discovered its Alertmanagers is dropped and
//! only sent again after that delay. Placeholders replaced in the configuration: `{port}`
//! (Prometheus' own port, to scrape itself), `{dir}` and `{rules_dir}`.
//!
//! Rule files given to [`Prometheus::start_with_rules`] are written to `<dir>/rules/`; when the
//! configuration has no `rule_files` key, `rule_files: ["<dir>/rules/*"]` is appended to it.
//!
//! ```text
//! let prom = Prometheus::start_with_rules(
//!     "global: {scrape_interval: 1s, evaluation_interval: 1s}\n\
//!      scrape_configs: [{job_name: exporter, static_configs: [{targets: ['127.0.0.1:9999']}]}]\n",
//!     &[("stackmedic.yml", &std::fs::read_to_string("alerts/stackmedic.yml")?)],
//! );
//! let result = prom.query("up")?;
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::process::Process;

/// Path of the Prometheus server binary.
pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Path of promtool.
pub const PROMTOOL: &str = "/usr/bin/promtool";

/// The path of `promtool` (Debian package `prometheus`), for `promtool check rules`,
/// `promtool test rules`, `promtool check metrics`, ….
///
/// # Panics
/// When it is not installed.
pub fn promtool() -> PathBuf {
    crate::require_program(&[PROMTOOL], "prometheus")
}

/// A running Prometheus; stopped when dropped. See the [module docs](self).
#[derive(Debug)]
pub struct Prometheus {
    // Field order matters: the process is stopped before its directory is deleted.
    process: Process,
    port: u16,
    dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus with configuration `config_yaml` (placeholders replaced).
    ///
    /// # Panics
    /// When Prometheus is not installed, rejects the configuration, or is not ready within 60 s;
    /// the message includes its log.
    pub fn start(config_yaml: &str) -> Prometheus {
        Self::start_with_rules(config_yaml, &[])
    }

    /// Starts Prometheus with configuration `config_yaml` and rule files given as
    /// `(file name, contents)` pairs, written to `<dir>/rules/<file name>`.
    pub fn start_with_rules(config_yaml: &str, rule_files: &[(&str, &str)]) -> Prometheus {
        Self::start_with_args(config_yaml, rule_files, &[])
    }

    /// Like [`Prometheus::start_with_rules`], with extra command-line flags (for example
    /// `"--query.lookback-delta=30s"`); a flag given here overrides a default of this helper.
    pub fn start_with_args(
        config_yaml: &str,
        rule_files: &[(&str, &str)],
        extra_args: &[&str],
    ) -> Prometheus {
        let binary = crate::require_program(&[PROMETHEUS], "prometheus");
        let dir = tempfile::Builder::new()
            .prefix("stackmedic-prometheus-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let rules_dir = dir.path().join("rules");
        std::fs::create_dir(&rules_dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", rules_dir.display()));
        for (name, contents) in rule_files {
            if name.contains('/') || name.is_empty() {
                panic!("rule file name {name:?} must be a plain file name");
            }
            let path = rules_dir.join(name);
            std::fs::write(&path, contents)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        let mut config = config_yaml.to_owned();
        if !rule_files.is_empty() && !config.contains("rule_files") {
            config.push_str("\nrule_files:\n  - \"{rules_dir}/*\"\n");
        }
        let config_path = dir.path().join("prometheus.yml");
        let (process, port) =
            start_ready_server("prometheus", dir.path(), Duration::from_secs(60), |port| {
                let text = substitute(&config, dir.path(), port);
                std::fs::write(&config_path, &text)
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));
                let defaults = [
                    format!("--config.file={}", config_path.display()),
                    format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                    format!("--web.external-url=http://127.0.0.1:{port}/"),
                    "--web.enable-lifecycle".to_owned(),
                    // Alerts fired before the Alertmanagers are discovered are dropped and
                    // only resent after this delay (default 1m): keep tests fast.
                    "--rules.alert.resend-delay=1s".to_owned(),
                ];
                let mut command = Command::new(&binary);
                // Prometheus refuses repeated flags: a flag in `extra_args` replaces the default.
                command.args(defaults.iter().filter(|default| {
                    let name = default.split('=').next().unwrap_or_default();
                    !extra_args
                        .iter()
                        .any(|extra| extra.split('=').next() == Some(name))
                }));
                command.args(extra_args);
                (command, text)
            });
        Prometheus { process, port, dir }
    }

    /// The port Prometheus listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, as used in scrape targets and `alerting` configurations.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port><path>`; `path` should start with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The temporary directory (configuration, `rules/`, `data/`, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<dir>/rules`, where rule files are written.
    pub fn rules_dir(&self) -> PathBuf {
        self.dir.path().join("rules")
    }

    /// Runs an instant query (`/api/v1/query`) and returns `data.result` (for a vector: an
    /// array of `{"metric": {...}, "value": [ts, "v"]}`).
    pub fn query(&self, expr: &str) -> Result<serde_json::Value> {
        let url = self.url(&format!(
            "/api/v1/query?query={}",
            crate::http::encode_component(expr)
        ));
        api_data(&url).map(|data| field(data, "result"))
    }

    /// The value of the first element of an instant-vector query, `None` when the vector is
    /// empty.
    pub fn query_value(&self, expr: &str) -> Result<Option<f64>> {
        let result = self.query(expr)?;
        let Some(first) = result.as_array().and_then(|a| a.first()) else {
            return Ok(None);
        };
        let text = first["value"][1]
            .as_str()
            .with_context(|| format!("unexpected query result for {expr:?}: {result}"))?;
        let value = text
            .parse::<f64>()
            .with_context(|| format!("bad sample value {text:?}"))?;
        Ok(Some(value))
    }

    /// `data.alerts` of `/api/v1/alerts`: pending and firing alerts.
    pub fn alerts(&self) -> Result<serde_json::Value> {
        api_data(&self.url("/api/v1/alerts")).map(|data| field(data, "alerts"))
    }

    /// `data.groups` of `/api/v1/rules`: loaded rule groups with their health.
    pub fn rules(&self) -> Result<serde_json::Value> {
        api_data(&self.url("/api/v1/rules")).map(|data| field(data, "groups"))
    }

    /// `data.activeTargets` of `/api/v1/targets`, with their `health` and `lastError`.
    pub fn targets(&self) -> Result<serde_json::Value> {
        api_data(&self.url("/api/v1/targets")).map(|data| field(data, "activeTargets"))
    }

    /// Asks Prometheus to reload its configuration and rules (`POST /-/reload`).
    pub fn reload(&self) -> Result<()> {
        crate::http::request("POST", &self.url("/-/reload"), &[], Some(b""))?
            .error_for_status()
            .context("reloading Prometheus")?;
        Ok(())
    }

    /// The underlying process guard (pid, logs, describe).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Stops Prometheus now. Dropping does the same.
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// GETs a Prometheus API URL and returns `data`, or an error with the API's `error`.
fn api_data(url: &str) -> Result<serde_json::Value> {
    let response = crate::http::get(url)?;
    let body = response.json()?;
    if body["status"] != "success" {
        bail!("{url} answered {}: {body}", response.status);
    }
    Ok(field(body, "data"))
}

/// Moves field `key` out of a JSON object (`Null` when absent or not an object).
pub(crate) fn field(mut value: serde_json::Value, key: &str) -> serde_json::Value {
    value
        .get_mut(key)
        .map(serde_json::Value::take)
        .unwrap_or_default()
}

fn substitute(text: &str, dir: &Path, port: u16) -> String {
    text.replace("{port}", &port.to_string())
        .replace("{rules_dir}", &dir.join("rules").display().to_string())
        .replace("{dir}", &dir.display().to_string())
}

/// Starts a server that answers `GET /-/ready` with 200 once ready, on a free port chosen per
/// attempt; `make` builds the command (and writes its configuration) for a port and returns it
/// with the configuration text shown on failure. Retries with a new port when the server reports
/// that the address is in use.
///
/// # Panics
/// When the server exits or is not ready within `timeout`.
pub(crate) fn start_ready_server(
    label: &str,
    dir: &Path,
    timeout: Duration,
    mut make: impl FnMut(u16) -> (Command, String),
) -> (Process, u16) {
    let mut failure = String::new();
    for attempt in 1..=4 {
        let port = crate::free_port();
        let (command, config) = make(port);
        let mut process = Process::spawn(&format!("{label}-{attempt}"), command, dir);
        if process.wait_ready(port, timeout) {
            return (process, port);
        }
        process.stop();
        let output = format!("{}{}", process.stderr(), process.stdout());
        failure = format!(
            "{label} was not ready at http://127.0.0.1:{port}/-/ready within {timeout:?}\n{}\n--- configuration ---\n{config}",
            process.describe()
        );
        if !output.contains("address already in use") {
            break;
        }
    }
    panic!("{failure}");
}
