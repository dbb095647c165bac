//! Reconciliation of open incidents with the alerts an Alertmanager cluster holds.
//!
//! A resolve can be lost: an inhibition mutes it (the shipped Alertmanager example inhibits
//! the original alert while its escalation fires), the remediator was down when it was sent,
//! or the network dropped it. Every `global.reconcile_interval` the remediator asks every
//! member of the cluster (`reconciliation`, or else `escalation`) when it started
//! (`GET /api/v2/status`) and which alerts it holds (`GET /api/v2/alerts`: active, silenced,
//! inhibited and unprocessed; resolved ones are not listed), and resolves each open occurrence,
//! first seen before the lists were requested, that no member lists; incidents left without a
//! firing alert close, and their escalations resolve. An occurrence resolved this way opens
//! again when Alertmanager later sends it as firing.
//!
//! Alertmanager keeps alerts in memory: a member that restarted holds none until Prometheus
//! sends them again, which takes up to its resend delay plus an evaluation interval. So an
//! alert missing from the lists is news only when every member that answered has been up
//! longer than [`Reconciliation::settle_time`]; otherwise the round resolves nothing (`held`).
//! A member that cannot be reached is left out: the others still speak for the cluster.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::alertmanager::{origin, Cluster, Failure, ListedAlert};
use crate::clock::{now, parse_rfc3339};
use crate::config::{Live, Reconciliation};
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

/// What one round did.
#[derive(Debug)]
pub enum Outcome {
    /// Every member that answered had settled: what none lists was resolved.
    Reconciled(Resolution),
    /// A member started too recently for its list to be news: nothing was resolved.
    Held {
        /// `scheme://host:port` of the members that started too recently.
        young: Vec<String>,
    },
}

/// Reconciles every interval until shutdown; waits while reconciliation is off.
pub async fn run(r: Reconciler, shutdown: CancellationToken) {
    loop {
        let cfg = r.config.get();
        let interval = cfg.global.reconcile_interval;
        let wait = match &cfg.reconciliation {
            Some(rec) if !interval.is_zero() => {
                match once(&r, rec).await {
                    Ok(Outcome::Reconciled(res)) => {
                        r.metrics.reconciliations.with_label_values(&["ok"]).inc();
                        report(&r, &res);
                    }
                    Ok(Outcome::Held { young }) => {
                        r.metrics.reconciliations.with_label_values(&["held"]).inc();
                        tracing::info!(
                            alertmanagers = %young.join(", "),
                            settle_time = %humantime::format_duration(rec.settle_time()),
                            "reconciliation held: an Alertmanager started too recently for an alert missing from its list to mean the alert resolved"
                        );
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

/// What one member said.
enum Member {
    /// Up for longer than the settle time; its list is news.
    Settled(Vec<ListedAlert>),
    /// Started too recently.
    Young,
    /// Could not be reached: it says nothing.
    Unreachable(String),
}

/// Asks one member when it started, then (if it settled) which alerts it holds. The start is
/// asked first, so a member that restarts between the two requests is young at the second one
/// at the latest, never taken for settled with an empty list.
async fn ask(cluster: &Cluster<'_>, url: &Url, settle: Duration) -> Result<Member, String> {
    let started = match cluster.started_at(url).await {
        Ok(t) => t,
        Err(Failure::Unreachable(e)) => return Ok(Member::Unreachable(e)),
        Err(Failure::Refused(e)) => return Err(e),
    };
    if now() - started < settle.as_secs_f64() {
        return Ok(Member::Young);
    }
    let alerts = match cluster.alerts(url).await {
        Ok(a) => a,
        Err(Failure::Unreachable(e)) => return Ok(Member::Unreachable(e)),
        Err(Failure::Refused(e)) => return Err(e),
    };
    // Asked again after the list: a member that restarted while it was being read (and so
    // answered with a new, empty list) shows a later start now.
    match cluster.started_at(url).await {
        Ok(t) if (t - started).abs() < 1.0 => Ok(Member::Settled(alerts)),
        Ok(_) => Ok(Member::Young),
        Err(Failure::Unreachable(e)) => Ok(Member::Unreachable(e)),
        Err(Failure::Refused(e)) => Err(e),
    }
}

/// Asks every member once and resolves what none of them lists, when every member that
/// answered has settled.
///
/// # Errors
/// When no member can be reached, one answers unexpectedly, or the store fails.
pub async fn once(r: &Reconciler, rec: &Reconciliation) -> Result<Outcome, String> {
    let listed_before = now();
    let cluster = Cluster {
        http: &r.http,
        members: &rec.alertmanagers,
        metrics: &r.metrics,
    };
    let settle = rec.settle_time();
    let answers = futures_util::future::join_all(
        rec.alertmanagers
            .urls
            .iter()
            .map(|url| ask(&cluster, url, settle)),
    )
    .await;
    let mut active = Vec::new();
    let mut young = Vec::new();
    let mut unreachable = Vec::new();
    let mut refused = Vec::new();
    for (url, answer) in rec.alertmanagers.urls.iter().zip(answers) {
        match answer {
            Ok(Member::Settled(alerts)) => {
                active.extend(alerts.into_iter().map(|a| ActiveAlert {
                    starts_at: parse_rfc3339(&a.starts_at),
                    fingerprint: a.fingerprint,
                }));
            }
            Ok(Member::Young) => young.push(origin(url)),
            Ok(Member::Unreachable(e)) => unreachable.push(e),
            Err(e) => refused.push(e),
        }
    }
    if !refused.is_empty() {
        // A member that answers but not as expected may hold alerts nobody else lists.
        refused.extend(unreachable);
        return Err(refused.join("; "));
    }
    if unreachable.len() == rec.alertmanagers.urls.len() {
        return Err(unreachable.join("; "));
    }
    for e in &unreachable {
        tracing::warn!(error = %e, "an Alertmanager cannot be asked; reconciling with the others");
    }
    if !young.is_empty() {
        return Ok(Outcome::Held { young });
    }
    r.store
        .reconcile(active, listed_before, now())
        .await
        .map(Outcome::Reconciled)
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
