//! Reconciliation of open incidents with the alerts Alertmanager holds.
//!
//! A resolve can be lost: an inhibition mutes it (the shipped Alertmanager example inhibits
//! the original alert while its escalation fires), the remediator was down when it was sent,
//! or the network dropped it. Every `global.reconcile_interval` the remediator lists
//! `GET /api/v2/alerts` (active, silenced, inhibited and unprocessed alerts; resolved ones are
//! not listed) of the Alertmanager in `escalation.alertmanager_url`, and resolves each open
//! occurrence, first seen before the list was requested, that is not in it; incidents left
//! without a firing alert close, and their escalations resolve. An occurrence resolved this way
//! opens again when Alertmanager later sends it as firing.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::{now, parse_rfc3339};
use crate::config::{Escalation, Live};
use crate::metrics::Metrics;
use crate::store::{ActiveAlert, Resolution, Store};
use crate::vocab::Event;

/// What the reconciling task needs.
#[derive(Clone)]
pub struct Reconciler {
    /// Incidents and occurrences.
    pub store: Store,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The process' HTTP client.
    pub http: reqwest::Client,
    /// The configuration in force.
    pub config: Live,
    /// Woken when escalations start resolving.
    pub escalations: Arc<Notify>,
}

/// One alert of Alertmanager's list, as far as reconciliation reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListedAlert {
    fingerprint: String,
    #[serde(default)]
    starts_at: String,
}

/// Reconciles every interval until shutdown; waits while reconciliation is off.
pub async fn run(r: Reconciler, shutdown: CancellationToken) {
    loop {
        let cfg = r.config.get();
        let interval = cfg.global.reconcile_interval;
        let wait = match &cfg.escalation {
            Some(esc) if !interval.is_zero() => {
                match once(&r, esc).await {
                    Ok(res) => {
                        r.metrics.reconciliations.with_label_values(&["ok"]).inc();
                        report(&r, &res);
                    }
                    Err(e) => {
                        r.metrics
                            .reconciliations
                            .with_label_values(&["failed"])
                            .inc();
                        tracing::warn!(error = %e, "cannot reconcile incidents with Alertmanager");
                    }
                }
                interval
            }
            // Off: look again after a while, in case a reload turns it on.
            _ => Duration::from_secs(5),
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Lists Alertmanager's alerts once and resolves what is no longer there.
///
/// # Errors
/// When Alertmanager cannot be asked or answers unexpectedly, or the store fails.
pub async fn once(r: &Reconciler, esc: &Escalation) -> Result<Resolution, String> {
    let listed_before = now();
    let req = r.http.get(esc.alerts_url()).timeout(esc.timeout);
    let resp = esc
        .credentials
        .apply(req)
        .send()
        .await
        .map_err(|e| format!("GET {}: {e}", esc.alerts_url()))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("GET {} answered {status}", esc.alerts_url()));
    }
    let alerts: Vec<ListedAlert> = resp
        .json()
        .await
        .map_err(|e| format!("GET {}: unexpected answer: {e}", esc.alerts_url()))?;
    let active = alerts
        .into_iter()
        .map(|a| ActiveAlert {
            starts_at: parse_rfc3339(&a.starts_at),
            fingerprint: a.fingerprint,
        })
        .collect();
    r.store
        .reconcile(active, listed_before, now())
        .await
        .map_err(|e| e.to_string())
}

fn report(r: &Reconciler, res: &Resolution) {
    if res.occurrences == 0 {
        return;
    }
    r.metrics.reconciled_alerts.inc_by(res.occurrences as u64);
    tracing::info!(
        alerts = res.occurrences,
        incidents = res.closed.len(),
        cancelled = res.cancelled.len(),
        "reconciled: alerts no longer active in Alertmanager are resolved"
    );
    for job in &res.cancelled {
        r.metrics.job(job.new.action, Event::Cancelled);
    }
    for c in &res.closed {
        tracing::info!(incident = c.id, subject = %c.subject, reason = %c.reason, "incident closed");
    }
    if res.escalations_resolving > 0 {
        r.escalations.notify_one();
    }
}
