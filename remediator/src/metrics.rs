//! The remediator's own metrics, under `stackmedic_remediator_`.

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use crate::action::ActionKind;

const NS: &str = "stackmedic_remediator";

/// Every metric of the process.
#[derive(Clone)]
pub struct Metrics {
    /// The registry served on `/metrics`.
    pub registry: Registry,
    /// Webhook requests by result.
    pub webhooks: IntCounterVec,
    /// Alerts received, by what was decided.
    pub alerts: IntCounterVec,
    /// Actions by kind and result.
    pub actions: IntCounterVec,
    /// Duration of executed actions including verification.
    pub action_duration: HistogramVec,
    /// Time from a job's acceptance to the start of its action.
    pub job_start_delay: Histogram,
    /// Jobs stored and not yet finished.
    pub queue_depth: IntGauge,
    /// Open circuits.
    pub circuits_open: IntGauge,
    /// Escalation posts by result.
    pub escalations: IntCounterVec,
    /// Escalations with an undelivered post.
    pub escalations_pending: IntGauge,
    /// Escalations active (firing, re-posted).
    pub escalations_active: IntGauge,
    /// Duration of webhook handling.
    pub webhook_duration: Histogram,
}

/// Webhook results, all exported from the start.
pub const WEBHOOK_RESULTS: [&str; 9] = [
    "accepted",
    "busy",
    "timeout",
    "unauthorized",
    "malformed",
    "unsupported_version",
    "too_large",
    "method_not_allowed",
    "store_error",
];

/// Alert decisions.
pub const ALERT_DECISIONS: [&str; 5] = ["queued", "duplicate", "unmatched", "denied", "resolved"];

/// Escalation post results.
pub const ESCALATION_RESULTS: [&str; 4] = ["delivered", "resent", "resolved", "failed"];

/// Action results.
pub const ACTION_RESULTS: [&str; 8] = [
    "succeeded",
    "failed",
    "denied",
    "dry_run",
    "skipped_cooldown",
    "skipped_circuit_open",
    "cancelled",
    "expired",
];

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Errors
    /// When a name is registered twice.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let build = prometheus::IntGaugeVec::new(
            Opts::new(
                format!("{NS}_build_info"),
                "A metric with a constant 1 labelled by the version of stackmedic-remediator.",
            ),
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(build))?;
        let webhooks = IntCounterVec::new(
            Opts::new(
                format!("{NS}_webhooks_total"),
                "Webhook requests by result.",
            ),
            &["result"],
        )?;
        let alerts = IntCounterVec::new(
            Opts::new(
                format!("{NS}_alerts_total"),
                "Alerts received in webhooks, by decision (queued, duplicate, unmatched, denied, resolved).",
            ),
            &["decision"],
        )?;
        let actions = IntCounterVec::new(
            Opts::new(
                format!("{NS}_actions_total"),
                "Jobs finished, by action kind and result.",
            ),
            &["kind", "result"],
        )?;
        let action_duration = HistogramVec::new(
            HistogramOpts::new(
                format!("{NS}_action_duration_seconds"),
                "Duration of executed actions, verification included.",
            )
            .buckets(vec![
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
            ]),
            &["kind"],
        )?;
        let job_start_delay = Histogram::with_opts(
            HistogramOpts::new(
                format!("{NS}_job_start_delay_seconds"),
                "Time from a job's acceptance to the start of its action, rule delays included.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0,
            ]),
        )?;
        let queue_depth = IntGauge::new(
            format!("{NS}_queue_depth"),
            "Jobs stored and not yet finished.",
        )?;
        let circuits_open = IntGauge::new(
            format!("{NS}_circuits_open"),
            "Subjects whose circuit is open (no more attempts until it closes).",
        )?;
        let escalations = IntCounterVec::new(
            Opts::new(
                format!("{NS}_escalations_total"),
                "Posts of StackmedicRemediationFailed to Alertmanager, by result (delivered: first post, resent: re-post while active, resolved: resolving post, failed).",
            ),
            &["result"],
        )?;
        let escalations_pending = IntGauge::new(
            format!("{NS}_escalations_pending"),
            "Escalations whose latest post has not reached Alertmanager (first post, re-post or resolution).",
        )?;
        let escalations_active = IntGauge::new(
            format!("{NS}_escalations_active"),
            "Escalations active: re-posted to Alertmanager until their alert resolves or their circuit closes.",
        )?;
        let webhook_duration = Histogram::with_opts(
            HistogramOpts::new(
                format!("{NS}_webhook_duration_seconds"),
                "Time to answer a webhook, durable storage included.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0,
            ]),
        )?;
        registry.register(Box::new(webhooks.clone()))?;
        registry.register(Box::new(alerts.clone()))?;
        registry.register(Box::new(actions.clone()))?;
        registry.register(Box::new(action_duration.clone()))?;
        registry.register(Box::new(job_start_delay.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(circuits_open.clone()))?;
        registry.register(Box::new(escalations.clone()))?;
        registry.register(Box::new(escalations_pending.clone()))?;
        registry.register(Box::new(escalations_active.clone()))?;
        registry.register(Box::new(webhook_duration.clone()))?;
        for r in WEBHOOK_RESULTS {
            webhooks.with_label_values(&[r]);
        }
        for d in ALERT_DECISIONS {
            alerts.with_label_values(&[d]);
        }
        for k in ActionKind::ALL {
            for r in ACTION_RESULTS {
                actions.with_label_values(&[k.as_str(), r]);
            }
        }
        for r in ESCALATION_RESULTS {
            escalations.with_label_values(&[r]);
        }
        Ok(Self {
            registry,
            webhooks,
            alerts,
            actions,
            action_duration,
            job_start_delay,
            queue_depth,
            circuits_open,
            escalations,
            escalations_pending,
            escalations_active,
            webhook_duration,
        })
    }

    /// Encodes the registry in the text format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out);
        out
    }
}
