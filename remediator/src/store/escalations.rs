//! The escalation outbox: one `StackmedicRemediationFailed` per escalated incident, posted,
//! re-posted while the incident is escalated, and resolved when it closes.

use serde_json::Value;

use super::audit::{self, About};
use super::views::ALERTS_SHOWN;
use super::{args, exec, jobs, row, row_opt, rows, Db, Job, Store, StoreError};
use crate::paging::{self, PageSpec};
use crate::vocab::{CloseReason, EscalationState, Event};

/// An escalation alert due to be posted: its first post, a re-post while it is active, or its
/// resolving post.
#[derive(Debug, Clone)]
pub struct PendingEscalation {
    /// Row id.
    pub id: i64,
    /// The alert as posted to `/api/v2/alerts` (an array of one); its labels and `startsAt`
    /// never change, `endsAt` is set at each post.
    pub payload: Value,
    /// Failed posts since the last delivered one (for the backoff).
    pub failures: u32,
    /// Whether this is the resolving post (`endsAt` = now).
    pub resolving: bool,
    /// Whether the escalation was never delivered yet.
    pub first: bool,
    /// Why it resolves, for a resolving post.
    pub resolve_reason: Option<String>,
}

/// What became of an escalation post, for [`Store::escalation_posted`].
#[derive(Debug, Clone)]
pub enum PostResult {
    /// Alertmanager accepted a firing post; the next one is due at the time given.
    Firing {
        /// Time of the next re-post.
        next_post_at: f64,
    },
    /// Alertmanager accepted the resolving post: the escalation is over.
    Resolved,
    /// The post failed; retried at the time given.
    Failed {
        /// What went wrong.
        error: String,
        /// Time of the retry.
        retry_at: f64,
    },
}

impl Store {
    /// Escalations due to be posted.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn due_escalations(&self, now: f64) -> Result<Vec<PendingEscalation>, StoreError> {
        self.run(move |c| {
            let rows = rows(
        c,
        "SELECT id, payload, failures, state, delivered_at, resolve_reason FROM escalations \
                 WHERE state IN (?2, ?3) AND next_try_at <= ?1 ORDER BY id LIMIT 50",
        args![
                    now,
                    EscalationState::Firing.as_str(),
                    EscalationState::Resolving.as_str()
                ],
        |r| {
                    let state: String = r.get(3)?;
                    let payload: String = r.get(1)?;
                    Ok(PendingEscalation {
                        id: r.get(0)?,
                        payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
                        failures: r.get(2)?,
                        resolving: state == EscalationState::Resolving.as_str(),
                        first: r.get::<Option<f64>>(4)?.is_none(),
                        resolve_reason: r.get(5)?,
                    })
                },
    )?;
            Ok(rows)
        })
        .await
    }

    /// After a start: active escalations already delivered are posted again at once, so a page
    /// whose `endsAt` came close during the downtime is refreshed without waiting.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn resume_escalations(&self, now: f64) -> Result<usize, StoreError> {
        self.run(move |c| {
            exec(
                c,
                "UPDATE escalations SET next_try_at = ?1 \
                 WHERE state = ?2 AND delivered_at IS NOT NULL AND next_try_at > ?1",
                args![now, EscalationState::Firing.as_str()],
            )
        })
        .await
    }

    /// Time of the next escalation post due (first post, re-post, resolve or retry), if any.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn next_escalation_at(&self) -> Result<Option<f64>, StoreError> {
        self.run(|c| {
            row(
                c,
                "SELECT MIN(next_try_at) FROM escalations WHERE state IN (?1, ?2)",
                args![
                    EscalationState::Firing.as_str(),
                    EscalationState::Resolving.as_str()
                ],
                |r| r.get::<Option<f64>>(0),
            )
        })
        .await
    }

    /// Records a post of an escalation. A firing post that raced with its incident's end
    /// leaves the resolution due; a delivered resolving post ends the escalation and is
    /// audited as `escalation_resolved`. Returns whether the escalation ended now.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn escalation_posted(
        &self,
        id: i64,
        resolving: bool,
        result: PostResult,
        now: f64,
    ) -> Result<bool, StoreError> {
        self.run(move |c| posted(c, id, resolving, result, now))
            .await
    }
}

/// Stores the escalation of incident `incident` (decided on `job`) and audits it. Without a
/// page spec (no `escalation` section) only the audit row says that nobody is paged.
pub(super) fn insert(
    c: &dyn Db,
    job: &Job,
    incident: i64,
    page: Option<&PageSpec>,
    why: &str,
    now: f64,
) -> Result<(), StoreError> {
    let payload = page.map(|spec| {
        paging::alert(
            spec,
            &paging::About {
                labels: &job.new.labels,
                starts_at: &job.new.starts_at,
                rule: &job.new.rule,
                target: &job.new.target,
                action: job.new.action,
                subject: &job.new.subject,
                why,
            },
        )
    });
    let detail = match &payload {
        Some(p) => {
            exec(
c,
                "INSERT INTO escalations (job_id, incident_id, created_at, payload, next_try_at, subject, fingerprint, starts_at, state) \
                 VALUES (?1, ?2, ?3, ?4, ?3, ?5, ?6, ?7, ?8)",
                args![
                    job.id,
                    incident,
                    now,
                    p.to_string(),
                    job.new.subject,
                    job.new.fingerprint,
                    job.new.starts_at,
                    EscalationState::Firing.as_str()
                ],
            )?;
            format!("StackmedicRemediationFailed queued for Alertmanager: {why}")
        }
        None => format!("no escalation section configured, nobody is paged: {why}"),
    };
    audit::write(
        c,
        &audit::Row {
            at: now,
            about: About::job(job),
            event: Event::Escalated,
            detail: &detail,
            duration: None,
        },
    )
}

/// Updates the active escalation of `incident` with every alert of the incident (annotation
/// `alerts`) and posts it again now: a new outage of an escalated subject is part of its page.
pub(super) fn refresh_page(c: &dyn Db, incident: i64, now: f64) -> Result<(), StoreError> {
    let Some((id, payload)): Option<(i64, String)> = row_opt(
        c,
            "SELECT id, payload FROM escalations WHERE incident_id = ?1 AND state = ?2 ORDER BY id DESC LIMIT 1",
            args![incident, EscalationState::Firing.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        ?
    else {
        return Ok(());
    };
    let total: i64 = row(
        c,
        "SELECT COUNT(*) FROM occurrences WHERE incident_id = ?1",
        args![incident],
        |r| r.get(0),
    )?;
    // The latest ones, oldest first: an incident that keeps gaining alerts keeps a bounded page.
    let mut alerts: Vec<String> = rows(
        c,
        "SELECT alertname, starts_at, resolved_at FROM \
         (SELECT alertname, starts_at, resolved_at, first_seen FROM occurrences WHERE incident_id = ?1 \
          ORDER BY first_seen DESC LIMIT ?2) AS latest ORDER BY first_seen",
        args![incident, ALERTS_SHOWN as i64],
        |r| {
            let (name, start, resolved): (String, String, Option<f64>) =
                (r.get(0)?, r.get(1)?, r.get(2)?);
            Ok(format!(
                "{name} since {start}{}",
                if resolved.is_some() {
                    " (resolved)"
                } else {
                    ""
                }
            ))
        },
    )?
    .into_iter()
    .collect();
    let shown = alerts.len() as i64;
    if total > shown {
        alerts.insert(0, format!("{} earlier alert(s)", total - shown));
    }
    let mut payload: Value = serde_json::from_str(&payload).unwrap_or(Value::Null);
    if let Some(annotations) = payload
        .get_mut(0)
        .and_then(|a| a.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        annotations.insert("alerts".into(), Value::String(alerts.join("; ")));
    }
    exec(
        c,
        "UPDATE escalations SET payload = ?2, next_try_at = CASE WHEN next_try_at <= ?3 THEN next_try_at ELSE ?3 END WHERE id = ?1",
        args![id, payload.to_string(), now],
    )?;
    Ok(())
}

/// Switches the active escalations of a closing incident to resolving; returns how many.
pub(super) fn resolve_for_incident(
    c: &dyn Db,
    incident: i64,
    reason: CloseReason,
    now: f64,
) -> Result<usize, StoreError> {
    exec(
        c,
        "UPDATE escalations SET state = ?2, resolve_reason = ?3, next_try_at = ?4, failures = 0 \
         WHERE incident_id = ?1 AND state = ?5",
        args![
            incident,
            EscalationState::Resolving.as_str(),
            reason.describe(),
            now,
            EscalationState::Firing.as_str()
        ],
    )
}

fn posted(
    c: &dyn Db,
    id: i64,
    resolving: bool,
    result: PostResult,
    now: f64,
) -> Result<bool, StoreError> {
    let posted_state = if resolving {
        EscalationState::Resolving
    } else {
        EscalationState::Firing
    };
    match result {
        PostResult::Firing { next_post_at } => {
            exec(
c,
                "UPDATE escalations SET delivered_at = COALESCE(delivered_at, ?2), last_post_at = ?2, \
                 tries = tries + 1, posts = posts + 1, failures = 0, last_error = NULL, \
                 next_try_at = CASE WHEN state = ?4 THEN ?3 ELSE next_try_at END WHERE id = ?1",
                args![id, now, next_post_at, EscalationState::Firing.as_str()],
            )?;
            Ok(false)
        }
        PostResult::Failed { error, retry_at } => {
            exec(
c,
                "UPDATE escalations SET tries = tries + 1, failures = failures + 1, last_error = ?3, \
                 next_try_at = CASE WHEN state = ?4 THEN ?2 ELSE next_try_at END WHERE id = ?1",
                args![id, retry_at, error, posted_state.as_str()],
            )?;
            Ok(false)
        }
        PostResult::Resolved => {
            let n = exec(
                c,
                "UPDATE escalations SET state = ?3, resolved_at = ?2, last_post_at = ?2, \
                 tries = tries + 1, posts = posts + 1, failures = 0, last_error = NULL \
                 WHERE id = ?1 AND state = ?4",
                args![
                    id,
                    now,
                    EscalationState::Resolved.as_str(),
                    EscalationState::Resolving.as_str()
                ],
            )?;
            if n == 0 {
                return Ok(false);
            }
            let (job_id, reason): (Option<i64>, Option<String>) = row(
                c,
                "SELECT job_id, resolve_reason FROM escalations WHERE id = ?1",
                args![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let job = match job_id {
                Some(j) => jobs::load(c, "id = ?1", args![j])?.pop(),
                None => None,
            };
            let detail = format!(
                "StackmedicRemediationFailed resolved in Alertmanager: {}",
                reason.as_deref().unwrap_or("resolved")
            );
            audit::write(
                c,
                &audit::Row {
                    at: now,
                    about: job.as_ref().map(About::job).unwrap_or_default(),
                    event: Event::EscalationResolved,
                    detail: &detail,
                    duration: None,
                },
            )?;
            Ok(true)
        }
    }
}
