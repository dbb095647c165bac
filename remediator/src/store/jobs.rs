//! Jobs: durable acceptance of a webhook (one job per new alert occurrence and rule), resume
//! after a start, closing a job without an attempt, and pruning old history.

use rusqlite::{params, Connection, OptionalExtension};

use super::audit::{self, About};
use super::endings::{self, resolve_alert};
use super::{exec, row, Closed, Job, NewJob, Resolution, Store, StoreError};
use crate::action::ActionKind;
use crate::vocab::{CloseReason, Event, JobState, ResolvedBy};

/// A refusal decided while accepting a webhook.
#[derive(Debug, Clone)]
pub struct Denial {
    /// Rule name.
    pub rule: String,
    /// Action kind.
    pub action: ActionKind,
    /// Target name, when known.
    pub target: String,
    /// Alert name.
    pub alertname: String,
    /// Alert fingerprint.
    pub fingerprint: String,
    /// Why.
    pub reason: String,
}

/// One accepted webhook's worth of writes.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Jobs to queue unless their occurrence was seen before.
    pub jobs: Vec<NewJob>,
    /// Refusals to audit.
    pub denials: Vec<Denial>,
    /// `(fingerprint, starts_at)` of resolved alerts.
    pub resolved: Vec<(String, String)>,
}

/// What became of a [`Batch`].
#[derive(Debug, Default)]
pub struct Accepted {
    /// Newly queued jobs.
    pub queued: Vec<Job>,
    /// Jobs not queued because their occurrence was seen before (a re-send).
    pub duplicates: usize,
    /// What the resolved alerts changed.
    pub resolution: Resolution,
}

/// Stored jobs found at start.
#[derive(Debug, Default)]
pub struct Resumed {
    /// Jobs to run (queued) or to verify (their action had started).
    pub jobs: Vec<Job>,
    /// Jobs expired: due longer ago than the allowed age.
    pub expired: Vec<Job>,
    /// Incidents closed because their next attempt expired.
    pub closed: Vec<Closed>,
}

impl Store {
    /// Stores a webhook's jobs, denials and resolutions atomically.
    ///
    /// # Errors
    /// When nothing could be stored; then nothing was.
    pub async fn accept(&self, batch: Batch, now: f64) -> Result<Accepted, StoreError> {
        self.run(move |c| accept(c, batch, now)).await
    }

    /// Prepares stored jobs after a start. A job due longer than `max_age` ago is expired (its
    /// incident, when it was the next attempt, closes; a re-sent alert opens it again). A job
    /// whose action had started is returned to be verified, not run again; the others are
    /// returned to run once.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn resume(&self, max_age: f64, now: f64) -> Result<Resumed, StoreError> {
        self.run(move |c| resume(c, max_age, now)).await
    }

    /// The oldest queued jobs, at most `limit`.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn queued(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.run(move |c| {
            load(
                c,
                "state = ?1 ORDER BY id LIMIT ?2",
                params![JobState::Queued.as_str(), limit as i64],
            )
        })
        .await
    }

    /// Ends a job without an attempt (`event`: cancelled, denied, dry_run, expired). When the
    /// job is its incident's next attempt, the incident closes for `reason`.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn close(
        &self,
        job: Job,
        event: Event,
        detail: String,
        reason: CloseReason,
        now: f64,
    ) -> Result<Option<Closed>, StoreError> {
        self.run(move |c| close(c, &job, event, &detail, Some(reason), now))
            .await
    }

    /// Deletes history older than `before`: finished jobs, audit rows, closed incidents,
    /// resolved escalations and occurrences. Returns the rows deleted.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn prune(&self, before: f64) -> Result<usize, StoreError> {
        self.run(move |c| {
            let mut n = 0;
            for sql in [
                "DELETE FROM jobs WHERE state = 'done' AND accepted_at < ?1",
                "DELETE FROM audit WHERE at < ?1",
                "DELETE FROM escalations WHERE state = 'resolved' AND resolved_at < ?1",
                "DELETE FROM incidents WHERE closed_at IS NOT NULL AND closed_at < ?1",
                "DELETE FROM occurrences WHERE first_seen < ?1 AND (resolved_at IS NOT NULL OR incident_id IS NULL \
                   OR incident_id NOT IN (SELECT id FROM incidents WHERE closed_at IS NULL))",
            ] {
                n += exec(c, sql, [before])?;
            }
            Ok(n)
        })
        .await
    }
}

fn accept(c: &Connection, batch: Batch, now: f64) -> Result<Accepted, StoreError> {
    let mut out = Accepted::default();
    for d in &batch.denials {
        audit::deny(
            c,
            &audit::Row {
                at: now,
                about: About {
                    rule: &d.rule,
                    action: d.action.as_str(),
                    target: &d.target,
                    subject: &d.target,
                    alertname: &d.alertname,
                    fingerprint: &d.fingerprint,
                    ..About::default()
                },
                event: Event::Denied,
                detail: &d.reason,
                duration: None,
            },
        )?;
    }
    for (fp, start) in &batch.resolved {
        out.resolution
            .merge(resolve_alert(c, fp, start, ResolvedBy::Alert, now)?);
    }
    for new in batch.jobs {
        let seen: Option<Option<String>> = row(
            c,
                "SELECT resolved_by FROM occurrences WHERE rule = ?1 AND fingerprint = ?2 AND starts_at = ?3",
                params![new.rule, new.fingerprint, new.starts_at],
                |r| r.get(0),
            )
            .optional()?;
        match seen {
            None => {
                exec(
c,
                    "INSERT INTO occurrences (rule, fingerprint, starts_at, starts_at_s, alertname, first_seen) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        new.rule,
                        new.fingerprint,
                        new.starts_at,
                        crate::clock::parse_rfc3339(&new.starts_at),
                        new.alertname(),
                        now
                    ],
                )?;
            }
            // Resolved by inference (reconciliation, expiry) and firing after all: it counts
            // again, as a new occurrence.
            Some(Some(by)) if ResolvedBy::parse(&by).is_some_and(|b| !b.is_final()) => {
                exec(
c,
                    "UPDATE occurrences SET resolved_at = NULL, resolved_by = NULL, incident_id = NULL, first_seen = ?4 \
                     WHERE rule = ?1 AND fingerprint = ?2 AND starts_at = ?3",
                    params![new.rule, new.fingerprint, new.starts_at, now],
                )?;
            }
            Some(_) => {
                out.duplicates += 1;
                continue;
            }
        }
        out.queued.push(insert(c, new, None, false, now)?);
    }
    Ok(out)
}

fn resume(c: &Connection, max_age: f64, now: f64) -> Result<Resumed, StoreError> {
    let jobs = load(
        c,
        "state IN (?1, ?2) ORDER BY id",
        params![JobState::Queued.as_str(), JobState::Running.as_str()],
    )?;
    let mut out = Resumed::default();
    for job in jobs {
        let due = job.accepted_at.max(job.new.not_before);
        if job.started_at.is_none() && now - due > max_age {
            let detail = format!(
                "due {:.0}s before this start, more than global.resume_max_age",
                now - due
            );
            if let Some(closed) = close(
                c,
                &job,
                Event::Expired,
                &detail,
                Some(CloseReason::Expired),
                now,
            )? {
                out.closed.push(closed);
            }
            if job.incident.is_none() {
                exec(
c,
                    "UPDATE occurrences SET resolved_at = ?4, resolved_by = ?5 \
                     WHERE rule = ?1 AND fingerprint = ?2 AND starts_at = ?3 AND resolved_at IS NULL",
                    params![
                        job.new.rule,
                        job.new.fingerprint,
                        job.new.starts_at,
                        now,
                        ResolvedBy::Expired.as_str()
                    ],
                )?;
            }
            out.expired.push(job);
        } else {
            out.jobs.push(job);
        }
    }
    Ok(out)
}

/// Ends `job` with `event`; closes its incident for `reason` when the job is the incident's
/// pending attempt.
pub(super) fn close(
    c: &Connection,
    job: &Job,
    event: Event,
    detail: &str,
    reason: Option<CloseReason>,
    now: f64,
) -> Result<Option<Closed>, StoreError> {
    let n = exec(
        c,
        "UPDATE jobs SET state = ?2, result = ?3 WHERE id = ?1 AND state != ?2",
        params![job.id, JobState::Done.as_str(), event.as_str()],
    )?;
    if n == 0 {
        return Ok(None);
    }
    audit::write(
        c,
        &audit::Row {
            at: now,
            about: About::job(job),
            event,
            detail,
            duration: None,
        },
    )?;
    let (Some(reason), Some(incident)) = (reason, job.incident) else {
        return Ok(None);
    };
    endings::close_if_current(c, incident, job.id, reason, now)
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

const COLUMNS: &str =
    "id, accepted_at, not_before, rule, action, target, subject, selection, fingerprint, \
                       starts_at, labels, annotations, incident_id, retry, started_at";

/// Jobs selected by `filter` (the SQL after `WHERE`).
pub(super) fn load(
    c: &Connection,
    filter: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<Job>, StoreError> {
    let mut st = c.prepare_cached(&format!("SELECT {COLUMNS} FROM jobs WHERE {filter}"))?;
    let rows = st.query_map(p, |r| {
        let action: String = r.get(4)?;
        let action = ActionKind::parse(&action).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                Box::new(StoreError(format!("unknown action {action:?}"))),
            )
        })?;
        Ok(Job {
            id: r.get(0)?,
            accepted_at: r.get(1)?,
            new: NewJob {
                not_before: r.get(2)?,
                rule: r.get(3)?,
                action,
                target: r.get(5)?,
                subject: r.get(6)?,
                selection: serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or_default(),
                fingerprint: r.get(8)?,
                starts_at: r.get(9)?,
                labels: serde_json::from_str(&r.get::<_, String>(10)?).unwrap_or_default(),
                annotations: serde_json::from_str(&r.get::<_, String>(11)?).unwrap_or_default(),
            },
            incident: r.get(12)?,
            retry: r.get::<_, i64>(13)? != 0,
            started_at: r.get(14)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Inserts a job and returns it with its id.
pub(super) fn insert(
    c: &Connection,
    new: NewJob,
    incident: Option<i64>,
    retry: bool,
    now: f64,
) -> Result<Job, StoreError> {
    exec(
c,
        "INSERT INTO jobs (accepted_at, not_before, rule, action, target, subject, selection, fingerprint, starts_at, labels, annotations, state, incident_id, retry) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            now,
            new.not_before,
            new.rule,
            new.action.as_str(),
            new.target,
            new.subject,
            to_json(&new.selection),
            new.fingerprint,
            new.starts_at,
            to_json(&new.labels),
            to_json(&new.annotations),
            JobState::Queued.as_str(),
            incident,
            i64::from(retry),
        ],
    )?;
    Ok(Job {
        id: c.last_insert_rowid(),
        accepted_at: now,
        new,
        incident,
        retry,
        started_at: None,
    })
}
