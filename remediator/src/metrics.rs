//! The remediator's own metrics, under `stackmedic_remediator_`. Label values come from the
//! bounded vocabularies of [`crate::vocab`] and [`crate::action::ActionKind`], and every
//! combination is exported from the start; `alertname` of unmatched alerts is capped.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::action::ActionKind;
use crate::limits;
use crate::vocab::{AlertDecision, Event, IncidentState, PostOutcome, WebhookResult};

const NS: &str = "stackmedic_remediator";

/// Most distinct `alertname` values of the unmatched counter; further names are counted as
/// [`OTHER_ALERTNAME`], so a sender cannot grow the label set without bound.
pub const MAX_UNMATCHED_NAMES: usize = 200;

/// The `alertname` value counting unmatched alerts beyond [`MAX_UNMATCHED_NAMES`].
pub const OTHER_ALERTNAME: &str = "__other__";

/// Every metric of the process.
pub struct Metrics {
    /// The registry served on `/metrics`.
    pub registry: Registry,
    /// Webhook requests by result.
    pub webhooks: IntCounterVec,
    /// Alerts received, by what was decided.
    pub alerts: IntCounterVec,
    /// Firing alerts no rule matched, by alert name.
    unmatched: IntCounterVec,
    unmatched_names: Mutex<HashSet<String>>,
    /// Jobs ended, by action kind and result.
    pub actions: IntCounterVec,
    /// Duration of executed actions including verification.
    pub action_duration: HistogramVec,
    /// Time from a job's acceptance to the start of its action.
    pub job_start_delay: Histogram,
    /// Jobs due and not finished.
    pub queue_depth: IntGauge,
    /// Open incidents by state.
    pub incidents: IntGaugeVec,
    /// Escalation posts by result.
    pub escalations: IntCounterVec,
    /// Escalations with an undelivered post.
    pub escalations_pending: IntGauge,
    /// Escalations active (firing, re-posted).
    pub escalations_active: IntGauge,
    /// Reconciliations with Alertmanager by result.
    pub reconciliations: IntCounterVec,
    /// Alert occurrences found resolved by reconciliation.
    pub reconciled_alerts: IntCounter,
    /// Requests to each Alertmanager, by request and result.
    pub alertmanager_requests: IntCounterVec,
    /// What the memory of unmatched alerts forgot or did not log, by what.
    pub unmatched_dropped: IntCounterVec,
    /// Duration of webhook handling.
    pub webhook_duration: Histogram,
    /// Re-checks of heals whose alert still fired, by result.
    pub rechecks: IntCounterVec,
    /// Decisions put off because a subject could not be made canonical.
    pub postponed: IntCounter,
    /// On-call resets of subjects.
    pub resets: IntCounter,
    /// Store operations that failed.
    pub store_errors: IntCounter,
    /// Whether the store writes (1) or its latest operation failed (0).
    pub store_writable: IntGauge,
    /// 1 while on-call has paused the remediator.
    pub paused: IntGauge,
    /// The planned end of the pause (0 without one, or when not paused).
    pub pause_until: prometheus::Gauge,
    /// 1 while this replica is the leader.
    pub leader: IntGauge,
    /// Replicas whose lease runs, as the latest renewal found.
    pub replicas: IntGauge,
    /// Unfinished jobs this replica holds.
    pub jobs_held: IntGauge,
    /// Jobs taken over from replicas whose lease ran out.
    pub takeovers: IntCounter,
    /// Lease renewals by result.
    pub lease_renewals: IntCounterVec,
    /// Store transactions run again after a conflict with another transaction.
    pub store_conflicts: IntCounter,
}

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Errors
    /// When a name is registered twice.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let build = IntGaugeVec::new(
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
                "Alerts received in webhooks, by decision (queued, duplicate, unmatched, denied, resolved, ignored).",
            ),
            &["decision"],
        )?;
        let unmatched = IntCounterVec::new(
            Opts::new(
                format!("{NS}_unmatched_alerts_total"),
                "Firing alerts no rule matched, by alertname (at most 200 names; further ones as __other__).",
            ),
            &["alertname"],
        )?;
        let actions = IntCounterVec::new(
            Opts::new(
                format!("{NS}_actions_total"),
                "Jobs ended, by action kind and result.",
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
                "Time from a job's acceptance to the start of its action, rule delays and backoff included.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0,
            ]),
        )?;
        let queue_depth = IntGauge::new(
            format!("{NS}_queue_depth"),
            "Jobs due and not finished (a job waiting for its rule's delay or its incident's next attempt time is not counted).",
        )?;
        let incidents = IntGaugeVec::new(
            Opts::new(
                format!("{NS}_incidents"),
                "Open incidents by state (acting, verifying, waiting, healed, escalated).",
            ),
            &["state"],
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
            "Escalations active: re-posted to Alertmanager until their incident's alerts resolve.",
        )?;
        let reconciliations = IntCounterVec::new(
            Opts::new(
                format!("{NS}_reconciliations_total"),
                "Reconciliations of open incidents with Alertmanager's alerts, by result (ok; held: a member started less than twice Prometheus' resend delay ago, so nothing was resolved; failed: no member could be asked).",
            ),
            &["result"],
        )?;
        let reconciled_alerts = IntCounter::new(
            format!("{NS}_reconciled_alerts_total"),
            "Alert occurrences found resolved by reconciliation: their resolve never reached the remediator.",
        )?;
        let alertmanager_requests = IntCounterVec::new(
            Opts::new(
                format!("{NS}_alertmanager_requests_total"),
                "Requests to each configured Alertmanager (scheme://host:port), by request (post: an escalation post; status, alerts: reconciliation) and result (ok, failed).",
            ),
            &["alertmanager", "request", "result"],
        )?;
        let unmatched_dropped = IntCounterVec::new(
            Opts::new(
                format!("{NS}_unmatched_dropped_total"),
                "What the remediator did not keep of unmatched alerts, by what (name: an alert name forgotten before its hour ended, to stay within 200 names and 256 KiB; log_line: a 'no rule matches' line not written, beyond 10 a minute).",
            ),
            &["what"],
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
        let rechecks = IntCounterVec::new(
            Opts::new(
                format!("{NS}_rechecks_total"),
                "Re-checks of healed incidents whose alert still fired verify.resolve_within after the heal, by result (passed, failed: a failed attempt of the same incident).",
            ),
            &["result"],
        )?;
        let postponed = IntCounter::new(
            format!("{NS}_subject_postponed_total"),
            "Decisions put off because the subject could not be made canonical (the Docker Engine or the bus could not be asked); the job is tried again.",
        )?;
        let resets = IntCounter::new(
            format!("{NS}_resets_total"),
            "Subjects reset by on-call (POST /api/subjects/{subject}/reset).",
        )?;
        let store_errors = IntCounter::new(
            format!("{NS}_store_errors_total"),
            "Store operations that failed (a full or read-only disk, I/O errors); webhooks got 503 and stored work waited to be tried again.",
        )?;
        let store_writable = IntGauge::new(
            format!("{NS}_store_writable"),
            "1 while the store writes, 0 from a failed operation until a later one (or the write probe) succeeds.",
        )?;
        let paused = IntGauge::new(
            format!("{NS}_paused"),
            "1 while on-call has paused the remediator (POST /api/pause): no action starts; alerts are recorded and incidents held.",
        )?;
        let pause_until = prometheus::Gauge::new(
            format!("{NS}_pause_until_timestamp_seconds"),
            "The planned end of the pause in force (0 when not paused, or paused without an end).",
        )?;
        let leader = IntGauge::new(
            format!("{NS}_leader"),
            "1 while this replica is the leader: it posts escalations, reconciles with Alertmanager, re-checks heals, releases held incidents and prunes the history.",
        )?;
        let replicas = IntGauge::new(
            format!("{NS}_replicas"),
            "Replicas sharing the store whose lease runs, this one included, as its latest lease renewal found.",
        )?;
        let jobs_held = IntGauge::new(
            format!("{NS}_jobs_held"),
            "Unfinished jobs this replica holds under its lease (accepted here or taken over).",
        )?;
        let takeovers = IntCounter::new(
            format!("{NS}_takeovers_total"),
            "Unfinished jobs this replica took over from replicas whose lease ran out (a started action is verified, not run again).",
        )?;
        let lease_renewals = IntCounterVec::new(
            Opts::new(
                format!("{NS}_lease_renewals_total"),
                "Renewals of this replica's lease, by result (ok, failed: the store could not be written; the lease runs out if it goes on).",
            ),
            &["result"],
        )?;
        let store_conflicts = IntCounter::new(
            format!("{NS}_store_conflicts_total"),
            "Store transactions run again because another transaction (of another replica, or of this replica's other writer) changed what they read at the same moment (PostgreSQL).",
        )?;
        for r in ["ok", "failed"] {
            lease_renewals.with_label_values(&[r]);
        }
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(replicas.clone()))?;
        registry.register(Box::new(jobs_held.clone()))?;
        registry.register(Box::new(takeovers.clone()))?;
        registry.register(Box::new(lease_renewals.clone()))?;
        registry.register(Box::new(store_conflicts.clone()))?;
        registry.register(Box::new(paused.clone()))?;
        registry.register(Box::new(pause_until.clone()))?;
        registry.register(Box::new(store_errors.clone()))?;
        registry.register(Box::new(store_writable.clone()))?;
        registry.register(Box::new(rechecks.clone()))?;
        registry.register(Box::new(postponed.clone()))?;
        registry.register(Box::new(resets.clone()))?;
        for r in ["passed", "failed"] {
            rechecks.with_label_values(&[r]);
        }
        registry.register(Box::new(webhooks.clone()))?;
        registry.register(Box::new(alerts.clone()))?;
        registry.register(Box::new(unmatched.clone()))?;
        registry.register(Box::new(actions.clone()))?;
        registry.register(Box::new(action_duration.clone()))?;
        registry.register(Box::new(job_start_delay.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(incidents.clone()))?;
        registry.register(Box::new(escalations.clone()))?;
        registry.register(Box::new(escalations_pending.clone()))?;
        registry.register(Box::new(escalations_active.clone()))?;
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(reconciled_alerts.clone()))?;
        registry.register(Box::new(alertmanager_requests.clone()))?;
        registry.register(Box::new(unmatched_dropped.clone()))?;
        registry.register(Box::new(webhook_duration.clone()))?;
        for r in WebhookResult::ALL {
            webhooks.with_label_values(&[r.as_str()]);
        }
        for d in AlertDecision::ALL {
            alerts.with_label_values(&[d.as_str()]);
        }
        for k in ActionKind::ALL {
            for r in Event::JOB_RESULTS {
                actions.with_label_values(&[k.as_str(), r.as_str()]);
            }
        }
        for s in IncidentState::OPEN {
            incidents.with_label_values(&[s.as_str()]);
        }
        for r in PostOutcome::ALL {
            escalations.with_label_values(&[r.as_str()]);
        }
        for w in ["name", "log_line"] {
            unmatched_dropped.with_label_values(&[w]);
        }
        for r in ["ok", "held", "failed"] {
            reconciliations.with_label_values(&[r]);
        }
        Ok(Self {
            registry,
            webhooks,
            alerts,
            unmatched,
            unmatched_names: Mutex::new(HashSet::new()),
            actions,
            action_duration,
            job_start_delay,
            queue_depth,
            incidents,
            escalations,
            escalations_pending,
            escalations_active,
            reconciliations,
            reconciled_alerts,
            alertmanager_requests,
            unmatched_dropped,
            webhook_duration,
            rechecks,
            postponed,
            resets,
            store_errors,
            store_writable,
            paused,
            pause_until,
            leader,
            replicas,
            jobs_held,
            takeovers,
            lease_renewals,
            store_conflicts,
        })
    }

    /// Brings `…_unmatched_dropped_total` up to what the memory of unmatched alerts counted.
    pub fn set_unmatched_dropped(&self, dropped: crate::unmatched::Dropped) {
        for (what, total) in [("name", dropped.names), ("log_line", dropped.log_lines)] {
            let c = self.unmatched_dropped.with_label_values(&[what]);
            let have = c.get();
            if total > have {
                c.inc_by(total - have);
            }
        }
    }

    /// Counts a webhook request.
    pub fn webhook(&self, result: WebhookResult) {
        self.webhooks.with_label_values(&[result.as_str()]).inc();
    }

    /// Counts alerts of a webhook by decision.
    pub fn alerts(&self, decision: AlertDecision, n: usize) {
        self.alerts
            .with_label_values(&[decision.as_str()])
            .inc_by(n as u64);
    }

    /// Counts a job's end.
    pub fn job(&self, kind: ActionKind, result: Event) {
        self.actions
            .with_label_values(&[kind.as_str(), result.as_str()])
            .inc();
    }

    /// Counts a firing alert no rule matched; a name is cut to [`limits::NAME_BYTES`].
    pub fn unmatched(&self, alertname: &str) {
        let cut = limits::cut(alertname, limits::NAME_BYTES);
        let alertname = cut.as_str();
        let mut names = self
            .unmatched_names
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let label = if names.contains(alertname) {
            alertname
        } else if names.len() < MAX_UNMATCHED_NAMES {
            names.insert(alertname.to_string());
            alertname
        } else {
            OTHER_ALERTNAME
        };
        self.unmatched.with_label_values(&[label]).inc();
    }

    /// Counts a post of an escalation.
    pub fn escalation_post(&self, outcome: PostOutcome) {
        self.escalations
            .with_label_values(&[outcome.as_str()])
            .inc();
    }

    /// Encodes the registry in the text format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out);
        out
    }
}
