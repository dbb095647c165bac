//! Rows of the audit history: one per job result, escalation and closed incident.

use rusqlite::{params, Connection};

use super::{Job, StoreError};
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

pub(super) fn write(c: &Connection, row: &Row<'_>) -> Result<(), StoreError> {
    let a = &row.about;
    let started = row.duration.map(|d| row.at - d);
    c.execute(
        "INSERT INTO audit (at, job_id, incident_id, rule, action, target, subject, alertname, fingerprint, result, detail, duration_seconds, accepted_at, started_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            row.at,
            a.job,
            a.incident,
            a.rule,
            a.action,
            a.target,
            a.subject,
            a.alertname,
            a.fingerprint,
            row.event.as_str(),
            row.detail,
            row.duration,
            a.accepted_at,
            started
        ],
    )?;
    Ok(())
}
