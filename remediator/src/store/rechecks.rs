//! The re-check of a heal: a healed incident whose alert still fires `verify.resolve_within`
//! after the heal is verified again; a heal that did not hold is a failed attempt of the same
//! incident (the model's `recheck`).

use super::audit::{self, About};
use super::endings::{close_incident, open_by_id};
use super::incidents::{follow, Conditions, Finished};
use super::{args, exec, jobs, rows, Db, Job, Store, StoreError};
use crate::incident::{self, Input, Transition};
use crate::vocab::{Event, IncidentState};

/// A healed incident whose re-check is due: what verifying it again needs.
#[derive(Debug, Clone)]
pub struct DueCheck {
    /// The incident.
    pub incident: i64,
    /// Its subject.
    pub subject: String,
    /// The job of the attempt that healed it (its rule, target and selection).
    pub job: Job,
    /// Re-checks that passed already.
    pub rechecks: u32,
}

impl Store {
    /// Healed incidents whose re-check is due at `now`, at most `limit`.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn due_checks(&self, now: f64, limit: usize) -> Result<Vec<DueCheck>, StoreError> {
        self.read(move |c| due_checks(c, now, limit)).await
    }

    /// Records the re-check of a healed incident whose alerts still fire.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn recheck(
        &self,
        check: DueCheck,
        verified: bool,
        detail: String,
        cond: Conditions,
        now: f64,
    ) -> Result<Finished, StoreError> {
        self.run(move |c| recheck(c, &check, verified, &detail, &cond, now))
            .await
    }
}

fn due_checks(c: &dyn Db, now: f64, limit: usize) -> Result<Vec<DueCheck>, StoreError> {
    let due: Vec<(i64, String, u32)> = rows(
        c,
        "SELECT id, subject, rechecks FROM incidents WHERE closed_at IS NULL AND state = ?1 \
         AND next_check_at <= ?2 ORDER BY next_check_at LIMIT ?3",
        args![IncidentState::Healed.as_str(), now, limit as i64],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?
    .into_iter()
    .collect();
    let mut out = Vec::with_capacity(due.len());
    for (id, subject, rechecks) in due {
        // The attempt that healed it: its rule, target and selection are what is verified.
        let job = jobs::load(
            c,
            "incident_id = ?1 AND started_at IS NOT NULL ORDER BY id DESC LIMIT 1",
            args![id],
        )?
        .pop();
        match job {
            Some(job) => out.push(DueCheck {
                incident: id,
                subject,
                job,
                rechecks,
            }),
            // Nothing to verify with (a migrated incident): it stays healed, unchecked.
            None => {
                exec(
                    c,
                    "UPDATE incidents SET next_check_at = NULL WHERE id = ?1",
                    args![id],
                )?;
            }
        }
    }
    Ok(out)
}

fn recheck(
    c: &dyn Db,
    check: &DueCheck,
    verified: bool,
    detail: &str,
    cond: &Conditions,
    now: f64,
) -> Result<Finished, StoreError> {
    let detail = crate::limits::value(detail);
    let Some(inc) = open_by_id(c, check.incident)?
        .filter(|r| r.state == IncidentState::Healed && r.rechecks == check.rechecks)
    else {
        // Closed or changed meanwhile (its alert resolved, a new outage superseded it).
        return Ok(Finished::default());
    };
    let input = if cond.configured {
        Input::Recheck { verified }
    } else {
        Input::Unconfigured
    };
    let t = incident::step(Some(&inc.open()), input, &cond.facts(now, false, 0));
    let mut job = check.job.clone();
    job.incident = Some(inc.id);
    let (event, words) = match t {
        Some(Transition::RecheckAgain { .. }) => (
            Event::Rechecked,
            format!("healed, but its alert still fires; verified again: {detail}"),
        ),
        Some(Transition::Close(reason)) => {
            let r = close_incident(c, inc.id, reason, now)?;
            return Ok(Finished {
                state: Some(IncidentState::Resolved),
                closed: r.closed.into_iter().next(),
                retry: None,
            });
        }
        _ if verified => (
            Event::Failed,
            format!(
                "the heal did not hold: its alert still fires {} after the heal although verification passes ({detail})",
                humantime::format_duration(std::time::Duration::from_secs(
                    (now - inc.healed_at.unwrap_or(now)).max(0.0).round() as u64
                ))
            ),
        ),
        _ => (
            Event::Failed,
            format!("the heal did not hold: {detail}"),
        ),
    };
    audit::write(
        c,
        &audit::Row {
            at: now,
            about: About {
                job: None,
                ..About::job(&job)
            },
            event,
            detail: &format!("attempt {} of {}: {words}", inc.attempts, inc.max_attempts),
            duration: None,
        },
    )?;
    follow(c, &inc, t, &job, &words, cond, now)
}
