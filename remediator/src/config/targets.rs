//! `targets[]`: everything an action may touch, with the incident policy of its subjects and
//! how an action's outcome is verified. The kind sections (`docker`, `http`, `ads`,
//! `compose`) are parsed by the action kinds that use them.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use stackmedic_common::config::{self as common, duration, ConfigErrors};
use url::Url;

use crate::action::container::valid_container_name;
use crate::action::http_sequence::check_http_url;
use crate::action::{section_keys, Sections};
use crate::docker::Engine;
use crate::incident::{Flapping, Policy};

use super::guard::{BlastRadius, BlastRadiusFile};

/// A place actions may touch, with its safety limits (`targets[]`).
#[derive(Debug, Clone)]
pub struct Target {
    /// Unique name.
    pub name: String,
    /// Attempts, backoff and flapping of its subjects' incidents.
    pub policy: Policy,
    /// Time one action may take.
    pub timeout: Duration,
    /// How the outcome is verified.
    pub verify: Verify,
    /// The kind sections, each parsed by its kind.
    pub sections: Sections,
    /// The blast-radius guard's settings for its subjects (`blast_radius`, over the global).
    pub guard: BlastRadius,
}

/// Keys every target has besides its kind sections.
const COMMON_KEYS: [&str; 8] = [
    "name",
    "max_attempts",
    "backoff",
    "max_backoff",
    "flapping",
    "timeout",
    "verify",
    "blast_radius",
];

/// Keys of the previous safety model, with what replaced them.
const REMOVED_KEYS: [(&str, &str); 3] = [
    (
        "cooldown",
        "removed: a failed attempt is retried after `backoff` inside its incident, and an alert of an open incident never acts again",
    ),
    (
        "attempt_window",
        "removed: `max_attempts` counts the attempts of one incident, and `flapping` the healed incidents of a subject within a window",
    ),
    (
        "circuit_open_for",
        "removed: an escalated incident stays escalated until its alerts resolve",
    ),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    name: String,
    #[serde(default = "default_attempts")]
    max_attempts: u32,
    #[serde(default = "default_backoff", with = "duration")]
    backoff: Duration,
    #[serde(default = "default_max_backoff", with = "duration")]
    max_backoff: Duration,
    #[serde(default)]
    flapping: FlappingFile,
    #[serde(default = "default_timeout", with = "duration")]
    timeout: Duration,
    #[serde(default)]
    verify: Verify,
    #[serde(default)]
    blast_radius: BlastRadiusFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlappingFile {
    #[serde(default = "default_flapping_count")]
    count: u32,
    #[serde(default = "default_flapping_window", with = "duration")]
    window: Duration,
}

impl Default for FlappingFile {
    fn default() -> Self {
        Self {
            count: default_flapping_count(),
            window: default_flapping_window(),
        }
    }
}

fn default_attempts() -> u32 {
    3
}
fn default_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(300)
}
fn default_flapping_count() -> u32 {
    3
}
fn default_flapping_window() -> Duration {
    Duration::from_secs(3600)
}
fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Verification after an action (`targets[].verify`): the checks must pass within `deadline`
/// and then keep passing for `stable_for`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// Time the outcome has to become good.
    #[serde(default = "default_deadline", with = "duration")]
    pub deadline: Duration,
    /// Time between checks.
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    /// How long the checks must keep passing once they pass; a container that stops, turns
    /// unhealthy or restarts in that time fails the verification.
    #[serde(default = "default_stable_for", with = "duration")]
    pub stable_for: Duration,
    /// How long after a heal the incident's alerts must have resolved: a healed incident whose
    /// alert still fires then is verified again, and a heal that did not hold is a failed
    /// attempt of the same incident.
    #[serde(default = "default_resolve_within", with = "duration")]
    pub resolve_within: Duration,
    /// A URL that must answer 2xx (or one of `expect_status`).
    pub url: Option<Url>,
    /// Accepted statuses of `url`; default any 2xx.
    #[serde(default)]
    pub expect_status: Vec<u16>,
    /// A regular expression the body of `url` must match (a pulled model listed in Ollama's
    /// `/api/tags`).
    pub body_matches: Option<common::Regex>,
    /// A regular expression the body of `url` must not match (an unloaded model no longer in
    /// `/api/ps`).
    pub body_not_matches: Option<common::Regex>,
    /// Containers that must be running (and healthy when they have a health check), for actions
    /// that do not name a container themselves, such as `compose_up`.
    #[serde(default)]
    pub containers: Vec<String>,
    /// The engine `containers` and the containers an action acted on are checked on: the
    /// target's `docker.host`, else the default engine. Set by the loader.
    #[serde(skip)]
    pub engine: Arc<Engine>,
}

fn default_deadline() -> Duration {
    Duration::from_secs(60)
}
fn default_interval() -> Duration {
    Duration::from_millis(500)
}
fn default_stable_for() -> Duration {
    Duration::from_secs(5)
}
/// A little over the time the shipped remediation tier needs to see a subject back and deliver
/// the resolve (probe, scrape and evaluation every 5 s or less, Alertmanager's group interval).
fn default_resolve_within() -> Duration {
    Duration::from_secs(30)
}

impl Default for Verify {
    fn default() -> Self {
        Self {
            deadline: default_deadline(),
            interval: default_interval(),
            stable_for: default_stable_for(),
            resolve_within: default_resolve_within(),
            url: None,
            expect_status: Vec::new(),
            body_matches: None,
            body_not_matches: None,
            containers: Vec::new(),
            engine: Arc::default(),
        }
    }
}

/// Parses one target at `path`. `retention` bounds the flapping window (older healed
/// incidents are deleted), `None` when `global.retention` has a problem of its own; `guard` is
/// the global blast-radius guard, `engine` the default Docker Engine.
pub fn load(
    v: &Value,
    path: &str,
    retention: Option<Duration>,
    guard: &BlastRadius,
    engine: &Arc<Engine>,
    errs: &mut ConfigErrors,
) -> Option<Target> {
    let Some(map) = v.as_object() else {
        errs.push(
            path,
            format!("expected a mapping, found {}", common::kind_of(v)),
        );
        return None;
    };
    let sections_keys = section_keys();
    let mut common_part = serde_json::Map::new();
    for (key, value) in map {
        if COMMON_KEYS.contains(&key.as_str()) {
            common_part.insert(key.clone(), value.clone());
        } else if let Some((_, why)) = REMOVED_KEYS.iter().find(|(k, _)| k == key) {
            errs.push(common::join(path, key), *why);
        } else if !sections_keys.contains(&key.as_str()) {
            let mut known: Vec<&str> = COMMON_KEYS.to_vec();
            known.extend(&sections_keys);
            errs.push(
                common::join(path, key),
                format!(
                    "unknown field `{key}`, expected one of {}",
                    common::quoted(&known)
                ),
            );
        }
    }
    let sections = Sections::load(map, path, engine, errs);
    let mut f: TargetFile = common::typed(&Value::Object(common_part), path, errs)?;
    f.verify.engine = sections
        .docker
        .as_ref()
        .map_or_else(|| engine.clone(), |d| d.engine.clone());
    if sections.compose.is_some() && !f.verify.engine.is_default() {
        // The Docker CLI that `compose_up` runs reaches the default engine only.
        errs.push(
            common::join(path, "docker.host"),
            format!(
                "names {}, another engine than the default, but compose_up runs the Docker CLI on the default engine: put the compose stack in a target of its own",
                f.verify.engine.address()
            ),
        );
    }
    if f.name.is_empty() {
        errs.push(common::join(path, "name"), "must not be empty");
    }
    if f.max_attempts == 0 {
        errs.push(common::join(path, "max_attempts"), "must be at least 1");
    }
    if f.backoff.is_zero() {
        errs.push(common::join(path, "backoff"), "must be greater than 0s");
    }
    if f.max_backoff < f.backoff
        && !errs.has_any(&[
            &common::join(path, "backoff"),
            &common::join(path, "max_backoff"),
        ])
    {
        errs.push(
            common::join(path, "max_backoff"),
            "must not be shorter than backoff",
        );
    }
    match retention {
        Some(retention) if f.flapping.window > retention => errs.push(
            common::join(path, "flapping.window"),
            format!(
                "must not be longer than global.retention ({}), which deletes the healed incidents it counts",
                humantime::format_duration(retention)
            ),
        ),
        _ => {}
    }
    if !sections_keys.iter().any(|k| map.contains_key(*k)) {
        errs.push(
            path,
            format!(
                "a target needs at least one of {}",
                common::quoted(&sections_keys)
            ),
        );
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
        check_http_url(u, &common::join(path, "verify.url"), errs);
    } else if (f.verify.body_matches.is_some() || f.verify.body_not_matches.is_some())
        && !errs.has(&common::join(path, "verify.url"))
    {
        errs.push(
            common::join(path, "verify"),
            "body_matches and body_not_matches need `url`",
        );
    }
    if f.verify.resolve_within.is_zero() {
        errs.push(
            common::join(path, "verify.resolve_within"),
            "must be greater than 0s",
        );
    }
    if f.verify.interval.is_zero() {
        errs.push(
            common::join(path, "verify.interval"),
            "must be greater than 0s",
        );
    }
    let guard = guard.with(&f.blast_radius);
    guard.check(&common::join(path, "blast_radius"), errs);
    Some(Target {
        guard,
        name: f.name,
        policy: Policy {
            max_attempts: f.max_attempts,
            backoff: f.backoff,
            max_backoff: f.max_backoff,
            flapping: Flapping {
                count: f.flapping.count,
                window: f.flapping.window,
            },
            resolve_within: f.verify.resolve_within,
        },
        timeout: f.timeout,
        verify: f.verify,
        sections,
    })
}
