//! Durable state in one SQLite database (WAL, `synchronous=FULL`): jobs, incidents, attempts,
//! circuits, the escalation outbox and the audit history.
//!
//! One thread owns the writing connection. Operations sent to it are run in batches inside one
//! transaction (group commit), each inside its own savepoint, and their callers are answered
//! only after the commit, so an accepted webhook is on disk before its 2xx leaves.
//!
//! **Invariant:** a job is answered with 2xx only after its row is committed; a job runs only
//! after the store moved it from `queued` to `running` in the same transaction that counted
//! the target's attempts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc as std_mpsc;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// Most operations committed together.
const MAX_BATCH: usize = 512;

/// A store failure; the message is SQLite's.
#[derive(Debug, Clone, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
type Op = Box<dyn FnOnce(&Connection) -> (bool, Finish) + Send>;

/// Handle to the store thread; cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: std_mpsc::Sender<Op>,
}

/// What a label chose among allow-listed names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// The container, for container actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Path parameters of an `http_sequence`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
}

/// A job about to be stored.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Rule name.
    pub rule: String,
    /// Action kind name.
    pub action: String,
    /// Target name.
    pub target: String,
    /// What the safety limits and the lock apply to: the target, or target and selection.
    pub subject: String,
    /// Allow-listed names chosen by labels.
    pub selection: Selection,
    /// Alert fingerprint.
    pub fingerprint: String,
    /// Alert start time.
    pub starts_at: String,
    /// Alert labels.
    pub labels: BTreeMap<String, String>,
    /// Alert annotations.
    pub annotations: BTreeMap<String, String>,
    /// Earliest time to act.
    pub not_before: f64,
    /// The target's cooldown in seconds, for deduplication.
    pub cooldown: f64,
}

/// A stored job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Row id.
    pub id: i64,
    /// Time it was stored.
    pub accepted_at: f64,
    /// The job as submitted.
    pub new: NewJob,
}

/// A refusal decided while accepting a webhook.
#[derive(Debug, Clone)]
pub struct Denial {
    /// Rule name.
    pub rule: String,
    /// Action kind name.
    pub action: String,
    /// Target name, when known.
    pub target: String,
    /// Alert name.
    pub alertname: String,
    /// Alert fingerprint.
    pub fingerprint: String,
    /// Why.
    pub reason: String,
}

/// One accepted webhook's worth of writes.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Jobs to queue unless they duplicate an open incident.
    pub jobs: Vec<NewJob>,
    /// Refusals to audit.
    pub denials: Vec<Denial>,
    /// `(fingerprint, starts_at)` of resolved alerts.
    pub resolved: Vec<(String, String)>,
}

/// What became of a [`Batch`].
#[derive(Debug, Default)]
pub struct Accepted {
    /// Newly queued jobs.
    pub queued: Vec<Job>,
    /// Jobs not queued because the same alert occurrence already has one.
    pub duplicates: usize,
    /// Queued jobs cancelled because their alert resolved.
    pub cancelled: Vec<Job>,
    /// Active escalations of resolved alerts, now waiting for their resolving post.
    pub resolved_escalations: usize,
}

/// Safety limits passed to [`Store::decide`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Seconds.
    pub cooldown: f64,
    /// Attempts allowed per window.
    pub max_attempts: u32,
    /// Seconds.
    pub attempt_window: f64,
    /// Seconds an opened circuit stays open.
    pub circuit_open_for: f64,
    /// Record a dry run instead of running.
    pub dry_run: bool,
}

/// The store's decision on a job about to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Run it; an attempt was recorded.
    Run,
    /// Recorded as a dry run.
    DryRun,
    /// Another attempt on the subject happened within the cooldown.
    SkippedCooldown {
        /// Time of that attempt.
        last: f64,
    },
    /// The circuit is open.
    SkippedCircuitOpen {
        /// Until when.
        until: f64,
    },
    /// No attempts left in the window: the circuit was opened now.
    Exhausted,
    /// Already done, cancelled, or not found.
    Gone,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Acted and verified.
    Succeeded,
    /// Action or verification failed.
    Failed,
    /// Refused at run time (for example, a missing opt-in label); not an attempt.
    Denied,
}

impl Outcome {
    /// Name used in audit and metrics.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Denied => "denied",
        }
    }
}

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

/// State of an escalation row: active and re-posted.
pub const ESCALATION_FIRING: &str = "firing";
/// State of an escalation row: its alert resolved or its circuit closed; the resolving post
/// (`endsAt` = now) is due.
pub const ESCALATION_RESOLVING: &str = "resolving";
/// State of an escalation row: Alertmanager accepted the resolving post.
pub const ESCALATION_RESOLVED: &str = "resolved";

impl Store {
    /// Opens (creating if needed) the database at `path` and starts the store thread.
    ///
    /// # Errors
    /// When the database cannot be opened or its schema created.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        let (tx, rx) = std_mpsc::channel::<Op>();
        std::thread::Builder::new()
            .name("stackmedic-store".into())
            .spawn(move || writer(conn, rx))
            .map_err(|e| StoreError(format!("cannot start the store thread: {e}")))?;
        Ok(Store { tx })
    }

    /// Runs `f` on the store thread inside the next committed batch and returns its value once
    /// committed.
    ///
    /// # Errors
    /// When `f` fails, the commit fails, or the store thread is gone.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let op: Op = Box::new(move |c: &Connection| {
            let r = f(c);
            let ok = r.is_ok();
            let finish: Finish = Box::new(move |commit: Result<(), String>| {
                let out = match (r, commit) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(e)) => Err(StoreError(e)),
                };
                let _ = tx.send(out);
            });
            (ok, finish)
        });
        self.tx
            .send(op)
            .map_err(|_| StoreError("store thread stopped".into()))?;
        rx.await
            .map_err(|_| StoreError("store thread stopped".into()))?
    }

    /// Stores a webhook's jobs, denials and resolutions atomically.
    ///
    /// # Errors
    /// When nothing could be stored; then nothing was.
    pub async fn accept(&self, batch: Batch, now: f64) -> Result<Accepted, StoreError> {
        self.run(move |c| accept(c, batch, now)).await
    }

    /// Moves a queued job to running if the safety limits allow, or records why not.
    ///
    /// # Errors
    /// On a database failure.
    /// `escalation` is stored in the outbox when the circuit opens here.
    pub async fn decide(
        &self,
        job: Job,
        limits: Limits,
        escalation: Option<Value>,
        now: f64,
    ) -> Result<Decision, StoreError> {
        self.run(move |c| decide(c, &job, limits, escalation.as_ref(), now))
            .await
    }

    /// Records how a running job ended; returns whether the circuit opened as a result.
    /// `escalation` is stored in the outbox when the circuit opened.
    ///
    /// # Errors
    /// On a database failure.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish(
        &self,
        job: Job,
        outcome: Outcome,
        detail: String,
        duration: f64,
        limits: Limits,
        escalation: Option<Value>,
        now: f64,
    ) -> Result<bool, StoreError> {
        self.run(move |c| {
            finish(
                c,
                &job,
                outcome,
                &detail,
                duration,
                limits,
                escalation.as_ref(),
                now,
            )
        })
        .await
    }

    /// Records a job's end without an attempt (cancelled, expired, configuration gone).
    ///
    /// # Errors
    /// On a database failure.
    pub async fn close(
        &self,
        job: Job,
        result: &'static str,
        detail: String,
        now: f64,
    ) -> Result<(), StoreError> {
        self.run(move |c| {
            c.execute(
                "UPDATE jobs SET state = 'done', result = ?2 WHERE id = ?1",
                params![job.id, result],
            )?;
            audit(c, now, Some(&job), result, &detail, None)?;
            Ok(())
        })
        .await
    }

    /// Prepares stored jobs after a start: jobs older than `max_age` are expired, the others are
    /// returned to be queued again (a job that was running when the process died runs again;
    /// its attempt was already counted).
    ///
    /// # Errors
    /// On a database failure.
    pub async fn resume(&self, max_age: f64, now: f64) -> Result<(Vec<Job>, usize), StoreError> {
        self.run(move |c| {
            let jobs = load_jobs(c, "state IN ('queued', 'running') ORDER BY id")?;
            let mut keep = Vec::new();
            let mut expired = 0;
            for job in jobs {
                if now - job.accepted_at > max_age {
                    c.execute(
                        "UPDATE jobs SET state = 'done', result = 'expired' WHERE id = ?1",
                        [job.id],
                    )?;
                    audit(
                        c,
                        now,
                        Some(&job),
                        "expired",
                        &format!(
                            "accepted {:.0}s before this start, more than global.resume_max_age",
                            now - job.accepted_at
                        ),
                        None,
                    )?;
                    expired += 1;
                } else {
                    c.execute("UPDATE jobs SET state = 'queued' WHERE id = ?1", [job.id])?;
                    keep.push(job);
                }
            }
            Ok((keep, expired))
        })
        .await
    }

    /// The oldest queued jobs, at most `limit`.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn queued(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.run(move |c| load_jobs_p(c, "state = 'queued' ORDER BY id LIMIT ?1", [limit as i64]))
            .await
    }

    /// Deletes history older than `before`: finished jobs, audit rows, attempts, closed
    /// circuits, resolved escalations and incidents without a recent job. Returns the rows
    /// deleted.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn prune(&self, before: f64) -> Result<usize, StoreError> {
        self.run(move |c| {
            let mut n = 0;
            for sql in [
                "DELETE FROM jobs WHERE state = 'done' AND accepted_at < ?1",
                "DELETE FROM audit WHERE at < ?1",
                "DELETE FROM attempts WHERE at < ?1",
                "DELETE FROM circuits WHERE open_until < ?1",
                "DELETE FROM escalations WHERE state = 'resolved' AND resolved_at < ?1",
                "DELETE FROM incidents WHERE last_job_at < ?1",
            ] {
                n += c.execute(sql, [before])?;
            }
            Ok(n)
        })
        .await
    }

    /// Escalations due to be posted. Active escalations whose circuit closed (expired, or
    /// replaced by a newer opening) are first switched to resolving.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn due_escalations(&self, now: f64) -> Result<Vec<PendingEscalation>, StoreError> {
        self.run(move |c| {
            c.execute(
                "UPDATE escalations SET state = 'resolving', resolve_reason = 'the circuit closed', \
                 next_try_at = ?1, failures = 0 \
                 WHERE state = 'firing' AND NOT EXISTS (SELECT 1 FROM circuits k \
                   WHERE k.subject = escalations.subject AND k.open_until > ?1 \
                   AND (escalations.circuit_opened_at IS NULL OR k.opened_at = escalations.circuit_opened_at))",
                [now],
            )?;
            let mut st = c.prepare(
                "SELECT id, payload, failures, state, delivered_at, resolve_reason FROM escalations \
                 WHERE state IN ('firing', 'resolving') AND next_try_at <= ?1 ORDER BY id LIMIT 50",
            )?;
            let rows = st.query_map([now], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<f64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, payload, failures, state, delivered_at, resolve_reason) = row?;
                out.push(PendingEscalation {
                    id,
                    payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
                    failures,
                    resolving: state == ESCALATION_RESOLVING,
                    first: delivered_at.is_none(),
                    resolve_reason,
                });
            }
            Ok(out)
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
            Ok(c.execute(
                "UPDATE escalations SET next_try_at = ?1 \
                 WHERE state = 'firing' AND delivered_at IS NOT NULL AND next_try_at > ?1",
                [now],
            )?)
        })
        .await
    }

    /// Time of the next escalation post due (first post, re-post, resolve or retry), if any.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn next_escalation_at(&self) -> Result<Option<f64>, StoreError> {
        self.run(|c| {
            Ok(c.query_row(
                "SELECT MIN(next_try_at) FROM escalations WHERE state IN ('firing', 'resolving')",
                [],
                |r| r.get::<_, Option<f64>>(0),
            )?)
        })
        .await
    }

    /// Records a post of an escalation. A firing post that raced with the alert's resolution
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
        self.run(move |c| escalation_posted(c, id, resolving, result, now))
            .await
    }

    /// Counts for gauges: queued jobs, open circuits, escalations with an undelivered post
    /// (never delivered, failing re-posts, or a resolution not yet delivered), active
    /// escalations.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn gauges(&self, now: f64) -> Result<(i64, i64, i64, i64), StoreError> {
        self.run(move |c| {
            let q = c.query_row(
                "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')",
                [],
                |r| r.get(0),
            )?;
            let o = c.query_row(
                "SELECT COUNT(*) FROM circuits WHERE open_until > ?1",
                [now],
                |r| r.get(0),
            )?;
            let e = c.query_row(
                "SELECT COUNT(*) FROM escalations WHERE state = 'resolving' \
                 OR (state = 'firing' AND (delivered_at IS NULL OR failures > 0))",
                [],
                |r| r.get(0),
            )?;
            let a = c.query_row(
                "SELECT COUNT(*) FROM escalations WHERE state = 'firing'",
                [],
                |r| r.get(0),
            )?;
            Ok((q, o, e, a))
        })
        .await
    }

    /// Escalations for the on-call page, as JSON like [`Store::history`]'s: every active one
    /// (firing or resolving), newest first, and the `resolved` most recently resolved ones.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn escalation_overview(
        &self,
        resolved: usize,
    ) -> Result<(Vec<Value>, Vec<Value>), StoreError> {
        self.run(move |c| {
            let active = escalation_rows(c, "WHERE state != 'resolved' ORDER BY id DESC", [])?;
            let done = escalation_rows(
                c,
                "WHERE state = 'resolved' ORDER BY resolved_at DESC, id DESC LIMIT ?1",
                [resolved as i64],
            )?;
            Ok((active, done))
        })
        .await
    }

    /// The audit history (newest first), open circuits, pending jobs and escalations, as JSON.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn history(&self, limit: usize, now: f64) -> Result<Value, StoreError> {
        self.run(move |c| history(c, limit, now)).await
    }
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
PRAGMA busy_timeout = 5000;
PRAGMA foreign_keys = ON;
CREATE TABLE IF NOT EXISTS jobs (
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
  cooldown REAL NOT NULL,
  state TEXT NOT NULL,
  result TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_alert ON jobs(fingerprint, starts_at);
CREATE TABLE IF NOT EXISTS incidents (
  rule TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  starts_at TEXT NOT NULL,
  state TEXT NOT NULL,
  last_job_at REAL NOT NULL,
  PRIMARY KEY (rule, fingerprint, starts_at)
);
CREATE INDEX IF NOT EXISTS incidents_alert ON incidents(fingerprint, starts_at);
CREATE TABLE IF NOT EXISTS attempts (
  id INTEGER PRIMARY KEY,
  subject TEXT NOT NULL,
  job_id INTEGER NOT NULL,
  at REAL NOT NULL,
  outcome TEXT
);
CREATE INDEX IF NOT EXISTS attempts_subject ON attempts(subject, at);
CREATE TABLE IF NOT EXISTS circuits (
  subject TEXT PRIMARY KEY,
  target TEXT NOT NULL,
  opened_at REAL NOT NULL,
  open_until REAL NOT NULL,
  reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS escalations (
  id INTEGER PRIMARY KEY,
  job_id INTEGER,
  created_at REAL NOT NULL,
  payload TEXT NOT NULL,
  tries INTEGER NOT NULL DEFAULT 0,
  next_try_at REAL NOT NULL,
  delivered_at REAL,
  last_error TEXT
);
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY,
  at REAL NOT NULL,
  job_id INTEGER,
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
  started_at REAL
);
";

/// Columns added to `escalations` for the escalation lifecycle; added to a database created by
/// an older version, whose rows are then completed from their jobs.
const ESCALATION_COLUMNS: [(&str, &str); 10] = [
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

fn migrate(c: &Connection) -> Result<(), StoreError> {
    let mut st = c.prepare("SELECT name FROM pragma_table_info('escalations')")?;
    let have: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let mut added = false;
    for (name, decl) in ESCALATION_COLUMNS {
        if !have.iter().any(|h| h == name) {
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
    c.execute_batch(
        "CREATE INDEX IF NOT EXISTS escalations_alert ON escalations(fingerprint, starts_at);\
         CREATE INDEX IF NOT EXISTS escalations_state ON escalations(state, next_try_at);",
    )?;
    Ok(())
}

fn escalation_posted(
    c: &Connection,
    id: i64,
    resolving: bool,
    result: PostResult,
    now: f64,
) -> Result<bool, StoreError> {
    let posted_state = if resolving {
        ESCALATION_RESOLVING
    } else {
        ESCALATION_FIRING
    };
    match result {
        PostResult::Firing { next_post_at } => {
            c.execute(
                "UPDATE escalations SET delivered_at = COALESCE(delivered_at, ?2), last_post_at = ?2, \
                 tries = tries + 1, posts = posts + 1, failures = 0, last_error = NULL, \
                 next_try_at = CASE WHEN state = 'firing' THEN ?3 ELSE next_try_at END WHERE id = ?1",
                params![id, now, next_post_at],
            )?;
            Ok(false)
        }
        PostResult::Failed { error, retry_at } => {
            c.execute(
                "UPDATE escalations SET tries = tries + 1, failures = failures + 1, last_error = ?3, \
                 next_try_at = CASE WHEN state = ?4 THEN ?2 ELSE next_try_at END WHERE id = ?1",
                params![id, retry_at, error, posted_state],
            )?;
            Ok(false)
        }
        PostResult::Resolved => {
            let n = c.execute(
                "UPDATE escalations SET state = 'resolved', resolved_at = ?2, last_post_at = ?2, \
                 tries = tries + 1, posts = posts + 1, failures = 0, last_error = NULL \
                 WHERE id = ?1 AND state = 'resolving'",
                params![id, now],
            )?;
            if n == 0 {
                return Ok(false);
            }
            let (job_id, reason): (Option<i64>, Option<String>) = c.query_row(
                "SELECT job_id, resolve_reason FROM escalations WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let job = match job_id {
                Some(j) => load_jobs_p(c, "id = ?1", [j])?.pop(),
                None => None,
            };
            audit(
                c,
                now,
                job.as_ref(),
                "escalation_resolved",
                &format!(
                    "StackmedicRemediationFailed resolved in Alertmanager: {}",
                    reason.as_deref().unwrap_or("resolved")
                ),
                None,
            )?;
            Ok(true)
        }
    }
}

fn writer(mut conn: Connection, rx: std_mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut finishes = Vec::with_capacity(ops.len());
        let commit = match conn.transaction() {
            Ok(tx) => {
                for op in ops {
                    // A savepoint per operation: a failing one is rolled back alone and the
                    // others of the batch still commit.
                    let _ = tx.execute_batch("SAVEPOINT op");
                    let (ok, finish) = op(&tx);
                    if !ok {
                        let _ = tx.execute_batch("ROLLBACK TO op");
                    }
                    let _ = tx.execute_batch("RELEASE op");
                    finishes.push(finish);
                }
                tx.commit().map_err(|e| e.to_string())
            }
            Err(e) => {
                for op in ops {
                    finishes.push(op_fail(op));
                }
                Err(e.to_string())
            }
        };
        if let Err(e) = &commit {
            tracing::error!(error = %e, "store commit failed");
        }
        for f in finishes {
            f(commit.clone());
        }
    }
}

fn op_fail(op: Op) -> Finish {
    // Dropping the operation drops its reply channel: the caller sees the store as failed.
    drop(op);
    Box::new(|_| {})
}

fn labels_json(v: &BTreeMap<String, String>) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

fn accept(c: &Connection, batch: Batch, now: f64) -> Result<Accepted, StoreError> {
    let mut out = Accepted::default();
    for d in &batch.denials {
        c.execute(
            "INSERT INTO audit (at, rule, action, target, subject, alertname, fingerprint, result, detail) \
             VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, 'denied', ?7)",
            params![now, d.rule, d.action, d.target, d.alertname, d.fingerprint, d.reason],
        )?;
    }
    for (fp, start) in &batch.resolved {
        c.execute(
            "UPDATE incidents SET state = 'resolved' WHERE fingerprint = ?1 AND starts_at = ?2",
            params![fp, start],
        )?;
        out.resolved_escalations += c.execute(
            "UPDATE escalations SET state = 'resolving', resolve_reason = 'the alert resolved', \
             next_try_at = ?3, failures = 0 \
             WHERE state = 'firing' AND fingerprint = ?1 AND starts_at = ?2",
            params![fp, start, now],
        )?;
        let jobs = load_jobs_p(
            c,
            "state = 'queued' AND fingerprint = ?1 AND starts_at = ?2 ORDER BY id",
            params![fp, start],
        )?;
        for job in jobs {
            c.execute(
                "UPDATE jobs SET state = 'done', result = 'cancelled' WHERE id = ?1",
                [job.id],
            )?;
            audit(
                c,
                now,
                Some(&job),
                "cancelled",
                "the alert resolved before the action ran",
                None,
            )?;
            out.cancelled.push(job);
        }
    }
    for new in batch.jobs {
        let existing: Option<(String, f64)> = c
            .query_row(
                "SELECT state, last_job_at FROM incidents WHERE rule = ?1 AND fingerprint = ?2 AND starts_at = ?3",
                params![new.rule, new.fingerprint, new.starts_at],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((state, last)) = existing {
            // A resolved occurrence never acts again; a firing one again only after the cooldown.
            if state == "resolved" || now - last < new.cooldown {
                out.duplicates += 1;
                continue;
            }
        }
        c.execute(
            "INSERT INTO incidents (rule, fingerprint, starts_at, state, last_job_at) VALUES (?1, ?2, ?3, 'firing', ?4) \
             ON CONFLICT (rule, fingerprint, starts_at) DO UPDATE SET last_job_at = ?4",
            params![new.rule, new.fingerprint, new.starts_at, now],
        )?;
        c.execute(
            "INSERT INTO jobs (accepted_at, not_before, rule, action, target, subject, selection, fingerprint, starts_at, labels, annotations, cooldown, state) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'queued')",
            params![
                now,
                new.not_before,
                new.rule,
                new.action,
                new.target,
                new.subject,
                serde_json::to_string(&new.selection).unwrap_or_else(|_| "{}".into()),
                new.fingerprint,
                new.starts_at,
                labels_json(&new.labels),
                labels_json(&new.annotations),
                new.cooldown,
            ],
        )?;
        out.queued.push(Job {
            id: c.last_insert_rowid(),
            accepted_at: now,
            new,
        });
    }
    Ok(out)
}

fn load_jobs(c: &Connection, filter: &str) -> Result<Vec<Job>, StoreError> {
    load_jobs_p(c, filter, [])
}

fn load_jobs_p(
    c: &Connection,
    filter: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<Job>, StoreError> {
    let mut st = c.prepare(&format!(
        "SELECT id, accepted_at, not_before, rule, action, target, subject, selection, fingerprint, starts_at, labels, annotations, cooldown \
         FROM jobs WHERE {filter}"
    ))?;
    let rows = st.query_map(p, |r| {
        Ok(Job {
            id: r.get(0)?,
            accepted_at: r.get(1)?,
            new: NewJob {
                not_before: r.get(2)?,
                rule: r.get(3)?,
                action: r.get(4)?,
                target: r.get(5)?,
                subject: r.get(6)?,
                selection: serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or_default(),
                fingerprint: r.get(8)?,
                starts_at: r.get(9)?,
                labels: serde_json::from_str(&r.get::<_, String>(10)?).unwrap_or_default(),
                annotations: serde_json::from_str(&r.get::<_, String>(11)?).unwrap_or_default(),
                cooldown: r.get(12)?,
            },
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn audit(
    c: &Connection,
    now: f64,
    job: Option<&Job>,
    result: &str,
    detail: &str,
    duration: Option<f64>,
) -> Result<(), StoreError> {
    let (rule, action, target, subject, alertname, fp, id, accepted) = match job {
        Some(j) => (
            j.new.rule.as_str(),
            j.new.action.as_str(),
            j.new.target.as_str(),
            j.new.subject.as_str(),
            j.new.labels.get("alertname").map_or("", String::as_str),
            j.new.fingerprint.as_str(),
            Some(j.id),
            Some(j.accepted_at),
        ),
        None => ("", "", "", "", "", "", None, None),
    };
    let started = duration.map(|d| now - d);
    c.execute(
        "INSERT INTO audit (at, job_id, rule, action, target, subject, alertname, fingerprint, result, detail, duration_seconds, accepted_at, started_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![now, id, rule, action, target, subject, alertname, fp, result, detail, duration, accepted, started],
    )?;
    Ok(())
}

fn attempts_in_window(
    c: &Connection,
    subject: &str,
    since: f64,
) -> Result<(u32, Option<f64>), StoreError> {
    Ok(c.query_row(
        "SELECT COUNT(*), MAX(at) FROM attempts WHERE subject = ?1 AND at > ?2",
        params![subject, since],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

fn decide(
    c: &Connection,
    job: &Job,
    l: Limits,
    escalation: Option<&Value>,
    now: f64,
) -> Result<Decision, StoreError> {
    let state: Option<String> = c
        .query_row("SELECT state FROM jobs WHERE id = ?1", [job.id], |r| {
            r.get(0)
        })
        .optional()?;
    if state.as_deref() != Some("queued") {
        return Ok(Decision::Gone);
    }
    let subject = &job.new.subject;
    let open_until: Option<f64> = c
        .query_row(
            "SELECT open_until FROM circuits WHERE subject = ?1",
            [subject],
            |r| r.get(0),
        )
        .optional()?;
    let close = |result: &str, detail: String| -> Result<(), StoreError> {
        c.execute(
            "UPDATE jobs SET state = 'done', result = ?2 WHERE id = ?1",
            params![job.id, result],
        )?;
        audit(c, now, Some(job), result, &detail, None)
    };
    if let Some(until) = open_until.filter(|u| *u > now) {
        close(
            "skipped_circuit_open",
            format!("circuit open for {:.0}s more", until - now),
        )?;
        return Ok(Decision::SkippedCircuitOpen { until });
    }
    let (count, last) = attempts_in_window(c, subject, now - l.attempt_window.max(l.cooldown))?;
    if let Some(last) = last.filter(|t| now - t < l.cooldown) {
        close(
            "skipped_cooldown",
            format!(
                "last attempt on {subject} {:.0}s ago, cooldown {:.0}s",
                now - last,
                l.cooldown
            ),
        )?;
        return Ok(Decision::SkippedCooldown { last });
    }
    let (count, _) = if l.attempt_window >= l.cooldown {
        (count, last)
    } else {
        attempts_in_window(c, subject, now - l.attempt_window)?
    };
    if count >= l.max_attempts {
        open_circuit(
            c,
            job,
            l,
            now,
            &format!("{count} attempts within the window"),
        )?;
        if let Some(p) = escalation {
            insert_escalation(c, job, p, now)?;
        }
        close(
            "skipped_circuit_open",
            format!(
                "{count} attempts within {:.0}s, circuit opened",
                l.attempt_window
            ),
        )?;
        return Ok(Decision::Exhausted);
    }
    if l.dry_run {
        close("dry_run", "dry run: the action was not executed".into())?;
        return Ok(Decision::DryRun);
    }
    c.execute("UPDATE jobs SET state = 'running' WHERE id = ?1", [job.id])?;
    c.execute(
        "INSERT INTO attempts (subject, job_id, at) VALUES (?1, ?2, ?3)",
        params![subject, job.id, now],
    )?;
    Ok(Decision::Run)
}

fn open_circuit(
    c: &Connection,
    job: &Job,
    l: Limits,
    now: f64,
    reason: &str,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO circuits (subject, target, opened_at, open_until, reason) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (subject) DO UPDATE SET opened_at = ?3, open_until = ?4, reason = ?5",
        params![job.new.subject, job.new.target, now, now + l.circuit_open_for, reason],
    )?;
    Ok(())
}

fn insert_escalation(
    c: &Connection,
    job: &Job,
    payload: &Value,
    now: f64,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO escalations (job_id, created_at, payload, next_try_at, subject, fingerprint, starts_at, circuit_opened_at, state) \
         VALUES (?1, ?2, ?3, ?2, ?4, ?5, ?6, ?2, 'firing')",
        params![job.id, now, payload.to_string(), job.new.subject, job.new.fingerprint, job.new.starts_at],
    )?;
    audit(
        c,
        now,
        Some(job),
        "escalated",
        "StackmedicRemediationFailed queued for Alertmanager",
        None,
    )
}

#[allow(clippy::too_many_arguments)]
fn finish(
    c: &Connection,
    job: &Job,
    outcome: Outcome,
    detail: &str,
    duration: f64,
    l: Limits,
    escalation: Option<&Value>,
    now: f64,
) -> Result<bool, StoreError> {
    c.execute(
        "UPDATE jobs SET state = 'done', result = ?2 WHERE id = ?1",
        params![job.id, outcome.as_str()],
    )?;
    if outcome == Outcome::Denied {
        c.execute("DELETE FROM attempts WHERE job_id = ?1", [job.id])?;
    } else {
        c.execute(
            "UPDATE attempts SET outcome = ?2 WHERE job_id = ?1",
            params![job.id, outcome.as_str()],
        )?;
    }
    audit(c, now, Some(job), outcome.as_str(), detail, Some(duration))?;
    if outcome != Outcome::Failed {
        return Ok(false);
    }
    let (count, _) = attempts_in_window(c, &job.new.subject, now - l.attempt_window)?;
    if count < l.max_attempts {
        return Ok(false);
    }
    // One escalation per opening: attempts decided before the circuit opened may still fail
    // after it did.
    let already_open: Option<f64> = c
        .query_row(
            "SELECT open_until FROM circuits WHERE subject = ?1 AND open_until > ?2",
            params![job.new.subject, now],
            |r| r.get(0),
        )
        .optional()?;
    if already_open.is_some() {
        return Ok(false);
    }
    open_circuit(
        c,
        job,
        l,
        now,
        &format!("{count} attempt(s) within the window, the last one failed"),
    )?;
    if let Some(p) = escalation {
        insert_escalation(c, job, p, now)?;
    }
    Ok(true)
}

fn history(c: &Connection, limit: usize, now: f64) -> Result<Value, StoreError> {
    let mut st = c.prepare(
        "SELECT id, at, job_id, rule, action, target, subject, alertname, fingerprint, result, detail, duration_seconds, accepted_at, started_at \
         FROM audit ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = st.query_map([limit as i64], |r| {
        Ok(json!({
            "id": r.get::<_, i64>(0)?,
            "time": r.get::<_, f64>(1)?,
            "job_id": r.get::<_, Option<i64>>(2)?,
            "rule": r.get::<_, String>(3)?,
            "action": r.get::<_, String>(4)?,
            "target": r.get::<_, String>(5)?,
            "subject": r.get::<_, String>(6)?,
            "alertname": r.get::<_, String>(7)?,
            "fingerprint": r.get::<_, String>(8)?,
            "result": r.get::<_, String>(9)?,
            "detail": r.get::<_, String>(10)?,
            "duration_seconds": r.get::<_, Option<f64>>(11)?,
            "accepted_at": r.get::<_, Option<f64>>(12)?,
            "started_at": r.get::<_, Option<f64>>(13)?,
        }))
    })?;
    let actions = rows.collect::<Result<Vec<_>, _>>()?;
    let mut st = c.prepare(
        "SELECT subject, target, opened_at, open_until, reason FROM circuits WHERE open_until > ?1 ORDER BY opened_at DESC",
    )?;
    let circuits = st
        .query_map([now], |r| {
            Ok(json!({
                "subject": r.get::<_, String>(0)?,
                "target": r.get::<_, String>(1)?,
                "opened_at": r.get::<_, f64>(2)?,
                "open_until": r.get::<_, f64>(3)?,
                "reason": r.get::<_, String>(4)?,
            }))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let pending: Vec<Value> = load_jobs(c, "state IN ('queued', 'running') ORDER BY id LIMIT 100")?
        .into_iter()
        .map(|j| {
            json!({
                "job_id": j.id,
                "accepted_at": j.accepted_at,
                "not_before": j.new.not_before,
                "rule": j.new.rule,
                "action": j.new.action,
                "target": j.new.target,
                "subject": j.new.subject,
                "alertname": j.new.labels.get("alertname"),
            })
        })
        .collect();
    let escalations = escalation_rows(c, "ORDER BY id DESC LIMIT 50", [])?;
    Ok(json!({
        "actions": actions,
        "open_circuits": circuits,
        "pending_jobs": pending,
        "escalations": escalations,
    }))
}

/// Escalations as JSON, selected and ordered by `filter` (the SQL after `FROM escalations`).
/// What was escalated (`alertname`, `rule`, `target`, `action`) is read from the stored
/// payload's labels.
fn escalation_rows(
    c: &Connection,
    filter: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<Value>, StoreError> {
    let mut st = c.prepare(&format!(
        "SELECT id, job_id, created_at, tries, delivered_at, last_error, subject, state, posts, last_post_at, \
         next_try_at, resolve_reason, resolved_at, failures, payload FROM escalations {filter}"
    ))?;
    let rows = st.query_map(p, |r| {
        let state: String = r.get(7)?;
        let next: f64 = r.get(10)?;
        let payload: Value = serde_json::from_str(&r.get::<_, String>(14)?).unwrap_or(Value::Null);
        let label = |name: &str| payload[0]["labels"][name].as_str().map(str::to_owned);
        Ok(json!({
            "id": r.get::<_, i64>(0)?,
            "job_id": r.get::<_, Option<i64>>(1)?,
            "created_at": r.get::<_, f64>(2)?,
            "tries": r.get::<_, i64>(3)?,
            "delivered_at": r.get::<_, Option<f64>>(4)?,
            "last_error": r.get::<_, Option<String>>(5)?,
            "subject": r.get::<_, String>(6)?,
            "posts": r.get::<_, i64>(8)?,
            "failures": r.get::<_, i64>(13)?,
            "last_post_at": r.get::<_, Option<f64>>(9)?,
            "next_post_at": (state != ESCALATION_RESOLVED).then_some(next),
            "resolve_reason": r.get::<_, Option<String>>(11)?,
            "resolved_at": r.get::<_, Option<f64>>(12)?,
            "alertname": label("original_alertname"),
            "rule": label("remediation_rule"),
            "target": label("remediation_target"),
            "action": label("remediation_action"),
            "state": state,
        }))
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_800_000_000.0;

    /// Stores a job for `fp` that finds no attempts left, so one escalation is stored.
    async fn escalate(store: &Store, fp: &str, now: f64) {
        let new = NewJob {
            rule: "ghost-start".into(),
            action: "container_start".into(),
            target: "ghost".into(),
            subject: format!("ghost/{fp}"),
            selection: Selection::default(),
            fingerprint: fp.into(),
            starts_at: "2026-11-22T10:00:00Z".into(),
            labels: BTreeMap::from([("alertname".into(), "GhostDown".into())]),
            annotations: BTreeMap::new(),
            not_before: now,
            cooldown: 0.0,
        };
        let batch = Batch {
            jobs: vec![new],
            ..Batch::default()
        };
        let job = store.accept(batch, now).await.unwrap().queued.remove(0);
        let limits = Limits {
            cooldown: 0.0,
            max_attempts: 0,
            attempt_window: 3600.0,
            circuit_open_for: 3600.0,
            dry_run: false,
        };
        let payload = json!([{"labels": {
            "alertname": "StackmedicRemediationFailed",
            "original_alertname": "GhostDown",
            "remediation_rule": "ghost-start",
            "remediation_target": "ghost",
            "remediation_action": "container_start",
        }}]);
        let d = store.decide(job, limits, Some(payload), now).await.unwrap();
        assert_eq!(d, Decision::Exhausted);
    }

    #[tokio::test]
    async fn overview_lists_every_active_escalation_and_the_latest_resolved_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        for (i, fp) in ["a", "b", "c", "d"].into_iter().enumerate() {
            escalate(&store, fp, NOW + i as f64).await;
        }
        // a, b and c resolve, c first and a last; d stays active.
        for (i, fp) in ["c", "b", "a"].into_iter().enumerate() {
            let t = NOW + 10.0 + i as f64;
            let batch = Batch {
                resolved: vec![(fp.into(), "2026-11-22T10:00:00Z".into())],
                ..Batch::default()
            };
            assert_eq!(
                store.accept(batch, t).await.unwrap().resolved_escalations,
                1
            );
            let due = store.due_escalations(t).await.unwrap();
            let e = due.iter().find(|e| e.resolving).unwrap();
            assert!(store
                .escalation_posted(e.id, true, PostResult::Resolved, t)
                .await
                .unwrap());
        }
        let (active, resolved) = store.escalation_overview(2).await.unwrap();
        assert_eq!(active.len(), 1, "{active:#?}");
        assert_eq!(active[0]["subject"], "ghost/d");
        assert_eq!(active[0]["state"], ESCALATION_FIRING);
        assert_eq!(active[0]["alertname"], "GhostDown");
        assert_eq!(active[0]["rule"], "ghost-start");
        assert_eq!(active[0]["target"], "ghost");
        assert_eq!(active[0]["action"], "container_start");
        assert_eq!(active[0]["failures"], 0);
        let subjects: Vec<&str> = resolved
            .iter()
            .map(|e| e["subject"].as_str().unwrap())
            .collect();
        assert_eq!(subjects, ["ghost/a", "ghost/b"], "{resolved:#?}");
        assert_eq!(resolved[0]["resolve_reason"], "the alert resolved");
        assert_eq!(resolved[0]["next_post_at"], Value::Null);
    }
}
