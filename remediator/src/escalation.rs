//! Escalation to on-call through Alertmanager: the `StackmedicRemediationFailed` alert of an
//! escalated incident, and the task that posts the outbox as Prometheus sends its alerts — to
//! every member of the Alertmanager cluster, a new escalation at once, an active one again every `resend_interval` with
//! `endsAt = now + alert_duration` (so it resolves on its own when the remediator stops), and
//! once more with `endsAt = now` when its incident closed. A failed post is retried with
//! exponential backoff (at most `resend_interval` apart while the escalation is active).
//! Everything is read from the store, so a restart resumes where it stopped.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::alertmanager::Cluster;
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
    let repost = !p.first && !p.resolving;
    let result = deliver(e, esc, &with_ends_at(&p.payload, ends_at), repost).await;
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

/// Posts `payload` to every member of the cluster at once, as Prometheus sends its alerts, and
/// succeeds when at least one accepted it: members share what they notify, and the next post
/// reaches a member that missed this one. A member that refused is logged and counted; when
/// none accepted, the error says why for each. A member that misses a re-post is logged at
/// debug only: it is counted, and a dead member would otherwise log every `resend_interval`.
async fn deliver(
    e: &Escalator,
    esc: &Escalation,
    payload: &Value,
    repost: bool,
) -> Result<(), String> {
    let cluster = Cluster {
        http: &e.http,
        members: &esc.alertmanagers,
        metrics: &e.metrics,
    };
    let results = futures_util::future::join_all(
        esc.alertmanagers
            .urls
            .iter()
            .map(|url| cluster.post_alerts(url, payload)),
    )
    .await;
    let failures: Vec<String> = results
        .into_iter()
        .filter_map(Result::err)
        .map(|f| f.to_string())
        .collect();
    if failures.len() < esc.alertmanagers.urls.len() {
        for f in &failures {
            if repost {
                tracing::debug!(error = %f, "an Alertmanager did not accept the escalation; another did");
            } else {
                tracing::warn!(error = %f, "an Alertmanager did not accept the escalation; another did");
            }
        }
        return Ok(());
    }
    Err(failures.join("; "))
}
