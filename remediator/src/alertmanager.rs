//! Requests to the members of an Alertmanager cluster: posting alerts (escalations), and reading
//! a member's start time (`GET /api/v2/status`) and alerts (`GET /api/v2/alerts`) for
//! reconciliation. Each request goes to one member and is counted in
//! `stackmedic_remediator_alertmanager_requests_total`; a failure is described in the words
//! on-call reads on the page and in the JSON.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::clock::parse_rfc3339;
use crate::config::Alertmanagers;
use crate::metrics::Metrics;

/// Bytes of Alertmanager's answer kept in an error when it refuses a request.
const ERROR_BODY_BYTES: usize = 200;

/// Why a request to one member failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer: the connection was refused or failed, or no answer came in time. A member
    /// that cannot be reached tells nothing about the alerts it holds.
    Unreachable(String),
    /// It answered, but not with what was asked for (an HTTP error or an unexpected body).
    Refused(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(s) | Failure::Refused(s) => f.write_str(s),
        }
    }
}

/// One alert of a member's list, as far as reconciliation reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedAlert {
    /// Alertmanager's fingerprint of the alert's labels (the same on every member).
    pub fingerprint: String,
    /// Its start as the member holds it.
    #[serde(default)]
    pub starts_at: String,
}

#[derive(Debug, Deserialize)]
struct Status {
    /// When the member started (RFC 3339), despite its name.
    uptime: String,
}

/// The members of one cluster, with the process' client and counters.
pub struct Cluster<'a> {
    /// The process' HTTP client.
    pub http: &'a reqwest::Client,
    /// The members and how to reach them.
    pub members: &'a Alertmanagers,
    /// Where requests are counted.
    pub metrics: &'a Metrics,
}

impl Cluster<'_> {
    /// Posts `payload` (an array of alerts) to member `url`.
    ///
    /// # Errors
    /// Why the member did not accept it.
    pub async fn post_alerts(&self, url: &Url, payload: &Value) -> Result<(), Failure> {
        let api = Alertmanagers::api_url(url, "alerts");
        let req = self
            .http
            .post(api.clone())
            .json(payload)
            .timeout(self.members.timeout);
        let r = self.send(req, &api).await;
        let r = match r {
            Ok(resp) => ok_or_refused(resp, &api).await.map(drop),
            Err(e) => Err(e),
        };
        self.count(url, "post", r.is_ok());
        r
    }

    /// When member `url` started, as epoch seconds.
    ///
    /// # Errors
    /// Why it could not be read.
    pub async fn started_at(&self, url: &Url) -> Result<f64, Failure> {
        let api = Alertmanagers::api_url(url, "status");
        let r = async {
            let req = self.http.get(api.clone()).timeout(self.members.timeout);
            let resp = ok_or_refused(self.send(req, &api).await?, &api).await?;
            let status: Status = resp
                .json()
                .await
                .map_err(|e| Failure::Refused(format!("GET {api}: unexpected answer: {e}")))?;
            parse_rfc3339(&status.uptime).ok_or_else(|| {
                Failure::Refused(format!(
                    "GET {api}: unexpected answer: uptime {:?} is not an RFC 3339 time",
                    status.uptime
                ))
            })
        }
        .await;
        self.count(url, "status", r.is_ok());
        r
    }

    /// The alerts member `url` holds (active, silenced, inhibited and unprocessed).
    ///
    /// # Errors
    /// Why they could not be read.
    pub async fn alerts(&self, url: &Url) -> Result<Vec<ListedAlert>, Failure> {
        let api = Alertmanagers::api_url(url, "alerts");
        let r = async {
            let req = self.http.get(api.clone()).timeout(self.members.timeout);
            let resp = ok_or_refused(self.send(req, &api).await?, &api).await?;
            resp.json::<Vec<ListedAlert>>()
                .await
                .map_err(|e| Failure::Refused(format!("GET {api}: unexpected answer: {e}")))
        }
        .await;
        self.count(url, "alerts", r.is_ok());
        r
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        api: &Url,
    ) -> Result<reqwest::Response, Failure> {
        self.members
            .credentials
            .apply(req)
            .send()
            .await
            .map_err(|e| Failure::Unreachable(describe(&e, api, self.members.timeout)))
    }

    fn count(&self, url: &Url, request: &str, ok: bool) {
        self.metrics
            .alertmanager_requests
            .with_label_values(&[
                origin(url).as_str(),
                request,
                if ok { "ok" } else { "failed" },
            ])
            .inc();
    }
}

/// The response when its status is a success; otherwise the status with the start of the answer.
async fn ok_or_refused(mut r: reqwest::Response, url: &Url) -> Result<reqwest::Response, Failure> {
    if r.status().is_success() {
        return Ok(r);
    }
    let status = r.status();
    // Only the start of the answer is read: an error page can be large.
    let mut body = Vec::new();
    while body.len() < 4 * ERROR_BODY_BYTES {
        match r.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&body);
    let text: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let excerpt = crate::limits::cut(&text, ERROR_BODY_BYTES);
    Err(Failure::Refused(if excerpt.is_empty() {
        format!("HTTP {status} from Alertmanager at {}", origin(url))
    } else {
        format!(
            "HTTP {status} from Alertmanager at {}: {excerpt}",
            origin(url)
        )
    }))
}

/// Why a request got no answer: `connection refused`, `timeout`, or the transport's words.
fn describe(e: &reqwest::Error, url: &Url, timeout: Duration) -> String {
    let at = origin(url);
    let mut causes = Vec::new();
    let mut refused = false;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        let text = s.to_string();
        if !causes.contains(&text) {
            causes.push(text);
        }
        source = s.source();
    }
    if e.is_timeout() && e.is_connect() {
        return format!("timeout: no connection to Alertmanager at {at} could be opened in time");
    }
    if e.is_timeout() {
        return format!(
            "timeout: Alertmanager at {at} did not answer within {}",
            humantime::format_duration(timeout)
        );
    }
    if refused {
        return format!("connection refused: nothing accepts connections at {at}");
    }
    let detail = if causes.is_empty() {
        e.to_string()
    } else {
        causes.join(": ")
    };
    if e.is_connect() {
        format!("cannot connect to Alertmanager at {at}: {detail}")
    } else {
        format!("cannot reach Alertmanager at {at}: {detail}")
    }
}

/// `scheme://host:port` of a URL: never its path, query or credentials.
#[must_use]
pub fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}
