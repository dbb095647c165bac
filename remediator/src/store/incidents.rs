//! The incident model applied to the database: a job's decision (open or join the subject's
//! incident), the start of an attempt, its outcome (healed, next attempt, escalated), and the
//! end of incidents when their alerts resolve or reconciliation finds them gone.
//!
//! The model's steps come from [`crate::incident`]; this file only reads and writes rows, each
//! operation inside the store thread's transaction.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::audit::{self, About};
use super::endings::{close_incident, load_one, open_by_id};
use super::escalations;
use super::jobs::{self, close};
use super::{exec, row, Closed, Job, Store, StoreError};
use crate::action::Selection;
use crate::incident::{self, AfterFailure, Decision, OnOccurrence, Open, Policy};
use crate::vocab::{CloseReason, Event, IncidentState, JobState};

/// What [`Store::decide`] needs to decide on a job.
#[derive(Debug, Clone)]
pub struct DecideInput {
    /// The job.
    pub job: Job,
    /// Its canonical subject.
    pub subject: String,
    /// Its canonical selection.
    pub selection: Selection,
    /// The target's incident policy.
    pub policy: Policy,
    /// Record a dry run instead.
    pub dry_run: bool,
    /// What the action would have done, for the dry run's audit row.
    pub dry_run_note: Option<String>,
    /// The escalation posted when the subject is flapping (none without an `escalation`
    /// section).
    pub flapping_page: Option<Value>,
}

/// Whether an attempt's action may start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Started: the attempt is counted.
    Started {
        /// The attempt number.
        attempt: u32,
        /// Attempts allowed.
        max_attempts: u32,
    },
    /// The job is no longer its incident's attempt (the incident closed meanwhile); it was
    /// cancelled now.
    Cancelled,
    /// The job had already ended (cancelled when its alert resolved).
    Gone,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Acted and verified.
    Succeeded,
    /// The action or its verification failed.
    Failed,
    /// Refused when about to act (the container lost its opt-in label, …); not an attempt.
    Refused,
}

impl Outcome {
    /// The audit event.
    #[must_use]
    pub fn event(self) -> Event {
        match self {
            Outcome::Succeeded => Event::Succeeded,
            Outcome::Failed => Event::Failed,
            Outcome::Refused => Event::Denied,
        }
    }
}

/// What [`Store::finish`] records.
#[derive(Debug, Clone)]
pub struct FinishInput {
    /// The job.
    pub job: Job,
    /// How it ended.
    pub outcome: Outcome,
    /// What was done and seen.
    pub detail: String,
    /// Seconds the action and its verification took.
    pub duration: f64,
    /// The target's incident policy.
    pub policy: Policy,
    /// The escalation posted when no attempts are left (none without an `escalation`
    /// section).
    pub page: Option<Value>,
}

/// What followed an attempt.
#[derive(Debug, Default)]
pub struct Finished {
    /// The incident's state afterwards, when the job was its attempt.
    pub state: Option<IncidentState>,
    /// The next attempt, stored and to be started at its time.
    pub retry: Option<Job>,
    /// The incident closed (a refused action).
    pub closed: Option<Closed>,
}

impl Store {
    /// Decides on a job about to act: open or join its subject's incident, or record a dry
    /// run.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn decide(&self, input: DecideInput, now: f64) -> Result<Decision, StoreError> {
        self.run(move |c| decide(c, input, now)).await
    }

    /// Marks an attempt's action as started and counts the attempt, if the job is still its
    /// incident's attempt.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn start(&self, job: Job, now: f64) -> Result<Start, StoreError> {
        self.run(move |c| start(c, &job, now)).await
    }

    /// Marks the job's incident as verifying.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn verifying(&self, job: i64, now: f64) -> Result<(), StoreError> {
        self.run(move |c| {
            exec(
c,
                "UPDATE incidents SET state = ?2, updated_at = ?3, detail = 'attempt ' || attempts || ' of ' || max_attempts || ': verifying' \
                 WHERE current_job = ?1 AND closed_at IS NULL",
                params![job, IncidentState::Verifying.as_str(), now],
            )?;
            Ok(())
        })
        .await
    }

    /// Records how an attempt ended and what follows: healed, the next attempt at its time,
    /// or escalation.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn finish(&self, input: FinishInput, now: f64) -> Result<Finished, StoreError> {
        self.run(move |c| finish(c, input, now)).await
    }
}

fn decide(c: &Connection, input: DecideInput, now: f64) -> Result<Decision, StoreError> {
    let job = &input.job;
    let stored: Option<(String, Option<i64>)> = row(
        c,
        "SELECT state, incident_id FROM jobs WHERE id = ?1",
        [job.id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?;
    let Some((state, incident)) = stored else {
        return Ok(Decision::Gone);
    };
    if state != JobState::Queued.as_str() {
        return Ok(Decision::Gone);
    }
    let mut job = job.clone();
    job.incident = incident;
    // Already decided as its incident's attempt: a scheduled next attempt, or a decision
    // taken before a restart.
    if let Some(id) = incident {
        return match open_by_id(c, id)? {
            Some(row)
                if row.current_job == Some(job.id)
                    && matches!(row.state, IncidentState::Acting | IncidentState::Waiting) =>
            {
                exec(
c,
                    "UPDATE incidents SET state = ?2, next_attempt_at = NULL, max_attempts = ?3, updated_at = ?4, \
                     detail = 'attempt ' || (attempts + 1) || ' of ' || ?3 || ': waiting for the subject''s lock and the global limit' \
                     WHERE id = ?1",
                    params![id, IncidentState::Acting.as_str(), input.policy.max_attempts, now],
                )?;
                Ok(Decision::Act {
                    incident: id,
                    attempt: row.attempts + 1,
                    max_attempts: input.policy.max_attempts,
                })
            }
            _ => {
                let why = "its incident closed before this attempt";
                close(c, &job, Event::Cancelled, why, None, now)?;
                Ok(Decision::Cancelled { why })
            }
        };
    }
    // From here on the job is recorded under its canonical subject.
    job.new.subject = input.subject.clone();
    job.new.selection = input.selection.clone();
    exec(
        c,
        "UPDATE jobs SET subject = ?2, selection = ?3 WHERE id = ?1",
        params![
            job.id,
            job.new.subject,
            serde_json::to_string(&job.new.selection).unwrap_or_else(|_| "{}".into())
        ],
    )?;
    if input.dry_run {
        let detail = match &input.dry_run_note {
            Some(note) => format!("dry run: the action was not executed; {note}"),
            None => "dry run: the action was not executed".to_string(),
        };
        close(c, &job, Event::DryRun, &detail, None, now)?;
        return Ok(Decision::DryRun);
    }
    let occurrence: Option<(Option<f64>, Option<f64>)> = row(
        c,
            "SELECT resolved_at, starts_at_s FROM occurrences WHERE rule = ?1 AND fingerprint = ?2 AND starts_at = ?3",
            params![job.new.rule, job.new.fingerprint, job.new.starts_at],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let starts_at = occurrence.and_then(|(_, s)| s);
    if occurrence.is_some_and(|(resolved, _)| resolved.is_some()) {
        let why = "the alert resolved before the action ran";
        close(c, &job, Event::Cancelled, why, None, now)?;
        return Ok(Decision::Cancelled { why });
    }
    let policy = &input.policy;
    let open = load_one(c, "subject = ?1 AND closed_at IS NULL", [&input.subject])?;
    let healed: u32 = row(
        c,
        "SELECT COUNT(*) FROM incidents WHERE subject = ?1 AND healed_at >= ?2",
        params![input.subject, now - policy.flapping.window.as_secs_f64()],
        |r| r.get(0),
    )?;
    let step = incident::on_occurrence(
        open.as_ref().map(|r| Open {
            state: r.state,
            healed_at: r.healed_at,
        }),
        starts_at,
        healed,
        policy,
    );
    let escalated_new = match (step, &open) {
        (OnOccurrence::Open, _) => false,
        (OnOccurrence::OpenEscalated, _) => true,
        (OnOccurrence::Supersede { escalated }, Some(old)) => {
            close_incident(c, old.id, CloseReason::Superseded, now)?;
            escalated
        }
        (OnOccurrence::Join, Some(row)) => {
            link(c, &mut job, row.id)?;
            let detail = format!(
                "joined incident {} of {} ({}): an alert of the same outage, no new action",
                row.id, row.subject, row.state
            );
            close(c, &job, Event::Joined, &detail, None, now)?;
            return Ok(Decision::Joined {
                incident: row.id,
                state: row.state,
                next_attempt_at: row.next_attempt_at,
            });
        }
        (OnOccurrence::JoinEscalated, Some(row)) => {
            link(c, &mut job, row.id)?;
            escalations::refresh_page(c, row.id, now)?;
            let detail = format!(
                "joined escalated incident {} of {}: no action, part of its page",
                row.id, row.subject
            );
            close(c, &job, Event::SkippedEscalated, &detail, None, now)?;
            return Ok(Decision::JoinedEscalated { incident: row.id });
        }
        // The model joins or supersedes only an open incident.
        (
            OnOccurrence::Join | OnOccurrence::JoinEscalated | OnOccurrence::Supersede { .. },
            None,
        ) => false,
    };
    let id = insert_incident(c, &job, policy, escalated_new, now)?;
    if let Some(old) = open.filter(|_| matches!(step, OnOccurrence::Supersede { .. })) {
        // The old incident's alerts still firing belong to the new outage.
        exec(
c,
            "UPDATE occurrences SET incident_id = ?2 WHERE incident_id = ?1 AND resolved_at IS NULL",
            params![old.id, id],
        )?;
    }
    link(c, &mut job, id)?;
    if escalated_new {
        let detail = format!(
            "flapping: {healed} incidents of {} healed within {}; escalated without acting",
            input.subject,
            humantime::format_duration(policy.flapping.window)
        );
        exec(
            c,
            "UPDATE incidents SET detail = ?2 WHERE id = ?1",
            params![id, detail],
        )?;
        escalations::insert(c, &job, id, input.flapping_page.as_ref(), &detail, now)?;
        close(c, &job, Event::SkippedFlapping, &detail, None, now)?;
        return Ok(Decision::Flapping {
            incident: id,
            healed,
        });
    }
    Ok(Decision::Act {
        incident: id,
        attempt: 1,
        max_attempts: policy.max_attempts,
    })
}

/// Links the job and its occurrence to incident `id`.
fn link(c: &Connection, job: &mut Job, id: i64) -> Result<(), StoreError> {
    job.incident = Some(id);
    exec(
        c,
        "UPDATE jobs SET incident_id = ?2 WHERE id = ?1",
        params![job.id, id],
    )?;
    exec(
c,
        "UPDATE occurrences SET incident_id = ?4 WHERE rule = ?1 AND fingerprint = ?2 AND starts_at = ?3",
        params![job.new.rule, job.new.fingerprint, job.new.starts_at, id],
    )?;
    Ok(())
}

fn insert_incident(
    c: &Connection,
    job: &Job,
    policy: &Policy,
    escalated: bool,
    now: f64,
) -> Result<i64, StoreError> {
    let (state, current, detail) = if escalated {
        (IncidentState::Escalated, None, String::new())
    } else {
        (
            IncidentState::Acting,
            Some(job.id),
            format!(
                "attempt 1 of {}: waiting for the subject's lock and the global limit",
                policy.max_attempts
            ),
        )
    };
    exec(
c,
        "INSERT INTO incidents (subject, target, rule, action, alertname, fingerprint, state, opened_at, updated_at, \
           attempts, max_attempts, flapping_count, flapping_window, current_job, escalated_at, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 0, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            job.new.subject,
            job.new.target,
            job.new.rule,
            job.new.action.as_str(),
            job.new.alertname(),
            job.new.fingerprint,
            state.as_str(),
            now,
            policy.max_attempts,
            policy.flapping.count,
            policy.flapping.window.as_secs_f64(),
            current,
            escalated.then_some(now),
            detail,
        ],
    )?;
    Ok(c.last_insert_rowid())
}

fn start(c: &Connection, job: &Job, now: f64) -> Result<Start, StoreError> {
    let stored: Option<(String, Option<i64>)> = row(
        c,
        "SELECT state, incident_id FROM jobs WHERE id = ?1",
        [job.id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?;
    let Some((state, Some(incident))) = stored else {
        return Ok(Start::Gone);
    };
    if state != JobState::Queued.as_str() {
        return Ok(Start::Gone);
    }
    let mut job = job.clone();
    job.incident = Some(incident);
    let row = open_by_id(c, incident)?
        .filter(|r| r.current_job == Some(job.id) && r.state == IncidentState::Acting);
    let Some(row) = row else {
        close(
            c,
            &job,
            Event::Cancelled,
            "its incident closed before the action started",
            None,
            now,
        )?;
        return Ok(Start::Cancelled);
    };
    let attempt = row.attempts + 1;
    exec(
        c,
        "UPDATE incidents SET attempts = ?2, updated_at = ?3, detail = ?4 WHERE id = ?1",
        params![
            incident,
            attempt,
            now,
            format!("attempt {attempt} of {}: the action runs", row.max_attempts)
        ],
    )?;
    exec(
        c,
        "UPDATE jobs SET state = ?2, started_at = ?3, attempt = ?4 WHERE id = ?1",
        params![job.id, JobState::Running.as_str(), now, attempt],
    )?;
    Ok(Start::Started {
        attempt,
        max_attempts: row.max_attempts,
    })
}

fn finish(c: &Connection, mut input: FinishInput, now: f64) -> Result<Finished, StoreError> {
    // An action's words may quote what a peer answered: bounded. The audit row keeps up to
    // DETAIL_BYTES (a cleanup lists every file it removed); the incident and an escalation,
    // which show and post it, keep a value's length.
    let audit_detail = crate::limits::detail(&input.detail);
    input.detail = crate::limits::value(&input.detail);
    let job = &input.job;
    let incident: Option<i64> = row(
        c,
        "SELECT incident_id FROM jobs WHERE id = ?1",
        [job.id],
        |r| r.get(0),
    )
    .optional()?
    .flatten();
    let mut job = job.clone();
    job.incident = incident;
    let n = exec(
        c,
        "UPDATE jobs SET state = ?2, result = ?3 WHERE id = ?1 AND state != ?2",
        params![
            job.id,
            JobState::Done.as_str(),
            input.outcome.event().as_str()
        ],
    )?;
    if n == 0 {
        return Ok(Finished::default());
    }
    audit::write(
        c,
        &audit::Row {
            at: now,
            about: About::job(&job),
            event: input.outcome.event(),
            detail: &audit_detail,
            duration: Some(input.duration),
        },
    )?;
    let Some(row) = incident
        .map(|id| open_by_id(c, id))
        .transpose()?
        .flatten()
        .filter(|r| r.current_job == Some(job.id))
    else {
        // The incident closed while this attempt was verified (its alert resolved as the
        // subject came back). A verified attempt still healed it: recorded, so that flapping
        // counts this heal too; otherwise a subject whose alerts resolve within `stable_for`
        // would never count as flapping.
        if let (Some(id), Outcome::Succeeded) = (incident, input.outcome) {
            c.execute(
                "UPDATE incidents SET healed_at = ?2 WHERE id = ?1 AND healed_at IS NULL AND closed_at IS NOT NULL",
                params![id, now],
            )?;
        }
        return Ok(Finished::default());
    };
    let mut out = Finished::default();
    match input.outcome {
        Outcome::Succeeded => {
            exec(
c,
                "UPDATE incidents SET state = ?2, healed_at = ?3, updated_at = ?3, current_job = NULL, detail = ?4 WHERE id = ?1",
                params![
                    row.id,
                    IncidentState::Healed.as_str(),
                    now,
                    format!("healed by attempt {}: {}", row.attempts, input.detail)
                ],
            )?;
            out.state = Some(IncidentState::Healed);
        }
        Outcome::Refused => {
            out.closed = close_incident(c, row.id, CloseReason::Refused, now)?
                .closed
                .pop();
            out.state = Some(IncidentState::Resolved);
        }
        Outcome::Failed => match incident::after_failure(row.attempts, &input.policy, now) {
            AfterFailure::Escalate => {
                let detail = format!(
                    "escalated after {} failed attempt(s); the last: {}",
                    row.attempts, input.detail
                );
                exec(
c,
                    "UPDATE incidents SET state = ?2, escalated_at = ?3, updated_at = ?3, current_job = NULL, detail = ?4 WHERE id = ?1",
                    params![row.id, IncidentState::Escalated.as_str(), now, detail],
                )?;
                escalations::insert(c, &job, row.id, input.page.as_ref(), &detail, now)?;
                out.state = Some(IncidentState::Escalated);
            }
            AfterFailure::Retry { at } => {
                let mut next = job.new.clone();
                next.not_before = at;
                let retry = jobs::insert(c, next, Some(row.id), true, now)?;
                exec(
c,
                    "UPDATE incidents SET state = ?2, next_attempt_at = ?3, updated_at = ?4, current_job = ?5, max_attempts = ?6, detail = ?7 WHERE id = ?1",
                    params![
                        row.id,
                        IncidentState::Waiting.as_str(),
                        at,
                        now,
                        retry.id,
                        input.policy.max_attempts,
                        format!(
                            "attempt {} of {} failed: {}",
                            row.attempts, input.policy.max_attempts, input.detail
                        )
                    ],
                )?;
                out.state = Some(IncidentState::Waiting);
                out.retry = Some(retry);
            }
        },
    }
    Ok(out)
}
