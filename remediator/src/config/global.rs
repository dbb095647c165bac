//! The process-wide sections: `global`, `webhook`, `escalation` and `docker`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use stackmedic_common::config::{self as common, duration, ConfigErrors};
use url::Url;

use crate::action::http_sequence::check_http_url;
use crate::credentials::{BasicAuthFile, Credentials, CredentialsFile};

/// Process-wide settings (`global:`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    /// Decide and record everything, but never act.
    #[serde(default)]
    pub dry_run: bool,
    /// Actions running at once, over all targets.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_actions: usize,
    /// Largest accepted webhook body.
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    /// Jobs found stored at start longer than this after they were due are expired, not run.
    #[serde(default = "default_resume_max_age", with = "duration")]
    pub resume_max_age: Duration,
    /// Finished jobs, audit rows, closed incidents, resolved escalations and occurrences
    /// older than this are deleted (hourly).
    #[serde(default = "default_retention", with = "duration")]
    pub retention: Duration,
    /// How often open incidents are reconciled with the alerts Alertmanager holds (the
    /// Alertmanager of `escalation.alertmanager_url`); zero turns reconciliation off.
    #[serde(default = "default_reconcile_interval", with = "duration")]
    pub reconcile_interval: Duration,
}

fn default_retention() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
fn default_concurrency() -> usize {
    4
}
fn default_body() -> usize {
    1 << 20
}
fn default_resume_max_age() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_reconcile_interval() -> Duration {
    Duration::from_secs(60)
}

impl Default for Global {
    fn default() -> Self {
        Self {
            dry_run: false,
            max_concurrent_actions: default_concurrency(),
            max_body_bytes: default_body(),
            resume_max_age: default_resume_max_age(),
            retention: default_retention(),
            reconcile_interval: default_reconcile_interval(),
        }
    }
}

impl Global {
    /// Parses `global:` at its path (defaults when absent).
    pub fn load(v: Option<&Value>, errs: &mut ConfigErrors) -> Global {
        let g = v
            .and_then(|v| common::typed::<Global>(v, "global", errs))
            .unwrap_or_default();
        if g.retention < Duration::from_secs(3600) {
            errs.push("global.retention", "must be at least 1h");
        }
        if g.max_concurrent_actions == 0 {
            errs.push("global.max_concurrent_actions", "must be at least 1");
        }
        g
    }
}

/// How `POST /webhook` authenticates (`webhook:`): a bearer token and/or basic auth, as
/// Alertmanager's `http_config` sends them.
#[derive(Debug, Clone, Default)]
pub struct WebhookAuth {
    /// Accepted credentials; empty means no authentication (loopback only).
    pub credentials: Credentials,
}

impl WebhookAuth {
    /// Parses `webhook:`, reading its secrets.
    pub fn load(v: Option<&Value>, errs: &mut ConfigErrors) -> WebhookAuth {
        v.and_then(|v| common::typed::<CredentialsFile>(v, "webhook", errs))
            .map(|f| WebhookAuth {
                credentials: Credentials::load(f, "webhook", errs),
            })
            .unwrap_or_default()
    }
}

/// Where and how escalations are posted, and incidents reconciled (`escalation:`).
#[derive(Debug, Clone)]
pub struct Escalation {
    /// Alertmanager's base URL; alerts go to `<url>/api/v2/alerts`.
    pub alertmanager_url: Url,
    /// Credentials for Alertmanager.
    pub credentials: Credentials,
    /// Timeout of one request.
    pub timeout: Duration,
    /// First retry delay; doubled after each failure up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// How often an active escalation is posted again (Prometheus' resend delay).
    pub resend_interval: Duration,
    /// `endsAt` of a firing post is now plus this, so a remediator that stopped posting lets
    /// Alertmanager resolve the page on its own; default 4 × `resend_interval`.
    pub alert_duration: Duration,
    /// Extra labels on every escalation alert.
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EscalationFile {
    alertmanager_url: Url,
    bearer_token_file: Option<PathBuf>,
    bearer_token_env: Option<String>,
    basic_auth: Option<BasicAuthFile>,
    #[serde(default = "secs::<10>", with = "duration")]
    timeout: Duration,
    #[serde(default = "secs::<1>", with = "duration")]
    min_backoff: Duration,
    #[serde(default = "secs::<300>", with = "duration")]
    max_backoff: Duration,
    #[serde(default = "secs::<60>", with = "duration")]
    resend_interval: Duration,
    #[serde(default, with = "duration::option")]
    alert_duration: Option<Duration>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fn secs<const N: u64>() -> Duration {
    Duration::from_secs(N)
}

impl Escalation {
    /// Parses `escalation:` when present, reading its secrets.
    pub fn load(v: Option<&Value>, errs: &mut ConfigErrors) -> Option<Escalation> {
        let f = common::typed::<EscalationFile>(v?, "escalation", errs)?;
        check_http_url(&f.alertmanager_url, "escalation.alertmanager_url", errs);
        for name in f.labels.keys() {
            let path = format!("escalation.labels.{name}");
            if crate::escalation::GUARD_LABELS.contains(&name.as_str()) {
                errs.push(
                    path,
                    "is set by the remediator on every escalation: the loop guard (the remediator never acts on its own escalation) and the page rely on it",
                );
            } else if !crate::escalation::is_label_name(name) {
                errs.push(
                    path,
                    "is not a label name ([a-zA-Z_][a-zA-Z0-9_]*); Alertmanager would refuse the escalation",
                );
            }
        }
        if f.resend_interval.is_zero() {
            errs.push("escalation.resend_interval", "must be greater than 0s");
        }
        if let Some(d) = f.alert_duration {
            if d <= f.resend_interval && !errs.has("escalation.resend_interval") {
                errs.push(
                    "escalation.alert_duration",
                    format!(
                        "must be longer than resend_interval ({}), or the page resolves between two posts",
                        humantime::format_duration(f.resend_interval)
                    ),
                );
            }
        }
        Some(Escalation {
            credentials: Credentials::load(
                CredentialsFile {
                    bearer_token_file: f.bearer_token_file,
                    bearer_token_env: f.bearer_token_env,
                    basic_auth: f.basic_auth,
                },
                "escalation",
                errs,
            ),
            alertmanager_url: f.alertmanager_url,
            timeout: f.timeout,
            min_backoff: f.min_backoff,
            max_backoff: f.max_backoff.max(f.min_backoff),
            resend_interval: f.resend_interval,
            alert_duration: f.alert_duration.unwrap_or(f.resend_interval * 4),
            labels: f.labels,
        })
    }

    /// `<alertmanager_url>/api/v2/alerts`.
    #[must_use]
    pub fn alerts_url(&self) -> Url {
        let mut url = self.alertmanager_url.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}/api/v2/alerts"));
        url
    }
}

/// The Docker Engine connection (`docker:`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSettings {
    /// `unix:///path` or `http://host:port`; default: `DOCKER_HOST` or the local socket.
    pub host: Option<String>,
}

impl DockerSettings {
    /// Parses `docker:` (defaults when absent).
    pub fn load(v: Option<&Value>, errs: &mut ConfigErrors) -> DockerSettings {
        v.and_then(|v| common::typed::<DockerSettings>(v, "docker", errs))
            .unwrap_or_default()
    }
}
