//! Alertmanager's configuration as the contract reads it: the routing tree, the receivers that
//! send to the remediator, and the inhibition rules. Routing is evaluated as Alertmanager does
//! it (children in order, the first match wins unless it says `continue`), on what is known of
//! an alert's labels; where a label's value is unknown both ways are followed.
//!
//! Replicas of a highly available remediator are told apart by their webhook URLs: one receiver
//! with a webhook per replica, or one receiver per replica reached through `continue: true`
//! routes, are both read as webhooks to replicas.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use stackmedic_common::config as common;

use super::domain::{Labels, Tri};
use crate::matcher::Matcher;

/// Most ways through the routing tree followed for one alert.
const MAX_WAYS: usize = 256;

/// A route of the tree.
#[derive(Debug, Clone)]
pub struct Route {
    /// Where it is (`route.routes[1]`).
    pub path: String,
    receiver: Option<String>,
    matchers: Vec<Matcher>,
    cont: bool,
    mute_time_intervals: Vec<String>,
    active_time_intervals: Vec<String>,
    routes: Vec<Route>,
}

/// A receiver's webhook to the remediator.
#[derive(Debug, Clone)]
pub struct RemediatorWebhook {
    /// Where it is (`receivers[0].webhook_configs[0]`).
    pub path: String,
    /// Its place in the file (receiver, webhook), to name webhooks in the file's order.
    pub order: (usize, usize),
    /// Its URL as Alertmanager sends to it (normalised: `http://127.0.0.1:8791/webhook`); a
    /// replica of the remediator is known by it.
    pub url: String,
    /// Whether resolved alerts are sent.
    pub send_resolved: bool,
    /// Most alerts per notification; 0 is all.
    pub max_alerts: u64,
    /// The credentials it sends.
    pub auth: Auth,
}

/// The credentials a webhook sends, as far as the configuration tells: the scheme and where the
/// secret comes from, never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// For messages: `Bearer credentials from file /run/secrets/token`, `none`.
    pub shown: String,
    /// To compare two webhooks' credentials: the scheme and the secret's source, with a secret
    /// written in the file itself (never shown).
    compared: String,
}

impl Auth {
    /// No credentials.
    #[must_use]
    pub fn none() -> Auth {
        Auth {
            shown: "none".into(),
            compared: String::new(),
        }
    }
}

/// An inhibition rule.
#[derive(Debug, Clone)]
pub struct Inhibition {
    /// Where it is (`inhibit_rules[3]`).
    pub path: String,
    /// Its source matchers.
    pub source: Vec<Matcher>,
    /// Its target matchers.
    pub target: Vec<Matcher>,
    /// Its target matchers as written, for messages.
    pub target_text: String,
    /// The labels whose values source and target must share (`equal`).
    pub equal: Vec<String>,
}

/// The parts of an Alertmanager configuration the contract checks.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file, as given.
    pub file: String,
    /// The routing tree.
    pub route: Route,
    /// Receivers that send to the remediator (a webhook whose URL path ends in `/webhook`),
    /// by name.
    pub remediator: BTreeMap<String, Vec<RemediatorWebhook>>,
    /// The inhibition rules.
    pub inhibitions: Vec<Inhibition>,
}

/// Where an alert ends up on one way through the tree.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The route.
    pub path: String,
    /// Its receiver.
    pub receiver: String,
    /// Its `mute_time_intervals`.
    pub mute: Vec<String>,
    /// Its `active_time_intervals`.
    pub active: Vec<String>,
}

impl Config {
    /// Reads the file.
    ///
    /// # Errors
    /// Every problem found (unreadable file, a malformed matcher), each as a message.
    pub fn read(path: &Path) -> Result<Config, Vec<String>> {
        let file = path.display().to_string();
        let value = common::read_yaml_file(path).map_err(|e| {
            e.problems
                .iter()
                .map(|p| format!("{file}: {p}"))
                .collect::<Vec<_>>()
        })?;
        let mut errors = Vec::new();
        let route = match value.get("route") {
            Some(r) => route(r, "route", &mut errors),
            None => {
                errors.push(format!("{file}: no `route`"));
                None
            }
        };
        let mut remediator = BTreeMap::new();
        for (i, r) in value
            .get("receivers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(name) = r.get("name").and_then(Value::as_str) else {
                continue;
            };
            let hooks: Vec<RemediatorWebhook> = r
                .get("webhook_configs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
                .filter_map(|(j, w)| {
                    let url = w
                        .get("url")
                        .and_then(Value::as_str)
                        .and_then(|u| url::Url::parse(u).ok())
                        .filter(|u| u.path().trim_end_matches('/').ends_with("/webhook"))?;
                    Some(RemediatorWebhook {
                        path: format!("receivers[{i}].webhook_configs[{j}]"),
                        order: (i, j),
                        url: url.as_str().trim_end_matches('/').to_string(),
                        send_resolved: w
                            .get("send_resolved")
                            .and_then(Value::as_bool)
                            .unwrap_or(true),
                        max_alerts: w.get("max_alerts").and_then(Value::as_u64).unwrap_or(0),
                        auth: auth(w.get("http_config")),
                    })
                })
                .collect();
            if !hooks.is_empty() {
                remediator.insert(name.to_string(), hooks);
            }
        }
        let mut inhibitions = Vec::new();
        for (i, rule) in value
            .get("inhibit_rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let path = format!("inhibit_rules[{i}]");
            let (source, _) = matchers(
                rule,
                ["source_matchers", "source_match", "source_match_re"],
                &path,
                &mut errors,
            );
            let (target, text) = matchers(
                rule,
                ["target_matchers", "target_match", "target_match_re"],
                &path,
                &mut errors,
            );
            let equal = rule
                .get("equal")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|l| l.as_str().map(str::to_string))
                .collect();
            inhibitions.push(Inhibition {
                path,
                source,
                target,
                target_text: text,
                equal,
            });
        }
        match route {
            Some(route) if errors.is_empty() => Ok(Config {
                file,
                route,
                remediator,
                inhibitions,
            }),
            _ => Err(errors
                .into_iter()
                .map(|e| {
                    if e.starts_with(&file) {
                        e
                    } else {
                        format!("{file}: {e}")
                    }
                })
                .collect()),
        }
    }

    /// The ways an alert with `labels` can take through the routing tree, each as the routes
    /// it ends at.
    #[must_use]
    pub fn ways(&self, labels: &Labels) -> Vec<Vec<Leaf>> {
        walk(&self.route, labels, "")
    }

    /// The webhooks to the remediator of the receivers the routing tree names (a receiver no
    /// route names is never sent anything), in the file's order: one per replica of the
    /// remediator and more where a replica is sent to twice.
    #[must_use]
    pub fn routed_webhooks(&self) -> Vec<&RemediatorWebhook> {
        fn names<'a>(route: &'a Route, out: &mut Vec<&'a str>) {
            out.extend(route.receiver.as_deref());
            for child in &route.routes {
                names(child, out);
            }
        }
        let mut receivers = Vec::new();
        names(&self.route, &mut receivers);
        let mut hooks: Vec<&RemediatorWebhook> = self
            .remediator
            .iter()
            .filter(|(name, _)| receivers.contains(&name.as_str()))
            .flat_map(|(_, hooks)| hooks)
            .collect();
        hooks.sort_by_key(|h| h.order);
        hooks
    }

    /// The webhooks to the remediator an alert taking `way` is sent to, in the file's order.
    #[must_use]
    pub fn webhooks_on(&self, way: &[Leaf]) -> Vec<&RemediatorWebhook> {
        let mut hooks: Vec<&RemediatorWebhook> = way
            .iter()
            .filter_map(|l| self.remediator.get(&l.receiver))
            .flatten()
            .collect();
        hooks.sort_by_key(|h| h.order);
        hooks.dedup_by_key(|h| h.order);
        hooks
    }
}

/// The credentials of a webhook's `http_config`: `authorization` (type Bearer unless said),
/// `basic_auth`, the older `bearer_token`/`bearer_token_file`, or `oauth2`.
fn auth(http: Option<&Value>) -> Auth {
    let Some(http) = http else {
        return Auth::none();
    };
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    // Where a secret comes from: a file (shown), or the configuration itself (compared only).
    let source = |v: &Value, inline: &str, file: &str| -> (String, String) {
        match (text(v, file), text(v, inline)) {
            (Some(f), _) => (format!("from file {f}"), format!("file {f}")),
            (None, Some(secret)) => ("written in the file".into(), format!("inline {secret}")),
            (None, None) => ("without a secret".into(), "none".into()),
        }
    };
    if let Some(a) = http.get("authorization") {
        let scheme = text(a, "type").unwrap_or_else(|| "Bearer".into());
        let (shown, compared) = source(a, "credentials", "credentials_file");
        return Auth {
            shown: format!("{scheme} credentials {shown}"),
            compared: format!("{}: {compared}", scheme.to_ascii_lowercase()),
        };
    }
    if let Some(b) = http.get("basic_auth") {
        let user = text(b, "username").unwrap_or_default();
        let (shown, compared) = source(b, "password", "password_file");
        return Auth {
            shown: format!("basic auth as {user:?}, password {shown}"),
            compared: format!("basic {user:?}: {compared}"),
        };
    }
    if http.get("bearer_token").is_some() || http.get("bearer_token_file").is_some() {
        let (shown, compared) = source(http, "bearer_token", "bearer_token_file");
        return Auth {
            shown: format!("Bearer credentials {shown}"),
            compared: format!("bearer: {compared}"),
        };
    }
    if let Some(o) = http.get("oauth2") {
        let client = text(o, "client_id").unwrap_or_default();
        let token_url = text(o, "token_url").unwrap_or_default();
        return Auth {
            shown: format!("OAuth 2.0 as client {client:?} of {token_url}"),
            compared: format!("oauth2 {client:?} {token_url}"),
        };
    }
    Auth::none()
}

fn route(v: &Value, path: &str, errors: &mut Vec<String>) -> Option<Route> {
    let (matchers, _) = matchers(v, ["matchers", "match", "match_re"], path, errors);
    let strings = |key: &str| -> Vec<String> {
        v.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let routes = v
        .get("routes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, c)| route(c, &format!("{path}.routes[{i}]"), errors))
        .collect();
    Some(Route {
        path: path.to_string(),
        receiver: v
            .get("receiver")
            .and_then(Value::as_str)
            .map(str::to_string),
        matchers,
        cont: v.get("continue").and_then(Value::as_bool).unwrap_or(false),
        mute_time_intervals: strings("mute_time_intervals"),
        active_time_intervals: strings("active_time_intervals"),
        routes,
    })
}

/// The matchers of `keys` (a list of matcher strings, a map of equalities, a map of regular
/// expressions), and how they are written.
fn matchers(
    v: &Value,
    [list, equal, regex]: [&str; 3],
    path: &str,
    errors: &mut Vec<String>,
) -> (Vec<Matcher>, String) {
    let mut out = Vec::new();
    let mut texts = Vec::new();
    for line in v.get(list).and_then(Value::as_array).into_iter().flatten() {
        let Some(line) = line.as_str() else { continue };
        for m in split_matchers(line) {
            texts.push(m.clone());
            match Matcher::parse(&m) {
                Ok(m) => out.push(m),
                Err(e) => errors.push(format!("{path}.{list}: {e}")),
            }
        }
    }
    for (key, op) in [(equal, "="), (regex, "=~")] {
        for (name, value) in v.get(key).and_then(Value::as_object).into_iter().flatten() {
            let value = value.as_str().unwrap_or_default();
            let text = format!("{name}{op}{}", Value::String(value.to_string()));
            texts.push(text.clone());
            match Matcher::parse(&text) {
                Ok(m) => out.push(m),
                Err(e) => errors.push(format!("{path}.{key}: {e}")),
            }
        }
    }
    (out, texts.join(", "))
}

/// One line of Alertmanager's `matchers` may hold several, as `{a="x", b=~"y"}` or
/// `a="x", b=~"y"`.
fn split_matchers(line: &str) -> Vec<String> {
    let s = line.trim();
    let s = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(s);
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    out.push(current);
    out.into_iter()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

fn walk(node: &Route, labels: &Labels, parent_receiver: &str) -> Vec<Vec<Leaf>> {
    let receiver = node.receiver.as_deref().unwrap_or(parent_receiver);
    // Each way: the leaves reached so far, and whether a match without `continue` ended it.
    let mut ways: Vec<(Vec<Leaf>, bool)> = vec![(Vec::new(), false)];
    for child in &node.routes {
        let t = labels.matches_all(&child.matchers);
        if t == Tri::No {
            continue;
        }
        let below = walk(child, labels, receiver);
        let mut next = Vec::new();
        for (leaves, stopped) in ways {
            if stopped {
                next.push((leaves, true));
                continue;
            }
            if t == Tri::Maybe {
                next.push((leaves.clone(), false));
            }
            for b in &below {
                let mut l = leaves.clone();
                l.extend(b.iter().cloned());
                next.push((l, !child.cont));
            }
        }
        next.truncate(MAX_WAYS);
        ways = next;
    }
    ways.into_iter()
        .map(|(leaves, _)| {
            if leaves.is_empty() {
                vec![Leaf {
                    path: node.path.clone(),
                    receiver: receiver.to_string(),
                    mute: node.mute_time_intervals.clone(),
                    active: node.active_time_intervals.clone(),
                }]
            } else {
                leaves
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_lines_with_several_matchers() {
        assert_eq!(
            split_matchers(r#"{alertname="A", severity=~"page|ticket"}"#),
            [r#"alertname="A""#, r#"severity=~"page|ticket""#]
        );
        assert_eq!(split_matchers(r#"a="x,y""#), [r#"a="x,y""#]);
    }

    #[test]
    fn webhooks_of_routed_receivers_with_their_urls_and_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("am.yml");
        std::fs::write(
            &path,
            "route:\n  receiver: a\n  routes: [{receiver: b, continue: true}]\n\
             receivers:\n\
             \x20 - name: unused\n    webhook_configs: [{url: 'http://127.0.0.1:8793/webhook'}]\n\
             \x20 - name: a\n    webhook_configs:\n\
             \x20     - url: 'http://127.0.0.1:8791/webhook/'\n\
             \x20       http_config: {authorization: {credentials: s3cret}}\n\
             \x20     - url: 'http://127.0.0.1:9095/page'\n\
             \x20 - name: b\n    webhook_configs:\n\
             \x20     - url: 'http://127.0.0.1:80/api/webhook'\n\
             \x20       send_resolved: false\n\
             \x20       http_config: {basic_auth: {username: am, password_file: /p}}\n",
        )
        .unwrap();
        let config = Config::read(&path).unwrap();
        let hooks: Vec<(&str, &str, bool, &str)> = config
            .routed_webhooks()
            .iter()
            .map(|h| {
                (
                    h.path.as_str(),
                    h.url.as_str(),
                    h.send_resolved,
                    h.auth.shown.as_str(),
                )
            })
            .collect();
        assert_eq!(
            hooks,
            [
                (
                    "receivers[1].webhook_configs[0]",
                    "http://127.0.0.1:8791/webhook",
                    true,
                    "Bearer credentials written in the file"
                ),
                (
                    "receivers[2].webhook_configs[0]",
                    "http://127.0.0.1/api/webhook",
                    false,
                    "basic auth as \"am\", password from file /p"
                ),
            ]
        );
        // An inline secret is compared, never shown.
        let a = &config.remediator["a"][0].auth;
        assert!(!a.shown.contains("s3cret"));
        assert_ne!(a, &Auth::none());
    }
}
