//! The incident model applied to the database. Each operation reads the subject's open
//! incident, asks [`crate::incident::step`] for the transition, and writes it — all inside the
//! store thread's transaction, so a transition is applied whole or not at all.
//!
//! Operations: a job's decision (a new occurrence opens, joins or supersedes the subject's
//! incident; an incident's stored attempt coming due), the start of an attempt, its outcome
//! (verifying, healed, the next attempt, escalation), the re-check of a heal whose alert still
//! fires, removed rules, and on-call's reset. How incidents end when their alerts resolve is
//! in `endings`.

use super::audit::{self, About};
use super::db::Engine;
use super::endings::{close_incident, load_one, open_by_id, quiet, Row};
use super::escalations;
use super::holds::{self, Guard};
use super::jobs::{self, close, close_canonical};
use super::{args, exec, row, row_opt, Closed, Db, Job, Store, StoreError};
use crate::action::Selection;
use crate::incident::{self, Decision, Facts, Input, New, Policy, Transition, Why};
use crate::paging::PageSpec;
use crate::vocab::{CloseReason, Event, IncidentState, JobState};

/// What the configuration in force says about a job or incident: everything the model's facts
/// need besides the database.
#[derive(Debug, Clone)]
pub struct Conditions {
    /// The target's incident policy (the default one when the target is gone).
    pub policy: Policy,
    /// Dry run is on, globally or for the rule.
    pub dry_run: bool,
    /// What a dry run of the action would have done, for its audit row.
    pub dry_run_note: Option<String>,
    /// The rule and target are still configured.
    pub configured: bool,
    /// `global.resume_max_age` in seconds: a job picked up later than this after it was due is
    /// not run blindly.
    pub resume_max_age: f64,
    /// How escalations are labelled; `None` without an `escalation` section (nobody is paged,
    /// and the audit says so).
    pub page: Option<PageSpec>,
    /// The blast-radius guard, the dependencies and the engine's reachability.
    pub guard: Guard,
}

impl Conditions {
    pub(super) fn facts(&self, now: f64, late: bool, healed_in_window: u32) -> Facts {
        Facts {
            now,
            policy: self.policy,
            dry_run: self.dry_run,
            configured: self.configured,
            late,
            healed_in_window,
            hold: None,
            quiet: None,
        }
    }
}

/// What [`Store::decide`] needs to decide on a job.
#[derive(Debug, Clone)]
pub struct DecideInput {
    /// The job.
    pub job: Job,
    /// Its canonical subject.
    pub subject: String,
    /// Its canonical selection.
    pub selection: Selection,
    /// The configuration in force.
    pub cond: Conditions,
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
    /// Not executed, and the incident escalated (dry run was switched on, or the rule removed).
    Escalated(Why),
    /// Not executed: the incident is held (a pause, the guard, a dependency, its engine).
    Held(incident::Hold),
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
    /// Refused when about to act (the container lost its opt-in label, …).
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
    /// The configuration in force.
    pub cond: Conditions,
}

/// What followed an attempt, or a re-check.
#[derive(Debug, Default)]
pub struct Finished {
    /// The incident's state afterwards, when the job was its attempt.
    pub state: Option<IncidentState>,
    /// The next attempt, stored and to be started at its time.
    pub retry: Option<Job>,
    /// The incident closed.
    pub closed: Option<Closed>,
}

impl Store {
    /// Decides on a job: a new occurrence opens, joins or supersedes the subject's incident (or
    /// is a dry run); an incident's stored attempt becomes acting, or is escalated at the gate
    /// (dry run, removed rule, found late).
    ///
    /// # Errors
    /// On a database failure; nothing is changed then.
    pub async fn decide(&self, input: DecideInput, now: f64) -> Result<Decision, StoreError> {
        // (SQLite's writer does nothing with it.)
        let hint = (self.engine() == Engine::Postgres).then(|| super::sets::Hint::Decide {
            job: input.job.id,
            subject: input.subject.clone(),
        });
        self.run_hinted(hint, move |c| decide(c, &input, now)).await
    }

    /// Marks an attempt's action as started and counts the attempt, if the job is still its
    /// incident's attempt and the gates (dry run, a removed rule) let it; otherwise the
    /// incident is escalated.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn start(&self, job: Job, cond: Conditions, now: f64) -> Result<Start, StoreError> {
        self.run(move |c| start(c, &job, &cond, now)).await
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
                 WHERE current_job = ?1 AND closed_at IS NULL AND state = ?4",
                args![
                    job,
                    IncidentState::Verifying.as_str(),
                    now,
                    IncidentState::Acting.as_str()
                ],
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
        self.run(move |c| finish(c, input.clone(), now)).await
    }
}

/// Healed incidents of `subject` within the flapping window, since its last reset.
fn healed_in_window(
    c: &dyn Db,
    subject: &str,
    policy: &Policy,
    now: f64,
) -> Result<u32, StoreError> {
    let since = now - policy.flapping.window.as_secs_f64();
    row(
        c,
        "SELECT COUNT(*) FROM incidents WHERE subject = ?1 AND healed_at >= ?2 \
         AND healed_at >= COALESCE((SELECT reset_at FROM subjects WHERE subject = ?1), 0)",
        args![subject, since],
        |r| r.get(0),
    )
}

/// Whether `job` is picked up later than `max_age` after it was due.
fn is_late(job: &Job, max_age: f64, now: f64) -> bool {
    now - job.due_at > max_age
}

/// A job's state and incident as stored, and for a new occurrence's job (no incident) its
/// occurrence: when it resolved and when it began (`None`: not stored).
pub(super) type StoredJob = (String, Option<i64>, Option<(Option<f64>, Option<f64>)>);

/// The job `job` as stored, with its occurrence (see [`StoredJob`]); `None`: it is gone.
///
/// PostgreSQL reads both in one statement (one round trip). SQLite reads them in two: it would
/// prepare the join again at every run (the occurrences' partial index makes its plan depend
/// on the bound job id), which costs far more than a second statement.
fn stored_job(c: &dyn Db, job: &Job) -> Result<Option<StoredJob>, StoreError> {
    type Joined = (String, Option<i64>, Option<f64>, Option<f64>, Option<i64>);
    if c.engine() == Engine::Postgres {
        let joined: Option<Joined> = row_opt(
            c,
            "SELECT j.state, j.incident_id, o.resolved_at, o.starts_at_s, o.first_seen IS NOT NULL \
             FROM jobs j LEFT JOIN occurrences o \
             ON o.rule = j.rule AND o.fingerprint = j.fingerprint AND o.starts_at = j.starts_at \
             WHERE j.id = ?1",
            args![job.id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
        return Ok(joined.map(|(state, incident, resolved, starts, found)| {
            let occurrence = (incident.is_none() && found == Some(1)).then_some((resolved, starts));
            (state, incident, occurrence)
        }));
    }
    let stored: Option<(String, Option<i64>)> = row_opt(
        c,
        "SELECT state, incident_id FROM jobs WHERE id = ?1",
        args![job.id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let Some((state, incident)) = stored else {
        return Ok(None);
    };
    let occurrence = if incident.is_none() && state == JobState::Queued.as_str() {
        row_opt(
            c,
            "SELECT resolved_at, starts_at_s FROM occurrences WHERE rule = ?1 AND fingerprint = ?2 AND starts_at = ?3",
            args![job.new.rule, job.new.fingerprint, job.new.starts_at],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
    } else {
        None
    };
    Ok(Some((state, incident, occurrence)))
}

fn decide(c: &dyn Db, input: &DecideInput, now: f64) -> Result<Decision, StoreError> {
    let job = &input.job;
    let cond = &input.cond;
    // Read ahead with the batch's other decisions, on PostgreSQL (see `sets`).
    let ahead = c
        .take_prefetched(job.id)
        .filter(|p| p.subject == input.subject);
    let stored = match &ahead {
        Some(p) => p.stored.clone(),
        None => stored_job(c, job)?,
    };
    let Some((state, incident, occurrence)) = stored else {
        return Ok(Decision::Gone);
    };
    if state != JobState::Queued.as_str() {
        return Ok(Decision::Gone);
    }
    let mut job = job.clone();
    job.incident = incident;
    let late = is_late(&job, cond.resume_max_age, now);
    // An incident's own attempt: a scheduled next attempt, or one decided before a restart.
    if let Some(id) = incident {
        let Some(inc) = open_by_id(c, id)?.filter(|r| r.current_job == Some(job.id)) else {
            let why = "its incident closed before this attempt";
            close(c, &job, Event::Cancelled, why, now)?;
            return Ok(Decision::Cancelled { why });
        };
        let facts = incident::Facts {
            hold: holds::hold_of(c, &inc.subject, cond)?,
            quiet: quiet(c, id)?,
            ..cond.facts(now, late, 0)
        };
        return match incident::step(Some(&inc.open()), Input::Due, &facts) {
            Some(Transition::Close(reason)) => {
                close_incident(c, id, reason, now)?;
                Ok(Decision::Cancelled {
                    why: "its alerts resolved and none fired again before this attempt",
                })
            }
            Some(Transition::Due) => {
                exec(
                    c,
                    "UPDATE incidents SET state = ?2, next_attempt_at = NULL, max_attempts = ?3, updated_at = ?4, \
                     detail = 'attempt ' || (attempts + 1) || ' of ' || ?5 || ': waiting for the subject''s lock and the global limit' \
                     WHERE id = ?1",
                    args![
                        id,
                        IncidentState::Acting.as_str(),
                        cond.policy.max_attempts,
                        now,
                        cond.policy.max_attempts.to_string()
                    ],
                )?;
                Ok(Decision::Act {
                    incident: id,
                    attempt: inc.attempts + 1,
                    max_attempts: cond.policy.max_attempts,
                })
            }
            Some(Transition::Escalate(why)) => {
                let detail = gate_detail(why, &inc, cond, &job, now);
                escalate(c, &inc, why, &detail, Some(&job), cond.page.as_ref(), now)?;
                close(c, &job, why.job_result(), &detail, now)?;
                Ok(Decision::Escalated { incident: id, why })
            }
            Some(Transition::Hold(h)) => {
                holds::hold(c, id, h, &job, cond, now)?;
                Ok(Decision::Held {
                    incident: id,
                    hold: h,
                })
            }
            _ => {
                let why = "it is no longer its incident's attempt";
                close(c, &job, Event::Cancelled, why, now)?;
                Ok(Decision::Cancelled { why })
            }
        };
    }
    // A new occurrence. From here on the job is recorded under its canonical subject: written
    // with the update every path below makes to the job (`link`, or `close_canonical`).
    job.new.subject = input.subject.clone();
    job.new.selection = input.selection.clone();
    if occurrence.is_some_and(|(resolved, _)| resolved.is_some()) {
        let why = "the alert resolved before the action ran";
        close_canonical(c, &job, Event::Cancelled, why, now)?;
        return Ok(Decision::Cancelled { why });
    }
    let starts_at = occurrence.and_then(|(_, s)| s);
    let open = match ahead {
        Some(p) => p.open,
        None => load_one(
            c,
            "subject = ?1 AND closed_at IS NULL",
            args![&input.subject],
        )?,
    };
    // A dry run acts on nothing, whatever the subject's heals and holds: not looked up then.
    let facts = if cond.dry_run {
        cond.facts(now, late, 0)
    } else {
        incident::Facts {
            hold: holds::hold_of(c, &input.subject, cond)?,
            ..cond.facts(
                now,
                late,
                healed_in_window(c, &input.subject, &cond.policy, now)?,
            )
        }
    };
    let t = incident::step(
        open.as_ref().map(Row::open).as_ref(),
        Input::Occurrence { starts_at },
        &facts,
    );
    let new = match (t, &open) {
        (Some(Transition::Open(new)), None) => new,
        (Some(Transition::Supersede(new)), Some(old)) => {
            close_incident(c, old.id, CloseReason::Superseded, now)?;
            new
        }
        (Some(Transition::Join), Some(row)) => {
            link(c, &mut job, row.id)?;
            if row.state == IncidentState::Waiting {
                follow_latest_rule(c, row, &job)?;
            }
            let detail = format!(
                "joined incident {} of {} ({}): an alert of the same outage, no new action",
                row.id, row.subject, row.state
            );
            close(c, &job, Event::Joined, &detail, now)?;
            return Ok(Decision::Joined {
                incident: row.id,
                state: row.state,
                next_attempt_at: row.next_attempt_at,
            });
        }
        (Some(Transition::JoinEscalated), Some(row)) => {
            link(c, &mut job, row.id)?;
            escalations::refresh_page(c, row.id, now)?;
            let detail = format!(
                "joined escalated incident {} of {}: no action, part of its page",
                row.id, row.subject
            );
            close(c, &job, Event::SkippedEscalated, &detail, now)?;
            return Ok(Decision::JoinedEscalated { incident: row.id });
        }
        (t, _) => {
            return Err(StoreError(format!(
                "the incident model gave {t:?} for a new occurrence of {}",
                input.subject
            )))
        }
    };
    let superseded = open.filter(|_| matches!(t, Some(Transition::Supersede(_))));
    match new {
        New::DryRun => {
            let detail = match &cond.dry_run_note {
                Some(note) => format!("dry run: the action was not executed; {note}"),
                None => "dry run: the action was not executed".to_string(),
            };
            close_canonical(c, &job, Event::DryRun, &detail, now)?;
            Ok(Decision::DryRun)
        }
        New::Acting => {
            let id = insert_incident(c, &job, &cond.policy, false, now)?;
            adopt(c, superseded.as_ref(), id)?;
            link(c, &mut job, id)?;
            Ok(Decision::Act {
                incident: id,
                attempt: 1,
                max_attempts: cond.policy.max_attempts,
            })
        }
        New::Held(h) => {
            let id = insert_incident(c, &job, &cond.policy, false, now)?;
            adopt(c, superseded.as_ref(), id)?;
            link(c, &mut job, id)?;
            holds::hold(c, id, h, &job, cond, now)?;
            Ok(Decision::Held {
                incident: id,
                hold: h,
            })
        }
        New::Escalated(why) => {
            let id = insert_incident(c, &job, &cond.policy, true, now)?;
            adopt(c, superseded.as_ref(), id)?;
            link(c, &mut job, id)?;
            let detail = match why {
                Why::Flapping { healed } => format!(
                    "flapping: {healed} incidents of {} healed within {}; escalated without acting",
                    input.subject,
                    humantime::format_duration(cond.policy.flapping.window)
                ),
                _ => gate_detail(why, &load_row(c, id)?, cond, &job, now),
            };
            exec(
                c,
                "UPDATE incidents SET detail = ?2 WHERE id = ?1",
                args![id, detail],
            )?;
            escalations::insert(c, &job, id, cond.page.as_ref(), &detail, now)?;
            let event = match why {
                Why::Flapping { .. } => Event::SkippedFlapping,
                other => other.job_result(),
            };
            close(c, &job, event, &detail, now)?;
            Ok(Decision::Escalated { incident: id, why })
        }
    }
}

/// Why a gate escalated an incident, in words.
fn gate_detail(why: Why, inc: &Row, cond: &Conditions, job: &Job, now: f64) -> String {
    match why {
        Why::Late => format!(
            "attempt {} of {}: {} ({}s after it was due, global.resume_max_age is {}s); escalated, on-call is paged",
            inc.attempts + 1,
            inc.max_attempts,
            why.describe(),
            (now - job.due_at).round(),
            cond.resume_max_age.round()
        ),
        _ => format!(
            "attempt {} of {}: {}; escalated after {} attempt(s), on-call is paged",
            inc.attempts + 1,
            inc.max_attempts,
            why.describe(),
            inc.attempts
        ),
    }
}

fn load_row(c: &dyn Db, id: i64) -> Result<Row, StoreError> {
    open_by_id(c, id)?.ok_or_else(|| StoreError(format!("incident {id} is not open")))
}

/// The alerts of a superseded incident still firing belong to the new outage.
fn adopt(c: &dyn Db, old: Option<&Row>, id: i64) -> Result<(), StoreError> {
    if let Some(old) = old {
        exec(
            c,
            "UPDATE occurrences SET incident_id = ?2 WHERE incident_id = ?1 AND resolved_at IS NULL",
            args![old.id, id],
        )?;
    }
    Ok(())
}

/// A waiting incident's next attempt acts by the rule of its latest alert: of two rules on one
/// subject (a restart and a compose up), the condition now reported chooses the action.
fn follow_latest_rule(c: &dyn Db, inc: &Row, job: &Job) -> Result<(), StoreError> {
    let Some(pending) = inc.current_job else {
        return Ok(());
    };
    let n = exec(
        c,
        "UPDATE jobs SET rule = ?2, action = ?3, target = ?4, selection = ?5, labels = ?6, annotations = ?7, \
           fingerprint = ?8, starts_at = ?9 WHERE id = ?1 AND state = ?10 AND rule != ?2",
        args![
            pending,
            job.new.rule,
            job.new.action.as_str(),
            job.new.target,
            serde_json::to_string(&job.new.selection).unwrap_or_else(|_| "{}".into()),
            serde_json::to_string(&*job.new.labels).unwrap_or_else(|_| "{}".into()),
            serde_json::to_string(&*job.new.annotations).unwrap_or_else(|_| "{}".into()),
            job.new.fingerprint,
            job.new.starts_at,
            JobState::Queued.as_str()
        ],
    )?;
    if n > 0 {
        exec(
            c,
            "UPDATE incidents SET rule = ?2, action = ?3, target = ?4 WHERE id = ?1",
            args![
                inc.id,
                job.new.rule,
                job.new.action.as_str(),
                job.new.target
            ],
        )?;
    }
    Ok(())
}

/// Links a new occurrence's job and its occurrence to incident `id`, recording the job under its
/// canonical subject and selection (`job.new`).
fn link(c: &dyn Db, job: &mut Job, id: i64) -> Result<(), StoreError> {
    job.incident = Some(id);
    exec(
        c,
        "UPDATE jobs SET incident_id = ?2, subject = ?3, selection = ?4 WHERE id = ?1",
        args![
            job.id,
            id,
            job.new.subject,
            serde_json::to_string(&job.new.selection).unwrap_or_else(|_| "{}".into())
        ],
    )?;
    exec(
        c,
        "UPDATE occurrences SET incident_id = ?4 WHERE rule = ?1 AND fingerprint = ?2 AND starts_at = ?3",
        args![job.new.rule, job.new.fingerprint, job.new.starts_at, id],
    )?;
    Ok(())
}

fn insert_incident(
    c: &dyn Db,
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
    c.insert(
        "INSERT INTO incidents (subject, target, rule, action, alertname, fingerprint, state, opened_at, updated_at, \
           attempts, max_attempts, flapping_count, flapping_window, current_job, escalated_at, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 0, ?9, ?10, ?11, ?12, ?13, ?14)",
        args![
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
    )
}

/// Escalates an open incident: no more actions, its pending attempt or re-check cancelled, its
/// escalation stored (or, without an `escalation` section, the audit says nobody is paged).
/// `job` is the job the page is about; without one, the incident's latest job.
pub(super) fn escalate(
    c: &dyn Db,
    inc: &Row,
    why: Why,
    detail: &str,
    job: Option<&Job>,
    page: Option<&PageSpec>,
    now: f64,
) -> Result<(), StoreError> {
    exec(
        c,
        "UPDATE incidents SET state = ?2, escalated_at = ?3, updated_at = ?3, current_job = NULL, \
         next_attempt_at = NULL, next_check_at = NULL, detail = ?4 WHERE id = ?1",
        args![inc.id, IncidentState::Escalated.as_str(), now, detail],
    )?;
    if let Some(pending) = inc.current_job.filter(|p| job.is_none_or(|j| j.id != *p)) {
        for j in jobs::load(
            c,
            "id = ?1 AND state = ?2",
            args![pending, JobState::Queued.as_str()],
        )? {
            let d = format!("the incident was escalated: {}", why.describe());
            close(c, &j, Event::Cancelled, &d, now)?;
        }
    }
    let latest;
    let job = match job {
        Some(j) => j,
        None => {
            latest = jobs::load(
                c,
                "incident_id = ?1 ORDER BY id DESC LIMIT 1",
                args![inc.id],
            )?;
            match latest.first() {
                Some(j) => j,
                None => return Ok(()),
            }
        }
    };
    let mut job = job.clone();
    job.incident = Some(inc.id);
    job.new.subject = inc.subject.clone();
    escalations::insert(c, &job, inc.id, page, detail, now)
}

fn start(c: &dyn Db, job: &Job, cond: &Conditions, now: f64) -> Result<Start, StoreError> {
    let stored: Option<(String, Option<i64>, Option<String>)> = row_opt(
        c,
        "SELECT state, incident_id, owner FROM jobs WHERE id = ?1",
        args![job.id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let Some((state, Some(incident), owner)) = stored else {
        return Ok(Start::Gone);
    };
    // Another replica took the job over (this one's lease ran out): it acts, not this one.
    if state != JobState::Queued.as_str() || owner.as_deref() != Some(&c.replica().instance) {
        return Ok(Start::Gone);
    }
    let mut job = job.clone();
    job.incident = Some(incident);
    let inc = open_by_id(c, incident)?.filter(|r| r.current_job == Some(job.id));
    let t = match &inc {
        Some(r) => {
            let facts = incident::Facts {
                hold: holds::hold_of(c, &r.subject, cond)?,
                quiet: quiet(c, r.id)?,
                ..cond.facts(now, false, 0)
            };
            incident::step(Some(&r.open()), Input::Start, &facts)
        }
        None => None,
    };
    match (t, inc) {
        (Some(Transition::Start { attempt }), Some(inc)) => {
            exec(
                c,
                "UPDATE incidents SET attempts = ?2, updated_at = ?3, detail = ?4 WHERE id = ?1",
                args![
                    incident,
                    attempt,
                    now,
                    format!("attempt {attempt} of {}: the action runs", inc.max_attempts)
                ],
            )?;
            exec(
                c,
                "UPDATE jobs SET state = ?2, started_at = ?3, attempt = ?4 WHERE id = ?1",
                args![job.id, JobState::Running.as_str(), now, attempt],
            )?;
            Ok(Start::Started {
                attempt,
                max_attempts: inc.max_attempts,
            })
        }
        (Some(Transition::Escalate(why)), Some(inc)) => {
            let detail = gate_detail(why, &inc, cond, &job, now);
            escalate(c, &inc, why, &detail, Some(&job), cond.page.as_ref(), now)?;
            close(c, &job, why.job_result(), &detail, now)?;
            Ok(Start::Escalated(why))
        }
        (Some(Transition::Hold(h)), Some(inc)) => {
            holds::hold(c, inc.id, h, &job, cond, now)?;
            Ok(Start::Held(h))
        }
        (Some(Transition::Close(reason)), Some(inc)) => {
            close_incident(c, inc.id, reason, now)?;
            Ok(Start::Cancelled)
        }
        _ => {
            close(
                c,
                &job,
                Event::Cancelled,
                "its incident closed before the action started",
                now,
            )?;
            Ok(Start::Cancelled)
        }
    }
}

fn finish(c: &dyn Db, mut input: FinishInput, now: f64) -> Result<Finished, StoreError> {
    // An action's words may quote what a peer answered: bounded. The audit row keeps up to
    // DETAIL_BYTES (a cleanup lists every file it removed); the incident and an escalation,
    // which show and post it, keep a value's length.
    let audit_detail = crate::limits::detail(&input.detail);
    input.detail = crate::limits::value(&input.detail);
    let incident: Option<i64> = row_opt(
        c,
        "SELECT incident_id FROM jobs WHERE id = ?1",
        args![input.job.id],
        |r| r.get(0),
    )?
    .flatten();
    let mut job = input.job.clone();
    job.incident = incident;
    let n = exec(
        c,
        "UPDATE jobs SET state = ?2, result = ?3 WHERE id = ?1 AND state != ?2",
        args![
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
    let Some(mut inc) = incident
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
            exec(
                c,
                "UPDATE incidents SET healed_at = ?2 WHERE id = ?1 AND healed_at IS NULL AND closed_at IS NOT NULL",
                args![id, now],
            )?;
        }
        return Ok(Finished::default());
    };
    let facts = incident::Facts {
        quiet: quiet(c, inc.id)?,
        ..input.cond.facts(now, false, 0)
    };
    let event = match input.outcome {
        Outcome::Succeeded => Input::Verified,
        Outcome::Failed => Input::Failed,
        Outcome::Refused => Input::Refused,
    };
    // A verified attempt whose start of verification was not recorded (a store error) is
    // verifying now.
    if event == Input::Verified && inc.state == IncidentState::Acting && inc.running {
        if let Some(Transition::Verify) = incident::step(Some(&inc.open()), Input::Returned, &facts)
        {
            inc.state = IncidentState::Verifying;
        }
    }
    let t = incident::step(Some(&inc.open()), event, &facts);
    follow(c, &inc, t, &job, &input.detail, &input.cond, now)
}

/// Applies what follows an attempt or a re-check: healed, the next attempt, or escalation.
pub(super) fn follow(
    c: &dyn Db,
    inc: &Row,
    t: Option<Transition>,
    job: &Job,
    detail: &str,
    cond: &Conditions,
    now: f64,
) -> Result<Finished, StoreError> {
    let mut out = Finished::default();
    match t {
        Some(Transition::Heal { recheck_at }) => {
            exec(
                c,
                "UPDATE incidents SET state = ?2, healed_at = ?3, updated_at = ?3, current_job = NULL, \
                 next_check_at = ?4, rechecks = 0, detail = ?5 WHERE id = ?1",
                args![
                    inc.id,
                    IncidentState::Healed.as_str(),
                    now,
                    recheck_at,
                    format!("healed by attempt {}: {detail}", inc.attempts)
                ],
            )?;
            out.state = Some(IncidentState::Healed);
        }
        Some(Transition::Retry { at }) => {
            let mut next = job.new.clone();
            next.not_before = at;
            let retry = jobs::insert(c, next, Some(inc.id), true, now)?;
            exec(
                c,
                "UPDATE incidents SET state = ?2, next_attempt_at = ?3, updated_at = ?4, current_job = ?5, \
                 max_attempts = ?6, next_check_at = NULL, detail = ?7 WHERE id = ?1",
                args![
                    inc.id,
                    IncidentState::Waiting.as_str(),
                    at,
                    now,
                    retry.id,
                    cond.policy.max_attempts,
                    format!(
                        "attempt {} of {} failed: {detail}",
                        inc.attempts, cond.policy.max_attempts
                    )
                ],
            )?;
            out.state = Some(IncidentState::Waiting);
            out.retry = Some(retry);
        }
        Some(Transition::Escalate(why)) => {
            let d = match why {
                Why::Refused => format!("the action was refused: {detail}; escalated"),
                _ => format!(
                    "escalated after {} failed attempt(s); the last: {detail}",
                    inc.attempts
                ),
            };
            let mut job = job.clone();
            job.incident = Some(inc.id);
            escalate(c, inc, why, &d, Some(&job), cond.page.as_ref(), now)?;
            out.state = Some(IncidentState::Escalated);
        }
        Some(Transition::HealedAndClosed(reason)) => {
            exec(
                c,
                "UPDATE incidents SET healed_at = ?2, detail = ?3 WHERE id = ?1",
                args![
                    inc.id,
                    now,
                    format!("healed by attempt {}: {detail}", inc.attempts)
                ],
            )?;
            out.closed = close_incident(c, inc.id, reason, now)?.closed.pop();
            out.state = Some(IncidentState::Resolved);
        }
        Some(Transition::Close(reason)) => {
            out.closed = close_incident(c, inc.id, reason, now)?.closed.pop();
            out.state = Some(IncidentState::Resolved);
        }
        Some(Transition::RecheckAgain { at }) => {
            exec(
                c,
                "UPDATE incidents SET rechecks = rechecks + 1, next_check_at = ?2, updated_at = ?3, detail = ?4 WHERE id = ?1",
                args![inc.id, at, now, format!("healed; verified again while its alert still fires: {detail}")],
            )?;
            out.state = Some(IncidentState::Healed);
        }
        t => {
            return Err(StoreError(format!(
                "the incident model gave {t:?} for the outcome of incident {} ({})",
                inc.id, inc.state
            )))
        }
    }
    Ok(out)
}
