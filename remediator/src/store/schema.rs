//! The database schema and its migration from the previous release's.
//!
//! `PRAGMA user_version` holds the schema version: 0 is an empty database or one written by
//! a release before the incident model (cooldowns, attempt windows and circuits), 2 the first
//! release of the incident model, 3 the one that counts repeated denials on one audit row, 4
//! the one with re-checks of heals, canonical subjects per real thing, on-call resets and
//! resolves that arrive before their firing, 5 this one (replicas: the owner of each job, the
//! replica named on each audit row, the replicas' leases and the leader). A database of an
//! earlier release is migrated in one transaction when it is opened:
//! its occurrences are kept (so a re-sent alert stays a duplicate), each open circuit and each
//! active escalation becomes an escalated incident that ends when its alert resolves, queued
//! jobs stay queued, and the audit history is kept as it was written.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::vocab::{CloseReason, EscalationState, IncidentState, JobState, ResolvedBy};

/// The schema version this code writes.
pub const VERSION: i64 = 5;

const PRAGMAS: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
PRAGMA busy_timeout = 5000;
PRAGMA foreign_keys = ON;
";

const JOBS: &str = "
CREATE TABLE jobs (
  id INTEGER PRIMARY KEY,
  accepted_at REAL NOT NULL,
  not_before REAL NOT NULL,
  rule TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  subject TEXT NOT NULL,
  selection TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  starts_at TEXT NOT NULL,
  labels TEXT NOT NULL,
  annotations TEXT NOT NULL,
  state TEXT NOT NULL,
  result TEXT,
  incident_id INTEGER,
  retry INTEGER NOT NULL DEFAULT 0,
  attempt INTEGER,
  started_at REAL,
  due_at REAL,
  postponed INTEGER NOT NULL DEFAULT 0,
  note TEXT,
  owner TEXT
);
";

const OCCURRENCES: &str = "
CREATE TABLE occurrences (
  rule TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  starts_at TEXT NOT NULL,
  starts_at_s REAL,
  alertname TEXT NOT NULL DEFAULT '',
  incident_id INTEGER,
  first_seen REAL NOT NULL,
  resolved_at REAL,
  resolved_by TEXT,
  PRIMARY KEY (rule, fingerprint, starts_at)
);
";

const INCIDENTS: &str = "
CREATE TABLE incidents (
  id INTEGER PRIMARY KEY,
  subject TEXT NOT NULL,
  target TEXT NOT NULL,
  rule TEXT NOT NULL,
  action TEXT NOT NULL,
  alertname TEXT NOT NULL DEFAULT '',
  fingerprint TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL,
  opened_at REAL NOT NULL,
  updated_at REAL NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL,
  flapping_count INTEGER NOT NULL DEFAULT 0,
  flapping_window REAL NOT NULL DEFAULT 0,
  current_job INTEGER,
  next_attempt_at REAL,
  healed_at REAL,
  escalated_at REAL,
  detail TEXT NOT NULL DEFAULT '',
  closed_at REAL,
  close_reason TEXT,
  next_check_at REAL,
  rechecks INTEGER NOT NULL DEFAULT 0,
  hold TEXT
);
";

const ESCALATIONS: &str = "
CREATE TABLE escalations (
  id INTEGER PRIMARY KEY,
  job_id INTEGER,
  incident_id INTEGER,
  created_at REAL NOT NULL,
  payload TEXT NOT NULL,
  tries INTEGER NOT NULL DEFAULT 0,
  next_try_at REAL NOT NULL,
  delivered_at REAL,
  last_error TEXT,
  subject TEXT NOT NULL DEFAULT '',
  fingerprint TEXT NOT NULL DEFAULT '',
  starts_at TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL DEFAULT 'firing',
  failures INTEGER NOT NULL DEFAULT 0,
  posts INTEGER NOT NULL DEFAULT 0,
  last_post_at REAL,
  resolve_reason TEXT,
  resolved_at REAL,
  hold_group TEXT
);
";

const AUDIT: &str = "
CREATE TABLE audit (
  id INTEGER PRIMARY KEY,
  at REAL NOT NULL,
  job_id INTEGER,
  incident_id INTEGER,
  rule TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  subject TEXT NOT NULL,
  alertname TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  result TEXT NOT NULL,
  detail TEXT NOT NULL,
  duration_seconds REAL,
  accepted_at REAL,
  started_at REAL,
  count INTEGER NOT NULL DEFAULT 1,
  first_at REAL,
  replica TEXT
);
";

/// On-call resets: healed incidents before `reset_at` no longer count as flapping.
const SUBJECTS: &str = "
CREATE TABLE IF NOT EXISTS subjects (
  subject TEXT PRIMARY KEY,
  reset_at REAL NOT NULL,
  reset_note TEXT NOT NULL DEFAULT ''
);
";

/// Resolves that arrived before any firing of their occurrence: a later firing never acts.
const EARLY_RESOLVES: &str = "
CREATE TABLE IF NOT EXISTS early_resolves (
  fingerprint TEXT NOT NULL,
  starts_at TEXT NOT NULL,
  at REAL NOT NULL,
  PRIMARY KEY (fingerprint, starts_at)
);
";

/// The row a write probe updates: at start, and while the store fails, to learn whether it
/// writes again.
const HEALTH: &str = "
CREATE TABLE IF NOT EXISTS health (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  at REAL NOT NULL
);
";

/// On-call's pause: while its row exists, no action starts.
const PAUSE: &str = "
CREATE TABLE IF NOT EXISTS pause (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  reason TEXT NOT NULL,
  since REAL NOT NULL,
  until REAL
);
";

/// The replicas: each process holds a lease on its work (`lease_until`) and renews it; a
/// replica whose lease ran out is gone, and its jobs are taken over.
const REPLICAS: &str = "
CREATE TABLE IF NOT EXISTS replicas (
  instance TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  started_at REAL NOT NULL,
  renewed_at REAL NOT NULL,
  lease_until REAL NOT NULL,
  stopped_at REAL
);
";

/// The replica that runs the work belonging to no one (escalation posts, reconciliation,
/// re-checks, releases of held incidents, pruning) while its lease lasts.
const LEADER: &str = "
CREATE TABLE IF NOT EXISTS leader (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  instance TEXT NOT NULL,
  name TEXT NOT NULL,
  since REAL NOT NULL,
  until REAL NOT NULL
);
";

const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_alert ON jobs(fingerprint, starts_at);
CREATE INDEX IF NOT EXISTS occurrences_alert ON occurrences(fingerprint, starts_at);
CREATE INDEX IF NOT EXISTS occurrences_incident ON occurrences(incident_id);
CREATE INDEX IF NOT EXISTS occurrences_open ON occurrences(first_seen) WHERE resolved_at IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS incidents_one_open ON incidents(subject) WHERE closed_at IS NULL;
CREATE INDEX IF NOT EXISTS incidents_healed ON incidents(subject, healed_at);
CREATE INDEX IF NOT EXISTS incidents_checks ON incidents(next_check_at) WHERE closed_at IS NULL;
CREATE INDEX IF NOT EXISTS early_resolves_at ON early_resolves(at);
CREATE INDEX IF NOT EXISTS escalations_state ON escalations(state, next_try_at);
CREATE INDEX IF NOT EXISTS escalations_incident ON escalations(incident_id);
CREATE INDEX IF NOT EXISTS audit_denials ON audit(rule, subject) WHERE result = 'denied';
";

/// Indexes for replicas sharing PostgreSQL: each reads the jobs it owns. With SQLite one
/// process owns every job, `jobs_state` finds them, and one index fewer to update for every
/// stored and every finished job is a few per cent of the writer's time.
const REPLICA_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, state);
";

/// The tables `storage migrate` copies, in an order that keeps references valid.
pub(super) const COPIED: [(&str, &str); 8] = [
    ("jobs", JOBS),
    ("occurrences", OCCURRENCES),
    ("incidents", INCIDENTS),
    ("escalations", ESCALATIONS),
    ("audit", AUDIT),
    ("subjects", SUBJECTS),
    ("early_resolves", EARLY_RESOLVES),
    ("pause", PAUSE),
];

/// The columns a table's definition declares, in order.
pub(super) fn columns(ddl: &str) -> Vec<&str> {
    ddl.lines()
        .filter(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w != "PRIMARY")
        .collect()
}

/// Every table of this version, as created on an empty database.
const TABLES: [&str; 11] = [
    JOBS,
    OCCURRENCES,
    INCIDENTS,
    ESCALATIONS,
    AUDIT,
    SUBJECTS,
    EARLY_RESOLVES,
    HEALTH,
    PAUSE,
    REPLICAS,
    LEADER,
];

/// Brings the database to [`VERSION`]: creates it, or migrates the previous release's.
///
/// # Errors
/// When the database is of a newer version, or a statement fails (nothing is changed then).
pub fn prepare(conn: &mut Connection, now: f64) -> Result<(), StoreError> {
    conn.execute_batch(PRAGMAS)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > VERSION {
        return Err(StoreError(format!(
            "the database has schema version {version}, newer than this release's {VERSION}"
        )));
    }
    if version == VERSION {
        // Made by the releases that created it on SQLite too (see `REPLICA_INDEXES`).
        conn.execute_batch("DROP INDEX IF EXISTS jobs_owner")?;
        return Ok(());
    }
    let tx = conn.transaction()?;
    if version == 4 {
        to_v5(&tx)?;
    } else if version == 3 {
        to_v4(&tx, now)?;
        to_v5(&tx)?;
    } else if version == 2 {
        add_audit_counts(&tx)?;
        to_v4(&tx, now)?;
        to_v5(&tx)?;
    } else if has_table(&tx, "jobs")? {
        migrate_from_circuits(&tx, now)?;
        add_audit_counts(&tx)?;
        to_v4(&tx, now)?;
        to_v5(&tx)?;
    } else {
        for table in TABLES {
            tx.execute_batch(table)?;
        }
    }
    tx.execute_batch(INDEXES)?;
    tx.execute_batch(&format!("PRAGMA user_version = {VERSION}"))?;
    tx.commit()?;
    Ok(())
}

/// Version 3: a denial repeated for one subject counts on its audit row instead of adding one.
fn add_audit_counts(c: &Connection) -> Result<(), StoreError> {
    for (name, decl) in [
        ("count", "INTEGER NOT NULL DEFAULT 1"),
        ("first_at", "REAL"),
    ] {
        if !has_column(c, "audit", name)? {
            c.execute_batch(&format!("ALTER TABLE audit ADD COLUMN {name} {decl}"))?;
        }
    }
    Ok(())
}

/// Version 4: re-checks of heals, each job's original due time and postponements, on-call
/// resets, early resolves, and one subject per real thing — a container `container:NAME`, a
/// unit `unit:NAME` (on the default engine and bus, which every earlier release used) —
/// whatever target named it. Of two open incidents that become one subject the newer stays
/// open and the older closes as superseded.
fn to_v4(c: &Connection, now: f64) -> Result<(), StoreError> {
    for (table, name, decl) in [
        ("jobs", "due_at", "REAL"),
        ("jobs", "postponed", "INTEGER NOT NULL DEFAULT 0"),
        ("jobs", "note", "TEXT"),
        ("incidents", "next_check_at", "REAL"),
        ("incidents", "rechecks", "INTEGER NOT NULL DEFAULT 0"),
        ("incidents", "hold", "TEXT"),
        ("escalations", "hold_group", "TEXT"),
    ] {
        if !has_column(c, table, name)? {
            c.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {name} {decl}"))?;
        }
    }
    c.execute_batch("UPDATE jobs SET due_at = MAX(accepted_at, not_before) WHERE due_at IS NULL")?;
    for table in [SUBJECTS, EARLY_RESOLVES, HEALTH, PAUSE] {
        c.execute_batch(table)?;
    }
    c.execute_batch("DROP INDEX IF EXISTS incidents_one_open")?;
    for (actions, prefix) in [
        ("('container_restart', 'container_start')", "container:"),
        ("('systemd_restart', 'systemd_start')", "unit:"),
    ] {
        for table in ["incidents", "jobs", "audit"] {
            c.execute_batch(&format!(
                "UPDATE {table} SET subject = '{prefix}' || substr(subject, instr(subject, '/') + 1) \
                 WHERE action IN {actions} AND instr(subject, '/') > 0"
            ))?;
        }
    }
    // Two open incidents of what is now one subject: the newer stays open.
    c.execute(
        "UPDATE incidents SET state = ?1, closed_at = ?2, updated_at = ?2, close_reason = ?3, current_job = NULL, \
           next_attempt_at = NULL WHERE closed_at IS NULL AND EXISTS (SELECT 1 FROM incidents n \
           WHERE n.subject = incidents.subject AND n.closed_at IS NULL AND n.id > incidents.id)",
        params![
            IncidentState::Resolved.as_str(),
            now,
            CloseReason::Superseded.as_str()
        ],
    )?;
    // A healed incident is re-checked as a new heal would be.
    c.execute(
        "UPDATE incidents SET next_check_at = ?2 WHERE closed_at IS NULL AND state = ?1",
        params![IncidentState::Healed.as_str(), now],
    )?;
    Ok(())
}

/// Version 5: replicas. Each job names the replica process that holds it (`owner`), each audit
/// row the replica that wrote it; the replicas' leases and the leader have tables of their own.
fn to_v5(c: &Connection) -> Result<(), StoreError> {
    for (table, name) in [("jobs", "owner"), ("audit", "replica")] {
        if !has_column(c, table, name)? {
            c.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {name} TEXT"))?;
        }
    }
    for table in [REPLICAS, LEADER] {
        c.execute_batch(table)?;
    }
    Ok(())
}

/// The schema on PostgreSQL: the tables of this version in PostgreSQL's types (64-bit
/// integers, double-precision times, identity ids), created once under an advisory lock so
/// replicas starting together do not race. `schema_version` holds the version.
///
/// # Errors
/// When the database is of a newer version, or a statement fails (nothing is changed then).
pub(super) fn prepare_postgres(client: &mut postgres::Client) -> Result<(), StoreError> {
    let e =
        |e: postgres::Error| StoreError(format!("preparing the schema: {}", super::pg::chain(&e)));
    let mut tx = client.transaction().map_err(e)?;
    // Any constant of our own: replicas starting together take turns here.
    tx.batch_execute("SELECT pg_advisory_xact_lock(7310201905)")
        .map_err(e)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .map_err(e)?;
    let version: Option<i64> = tx
        .query_opt("SELECT version FROM schema_version", &[])
        .map_err(e)?
        .map(|r| r.get(0));
    match version {
        Some(v) if v > VERSION => {
            return Err(StoreError(format!(
                "the database has schema version {v}, newer than this release's {VERSION}"
            )))
        }
        Some(v) if v == VERSION => return Ok(()),
        Some(v) => {
            return Err(StoreError(format!(
                "the database has schema version {v}, which this release cannot migrate"
            )))
        }
        None => {}
    }
    for table in TABLES {
        tx.batch_execute(&postgres_types(table)).map_err(e)?;
    }
    tx.batch_execute(INDEXES).map_err(e)?;
    tx.batch_execute(REPLICA_INDEXES).map_err(e)?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES ($1)",
        &[&VERSION],
    )
    .map_err(e)?;
    tx.commit().map_err(e)?;
    Ok(())
}

/// A table of SQLite's schema in PostgreSQL's types.
fn postgres_types(ddl: &str) -> String {
    ddl.replace(
        "id INTEGER PRIMARY KEY CHECK",
        "id BIGINT PRIMARY KEY CHECK",
    )
    .replace(
        "id INTEGER PRIMARY KEY,",
        "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,",
    )
    .replace(" REAL", " DOUBLE PRECISION")
    .replace(" INTEGER", " BIGINT")
}

fn has_table(c: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(c.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

fn has_column(c: &Connection, table: &str, column: &str) -> Result<bool, StoreError> {
    let mut st = c.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
    let names: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(names.iter().any(|n| n == column))
}

/// Columns the previous release added to `escalations` for its escalation lifecycle; an
/// older database lacks them.
const LIFECYCLE_COLUMNS: [(&str, &str); 10] = [
    ("subject", "TEXT NOT NULL DEFAULT ''"),
    ("fingerprint", "TEXT NOT NULL DEFAULT ''"),
    ("starts_at", "TEXT NOT NULL DEFAULT ''"),
    ("circuit_opened_at", "REAL"),
    ("state", "TEXT NOT NULL DEFAULT 'firing'"),
    ("failures", "INTEGER NOT NULL DEFAULT 0"),
    ("posts", "INTEGER NOT NULL DEFAULT 0"),
    ("last_post_at", "REAL"),
    ("resolve_reason", "TEXT"),
    ("resolved_at", "REAL"),
];

/// One open circuit or active escalation of the previous release, to become an escalated
/// incident.
struct Escalated {
    subject: String,
    target: String,
    opened_at: f64,
    reason: String,
    escalation: Option<(i64, String)>,
    occurrence: Option<(String, String, String)>,
}

fn migrate_from_circuits(c: &Connection, now: f64) -> Result<(), StoreError> {
    // The escalation columns, for a database older than the previous release.
    if has_table(c, "escalations")? {
        let mut added = false;
        for (name, decl) in LIFECYCLE_COLUMNS {
            if !has_column(c, "escalations", name)? {
                c.execute_batch(&format!("ALTER TABLE escalations ADD COLUMN {name} {decl}"))?;
                added = true;
            }
        }
        if added {
            c.execute_batch(
                "UPDATE escalations SET \
                   subject = COALESCE((SELECT subject FROM jobs WHERE jobs.id = escalations.job_id), ''), \
                   fingerprint = COALESCE((SELECT fingerprint FROM jobs WHERE jobs.id = escalations.job_id), ''), \
                   starts_at = COALESCE((SELECT starts_at FROM jobs WHERE jobs.id = escalations.job_id), ''), \
                   posts = CASE WHEN delivered_at IS NULL THEN 0 ELSE 1 END, \
                   last_post_at = delivered_at;",
            )?;
        }
    } else {
        c.execute_batch(ESCALATIONS)?;
    }
    // Jobs: the attempt is now counted when the action starts. A job the previous release
    // had moved to running had its attempt counted when it was decided, not necessarily run:
    // it is queued again, as that release did at every start.
    for (name, decl) in [
        ("incident_id", "INTEGER"),
        ("retry", "INTEGER NOT NULL DEFAULT 0"),
        ("attempt", "INTEGER"),
        ("started_at", "REAL"),
    ] {
        if !has_column(c, "jobs", name)? {
            c.execute_batch(&format!("ALTER TABLE jobs ADD COLUMN {name} {decl}"))?;
        }
    }
    if has_column(c, "jobs", "cooldown")? {
        c.execute_batch("ALTER TABLE jobs DROP COLUMN cooldown")?;
    }
    c.execute(
        "UPDATE jobs SET state = ?1 WHERE state = ?2",
        params![JobState::Queued.as_str(), JobState::Running.as_str()],
    )?;
    // The previous release's "incidents" were alert occurrences per rule.
    c.execute_batch(OCCURRENCES)?;
    if has_table(c, "incidents")? {
        c.execute(
            "INSERT INTO occurrences (rule, fingerprint, starts_at, alertname, first_seen, resolved_at, resolved_by) \
             SELECT i.rule, i.fingerprint, i.starts_at, \
               COALESCE((SELECT json_extract(j.labels, '$.alertname') FROM jobs j WHERE j.rule = i.rule \
                 AND j.fingerprint = i.fingerprint AND j.starts_at = i.starts_at ORDER BY j.id DESC LIMIT 1), ''), \
               i.last_job_at, \
               CASE WHEN i.state = 'resolved' THEN i.last_job_at END, \
               CASE WHEN i.state = 'resolved' THEN ?1 END \
             FROM incidents i",
            [ResolvedBy::Alert.as_str()],
        )?;
        c.execute_batch("DROP TABLE incidents")?;
    }
    fill_start_seconds(c)?;
    c.execute_batch(INCIDENTS)?;
    if !has_column(c, "escalations", "incident_id")? {
        c.execute_batch("ALTER TABLE escalations ADD COLUMN incident_id INTEGER")?;
    }
    if !has_column(c, "audit", "incident_id")? {
        c.execute_batch("ALTER TABLE audit ADD COLUMN incident_id INTEGER")?;
    }
    for e in previous_escalations(c, now)? {
        insert_escalated_incident(c, &e, now)?;
    }
    if has_column(c, "escalations", "circuit_opened_at")? {
        c.execute_batch("ALTER TABLE escalations DROP COLUMN circuit_opened_at")?;
    }
    for table in ["circuits", "attempts"] {
        if has_table(c, table)? {
            c.execute_batch(&format!("DROP TABLE {table}"))?;
        }
    }
    Ok(())
}

/// Stores each occurrence's start as seconds, for matching Alertmanager's list.
fn fill_start_seconds(c: &Connection) -> Result<(), StoreError> {
    let mut st =
        c.prepare("SELECT DISTINCT starts_at FROM occurrences WHERE starts_at_s IS NULL")?;
    let starts: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    for s in starts {
        if let Some(t) = crate::clock::parse_rfc3339(&s) {
            c.execute(
                "UPDATE occurrences SET starts_at_s = ?2 WHERE starts_at = ?1",
                params![s, t],
            )?;
        }
    }
    Ok(())
}

/// Open circuits and unresolved escalations of the previous release, one per subject.
fn previous_escalations(c: &Connection, now: f64) -> Result<Vec<Escalated>, StoreError> {
    let mut out: Vec<Escalated> = Vec::new();
    let mut st = c.prepare(
        "SELECT id, subject, created_at, state, fingerprint, starts_at, \
           COALESCE(json_extract(payload, '$[0].labels.remediation_target'), ''), \
           COALESCE(json_extract(payload, '$[0].annotations.remediation_tried'), ''), job_id \
         FROM escalations WHERE state != ?1 ORDER BY id",
    )?;
    let rows = st.query_map([EscalationState::Resolved.as_str()], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, f64>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, String>(7)?,
            r.get::<_, Option<i64>>(8)?,
        ))
    })?;
    for row in rows {
        let (id, subject, created, state, fp, starts, target, tried, job) = row?;
        if out.iter().any(|e| e.subject == subject) {
            continue;
        }
        let mut occurrence = c
            .query_row(
                "SELECT rule, fingerprint, starts_at FROM occurrences WHERE fingerprint = ?1 AND starts_at = ?2",
                params![fp, starts],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if occurrence.is_none() {
            occurrence = c
                .query_row(
                    "SELECT rule, fingerprint, starts_at FROM jobs WHERE id = ?1",
                    [job],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
        }
        out.push(Escalated {
            subject,
            target,
            opened_at: created,
            reason: if tried.is_empty() {
                "escalated by the previous release".into()
            } else {
                format!("escalated by the previous release: {tried}")
            },
            escalation: Some((id, state)),
            occurrence,
        });
    }
    if has_table(c, "circuits")? {
        let mut st = c.prepare(
            "SELECT subject, target, opened_at, reason FROM circuits WHERE open_until > ?1 ORDER BY opened_at",
        )?;
        let rows = st.query_map([now], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, f64>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (subject, target, opened_at, reason) = row?;
            if out.iter().any(|e| e.subject == subject) {
                continue;
            }
            // The alert behind the circuit: the subject's latest job.
            let occurrence = c
                .query_row(
                    "SELECT rule, fingerprint, starts_at FROM jobs WHERE subject = ?1 ORDER BY id DESC LIMIT 1",
                    [&subject],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            out.push(Escalated {
                subject,
                target,
                opened_at,
                reason: format!("circuit opened by the previous release: {reason}"),
                escalation: None,
                occurrence,
            });
        }
    }
    Ok(out)
}

fn insert_escalated_incident(c: &Connection, e: &Escalated, now: f64) -> Result<(), StoreError> {
    let (rule, action, alertname, fingerprint) = match &e.occurrence {
        Some((rule, fp, starts)) => c
            .query_row(
                "SELECT rule, action, COALESCE(json_extract(labels, '$.alertname'), ''), fingerprint FROM jobs \
                 WHERE rule = ?1 AND fingerprint = ?2 AND starts_at = ?3 ORDER BY id DESC LIMIT 1",
                params![rule, fp, starts],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?
            .unwrap_or_else(|| (rule.clone(), String::new(), String::new(), fp.clone())),
        None => Default::default(),
    };
    let failed: i64 = if has_table(c, "attempts")? {
        c.query_row(
            "SELECT COUNT(*) FROM attempts WHERE subject = ?1 AND outcome = 'failed'",
            [&e.subject],
            |r| r.get(0),
        )?
    } else {
        0
    };
    // An escalation whose alert resolved (its resolving post still due) belongs to an
    // incident that is already over.
    let resolving = e
        .escalation
        .as_ref()
        .is_some_and(|(_, s)| s == EscalationState::Resolving.as_str());
    let (state, closed_at, close_reason) = if resolving {
        (
            IncidentState::Resolved,
            Some(now),
            Some(CloseReason::AlertResolved.as_str()),
        )
    } else {
        (IncidentState::Escalated, None, None)
    };
    c.execute(
        "INSERT INTO incidents (subject, target, rule, action, alertname, fingerprint, state, opened_at, updated_at, \
           attempts, max_attempts, escalated_at, detail, closed_at, close_reason) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?8, ?11, ?12, ?13)",
        params![
            e.subject,
            e.target,
            rule,
            action,
            alertname,
            fingerprint,
            state.as_str(),
            e.opened_at,
            now,
            failed,
            e.reason,
            closed_at,
            close_reason,
        ],
    )?;
    let id = c.last_insert_rowid();
    if let Some((rule, fp, starts)) = &e.occurrence {
        // A database older than the occurrence table has none for the alert: it is made here,
        // firing, so the incident ends when the alert resolves.
        c.execute(
            "INSERT OR IGNORE INTO occurrences (rule, fingerprint, starts_at, starts_at_s, alertname, first_seen) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![rule, fp, starts, crate::clock::parse_rfc3339(starts), alertname, e.opened_at],
        )?;
        c.execute(
            "UPDATE occurrences SET incident_id = ?4 WHERE rule = ?1 AND fingerprint = ?2 AND starts_at = ?3",
            params![rule, fp, starts, id],
        )?;
    }
    if let Some((escalation, _)) = &e.escalation {
        c.execute(
            "UPDATE escalations SET incident_id = ?2 WHERE id = ?1",
            params![escalation, id],
        )?;
    }
    Ok(())
}
