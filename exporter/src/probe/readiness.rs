//! Readiness (the Open WebUI stack, the gateway and the assistant backend): an HTTP(S) request with expected status codes, latency,
//! named response headers (an edge's `cf-ray`), an optional JSON summary read by JSON pointers
//! (`llm.path` as a state set, model present, fallback, `build.sha`, when warming began), and a
//! CORS preflight check.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use http::{HeaderMap, HeaderName, Method};
use serde::Deserialize;
use serde_json::Value;
use stackmedic_common::config::join;
use stackmedic_common::reload::unix_now;
use stackmedic_common::ConfigErrors;
use url::Url;

use super::fetch::plain::PlainRequest;
use super::fetch::{self, TlsOptions};
use super::{ProbeError, Reason, RunContext, Shared};
use crate::metrics::{Family, Samples};
use crate::support::{lock, truncate};

pub(super) static STATUS_CODE: Family = Family::gauge(
    "stackmedic_http_status_code",
    "HTTP status code of the last response (0 when none arrived).",
);
static RESPONSE_SECONDS: Family = Family::gauge(
    "stackmedic_http_response_seconds",
    "Time until the response headers arrived, in seconds.",
);
static HEADER_PRESENT: Family = Family::gauge(
    "stackmedic_http_header_present",
    "Whether the named response header was present (1) or not (0).",
);
static SUMMARY_READY: Family = Family::gauge(
    "stackmedic_summary_ready",
    "The summary's ready flag (1 true, 0 false).",
);
static SUMMARY_LLM_PATH: Family = Family::gauge(
    "stackmedic_summary_llm_path",
    "State set of the summary's LLM path: 1 for the current path, 0 for the others.",
);
static SUMMARY_MODEL_PRESENT: Family = Family::gauge(
    "stackmedic_summary_model_present",
    "Whether the summary reports the model as present (1) or not (0).",
);
static SUMMARY_FALLBACK: Family = Family::gauge(
    "stackmedic_summary_fallback",
    "Whether the summary reports the fallback as active (1) or not (0).",
);
static SUMMARY_BUILD: Family = Family::gauge(
    "stackmedic_summary_build_info",
    "Build of the probed service; the sha label carries the summary's build sha.",
);
static SUMMARY_WARMING_SINCE: Family = Family::gauge(
    "stackmedic_summary_warming_since_timestamp_seconds",
    "Unix time at which the current warming began; absent when not warming.",
);
static CORS_ALLOWED: Family = Family::gauge(
    "stackmedic_cors_allowed",
    "Whether the CORS preflight allowed the configured origin and method (1) or not (0).",
);

fn yes() -> bool {
    true
}
fn default_max_body() -> u64 {
    fetch::DEFAULT_MAX_BODY
}

/// HTTP methods a readiness probe may use.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// GET (default).
    #[default]
    Get,
    /// HEAD.
    Head,
}

impl From<HttpMethod> for Method {
    fn from(m: HttpMethod) -> Self {
        match m {
            HttpMethod::Get => Method::GET,
            HttpMethod::Head => Method::HEAD,
        }
    }
}

/// Settings of an `http` probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The URL to request.
    pub url: Url,
    /// Request method.
    #[serde(default)]
    pub method: HttpMethod,
    /// Accepted status codes; empty accepts any 2xx.
    #[serde(default)]
    pub valid_status_codes: Vec<u16>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response headers that must be present (such as `cf-ray` at a Cloudflare edge).
    #[serde(default)]
    pub expect_headers: Vec<String>,
    /// Follow redirects (up to 10).
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    /// Keep connections open for the next run; `false` opens a new connection for every run
    /// and closes it after the response, as blackbox_exporter does.
    #[serde(default = "yes")]
    pub reuse_connections: bool,
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsOptions,
    /// Largest body read.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Fields of a JSON body to export.
    pub json: Option<Box<SummaryFields>>,
}

fn default_states() -> Vec<String> {
    ["warming", "primary", "fallback"]
        .map(String::from)
        .to_vec()
}
fn default_warming() -> String {
    "warming".into()
}

/// JSON pointers (RFC 6901) into a summary body such as the backend's `/status/summary`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryFields {
    /// Pointer to a boolean ready flag, e.g. `/ready`.
    pub ready: Option<String>,
    /// Pointer to the LLM path string, e.g. `/llm/path`.
    pub llm_path: Option<String>,
    /// The known paths of the state set; any other value is exported as `other`.
    #[serde(default = "default_states")]
    pub llm_path_states: Vec<String>,
    /// The path value that means warming.
    #[serde(default = "default_warming")]
    pub warming_state: String,
    /// Pointer to a boolean model-present flag, e.g. `/llm/primary_model_present`.
    pub model_present: Option<String>,
    /// Pointer to a boolean fallback flag, e.g. `/status/fallback`.
    pub fallback: Option<String>,
    /// Pointer to the build sha string, e.g. `/build/sha`.
    pub build_sha: Option<String>,
}

impl HttpConfig {
    /// Checks URL, headers, status codes and pointers; reads the CA file.
    pub fn validate(&mut self, path: &str, errs: &mut ConfigErrors) {
        fetch::validate_url(&self.url, &join(path, "url"), errs);
        self.tls.load(&join(path, "tls"), errs);
        fetch::validate_statuses(
            &self.valid_status_codes,
            &join(path, "valid_status_codes"),
            errs,
        );
        fetch::validate_headers(&self.headers, &join(path, "headers"), errs);
        for (i, h) in self.expect_headers.iter().enumerate() {
            if HeaderName::try_from(h.as_str()).is_err() {
                errs.push(
                    format!("{path}.expect_headers[{i}]"),
                    format!("invalid header name {h:?}"),
                );
            }
        }
        if let Some(j) = &self.json {
            let jp = join(path, "json");
            let pointers = [
                ("ready", &j.ready),
                ("llm_path", &j.llm_path),
                ("model_present", &j.model_present),
                ("fallback", &j.fallback),
                ("build_sha", &j.build_sha),
            ];
            if pointers.iter().all(|(_, p)| p.is_none())
                && !pointers.iter().any(|(name, _)| errs.has(&join(&jp, name)))
            {
                errs.push(&jp, "names no field; set at least one pointer");
            }
            for (name, p) in pointers {
                if let Some(p) = p {
                    if !p.is_empty() && !p.starts_with('/') {
                        errs.push(
                            join(&jp, name),
                            format!("{p:?} is not a JSON pointer (it must start with `/`)"),
                        );
                    }
                }
            }
            if j.llm_path_states.is_empty() && !errs.has(&join(&jp, "llm_path_states")) {
                errs.push(join(&jp, "llm_path_states"), "must list at least one state");
            }
        }
    }
}

/// An `http` probe.
pub struct HttpProbe {
    cfg: HttpConfig,
    client: reqwest::Client,
    headers: HeaderMap,
    /// The request for the lean client, for a plain HTTP target without a proxy.
    plain: Option<Box<PlainRequest>>,
    /// Set once the target answered the lean client with a redirect: from then on the general
    /// client sends the request and follows redirects.
    redirects: AtomicBool,
    /// When the current warming began, as first observed.
    warming_since: Mutex<Option<f64>>,
}

impl HttpProbe {
    /// Builds the probe.
    ///
    /// # Errors
    /// When its HTTP client cannot be built.
    pub fn new(cfg: HttpConfig, shared: &Shared) -> Result<Self, String> {
        let client = if cfg.reuse_connections {
            shared.http.get(&cfg.tls, cfg.follow_redirects)?
        } else {
            shared.http.get_unpooled(&cfg.tls, cfg.follow_redirects)?
        };
        let headers = fetch::header_map(&cfg.headers);
        let plain = PlainRequest::new(
            &cfg.url,
            cfg.method.into(),
            &headers,
            cfg.reuse_connections,
            &shared.http.plain,
        )
        .map(Box::new);
        Ok(Self {
            cfg,
            client,
            headers,
            plain,
            redirects: AtomicBool::new(false),
            warming_since: Mutex::new(None),
        })
    }

    /// Sends the request; the response's body is still to be read.
    async fn open(&self, cx: &RunContext) -> Result<fetch::Streaming, ProbeError> {
        if let Some(plain) = self.plain.as_ref() {
            if !self.redirects.load(Ordering::Relaxed) {
                let head = plain.open(cx, self.cfg.max_body_bytes).await?;
                if !(self.cfg.follow_redirects && is_redirect(&head)) {
                    return Ok(head);
                }
                // Asked once more, through the client that follows redirects as configured.
                self.redirects.store(true, Ordering::Relaxed);
            }
        }
        let req = self
            .client
            .request(self.cfg.method.into(), self.cfg.url.clone())
            .headers(self.headers.clone());
        fetch::open(cx, req, self.cfg.max_body_bytes).await
    }

    /// Runs once.
    ///
    /// # Errors
    /// `timeout`, `connect`, `tls`, `http_status`, `header_missing`, `parse`, `body_too_large`.
    pub async fn run(&self, cx: &RunContext, out: &mut Samples) -> Result<(), ProbeError> {
        let head = match self.open(cx).await {
            Ok(r) => r,
            Err(e) => {
                out.push(&STATUS_CODE, &[], 0.0);
                return Err(e);
            }
        };
        // The status is known before the body is read, so a body that is too large still
        // reports the status that came with it.
        out.push(&STATUS_CODE, &[], f64::from(head.status.as_u16()));
        out.push(&RESPONSE_SECONDS, &[], head.header_time.as_secs_f64());
        let resp = head.read_all().await?;
        let mut missing = Vec::new();
        for h in &self.cfg.expect_headers {
            let present = resp.headers.contains_key(h.as_str());
            out.flag(
                &HEADER_PRESENT,
                &[("header", &h.to_ascii_lowercase())],
                present,
            );
            if !present {
                missing.push(h.as_str());
            }
        }
        fetch::expect_status(resp.status, &self.cfg.valid_status_codes)?;
        if !missing.is_empty() {
            return Err(ProbeError::new(
                Reason::HeaderMissing,
                format!("response lacks header(s) {}", missing.join(", ")),
            ));
        }
        if let Some(fields) = &self.cfg.json {
            self.summary(fields, &resp.body, out)?;
        }
        Ok(())
    }

    fn summary(&self, f: &SummaryFields, body: &[u8], out: &mut Samples) -> Result<(), ProbeError> {
        let doc: Value = serde_json::from_slice(body)
            .map_err(|e| ProbeError::new(Reason::Parse, format!("body is not JSON: {e}")))?;
        let mut problems = Vec::new();
        if let Some(p) = &f.ready {
            match lookup_bool(&doc, p) {
                Ok(b) => out.flag(&SUMMARY_READY, &[], b),
                Err(e) => problems.push(e),
            }
        }
        if let Some(p) = &f.model_present {
            match lookup_bool(&doc, p) {
                Ok(b) => out.flag(&SUMMARY_MODEL_PRESENT, &[], b),
                Err(e) => problems.push(e),
            }
        }
        if let Some(p) = &f.fallback {
            match lookup_bool(&doc, p) {
                Ok(b) => out.flag(&SUMMARY_FALLBACK, &[], b),
                Err(e) => problems.push(e),
            }
        }
        if let Some(p) = &f.build_sha {
            match lookup_str(&doc, p) {
                // The sha is bounded by construction: one value per deploy, cut to 64 chars.
                Ok(s) => out.push(&SUMMARY_BUILD, &[("sha", &truncate(&s, 64))], 1.0),
                Err(e) => problems.push(e),
            }
        }
        // Whether the backend is warming: `None` when the summary does not say (no pointer
        // configured, or the field is absent this time), which leaves the warming start as it
        // was rather than ending the warming.
        let mut warming = None;
        if let Some(p) = &f.llm_path {
            match lookup_str(&doc, p) {
                Ok(path) => {
                    let current = if f.llm_path_states.contains(&path) {
                        path.as_str()
                    } else {
                        "other"
                    };
                    let mut states: Vec<&str> =
                        f.llm_path_states.iter().map(String::as_str).collect();
                    states.push("other");
                    out.state_set(&SUMMARY_LLM_PATH, &[], "path", &states, current);
                    warming = Some(path == f.warming_state);
                }
                Err(e) => problems.push(e),
            }
        }
        let mut since = lock(&self.warming_since);
        match warming {
            Some(true) => {
                since.get_or_insert_with(unix_now);
            }
            Some(false) => *since = None,
            None => {}
        }
        if let Some(t) = *since {
            out.push(&SUMMARY_WARMING_SINCE, &[], t);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ProbeError::new(Reason::Parse, problems.join("; ")))
        }
    }
}

/// A response the general client would follow: a redirect status with a `Location`.
fn is_redirect(head: &fetch::Streaming) -> bool {
    matches!(head.status.as_u16(), 301 | 302 | 303 | 307 | 308)
        && head.headers.contains_key(http::header::LOCATION)
}

fn lookup<'a>(doc: &'a Value, pointer: &str) -> Result<&'a Value, String> {
    doc.pointer(pointer)
        .ok_or_else(|| format!("no field at JSON pointer {pointer:?}"))
}

fn lookup_bool(doc: &Value, pointer: &str) -> Result<bool, String> {
    match lookup(doc, pointer)? {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_f64() == Some(0.0) => Ok(false),
        Value::Number(n) if n.as_f64() == Some(1.0) => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(format!(
            "field at {pointer:?} is not a boolean: {}",
            truncate(&other.to_string(), 40)
        )),
    }
}

fn lookup_str(doc: &Value, pointer: &str) -> Result<String, String> {
    match lookup(doc, pointer)? {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!(
            "field at {pointer:?} is not a string: {}",
            truncate(&other.to_string(), 40)
        )),
    }
}

fn post() -> String {
    "POST".into()
}

/// Settings of a `cors` probe: an `OPTIONS` preflight as a browser sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// The URL of the endpoint the browser calls, e.g. `https://api.example/chat`.
    pub url: Url,
    /// The page origin, e.g. `https://app.example`.
    pub origin: String,
    /// The method the browser intends to use.
    #[serde(default = "post")]
    pub method: String,
    /// Request headers the browser intends to send.
    #[serde(default)]
    pub request_headers: Vec<String>,
    /// Accepted preflight status codes; empty accepts any 2xx.
    #[serde(default)]
    pub valid_status_codes: Vec<u16>,
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsOptions,
}

impl CorsConfig {
    /// Checks URL, origin and method; reads the CA file.
    pub fn validate(&mut self, path: &str, errs: &mut ConfigErrors) {
        fetch::validate_url(&self.url, &join(path, "url"), errs);
        self.tls.load(&join(path, "tls"), errs);
        match Url::parse(&self.origin) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => errs.push(
                join(path, "origin"),
                format!(
                    "{:?} is not an origin such as https://app.example",
                    self.origin
                ),
            ),
        }
        if Method::from_bytes(self.method.as_bytes()).is_err() {
            errs.push(
                join(path, "method"),
                format!("invalid method {:?}", self.method),
            );
        }
        fetch::validate_statuses(
            &self.valid_status_codes,
            &join(path, "valid_status_codes"),
            errs,
        );
        for (i, h) in self.request_headers.iter().enumerate() {
            if HeaderName::try_from(h.as_str()).is_err() {
                errs.push(
                    format!("{path}.request_headers[{i}]"),
                    format!("invalid header name {h:?}"),
                );
            }
        }
    }
}

/// A `cors` probe.
pub struct CorsProbe {
    cfg: CorsConfig,
    client: reqwest::Client,
}

impl CorsProbe {
    /// Builds the probe.
    ///
    /// # Errors
    /// When its HTTP client cannot be built.
    pub fn new(cfg: CorsConfig, shared: &Shared) -> Result<Self, String> {
        let client = shared.http.get(&cfg.tls, false)?;
        Ok(Self { cfg, client })
    }

    /// Runs once.
    ///
    /// # Errors
    /// `cors` when the origin, method or headers are not allowed; transport reasons otherwise.
    pub async fn run(&self, cx: &RunContext, out: &mut Samples) -> Result<(), ProbeError> {
        let mut req = self
            .client
            .request(Method::OPTIONS, self.cfg.url.clone())
            .header("Origin", &self.cfg.origin)
            .header("Access-Control-Request-Method", &self.cfg.method);
        if !self.cfg.request_headers.is_empty() {
            req = req.header(
                "Access-Control-Request-Headers",
                self.cfg.request_headers.join(", ").to_ascii_lowercase(),
            );
        }
        let resp = match fetch::send(cx, req, 64 * 1024).await {
            Ok(r) => r,
            Err(e) => {
                out.push(&STATUS_CODE, &[], 0.0);
                out.flag(&CORS_ALLOWED, &[], false);
                return Err(e);
            }
        };
        out.push(&STATUS_CODE, &[], f64::from(resp.status.as_u16()));
        out.push(&RESPONSE_SECONDS, &[], resp.header_time.as_secs_f64());
        let verdict = self.judge(&resp);
        out.flag(&CORS_ALLOWED, &[], verdict.is_ok());
        verdict
    }

    fn judge(&self, resp: &fetch::Fetched) -> Result<(), ProbeError> {
        if !fetch::status_ok(resp.status, &self.cfg.valid_status_codes) {
            return Err(ProbeError::new(
                Reason::HttpStatus,
                format!("preflight status {}", resp.status.as_u16()),
            ));
        }
        let get = |name: &str| {
            resp.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        match get("access-control-allow-origin") {
            None => {
                return Err(ProbeError::new(
                    Reason::Cors,
                    "response lacks Access-Control-Allow-Origin",
                ))
            }
            Some(o) if o == "*" || o == self.cfg.origin => {}
            Some(o) => {
                return Err(ProbeError::new(
                    Reason::Cors,
                    format!(
                        "Access-Control-Allow-Origin is {o:?}, not {:?}",
                        self.cfg.origin
                    ),
                ))
            }
        }
        if let Some(methods) = get("access-control-allow-methods") {
            if !list_allows(methods, &self.cfg.method) {
                return Err(ProbeError::new(
                    Reason::Cors,
                    format!(
                        "Access-Control-Allow-Methods {methods:?} lacks {}",
                        self.cfg.method
                    ),
                ));
            }
        }
        if !self.cfg.request_headers.is_empty() {
            let allowed = get("access-control-allow-headers").unwrap_or("");
            for h in &self.cfg.request_headers {
                if !list_allows(allowed, h) {
                    return Err(ProbeError::new(
                        Reason::Cors,
                        format!("Access-Control-Allow-Headers {allowed:?} lacks {h}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn list_allows(list: &str, item: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|x| x == "*" || x.eq_ignore_ascii_case(item))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_and_strings_by_pointer() {
        let doc: Value = serde_json::json!({"llm": {"path": "warming", "ok": "true", "n": 0}});
        assert_eq!(lookup_str(&doc, "/llm/path").unwrap(), "warming");
        assert!(lookup_bool(&doc, "/llm/ok").unwrap());
        assert!(!lookup_bool(&doc, "/llm/n").unwrap());
        assert!(lookup_bool(&doc, "/llm/path").is_err());
        assert!(lookup_str(&doc, "/nope").is_err());
    }

    #[test]
    fn allow_lists() {
        assert!(list_allows("GET, POST", "post"));
        assert!(list_allows("*", "DELETE"));
        assert!(!list_allows("GET", "POST"));
    }
}
