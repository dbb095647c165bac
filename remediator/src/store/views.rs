//! Typed read views of the store, for `GET /api/actions` (serialized as they are), the on-call
//! page and the gauges.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{args, row, rows, Db, Store, StoreError};
use crate::vocab::{CloseReason, EscalationState, IncidentState, JobState};

/// One row of the audit history.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    /// Row id.
    pub id: i64,
    /// When.
    pub time: f64,
    /// The job, for job results.
    pub job_id: Option<i64>,
    /// The incident, when there is one.
    pub incident_id: Option<i64>,
    /// Rule name.
    pub rule: String,
    /// Action kind.
    pub action: String,
    /// Target name.
    pub target: String,
    /// Subject.
    pub subject: String,
    /// Alert name.
    pub alertname: String,
    /// Alert fingerprint.
    pub fingerprint: String,
    /// An [`crate::vocab::Event`]; rows migrated from the previous release keep the results it
    /// wrote (`skipped_cooldown`, `skipped_circuit_open`).
    pub result: String,
    /// What happened, in words.
    pub detail: String,
    /// Duration of an executed action, verification included.
    pub duration_seconds: Option<f64>,
    /// When the job was accepted.
    pub accepted_at: Option<f64>,
    /// When the action started.
    pub started_at: Option<f64>,
    /// How many times this row happened: a denial repeated for one subject (same rule, target,
    /// alert name and reason) is counted on one row, whose `time` is the latest.
    pub count: i64,
    /// When a counted denial first happened.
    pub first_time: Option<f64>,
    /// The replica that wrote it (ran the attempt).
    pub replica: Option<String>,
}

/// An alert occurrence of an incident.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRef {
    /// Alert name.
    pub alertname: String,
    /// Start, as Alertmanager wrote it.
    pub starts_at: String,
    /// When it resolved, if it did.
    pub resolved_at: Option<f64>,
}

/// A subject's flapping count.
#[derive(Debug, Clone, Serialize)]
pub struct FlappingView {
    /// Incidents of the subject healed within the window.
    pub healed_in_window: u32,
    /// The count that makes the subject flapping (0: never).
    pub count: u32,
    /// The window in seconds.
    pub window_seconds: f64,
}

/// An incident of a subject.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentView {
    /// Row id.
    pub id: i64,
    /// The subject.
    pub subject: String,
    /// Target name.
    pub target: String,
    /// The rule of the alert that opened it.
    pub rule: String,
    /// Action kind.
    pub action: String,
    /// The alert that opened it.
    pub alertname: String,
    /// Its state.
    pub state: IncidentState,
    /// When it opened.
    pub opened_at: f64,
    /// When it last changed.
    pub updated_at: f64,
    /// Attempts started in this incident.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// When the next attempt runs, while waiting.
    pub next_attempt_at: Option<f64>,
    /// When it healed.
    pub healed_at: Option<f64>,
    /// While healed: when it is verified again if an alert of it still fires then
    /// (`verify.resolve_within` after the heal).
    pub next_check_at: Option<f64>,
    /// Re-checks that passed while its alert still fired.
    pub rechecks: u32,
    /// When it was escalated.
    pub escalated_at: Option<f64>,
    /// What happened last, in words.
    pub detail: String,
    /// When it closed.
    pub closed_at: Option<f64>,
    /// Why it closed.
    pub close_reason: Option<CloseReason>,
    /// Its alerts, the latest [`ALERTS_SHOWN`] of them.
    pub alerts: Vec<AlertRef>,
    /// How many alerts it has in all.
    pub alerts_total: u32,
    /// The subject's flapping count.
    pub flapping: FlappingView,
    /// Whether its escalation is firing in Alertmanager (a page is active).
    pub page_active: bool,
    /// Its escalation, if any.
    pub escalation_id: Option<i64>,
}

/// A stored job not finished yet.
#[derive(Debug, Clone, Serialize)]
pub struct PendingJob {
    /// Row id.
    pub job_id: i64,
    /// Queued or running.
    pub state: JobState,
    /// When it was stored.
    pub accepted_at: f64,
    /// Its earliest start: the rule's delay, or its incident's next attempt time.
    pub not_before: f64,
    /// Rule name.
    pub rule: String,
    /// Action kind.
    pub action: String,
    /// Target name.
    pub target: String,
    /// Subject.
    pub subject: String,
    /// Alert name.
    pub alertname: String,
    /// Its incident, once decided.
    pub incident_id: Option<i64>,
    /// Whether it is an incident's next attempt.
    pub retry: bool,
    /// Why it waits, when its decision was put off (its subject could not be made canonical).
    pub note: Option<String>,
    /// How often its decision was put off.
    pub postponed: u32,
    /// The replica holding it.
    pub replica: Option<String>,
}

/// An escalation in the outbox.
#[derive(Debug, Clone, Serialize)]
pub struct EscalationView {
    /// Row id.
    pub id: i64,
    /// The job it was decided on.
    pub job_id: Option<i64>,
    /// Its incident.
    pub incident_id: Option<i64>,
    /// When it was stored.
    pub created_at: f64,
    /// Posts tried.
    pub tries: i64,
    /// When Alertmanager first accepted it.
    pub delivered_at: Option<f64>,
    /// The last post's error, while failing.
    pub last_error: Option<String>,
    /// The subject.
    pub subject: String,
    /// Its state.
    pub state: EscalationState,
    /// Posts Alertmanager accepted.
    pub posts: i64,
    /// Failed posts since the last accepted one.
    pub failures: i64,
    /// When it was last accepted.
    pub last_post_at: Option<f64>,
    /// When it is posted next (none once resolved).
    pub next_post_at: Option<f64>,
    /// Why it resolves.
    pub resolve_reason: Option<String>,
    /// When the resolving post was accepted.
    pub resolved_at: Option<f64>,
    /// The original alert's name.
    pub alertname: Option<String>,
    /// The rule.
    pub rule: Option<String>,
    /// The target.
    pub target: Option<String>,
    /// The action kind.
    pub action: Option<String>,
    /// The alerts of its incident, as in the `alerts` annotation.
    pub alerts: Option<String>,
}

/// Alerts listed per incident, the latest ones; `alerts_total` counts them all.
pub const ALERTS_SHOWN: usize = 20;

/// Most audit rows of one page of history.
pub const MAX_ACTIONS: usize = 500;

/// Most bytes of text (details, names, labels) in one page of history; a page ends before the
/// row that would pass it, and `next_before` says where the next one starts.
pub const PAGE_TEXT_BYTES: usize = 256 * 1024;

/// Everything `GET /api/actions` and the page show from the store.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// One page of the audit history, newest first: rows older than the requested `before` id.
    pub actions: Vec<AuditRow>,
    /// The `before` of the next (older) page, when there are older rows.
    pub next_before: Option<i64>,
    /// Open incidents, newest first.
    pub incidents: Vec<IncidentView>,
    /// The most recently closed incidents.
    pub recent_incidents: Vec<IncidentView>,
    /// Jobs not finished.
    pub pending_jobs: Vec<PendingJob>,
    /// The latest escalations, newest first.
    pub escalations: Vec<EscalationView>,
}

/// Counts for the gauges.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Jobs due (their time came) and not finished.
    pub due_jobs: i64,
    /// Open incidents by state, every open state listed.
    pub incidents: Vec<(IncidentState, i64)>,
    /// Escalations with an undelivered post.
    pub escalations_pending: i64,
    /// Escalations firing.
    pub escalations_active: i64,
}

/// How many of each list [`Store::overview`] returns.
#[derive(Debug, Clone, Copy)]
pub struct OverviewLimits {
    /// Audit rows (at most [`MAX_ACTIONS`], and at most [`PAGE_TEXT_BYTES`] of their text).
    pub actions: usize,
    /// Only audit rows with a smaller id: the page of history after the one that ended there.
    pub before: Option<i64>,
    /// Closed incidents.
    pub closed_incidents: usize,
    /// Escalations.
    pub escalations: usize,
}

impl Store {
    /// The audit history, incidents, pending jobs and escalations.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn overview(&self, limits: OverviewLimits, now: f64) -> Result<Overview, StoreError> {
        self.read(move |c| {
            let (actions, next_before) = audit_rows(c, limits.actions, limits.before)?;
            Ok(Overview {
                actions,
                next_before,
                incidents: incidents(
                    c,
                    "closed_at IS NULL ORDER BY opened_at DESC, id DESC",
                    args![],
                    now,
                )?,
                recent_incidents: incidents(
                    c,
                    "closed_at IS NOT NULL ORDER BY closed_at DESC, id DESC LIMIT ?1",
                    args![limits.closed_incidents as i64],
                    now,
                )?,
                pending_jobs: pending(c)?,
                escalations: escalations(
                    c,
                    "ORDER BY id DESC LIMIT ?1",
                    args![limits.escalations as i64],
                )?,
            })
        })
        .await
    }

    /// Escalations for the page: every active one (firing or resolving), newest first, and the
    /// `resolved` most recently resolved ones.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn escalation_overview(
        &self,
        resolved: usize,
    ) -> Result<(Vec<EscalationView>, Vec<EscalationView>), StoreError> {
        self.read(move |c| {
            let active = escalations(
                c,
                "WHERE state != ?1 ORDER BY id DESC",
                args![EscalationState::Resolved.as_str()],
            )?;
            let done = escalations(
                c,
                "WHERE state = ?1 ORDER BY resolved_at DESC, id DESC LIMIT ?2",
                args![EscalationState::Resolved.as_str(), resolved as i64],
            )?;
            Ok((active, done))
        })
        .await
    }

    /// Counts for the gauges.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn gauges(&self, now: f64) -> Result<Gauges, StoreError> {
        self.read(move |c| {
            let due_jobs = row(
                c,
                "SELECT COUNT(*) FROM jobs WHERE state = ?1 OR (state = ?2 AND not_before <= ?3)",
                args![JobState::Running.as_str(), JobState::Queued.as_str(), now],
                |r| r.get(0),
            )?;
            let mut incidents = Vec::new();
            for state in IncidentState::OPEN {
                let n: i64 = row(
                    c,
                    "SELECT COUNT(*) FROM incidents WHERE closed_at IS NULL AND state = ?1",
                    args![state.as_str()],
                    |r| r.get(0),
                )?;
                incidents.push((*state, n));
            }
            let escalations_pending = row(
                c,
                "SELECT COUNT(*) FROM escalations WHERE state = ?1 \
                 OR (state = ?2 AND (delivered_at IS NULL OR failures > 0))",
                args![
                    EscalationState::Resolving.as_str(),
                    EscalationState::Firing.as_str()
                ],
                |r| r.get(0),
            )?;
            let escalations_active = row(
                c,
                "SELECT COUNT(*) FROM escalations WHERE state = ?1",
                args![EscalationState::Firing.as_str()],
                |r| r.get(0),
            )?;
            Ok(Gauges {
                due_jobs,
                incidents,
                escalations_pending,
                escalations_active,
            })
        })
        .await
    }
}

fn audit_rows(
    c: &dyn Db,
    limit: usize,
    before: Option<i64>,
) -> Result<(Vec<AuditRow>, Option<i64>), StoreError> {
    let limit = limit.clamp(1, MAX_ACTIONS);
    let rows = rows(
        c,
        "SELECT id, at, job_id, incident_id, rule, action, target, subject, alertname, fingerprint, result, detail, \
         duration_seconds, accepted_at, started_at, count, first_at, replica FROM audit WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
        // One row more than asked tells whether an older page exists.
        args![before.unwrap_or(i64::MAX), limit as i64 + 1],
        |r| {
        Ok(AuditRow {
            id: r.get(0)?,
            time: r.get(1)?,
            job_id: r.get(2)?,
            incident_id: r.get(3)?,
            rule: r.get(4)?,
            action: r.get(5)?,
            target: r.get(6)?,
            subject: r.get(7)?,
            alertname: r.get(8)?,
            fingerprint: r.get(9)?,
            result: r.get(10)?,
            detail: r.get(11)?,
            duration_seconds: r.get(12)?,
            accepted_at: r.get(13)?,
            started_at: r.get(14)?,
            count: r.get(15)?,
            first_time: r.get(16)?,
            replica: r.get(17)?,
        })
        },
    )?;
    let mut out = Vec::new();
    let mut text = 0;
    for row in rows {
        let size = row.rule.len()
            + row.action.len()
            + row.target.len()
            + row.subject.len()
            + row.alertname.len()
            + row.fingerprint.len()
            + row.result.len()
            + row.detail.len();
        if out.len() == limit || (!out.is_empty() && text + size > PAGE_TEXT_BYTES) {
            let next = out.last().map(|r: &AuditRow| r.id);
            return Ok((out, next));
        }
        text += size;
        out.push(row);
    }
    Ok((out, None))
}

fn incidents(
    c: &dyn Db,
    filter: &str,
    p: &[super::db::Value],
    now: f64,
) -> Result<Vec<IncidentView>, StoreError> {
    let mut out = rows(
        c,
        &format!(
        "SELECT id, subject, target, rule, action, alertname, state, opened_at, updated_at, attempts, max_attempts, \
         next_attempt_at, healed_at, escalated_at, detail, closed_at, close_reason, flapping_count, flapping_window, \
         next_check_at, rechecks FROM incidents WHERE {filter}"
    ),
        p,
        |r| {
        let state: String = r.get(6)?;
        let reason: Option<String> = r.get(16)?;
        Ok(IncidentView {
            id: r.get(0)?,
            subject: r.get(1)?,
            target: r.get(2)?,
            rule: r.get(3)?,
            action: r.get(4)?,
            alertname: r.get(5)?,
            state: IncidentState::parse(&state).unwrap_or(IncidentState::Escalated),
            opened_at: r.get(7)?,
            updated_at: r.get(8)?,
            attempts: r.get(9)?,
            max_attempts: r.get(10)?,
            next_attempt_at: r.get(11)?,
            healed_at: r.get(12)?,
            next_check_at: r.get(19)?,
            rechecks: r.get(20)?,
            escalated_at: r.get(13)?,
            detail: r.get(14)?,
            closed_at: r.get(15)?,
            close_reason: reason.as_deref().and_then(CloseReason::parse),
            alerts: Vec::new(),
            alerts_total: 0,
            flapping: FlappingView {
                healed_in_window: 0,
                count: r.get(17)?,
                window_seconds: r.get(18)?,
            },
            page_active: false,
            escalation_id: None,
        })
    },
    )?;
    for i in &mut out {
        i.alerts_total = row(
            c,
            "SELECT COUNT(*) FROM occurrences WHERE incident_id = ?1",
            args![i.id],
            |r| r.get(0),
        )?;
        // The latest ones, listed oldest first.
        i.alerts = rows(
            c,
            "SELECT alertname, starts_at, resolved_at FROM \
             (SELECT alertname, starts_at, resolved_at, first_seen FROM occurrences WHERE incident_id = ?1 \
              ORDER BY first_seen DESC LIMIT ?2) AS latest ORDER BY first_seen",
            args![i.id, ALERTS_SHOWN as i64],
            |r| {
                Ok(AlertRef {
                    alertname: r.get(0)?,
                    starts_at: r.get(1)?,
                    resolved_at: r.get(2)?,
                })
            },
        )?;
        i.flapping.healed_in_window = row(
            c,
            "SELECT COUNT(*) FROM incidents WHERE subject = ?1 AND healed_at >= ?2 \
             AND healed_at >= COALESCE((SELECT reset_at FROM subjects WHERE subject = ?1), 0)",
            args![i.subject, now - i.flapping.window_seconds],
            |r| r.get(0),
        )?;
        let page: Option<(i64, String)> = row(
            c,
            "SELECT id, state FROM escalations WHERE incident_id = ?1 ORDER BY id DESC LIMIT 1",
            args![i.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok();
        if let Some((id, state)) = page {
            i.escalation_id = Some(id);
            i.page_active = state == EscalationState::Firing.as_str();
        }
    }
    Ok(out)
}

fn pending(c: &dyn Db) -> Result<Vec<PendingJob>, StoreError> {
    let rows = rows(
        c,
        "SELECT id, state, accepted_at, not_before, rule, action, target, subject, \
         labels, incident_id, retry, note, postponed, owner \
         FROM jobs WHERE state IN (?1, ?2) ORDER BY not_before, id LIMIT 100",
        args![JobState::Queued.as_str(), JobState::Running.as_str()],
        |r| {
            let state: String = r.get(1)?;
            Ok(PendingJob {
                job_id: r.get(0)?,
                state: JobState::parse(&state).unwrap_or(JobState::Queued),
                accepted_at: r.get(2)?,
                not_before: r.get(3)?,
                rule: r.get(4)?,
                action: r.get(5)?,
                target: r.get(6)?,
                subject: r.get(7)?,
                alertname: serde_json::from_str::<BTreeMap<String, String>>(&r.get::<String>(8)?)
                    .ok()
                    .and_then(|mut l| l.remove("alertname"))
                    .unwrap_or_default(),
                incident_id: r.get(9)?,
                retry: r.get::<i64>(10)? != 0,
                note: r.get(11)?,
                postponed: r.get(12)?,
                // The instance is NAME/PID/START.
                replica: r
                    .get::<Option<String>>(13)?
                    .map(|o| o.split('/').next().unwrap_or_default().to_string()),
            })
        },
    )?;
    Ok(rows)
}

fn escalations(
    c: &dyn Db,
    filter: &str,
    p: &[super::db::Value],
) -> Result<Vec<EscalationView>, StoreError> {
    let rows = rows(
        c,
        &format!(
        "SELECT id, job_id, incident_id, created_at, tries, delivered_at, last_error, subject, state, posts, \
         last_post_at, next_try_at, resolve_reason, resolved_at, failures, payload FROM escalations {filter}"
    ),
        p,
        |r| {
        let state: String = r.get(8)?;
        let state = EscalationState::parse(&state).unwrap_or(EscalationState::Firing);
        let payload: Value = serde_json::from_str(&r.get::<String>(15)?).unwrap_or(Value::Null);
        let label = |name: &str| payload[0]["labels"][name].as_str().map(str::to_owned);
        Ok(EscalationView {
            id: r.get(0)?,
            job_id: r.get(1)?,
            incident_id: r.get(2)?,
            created_at: r.get(3)?,
            tries: r.get(4)?,
            delivered_at: r.get(5)?,
            last_error: r.get(6)?,
            subject: r.get(7)?,
            state,
            posts: r.get(9)?,
            last_post_at: r.get(10)?,
            next_post_at: (state != EscalationState::Resolved).then_some(r.get(11)?),
            resolve_reason: r.get(12)?,
            resolved_at: r.get(13)?,
            failures: r.get(14)?,
            alertname: label("original_alertname"),
            rule: label("remediation_rule"),
            target: label("remediation_target"),
            action: label("remediation_action"),
            alerts: payload[0]["annotations"]["alerts"]
                .as_str()
                .map(str::to_owned),
        })
    },
    )?;
    Ok(rows)
}
