//! What the configuration and on-call do to incidents: a removed rule or target escalates an
//! incident still being remediated and closes a healed one; on-call's reset closes an
//! escalated incident, re-arms its alerts still firing and clears the flapping history.

use super::audit::{self, About};
use super::endings::{close_incident, load_one, open_by_id, Row};
use super::incidents::{escalate, Conditions};
use super::{args, exec, jobs, rows, Closed, Db, Job, Resolution, Store, StoreError};
use crate::incident::{self, Input, Policy, Transition};
use crate::paging::PageSpec;
use crate::vocab::{CloseReason, Event, IncidentState};

/// What an on-call reset did.
#[derive(Debug)]
pub enum ResetOutcome {
    /// The escalated incident closed; its alerts still firing are handled again as these jobs.
    Reset {
        /// The incident that closed.
        closed: Closed,
        /// New jobs for its alerts still firing.
        requeued: Vec<Job>,
    },
    /// No incident was open: the subject's flapping history was cleared.
    Forgotten,
    /// The subject's incident is still being remediated: nothing changed.
    Busy(IncidentState),
}

impl Store {
    /// Applies a configuration: every open incident whose rule or target is gone is escalated
    /// when an attempt of it is pending, and closed when it healed. `configured` lists the
    /// `(rule, target)` pairs a rule acts on.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn unconfigured(
        &self,
        configured: Vec<(String, String)>,
        page: Option<PageSpec>,
        now: f64,
    ) -> Result<Resolution, StoreError> {
        self.run(move |c| unconfigured(c, &configured, page.as_ref(), now))
            .await
    }

    /// On-call resets `subject`: an escalated incident closes (its page resolves) and its alerts
    /// still firing are handled again; the subject's flapping history is cleared.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn reset(
        &self,
        subject: String,
        note: String,
        now: f64,
    ) -> Result<ResetOutcome, StoreError> {
        self.run(move |c| reset(c, &subject, &note, now)).await
    }
}

fn unconfigured(
    c: &dyn Db,
    configured: &[(String, String)],
    page: Option<&PageSpec>,
    now: f64,
) -> Result<Resolution, StoreError> {
    let open: Vec<(i64, String, String)> = rows(
        c,
        "SELECT id, rule, target FROM incidents WHERE closed_at IS NULL AND state IN (?1, ?2, ?3)",
        args![
            IncidentState::Acting.as_str(),
            IncidentState::Waiting.as_str(),
            IncidentState::Healed.as_str()
        ],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?
    .into_iter()
    .collect();
    let cond = Conditions {
        policy: Policy::default(),
        dry_run: false,
        dry_run_note: None,
        configured: false,
        resume_max_age: f64::MAX,
        page: page.cloned(),
        guard: super::holds::Guard::default(),
    };
    let mut out = Resolution::default();
    for (id, rule, target) in open {
        if configured.iter().any(|(r, t)| *r == rule && *t == target) {
            continue;
        }
        let Some(inc) = open_by_id(c, id)? else {
            continue;
        };
        match incident::step(
            Some(&inc.open()),
            Input::Unconfigured,
            &cond.facts(now, false, 0),
        ) {
            Some(Transition::Escalate(why)) => {
                let detail = format!(
                    "{}: rule {rule} on target {target}; escalated after {} attempt(s), on-call is paged",
                    why.describe(),
                    inc.attempts
                );
                escalate(c, &inc, why, &detail, None, page, now)?;
                out.escalated += 1;
            }
            Some(Transition::Close(reason)) => out.merge(close_incident(c, id, reason, now)?),
            _ => {}
        }
    }
    Ok(out)
}

fn reset(c: &dyn Db, subject: &str, note: &str, now: f64) -> Result<ResetOutcome, StoreError> {
    let open = load_one(c, "subject = ?1 AND closed_at IS NULL", args![subject])?;
    let facts = Conditions {
        policy: Policy::default(),
        dry_run: false,
        dry_run_note: None,
        configured: true,
        resume_max_age: f64::MAX,
        page: None,
        guard: super::holds::Guard::default(),
    }
    .facts(now, false, 0);
    let t = incident::step(open.as_ref().map(Row::open).as_ref(), Input::Reset, &facts);
    let mut requeued = Vec::new();
    let outcome = match (t, open) {
        (Some(Transition::Reset), Some(inc)) => {
            let closed = close_incident(c, inc.id, CloseReason::Reset, now)?
                .closed
                .pop()
                .ok_or_else(|| StoreError(format!("incident {} did not close", inc.id)))?;
            // Its alerts still firing are new occurrences of a re-armed subject.
            let firing: Vec<(String, String, String)> = rows(
        c,
        "SELECT rule, fingerprint, starts_at FROM occurrences WHERE incident_id = ?1 AND resolved_at IS NULL",
        args![inc.id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?
    .into_iter()
    .collect();
            exec(
                c,
                "UPDATE occurrences SET incident_id = NULL WHERE incident_id = ?1 AND resolved_at IS NULL",
                args![inc.id],
            )?;
            for (rule, fp, starts) in firing {
                if let Some(template) = jobs::load(
                    c,
                    "rule = ?1 AND fingerprint = ?2 AND starts_at = ?3 ORDER BY id DESC LIMIT 1",
                    args![rule, fp, starts],
                )?
                .pop()
                {
                    let mut new = template.new;
                    new.not_before = now;
                    requeued.push(jobs::insert(c, new, None, false, now)?);
                }
            }
            ResetOutcome::Reset {
                closed,
                requeued: Vec::new(),
            }
        }
        (Some(Transition::ForgetHistory), _) => ResetOutcome::Forgotten,
        (_, Some(inc)) => return Ok(ResetOutcome::Busy(inc.state)),
        (_, None) => ResetOutcome::Forgotten,
    };
    exec(
        c,
        "INSERT INTO subjects (subject, reset_at, reset_note) VALUES (?1, ?2, ?3) \
         ON CONFLICT(subject) DO UPDATE SET reset_at = excluded.reset_at, reset_note = excluded.reset_note",
        args![subject, now, note],
    )?;
    let detail = match &outcome {
        ResetOutcome::Reset { closed, .. } => format!(
            "reset by on-call: incident {} closed, its page resolves, the flapping history is cleared and {} alert(s) still firing are handled again{}",
            closed.id,
            requeued.len(),
            if note.is_empty() { String::new() } else { format!(" ({note})") }
        ),
        _ => format!(
            "reset by on-call: the flapping history is cleared{}",
            if note.is_empty() { String::new() } else { format!(" ({note})") }
        ),
    };
    audit::write(
        c,
        &audit::Row {
            at: now,
            about: About {
                subject,
                incident: match &outcome {
                    ResetOutcome::Reset { closed, .. } => Some(closed.id),
                    _ => None,
                },
                ..About::default()
            },
            event: Event::Reset,
            detail: &detail,
            duration: None,
        },
    )?;
    Ok(match outcome {
        ResetOutcome::Reset { closed, .. } => ResetOutcome::Reset { closed, requeued },
        other => other,
    })
}
