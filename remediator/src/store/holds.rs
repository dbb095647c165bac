//! When not to act, applied to the database: whether an action must wait (a pause by on-call,
//! an unreachable engine, a dependency being remediated, the blast-radius guard), held
//! incidents, their release one subject of a target at a time, the one page per target a
//! guard or engine hold raises, and the pause itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{json, Value};

use super::audit::{self, About};
use super::endings::{open_by_id, Row};
use super::incidents::{escalate, Conditions};
use super::jobs::{self, close};
use super::{args, exec, row, row_opt, rows, Db, Job, Store, StoreError};
use crate::clock::rfc3339_millis;
use crate::config::guard::BlastRadius;
use crate::incident::{self, Hold, Input, Transition};
use crate::paging::{PageSpec, ALERTNAME};
use crate::vocab::{EscalationState, Event, IncidentState, JobState};

/// What the blast-radius guard and the dependency order need of the configuration.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// The guard's settings for the job's target.
    pub blast: BlastRadius,
    /// The target's subjects (empty when its allow-lists do not bound them).
    pub subjects: Arc<BTreeSet<String>>,
    /// Every subject's dependencies.
    pub dependencies: Arc<BTreeMap<String, BTreeSet<String>>>,
    /// The engine the action acts through cannot be reached now.
    pub engine_down: bool,
    /// Why, in the engine's or the connection's words.
    pub engine_error: Option<String>,
}

/// On-call's pause.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Pause {
    /// Why, as on-call wrote it.
    pub reason: String,
    /// Since when.
    pub since: f64,
    /// Until when it was planned (it ends only by a resume).
    pub until: Option<f64>,
}

/// A subject failing: its open incident is not healed, or an alert of it waits to be decided.
fn failing(c: &dyn Db, subject: &str) -> Result<bool, StoreError> {
    row(
        c,
        "SELECT EXISTS (SELECT 1 FROM incidents WHERE subject = ?1 AND closed_at IS NULL AND state != ?2) \
         OR EXISTS (SELECT 1 FROM jobs WHERE subject = ?1 AND state = ?3 AND incident_id IS NULL)",
        args![subject, IncidentState::Healed.as_str(), JobState::Queued.as_str()],
        |r| r.get(0),
    )
}

/// The pause in force, if any.
pub(super) fn paused(c: &dyn Db) -> Result<Option<Pause>, StoreError> {
    row_opt(
        c,
        "SELECT reason, since, until FROM pause WHERE id = 1",
        args![],
        |r| {
            Ok(Pause {
                reason: r.get(0)?,
                since: r.get(1)?,
                until: r.get(2)?,
            })
        },
    )
}

/// Whether, and why, an action on `subject` must wait now.
pub(super) fn hold_of(
    c: &dyn Db,
    subject: &str,
    cond: &Conditions,
) -> Result<Option<Hold>, StoreError> {
    if paused(c)?.is_some() {
        return Ok(Some(Hold::Paused));
    }
    let g = &cond.guard;
    if g.engine_down {
        return Ok(Some(Hold::Engine));
    }
    for dep in g.dependencies.get(subject).into_iter().flatten() {
        if failing(c, dep)? {
            return Ok(Some(Hold::Dependency));
        }
    }
    let of = g.subjects.len();
    if g.blast.can_hold(of) && g.subjects.contains(subject) {
        let mut n = 0;
        for s in g.subjects.iter() {
            if s == subject || failing(c, s)? {
                n += 1;
            }
        }
        if g.blast.holds(n, of) {
            return Ok(Some(Hold::BlastRadius {
                failing: n as u32,
                of: of as u32,
            }));
        }
    }
    Ok(None)
}

/// A hold in words, with the engine's error when it cannot be reached.
fn hold_detail(h: Hold, cond: &Conditions) -> String {
    match (h, &cond.guard.engine_error) {
        (Hold::Engine, Some(e)) => format!("{} ({})", h.describe(), crate::limits::value(e)),
        _ => h.describe(),
    }
}

/// The kind of a hold as stored on its incident.
fn hold_kind(h: Hold) -> &'static str {
    match h {
        Hold::BlastRadius { .. } => "blast_radius",
        Hold::Engine => "engine",
        Hold::Dependency => "dependency",
        Hold::Paused => "paused",
    }
}

/// Holds incident `inc` (open) on `hold`; `job` was its pending attempt, or the job of the
/// alert that opened it, and ends `held`. A guard or engine hold pages once for the target.
pub(super) fn hold(
    c: &dyn Db,
    inc: i64,
    hold: Hold,
    job: &Job,
    cond: &Conditions,
    now: f64,
) -> Result<(), StoreError> {
    let detail = hold_detail(hold, cond);
    exec(
        c,
        "UPDATE incidents SET state = ?2, hold = ?3, current_job = NULL, next_attempt_at = NULL, \
         next_check_at = NULL, updated_at = ?4, detail = ?5 WHERE id = ?1",
        args![
            inc,
            IncidentState::Held.as_str(),
            hold_kind(hold),
            now,
            format!("held: {detail}")
        ],
    )?;
    let mut job = job.clone();
    job.incident = Some(inc);
    close(c, &job, Event::Held, &format!("held: {detail}"), now)?;
    if hold.pages() {
        group_page(c, &job, hold, cond.page.as_ref(), now)?;
    }
    Ok(())
}

/// The one page of a target whose actions a guard or an unreachable engine holds: stored when
/// the first incident is held, its text updated as more are, resolved when none is held.
fn group_page(
    c: &dyn Db,
    job: &Job,
    hold: Hold,
    page: Option<&PageSpec>,
    now: f64,
) -> Result<(), StoreError> {
    let target = &job.new.target;
    let held: Vec<String> = rows(
        c,
        "SELECT subject FROM incidents WHERE target = ?1 AND closed_at IS NULL AND state = ?2 \
             AND hold IN ('blast_radius', 'engine') ORDER BY subject",
        args![target, IncidentState::Held.as_str()],
        |r| r.get(0),
    )?;
    let summary = match hold {
        Hold::BlastRadius { failing, of } => {
            format!("{failing} of {of} subjects of target {target} failing: actions held")
        }
        _ => format!("the engine of target {target} cannot be reached: actions held"),
    };
    let existing: Option<(i64, String)> = row_opt(
        c,
        "SELECT id, payload FROM escalations WHERE hold_group = ?1 AND state = ?2",
        args![target, EscalationState::Firing.as_str()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let Some(spec) = page else {
        if existing.is_none() {
            audit::write(
                c,
                &audit::Row {
                    at: now,
                    about: About::job(job),
                    event: Event::Escalated,
                    detail: &format!(
                        "no escalation section configured, nobody is paged: {summary}"
                    ),
                    duration: None,
                },
            )?;
        }
        return Ok(());
    };
    let description = format!(
        "{summary}. Many subjects failing together have one cause more likely than many: stackmedic-remediator does not act on them one by one. Held: {}. Actions resume by themselves, one subject at a time, when fewer are failing; `stackmedic-remediator pause` stops all actions.",
        held.join(", ")
    );
    match existing {
        Some((id, payload)) => {
            let mut payload: Value = serde_json::from_str(&payload).unwrap_or(Value::Null);
            let annotations = &payload[0]["annotations"];
            if annotations["summary"] == summary.as_str()
                && annotations["alerts"] == held.join(", ").as_str()
            {
                // Nothing new to tell: the page is re-posted at its own pace.
                return Ok(());
            }
            if let Some(a) = payload.get_mut(0).and_then(|a| a.get_mut("annotations")) {
                a["summary"] = Value::String(summary.clone());
                a["description"] = Value::String(description);
                a["alerts"] = Value::String(held.join(", "));
            }
            exec(
                c,
                "UPDATE escalations SET payload = ?2, next_try_at = CASE WHEN next_try_at <= ?3 THEN next_try_at ELSE ?3 END WHERE id = ?1",
                args![id, payload.to_string(), now],
            )?;
        }
        None => {
            let mut labels: BTreeMap<String, String> = BTreeMap::new();
            labels.insert("alertname".into(), ALERTNAME.into());
            labels.insert("severity".into(), "page".into());
            labels.insert("original_alertname".into(), job.new.alertname().to_string());
            labels.insert("remediation_rule".into(), job.new.rule.clone());
            labels.insert("remediation_target".into(), target.clone());
            labels.insert("remediation_action".into(), job.new.action.as_str().into());
            labels.insert("remediation_hold".into(), hold_kind(hold).into());
            for (k, v) in &spec.labels {
                labels.insert(k.clone(), v.clone());
            }
            let payload = json!([{
                "labels": labels,
                "annotations": {
                    "summary": summary,
                    "description": description,
                    "remediation_tried": "nothing: actions held",
                    "alerts": held.join(", "),
                },
                "startsAt": rfc3339_millis(std::time::SystemTime::now()),
            }]);
            exec(
                c,
                "INSERT INTO escalations (job_id, incident_id, created_at, payload, next_try_at, subject, fingerprint, \
                   starts_at, state, hold_group) VALUES (?1, NULL, ?2, ?3, ?2, ?4, ?5, ?6, ?7, ?8)",
                args![
                    job.id,
                    now,
                    payload.to_string(),
                    format!("target:{target}"),
                    job.new.fingerprint,
                    job.new.starts_at,
                    EscalationState::Firing.as_str(),
                    target
                ],
            )?;
            audit::write(
                c,
                &audit::Row {
                    at: now,
                    about: About::job(job),
                    event: Event::Escalated,
                    detail: &format!(
                        "StackmedicRemediationFailed queued for Alertmanager: {summary}"
                    ),
                    duration: None,
                },
            )?;
        }
    }
    Ok(())
}

/// Resolves the group pages of targets with no incident held by the guard or the engine any
/// more; returns how many started resolving.
pub(crate) fn resolve_group_pages(c: &dyn Db, now: f64) -> Result<usize, StoreError> {
    exec(
        c,
        "UPDATE escalations SET state = ?1, resolve_reason = ?2, next_try_at = ?3, failures = 0 \
         WHERE state = ?4 AND hold_group IS NOT NULL AND NOT EXISTS (SELECT 1 FROM incidents \
           WHERE incidents.target = escalations.hold_group AND closed_at IS NULL AND state = ?5 \
           AND hold IN ('blast_radius', 'engine'))",
        args![
            EscalationState::Resolving.as_str(),
            "no action of the target is held any more",
            now,
            EscalationState::Firing.as_str(),
            IncidentState::Held.as_str()
        ],
    )
}

/// What a release did.
#[derive(Debug, Default)]
pub struct Released {
    /// The attempt of the incident released, to be started.
    pub job: Option<Job>,
    /// The incident escalated instead (dry run, its rule removed).
    pub escalated: bool,
    /// Group pages that started resolving.
    pub resolving: usize,
}

impl Store {
    /// Targets with held incidents, and whether any of them is held for its engine.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn held_targets(&self) -> Result<Vec<(String, bool)>, StoreError> {
        self.read(|c| {
            let rows = rows(
        c,
        "SELECT target, MAX(CASE WHEN hold = 'engine' THEN 1 ELSE 0 END) FROM incidents WHERE closed_at IS NULL AND state = ?1 GROUP BY target",
        args![IncidentState::Held.as_str()],
        |r| {
                Ok((r.get(0)?, r.get::<Option<bool>>(1)?.unwrap_or(false)))
            },
    )?;
            Ok(rows)
        })
        .await
    }

    /// Releases the oldest held incident of `target` whose hold ended, when no incident of the
    /// target is acting or verifying (one subject at a time); resolves group pages no longer
    /// needed.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn release(
        &self,
        target: String,
        cond: Conditions,
        now: f64,
    ) -> Result<Released, StoreError> {
        self.run(move |c| release(c, &target, &cond, now)).await
    }

    /// On-call pauses the remediator: no action starts until [`Store::resume_actions`].
    ///
    /// # Errors
    /// On a database failure.
    pub async fn pause(
        &self,
        reason: String,
        until: Option<f64>,
        now: f64,
    ) -> Result<Pause, StoreError> {
        self.run(move |c| {
            exec(
                c,
                "INSERT INTO pause (id, reason, since, until) VALUES (1, ?1, ?2, ?3) \
                 ON CONFLICT(id) DO UPDATE SET reason = excluded.reason, until = excluded.until",
                args![reason, now, until],
            )?;
            let p = paused(c)?.ok_or_else(|| StoreError("the pause was not stored".into()))?;
            audit::write(
                c,
                &audit::Row {
                    at: now,
                    about: About::default(),
                    event: Event::Held,
                    detail: &format!(
                        "paused by on-call{}: {reason}",
                        until.map_or(String::new(), |u| format!(
                            " until {}",
                            crate::clock::rfc3339(u)
                        ))
                    ),
                    duration: None,
                },
            )?;
            Ok(p)
        })
        .await
    }

    /// On-call ends the pause; held incidents are released by the sweeper. Returns the pause
    /// that ended, if there was one.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn resume_actions(&self, now: f64) -> Result<Option<Pause>, StoreError> {
        self.run(move |c| {
            let p = paused(c)?;
            exec(c, "DELETE FROM pause WHERE id = 1", args![])?;
            if let Some(p) = &p {
                audit::write(
                    c,
                    &audit::Row {
                        at: now,
                        about: About::default(),
                        event: Event::Released,
                        detail: &format!(
                            "resumed by on-call after a pause of {}s: {}",
                            (now - p.since).round(),
                            p.reason
                        ),
                        duration: None,
                    },
                )?;
            }
            Ok(p)
        })
        .await
    }

    /// The pause in force, if any.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn paused(&self) -> Result<Option<Pause>, StoreError> {
        self.read(paused).await
    }
}

fn release(c: &dyn Db, target: &str, cond: &Conditions, now: f64) -> Result<Released, StoreError> {
    let mut out = Released::default();
    let busy: bool = row(
        c,
        "SELECT EXISTS (SELECT 1 FROM incidents WHERE target = ?1 AND closed_at IS NULL AND state IN (?2, ?3))",
        args![
            target,
            IncidentState::Acting.as_str(),
            IncidentState::Verifying.as_str()
        ],
        |r| r.get(0),
    )?;
    if !busy {
        let held: Vec<i64> = rows(c, "SELECT id FROM incidents WHERE target = ?1 AND closed_at IS NULL AND state = ?2 ORDER BY opened_at, id", args![target, IncidentState::Held.as_str()], |r| r.get(0))?;
        for id in held {
            let Some(inc) = open_by_id(c, id)? else {
                continue;
            };
            let facts = incident::Facts {
                hold: hold_of(c, &inc.subject, cond)?,
                quiet: super::endings::quiet(c, inc.id)?,
                ..cond.facts(now, false, 0)
            };
            match incident::step(Some(&inc.open()), Input::Release, &facts) {
                Some(Transition::Release) => {
                    out.job = Some(release_one(c, &inc, cond, now)?);
                    break;
                }
                Some(Transition::Close(reason)) => {
                    super::endings::close_incident(c, inc.id, reason, now)?;
                }
                Some(Transition::Escalate(why)) => {
                    let detail = format!(
                        "{}; escalated after {} attempt(s), on-call is paged",
                        why.describe(),
                        inc.attempts
                    );
                    escalate(c, &inc, why, &detail, None, cond.page.as_ref(), now)?;
                    out.escalated = true;
                    break;
                }
                // Still held, perhaps for another reason now (paused, then the guard): its
                // stored hold follows, and a guard or engine hold pages for the target.
                _ => {
                    if let Some(h) = facts.hold {
                        rehold(c, &inc, h, cond, now)?;
                    }
                }
            }
        }
    }
    out.resolving = resolve_group_pages(c, now)?;
    Ok(out)
}

/// Records that a held incident is held for `h` now, when that is another kind of hold than it
/// was held for; a guard or engine hold pages once for the target.
fn rehold(c: &dyn Db, inc: &Row, h: Hold, cond: &Conditions, now: f64) -> Result<(), StoreError> {
    let (stored, old): (Option<String>, String) = row(
        c,
        "SELECT hold, detail FROM incidents WHERE id = ?1",
        args![inc.id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let detail = format!("held: {}", hold_detail(h, cond));
    if stored.as_deref() != Some(hold_kind(h)) || old != detail {
        exec(
            c,
            "UPDATE incidents SET hold = ?2, detail = ?3 WHERE id = ?1",
            args![inc.id, hold_kind(h), detail],
        )?;
    }
    if h.pages() {
        // Writes only when the group's page has something new to say.
        if let Some(job) = jobs::load(
            c,
            "incident_id = ?1 ORDER BY id DESC LIMIT 1",
            args![inc.id],
        )?
        .pop()
        {
            group_page(c, &job, h, cond.page.as_ref(), now)?;
        }
    }
    Ok(())
}

/// Makes a held incident acting again with a new attempt, a copy of its latest job.
fn release_one(c: &dyn Db, inc: &Row, cond: &Conditions, now: f64) -> Result<Job, StoreError> {
    let template = jobs::load(
        c,
        "incident_id = ?1 ORDER BY id DESC LIMIT 1",
        args![inc.id],
    )?
    .pop()
    .ok_or_else(|| StoreError(format!("held incident {} has no job", inc.id)))?;
    let mut new = template.new;
    new.not_before = now;
    let job = jobs::insert(c, new, Some(inc.id), true, now)?;
    exec(
        c,
        "UPDATE incidents SET state = ?2, hold = NULL, current_job = ?3, max_attempts = ?4, updated_at = ?5, \
         detail = 'released: attempt ' || (attempts + 1) || ' of ' || ?4 || ' waits for the subject''s lock and the global limit' \
         WHERE id = ?1",
        args![
            inc.id,
            IncidentState::Acting.as_str(),
            job.id,
            cond.policy.max_attempts,
            now
        ],
    )?;
    audit::write(
        c,
        &audit::Row {
            at: now,
            about: About {
                job: None,
                ..About::job(&job)
            },
            event: Event::Released,
            detail: &format!(
                "released: the hold of incident {} ended; its attempt runs",
                inc.id
            ),
            duration: None,
        },
    )?;
    Ok(job)
}
