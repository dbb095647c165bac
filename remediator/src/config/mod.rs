//! The remediator's configuration: typed, strict, validated in one pass that reports every
//! problem with its path.
//!
//! `global.rs` holds the process-wide sections, `targets.rs` the targets with their incident
//! policy and verification, `rules.rs` the rules; each action kind parses its own target
//! section and rule keys (`crate::action`), and secrets are read by `crate::credentials`.
//!
//! **Invariant:** everything an action touches — container names, URLs, credentials, files, PLC
//! routers — is written here. Alert labels may only choose among configured targets and
//! allow-listed names.

mod global;
pub mod guard;
pub mod rules;
pub mod targets;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use stackmedic_common::config::{self as common, ConfigErrors};
use stackmedic_common::include::{self, Included};

pub use global::{Alertmanagers, DockerSettings, Escalation, Global, Reconciliation, WebhookAuth};
pub use rules::{Rule, TargetChoice};
pub use targets::{Target, Verify};

/// The configuration used when no file is given: loopback only, dry-run on, and one rule that
/// restarts the container named by the alert's `container` label only if that container carries
/// the Docker label `stackmedic.restart=true`.
pub const DEFAULT_CONFIG: &str = include_str!("../default.yml");

/// What `--config.check` and the log say about a valid configuration without rules: it is
/// valid (a remediator may be set up before its rules are), but it never acts.
pub const NO_RULES: &str =
    "no rules configured (0 rules): every alert is counted as unmatched and no action runs";

/// A complete, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Process-wide settings.
    pub global: Global,
    /// How `POST /webhook` authenticates Alertmanager.
    pub webhook: WebhookAuth,
    /// Where escalations go; without it failures are only logged and audited.
    pub escalation: Option<Escalation>,
    /// The Alertmanagers open incidents are reconciled with (`reconciliation`, or else the
    /// members of `escalation`); without either there is nothing to reconcile with.
    pub reconciliation: Option<Reconciliation>,
    /// The Docker Engine connection.
    pub docker: DockerSettings,
    /// Targets by name.
    pub targets: BTreeMap<String, Arc<Target>>,
    /// Rules in order.
    pub rules: Vec<Arc<Rule>>,
    /// Each target's subjects, where its allow-lists bound them (what the blast-radius guard
    /// counts).
    pub subjects: BTreeMap<String, Arc<BTreeSet<String>>>,
    /// Each subject's dependencies, healed before it.
    pub dependencies: Arc<BTreeMap<String, BTreeSet<String>>>,
}

/// The configuration in force, shared by the tasks that read it; a reload swaps it whole, and
/// work that started keeps the configuration it started with.
#[derive(Debug, Clone)]
pub struct Live(Arc<std::sync::RwLock<Arc<Config>>>);

impl Live {
    /// Shares `config`.
    #[must_use]
    pub fn new(config: Config) -> Self {
        Live(Arc::new(std::sync::RwLock::new(Arc::new(config))))
    }

    /// The configuration in force.
    #[must_use]
    pub fn get(&self) -> Arc<Config> {
        self.0
            .read()
            .map_or_else(|p| p.into_inner().clone(), |c| c.clone())
    }

    /// Swaps in a new configuration.
    pub fn set(&self, config: Config) {
        let mut guard = self.0.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(config);
    }
}

const TOP_KEYS: [&str; 7] = [
    "global",
    "webhook",
    "escalation",
    "reconciliation",
    "docker",
    "targets",
    "rules",
];

/// Loads the configuration from a file with the targets and rules of the files it includes, or
/// the embedded default without one.
///
/// # Errors
/// Every problem found, each with its path.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    load_included(path).map(|(config, _)| config)
}

/// The lists an included file may hold (`include: [remediator.d/*.yml]`, one file per stack).
pub const INCLUDED_LISTS: [&str; 2] = ["targets", "rules"];

/// [`load`], with where each target and rule was written (the contract check names the
/// included file of a rule).
///
/// # Errors
/// Every problem found, each with its file (when included) and path.
pub fn load_included(path: Option<&Path>) -> Result<(Config, Included), ConfigErrors> {
    let doc = match path {
        Some(p) => include::read(p, &INCLUDED_LISTS)?,
        None => Included::single(common::parse_yaml(DEFAULT_CONFIG).map_err(|e| {
            let mut errs = ConfigErrors::default();
            errs.push("", format!("embedded default: {e}"));
            errs
        })?),
    };
    match from_value(&doc.value) {
        Ok(config) => Ok((config, doc)),
        Err(errs) => Err(doc.locate(errs)),
    }
}

/// Builds the configuration from a parsed YAML tree.
///
/// # Errors
/// Every problem found, each with its path.
pub fn from_value(value: &Value) -> Result<Config, ConfigErrors> {
    let mut errs = ConfigErrors::default();
    common::check_keys(value, "", &TOP_KEYS, &mut errs);
    let global = Global::load(value.get("global"), &mut errs);
    let webhook = WebhookAuth::load(value.get("webhook"), &mut errs);
    let escalation = Escalation::load(value.get("escalation"), &mut errs);
    let reconciliation =
        Reconciliation::load(value.get("reconciliation"), escalation.as_ref(), &mut errs);
    let docker = DockerSettings::load(value.get("docker"), &mut errs);

    let mut targets = BTreeMap::new();
    // Targets the file names but that could not be loaded (their problems are reported): a
    // rule naming one is not reported again for an unknown target.
    let mut unusable = BTreeSet::new();
    for (path, v) in common::list_entries(value.get("targets"), "targets", &mut errs) {
        let retention = (!errs.has("global.retention")).then_some(global.retention);
        let loaded = targets::load(
            v,
            &path,
            retention,
            &global.blast_radius,
            &docker.engine,
            &mut errs,
        );
        if loaded.is_none() {
            if let Some(name) = v.get("name").and_then(Value::as_str) {
                unusable.insert(name.to_string());
            }
        }
        if let Some(t) = loaded {
            if targets.contains_key(&t.name) {
                errs.push(
                    common::join(&path, "name"),
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
        if let Some(r) = rules::load(v, &path, &targets, &unusable, &mut errs) {
            if !names.insert(r.name.clone()) {
                errs.push(
                    common::join(&path, "name"),
                    format!("duplicate rule {:?}", r.name),
                );
            }
            rules.push(Arc::new(r));
        }
    }
    let subjects = guard::subjects(&rules)
        .into_iter()
        .map(|(t, s)| (t, Arc::new(s)))
        .collect();
    let dependencies = Arc::new(guard::dependencies(&targets, &mut errs));
    errs.into_result(Config {
        global,
        webhook,
        escalation,
        reconciliation,
        docker,
        targets,
        rules,
        subjects,
        dependencies,
    })
}

/// What `--config.check` finds on this host beyond the file: compose commands that are not
/// installed (errors) or may fail (warnings). Reads the file system only.
#[must_use]
pub fn check_host(config: &Config) -> crate::action::compose::HostCheck {
    let mut out = crate::action::compose::HostCheck::default();
    let mut seen = BTreeSet::new();
    for target in config.targets.values() {
        if let Some(c) = &target.sections.compose {
            if seen.insert(c.path.clone()) {
                let check = c.check_host();
                out.errors.extend(check.errors);
                out.warnings.extend(check.warnings);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::action::Action;

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
        assert!(matches!(
            c.rules[0].actions.get("opted-in-containers"),
            Some(Action::ContainerRestart(_))
        ));
    }

    #[test]
    fn every_problem_has_its_path() {
        let p = problems(
            "global: {dry_run: maybe}\n\
             targets:\n\
             - name: a\n  docker: {containers: ['../etc']}\n  backoff: soon\n\
             - name: b\n  docker: {containers: [ok]}\n  colour: red\n  cooldown: 5m\n\
             - name: c\n  docker: {containers: ['bad;name']}\n  flapping: {count: 2, window: 2000h}\n\
             rules:\n\
             - name: r\n  action: container_restart\n  target: nope\n  matchers: ['a=~\"(\"']\n\
             - name: s\n  action: http_sequence\n  target: c\n\
             - name: t\n  action: launch_rockets\n  target: c\n\
             - name: u\n  action: container_start\n  target: c\n  steps: []\n",
        );
        let want = [
            "global.dry_run: invalid type: string \"maybe\", expected a boolean",
            "targets[0].docker.containers[0]: \"../etc\" is not a valid container name",
            "targets[0].backoff: invalid duration \"soon\"",
            "targets[1].colour: unknown field `colour`",
            "targets[1].cooldown: removed: a failed attempt is retried after `backoff`",
            "targets[2].docker.containers[0]: \"bad;name\" is not a valid container name",
            "targets[2].flapping.window: must not be longer than global.retention (30days)",
            "rules[0].matchers[0]: matcher",
            // A bad matcher does not hide the rule's other problems.
            "rules[0].target: unknown target \"nope\"",
            "rules[1].steps: an http_sequence needs at least one step",
            "rules[1].action: target \"c\": http_sequence needs the target section `http`",
            "rules[2].action: unknown action \"launch_rockets\"",
            // Every key a rule of its kind takes, not only the kind's own.
            "rules[3].steps: unknown field `steps`, expected one of `name`, `matchers`, `action`, `target`, `target_label`, `targets`, `dry_run`, `delay`, `container_label`",
        ];
        let text = p.join("\n");
        for w in want {
            assert!(text.contains(w), "missing {w:?} in:\n{text}");
        }
        // Every problem is reported once, and nothing else.
        assert_eq!(p.len(), want.len(), "{text}");
    }

    #[test]
    fn incident_policy_defaults_and_keys() {
        let v = common::parse_yaml(
            "targets:\n- name: a\n  docker: {containers: [x]}\n\
             - name: b\n  max_attempts: 5\n  backoff: 1m\n  max_backoff: 20m\n  flapping: {count: 0, window: 2h}\n  docker: {containers: [x]}\n",
        )
        .unwrap();
        let c = from_value(&v).unwrap();
        let a = &c.targets["a"].policy;
        assert_eq!(
            (
                a.max_attempts,
                a.backoff,
                a.max_backoff,
                a.flapping.count,
                a.flapping.window
            ),
            (
                3,
                Duration::from_secs(30),
                Duration::from_secs(300),
                3,
                Duration::from_secs(3600)
            )
        );
        let b = &c.targets["b"].policy;
        assert_eq!(
            (b.max_attempts, b.backoff, b.max_backoff, b.flapping.count),
            (5, Duration::from_secs(60), Duration::from_secs(1200), 0)
        );
        assert_eq!(c.targets["a"].verify.stable_for, Duration::from_secs(5));
        assert_eq!(c.global.reconcile_interval, Duration::from_secs(60));
    }

    #[test]
    fn escalation_resend_interval_and_alert_duration() {
        let v = common::parse_yaml(
            "escalation: {alertmanager_url: 'http://127.0.0.1:9093', resend_interval: 30s}\n",
        )
        .unwrap();
        let c = from_value(&v).unwrap();
        let esc = c.escalation.unwrap();
        assert_eq!(esc.resend_interval, Duration::from_secs(30));
        assert_eq!(esc.alert_duration, Duration::from_secs(120));
        assert_eq!(esc.alertmanagers.urls.len(), 1);
        assert_eq!(
            Alertmanagers::api_url(&esc.alertmanagers.urls[0], "alerts").as_str(),
            "http://127.0.0.1:9093/api/v2/alerts"
        );
        // Without a reconciliation section, reconciliation asks the escalation's Alertmanager.
        let rec = c.reconciliation.unwrap();
        assert_eq!(rec.alertmanagers.urls, esc.alertmanagers.urls);
        assert_eq!(rec.settle_time(), Duration::from_secs(120));
        let text = problems(
            "escalation: {alertmanager_url: 'http://127.0.0.1:9093', resend_interval: 1m, alert_duration: 1m}\n",
        )
        .join("\n");
        assert!(
            text.contains("escalation.alert_duration: must be longer than resend_interval (1m)"),
            "{text}"
        );
        let text = problems(
            "escalation: {alertmanager_url: 'http://127.0.0.1:9093', resend_interval: 0s}\n",
        )
        .join("\n");
        assert!(text.contains("escalation.resend_interval:"), "{text}");
    }

    #[test]
    fn alertmanager_clusters_in_escalation_and_reconciliation() {
        let v = common::parse_yaml(
            "escalation: {alertmanager_urls: ['http://127.0.0.1:9093', 'http://127.0.0.1:9094/am/']}\n\
             reconciliation: {alertmanager_url: 'http://127.0.0.1:9095', prometheus_resend_delay: 10s, timeout: 2s}\n",
        )
        .unwrap();
        let c = from_value(&v).unwrap();
        let esc = c.escalation.unwrap();
        assert_eq!(esc.alertmanagers.urls.len(), 2);
        assert_eq!(
            Alertmanagers::api_url(&esc.alertmanagers.urls[1], "status").as_str(),
            "http://127.0.0.1:9094/am/api/v2/status"
        );
        let rec = c.reconciliation.unwrap();
        assert_eq!(rec.alertmanagers.urls.len(), 1);
        assert_eq!(rec.alertmanagers.timeout, Duration::from_secs(2));
        assert_eq!(rec.settle_time(), Duration::from_secs(20));
        // Reconciliation works without an escalation section.
        let v =
            common::parse_yaml("reconciliation: {alertmanager_urls: ['http://127.0.0.1:9093']}\n")
                .unwrap();
        let c = from_value(&v).unwrap();
        assert!(c.escalation.is_none());
        assert_eq!(
            c.reconciliation.unwrap().prometheus_resend_delay,
            Duration::from_secs(60)
        );
        assert!(from_value(&common::parse_yaml("rules: []\n").unwrap())
            .unwrap()
            .reconciliation
            .is_none());
        let text = problems(
            "escalation: {alertmanager_url: 'http://127.0.0.1:9093', alertmanager_urls: ['http://127.0.0.1:9094']}\n\
             reconciliation: {alertmanager_urls: ['http://127.0.0.1:9093', 'ftp://x', 'http://127.0.0.1:9093'], prometheus_resend_delay: 0s}\n",
        )
        .join("\n");
        for expected in [
            "escalation.alertmanager_url: give alertmanager_url (one Alertmanager) or alertmanager_urls",
            "reconciliation.alertmanager_urls[1]: ftp://x",
            "reconciliation.alertmanager_urls[2]: http://127.0.0.1:9093/ is listed twice",
            "reconciliation.prometheus_resend_delay: must be greater than 0s",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
        let text = problems("escalation: {alertmanager_urls: []}\nreconciliation: {timeout: 1s}\n")
            .join("\n");
        assert!(
            text.contains("escalation.alertmanager_urls: must name at least one Alertmanager"),
            "{text}"
        );
        assert!(
            text.contains("reconciliation.alertmanager_urls: missing"),
            "{text}"
        );
    }

    #[test]
    fn undeclared_placeholder_bad_path_and_method() {
        let p = problems(
            "targets:\n- name: app\n  http: {base_url: 'http://127.0.0.1:1'}\n\
             rules:\n- name: r\n  action: http_sequence\n  target: app\n  steps:\n\
             \x20 - path: /api/{stream}/restart\n  - path: http://evil/x\n  - {path: /x, method: 'NOT A METHOD'}\n",
        );
        let text = p.join("\n");
        for want in [
            "rules[0].steps[0].path: placeholder {stream} is not declared in `params`",
            "rules[0].steps[1].path: must start with `/` and contain neither `..` nor a scheme",
            "rules[0].steps[2].method: invalid method \"NOT A METHOD\"",
        ] {
            assert!(text.contains(want), "missing {want:?} in {text}");
        }
        assert_eq!(p.len(), 3, "{text}");
    }

    #[test]
    fn containers_on_another_engine_are_subjects_of_their_own_and_verified_there() {
        use crate::action::Selection;
        let c = from_value(
            &common::parse_yaml(
                "docker: {host: 'unix:///run/default/docker.sock'}\n\
                 targets:\n\
                 - {name: other, docker: {host: 'unix:///run/other/docker.sock', containers: [x]}, verify: {containers: [side]}}\n\
                 - {name: named-default, docker: {host: '/run/default/docker.sock', containers: [x]}}\n\
                 - {name: plain, docker: {containers: [x]}, verify: {containers: [side]}}\n\
                 rules:\n\
                 - {name: r, matchers: ['alertname=\"X\"'], action: container_restart, target_label: t, targets: [other, named-default, plain]}\n",
            )
            .unwrap(),
        )
        .unwrap();
        let selection = Selection {
            container: Some("x".into()),
            ..Selection::default()
        };
        let subject = |t: &str| c.rules[0].actions[t].subject(t, &selection);
        assert_eq!(
            subject("other"),
            "container:x@unix:///run/other/docker.sock"
        );
        assert_eq!(subject("named-default"), "container:x");
        assert_eq!(subject("plain"), "container:x");
        assert_eq!(
            c.targets["other"].verify.engine.address(),
            "unix:///run/other/docker.sock"
        );
        assert_eq!(
            c.targets["plain"].verify.engine.address(),
            "unix:///run/default/docker.sock"
        );
        assert!(c.targets["plain"].verify.engine.is_default());
    }
}
