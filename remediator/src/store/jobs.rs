//! Jobs: durable acceptance of a webhook (one job per new alert occurrence and rule), resume
//! after a start, closing a job without an attempt, and pruning old history.

use std::sync::Arc;

use super::audit::{self, About};
use super::endings::resolve_alert;
use super::{args, exec, rows, Db, Job, NewJob, Resolution, Store, StoreError};
use crate::action::ActionKind;
use crate::vocab::{Event, JobState, ResolvedBy};

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
    /// Resolved alerts.
    pub resolved: Vec<ResolvedAlert>,
}

/// A resolved alert of a webhook.
#[derive(Debug, Clone)]
pub struct ResolvedAlert {
    /// Its fingerprint.
    pub fingerprint: String,
    /// Its start, as Alertmanager wrote it.
    pub starts_at: String,
    /// Whether a rule matches it: a resolve that arrives before its firing is then remembered,
    /// so the late firing never acts.
    pub matched: bool,
}

/// What became of a [`Batch`].
#[derive(Debug, Default)]
pub struct Accepted {
    /// Newly queued jobs.
    pub queued: Vec<Job>,
    /// Jobs not queued because their occurrence was seen before (a re-send), or had resolved
    /// already (a late firing).
    pub duplicates: usize,
    /// What the resolved alerts changed.
    pub resolution: Resolution,
}

/// Stored jobs found at start.
#[derive(Debug, Default)]
pub struct Resumed {
    /// Jobs to run (queued) or to verify (their action had started). One found later than
    /// `global.resume_max_age` after it was due is escalated when it is decided.
    pub jobs: Vec<Job>,
}

impl Store {
    /// Stores a webhook's jobs, denials and resolutions atomically.
    ///
    /// # Errors
    /// When nothing could be stored; then nothing was.
    pub async fn accept(&self, batch: Batch, now: f64) -> Result<Accepted, StoreError> {
        if self.engine() == super::db::Engine::Postgres
            && batch.denials.is_empty()
            && batch.resolved.is_empty()
            && !batch.jobs.is_empty()
        {
            // New alerts only: PostgreSQL's writer accepts them with the batch's others in one
            // statement (see `sets`).
            static TOKENS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let token = TOKENS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let hint = super::sets::Hint::Accept {
                token,
                jobs: batch.jobs.clone(),
                now,
            };
            return self
                .run_hinted(Some(hint), move |c| match c.take_accepted(token) {
                    Some(accepted) => accepted,
                    None => accept(c, batch.clone(), now),
                })
                .await;
        }
        self.run(move |c| accept(c, batch.clone(), now)).await
    }

    /// The stored jobs after a start: this replica's, once it took over those of earlier
    /// processes and of replicas whose lease ran out. A job whose action had started is
    /// returned to be verified, not run again; the others to run once (by the model: one found
    /// late is escalated when it is decided).
    ///
    /// # Errors
    /// On a database failure.
    pub async fn resume(&self) -> Result<Resumed, StoreError> {
        self.run(move |c| {
            super::replicas::take_over(c, crate::clock::now())?;
            Ok(Resumed {
                jobs: load(
                    c,
                    "state IN (?1, ?2) AND owner = ?3 ORDER BY id",
                    args![
                        JobState::Queued.as_str(),
                        JobState::Running.as_str(),
                        c.replica().instance
                    ],
                )?,
            })
        })
        .await
    }

    /// Jobs nobody works on: queued ones due by `now` and running ones (whose task ended on a
    /// store error), leaving out `exclude` (those in memory), oldest first, at most `limit`.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn orphans(
        &self,
        now: f64,
        exclude: Vec<i64>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        self.read(move |c| {
            let exclude: std::collections::HashSet<i64> = exclude.into_iter().collect();
            let mut out = Vec::new();
            let rows = rows(
        c,
        &format!(
                "SELECT {COLUMNS} FROM jobs WHERE owner = ?4 AND state IN (?1, ?3) AND (state = ?3 OR not_before <= ?2) ORDER BY id LIMIT ?5"
            ),
        // Enough rows for `limit` after leaving out those in memory, and no more: the queue
        // can hold many thousands.
        args![JobState::Queued.as_str(), now, JobState::Running.as_str(), c.replica().instance, (limit + exclude.len()) as i64],
        from_row,
    )?;
            for job in rows {
                if !exclude.contains(&job.id) {
                    out.push(job);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Ends a job that never became an incident's attempt (`event`: cancelled, denied).
    ///
    /// # Errors
    /// On a database failure.
    pub async fn close(
        &self,
        job: Job,
        event: Event,
        detail: String,
        now: f64,
    ) -> Result<(), StoreError> {
        self.run(move |c| close(c, &job, event, &detail, now).map(|_| ()))
            .await
    }

    /// Puts off a job's decision until `at`, saying why (its subject cannot be made canonical
    /// now: the Docker Engine cannot be asked). Returns whether the job was still queued.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn postpone(&self, job: i64, at: f64, note: String) -> Result<bool, StoreError> {
        self.run(move |c| {
            Ok(exec(
                c,
                "UPDATE jobs SET not_before = ?2, postponed = postponed + 1, note = ?3 \
                 WHERE id = ?1 AND state = ?4 AND incident_id IS NULL",
                args![
                    job,
                    at,
                    crate::limits::value(&note),
                    JobState::Queued.as_str()
                ],
            )? > 0)
        })
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
                "DELETE FROM early_resolves WHERE at < ?1",
            ] {
                n += exec(c, sql, args![before])?;
            }
            Ok(n)
        })
        .await
    }
}

fn accept(c: &dyn Db, batch: Batch, now: f64) -> Result<Accepted, StoreError> {
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
    for r in &batch.resolved {
        out.resolution.merge(resolve_alert(
            c,
            &r.fingerprint,
            &r.starts_at,
            ResolvedBy::Alert,
            r.matched,
            now,
        )?);
    }
    for new in batch.jobs {
        // Every occurrence is acted on once: a re-send, or a firing of an occurrence that
        // resolved already (a late notification of a second Alertmanager, a resolve that
        // arrived first), is a duplicate. One statement stores the occurrence unless it is one
        // (its key is the table's primary key), and says which.
        let stored = exec(
            c,
            "INSERT INTO occurrences (rule, fingerprint, starts_at, starts_at_s, alertname, first_seen) \
             SELECT CAST(?1 AS TEXT), CAST(?2 AS TEXT), CAST(?3 AS TEXT), CAST(?4 AS DOUBLE PRECISION), \
             CAST(?5 AS TEXT), CAST(?6 AS DOUBLE PRECISION) \
             WHERE NOT EXISTS (SELECT 1 FROM early_resolves WHERE fingerprint = ?2 AND starts_at = ?3) \
             ON CONFLICT DO NOTHING",
            args![
                new.rule,
                new.fingerprint,
                new.starts_at,
                crate::clock::parse_rfc3339(&new.starts_at),
                new.alertname(),
                now
            ],
        )?;
        if stored == 0 {
            out.duplicates += 1;
            continue;
        }
        out.queued.push(insert(c, new, None, false, now)?);
    }
    Ok(out)
}

/// Ends `job` with `event` and audits it; returns whether it was still open. The caller sees
/// to its incident.
pub(super) fn close(
    c: &dyn Db,
    job: &Job,
    event: Event,
    detail: &str,
    now: f64,
) -> Result<bool, StoreError> {
    let n = exec(
        c,
        "UPDATE jobs SET state = ?2, result = ?3 WHERE id = ?1 AND state != ?2",
        args![job.id, JobState::Done.as_str(), event.as_str()],
    )?;
    if n == 0 {
        return Ok(false);
    }
    audit::write(c, &ended(job, event, detail, now))?;
    Ok(true)
}

/// [`close`] for a new occurrence's job, recording it under its canonical subject and selection
/// (`job.new`) in the same update. Whether it was still open is not said: PostgreSQL's writer
/// writes the batch's ends together, without waiting for them ([`super::sets::end_all`]).
pub(super) fn close_canonical(
    c: &dyn Db,
    job: &Job,
    event: Event,
    detail: &str,
    now: f64,
) -> Result<(), StoreError> {
    let end = super::sets::End {
        job: job.id,
        result: event.as_str().to_string(),
        subject: job.new.subject.clone(),
        selection: to_json(&job.new.selection),
        audit: audit::values(c, &ended(job, event, detail, now)),
    };
    match c.end_later(end) {
        Some(end) => super::sets::end_one(c, end),
        None => Ok(()),
    }
}

/// The audit row of `job` ended with `event`.
fn ended<'a>(job: &'a Job, event: Event, detail: &'a str, now: f64) -> audit::Row<'a> {
    audit::Row {
        at: now,
        about: About::job(job),
        event,
        detail,
        duration: None,
    }
}

/// `v` as JSON text, as the store keeps selections, labels and annotations.
pub(super) fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

const COLUMNS: &str =
    "id, accepted_at, not_before, rule, action, target, subject, selection, fingerprint, \
     starts_at, labels, annotations, incident_id, retry, started_at, COALESCE(due_at, not_before), postponed";

/// Jobs selected by `filter` (the SQL after `WHERE`).
pub(super) fn load(
    c: &dyn Db,
    filter: &str,
    p: &[super::db::Value],
) -> Result<Vec<Job>, StoreError> {
    let rows = rows(
        c,
        &format!("SELECT {COLUMNS} FROM jobs WHERE {filter}"),
        p,
        from_row,
    )?;
    Ok(rows)
}

fn from_row(r: &super::db::Row) -> Result<Job, StoreError> {
    {
        let action: String = r.get(4)?;
        let action = ActionKind::parse(&action)
            .ok_or_else(|| StoreError(format!("unknown action {action:?} in a stored job")))?;
        Ok(Job {
            id: r.get(0)?,
            accepted_at: r.get(1)?,
            new: NewJob {
                not_before: r.get(2)?,
                rule: r.get(3)?,
                action,
                target: r.get(5)?,
                subject: r.get(6)?,
                selection: serde_json::from_str(&r.get::<String>(7)?).unwrap_or_default(),
                fingerprint: r.get(8)?,
                starts_at: r.get(9)?,
                labels: Arc::new(serde_json::from_str(&r.get::<String>(10)?).unwrap_or_default()),
                annotations: Arc::new(
                    serde_json::from_str(&r.get::<String>(11)?).unwrap_or_default(),
                ),
            },
            incident: r.get(12)?,
            retry: r.get::<i64>(13)? != 0,
            started_at: r.get(14)?,
            due_at: r.get(15)?,
            postponed: r.get(16)?,
        })
    }
}

/// Inserts a job and returns it with its id.
pub(super) fn insert(
    c: &dyn Db,
    new: NewJob,
    incident: Option<i64>,
    retry: bool,
    now: f64,
) -> Result<Job, StoreError> {
    let id = c.insert(
        "INSERT INTO jobs (accepted_at, not_before, rule, action, target, subject, selection, fingerprint, starts_at, labels, annotations, state, incident_id, retry, due_at, owner) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?2, ?15)",
        args![
            now,
            new.not_before,
            new.rule,
            new.action.as_str(),
            new.target,
            new.subject,
            to_json(&new.selection),
            new.fingerprint,
            new.starts_at,
            to_json(&*new.labels),
            to_json(&*new.annotations),
            JobState::Queued.as_str(),
            incident,
            i64::from(retry),
            c.replica().instance,
        ],
    )?;
    Ok(Job {
        id,
        accepted_at: now,
        due_at: new.not_before,
        new,
        incident,
        retry,
        started_at: None,
        postponed: 0,
    })
}
