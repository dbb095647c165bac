//! How incidents end: an alert occurrence resolves (Alertmanager delivered its resolve, or
//! reconciliation no longer finds it among Alertmanager's alerts), and an incident left without
//! a firing alert closes, cancelling its pending attempt and resolving its escalation.

use std::collections::{BTreeSet, HashMap};

use super::audit::{self, About};
use super::escalations;
use super::jobs::{self, close};
use super::{args, exec, row, row_opt, rows, Closed, Db, Resolution, Store, StoreError};
use crate::incident::{self, Facts, Input, Open, Policy, Transition};
use crate::vocab::{CloseReason, Event, IncidentState, JobState, ResolvedBy};

/// An alert Alertmanager holds as active, suppressed or unprocessed.
#[derive(Debug, Clone)]
pub struct ActiveAlert {
    /// Its fingerprint.
    pub fingerprint: String,
    /// Its start, when it could be read.
    pub starts_at: Option<f64>,
}

/// Starts that differ by less than this are the same (Alertmanager's API writes milliseconds,
/// its webhook nanoseconds).
const SAME_START: f64 = 0.5;

impl Store {
    /// Resolves the occurrences first seen before `listed_before` that are not among the
    /// `active` alerts Alertmanager listed, and closes the incidents left without an active
    /// alert.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn reconcile(
        &self,
        active: Vec<ActiveAlert>,
        listed_before: f64,
        now: f64,
    ) -> Result<Resolution, StoreError> {
        self.run(move |c| reconcile(c, &active, listed_before, now))
            .await
    }
}

/// An incident row, as far as the model and the audit need it.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub id: i64,
    pub subject: String,
    pub target: String,
    pub rule: String,
    pub action: String,
    pub alertname: String,
    pub fingerprint: String,
    pub state: IncidentState,
    pub attempts: u32,
    pub max_attempts: u32,
    pub current_job: Option<i64>,
    pub healed_at: Option<f64>,
    pub next_attempt_at: Option<f64>,
    /// Whether the current job's action has started.
    pub running: bool,
    pub rechecks: u32,
}

impl Row {
    /// The incident as the model reads it.
    pub fn open(&self) -> Open {
        Open {
            state: self.state,
            attempts: self.attempts,
            running: self.running,
            healed_at: self.healed_at,
            rechecks: self.rechecks,
        }
    }

    fn about(&self) -> About<'_> {
        About {
            incident: Some(self.id),
            rule: &self.rule,
            action: &self.action,
            target: &self.target,
            subject: &self.subject,
            alertname: &self.alertname,
            fingerprint: &self.fingerprint,
            ..About::default()
        }
    }
}

pub(super) fn load_one(
    c: &dyn Db,
    filter: &str,
    p: &[super::db::Value],
) -> Result<Option<Row>, StoreError> {
    row_opt(
        c,
        &format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE {filter}"),
        p,
        |r| incident_row(r, 0),
    )
}

/// The columns of an incident as [`incident_row`] reads them, from the table `incidents`.
pub(super) const INCIDENT_COLUMNS: &str =
    "id, subject, target, rule, action, alertname, fingerprint, state, attempts, max_attempts, \
     current_job, healed_at, next_attempt_at, \
     COALESCE((SELECT CASE WHEN started_at IS NOT NULL THEN 1 ELSE 0 END FROM jobs WHERE jobs.id = incidents.current_job), 0), \
     rechecks";

/// The incident in `r`'s columns from `at` on ([`INCIDENT_COLUMNS`]).
pub(super) fn incident_row(r: &super::db::Row, at: usize) -> Result<Row, StoreError> {
    let state: String = r.get(at + 7)?;
    Ok(Row {
        id: r.get(at)?,
        subject: r.get(at + 1)?,
        target: r.get(at + 2)?,
        rule: r.get(at + 3)?,
        action: r.get(at + 4)?,
        alertname: r.get(at + 5)?,
        fingerprint: r.get(at + 6)?,
        state: IncidentState::parse(&state).unwrap_or(IncidentState::Escalated),
        attempts: r.get(at + 8)?,
        max_attempts: r.get(at + 9)?,
        current_job: r.get(at + 10)?,
        healed_at: r.get(at + 11)?,
        next_attempt_at: r.get(at + 12)?,
        running: r.get(at + 13)?,
        rechecks: r.get(at + 14)?,
    })
}

/// `None` while an alert of incident `id` fires; once every one resolved, how the last one was
/// found resolved.
pub(super) fn quiet(c: &dyn Db, id: i64) -> Result<Option<CloseReason>, StoreError> {
    let (firing, total): (i64, i64) = row(
        c,
        "SELECT COUNT(*) FILTER (WHERE resolved_at IS NULL), COUNT(*) FROM occurrences WHERE incident_id = ?1",
        args![id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if firing > 0 || total == 0 {
        return Ok(None);
    }
    let by: Option<String> = row(
        c,
        "SELECT resolved_by FROM occurrences WHERE incident_id = ?1 ORDER BY resolved_at DESC LIMIT 1",
        args![id],
        |r| r.get(0),
    )?;
    Ok(Some(
        if by.as_deref() == Some(ResolvedBy::Reconciled.as_str()) {
            CloseReason::Reconciled
        } else {
            CloseReason::AlertResolved
        },
    ))
}

/// The open incident with this id.
pub(super) fn open_by_id(c: &dyn Db, id: i64) -> Result<Option<Row>, StoreError> {
    load_one(c, "id = ?1 AND closed_at IS NULL", args![id])
}

/// Closes an open incident: its pending attempt is cancelled, its escalation switched to
/// resolving, and the closing audited.
pub(super) fn close_incident(
    c: &dyn Db,
    id: i64,
    reason: crate::vocab::CloseReason,
    now: f64,
) -> Result<Resolution, StoreError> {
    let mut out = Resolution::default();
    let Some(row) = open_by_id(c, id)? else {
        return Ok(out);
    };
    exec(
c,
        "UPDATE incidents SET state = ?2, closed_at = ?3, updated_at = ?3, close_reason = ?4, current_job = NULL, \
         next_attempt_at = NULL, next_check_at = NULL WHERE id = ?1",
        args![id, IncidentState::Resolved.as_str(), now, reason.as_str()],
    )?;
    if let Some(pending) = row.current_job {
        for job in jobs::load(
            c,
            "id = ?1 AND state = ?2",
            args![pending, JobState::Queued.as_str()],
        )? {
            let detail = format!(
                "the incident closed before its next attempt: {}",
                reason.describe()
            );
            close(c, &job, Event::Cancelled, &detail, now)?;
            out.cancelled.push(job);
        }
    }
    out.escalations_resolving += escalations::resolve_for_incident(c, id, reason, now)?;
    out.escalations_resolving += super::holds::resolve_group_pages(c, now)?;
    audit::write(
        c,
        &audit::Row {
            at: now,
            about: row.about(),
            event: Event::Resolved,
            detail: &format!("incident {id} closed: {}", reason.describe()),
            duration: None,
        },
    )?;
    out.closed.push(Closed {
        id,
        subject: row.subject,
        reason,
    });
    Ok(out)
}

/// Marks an alert occurrence (every rule's) resolved, cancels its undecided jobs, and closes
/// the incidents it leaves without an unresolved alert. A delivered resolve of an occurrence
/// not seen yet is remembered when `remember` (its alert matches a rule): a firing of it that
/// arrives later never acts.
pub(super) fn resolve_alert(
    c: &dyn Db,
    fingerprint: &str,
    starts_at: &str,
    by: ResolvedBy,
    remember: bool,
    now: f64,
) -> Result<Resolution, StoreError> {
    let mut out = Resolution::default();
    let incidents: BTreeSet<i64> = rows(
        c,
        "SELECT DISTINCT incident_id FROM occurrences WHERE fingerprint = ?1 AND starts_at = ?2 \
         AND resolved_at IS NULL AND incident_id IS NOT NULL",
        args![fingerprint, starts_at],
        |r| r.get(0),
    )?
    .into_iter()
    .collect();
    out.occurrences = exec(
c,
        "UPDATE occurrences SET resolved_at = ?3, resolved_by = ?4 WHERE fingerprint = ?1 AND starts_at = ?2 AND resolved_at IS NULL",
        args![fingerprint, starts_at, now, by.as_str()],
    )?;
    let undecided = jobs::load(
        c,
        "state = ?1 AND fingerprint = ?2 AND starts_at = ?3 AND incident_id IS NULL ORDER BY id",
        args![JobState::Queued.as_str(), fingerprint, starts_at],
    )?;
    for job in undecided {
        close(
            c,
            &job,
            Event::Cancelled,
            "the alert resolved before the action ran",
            now,
        )?;
        out.cancelled.push(job);
    }
    if out.occurrences == 0 && remember && by == ResolvedBy::Alert {
        let seen: i64 = row(
            c,
            "SELECT COUNT(*) FROM occurrences WHERE fingerprint = ?1 AND starts_at = ?2",
            args![fingerprint, starts_at],
            |r| r.get(0),
        )?;
        if seen == 0 {
            exec(
                c,
                "INSERT INTO early_resolves (fingerprint, starts_at, at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                args![fingerprint, starts_at, now],
            )?;
            out.remembered += 1;
        }
    }
    let facts = Facts {
        now,
        policy: Policy::default(),
        dry_run: false,
        configured: true,
        late: false,
        healed_in_window: 0,
        hold: None,
        quiet: None,
    };
    let input = Input::Resolved {
        delivered: by == ResolvedBy::Alert,
    };
    for id in incidents {
        let firing: i64 = row(
            c,
            "SELECT COUNT(*) FROM occurrences WHERE incident_id = ?1 AND resolved_at IS NULL",
            args![id],
            |r| r.get(0),
        )?;
        if firing > 0 {
            continue;
        }
        let Some(inc) = open_by_id(c, id)? else {
            continue;
        };
        // An attempt in progress or stored decides (`Await`); the others close now.
        if let Some(Transition::Close(reason)) = incident::step(Some(&inc.open()), input, &facts) {
            out.merge(close_incident(c, id, reason, now)?);
        }
    }
    Ok(out)
}

fn reconcile(
    c: &dyn Db,
    active: &[ActiveAlert],
    listed_before: f64,
    now: f64,
) -> Result<Resolution, StoreError> {
    let mut by_fingerprint: HashMap<&str, Vec<Option<f64>>> = HashMap::new();
    for a in active {
        by_fingerprint
            .entry(a.fingerprint.as_str())
            .or_default()
            .push(a.starts_at);
    }
    let open: Vec<(String, String, Option<f64>)> = rows(
        c,
        "SELECT DISTINCT fingerprint, starts_at, starts_at_s FROM occurrences \
         WHERE resolved_at IS NULL AND first_seen < ?1",
        args![listed_before],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?
    .into_iter()
    .collect();
    let mut out = Resolution::default();
    for (fingerprint, starts_at, start) in open {
        let listed = by_fingerprint
            .get(fingerprint.as_str())
            .is_some_and(|starts| {
                starts.iter().any(|s| match (s, start) {
                    (Some(a), Some(b)) => (a - b).abs() < SAME_START,
                    _ => true,
                })
            });
        if !listed {
            out.merge(resolve_alert(
                c,
                &fingerprint,
                &starts_at,
                ResolvedBy::Reconciled,
                false,
                now,
            )?);
        }
    }
    Ok(out)
}
