//! A running `stackmedic-exporter` binary for a test: its configuration in a temporary
//! directory, a free port on `127.0.0.1`, and helpers to scrape `/metrics` and wait for values.
//!
//! ```text
//! let mut exporter = Exporter::start("probes:\n  - name: ready\n    http: {url: ...}\n");
//! exporter.wait_value("stackmedic_probe_success", &[("probe", "ready")], 1.0);
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tempfile::TempDir;

use crate::metrics::{self, Sample};
use crate::process::Process;

/// How long [`Exporter::wait_for`] and friends wait by default.
pub const WAIT: Duration = Duration::from_secs(20);

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How to start the exporter.
#[derive(Debug, Default, Clone)]
pub struct Options<'a> {
    /// Configuration written to `config.yml` and passed as `--config.file`; `None` runs the
    /// embedded default.
    pub config: Option<&'a str>,
    /// Web configuration written to `web.yml` and passed as `--web.config.file`.
    pub web_config: Option<&'a str>,
    /// Files written into the directory before start (`(relative path, contents)`), for
    /// certificates and the like; `{dir}` in `config` and `web_config` names the directory.
    pub files: Vec<(&'a str, Vec<u8>)>,
    /// Start on this port instead of a free one (a probe may need to know it in advance).
    pub port: Option<u16>,
    /// Environment variables set for the exporter (such as `http_proxy`).
    pub env: Vec<(&'a str, String)>,
    /// Start without `--web.enable-lifecycle`, which the helper passes by default because tests
    /// reload through `POST /-/reload`.
    pub disable_lifecycle: bool,
    /// Further flags, such as `--web.max-connections=64`.
    pub args: Vec<String>,
    /// Listen on this host instead of `127.0.0.1`: `0.0.0.0` for what applies only to a
    /// listener that is not loopback-only. Tests still connect to `127.0.0.1` only.
    pub listen_host: Option<&'a str>,
    /// Run as this user and group id (the test must run as root), for what file modes deny:
    /// its directory and configuration are made readable to it.
    pub run_as: Option<u32>,
}

/// A running exporter, stopped when dropped.
#[derive(Debug)]
pub struct Exporter {
    // Field order matters: the process is stopped before its directory is deleted.
    process: Process,
    port: u16,
    dir: TempDir,
}

impl Exporter {
    /// Starts the exporter with `config` as its configuration file, plain HTTP.
    pub fn start(config: &str) -> Exporter {
        Self::start_with(Options {
            config: Some(config),
            ..Options::default()
        })
    }

    /// Starts the exporter as `opts` says and waits until it accepts connections (and, without
    /// a web configuration, until `/-/healthy` answers 200).
    ///
    /// # Panics
    /// When the binary is missing or the exporter exits or does not listen within 20 s; the
    /// message includes its log.
    pub fn start_with(opts: Options<'_>) -> Exporter {
        let bin = crate::bin_path("stackmedic-exporter");
        let dir = tempfile::Builder::new()
            .prefix("stackmedic-exporter-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let subst = |s: &str| s.replace("{dir}", &dir.path().display().to_string());
        for (name, contents) in &opts.files {
            std::fs::write(dir.path().join(name), contents)
                .unwrap_or_else(|e| panic!("cannot write {name}: {e}"));
        }
        if opts.run_as.is_some() {
            set_mode(dir.path(), 0o755);
        }
        let mut last = String::new();
        for attempt in 1..=4 {
            let port = opts.port.unwrap_or_else(crate::free_port);
            let mut cmd = Command::new(&bin);
            cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
            cmd.arg("--web.listen-address")
                .arg(format!(
                    "{}:{port}",
                    opts.listen_host.unwrap_or("127.0.0.1")
                ))
                .arg("--log.level")
                .arg("debug")
                .args(&opts.args);
            if !opts.disable_lifecycle {
                cmd.arg("--web.enable-lifecycle");
            }
            if let Some(c) = opts.config {
                let path = dir.path().join("config.yml");
                std::fs::write(&path, subst(c)).expect("write config.yml");
                if opts.run_as.is_some() {
                    set_mode(&path, 0o644);
                }
                cmd.arg("--config.file").arg(path);
            }
            if let Some(w) = opts.web_config {
                let path = dir.path().join("web.yml");
                std::fs::write(&path, subst(w)).expect("write web.yml");
                cmd.arg("--web.config.file").arg(path);
            }
            if let Some(id) = opts.run_as {
                use std::os::unix::process::CommandExt as _;
                cmd.uid(id).gid(id);
            }
            let mut process = Process::spawn(&format!("exporter-{attempt}"), cmd, dir.path());
            let plain = opts.web_config.is_none();
            let up = crate::wait_until(START_TIMEOUT, Duration::from_millis(25), || {
                if !process.is_running() {
                    return true;
                }
                if plain {
                    crate::http::get(&format!("http://127.0.0.1:{port}/-/healthy"))
                        .is_ok_and(|r| r.status == 200)
                } else {
                    crate::port_accepts(port)
                }
            });
            if up && process.is_running() {
                return Exporter { process, port, dir };
            }
            last = process.describe();
            process.stop();
            if opts.port.is_some() || !last.contains("Address already in use") {
                break;
            }
        }
        panic!("stackmedic-exporter did not start:\n{last}");
    }

    /// The port the exporter listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The temporary directory holding `config.yml`, `web.yml` and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of `config.yml`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    /// Replaces `config.yml` (a reload picks it up).
    pub fn write_config(&self, yaml: &str) {
        std::fs::write(self.config_path(), yaml).expect("write config.yml");
    }

    /// The process guard (signals, log, describe).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Scrapes `/metrics` over plain HTTP.
    ///
    /// # Panics
    /// When the scrape fails, with the exporter's log.
    pub fn scrape(&mut self) -> Vec<Sample> {
        match metrics::scrape(&self.url("/metrics")) {
            Ok(s) => s,
            Err(e) => panic!(
                "scraping the exporter failed: {e:#}\n{}",
                self.process.describe()
            ),
        }
    }

    /// Scrapes until `condition` holds on a scrape, and returns that scrape.
    ///
    /// # Panics
    /// After `timeout`, with `what`, the last scrape's `stackmedic_` lines and the log.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut(&[Sample]) -> bool,
    ) -> Vec<Sample> {
        let mut last = Vec::new();
        let ok = crate::wait_until(timeout, Duration::from_millis(50), || {
            last = self.scrape();
            condition(&last)
        });
        if !ok {
            let lines: Vec<String> = last
                .iter()
                .filter(|s| s.name.starts_with("stackmedic_"))
                .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
                .collect();
            panic!(
                "timed out after {timeout:?} waiting for {what}\n--- last scrape ---\n{}\n{}",
                lines.join("\n"),
                self.process.describe()
            );
        }
        last
    }

    /// Waits until the sample `name{labels}` has `value`, and returns that scrape.
    pub fn wait_value(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> Vec<Sample> {
        self.wait_for(&format!("{name}{labels:?} == {value}"), WAIT, |s| {
            metrics::find(s, name, labels) == Some(value)
        })
    }

    /// Waits until probe `probe` has finished at least `n` runs, and returns that scrape.
    pub fn wait_runs(&mut self, probe: &str, n: u64) -> Vec<Sample> {
        self.wait_for(&format!("{n} runs of probe {probe}"), WAIT, |s| {
            runs(s, probe) >= n
        })
    }
}

/// `stackmedic_probe_runs_total` of `probe` in a scrape (0 before the first run).
pub fn runs(samples: &[Sample], probe: &str) -> u64 {
    metrics::find(samples, "stackmedic_probe_runs_total", &[("probe", probe)]).unwrap_or(0.0) as u64
}

/// The value of `name{labels}` in a scrape.
///
/// # Panics
/// When the sample is absent, listing the samples of that name.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics::find(samples, name, labels).unwrap_or_else(|| {
        let same: Vec<String> = metrics::find_all(samples, name, &[])
            .iter()
            .map(|s| format!("{:?} {}", s.labels, s.value))
            .collect();
        panic!("no sample {name}{labels:?}; samples of that name: {same:?}")
    })
}

/// Runs `stackmedic-exporter --config.check --config.file <file>` and returns its output.
///
/// # Panics
/// When the binary cannot be run.
pub fn config_check(file: &Path) -> Output {
    Command::new(crate::bin_path("stackmedic-exporter"))
        .arg("--config.check")
        .arg("--config.file")
        .arg(file)
        .output()
        .expect("run stackmedic-exporter --config.check")
}

/// [`config_check`] of a temporary file holding `yaml`: whether the check passed, and what it
/// printed on standard error.
///
/// # Panics
/// When the file cannot be written or the binary cannot be run.
pub fn config_check_yaml(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.yml");
    std::fs::write(&file, yaml).expect("write the configuration");
    let out = config_check(&file);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}
