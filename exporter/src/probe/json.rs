//! JSON admin APIs (the camera/PLC app: `GET /api/monitor/streams`, `GET /api/admin/logs?type=…`,
//! `GET /api/system/status`, `GET /api/monitor/slo`): values picked by JSON pointer from the
//! document, or from every element of an array with a label taken from a field of each element
//! (the stream or camera name), and counts of elements that match conditions (restart errors of
//! the last 15 minutes).
//!
//! Label values stay bounded: `field` and `count` are configured names, and `element` values
//! come from at most `max_elements` elements, cut to 64 characters.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use stackmedic_common::config::{duration, join, read_secret};
use stackmedic_common::reload::unix_now;
use stackmedic_common::ConfigErrors;
use url::Url;

use super::fetch::{self, TlsOptions};
use super::{ProbeError, ProblemKind, Problems, Reason, RunContext, Shared};
use crate::metrics::{Family, Samples};
use crate::support::truncate;

static VALUE: Family = Family::gauge(
    "stackmedic_json_value",
    "A value of the document, by the configured field name.",
);
static ELEMENTS: Family = Family::gauge(
    "stackmedic_json_elements",
    "Elements of the array at elements.pointer (all of them, also those beyond max_elements).",
);
static ELEMENT_VALUE: Family = Family::gauge(
    "stackmedic_json_element_value",
    "A value of one array element, by field name and the element's label.",
);
static MATCHING: Family = Family::gauge(
    "stackmedic_json_elements_matching",
    "Elements of the array that meet every condition of the named count.",
);

/// Longest `element` label value.
const MAX_LABEL: usize = 64;

fn default_max_elements() -> usize {
    50
}
fn default_max_body() -> u64 {
    fetch::DEFAULT_MAX_BODY
}

/// Settings of a `json` probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonConfig {
    /// The endpoint, e.g. `http://127.0.0.1:8000/api/monitor/streams`.
    pub url: Url,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A file holding a bearer token for `Authorization`, read at every run.
    pub bearer_token_file: Option<PathBuf>,
    /// An environment variable holding a bearer token, read at every run.
    pub bearer_token_env: Option<String>,
    /// Accepted status codes; empty accepts any 2xx.
    #[serde(default)]
    pub valid_status_codes: Vec<u16>,
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsOptions,
    /// Largest body read.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Values of the document (an object).
    #[serde(default)]
    pub values: Vec<ValueSpec>,
    /// An array of the document whose elements are read one by one.
    pub elements: Option<ElementsSpec>,
}

/// One value picked by a JSON pointer. A number is exported as it is, a boolean as 1 or 0, a
/// string holding a number as that number, null as nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueSpec {
    /// The `field` label value.
    pub field: String,
    /// Where the value is (relative to the element for element values).
    pub pointer: String,
    /// 1 when the value equals this (or one of these), else 0.
    pub equals: Option<OneOrMany>,
    /// The value is a point in time (RFC 3339, or Unix seconds): exported as Unix seconds.
    #[serde(default)]
    pub timestamp: bool,
    /// A missing field exports nothing and is no problem (elements of several kinds, such as
    /// a Ring camera's WebRTC state that other streams lack).
    #[serde(default)]
    pub optional: bool,
}

/// A scalar or a list of scalars.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A list.
    Many(Vec<Value>),
    /// One value.
    One(Value),
}

impl OneOrMany {
    fn contains(&self, v: &Value) -> bool {
        match self {
            OneOrMany::Many(list) => list.iter().any(|x| same(x, v)),
            OneOrMany::One(x) => same(x, v),
        }
    }

    fn items(&self) -> Vec<&Value> {
        match self {
            OneOrMany::Many(list) => list.iter().collect(),
            OneOrMany::One(x) => vec![x],
        }
    }
}

/// JSON equality, except that numbers compare by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// The elements of an array.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElementsSpec {
    /// The array; an empty pointer is the document itself.
    pub pointer: String,
    /// The field of each element that becomes its `element` label (such as `/name`).
    pub label: Option<String>,
    /// Most elements exported with their label; all are counted.
    #[serde(default = "default_max_elements")]
    pub max_elements: usize,
    /// Values of each element, relative to it.
    #[serde(default)]
    pub values: Vec<ValueSpec>,
    /// Counts of elements matching conditions.
    #[serde(default)]
    pub counts: Vec<CountSpec>,
}

/// A named count of elements that meet every condition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountSpec {
    /// The `count` label value.
    pub name: String,
    /// All must hold; none counts every element.
    #[serde(default, rename = "where")]
    pub conditions: Vec<Condition>,
}

/// A condition on one field of an element.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The field, relative to the element.
    pub pointer: String,
    /// The field equals this (or one of these).
    pub equals: Option<OneOrMany>,
    /// The field equals none of these.
    pub not_equals: Option<OneOrMany>,
    /// The field is a point in time no longer ago than this.
    #[serde(default, with = "duration::option")]
    pub within: Option<Duration>,
    /// The field is a point in time longer ago than this.
    #[serde(default, with = "duration::option")]
    pub older_than: Option<Duration>,
}

fn validate_pointer(p: &str, path: &str, allow_empty: bool, errs: &mut ConfigErrors) {
    if (p.is_empty() && !allow_empty) || (!p.is_empty() && !p.starts_with('/')) {
        errs.push(
            path,
            format!("{p:?} is not a JSON pointer (it must start with `/`)"),
        );
    }
}

fn validate_name(name: &str, path: &str, errs: &mut ConfigErrors) {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
    if !ok {
        errs.push(
            path,
            "must be 1 to 64 characters of letters, digits, `_`, `-`, `.` or `:`",
        );
    }
}

fn validate_scalars(v: &OneOrMany, path: &str, errs: &mut ConfigErrors) {
    if v.items().iter().any(|x| x.is_array() || x.is_object()) {
        errs.push(
            path,
            "must be a string, number, boolean or null, or a list of them",
        );
    }
}

fn validate_values(values: &[ValueSpec], path: &str, errs: &mut ConfigErrors) {
    let mut seen = BTreeSet::new();
    for (i, v) in values.iter().enumerate() {
        let at = format!("{path}[{i}]");
        validate_name(&v.field, &join(&at, "field"), errs);
        if !seen.insert(v.field.as_str()) {
            errs.push(join(&at, "field"), format!("duplicate field {:?}", v.field));
        }
        validate_pointer(&v.pointer, &join(&at, "pointer"), false, errs);
        if let Some(e) = &v.equals {
            validate_scalars(e, &join(&at, "equals"), errs);
            if v.timestamp {
                errs.push(at, "`equals` and `timestamp` exclude each other");
            }
        }
    }
}

impl JsonConfig {
    /// Checks URL, headers, token source, pointers and names; reads the CA file.
    pub fn validate(&mut self, path: &str, errs: &mut ConfigErrors) {
        fetch::validate_url(&self.url, &join(path, "url"), errs);
        self.tls.load(&join(path, "tls"), errs);
        fetch::validate_headers(&self.headers, &join(path, "headers"), errs);
        fetch::validate_statuses(
            &self.valid_status_codes,
            &join(path, "valid_status_codes"),
            errs,
        );
        match (&self.bearer_token_file, &self.bearer_token_env) {
            (Some(_), Some(_)) => errs.push(
                path,
                "bearer_token_file and bearer_token_env exclude each other",
            ),
            (None, None) => {}
            (file, env) => {
                if let Err(e) = read_secret(file.as_deref(), env.as_deref()) {
                    let key = if file.is_some() {
                        "bearer_token_file"
                    } else {
                        "bearer_token_env"
                    };
                    errs.push(join(path, key), e);
                }
            }
        }
        validate_values(&self.values, &join(path, "values"), errs);
        if let Some(el) = &self.elements {
            let ep = join(path, "elements");
            validate_pointer(&el.pointer, &join(&ep, "pointer"), true, errs);
            if let Some(l) = &el.label {
                validate_pointer(l, &join(&ep, "label"), false, errs);
            }
            if el.max_elements == 0 || el.max_elements > 1000 {
                errs.push(join(&ep, "max_elements"), "must be 1 to 1000");
            }
            if el.label.is_none() && !el.values.is_empty() && !errs.has(&join(&ep, "label")) {
                errs.push(
                    join(&ep, "label"),
                    "element values need a label pointer to tell the elements apart",
                );
            }
            validate_values(&el.values, &join(&ep, "values"), errs);
            let mut names = BTreeSet::new();
            for (i, c) in el.counts.iter().enumerate() {
                let at = format!("{ep}.counts[{i}]");
                validate_name(&c.name, &join(&at, "name"), errs);
                if !names.insert(c.name.as_str()) {
                    errs.push(join(&at, "name"), format!("duplicate count {:?}", c.name));
                }
                for (j, cond) in c.conditions.iter().enumerate() {
                    let cp = format!("{at}.where[{j}]");
                    validate_pointer(&cond.pointer, &join(&cp, "pointer"), false, errs);
                    let tests = [
                        cond.equals.is_some(),
                        cond.not_equals.is_some(),
                        cond.within.is_some(),
                        cond.older_than.is_some(),
                    ];
                    // A test with a problem of its own is not there now; its count is not
                    // checked again.
                    if tests.iter().filter(|t| **t).count() != 1 && !errs.has(&cp) {
                        errs.push(
                            cp.clone(),
                            "needs exactly one of `equals`, `not_equals`, `within`, `older_than`",
                        );
                    }
                    for (key, v) in [("equals", &cond.equals), ("not_equals", &cond.not_equals)] {
                        if let Some(v) = v {
                            validate_scalars(v, &join(&cp, key), errs);
                        }
                    }
                }
            }
        } else if self.values.is_empty()
            && !errs.has_any(&[&join(path, "values"), &join(path, "elements")])
        {
            errs.push(path, "nothing to read: add `values`, `elements` or both");
        }
    }
}

/// A `json` probe.
pub struct JsonProbe {
    cfg: JsonConfig,
    client: reqwest::Client,
    headers: HeaderMap,
}

/// What went wrong in one run, most important first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Problem {
    /// A configured field is missing or of the wrong type.
    Field,
    /// An element has no usable label.
    Label,
}

impl ProblemKind for Problem {
    fn reason(self) -> Reason {
        Reason::Parse
    }
    fn heading(self) -> &'static str {
        match self {
            Problem::Field => "unusable field",
            Problem::Label => "element without a label",
        }
    }
}

impl JsonProbe {
    /// Builds the probe.
    ///
    /// # Errors
    /// When its HTTP client cannot be built.
    pub fn new(cfg: JsonConfig, shared: &Shared) -> Result<Self, String> {
        let client = shared.http.get(&cfg.tls, true)?;
        let headers = fetch::header_map(&cfg.headers);
        Ok(Self {
            cfg,
            client,
            headers,
        })
    }

    /// Fetches the document and exports what the configuration picks from it.
    ///
    /// # Errors
    /// Transport reasons, `http_status`, `parse` (not JSON, a field missing or of the wrong
    /// type, an element without a label), `other` when the token cannot be read.
    pub async fn run(&self, cx: &RunContext, out: &mut Samples) -> Result<(), ProbeError> {
        let mut req = self
            .client
            .get(self.cfg.url.clone())
            .headers(self.headers.clone());
        if self.cfg.bearer_token_file.is_some() || self.cfg.bearer_token_env.is_some() {
            let token = read_secret(
                self.cfg.bearer_token_file.as_deref(),
                self.cfg.bearer_token_env.as_deref(),
            )
            .map_err(|e| ProbeError::new(Reason::Other, format!("bearer token: {e}")))?;
            req = req.bearer_auth(token);
        }
        let resp = match fetch::send(cx, req, self.cfg.max_body_bytes).await {
            Ok(r) => r,
            Err(e) => {
                out.push(&super::readiness::STATUS_CODE, &[], 0.0);
                return Err(e);
            }
        };
        out.push(
            &super::readiness::STATUS_CODE,
            &[],
            f64::from(resp.status.as_u16()),
        );
        fetch::expect_status(resp.status, &self.cfg.valid_status_codes)?;
        let doc: Value = serde_json::from_slice(&resp.body)
            .map_err(|e| ProbeError::new(Reason::Parse, format!("body is not JSON: {e}")))?;
        let mut problems = Problems::default();
        export(&self.cfg, &doc, unix_now(), out, &mut problems);
        problems.into_result()
    }
}

/// Exports the configured values of `doc`; `now` dates the time conditions.
fn export(
    cfg: &JsonConfig,
    doc: &Value,
    now: f64,
    out: &mut Samples,
    problems: &mut Problems<Problem>,
) {
    for v in &cfg.values {
        match read(doc, v) {
            Ok(Some(x)) => out.push(&VALUE, &[("field", &v.field)], x),
            Ok(None) => {}
            Err(e) => problems.push(Problem::Field, e),
        }
    }
    let Some(el) = &cfg.elements else {
        return;
    };
    let items = match doc.pointer(&el.pointer) {
        Some(Value::Array(items)) => items,
        Some(other) => {
            problems.push(
                Problem::Field,
                format!(
                    "{:?} is not an array: {}",
                    el.pointer,
                    truncate(&other.to_string(), 40)
                ),
            );
            return;
        }
        None => {
            problems.push(Problem::Field, format!("no array at {:?}", el.pointer));
            return;
        }
    };
    out.push(&ELEMENTS, &[], items.len() as f64);
    for c in &el.counts {
        let n = items
            .iter()
            .filter(|item| c.conditions.iter().all(|cond| holds(item, cond, now)))
            .count();
        out.push(&MATCHING, &[("count", &c.name)], n as f64);
    }
    let Some(label_ptr) = &el.label else {
        return;
    };
    let mut labels = BTreeSet::new();
    for (i, item) in items.iter().take(el.max_elements).enumerate() {
        let label = match item.pointer(label_ptr) {
            Some(Value::String(s)) if !s.is_empty() => truncate(s, MAX_LABEL),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                problems.push(Problem::Label, format!("element {i}"));
                continue;
            }
        };
        // Two elements with one label would give two series of one identity: the first wins.
        if !labels.insert(label.clone()) {
            problems.push(
                Problem::Label,
                format!("element {i}: duplicate label {label:?}"),
            );
            continue;
        }
        for v in &el.values {
            match read(item, v) {
                Ok(Some(x)) => {
                    out.push(
                        &ELEMENT_VALUE,
                        &[("field", &v.field), ("element", &label)],
                        x,
                    );
                }
                Ok(None) => {}
                Err(e) => problems.push(Problem::Field, format!("{label}: {e}")),
            }
        }
    }
}

/// The number a value spec reads from `doc`; `None` for a JSON null (no value, no problem).
fn read(doc: &Value, spec: &ValueSpec) -> Result<Option<f64>, String> {
    let Some(v) = doc.pointer(&spec.pointer) else {
        if spec.optional {
            return Ok(None);
        }
        return Err(format!("no field at {:?}", spec.pointer));
    };
    if let Some(e) = &spec.equals {
        return Ok(Some(if e.contains(v) { 1.0 } else { 0.0 }));
    }
    if v.is_null() {
        return Ok(None);
    }
    if spec.timestamp {
        return timestamp(v)
            .map(Some)
            .ok_or_else(|| format!("{:?} is not a point in time", spec.pointer));
    }
    number(v).map(Some).ok_or_else(|| {
        format!(
            "{:?} is not a number or boolean: {}",
            spec.pointer,
            truncate(&v.to_string(), 40)
        )
    })
}

/// A number, a boolean (1 or 0), or a string holding a number.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    }
}

/// Unix seconds of an RFC 3339 string (`2026-11-28T10:00:00Z`) or of a number (seconds, or
/// milliseconds when it is too large to be seconds).
fn timestamp(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => {
            let x = n.as_f64()?;
            // Seconds reach 1e11 only in the year 5138; larger numbers are milliseconds.
            Some(if x > 1e11 { x / 1000.0 } else { x })
        }
        Value::String(s) => {
            let t = humantime::parse_rfc3339_weak(s.trim()).ok()?;
            match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => Some(d.as_secs_f64()),
                Err(e) => Some(-e.duration().as_secs_f64()),
            }
        }
        _ => None,
    }
}

fn holds(item: &Value, cond: &Condition, now: f64) -> bool {
    let Some(v) = item.pointer(&cond.pointer) else {
        return false;
    };
    if let Some(e) = &cond.equals {
        return e.contains(v);
    }
    if let Some(e) = &cond.not_equals {
        return !e.contains(v);
    }
    let Some(t) = timestamp(v) else {
        return false;
    };
    if let Some(d) = cond.within {
        return now - t <= d.as_secs_f64();
    }
    if let Some(d) = cond.older_than {
        return now - t > d.as_secs_f64();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use stackmedic_common::config::{parse_yaml, typed};

    fn config(yaml: &str) -> Result<JsonConfig, String> {
        let v = parse_yaml(yaml).unwrap();
        let mut errs = ConfigErrors::default();
        let mut c = typed::<JsonConfig>(&v, "probes[0].json", &mut errs);
        if let Some(c) = &mut c {
            c.validate("probes[0].json", &mut errs);
        }
        errs.into_result(()).map_err(|e| e.to_string())?;
        Ok(c.unwrap())
    }

    fn run(cfg: &JsonConfig, doc: Value, now: f64) -> (Vec<(String, Vec<String>, f64)>, String) {
        let mut out = Samples::default();
        let mut problems = Problems::default();
        export(cfg, &doc, now, &mut out, &mut problems);
        let samples = out
            .0
            .iter()
            .map(|s| {
                (
                    s.family.name.to_string(),
                    s.labels.iter().map(|(_, v)| v.clone()).collect(),
                    s.value,
                )
            })
            .collect();
        let err = problems
            .into_result()
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        (samples, err)
    }

    #[test]
    fn values_elements_and_counts() {
        let cfg = config(
            "url: http://127.0.0.1/api/monitor/streams\n\
             values:\n  - {field: total, pointer: /total}\n  - {field: degraded, pointer: /status, equals: [degraded, down]}\n\
             elements:\n  pointer: /streams\n  label: /name\n  max_elements: 2\n  values:\n    - {field: healthy, pointer: /healthy}\n    - {field: ring, pointer: /webrtc/state, equals: connecting, optional: true}\n    - {field: since, pointer: /since, timestamp: true}\n  counts:\n    - name: unhealthy\n      where: [{pointer: /healthy, equals: false}]\n    - name: recent\n      where: [{pointer: /since, within: 15m}]\n",
        )
        .unwrap();
        let doc = serde_json::json!({
            "total": 3, "status": "down",
            "streams": [
                {"name": "cam-a", "healthy": true, "since": "2026-11-28T10:00:00Z"},
                {"name": "cam-b", "healthy": false, "since": 1_795_000_000, "webrtc": {"state": "connecting"}},
                {"name": "cam-c", "healthy": false, "since": "2026-11-28T09:00:00Z"}
            ]
        });
        let now = 1_795_860_000.0; // 2026-11-28T10:00:00Z
        let (s, err) = run(&cfg, doc, now);
        assert_eq!(err, "");
        let get = |name: &str, labels: &[&str]| {
            s.iter()
                .find(|(n, l, _)| n == name && l == labels)
                .map(|x| x.2)
        };
        assert_eq!(get("stackmedic_json_value", &["total"]), Some(3.0));
        assert_eq!(get("stackmedic_json_value", &["degraded"]), Some(1.0));
        assert_eq!(get("stackmedic_json_elements", &[]), Some(3.0));
        assert_eq!(
            get("stackmedic_json_elements_matching", &["unhealthy"]),
            Some(2.0)
        );
        assert_eq!(
            get("stackmedic_json_elements_matching", &["recent"]),
            Some(1.0)
        );
        assert_eq!(
            get("stackmedic_json_element_value", &["healthy", "cam-a"]),
            Some(1.0)
        );
        assert_eq!(
            get("stackmedic_json_element_value", &["healthy", "cam-b"]),
            Some(0.0)
        );
        assert_eq!(
            get("stackmedic_json_element_value", &["since", "cam-a"]),
            Some(now)
        );
        assert_eq!(
            get("stackmedic_json_element_value", &["ring", "cam-b"]),
            Some(1.0)
        );
        assert_eq!(
            get("stackmedic_json_element_value", &["ring", "cam-a"]),
            None
        );
        // max_elements bounds the labelled series; the third element is only counted.
        assert_eq!(
            get("stackmedic_json_element_value", &["healthy", "cam-c"]),
            None
        );
    }

    #[test]
    fn problems_are_reported_and_the_rest_is_exported() {
        let cfg = config(
            "url: http://127.0.0.1/x\nvalues:\n  - {field: up, pointer: /up}\n  - {field: gone, pointer: /gone}\n\
             elements: {pointer: /items, label: /id, values: [{field: v, pointer: /v}]}\n",
        )
        .unwrap();
        let doc = serde_json::json!({"up": "yes", "items": [{"id": "a", "v": 1}, {"v": 2}, {"id": "a", "v": 3}]});
        let (s, err) = run(&cfg, doc, 0.0);
        assert_eq!(
            err,
            "unusable field: \"/up\" is not a number or boolean: \"yes\", no field at \"/gone\"; element without a label: element 1, element 2: duplicate label \"a\""
        );
        assert!(s
            .iter()
            .any(|(n, l, v)| n == "stackmedic_json_element_value"
                && l == &["v", "a"]
                && *v == 1.0));
    }

    #[test]
    fn every_config_problem_has_its_path() {
        let e = config(
            "url: http://127.0.0.1/x\nbearer_token_env: STACKMEDIC_TEST_UNSET_VARIABLE\n\
             values: [{field: 'a b', pointer: x}, {field: ok, pointer: /a, equals: {x: 1}}]\n\
             elements:\n  pointer: items\n  max_elements: 0\n  values: [{field: v, pointer: /v}]\n  counts:\n    - name: c\n      where: [{pointer: /t, within: 5m, equals: 1}]\n    - name: c\n",
        )
        .unwrap_err();
        for want in [
            "probes[0].json.bearer_token_env: environment variable STACKMEDIC_TEST_UNSET_VARIABLE is not set",
            "probes[0].json.values[0].field: must be 1 to 64 characters",
            "probes[0].json.values[0].pointer: \"x\" is not a JSON pointer",
            "probes[0].json.values[1].equals: must be a string, number, boolean or null",
            "probes[0].json.elements.pointer: \"items\" is not a JSON pointer",
            "probes[0].json.elements.max_elements: must be 1 to 1000",
            "probes[0].json.elements.label: element values need a label pointer",
            "probes[0].json.elements.counts[0].where[0]: needs exactly one of",
            "probes[0].json.elements.counts[1].name: duplicate count \"c\"",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
        assert!(config("url: http://127.0.0.1/x\n")
            .unwrap_err()
            .contains("probes[0].json: nothing to read"));
    }

    #[test]
    fn times_and_numbers() {
        assert_eq!(
            timestamp(&serde_json::json!("1970-01-01T00:01:00Z")),
            Some(60.0)
        );
        assert_eq!(
            timestamp(&serde_json::json!(1_700_000_000_000_u64)),
            Some(1_700_000_000.0)
        );
        assert_eq!(number(&serde_json::json!("2.5")), Some(2.5));
        assert_eq!(number(&serde_json::json!(true)), Some(1.0));
        assert_eq!(number(&serde_json::json!([1])), None);
        assert!(same(&serde_json::json!(1), &serde_json::json!(1.0)));
    }
}
