//! Escalation to on-call through Alertmanager: the `StackmedicRemediationFailed` alert of an
//! escalated incident, and the task that posts the outbox as Prometheus sends its alerts — a
//! new escalation at once, an active one again every `resend_interval` with
//! `endsAt = now + alert_duration` (so it resolves on its own when the remediator stops), and
//! once more with `endsAt = now` when its incident closed. A failed post is retried with
//! exponential backoff (at most `resend_interval` apart while the escalation is active).
//! Everything is read from the store, so a restart resumes where it stopped.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::{now, rfc3339_millis};
use crate::config::{Escalation, Live};
use crate::metrics::Metrics;
use crate::store::{PendingEscalation, PostResult, Store};
use crate::vocab::PostOutcome;

pub use crate::paging::{is_label_name, ALERTNAME, GUARD_LABELS};

/// The stored escalation with `endsAt` set for this post.
fn with_ends_at(payload: &Value, ends_at: SystemTime) -> Value {
    let mut p = payload.clone();
    let ends = Value::String(rfc3339_millis(ends_at));
    if let Some(alerts) = p.as_array_mut() {
        for a in alerts.iter_mut().filter_map(Value::as_object_mut) {
            a.insert("endsAt".into(), ends.clone());
        }
    }
    p
}

/// What the posting task needs.
#[derive(Clone)]
pub struct Escalator {
    /// The outbox.
    pub store: Store,
    /// Counters of posts.
    pub metrics: Arc<Metrics>,
    /// The process' HTTP client.
    pub http: reqwest::Client,
    /// The configuration in force.
    pub config: Live,
    /// Woken when an escalation is stored or starts resolving.
    pub wake: Arc<Notify>,
}

/// Posts the outbox until shutdown.
pub async fn run(e: Escalator, shutdown: CancellationToken) {
    match e.store.resume_escalations(now()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            escalations = n,
            "active escalations found at start: posting them again"
        ),
        Err(err) => tracing::error!(error = %err, "cannot resume escalations"),
    }
    loop {
        let cfg = e.config.get();
        if let Some(esc) = &cfg.escalation {
            match e.store.due_escalations(now()).await {
                Ok(due) => {
                    for p in due {
                        post(&e, esc, p).await;
                    }
                }
                Err(err) => tracing::error!(error = %err, "cannot read escalations"),
            }
        }
        let next = e.store.next_escalation_at().await.ok().flatten();
        let wait = next.map_or(5.0, |n| (n - now()).clamp(0.05, 5.0));
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = e.wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs_f64(wait)) => {}
        }
    }
}

async fn post(e: &Escalator, esc: &Escalation, p: PendingEscalation) {
    let sent = SystemTime::now();
    let ends_at = if p.resolving {
        sent
    } else {
        sent + esc.alert_duration
    };
    let result = deliver(&e.http, esc, &with_ends_at(&p.payload, ends_at)).await;
    let t = now();
    let (outcome, posted) = match result {
        Ok(()) if p.resolving => {
            tracing::info!(
                escalation = p.id,
                reason = p.resolve_reason.as_deref().unwrap_or(""),
                "escalation resolved in Alertmanager"
            );
            (PostOutcome::Resolved, PostResult::Resolved)
        }
        Ok(()) => {
            if p.first {
                tracing::info!(escalation = p.id, "escalation delivered to Alertmanager");
            } else {
                tracing::debug!(escalation = p.id, "escalation posted again");
            }
            (
                if p.first {
                    PostOutcome::Delivered
                } else {
                    PostOutcome::Resent
                },
                PostResult::Firing {
                    next_post_at: t + esc.resend_interval.as_secs_f64(),
                },
            )
        }
        Err(error) => {
            let mut backoff = esc
                .min_backoff
                .saturating_mul(1u32 << p.failures.min(16))
                .min(esc.max_backoff);
            if !p.resolving {
                backoff = backoff.min(esc.resend_interval);
            }
            tracing::warn!(
                escalation = p.id,
                resolving = p.resolving,
                error = %error,
                retry_in = %humantime::format_duration(backoff),
                "escalation post failed"
            );
            (
                PostOutcome::Failed,
                PostResult::Failed {
                    error,
                    retry_at: t + backoff.as_secs_f64(),
                },
            )
        }
    };
    e.metrics.escalation_post(outcome);
    if let Err(err) = e
        .store
        .escalation_posted(p.id, p.resolving, posted, t)
        .await
    {
        tracing::error!(error = %err, "cannot record an escalation post");
    }
}

/// Bytes of Alertmanager's answer kept in `last_error` when it refuses a post.
const ERROR_BODY_BYTES: usize = 200;

/// Posts `payload`; on failure says why in the words on-call reads on the page and in the JSON:
/// the connection was refused, no answer came in time, or the HTTP status with the start of
/// Alertmanager's answer.
async fn deliver(http: &reqwest::Client, esc: &Escalation, payload: &Value) -> Result<(), String> {
    let url = esc.alerts_url();
    let req = http.post(url.clone()).json(payload).timeout(esc.timeout);
    let mut r = esc
        .credentials
        .apply(req)
        .send()
        .await
        .map_err(|e| describe(&e, &url, esc.timeout))?;
    if r.status().is_success() {
        return Ok(());
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
    Err(if excerpt.is_empty() {
        format!("HTTP {status} from Alertmanager at {}", origin(&url))
    } else {
        format!(
            "HTTP {status} from Alertmanager at {}: {excerpt}",
            origin(&url)
        )
    })
}

/// Why a request got no answer: `connection refused`, `timeout`, or the transport's words.
fn describe(e: &reqwest::Error, url: &url::Url, timeout: Duration) -> String {
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
        format!("cannot post to Alertmanager at {at}: {detail}")
    }
}

/// `scheme://host:port` of a URL: never its path, query or credentials.
fn origin(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}
