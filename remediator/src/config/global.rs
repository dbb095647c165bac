//! The process-wide sections: `global`, `webhook`, `escalation`, `reconciliation` and `docker`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use stackmedic_common::config::{self as common, duration, ConfigErrors};
use url::Url;

use crate::action::http_sequence::check_http_url;
use crate::credentials::{BasicAuthFile, Credentials, CredentialsFile};
use crate::docker::{Engine, EngineKeys};

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
    /// How often open incidents are reconciled with the alerts Alertmanager holds (the members
    /// of `reconciliation`, or else of `escalation`); zero turns reconciliation off.
    #[serde(default = "default_reconcile_interval", with = "duration")]
    pub reconcile_interval: Duration,
    /// The blast-radius guard's settings, for every target that does not override them.
    #[serde(default)]
    pub blast_radius: super::guard::BlastRadius,
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
            blast_radius: super::guard::BlastRadius::default(),
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
        g.blast_radius.check("global.blast_radius", errs);
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

/// The members of one Alertmanager cluster and how to reach them: `alertmanager_urls` (or the
/// one-element form `alertmanager_url`), credentials and the timeout of one request.
#[derive(Debug, Clone)]
pub struct Alertmanagers {
    /// Each member's base URL, in the order written; at least one, no two alike.
    pub urls: Vec<Url>,
    /// Credentials for every member.
    pub credentials: Credentials,
    /// Timeout of one request to one member.
    pub timeout: Duration,
}

/// The keys of [`Alertmanagers`] as written in a section (each section repeats them: serde's
/// `flatten` does not work with `deny_unknown_fields`).
struct AlertmanagersFile {
    alertmanager_url: Option<Url>,
    alertmanager_urls: Option<Vec<Url>>,
    bearer_token_file: Option<PathBuf>,
    bearer_token_env: Option<String>,
    basic_auth: Option<BasicAuthFile>,
    timeout: Duration,
}

impl AlertmanagersFile {
    fn load(self, section: &str, errs: &mut ConfigErrors) -> Alertmanagers {
        let urls = match (self.alertmanager_url, self.alertmanager_urls) {
            (Some(one), None) => {
                check_http_url(&one, &format!("{section}.alertmanager_url"), errs);
                vec![one]
            }
            (None, Some(list)) => {
                if list.is_empty() {
                    errs.push(
                        format!("{section}.alertmanager_urls"),
                        "must name at least one Alertmanager",
                    );
                }
                for (i, u) in list.iter().enumerate() {
                    let path = format!("{section}.alertmanager_urls[{i}]");
                    check_http_url(u, &path, errs);
                    if list[..i].contains(u) {
                        errs.push(path, format!("{u} is listed twice"));
                    }
                }
                list
            }
            (Some(_), Some(_)) => {
                errs.push(
                    format!("{section}.alertmanager_url"),
                    "give alertmanager_url (one Alertmanager) or alertmanager_urls (every member of a cluster), not both",
                );
                Vec::new()
            }
            (None, None) => {
                errs.push(
                    format!("{section}.alertmanager_urls"),
                    "missing: the Alertmanager (alertmanager_url) or every member of its cluster (alertmanager_urls)",
                );
                Vec::new()
            }
        };
        Alertmanagers {
            urls,
            credentials: Credentials::load(
                CredentialsFile {
                    bearer_token_file: self.bearer_token_file,
                    bearer_token_env: self.bearer_token_env,
                    basic_auth: self.basic_auth,
                },
                section,
                errs,
            ),
            timeout: self.timeout,
        }
    }
}

impl Alertmanagers {
    /// `<url>/api/v2/<endpoint>` of member `url`.
    #[must_use]
    pub fn api_url(url: &Url, endpoint: &str) -> Url {
        let mut url = url.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}/api/v2/{endpoint}"));
        url
    }
}

/// Where and how escalations are posted (`escalation:`).
#[derive(Debug, Clone)]
pub struct Escalation {
    /// Every member of the Alertmanager cluster; each post goes to all of them, as Prometheus
    /// sends its alerts.
    pub alertmanagers: Alertmanagers,
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
    alertmanager_url: Option<Url>,
    alertmanager_urls: Option<Vec<Url>>,
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
            alertmanagers: AlertmanagersFile {
                alertmanager_url: f.alertmanager_url,
                alertmanager_urls: f.alertmanager_urls,
                bearer_token_file: f.bearer_token_file,
                bearer_token_env: f.bearer_token_env,
                basic_auth: f.basic_auth,
                timeout: f.timeout,
            }
            .load("escalation", errs),
            min_backoff: f.min_backoff,
            max_backoff: f.max_backoff.max(f.min_backoff),
            resend_interval: f.resend_interval,
            alert_duration: f.alert_duration.unwrap_or(f.resend_interval * 4),
            labels: f.labels,
        })
    }
}

/// Which Alertmanagers open incidents are reconciled with (`reconciliation:`, or else the
/// members of `escalation:`), and when a member's list can be trusted.
#[derive(Debug, Clone)]
pub struct Reconciliation {
    /// Every member of the Alertmanager cluster; each is asked.
    pub alertmanagers: Alertmanagers,
    /// Prometheus' `--rules.alert.resend-delay`: how long after an Alertmanager starts until
    /// Prometheus has sent it every firing alert again, together with one evaluation interval.
    pub prometheus_resend_delay: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconciliationFile {
    alertmanager_url: Option<Url>,
    alertmanager_urls: Option<Vec<Url>>,
    bearer_token_file: Option<PathBuf>,
    bearer_token_env: Option<String>,
    basic_auth: Option<BasicAuthFile>,
    #[serde(default = "secs::<10>", with = "duration")]
    timeout: Duration,
    #[serde(default = "secs::<60>", with = "duration")]
    prometheus_resend_delay: Duration,
}

impl Reconciliation {
    /// Parses `reconciliation:`; without it, the members and credentials of `escalation`
    /// (when there is one) with the default resend delay.
    pub fn load(
        v: Option<&Value>,
        escalation: Option<&Escalation>,
        errs: &mut ConfigErrors,
    ) -> Option<Reconciliation> {
        let Some(v) = v else {
            return escalation.map(|e| Reconciliation {
                alertmanagers: e.alertmanagers.clone(),
                prometheus_resend_delay: secs::<60>(),
            });
        };
        let f = common::typed::<ReconciliationFile>(v, "reconciliation", errs)?;
        if f.prometheus_resend_delay.is_zero() {
            errs.push(
                "reconciliation.prometheus_resend_delay",
                "must be greater than 0s (Prometheus' --rules.alert.resend-delay, default 1m)",
            );
        }
        Some(Reconciliation {
            alertmanagers: AlertmanagersFile {
                alertmanager_url: f.alertmanager_url,
                alertmanager_urls: f.alertmanager_urls,
                bearer_token_file: f.bearer_token_file,
                bearer_token_env: f.bearer_token_env,
                basic_auth: f.basic_auth,
                timeout: f.timeout,
            }
            .load("reconciliation", errs),
            prometheus_resend_delay: f.prometheus_resend_delay,
        })
    }

    /// How long a member must have been up before an alert missing from its list is news:
    /// twice Prometheus' resend delay, which covers one resend and an evaluation interval no
    /// longer than the delay. A member up for less may have started empty and not yet been
    /// sent the alerts that fire.
    #[must_use]
    pub fn settle_time(&self) -> Duration {
        self.prometheus_resend_delay * 2
    }
}

/// The default Docker Engine (`docker:`): the engine of targets whose `docker` section names
/// none, whose containers' subjects are `container:NAME`.
#[derive(Debug, Clone, Default)]
pub struct DockerSettings {
    /// `host` with its client TLS keys; else `DOCKER_HOST` (with `DOCKER_TLS_VERIFY` and
    /// `DOCKER_CERT_PATH`); else the local socket.
    pub engine: Arc<Engine>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DockerSettingsFile {
    host: Option<String>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    tls_server_name: Option<String>,
}

impl DockerSettings {
    /// Parses `docker:` (defaults when absent), reading its TLS files.
    pub fn load(v: Option<&Value>, errs: &mut ConfigErrors) -> DockerSettings {
        let keys = v
            .and_then(|v| common::typed::<DockerSettingsFile>(v, "docker", errs))
            .map(|f| EngineKeys {
                host: f.host,
                ca_file: f.ca_file,
                cert_file: f.cert_file,
                key_file: f.key_file,
                tls_server_name: f.tls_server_name,
            })
            .unwrap_or_default();
        DockerSettings {
            engine: Arc::new(Engine::load_default(keys, "docker", errs)),
        }
    }
}
