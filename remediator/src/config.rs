//! The remediator's configuration: typed, strict, validated in one pass that reports every
//! problem with its path.
//!
//! **Invariant:** everything an action touches — container names, URLs, credentials, files, PLC
//! routers — is written here. Alert labels may only choose among configured targets and
//! allow-listed names.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use stackmedic_common::config::{self as common, duration, ConfigErrors};
use url::Url;

use crate::action::ActionKind;
use crate::matcher::Matcher;

/// The configuration used when no file is given: loopback only, dry-run on, and one rule that
/// restarts the container named by the alert's `container` label only if that container carries
/// the Docker label `stackmedic.restart=true`.
pub const DEFAULT_CONFIG: &str = include_str!("default.yml");

/// A complete, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Process-wide settings.
    pub global: Global,
    /// How `POST /webhook` authenticates Alertmanager.
    pub webhook: WebhookAuth,
    /// Where escalations go; without it failures are only logged and audited.
    pub escalation: Option<Escalation>,
    /// The Docker Engine connection.
    pub docker: DockerSettings,
    /// Targets by name.
    pub targets: BTreeMap<String, Arc<Target>>,
    /// Rules in order.
    pub rules: Vec<Arc<Rule>>,
}

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
    /// Jobs found stored at start that were accepted longer ago than this are expired, not run.
    #[serde(default = "default_resume_max_age", with = "duration")]
    pub resume_max_age: Duration,
    /// Finished jobs, audit rows, attempts, closed circuits, delivered escalations and incidents
    /// older than this are deleted (hourly).
    #[serde(default = "default_retention", with = "duration")]
    pub retention: Duration,
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

impl Default for Global {
    fn default() -> Self {
        Self {
            dry_run: false,
            max_concurrent_actions: default_concurrency(),
            max_body_bytes: default_body(),
            resume_max_age: default_resume_max_age(),
            retention: default_retention(),
        }
    }
}

/// A secret given as a file or an environment variable.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BasicAuthFile {
    username: String,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    bearer_token_file: Option<PathBuf>,
    bearer_token_env: Option<String>,
    basic_auth: Option<BasicAuthFile>,
}

/// Credentials read from their files or variables at load.
#[derive(Clone, Default)]
pub struct Credentials {
    /// Bearer token.
    pub bearer_token: Option<String>,
    /// Basic auth user name and password.
    pub basic_auth: Option<(String, String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<secret>"),
            )
            .field(
                "basic_auth",
                &self.basic_auth.as_ref().map(|(u, _)| (u, "<secret>")),
            )
            .finish()
    }
}

impl Credentials {
    fn load(file: CredentialsFile, path: &str, errs: &mut ConfigErrors) -> Self {
        let mut c = Credentials::default();
        if file.bearer_token_file.is_some() || file.bearer_token_env.is_some() {
            if file.bearer_token_file.is_some() && file.bearer_token_env.is_some() {
                errs.push(
                    common::join(path, "bearer_token_file"),
                    "give bearer_token_file or bearer_token_env, not both",
                );
            }
            match common::read_secret(
                file.bearer_token_file.as_deref(),
                file.bearer_token_env.as_deref(),
            ) {
                Ok(t) => c.bearer_token = Some(t),
                Err(e) => errs.push(common::join(path, "bearer_token_file"), e),
            }
        }
        if let Some(b) = file.basic_auth {
            let p = common::join(path, "basic_auth");
            if b.username.is_empty() {
                errs.push(common::join(&p, "username"), "must not be empty");
            }
            match common::read_secret(b.password_file.as_deref(), b.password_env.as_deref()) {
                Ok(pw) => c.basic_auth = Some((b.username, pw)),
                Err(e) => errs.push(common::join(&p, "password_file"), e),
            }
        }
        c
    }

    /// Whether any credential is configured.
    #[must_use]
    pub fn is_set(&self) -> bool {
        self.bearer_token.is_some() || self.basic_auth.is_some()
    }
}

/// How `POST /webhook` authenticates (`webhook:`): a bearer token and/or basic auth, as
/// Alertmanager's `http_config` sends them.
#[derive(Debug, Clone, Default)]
pub struct WebhookAuth {
    /// Accepted credentials; empty means no authentication (loopback only).
    pub credentials: Credentials,
}

/// Where and how escalations are posted (`escalation:`).
#[derive(Debug, Clone)]
pub struct Escalation {
    /// Alertmanager's base URL; alerts go to `<url>/api/v2/alerts`.
    pub alertmanager_url: Url,
    /// Credentials for Alertmanager.
    pub credentials: Credentials,
    /// Timeout of one delivery attempt.
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

/// The Docker Engine connection (`docker:`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSettings {
    /// `unix:///path` or `http://host:port`; default: `DOCKER_HOST` or the local socket.
    pub host: Option<String>,
}

/// A place actions may touch, with its safety limits (`targets[]`).
#[derive(Debug, Clone)]
pub struct Target {
    /// Unique name.
    pub name: String,
    /// No new attempt on the same subject within this time after the last one.
    pub cooldown: Duration,
    /// Attempts allowed within `attempt_window` before the circuit opens.
    pub max_attempts: u32,
    /// Window over which attempts are counted.
    pub attempt_window: Duration,
    /// How long an open circuit stays open.
    pub circuit_open_for: Duration,
    /// Time an action may take.
    pub timeout: Duration,
    /// How the outcome is verified.
    pub verify: Verify,
    /// Containers this target may restart or start.
    pub docker: Option<DockerTarget>,
    /// An admin API.
    pub http: Option<HttpTarget>,
    /// A TwinCAT router.
    pub ads: Option<AdsTarget>,
    /// A compose stack.
    pub compose: Option<ComposeTarget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    name: String,
    #[serde(default = "secs::<300>", with = "duration")]
    cooldown: Duration,
    #[serde(default = "default_attempts")]
    max_attempts: u32,
    #[serde(default = "secs::<3600>", with = "duration")]
    attempt_window: Duration,
    #[serde(default, with = "duration::option")]
    circuit_open_for: Option<Duration>,
    #[serde(default = "secs::<60>", with = "duration")]
    timeout: Duration,
    #[serde(default)]
    verify: Verify,
    docker: Option<DockerTarget>,
    http: Option<HttpTargetFile>,
    ads: Option<AdsTargetFile>,
    compose: Option<ComposeTarget>,
}

fn default_attempts() -> u32 {
    3
}

/// Verification after an action (`targets[].verify`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// Time the outcome has to become good.
    #[serde(default = "secs::<60>", with = "duration")]
    pub deadline: Duration,
    /// Time between checks.
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    /// A URL that must answer 2xx (or one of `expect_status`).
    pub url: Option<Url>,
    /// Accepted statuses of `url`; default any 2xx.
    #[serde(default)]
    pub expect_status: Vec<u16>,
    /// Containers that must be running (and healthy when they have a health check), for actions
    /// that do not name a container themselves, such as `compose_up`.
    #[serde(default)]
    pub containers: Vec<String>,
}

fn default_interval() -> Duration {
    Duration::from_millis(500)
}

impl Default for Verify {
    fn default() -> Self {
        Self {
            deadline: secs::<60>(),
            interval: default_interval(),
            url: None,
            expect_status: Vec::new(),
            containers: Vec::new(),
        }
    }
}

/// Containers a target may act on (`targets[].docker`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerTarget {
    /// The allow-list of container names.
    #[serde(default)]
    pub containers: Vec<String>,
    /// A Docker label `key=value` the container must carry (opt-in); with an empty
    /// `containers` list, any container carrying it may be named by the alert.
    pub require_label: Option<String>,
    /// Grace time before Docker kills the container on restart.
    #[serde(default = "secs::<10>", with = "duration")]
    pub stop_timeout: Duration,
}

/// An admin API (`targets[].http`).
#[derive(Debug, Clone)]
pub struct HttpTarget {
    /// Base URL; step paths are appended to it.
    pub base_url: Url,
    /// Credentials sent with every step.
    pub credentials: Credentials,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpTargetFile {
    base_url: Url,
    bearer_token_file: Option<PathBuf>,
    bearer_token_env: Option<String>,
    basic_auth: Option<BasicAuthFile>,
}

/// A TwinCAT router to add a route on (`targets[].ads`).
#[derive(Debug, Clone)]
pub struct AdsTarget {
    /// Router address.
    pub router: IpAddr,
    /// UDP port of the router (48899).
    pub port: u16,
    /// AMS Net ID of the route's destination (this side).
    pub net_id: String,
    /// Host name or address of the route's destination, as the router should reach it.
    pub route_host: String,
    /// Route name; default `route_host`.
    pub route_name: Option<String>,
    /// Router user name.
    pub username: String,
    /// Router password, from a file or the environment.
    pub password: String,
    /// Add the route as temporary.
    pub temporary: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdsTargetFile {
    router: IpAddr,
    #[serde(default = "default_ads_port")]
    port: u16,
    net_id: String,
    route_host: String,
    route_name: Option<String>,
    #[serde(default = "default_ads_user")]
    username: String,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    #[serde(default)]
    temporary: bool,
}

fn default_ads_port() -> u16 {
    48899
}
fn default_ads_user() -> String {
    "Administrator".into()
}

/// A compose stack to bring up (`targets[].compose`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeTarget {
    /// The compose file.
    pub file: PathBuf,
    /// Project name (`-p`).
    pub project_name: Option<String>,
    /// The program and leading arguments; `docker compose` by default, `docker-compose` works
    /// too.
    #[serde(default = "default_compose_command")]
    pub command: Vec<String>,
    /// Services to bring up; all when empty.
    #[serde(default)]
    pub services: Vec<String>,
}

fn default_compose_command() -> Vec<String> {
    vec!["docker".into(), "compose".into()]
}

/// A rule: which firing alerts lead to which action on which target (`rules[]`).
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// All must match the alert's labels.
    pub matchers: Vec<Matcher>,
    /// The action kind.
    pub action: ActionKind,
    /// How the target is chosen.
    pub target: TargetChoice,
    /// For container actions: the label naming the container (it must be allow-listed).
    pub container_label: Option<String>,
    /// Path parameters of `http_sequence` steps, chosen by labels among allowed values.
    pub params: BTreeMap<String, Param>,
    /// The calls of an `http_sequence`.
    pub steps: Vec<Step>,
    /// Dry-run this rule even when the global switch is off.
    pub dry_run: bool,
    /// Wait this long after accepting before acting; a resolve in between cancels the job.
    pub delay: Duration,
}

/// How a rule's target is chosen.
#[derive(Debug, Clone)]
pub enum TargetChoice {
    /// Always this target.
    Fixed(String),
    /// The value of `label`, which must be one of `allowed`.
    Label {
        /// The label.
        label: String,
        /// Target names the label may pick.
        allowed: Vec<String>,
    },
}

/// A path parameter chosen by a label among allowed values (`rules[].params.NAME`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// The label holding the value.
    pub label: String,
    /// The values allowed.
    pub allowed: Vec<String>,
}

/// One call of an `http_sequence` (`rules[].steps[]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// HTTP method.
    #[serde(default = "default_method")]
    pub method: String,
    /// Path below the target's base URL, with `{param}` placeholders.
    pub path: String,
    /// JSON body.
    pub body: Option<Value>,
    /// Accepted statuses; default any 2xx.
    #[serde(default)]
    pub expect_status: Vec<u16>,
    /// Wait after this step before the next one.
    #[serde(default, with = "duration::option")]
    pub delay_after: Option<Duration>,
}

fn default_method() -> String {
    "POST".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    #[serde(default)]
    matchers: Vec<Matcher>,
    action: ActionKind,
    target: Option<String>,
    target_label: Option<String>,
    #[serde(default)]
    targets: Vec<String>,
    container_label: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, Param>,
    #[serde(default)]
    steps: Vec<Step>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default, with = "duration::option")]
    delay: Option<Duration>,
}

/// Docker's rule for container names.
#[must_use]
pub fn valid_container_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && s.len() <= 128
}

/// Loads the configuration from a file, or the embedded default without one.
///
/// # Errors
/// Every problem found, each with its path.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    let value = match path {
        Some(p) => common::read_yaml_file(p)?,
        None => common::parse_yaml(DEFAULT_CONFIG).map_err(|e| {
            let mut errs = ConfigErrors::default();
            errs.push("", format!("embedded default: {e}"));
            errs
        })?,
    };
    from_value(&value)
}

/// Builds the configuration from a parsed YAML tree.
///
/// # Errors
/// Every problem found, each with its path.
pub fn from_value(value: &Value) -> Result<Config, ConfigErrors> {
    let mut errs = ConfigErrors::default();
    common::check_keys(
        value,
        "",
        &[
            "global",
            "webhook",
            "escalation",
            "docker",
            "targets",
            "rules",
        ],
        &mut errs,
    );
    let global = match value.get("global") {
        Some(v) => common::typed::<Global>(v, "global", &mut errs).unwrap_or_default(),
        None => Global::default(),
    };
    if global.retention < Duration::from_secs(3600) {
        errs.push("global.retention", "must be at least 1h");
    }
    if global.max_concurrent_actions == 0 {
        errs.push("global.max_concurrent_actions", "must be at least 1");
    }
    let webhook = match value.get("webhook") {
        Some(v) => common::typed::<CredentialsFile>(v, "webhook", &mut errs)
            .map(|f| WebhookAuth {
                credentials: Credentials::load(f, "webhook", &mut errs),
            })
            .unwrap_or_default(),
        None => WebhookAuth::default(),
    };
    let escalation = value.get("escalation").and_then(|v| {
        let f = common::typed::<EscalationFile>(v, "escalation", &mut errs)?;
        check_http_url(
            &f.alertmanager_url,
            "escalation.alertmanager_url",
            &mut errs,
        );
        if f.resend_interval.is_zero() {
            errs.push("escalation.resend_interval", "must be greater than 0s");
        }
        if let Some(d) = f.alert_duration {
            if d <= f.resend_interval {
                errs.push(
                    "escalation.alert_duration",
                    format!(
                        "must be longer than resend_interval ({:?}), or the page resolves between two posts",
                        f.resend_interval
                    ),
                );
            }
        }
        Some(Escalation {
            alertmanager_url: f.alertmanager_url,
            credentials: Credentials::load(
                CredentialsFile {
                    bearer_token_file: f.bearer_token_file,
                    bearer_token_env: f.bearer_token_env,
                    basic_auth: f.basic_auth,
                },
                "escalation",
                &mut errs,
            ),
            timeout: f.timeout,
            min_backoff: f.min_backoff,
            max_backoff: f.max_backoff.max(f.min_backoff),
            resend_interval: f.resend_interval,
            alert_duration: f.alert_duration.unwrap_or(f.resend_interval * 4),
            labels: f.labels,
        })
    });
    let docker = value
        .get("docker")
        .and_then(|v| common::typed::<DockerSettings>(v, "docker", &mut errs))
        .unwrap_or_default();

    let mut targets = BTreeMap::new();
    for (path, v) in common::list_entries(value.get("targets"), "targets", &mut errs) {
        if let Some(t) = load_target(v, &path, &mut errs) {
            if targets.contains_key(&t.name) {
                errs.push(
                    join(&path, "name"),
                    format!("duplicate target {:?}", t.name),
                );
            } else {
                targets.insert(t.name.clone(), Arc::new(t));
            }
        }
    }
    let mut rules = Vec::new();
    let mut names = BTreeSet::new();
    for (path, v) in common::list_entries(value.get("rules"), "rules", &mut errs) {
        if let Some(r) = load_rule(v, &path, &targets, &mut errs) {
            if !names.insert(r.name.clone()) {
                errs.push(join(&path, "name"), format!("duplicate rule {:?}", r.name));
            }
            rules.push(Arc::new(r));
        }
    }
    errs.into_result(Config {
        global,
        webhook,
        escalation,
        docker,
        targets,
        rules,
    })
}

fn join(a: &str, b: &str) -> String {
    common::join(a, b)
}

fn check_http_url(u: &Url, path: &str, errs: &mut ConfigErrors) {
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        errs.push(path, format!("{u} is not an http(s) URL with a host"));
    }
}

fn load_target(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<Target> {
    let f = common::typed::<TargetFile>(v, path, errs)?;
    if f.name.is_empty() {
        errs.push(join(path, "name"), "must not be empty");
    }
    if f.max_attempts == 0 {
        errs.push(join(path, "max_attempts"), "must be at least 1");
    }
    if f.docker.is_none() && f.http.is_none() && f.ads.is_none() && f.compose.is_none() {
        errs.push(
            path,
            "a target needs at least one of `docker`, `http`, `ads`, `compose`",
        );
    }
    if let Some(d) = &f.docker {
        for (i, c) in d.containers.iter().enumerate() {
            if !valid_container_name(c) {
                errs.push(
                    format!("{path}.docker.containers[{i}]"),
                    format!("{c:?} is not a valid container name"),
                );
            }
        }
        if d.containers.is_empty() && d.require_label.is_none() {
            errs.push(
                join(path, "docker"),
                "give an allow-list in `containers`, or `require_label` for opt-in by Docker label",
            );
        }
        if let Some(l) = &d.require_label {
            if !l.contains('=') || l.starts_with('=') {
                errs.push(
                    join(path, "docker.require_label"),
                    format!("{l:?} is not of the form key=value"),
                );
            }
        }
    }
    for (i, c) in f.verify.containers.iter().enumerate() {
        if !valid_container_name(c) {
            errs.push(
                format!("{path}.verify.containers[{i}]"),
                format!("{c:?} is not a valid container name"),
            );
        }
    }
    if let Some(u) = &f.verify.url {
        check_http_url(u, &join(path, "verify.url"), errs);
    }
    let http = f.http.map(|h| {
        let p = join(path, "http");
        check_http_url(&h.base_url, &join(&p, "base_url"), errs);
        HttpTarget {
            base_url: h.base_url,
            credentials: Credentials::load(
                CredentialsFile {
                    bearer_token_file: h.bearer_token_file,
                    bearer_token_env: h.bearer_token_env,
                    basic_auth: h.basic_auth,
                },
                &p,
                errs,
            ),
        }
    });
    let ads = f.ads.and_then(|a| {
        let p = join(path, "ads");
        if a.net_id.parse::<ads::AmsNetId>().is_err() || a.net_id.split('.').count() != 6 {
            errs.push(
                join(&p, "net_id"),
                format!("{:?} is not an AMS Net ID (a.b.c.d.e.f)", a.net_id),
            );
        }
        match common::read_secret(a.password_file.as_deref(), a.password_env.as_deref()) {
            Ok(password) => Some(AdsTarget {
                router: a.router,
                port: a.port,
                net_id: a.net_id,
                route_host: a.route_host,
                route_name: a.route_name,
                username: a.username,
                password,
                temporary: a.temporary,
            }),
            Err(e) => {
                errs.push(join(&p, "password_file"), e);
                None
            }
        }
    });
    if let Some(c) = &f.compose {
        if c.command.is_empty() || c.command[0].is_empty() {
            errs.push(join(path, "compose.command"), "must name a program");
        }
        if !c.file.is_absolute() {
            errs.push(
                join(path, "compose.file"),
                "must be an absolute path (the remediator's working directory is not the stack's)",
            );
        }
    }
    Some(Target {
        name: f.name,
        cooldown: f.cooldown,
        max_attempts: f.max_attempts,
        attempt_window: f.attempt_window,
        circuit_open_for: f.circuit_open_for.unwrap_or(f.attempt_window),
        timeout: f.timeout,
        verify: f.verify,
        docker: f.docker,
        http,
        ads,
        compose: f.compose,
    })
}

fn load_rule(
    v: &Value,
    path: &str,
    targets: &BTreeMap<String, Arc<Target>>,
    errs: &mut ConfigErrors,
) -> Option<Rule> {
    let f = common::typed::<RuleFile>(v, path, errs)?;
    if f.name.is_empty() {
        errs.push(join(path, "name"), "must not be empty");
    }
    let target = match (f.target, f.target_label) {
        (Some(t), None) => {
            if !f.targets.is_empty() {
                errs.push(join(path, "targets"), "only used with `target_label`");
            }
            TargetChoice::Fixed(t)
        }
        (None, Some(label)) => {
            if f.targets.is_empty() {
                errs.push(
                    join(path, "targets"),
                    "`target_label` needs the list of targets the label may choose",
                );
            }
            TargetChoice::Label {
                label,
                allowed: f.targets,
            }
        }
        _ => {
            errs.push(path, "give exactly one of `target` and `target_label`");
            return None;
        }
    };
    let names: Vec<&String> = match &target {
        TargetChoice::Fixed(t) => vec![t],
        TargetChoice::Label { allowed, .. } => allowed.iter().collect(),
    };
    let field = if matches!(target, TargetChoice::Fixed(_)) {
        "target"
    } else {
        "targets"
    };
    for name in names {
        let Some(t) = targets.get(name) else {
            errs.push(join(path, field), format!("unknown target {name:?}"));
            continue;
        };
        if let Err(e) = f.action.check_target(t, f.container_label.is_some()) {
            errs.push(join(path, "action"), format!("target {name:?}: {e}"));
        }
    }
    let is_container = matches!(
        f.action,
        ActionKind::ContainerRestart | ActionKind::ContainerStart
    );
    if f.container_label.is_some() && !is_container {
        errs.push(
            join(path, "container_label"),
            "only used with container_restart and container_start",
        );
    }
    if f.action == ActionKind::HttpSequence {
        if f.steps.is_empty() {
            errs.push(
                join(path, "steps"),
                "an http_sequence needs at least one step",
            );
        }
    } else {
        if !f.steps.is_empty() {
            errs.push(join(path, "steps"), "only used with http_sequence");
        }
        if !f.params.is_empty() {
            errs.push(join(path, "params"), "only used with http_sequence");
        }
    }
    for (name, p) in &f.params {
        if p.allowed.is_empty() {
            errs.push(
                format!("{path}.params.{name}.allowed"),
                "list the values the label may take",
            );
        }
    }
    for (i, s) in f.steps.iter().enumerate() {
        let sp = format!("{path}.steps[{i}]");
        if http::Method::from_bytes(s.method.as_bytes()).is_err() {
            errs.push(
                join(&sp, "method"),
                format!("invalid method {:?}", s.method),
            );
        }
        if !s.path.starts_with('/') || s.path.contains("..") || s.path.contains("://") {
            errs.push(
                join(&sp, "path"),
                "must start with `/` and contain neither `..` nor a scheme",
            );
        }
        for placeholder in placeholders(&s.path) {
            if !f.params.contains_key(placeholder) {
                errs.push(
                    join(&sp, "path"),
                    format!("placeholder {{{placeholder}}} is not declared in `params`"),
                );
            }
        }
    }
    Some(Rule {
        name: f.name,
        matchers: f.matchers,
        action: f.action,
        target,
        container_label: f.container_label,
        params: f.params,
        steps: f.steps,
        dry_run: f.dry_run,
        delay: f.delay.unwrap_or_default(),
    })
}

/// The `{name}` placeholders of a step path.
pub fn placeholders(path: &str) -> impl Iterator<Item = &str> {
    path.split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(name, _)| name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let v = common::parse_yaml(yaml).unwrap();
        match from_value(&v) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn default_config_is_valid_and_dry_run() {
        let c = load(None).unwrap();
        assert!(c.global.dry_run);
        assert_eq!(c.rules.len(), 1);
        assert!(!c.webhook.credentials.is_set());
    }

    #[test]
    fn every_problem_has_its_path() {
        let p = problems(
            "global: {dry_run: maybe}\n\
             targets:\n\
             - name: a\n  docker: {containers: ['../etc']}\n  cooldown: soon\n\
             - name: b\n  docker: {containers: [ok]}\n  colour: red\n\
             - name: c\n  docker: {containers: ['bad;name']}\n\
             rules:\n\
             - name: r\n  action: container_restart\n  target: nope\n  matchers: ['a=~\"(\"']\n\
             - name: s\n  action: http_sequence\n  target: c\n\
             - name: t\n  action: launch_rockets\n  target: c\n",
        );
        let text = p.join("\n");
        for want in [
            "global.dry_run:",
            "targets[0].cooldown: invalid duration",
            "targets[1].colour: unknown field",
            "targets[2].docker.containers[0]: \"bad;name\" is not a valid container name",
            "rules[0].matchers[0]: matcher",
            "rules[1].action: target \"c\": http_sequence needs an `http` section",
            "rules[1].steps: an http_sequence needs at least one step",
            "rules[2].action: unknown variant `launch_rockets`",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn escalation_resend_interval_and_alert_duration() {
        let v = common::parse_yaml(
            "escalation: {alertmanager_url: 'http://127.0.0.1:9093', resend_interval: 30s}\n",
        )
        .unwrap();
        let esc = from_value(&v).unwrap().escalation.unwrap();
        assert_eq!(esc.resend_interval, Duration::from_secs(30));
        assert_eq!(esc.alert_duration, Duration::from_secs(120));
        let v = common::parse_yaml("escalation: {alertmanager_url: 'http://127.0.0.1:9093'}\n")
            .unwrap();
        let esc = from_value(&v).unwrap().escalation.unwrap();
        assert_eq!(
            (esc.resend_interval, esc.alert_duration),
            (Duration::from_secs(60), Duration::from_secs(240))
        );
        let text = problems(
            "escalation: {alertmanager_url: 'http://127.0.0.1:9093', resend_interval: 1m, alert_duration: 1m}\n",
        )
        .join("\n");
        assert!(
            text.contains("escalation.alert_duration: must be longer than resend_interval"),
            "{text}"
        );
        let text = problems(
            "escalation: {alertmanager_url: 'http://127.0.0.1:9093', resend_interval: 0s}\n",
        )
        .join("\n");
        assert!(text.contains("escalation.resend_interval:"), "{text}");
    }

    #[test]
    fn undeclared_placeholder_and_bad_path() {
        let p = problems(
            "targets:\n- name: app\n  http: {base_url: 'http://127.0.0.1:1'}\n\
             rules:\n- name: r\n  action: http_sequence\n  target: app\n  steps:\n\
             \x20 - path: /api/{stream}/restart\n  - path: http://evil/x\n",
        );
        let text = p.join("\n");
        assert!(
            text.contains("rules[0].steps[0].path: placeholder {stream}"),
            "{text}"
        );
        assert!(
            text.contains("rules[0].steps[1].path: must start with"),
            "{text}"
        );
    }
}
