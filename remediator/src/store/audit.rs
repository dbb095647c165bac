//! Rows of the audit history: one per job result, escalation and closed incident, and one per
//! kind of denial at acceptance (repeats counted on it, [`deny`]).

use std::borrow::Cow;

use super::db::{Engine, Value};
use super::{args, exec, row_opt, Db, Job, StoreError};
use crate::limits;
use crate::vocab::Event;

/// What an audit row is about.
#[derive(Debug, Default)]
pub(super) struct About<'a> {
    pub job: Option<i64>,
    pub incident: Option<i64>,
    pub rule: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub subject: &'a str,
    pub alertname: &'a str,
    pub fingerprint: &'a str,
    pub accepted_at: Option<f64>,
}

impl<'a> About<'a> {
    /// A job.
    pub fn job(j: &'a Job) -> Self {
        About {
            job: Some(j.id),
            incident: j.incident,
            rule: &j.new.rule,
            action: j.new.action.as_str(),
            target: &j.new.target,
            subject: &j.new.subject,
            alertname: j.new.alertname(),
            fingerprint: &j.new.fingerprint,
            accepted_at: Some(j.accepted_at),
        }
    }
}

/// One row: `event` at `at`, with `detail` and, for executed actions, their `duration`.
pub(super) struct Row<'a> {
    pub at: f64,
    pub about: About<'a>,
    pub event: Event,
    pub detail: &'a str,
    pub duration: Option<f64>,
}

/// An audit row's columns, and their types for PostgreSQL where nothing else says them.
pub(super) const COLUMNS: [(&str, &str); 15] = [
    ("at", "DOUBLE PRECISION"),
    ("job_id", "BIGINT"),
    ("incident_id", "BIGINT"),
    ("rule", "TEXT"),
    ("action", "TEXT"),
    ("target", "TEXT"),
    ("subject", "TEXT"),
    ("alertname", "TEXT"),
    ("fingerprint", "TEXT"),
    ("result", "TEXT"),
    ("detail", "TEXT"),
    ("duration_seconds", "DOUBLE PRECISION"),
    ("accepted_at", "DOUBLE PRECISION"),
    ("started_at", "DOUBLE PRECISION"),
    ("replica", "TEXT"),
];

/// `row`'s values in the order of [`COLUMNS`].
pub(super) fn values(c: &dyn Db, row: &Row<'_>) -> Vec<Value> {
    let a = &row.about;
    let detail = bounded(row.detail, detail_bytes(row.event));
    let alertname = bounded(a.alertname, limits::VALUE_BYTES);
    let started = row.duration.map(|d| row.at - d);
    args![
        row.at,
        a.job,
        a.incident,
        a.rule,
        a.action,
        a.target,
        a.subject,
        alertname,
        a.fingerprint,
        row.event.as_str(),
        detail,
        row.duration,
        a.accepted_at,
        started,
        &c.replica().name
    ]
    .to_vec()
}

pub(super) fn write(c: &dyn Db, row: &Row<'_>) -> Result<(), StoreError> {
    write_values(c, &values(c, row))
}

/// [`write`] of a row's [`values`].
fn write_values(c: &dyn Db, values: &[Value]) -> Result<(), StoreError> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let names: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
        let places: Vec<String> = (1..=COLUMNS.len()).map(|i| format!("?{i}")).collect();
        format!(
            "INSERT INTO audit ({}) VALUES ({})",
            names.join(", "),
            places.join(", ")
        )
    });
    c.exec_later(&SQL, values)
}

/// Runs `guard` (an `UPDATE` with `params`) and writes the row of `values` if it changed a row.
/// On PostgreSQL both are one statement sent without waiting for it ([`Db::exec_later`]);
/// whether it changed a row is then not known here.
pub(super) fn write_if(
    c: &dyn Db,
    guard: &str,
    params: &[Value],
    values: Vec<Value>,
) -> Result<(), StoreError> {
    if c.engine() == Engine::Sqlite {
        if c.exec(guard, params)? > 0 {
            write_values(c, &values)?;
        }
        return Ok(());
    }
    let names: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
    let places: Vec<String> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("CAST(?{} AS {ty})", params.len() + i + 1))
        .collect();
    let sql = format!(
        "WITH ended AS ({guard} RETURNING 1) INSERT INTO audit ({}) SELECT {} FROM ended",
        names.join(", "),
        places.join(", ")
    );
    let mut all = params.to_vec();
    all.extend(values);
    c.exec_later(&sql, &all)
}

/// The bound of a row's detail: a denial's reason quotes the alert and is kept like a label
/// value; the remediator's own words about a job, an incident or an escalation (a cleanup's
/// listing of the files it removed) get [`limits::DETAIL_BYTES`].
fn detail_bytes(event: Event) -> usize {
    match event {
        Event::Denied => limits::VALUE_BYTES,
        _ => limits::DETAIL_BYTES,
    }
}

/// Text as stored: cut to `max` bytes ([`limits::cut`]).
fn bounded(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() > max {
        Cow::Owned(limits::cut(s, max))
    } else {
        Cow::Borrowed(s)
    }
}

/// A denial at acceptance. The same denial again (same rule, action, target, subject, alert
/// name and reason) does not add a row: the existing one counts it, moves to the top of the
/// history (a new id) and takes its time and fingerprint, keeping the first time in
/// `first_at`. A flood of one refused alert is then one row, however long it lasts.
pub(super) fn deny(c: &dyn Db, row: &Row<'_>) -> Result<(), StoreError> {
    let a = &row.about;
    let detail = bounded(row.detail, detail_bytes(row.event));
    let alertname = bounded(a.alertname, limits::VALUE_BYTES);
    let same: Option<i64> = row_opt(
        c,
        "SELECT id FROM audit WHERE result = ?1 AND rule = ?2 AND subject = ?3 AND action = ?4 \
             AND target = ?5 AND alertname = ?6 AND detail = ?7 ORDER BY id DESC LIMIT 1",
        args![
            Event::Denied.as_str(),
            a.rule,
            a.subject,
            a.action,
            a.target,
            alertname,
            detail
        ],
        |r| r.get(0),
    )?;
    let Some(id) = same else {
        return write(c, row);
    };
    // Every right-hand side reads the row as it was: `first_at` keeps the old `at`. The new id
    // comes from PostgreSQL's sequence, so no later row is given it again.
    let sql = match c.engine() {
        Engine::Sqlite => {
            "UPDATE audit SET id = (SELECT MAX(id) + 1 FROM audit), count = count + 1, \
             first_at = COALESCE(first_at, at), at = ?2, fingerprint = ?3, replica = ?4 WHERE id = ?1"
        }
        Engine::Postgres => {
            "UPDATE audit SET id = nextval(pg_get_serial_sequence('audit', 'id')), count = count + 1, \
             first_at = COALESCE(first_at, at), at = ?2, fingerprint = ?3, replica = ?4 WHERE id = ?1"
        }
    };
    exec(c, sql, args![id, row.at, a.fingerprint, c.replica().name])?;
    Ok(())
}
