//! Durable state in one SQLite database (WAL, every commit flushed to disk before its callers
//! are answered): jobs, alert occurrences, incidents, the escalation outbox and the audit
//! history.
//!
//! One thread owns the writing connection ([`writer`]); every operation runs there inside a
//! group-committed transaction and its caller is answered once the commit is on disk. What
//! the web interface reads runs on read-only connections of its own ([`readers`]), never on
//! the writer thread. The concerns are split by file: [`schema`] (tables and migration),
//! [`jobs`] (acceptance, resume, closing jobs), [`incidents`] (the incident model applied:
//! decide, start, finish, resolve, reconcile), [`escalations`] (the outbox), [`views`] (typed
//! read views for the API, the page and the gauges) and `audit` (the history rows).
//!
//! **Invariant:** a job is answered with 2xx only after its row is committed; an attempt is
//! counted in the same transaction that marks its job's action as started, never before.

mod audit;
mod controls;
pub mod db;
mod endings;
pub mod escalations;
mod holds;
pub mod incidents;
pub mod jobs;
pub mod migrate;
pub mod pg;
pub mod readers;
mod rechecks;
mod replicas;
pub mod schema;
mod sets;
pub mod views;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::action::{ActionKind, Selection};
use crate::vocab::CloseReason;

pub use controls::ResetOutcome;
pub use endings::ActiveAlert;
pub use escalations::{PendingEscalation, PostResult};
pub use holds::{Guard, Pause, Released};
pub use incidents::{Conditions, DecideInput, FinishInput, Finished, Outcome, Start};
pub use jobs::{Accepted, Batch, Denial, ResolvedAlert, Resumed};
pub use rechecks::DueCheck;
pub use replicas::Renewal;
pub use views::{
    AlertRef, AuditRow, EscalationView, FlappingView, Gauges, IncidentView, Overview,
    OverviewLimits, PendingJob,
};

/// Most prepared statements kept per connection: every statement of the store fits, so each is
/// parsed once per connection, not per call.
const STATEMENT_CACHE: usize = 256;

pub(crate) use db::{args, exec, row, row_opt, rows, Db};

/// A store failure; the message is the database's.
#[derive(Debug, Clone, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// Handle to the store thread and the read-only connections; cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: std_mpsc::Sender<writer::Op>,
    /// PostgreSQL: the writer that accepts new alerts, beside the one for everything else, so
    /// that webhooks are not answered only after the decisions before them (see [`sets`]).
    accepts: Option<std_mpsc::Sender<writer::Op>>,
    readers: Arc<Reads>,
    /// Whether operations succeed, as the last ones found.
    pub health: Arc<Health>,
    /// This process.
    pub replica: Arc<Replica>,
    engine: db::Engine,
    /// Transactions run again after a conflict with another one (PostgreSQL): of another
    /// replica, or of this replica's other writer.
    pub conflicts: Arc<std::sync::atomic::AtomicU64>,
}

/// The read connections of the store's engine.
enum Reads {
    Sqlite(readers::Readers),
    Postgres(Arc<pg::Readers>),
}

/// This remediator process among the replicas sharing a store.
#[derive(Debug, Clone)]
pub struct Replica {
    /// Its name (`--replica.name`, the host name by default): on the page, in metrics and logs.
    pub name: String,
    /// This process: the name, the process id and the start time. Jobs are held by an
    /// instance, so a replica restarted under the same name does not mistake its previous
    /// process's claims for live ones.
    pub instance: String,
}

impl Replica {
    /// This process, as replica `name`.
    #[must_use]
    pub fn new(name: &str) -> Replica {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Replica {
            name: name.to_string(),
            instance: format!("{name}/{}/{started:x}", std::process::id()),
        }
    }

    /// The host's name, the default replica name.
    #[must_use]
    pub fn host_name() -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "remediator".into())
    }
}

/// Whether the store can write: the outcome of its latest operation (or probe). Readiness,
/// the sweeper and the metrics read it.
#[derive(Debug, Default)]
pub struct Health {
    failing: std::sync::Mutex<Option<Failing>>,
    errors: std::sync::atomic::AtomicU64,
}

/// Since when the store fails, and its latest error.
#[derive(Debug, Clone, PartialEq)]
pub struct Failing {
    /// When the first failure of this run of failures happened.
    pub since: f64,
    /// The latest error.
    pub error: String,
}

impl Health {
    fn record<T>(&self, result: &Result<T, StoreError>) {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(_) => {
                if let Some(f) = failing.take() {
                    tracing::info!(failing_since = %crate::clock::rfc3339(f.since), "the store writes again");
                }
            }
            Err(e) => {
                self.errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match failing.as_mut() {
                    Some(f) => f.error = e.0.clone(),
                    None => {
                        tracing::error!(error = %e, "the store cannot write: webhooks get 503, stored work waits and is tried again");
                        *failing = Some(Failing {
                            since: crate::clock::now(),
                            error: e.0.clone(),
                        });
                    }
                }
            }
        }
    }

    /// Since when, and why, the store fails; `None` while it works.
    #[must_use]
    pub fn failing(&self) -> Option<Failing> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Failed operations since the start.
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.errors.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A job about to be stored.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Rule name.
    pub rule: String,
    /// Action kind.
    pub action: ActionKind,
    /// Target name.
    pub target: String,
    /// The subject: as the labels selected it at first, canonical once decided.
    pub subject: String,
    /// Allow-listed names chosen by labels.
    pub selection: Selection,
    /// Alert fingerprint.
    pub fingerprint: String,
    /// Alert start time, as Alertmanager wrote it.
    pub starts_at: String,
    /// Alert labels (shared: a job's copies, in memory and in its decision, are one map).
    pub labels: Arc<BTreeMap<String, String>>,
    /// Alert annotations (shared likewise).
    pub annotations: Arc<BTreeMap<String, String>>,
    /// Earliest time to act.
    pub not_before: f64,
}

impl NewJob {
    /// The alert's name.
    #[must_use]
    pub fn alertname(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }
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
    /// Its incident, once decided.
    pub incident: Option<i64>,
    /// Whether it is an incident's scheduled next attempt (not a new alert).
    pub retry: bool,
    /// When its action started, if it did (then it is verified after a crash, not run again).
    pub started_at: Option<f64>,
    /// When it was first due (its `not_before` when stored); a job picked up longer than
    /// `global.resume_max_age` after this is not run blindly.
    pub due_at: f64,
    /// How often its decision was put off because its subject could not be made canonical.
    pub postponed: u32,
}

/// An incident that closed, for logs and metrics.
#[derive(Debug, Clone)]
pub struct Closed {
    /// The incident.
    pub id: i64,
    /// Its subject.
    pub subject: String,
    /// Why.
    pub reason: CloseReason,
}

/// What resolving occurrences changed.
#[derive(Debug, Default)]
pub struct Resolution {
    /// Occurrences marked resolved.
    pub occurrences: usize,
    /// Jobs cancelled because their alert resolved or their incident closed.
    pub cancelled: Vec<Job>,
    /// Incidents closed.
    pub closed: Vec<Closed>,
    /// Active escalations now waiting for their resolving post.
    pub escalations_resolving: usize,
    /// Incidents escalated (their rule or target was removed).
    pub escalated: usize,
    /// Resolves remembered because they arrived before any firing of their occurrence.
    pub remembered: usize,
}

impl Resolution {
    /// Adds another resolution's effects.
    pub fn merge(&mut self, other: Resolution) {
        self.occurrences += other.occurrences;
        self.cancelled.extend(other.cancelled);
        self.closed.extend(other.closed);
        self.escalations_resolving += other.escalations_resolving;
        self.escalated += other.escalated;
        self.remembered += other.remembered;
    }
}

impl Store {
    /// Opens (creating or migrating if needed) the database at `path` and starts the store
    /// thread.
    ///
    /// # Errors
    /// When the database cannot be opened, created or migrated.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_sqlite(path, Replica::new(&Replica::host_name()))
    }

    /// Opens the SQLite database at `path` for replica `replica` (the only one: SQLite is one
    /// process's store).
    ///
    /// # Errors
    /// When the database cannot be opened, created or migrated.
    pub fn open_sqlite(path: &Path, replica: Replica) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        schema::prepare(&mut conn, crate::clock::now())?;
        check(&conn, path)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Commits write the log without waiting for the disk; the writer's sync thread flushes
        // it before any caller is answered (see `writer`).
        conn.execute_batch("PRAGMA synchronous = NORMAL")?;
        // Statement journals (of a batch run again with a savepoint per operation, and of
        // statements that may fail part-way) in memory, not in a temporary file opened and
        // deleted each time.
        conn.execute_batch("PRAGMA temp_store = MEMORY")?;
        let replica = Arc::new(replica);
        let readers = Arc::new(Reads::Sqlite(readers::Readers::open(
            path,
            replica.clone(),
        )?));
        let (tx, rx) = std_mpsc::channel::<writer::Op>();
        let db = path.to_owned();
        let me = replica.clone();
        std::thread::Builder::new()
            .name("stackmedic-store".into())
            .spawn(move || writer::run(conn, &db, &me, rx))
            .map_err(|e| StoreError(format!("cannot start the store thread: {e}")))?;
        Ok(Store {
            tx,
            accepts: None,
            readers,
            health: Arc::new(Health::default()),
            replica,
            engine: db::Engine::Sqlite,
            conflicts: Arc::default(),
        })
    }

    /// Connects to PostgreSQL, creates the schema if the database has none, checks that a
    /// write works, and starts the store thread.
    ///
    /// # Errors
    /// When the database cannot be reached, is of a newer schema, or refuses a write.
    pub fn open_postgres(options: &pg::Options, replica: Replica) -> Result<Store, StoreError> {
        // The blocking client runs a runtime of its own: off this (possibly async) thread.
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut client = pg::connect(options)?;
                schema::prepare_postgres(&mut client)?;
                client
                    .execute(
                        "INSERT INTO health (id, at) VALUES (1, $1) \
                         ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                        &[&crate::clock::now()],
                    )
                    .map_err(|e| StoreError(format!("cannot write to {}: {e}", options.url)))?;
                Ok::<(), StoreError>(())
            })
            .join()
            .unwrap_or_else(|_| Err(StoreError("the store's start check panicked".into())))
        })?;
        let replica = Arc::new(replica);
        let readers = Arc::new(Reads::Postgres(Arc::new(pg::Readers::new(
            options.clone(),
            replica.clone(),
        ))));
        let conflicts: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let writer = |name: &str| {
            let (tx, rx) = std_mpsc::channel::<writer::Op>();
            let (opts, me, counted) = (options.clone(), replica.clone(), conflicts.clone());
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || pg::run(&opts, &me, &counted, &rx))
                .map_err(|e| StoreError(format!("cannot start the store thread: {e}")))?;
            Ok::<_, StoreError>(tx)
        };
        let tx = writer("stackmedic-store")?;
        let accepts = Some(writer("stackmedic-accept")?);
        Ok(Store {
            tx,
            accepts,
            readers,
            health: Arc::new(Health::default()),
            replica,
            engine: db::Engine::Postgres,
            conflicts,
        })
    }

    /// The engine behind this store.
    #[must_use]
    pub fn engine(&self) -> db::Engine {
        self.engine
    }

    /// A small write (the `health` row), to learn whether the store writes again.
    ///
    /// # Errors
    /// When it cannot write.
    pub async fn probe(&self, now: f64) -> Result<(), StoreError> {
        self.run(move |c| {
            exec(
                c,
                "INSERT INTO health (id, at) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                args![now],
            )?;
            Ok(())
        })
        .await
    }

    /// Runs `f` on a read-only connection (not the store thread), inside one read transaction,
    /// and returns its value. It sees every operation committed before it started.
    ///
    /// # Errors
    /// When `f` fails or the read cannot run.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Db) -> Result<T, StoreError> + Send + 'static,
    {
        match &*self.readers {
            Reads::Sqlite(r) => r.read(f).await,
            Reads::Postgres(r) => r.read(f).await,
        }
    }

    /// Runs `f` on the store thread inside the next committed batch and returns its value once
    /// committed. On PostgreSQL `f` runs again when its transaction has to be retried (another
    /// replica changed what it read): it must only read and write through the [`Db`] it is
    /// given.
    ///
    /// # Errors
    /// When `f` fails, the commit fails, or the store thread is gone.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&dyn Db) -> Result<T, StoreError> + Send + 'static,
    {
        self.run_hinted(None, f).await
    }

    /// [`Store::run`], saying what `f` will do first (see [`sets`]).
    async fn run_hinted<T, F>(&self, hint: Option<sets::Hint>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&dyn Db) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let op_is_accept = matches!(hint, Some(sets::Hint::Accept { .. }));
        let op: writer::Op = Box::new(Pending {
            f,
            out: None,
            tx,
            hint,
        });
        let to = match (&self.accepts, &op_is_accept) {
            (Some(accepts), true) => accepts,
            _ => &self.tx,
        };
        let result = match to.send(op) {
            Ok(()) => rx
                .await
                .unwrap_or_else(|_| Err(StoreError("store thread stopped".into()))),
            Err(_) => Err(StoreError("store thread stopped".into())),
        };
        self.health.record(&result);
        result
    }
}

/// An operation waiting on the store thread: its function, its latest result and its caller.
struct Pending<T, F> {
    f: F,
    out: Option<Result<T, StoreError>>,
    tx: oneshot::Sender<Result<T, StoreError>>,
    hint: Option<sets::Hint>,
}

impl<T, F> writer::Operation for Pending<T, F>
where
    T: Send + 'static,
    F: Fn(&dyn Db) -> Result<T, StoreError> + Send + 'static,
{
    fn run(&mut self, db: &dyn Db) -> bool {
        let r = (self.f)(db);
        let ok = r.is_ok();
        self.out = Some(r);
        ok
    }

    fn hint(&self) -> Option<&sets::Hint> {
        self.hint.as_ref()
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let out = match (self.out, commit) {
            (Some(Ok(v)), Ok(())) => Ok(v),
            (Some(Err(e)), _) => Err(e),
            (_, Err(e)) => Err(StoreError(e)),
            (None, Ok(())) => Err(StoreError("the operation did not run".into())),
        };
        let _ = self.tx.send(out);
    }
}

/// Checks a database at start: SQLite's `quick_check` finds no corruption, and a write works.
/// A store that fails either is refused, so the remediator never starts and reports ready on a
/// store that loses every webhook.
fn check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut st = conn.prepare("PRAGMA quick_check(10)")?;
    let problems: Vec<String> = st
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| StoreError(format!("{} is corrupt: {e}", path.display())))?;
    if problems != ["ok"] {
        return Err(StoreError(format!(
            "{} is corrupt ({}); restore it from a backup, or move it away to start with an empty store",
            path.display(),
            problems.join("; ")
        )));
    }
    conn.execute(
        "INSERT OR REPLACE INTO health (id, at) VALUES (1, ?1)",
        [crate::clock::now()],
    )
    .map_err(|e| StoreError(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}
