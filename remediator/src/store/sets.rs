//! What PostgreSQL's writer does for a whole batch at once: one statement over a set of rows
//! where the operations, written one notification at a time, would each send their own.
//!
//! On PostgreSQL every statement is a round trip to the server, and the store thread waits
//! for each; a batch of notifications accepted and decided one by one is then mostly waiting.
//! Two operations say ahead what they will do first ([`Hint`]), so the writer can do it for
//! all of them together:
//!
//! - **accepting** new alerts (a webhook without denials or resolves): every occurrence of
//!   the batch is stored unless it is a duplicate, and every job of a stored one inserted, in
//!   one statement ([`accept_all`]);
//! - **deciding** a job: the job as stored with its occurrence, and the open incident of its
//!   subject, are read for every decision of the batch in one statement ([`prefetch`]).
//!
//! Both are what the operations would have found one after the other. The callers of one batch
//! all wait at once, so any order of their operations is one they could have run in; the
//! writer runs the decisions first, before any other operation of the batch. What was read
//! ahead stays valid while the decisions before write nothing but their own job's end and
//! audit rows (a dry run, a job whose alert resolved); the first other write (an incident
//! opened, a job joined to one) drops it, and the decisions after read for themselves. A job
//! decided twice in one batch reads ahead for its first decision only. SQLite, whose
//! statements cost no round trip, runs the operations as they are.

use std::collections::{HashMap, HashSet};

use super::db::{Db, Value};
use super::endings::{incident_row, Row as IncidentRow, INCIDENT_COLUMNS};
use super::incidents::StoredJob;
use super::jobs::{to_json, Accepted};
use super::{Job, NewJob, StoreError};
use crate::vocab::JobState;

/// What an operation will do first, for the writer to do for the whole batch.
pub(super) enum Hint {
    /// Accepting new alerts only (no denials, no resolves), as of `now`; `token` names the
    /// operation.
    Accept {
        token: u64,
        jobs: Vec<NewJob>,
        now: f64,
    },
    /// Deciding `job` on `subject`.
    Decide { job: i64, subject: String },
}

/// A decision's rows as read ahead.
#[derive(Debug, Clone)]
pub struct Prefetched {
    /// The subject whose open incident was read.
    pub(super) subject: String,
    /// The job as stored (`None`: it is gone).
    pub(super) stored: Option<StoredJob>,
    /// The open incident of `subject`.
    pub(super) open: Option<IncidentRow>,
}

/// Reads ahead, for the decisions `decides` (job, subject) in the order they will run, what
/// each reads first; returns those each may use (see the module's rule), by job.
pub(super) fn prefetch(
    c: &dyn Db,
    decides: &[(i64, &str)],
) -> Result<HashMap<i64, Prefetched>, StoreError> {
    let input: Vec<serde_json::Value> = decides
        .iter()
        .enumerate()
        .map(|(n, (job, subject))| serde_json::json!({"n": n, "job": job, "subject": subject}))
        .collect();
    // Each row is looked up by its key (`LIMIT 1` keeps the planner from joining the whole
    // table instead, which it would choose while the table is young and its statistics say
    // it is empty, and then keep in the statement's plan as the table grows).
    let rows = c.query(
        &format!(
            "SELECT k.n, j.state, j.incident_id, o.resolved_at, o.starts_at_s, o.first_seen IS NOT NULL, \
             i.* \
             FROM json_to_recordset(CAST(?1 AS TEXT)::json) AS k(n int, job bigint, subject text) \
             LEFT JOIN LATERAL (SELECT * FROM jobs WHERE id = k.job LIMIT 1) j ON true \
             LEFT JOIN LATERAL (SELECT * FROM occurrences WHERE rule = j.rule AND fingerprint = j.fingerprint \
               AND starts_at = j.starts_at LIMIT 1) o ON true \
             LEFT JOIN LATERAL (SELECT {INCIDENT_COLUMNS} FROM incidents \
               WHERE subject = k.subject AND closed_at IS NULL LIMIT 1) i ON true \
             ORDER BY k.n"
        ),
        &[Value::Text(serde_json::Value::Array(input).to_string())],
    )?;
    let mut out = HashMap::new();
    let mut jobs = HashSet::new();
    for r in &rows {
        let n: usize = r.get(0)?;
        let Some((job, subject)) = decides.get(n) else {
            continue;
        };
        let state: Option<String> = r.get(1)?;
        let incident: Option<i64> = r.get(2)?;
        let stored = state.map(|state| {
            let occurrence = (incident.is_none()
                && r.get::<Option<i64>>(5).ok().flatten() == Some(1))
            .then(|| (r.get(3).ok().flatten(), r.get(4).ok().flatten()));
            (state, incident, occurrence)
        });
        let open = match r.get::<Option<i64>>(6)? {
            Some(_) => Some(incident_row(r, 6)?),
            None => None,
        };
        // A job decided twice in the batch (the second finds it decided): only the first.
        if jobs.insert(*job) {
            out.insert(
                *job,
                Prefetched {
                    subject: (*subject).to_string(),
                    stored,
                    open,
                },
            );
        }
    }
    Ok(out)
}

/// Accepts the new alerts of several operations at once (`accepts`: each one's token, jobs
/// and time), as [`super::jobs`]'s `accept` would one after the other: an occurrence is stored
/// unless it is stored already or resolved before it fired, and a job inserted for each one
/// stored; the first of the batch to name an occurrence gets it, the others count a duplicate.
pub(super) fn accept_all(
    c: &dyn Db,
    accepts: &[(u64, Vec<NewJob>, f64)],
) -> Result<HashMap<u64, Accepted>, StoreError> {
    let (sql, params) = accept_statement(accepts, &c.replica().instance);
    accepted(&c.query(sql, &params)?, accepts)
}

/// [`accept_all`]'s statement and its parameters, `instance` the replica's.
pub(super) fn accept_statement(
    accepts: &[(u64, Vec<NewJob>, f64)],
    instance: &str,
) -> (&'static str, Vec<Value>) {
    /// One alert of the statement's input, written straight as JSON.
    #[derive(serde::Serialize)]
    struct Alert<'a> {
        n: usize,
        rule: &'a str,
        action: &'a str,
        target: &'a str,
        subject: &'a str,
        selection: String,
        fingerprint: &'a str,
        starts_at: &'a str,
        starts_at_s: Option<f64>,
        alertname: &'a str,
        labels: String,
        annotations: String,
        not_before: f64,
        now: f64,
    }
    let mut input = Vec::new();
    for (_, jobs, now) in accepts {
        for new in jobs {
            input.push(Alert {
                n: input.len(),
                rule: &new.rule,
                action: new.action.as_str(),
                target: &new.target,
                subject: &new.subject,
                selection: to_json(&new.selection),
                fingerprint: &new.fingerprint,
                starts_at: &new.starts_at,
                starts_at_s: crate::clock::parse_rfc3339(&new.starts_at),
                alertname: new.alertname(),
                labels: to_json(&*new.labels),
                annotations: to_json(&*new.annotations),
                not_before: new.not_before,
                now: *now,
            });
        }
    }
    (
        "WITH input AS (SELECT * FROM json_to_recordset(CAST(?1 AS TEXT)::json) AS t(n int, rule text, \
           action text, target text, subject text, selection text, fingerprint text, starts_at text, \
           starts_at_s float8, alertname text, labels text, annotations text, not_before float8, now float8)), \
         stored AS (INSERT INTO occurrences (rule, fingerprint, starts_at, starts_at_s, alertname, first_seen) \
           SELECT rule, fingerprint, starts_at, starts_at_s, alertname, now FROM input i \
           WHERE NOT EXISTS (SELECT 1 FROM early_resolves e WHERE e.fingerprint = i.fingerprint AND e.starts_at = i.starts_at) \
           ORDER BY n ON CONFLICT DO NOTHING RETURNING rule, fingerprint, starts_at) \
         INSERT INTO jobs (accepted_at, not_before, rule, action, target, subject, selection, fingerprint, \
           starts_at, labels, annotations, state, incident_id, retry, due_at, owner) \
         SELECT now, not_before, rule, action, target, subject, selection, fingerprint, starts_at, labels, \
           annotations, ?2, NULL, 0, not_before, ?3 \
         FROM (SELECT DISTINCT ON (i.rule, i.fingerprint, i.starts_at) i.* FROM input i \
           JOIN stored s ON s.rule = i.rule AND s.fingerprint = i.fingerprint AND s.starts_at = i.starts_at \
           ORDER BY i.rule, i.fingerprint, i.starts_at, i.n) first \
         ORDER BY n RETURNING id, rule, fingerprint, starts_at",
        vec![
            Value::Text(to_json(&input)),
            Value::Text(JobState::Queued.as_str().to_string()),
            Value::Text(instance.to_string()),
        ],
    )
}

/// What each of `accepts` got, from the rows of [`accept_statement`].
pub(super) fn accepted(
    rows: &[super::db::Row],
    accepts: &[(u64, Vec<NewJob>, f64)],
) -> Result<HashMap<u64, Accepted>, StoreError> {
    let mut ids: HashMap<(String, String, String), i64> = HashMap::with_capacity(rows.len());
    for r in rows {
        ids.insert((r.get(1)?, r.get(2)?, r.get(3)?), r.get(0)?);
    }
    let mut out = HashMap::with_capacity(accepts.len());
    for (token, jobs, now) in accepts {
        let mut accepted = Accepted::default();
        for new in jobs {
            let key = (
                new.rule.clone(),
                new.fingerprint.clone(),
                new.starts_at.clone(),
            );
            // The first to name the occurrence takes its job; any later one is a duplicate.
            match ids.remove(&key) {
                Some(id) => accepted.queued.push(Job {
                    id,
                    accepted_at: *now,
                    due_at: new.not_before,
                    new: new.clone(),
                    incident: None,
                    retry: false,
                    started_at: None,
                    postponed: 0,
                }),
                None => accepted.duplicates += 1,
            }
        }
        out.insert(*token, accepted);
    }
    Ok(out)
}

/// A new occurrence's job ended as its decision said: its row's new values and its audit row
/// ([`super::audit::values`]).
#[derive(Debug)]
pub struct End {
    pub(super) job: i64,
    pub(super) result: String,
    pub(super) subject: String,
    pub(super) selection: String,
    pub(super) audit: Vec<Value>,
}

/// The update of `end`'s job, unless it ended already, with `?1`–`?5` its parameters.
const END_JOB: &str = "UPDATE jobs SET state = ?2, result = ?3, subject = ?4, selection = ?5 WHERE id = ?1 AND state != ?2";

/// Writes `end` on its own: its job's update, and its audit row if the job was still open.
pub(super) fn end_one(c: &dyn Db, end: End) -> Result<(), StoreError> {
    let params = [
        Value::Int(end.job),
        Value::Text(JobState::Done.as_str().to_string()),
        Value::Text(end.result),
        Value::Text(end.subject),
        Value::Text(end.selection),
    ];
    super::audit::write_if(c, END_JOB, &params, end.audit)
}

/// Writes several ends in one statement sent without waiting ([`Db::exec_later`]): each job
/// still open is updated and its audit row written, in the order given. No job may be in
/// `ends` twice (the second would find it ended).
pub(super) fn end_all(c: &dyn Db, ends: Vec<End>) -> Result<(), StoreError> {
    use super::audit::COLUMNS;
    if ends.len() == 1 {
        return ends.into_iter().try_for_each(|e| end_one(c, e));
    }
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let fields: Vec<String> = COLUMNS
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| format!("a{i} {ty}"))
            .collect();
        let names: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
        let values: Vec<String> = (0..COLUMNS.len()).map(|i| format!("i.a{i}")).collect();
        format!(
            "WITH input AS (SELECT * FROM json_to_recordset(CAST(?1 AS TEXT)::json) AS t(n int, job bigint, \
             result text, subject text, selection text, {})), \
             ended AS (UPDATE jobs j SET state = ?2, result = i.result, subject = i.subject, selection = i.selection \
             FROM input i WHERE j.id = i.job AND j.state != ?2 RETURNING j.id) \
             INSERT INTO audit ({}) SELECT {} FROM input i JOIN ended e ON e.id = i.job ORDER BY i.n",
            fields.join(", "),
            names.join(", "),
            values.join(", ")
        )
    });
    let input: Vec<EndRow<'_>> = ends.iter().enumerate().map(|(n, e)| EndRow(n, e)).collect();
    c.exec_later(
        &SQL,
        &[
            Value::Text(to_json(&input)),
            Value::Text(JobState::Done.as_str().to_string()),
        ],
    )
}

/// An end as a row of [`end_all`]'s input: its place, its job's values and its audit row's
/// (`a0`, `a1`, … in the order of the audit columns).
struct EndRow<'a>(usize, &'a End);

impl serde::Serialize for EndRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        const AUDIT: [&str; 15] = [
            "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10", "a11", "a12", "a13",
            "a14",
        ];
        let e = self.1;
        let mut m = s.serialize_map(Some(5 + e.audit.len()))?;
        m.serialize_entry("n", &self.0)?;
        m.serialize_entry("job", &e.job)?;
        m.serialize_entry("result", &e.result)?;
        m.serialize_entry("subject", &e.subject)?;
        m.serialize_entry("selection", &e.selection)?;
        for (key, v) in AUDIT.iter().zip(&e.audit) {
            match v {
                Value::Null => m.serialize_entry(key, &())?,
                Value::Int(i) => m.serialize_entry(key, i)?,
                Value::Real(f) => m.serialize_entry(key, f)?,
                Value::Text(t) => m.serialize_entry(key, t)?,
            }
        }
        m.end()
    }
}
