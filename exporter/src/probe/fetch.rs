//! HTTP requests for probes: one client per distinct TLS and redirect setting, shared by every
//! probe that uses it; each request bounded by the time left of its run; bodies read up to a
//! limit; errors classified into failure reasons. [`plain`] is the lean client of the `http`
//! probe for plain HTTP targets; [`scoped`] follows redirects only within a probe's scope.

pub mod plain;
pub mod scoped;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;
use stackmedic_common::config::join;
use stackmedic_common::ConfigErrors;

use super::{ProbeError, Reason, RunContext};
use crate::support::error_chain;

/// The `User-Agent` of every probe request; access-log counting skips it by default.
pub const USER_AGENT: &str = concat!("stackmedic-exporter/", env!("CARGO_PKG_VERSION"));

/// Default limit of a response body.
pub const DEFAULT_MAX_BODY: u64 = 1 << 20;

/// TLS settings of a probe's HTTP client.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// Accept any server certificate (for self-signed internal endpoints).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// The CA file's contents as read and checked when the configuration was loaded: the
    /// client trusts exactly what was validated, and a replaced file makes the setting differ,
    /// so a reload builds the probe again.
    #[serde(skip)]
    ca_pem: Option<Arc<[u8]>>,
}

impl TlsOptions {
    /// Reads and checks the CA file, recording a problem under `path` when it cannot be read
    /// or holds no usable certificate. Part of loading the configuration.
    pub fn load(&mut self, path: &str, errs: &mut ConfigErrors) {
        let Some(file) = &self.ca_file else {
            return;
        };
        let at = join(path, "ca_file");
        match std::fs::read(file) {
            Err(e) => errs.push(at, format!("cannot read {}: {e}", file.display())),
            Ok(pem) => match certificates(&pem) {
                Ok(_) => self.ca_pem = Some(pem.into()),
                Err(e) => errs.push(at, format!("{}: {e}", file.display())),
            },
        }
    }

    /// The PEM bundle of the CA file, as read at load (or read now for options that were not
    /// loaded); `None` without a CA file. For the certificate inspection's own verifier.
    pub(crate) fn ca_bundle(&self) -> Result<Option<Arc<[u8]>>, String> {
        let Some(file) = &self.ca_file else {
            return Ok(None);
        };
        match &self.ca_pem {
            Some(pem) => Ok(Some(pem.clone())),
            None => std::fs::read(file)
                .map(|pem| Some(pem.into()))
                .map_err(|e| format!("cannot read ca_file {}: {e}", file.display())),
        }
    }

    /// The CA certificates to trust besides the system's: those read at load, or the file
    /// read now for options that were not loaded.
    fn roots(&self) -> Result<Vec<reqwest::Certificate>, String> {
        let Some(file) = &self.ca_file else {
            return Ok(Vec::new());
        };
        match &self.ca_pem {
            Some(pem) => certificates(pem),
            None => {
                let pem = std::fs::read(file)
                    .map_err(|e| format!("cannot read ca_file {}: {e}", file.display()))?;
                certificates(&pem)
            }
        }
        .map_err(|e| format!("ca_file {}: {e}", file.display()))
    }
}

/// The certificates of a PEM bundle, checked by building a client that trusts them.
fn certificates(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, String> {
    let certs = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    let mut b = reqwest::Client::builder();
    for c in &certs {
        b = b.add_root_certificate(c.clone());
    }
    b.build()
        .map_err(|e| format!("unusable certificate: {}", error_chain(&e)))?;
    Ok(certs)
}

/// The process's HTTP clients, one per distinct setting, and the connection pools of the lean
/// plain HTTP client.
#[derive(Default)]
pub struct HttpClients {
    clients: Mutex<HashMap<(TlsOptions, bool, bool), reqwest::Client>>,
    /// Kept-alive connections of [`plain`] requests, per target.
    pub plain: plain::Pools,
}

impl HttpClients {
    /// The client for these settings, built on first use; it keeps connections alive for the
    /// next request.
    ///
    /// # Errors
    /// A message when the CA file cannot be read or the client cannot be built.
    pub fn get(&self, tls: &TlsOptions, follow_redirects: bool) -> Result<reqwest::Client, String> {
        self.client(tls, follow_redirects, true)
    }

    /// Like [`HttpClients::get`], but the client opens a new connection for every request and
    /// closes it after the response, as blackbox_exporter does (`reuse_connections: false`).
    ///
    /// # Errors
    /// As [`HttpClients::get`].
    pub fn get_unpooled(
        &self,
        tls: &TlsOptions,
        follow_redirects: bool,
    ) -> Result<reqwest::Client, String> {
        self.client(tls, follow_redirects, false)
    }

    /// Drops the clients of TLS settings for which `used` is false (with their idle
    /// connections), so that settings a reload left behind do not stay in memory.
    pub fn retain(&self, used: impl Fn(&TlsOptions) -> bool) {
        if let Ok(mut map) = self.clients.lock() {
            map.retain(|(tls, _, _), _| used(tls));
        }
    }

    fn client(
        &self,
        tls: &TlsOptions,
        follow_redirects: bool,
        reuse_connections: bool,
    ) -> Result<reqwest::Client, String> {
        let key = (tls.clone(), follow_redirects, reuse_connections);
        let mut map = self.clients.lock().map_err(|_| "client cache poisoned")?;
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(if reuse_connections { usize::MAX } else { 0 })
            .redirect(if follow_redirects {
                reqwest::redirect::Policy::limited(10)
            } else {
                reqwest::redirect::Policy::none()
            })
            .tls_danger_accept_invalid_certs(tls.insecure_skip_verify)
            // The leaf certificate of each response, so that the certificate facts of an
            // endpoint are read again only when it changes (see `certificate`).
            .tls_info(true);
        for c in tls.roots()? {
            b = b.add_root_certificate(c);
        }
        let client = b
            .build()
            .map_err(|e| format!("cannot build http client: {e}"))?;
        map.insert(key, client.clone());
        Ok(client)
    }
}

/// A response read in full.
#[derive(Debug)]
pub struct Fetched {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body, at most the limit.
    pub body: Bytes,
    /// Time until the response headers arrived.
    pub header_time: Duration,
}

/// Sends a request and reads the body up to `max_body` bytes, within the run's deadline.
///
/// # Errors
/// A classified [`ProbeError`]: `timeout`, `connect`, `tls`, `body_too_large`, …
pub async fn send(
    cx: &RunContext,
    req: reqwest::RequestBuilder,
    max_body: u64,
) -> Result<Fetched, ProbeError> {
    open(cx, req, max_body).await?.read_all().await
}

/// A response whose body the caller reads chunk by chunk, for bodies too big to buffer (an
/// asset to hash, a media segment).
pub struct Streaming {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Time until the response headers arrived.
    pub header_time: Duration,
    body: Body,
    max_body: u64,
    read: u64,
}

/// Where the body comes from: the general client or the lean plain HTTP one.
enum Body {
    Client(reqwest::Response),
    Plain(plain::PlainBody),
}

impl std::fmt::Debug for Streaming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streaming")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("header_time", &self.header_time)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl Streaming {
    /// The next chunk of the body, `None` at its end.
    ///
    /// # Errors
    /// A classified [`ProbeError`]; `body_too_large` once more than the limit has arrived.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ProbeError> {
        let content_length = match &self.body {
            Body::Client(resp) => resp.content_length(),
            Body::Plain(body) => body.content_length(),
        };
        if self.read == 0 && content_length.is_some_and(|n| n > self.max_body) {
            return Err(ProbeError::new(
                Reason::BodyTooLarge,
                format!(
                    "content-length exceeds the limit of {} bytes",
                    self.max_body
                ),
            ));
        }
        let chunk = match &mut self.body {
            Body::Client(resp) => resp.chunk().await.map_err(classify)?,
            Body::Plain(body) => body.chunk().await?,
        };
        let Some(chunk) = chunk else {
            return Ok(None);
        };
        self.read += chunk.len() as u64;
        if self.read > self.max_body {
            return Err(ProbeError::new(
                Reason::BodyTooLarge,
                format!("body exceeds the limit of {} bytes", self.max_body),
            ));
        }
        Ok(Some(chunk))
    }

    /// Reads the whole body (at most the limit) into a [`Fetched`].
    ///
    /// # Errors
    /// As [`Streaming::chunk`].
    pub async fn read_all(mut self) -> Result<Fetched, ProbeError> {
        let mut body = BytesMut::new();
        while let Some(chunk) = self.chunk().await? {
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            status: self.status,
            headers: self.headers,
            body: body.freeze(),
            header_time: self.header_time,
        })
    }
}

/// Sends a request and returns once the headers arrived; the body is read with
/// [`Streaming::chunk`], at most `max_body` bytes of it. The whole exchange, body included,
/// must end by the run's deadline: the request gets the time that is left of the run.
///
/// # Errors
/// A classified [`ProbeError`]: `timeout`, `connect`, `tls`, …; a too-large
/// `Content-Length` is reported by the first [`Streaming::chunk`].
pub async fn open(
    cx: &RunContext,
    req: reqwest::RequestBuilder,
    max_body: u64,
) -> Result<Streaming, ProbeError> {
    let remaining = cx.remaining();
    if remaining.is_zero() {
        return Err(cx.expired("request not sent"));
    }
    let start = Instant::now();
    let resp = req.timeout(remaining).send().await.map_err(classify)?;
    let header_time = start.elapsed();
    if let Some(leaf) = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(reqwest::tls::TlsInfo::peer_certificate)
    {
        if let (Some(host), Some(port)) =
            (resp.url().host_str(), resp.url().port_or_known_default())
        {
            cx.note_peer_leaf(host, port, leaf);
        }
    }
    Ok(Streaming {
        status: resp.status(),
        headers: resp.headers().clone(),
        header_time,
        body: Body::Client(resp),
        max_body,
        read: 0,
    })
}

/// Turns a client error into a failure reason, keeping the whole cause chain in the message.
#[must_use]
pub fn classify(e: reqwest::Error) -> ProbeError {
    let message = error_chain(&e);
    let lower = message.to_ascii_lowercase();
    let reason = if e.is_timeout() {
        Reason::Timeout
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        Reason::Tls
    } else if e.is_connect() || e.is_request() {
        Reason::Connect
    } else if e.is_redirect() {
        Reason::HttpStatus
    } else if e.is_body() || e.is_decode() {
        Reason::Parse
    } else {
        Reason::Other
    };
    ProbeError::new(reason, message)
}

/// Checks a status against a list; an empty list accepts any 2xx.
#[must_use]
pub fn status_ok(status: StatusCode, valid: &[u16]) -> bool {
    if valid.is_empty() {
        status.is_success()
    } else {
        valid.contains(&status.as_u16())
    }
}

/// [`status_ok`], as a probe's failure (`http_status`, naming the statuses it accepts) when not.
///
/// # Errors
/// When `status` is not among `valid`.
pub fn expect_status(status: StatusCode, valid: &[u16]) -> Result<(), ProbeError> {
    if status_ok(status, valid) {
        return Ok(());
    }
    Err(ProbeError::new(
        Reason::HttpStatus,
        format!(
            "status {}, expected {}",
            status.as_u16(),
            describe_valid(valid)
        ),
    ))
}

/// Describes the accepted statuses for messages.
#[must_use]
pub fn describe_valid(valid: &[u16]) -> String {
    if valid.is_empty() {
        "2xx".to_string()
    } else {
        valid
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Checks status codes to accept: each must be 100 to 599. `path` names the list.
pub fn validate_statuses(codes: &[u16], path: &str, errs: &mut ConfigErrors) {
    for (i, c) in codes.iter().enumerate() {
        if !(100..=599).contains(c) {
            errs.push(
                format!("{path}[{i}]"),
                format!("{c} is not an HTTP status code"),
            );
        }
    }
}

/// Checks request headers to send: each name and value must be valid in HTTP. `path` names
/// the map.
pub fn validate_headers(headers: &BTreeMap<String, String>, path: &str, errs: &mut ConfigErrors) {
    for (k, v) in headers {
        if HeaderName::try_from(k.as_str()).is_err() || HeaderValue::try_from(v.as_str()).is_err() {
            errs.push(join(path, k), "invalid header name or value");
        }
    }
}

/// The request headers to send, as [`validate_headers`] accepted them.
#[must_use]
pub fn header_map(headers: &BTreeMap<String, String>) -> HeaderMap {
    headers
        .iter()
        .filter_map(|(k, v)| {
            Some((
                HeaderName::try_from(k.as_str()).ok()?,
                HeaderValue::try_from(v.as_str()).ok()?,
            ))
        })
        .collect()
}

/// Checks a probe URL: http or https with a host.
pub fn validate_url(url: &url::Url, path: &str, errs: &mut ConfigErrors) {
    if !matches!(url.scheme(), "http" | "https") {
        errs.push(
            path,
            format!("scheme must be http or https, found {:?}", url.scheme()),
        );
    }
    if url.host().is_none() {
        errs.push(path, "url has no host");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_statuses_are_checked_with_their_paths() {
        let headers: BTreeMap<String, String> = [
            ("X-Token".to_string(), "abc".to_string()),
            ("bad name".to_string(), "v".to_string()),
            ("X-Line".to_string(), "a\nb".to_string()),
        ]
        .into();
        let mut errs = ConfigErrors::default();
        validate_headers(&headers, "probes[0].http.headers", &mut errs);
        validate_statuses(
            &[200, 99, 600],
            "probes[0].http.valid_status_codes",
            &mut errs,
        );
        let found: Vec<String> = errs.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "probes[0].http.headers.X-Line: invalid header name or value",
                "probes[0].http.headers.bad name: invalid header name or value",
                "probes[0].http.valid_status_codes[1]: 99 is not an HTTP status code",
                "probes[0].http.valid_status_codes[2]: 600 is not an HTTP status code",
            ]
        );
        let map = header_map(&headers);
        assert_eq!(map.len(), 1);
        assert_eq!(map.get("x-token").map(|v| v.as_bytes()), Some(&b"abc"[..]));
    }

    #[test]
    fn a_status_outside_the_list_is_an_http_status_failure() {
        assert!(expect_status(StatusCode::NO_CONTENT, &[]).is_ok());
        assert!(expect_status(StatusCode::FOUND, &[302]).is_ok());
        let err = expect_status(StatusCode::SERVICE_UNAVAILABLE, &[200, 204])
            .expect_err("503 is not accepted");
        assert_eq!(err.reason, Reason::HttpStatus);
        assert_eq!(err.message, "status 503, expected 200, 204");
        let err = expect_status(StatusCode::NOT_FOUND, &[]).expect_err("404 is not 2xx");
        assert_eq!(err.message, "status 404, expected 2xx");
    }
}
