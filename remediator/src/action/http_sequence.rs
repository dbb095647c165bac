//! `http_sequence`: ordered admin-API calls with delays and expected statuses. Base URL and
//! credentials come from the target; paths from the rule; placeholder values from labels only
//! when allow-listed, and then percent-encoded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use stackmedic_common::config::{self as common, duration, ConfigErrors};
use stackmedic_common::errors::error_chain;
use url::Url;

use super::{pause, ActionError, AllowList, Context, Selection};
use crate::credentials::{BasicAuthFile, Credentials, CredentialsFile};

/// The target section key.
pub const SECTION: &str = "http";

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

impl HttpTarget {
    /// Parses the section at `path`, reading its secrets.
    pub fn load(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<Self> {
        let f: HttpTargetFile = common::typed(v, path, errs)?;
        check_http_url(&f.base_url, &common::join(path, "base_url"), errs);
        let credentials = Credentials::load(
            CredentialsFile {
                bearer_token_file: f.bearer_token_file,
                bearer_token_env: f.bearer_token_env,
                basic_auth: f.basic_auth,
            },
            path,
            errs,
        );
        Some(HttpTarget {
            base_url: f.base_url,
            credentials,
        })
    }
}

/// Records a problem unless `u` is an http(s) URL with a host.
pub fn check_http_url(u: &Url, path: &str, errs: &mut ConfigErrors) {
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        errs.push(path, format!("{u} is not an http(s) URL with a host"));
    }
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

/// One call (`rules[].steps[]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// HTTP method, checked by [`RuleParams::validate`].
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
    /// Time this request may take, instead of the client's 30 s (a model pull answers when
    /// the download is done). The target's `timeout` still bounds the whole sequence.
    #[serde(default, with = "duration::option")]
    pub timeout: Option<Duration>,
}

fn default_method() -> String {
    "POST".into()
}

/// The rule keys of `http_sequence`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleParams {
    /// Path parameters, each chosen by a label among allowed values.
    #[serde(default)]
    pub params: BTreeMap<String, Param>,
    /// The calls, in order.
    #[serde(default)]
    pub steps: Vec<Step>,
}

impl RuleParams {
    /// Checks the steps and parameters, recording problems under the rule's `path`.
    pub fn validate(&self, path: &str, errs: &mut ConfigErrors) {
        // Keys with a problem of their own are at their defaults here (reported already).
        if self.steps.is_empty() && !errs.has(&common::join(path, "steps")) {
            errs.push(
                common::join(path, "steps"),
                "an http_sequence needs at least one step",
            );
        }
        for (name, p) in &self.params {
            if p.allowed.is_empty() && !errs.has(&format!("{path}.params.{name}.allowed")) {
                errs.push(
                    format!("{path}.params.{name}.allowed"),
                    "list the values the label may take",
                );
            }
        }
        for (i, s) in self.steps.iter().enumerate() {
            if s.timeout.is_some_and(|t| t.is_zero()) {
                errs.push(
                    format!("{path}.steps[{i}].timeout"),
                    "must be greater than 0s",
                );
            }
            if http::Method::from_bytes(s.method.as_bytes()).is_err() {
                errs.push(
                    format!("{path}.steps[{i}].method"),
                    format!("invalid method {:?}", s.method),
                );
            }
            let sp = format!("{path}.steps[{i}].path");
            if !s.path.starts_with('/') || s.path.contains("..") || s.path.contains("://") {
                errs.push(
                    sp.clone(),
                    "must start with `/` and contain neither `..` nor a scheme",
                );
            }
            for placeholder in placeholders(&s.path) {
                if !self.params.contains_key(placeholder)
                    && !errs.has(&format!("{path}.params.{placeholder}"))
                    && !errs.has(&format!("{path}.params"))
                {
                    errs.push(
                        sp.clone(),
                        format!("placeholder {{{placeholder}}} is not declared in `params`"),
                    );
                }
            }
        }
    }
}

/// The `{name}` placeholders of a step path.
pub fn placeholders(path: &str) -> impl Iterator<Item = &str> {
    path.split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(name, _)| name))
}

/// An `http_sequence` of a rule on one target.
#[derive(Debug, Clone)]
pub struct Sequence {
    target: Arc<HttpTarget>,
    params: BTreeMap<String, Param>,
    steps: Vec<(http::Method, Step)>,
}

impl Sequence {
    /// The sequence of a rule with validated `params` on the section `target`.
    #[must_use]
    pub fn bind(target: Arc<HttpTarget>, params: &RuleParams) -> Self {
        let steps = params
            .steps
            .iter()
            .map(|s| {
                // Validation rejected any other method; a configuration with one never loads.
                let method =
                    http::Method::from_bytes(s.method.as_bytes()).unwrap_or(http::Method::POST);
                (method, s.clone())
            })
            .collect();
        Self {
            target,
            params: params.params.clone(),
            steps,
        }
    }

    /// Every selection the parameters' allowed values permit (their product).
    pub(super) fn selections(&self) -> Vec<Selection> {
        let mut out = vec![Selection::default()];
        for (name, p) in &self.params {
            out = out
                .into_iter()
                .flat_map(|s| {
                    p.allowed.iter().map(move |v| {
                        let mut s = s.clone();
                        s.params.insert(name.clone(), v.clone());
                        s
                    })
                })
                .collect();
        }
        out
    }

    /// One allow-list per path parameter.
    pub(super) fn allow_lists(&self) -> Vec<AllowList> {
        self.params
            .iter()
            .map(|(name, p)| AllowList {
                key: format!("params.{name}.allowed"),
                label: p.label.clone(),
                values: p.allowed.clone(),
            })
            .collect()
    }

    pub(super) fn select(&self, labels: &BTreeMap<String, String>) -> Result<Selection, String> {
        let mut selection = Selection::default();
        for (name, p) in &self.params {
            let v = labels.get(&p.label).cloned().unwrap_or_default();
            if !p.allowed.contains(&v) {
                return Err(format!(
                    "label {}={v:?} is not an allowed value of {{{name}}}",
                    p.label
                ));
            }
            selection.params.insert(name.clone(), v);
        }
        Ok(selection)
    }

    /// Runs the steps in order, stopping at the first unexpected status.
    pub(super) async fn run(
        &self,
        cx: &Context<'_>,
        selection: &Selection,
    ) -> Result<String, ActionError> {
        let mut done = Vec::new();
        for (i, (method, step)) in self.steps.iter().enumerate() {
            let path = fill(&step.path, &selection.params).map_err(ActionError::Denied)?;
            let url = join_url(&self.target.base_url, &path).map_err(ActionError::Denied)?;
            let method = method.clone();
            let mut req = self
                .target
                .credentials
                .apply(cx.http.request(method.clone(), url));
            if let Some(b) = &step.body {
                req = req.json(b);
            }
            if let Some(t) = step.timeout {
                req = req.timeout(t);
            }
            let started = Instant::now();
            let resp = req.send().await.map_err(|e| {
                // With its causes: "error sending request" alone does not say that the
                // connection was refused or timed out.
                ActionError::Failed(format!("step {i} {method} {path}: {}", error_chain(&e)))
            })?;
            let status = resp.status().as_u16();
            let ok = if step.expect_status.is_empty() {
                (200..300).contains(&status)
            } else {
                step.expect_status.contains(&status)
            };
            if !ok {
                return Err(ActionError::Failed(format!(
                    "step {i} {method} {path}: unexpected status {status} after {} ms (done before: {})",
                    started.elapsed().as_millis(),
                    if done.is_empty() { "nothing".to_string() } else { done.join(", ") }
                )));
            }
            done.push(format!("{method} {path} -> {status}"));
            pause(step.delay_after).await;
        }
        Ok(done.join(", "))
    }
}

/// Replaces `{name}` placeholders with percent-encoded allow-listed values.
fn fill(template: &str, params: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let j = after
            .find('}')
            .ok_or_else(|| format!("unclosed placeholder in {template:?}"))?;
        let name = &after[..j];
        let value = params
            .get(name)
            .ok_or_else(|| format!("no value for placeholder {{{name}}}"))?;
        out.push_str(&encode_segment(value));
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so a value stays one path
/// segment whatever it holds.
#[must_use]
pub fn encode_segment(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    if out == "." || out == ".." {
        return out.replace('.', "%2E");
    }
    out
}

fn join_url(base: &Url, path: &str) -> Result<Url, String> {
    let mut u = base.clone();
    let prefix = base.path().trim_end_matches('/');
    let (p, q) = path
        .split_once('?')
        .map_or((path, None), |(p, q)| (p, Some(q)));
    u.set_path(&format!("{prefix}{p}"));
    u.set_query(q);
    if u.host() != base.host() || u.port_or_known_default() != base.port_or_known_default() {
        return Err("step path would leave the target's base URL".into());
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_encoded() {
        let mut p = BTreeMap::new();
        p.insert("s".to_string(), "../a b;c/d".to_string());
        assert_eq!(
            fill("/api/{s}/restart", &p).unwrap(),
            "/api/..%2Fa%20b%3Bc%2Fd/restart"
        );
        p.insert("s".to_string(), "..".to_string());
        assert_eq!(fill("/api/{s}", &p).unwrap(), "/api/%2E%2E");
        let base = Url::parse("http://127.0.0.1:8/admin/").unwrap();
        assert_eq!(
            join_url(&base, "/api/x?y=1").unwrap().as_str(),
            "http://127.0.0.1:8/admin/api/x?y=1"
        );
    }
}
