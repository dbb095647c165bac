//! The `stackmedic-remediator` binary as a peer of tests: started with a configuration written
//! into a fresh temporary directory, its database in `<dir>/data`, listening on a free
//! `127.0.0.1` port; plus builders for Alertmanager webhook payloads (version 4).
//!
//! Placeholders replaced in the configuration: `{dir}` (the temporary directory) and `{port}`.
//!
//! ```text
//! let r = Remediator::start("rules: []\n");
//! let resp = r.webhook(&payload(vec![alert("firing", &[("alertname", "X")], "2026-11-22T10:00:00Z")]), None)?;
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::process::Process;

/// A running remediator; stopped when dropped. See the [module docs](self).
#[derive(Debug)]
pub struct Remediator {
    // Field order matters: the process is stopped before its directory is deleted.
    process: Process,
    port: u16,
    starts: u32,
    config_path: Option<PathBuf>,
    flags: Flags,
    dir: TempDir,
}

/// Command-line flags beyond the configuration, storage and listen address.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// Start without `--web.enable-lifecycle`, which the helper passes by default because tests
    /// reload through `POST /-/reload`.
    pub disable_lifecycle: bool,
    /// `--web.config.file`, a path; readiness is then only waited for as an accepted TCP
    /// connection, since `/-/ready` may need TLS or credentials.
    pub web_config: Option<PathBuf>,
    /// Further flags, such as `--web.max-connections=64`.
    pub args: Vec<String>,
    /// `--storage.path` instead of `<dir>/data` (a small filesystem, a read-only one).
    pub storage: Option<PathBuf>,
}

impl Remediator {
    /// Writes `config_yaml` (placeholders replaced) and starts the remediator on it.
    ///
    /// # Panics
    /// When the binary is missing or not ready within 30 s; the message includes its log.
    pub fn start(config_yaml: &str) -> Remediator {
        let dir = tempfile::Builder::new()
            .prefix("stackmedic-remediator-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        Self::start_in(dir, config_yaml)
    }

    /// Like [`Remediator::start`], in a directory the caller prepared (secret files, …).
    pub fn start_in(dir: TempDir, config_yaml: &str) -> Remediator {
        Self::start_with(dir, config_yaml, Flags::default())
    }

    /// Like [`Remediator::start_in`], with further command-line flags.
    pub fn start_with(dir: TempDir, config_yaml: &str, flags: Flags) -> Remediator {
        let port = crate::free_port();
        let config_path = dir.path().join("remediator.yml");
        let text = config_yaml
            .replace("{dir}", &dir.path().display().to_string())
            .replace("{port}", &port.to_string());
        std::fs::write(&config_path, &text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));
        let process = spawn(Some(&config_path), dir.path(), port, 1, &flags);
        Remediator {
            process,
            port,
            starts: 1,
            config_path: Some(config_path),
            flags,
            dir,
        }
    }

    /// Starts the remediator without `--config.file`, on its embedded default configuration.
    pub fn start_default() -> Remediator {
        let dir = tempfile::Builder::new()
            .prefix("stackmedic-remediator-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let port = crate::free_port();
        let flags = Flags::default();
        let process = spawn(None, dir.path(), port, 1, &flags);
        Remediator {
            process,
            port,
            starts: 1,
            config_path: None,
            flags,
            dir,
        }
    }

    /// Kills the process with `SIGKILL` (no shutdown at all, as in a crash).
    pub fn kill9(&mut self) {
        self.process.kill();
    }

    /// Starts the process again on the same port, configuration and database.
    pub fn restart(&mut self) {
        self.process.stop();
        self.starts += 1;
        self.process = spawn(
            self.config_path.as_deref(),
            self.dir.path(),
            self.port,
            self.starts,
            &self.flags,
        );
    }

    /// The port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The temporary directory (configuration, `data/`, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process guard.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// `POST /webhook` with `payload`, with `Authorization: Bearer <token>` when given.
    pub fn webhook(&self, payload: &Value, token: Option<&str>) -> Result<crate::http::Response> {
        let body = serde_json::to_vec(payload)?;
        self.webhook_raw(&body, token)
    }

    /// Sends one firing alert with `labels` and `starts_at` to `POST /webhook` (without a
    /// token).
    ///
    /// # Panics
    /// When the remediator does not answer 200.
    pub fn fire(&self, labels: &[(&str, &str)], starts_at: &str) {
        let resp = self
            .webhook(&payload(vec![alert("firing", labels, starts_at)]), None)
            .unwrap_or_else(|e| panic!("cannot send the webhook: {e:#}"));
        assert_eq!(resp.status, 200, "{}", resp.text());
    }

    /// `POST /webhook` with a raw body.
    pub fn webhook_raw(&self, body: &[u8], token: Option<&str>) -> Result<crate::http::Response> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        crate::http::request("POST", &self.url("/webhook"), &headers, Some(body))
    }

    /// `GET /api/actions?limit=500` (the largest page: the newest 500 audit rows) as JSON.
    ///
    /// # Panics
    /// When the request fails.
    pub fn history(&self) -> Value {
        crate::http::get(&self.url("/api/actions?limit=500"))
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("GET /api/actions failed: {e:#}"))
    }

    /// The audit rows (newest first) whose `result` is `result`.
    pub fn actions_with(&self, result: &str) -> Vec<Value> {
        self.history()["actions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["result"] == result)
            .collect()
    }

    /// Waits up to `timeout` until at least `n` audit rows have `result`; returns them.
    ///
    /// # Panics
    /// On timeout, with the history and the log.
    pub fn wait_for(&mut self, result: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let ok = crate::wait_until(timeout, Duration::from_millis(100), || {
            self.actions_with(result).len() >= n
        });
        if !ok {
            panic!(
                "fewer than {n} `{result}` decisions within {timeout:?}; history:\n{:#}\n{}",
                self.history(),
                self.process.describe()
            );
        }
        self.actions_with(result)
    }

    /// The open incidents (`incidents` of `GET /api/actions`), newest first.
    pub fn incidents(&self) -> Vec<Value> {
        self.history()["incidents"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits up to `timeout` until the open incident of `subject` is in `state`; returns it.
    ///
    /// # Panics
    /// On timeout, with the history and the log.
    pub fn wait_incident(&mut self, subject: &str, state: &str, timeout: Duration) -> Value {
        let mut found = None;
        let ok = crate::wait_until(timeout, Duration::from_millis(100), || {
            found = self
                .incidents()
                .into_iter()
                .find(|i| i["subject"] == subject && i["state"] == state);
            found.is_some()
        });
        if !ok {
            panic!(
                "no {state} incident of {subject} within {timeout:?}; history:\n{:#}\n{}",
                self.history(),
                self.process.describe()
            );
        }
        found.unwrap_or_default()
    }

    /// The results recorded for each job (`job_id` → results, oldest first); rows without a job
    /// (escalation and incident events) are left out.
    pub fn job_results(&self) -> std::collections::BTreeMap<i64, Vec<String>> {
        let mut out: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
        let history = self.history();
        let rows = history["actions"].as_array().cloned().unwrap_or_default();
        for row in rows.iter().rev() {
            let result = row["result"].as_str().unwrap_or_default();
            if let (Some(job), true) = (row["job_id"].as_i64(), is_job_result(result)) {
                out.entry(job).or_default().push(result.to_owned());
            }
        }
        out
    }

    /// A sample of its `/metrics` (0 when absent or unreachable).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        crate::metrics::scrape(&self.url("/metrics"))
            .ok()
            .and_then(|s| crate::metrics::find(&s, name, labels))
            .unwrap_or(0.0)
    }

    /// Writes a new configuration (placeholders replaced) and asks for a reload
    /// (`POST /-/reload`); returns the answer.
    pub fn reconfigure(&self, config_yaml: &str) -> crate::http::Response {
        let text = config_yaml
            .replace("{dir}", &self.dir.path().display().to_string())
            .replace("{port}", &self.port.to_string());
        let path = self.dir.path().join("remediator.yml");
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        crate::http::request("POST", &self.url("/-/reload"), &[], None)
            .unwrap_or_else(|e| panic!("POST /-/reload failed: {e:#}"))
    }
}

/// Whether an audit result ends a job (the others are escalation and incident events).
fn is_job_result(result: &str) -> bool {
    !matches!(
        result,
        "escalated" | "escalation_resolved" | "resolved" | "rechecked" | "reset" | "released"
    )
}

fn spawn(config: Option<&Path>, dir: &Path, port: u16, n: u32, flags: &Flags) -> Process {
    let binary = crate::bin_path("stackmedic-remediator");
    let mut command = Command::new(binary);
    if let Some(config) = config {
        command.arg(format!("--config.file={}", config.display()));
    }
    command
        .arg(format!(
            "--storage.path={}",
            flags
                .storage
                .clone()
                .unwrap_or_else(|| dir.join("data"))
                .display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=debug")
        .args(&flags.args);
    if !flags.disable_lifecycle {
        command.arg("--web.enable-lifecycle");
    }
    if let Some(web) = &flags.web_config {
        command.arg(format!("--web.config.file={}", web.display()));
    }
    let mut process = Process::spawn(&format!("remediator-{n}"), command, dir);
    let ready = if flags.web_config.is_some() {
        crate::wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            !process.is_running() || crate::port_accepts(port)
        }) && process.is_running()
    } else {
        process.wait_ready(port, Duration::from_secs(30))
    };
    if !ready {
        panic!(
            "stackmedic-remediator was not ready at http://127.0.0.1:{port}/-/ready:\n{}",
            process.describe()
        );
    }
    process
}

/// One alert of a webhook payload.
pub fn alert(status: &str, labels: &[(&str, &str)], starts_at: &str) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
        .collect();
    // A stable fingerprint per label set, as Alertmanager computes one.
    let mut fp: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in &labels {
        for b in k
            .bytes()
            .chain([0xff])
            .chain(v.as_str().unwrap_or("").bytes())
        {
            fp ^= u64::from(b);
            fp = fp.wrapping_mul(0x100_0000_01b3);
        }
    }
    json!({
        "status": status,
        "labels": labels,
        "annotations": {"summary": "test alert"},
        "startsAt": starts_at,
        "endsAt": if status == "resolved" { "2026-11-22T12:00:00Z" } else { "0001-01-01T00:00:00Z" },
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": format!("{fp:016x}"),
    })
}

/// A version 4 webhook payload holding `alerts`.
pub fn payload(alerts: Vec<Value>) -> Value {
    let status = if alerts.iter().any(|a| a["status"] == "firing") {
        "firing"
    } else {
        "resolved"
    };
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"test\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "remediator",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": alerts,
    })
}

/// Seconds since the Unix epoch of an RFC 3339 time as Alertmanager writes it
/// (`2026-11-22T10:00:04.123Z`, `2026-11-22T11:00:04+01:00`); `None` when it is not one.
pub fn unix_seconds(rfc3339: &str) -> Option<f64> {
    let s = rfc3339.trim();
    let (date, rest) = s.split_once(['T', 't'])?;
    let mut d = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (clock, offset) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let i = rest.rfind(['+', '-'])?;
        let (c, o) = rest.split_at(i);
        let sign = if o.starts_with('-') { -1 } else { 1 };
        let (oh, om) = o[1..].split_once(':')?;
        (
            c,
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60),
        )
    };
    let mut t = clock.splitn(3, ':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60 - offset) as f64 + sec)
}

/// `t` (seconds since the Unix epoch) as RFC 3339 in UTC with milliseconds, as Alertmanager
/// writes `startsAt` and `endsAt`.
pub fn rfc3339(t: f64) -> String {
    let millis = (t * 1000.0).round() as i64;
    let (secs, ms) = (millis.div_euclid(1000), millis.rem_euclid(1000));
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // The civil date of a day count from 1970-01-01 (proleptic Gregorian), by era arithmetic.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60
    )
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    #[test]
    fn unix_seconds_parses_alertmanager_times() {
        assert_eq!(super::unix_seconds("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            super::unix_seconds("2026-11-22T10:00:04.5Z"),
            Some(1_795_341_604.5)
        );
        assert_eq!(
            super::unix_seconds("2026-11-22T11:00:04.5+01:00"),
            Some(1_795_341_604.5)
        );
        assert_eq!(super::unix_seconds("yesterday"), None);
        assert_eq!(super::rfc3339(1_795_341_604.5), "2026-11-22T10:00:04.500Z");
        assert_eq!(
            super::unix_seconds(&super::rfc3339(1_795_341_604.25)),
            Some(1_795_341_604.25)
        );
    }
}
