//! PostgreSQL: the store that replicas share.
//!
//! Its shape follows SQLite's ([`super::writer`], [`super::readers`]): store threads own
//! writing connections and run operations in batches, each batch one transaction at
//! `SERIALIZABLE` isolation without savepoints (when one operation fails on its own, nothing is
//! committed and each runs again in a transaction of its own); reads run on a small pool of
//! connections in read-only snapshots. A commit returns once PostgreSQL has made it durable
//! (`synchronous_commit`), so callers are answered after it. A replica has two store threads:
//! one accepts webhooks' new alerts, the other runs everything else, so a webhook's answer does
//! not wait for the decisions queued before it. A batch's work is done in as few statements as
//! it can ([`super::sets`]), and a statement whose answer no operation waits for is sent
//! without waiting (pipelined, [`Db::exec_later`]).
//!
//! Two replicas deciding on the same subject, or accepting the same alert, at the same moment
//! conflict: PostgreSQL aborts one transaction with a serialization failure, and its batch runs
//! again from the start against what the other committed. So every operation sees the store
//! as if replicas took turns, which is what makes an occurrence stored once and an attempt
//! started once (the store's operations were written for one writer; serializable isolation
//! keeps them correct with several, and with the two store threads of one replica alike).
//!
//! A lost connection fails the batch (its callers get an error: webhooks 503, stored work
//! waits) and the next batch connects again.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type};
use postgres::{Client, IsolationLevel, Statement};
use tokio::sync::Semaphore;

use super::db::{Db, Engine, Row, Value};
use super::sets;
use super::writer::Op;
use super::StoreError;

/// Most operations committed together: smaller than SQLite's, as a conflict with another
/// replica runs the whole batch again.
const MAX_BATCH: usize = 64;

/// Times a batch runs again after conflicts before its callers get an error.
const MAX_TRIES: u32 = 30;

/// Read connections, hence reads running at once.
pub const READERS: usize = 2;

/// How to reach the database: what `--storage.url` and its companions say.
#[derive(Clone)]
pub struct Options {
    /// The URL as given, for messages (it holds no password).
    pub url: String,
    /// The connection settings.
    config: tokio_postgres::Config,
    /// TLS to the server, when the URL asks for it.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Options {
    /// Reads `url` (`postgres://user@host:port/db?sslmode=…`), the password from
    /// `password_file` or else the environment's `PGPASSWORD`, and the server's CA from
    /// `ca_file`. `application_name` names the replica in `pg_stat_activity`.
    ///
    /// # Errors
    /// A message naming what is wrong: the URL, a password inside it, an unreadable file.
    pub fn new(
        url: &str,
        password_file: Option<&Path>,
        ca_file: Option<&Path>,
        application_name: &str,
    ) -> Result<Options, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError(format!("--storage.url {url:?}: {e}")))?;
        if config.get_password().is_some() {
            return Err(StoreError(
                "--storage.url holds a password, which every process listing shows: put it in \
                 --storage.password-file or the environment variable PGPASSWORD"
                    .into(),
            ));
        }
        if config.get_user().is_none() {
            return Err(StoreError(format!(
                "--storage.url {url:?} names no user (postgres://USER@HOST:PORT/DATABASE)"
            )));
        }
        let password = match password_file {
            Some(path) => Some(
                stackmedic_common::config::read_secret(Some(path), None)
                    .map_err(|e| StoreError(format!("--storage.password-file: {e}")))?,
            ),
            None => std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()),
        };
        if let Some(p) = password {
            config.password(p);
        }
        config.application_name(format!("stackmedic-remediator {application_name}"));
        config.connect_timeout(Duration::from_secs(5));
        // A server that vanishes without closing the connection (host gone, network cut) is
        // noticed within seconds, not at the kernel's default of hours.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(5));
        config.keepalives_interval(Duration::from_secs(2));
        config.keepalives_retries(3);
        config.tcp_user_timeout(Duration::from_secs(10));
        let tls = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => None,
            _ => Some(tls(ca_file)?),
        };
        Ok(Options {
            url: url.to_string(),
            config,
            tls,
        })
    }

    /// A blocking client (reads, the schema).
    fn connect(&self) -> Result<Client, StoreError> {
        let config = postgres::Config::from(self.config.clone());
        let c = match &self.tls {
            Some(tls) => config.connect(tls.clone()),
            None => config.connect(postgres::NoTls),
        };
        c.map_err(|e| StoreError(format!("cannot connect to {}: {}", self.url, chain(&e))))
    }

    /// An asynchronous client whose connection runs on `rt` (the writer's).
    fn connect_async(
        &self,
        rt: &tokio::runtime::Runtime,
    ) -> Result<tokio_postgres::Client, StoreError> {
        let failed = |e: postgres::Error| {
            StoreError(format!("cannot connect to {}: {}", self.url, chain(&e)))
        };
        rt.block_on(async {
            match &self.tls {
                Some(tls) => {
                    let (client, conn) = self.config.connect(tls.clone()).await.map_err(failed)?;
                    tokio::spawn(async move { drop(conn.await) });
                    Ok(client)
                }
                None => {
                    let (client, conn) = self
                        .config
                        .connect(tokio_postgres::NoTls)
                        .await
                        .map_err(failed)?;
                    tokio::spawn(async move { drop(conn.await) });
                    Ok(client)
                }
            }
        })
    }
}

/// TLS to the server: its certificate verified against the system's roots and `ca_file`'s.
fn tls(ca_file: Option<&Path>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let mut extra = Vec::new();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| StoreError(format!("--storage.tls-ca-file {}: {e}", path.display())))?;
        use rustls_pki_types::pem::PemObject as _;
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            extra.push(c.map_err(|e| {
                StoreError(format!(
                    "--storage.tls-ca-file {}: not a PEM certificate: {e}",
                    path.display()
                ))
            })?);
        }
        if extra.is_empty() {
            return Err(StoreError(format!(
                "--storage.tls-ca-file {} holds no PEM certificate",
                path.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| StoreError(format!("cannot set up certificate verification: {e}")))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// An error with its causes, as one line.
pub(super) fn chain(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    stackmedic_common::errors::error_chain(e)
}

/// Whether `e` means "run the transaction again": a serialization failure or a deadlock.
fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

// --- values ---------------------------------------------------------------------------------

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => i.to_string().as_str().to_sql(ty, out),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                Type::INT8 if f.fract() == 0.0 => (*f as i64).to_sql(ty, out),
                _ => Err(format!("a number where {ty} was expected").into()),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn value(row: &postgres::Row, i: usize) -> Result<Value, postgres::Error> {
    let ty = row.columns()[i].type_();
    Ok(match *ty {
        Type::INT8 => row
            .try_get::<_, Option<i64>>(i)?
            .map_or(Value::Null, Value::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into())),
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(i)?
            .map_or(Value::Null, Value::Real),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)?
            .map_or(Value::Null, |v| Value::Real(v.into())),
        _ => row
            .try_get::<_, Option<String>>(i)?
            .map_or(Value::Null, Value::Text),
    })
}

/// `?1`-style placeholders as PostgreSQL's `$1`.
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for ch in sql.chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                out.push(ch);
            }
            '?' if !quoted => out.push('$'),
            _ => out.push(ch),
        }
    }
    out
}

// --- transactions ---------------------------------------------------------------------------

/// A connection and the statements prepared on it.
pub(super) struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    fn open(options: &Options) -> Result<Conn, StoreError> {
        Ok(Conn {
            client: options.connect()?,
            statements: HashMap::new(),
        })
    }
}

/// A transaction of PostgreSQL as the store's operations see it.
pub(super) struct Tx<'t, 'c> {
    tx: RefCell<&'t mut postgres::Transaction<'c>>,
    statements: RefCell<&'t mut HashMap<String, Statement>>,
    replica: &'t super::Replica,
    /// A serialization failure or deadlock was met: the transaction must run again.
    conflict: Cell<bool>,
}

impl Tx<'_, '_> {
    fn statement(&self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let st = self
            .tx
            .borrow_mut()
            .prepare(&placeholders(sql))
            .map_err(|e| self.error(&e, sql))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_string(), st.clone());
        Ok(st)
    }

    fn error(&self, e: &postgres::Error, sql: &str) -> StoreError {
        failure(&self.conflict, e, sql)
    }
}

/// `e`, met running `sql`, as the store reports it; `conflict` is set when it means the
/// transaction must run again.
fn failure(conflict: &Cell<bool>, e: &postgres::Error, sql: &str) -> StoreError {
    if retryable(e) {
        conflict.set(true);
    }
    StoreError(format!(
        "{} (in: {})",
        chain(e),
        sql.split_whitespace().take(6).collect::<Vec<_>>().join(" ")
    ))
}

/// The rows `sql` returned, as the store reads them.
fn read_rows(
    rows: &[postgres::Row],
    conflict: &Cell<bool>,
    sql: &str,
) -> Result<Vec<Row>, StoreError> {
    rows.iter()
        .map(|r| {
            (0..r.len())
                .map(|i| value(r, i))
                .collect::<Result<Vec<_>, _>>()
                .map(Row)
                .map_err(|e| failure(conflict, &e, sql))
        })
        .collect()
}

fn params(p: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    p.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl Db for Tx<'_, '_> {
    fn exec(&self, sql: &str, p: &[Value]) -> Result<usize, StoreError> {
        let st = self.statement(sql)?;
        let n = self
            .tx
            .borrow_mut()
            .execute(&st, &params(p))
            .map_err(|e| self.error(&e, sql))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn query(&self, sql: &str, p: &[Value]) -> Result<Vec<Row>, StoreError> {
        let st = self.statement(sql)?;
        let rows = self
            .tx
            .borrow_mut()
            .query(&st, &params(p))
            .map_err(|e| self.error(&e, sql))?;
        read_rows(&rows, &self.conflict, sql)
    }

    fn insert(&self, sql: &str, p: &[Value]) -> Result<i64, StoreError> {
        super::db::row(self, &format!("{sql} RETURNING id"), p, |r| r.get(0))
    }

    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        self.tx
            .borrow_mut()
            .batch_execute(sql)
            .map_err(|e| self.error(&e, sql))
    }

    fn replica(&self) -> &super::Replica {
        self.replica
    }
}

/// Runs `f` in a transaction of `conn` at `isolation`; `Err(None)` when it must run again.
fn transaction<T>(
    conn: &mut Conn,
    replica: &super::Replica,
    isolation: IsolationLevel,
    read_only: bool,
    f: impl FnOnce(&Tx<'_, '_>) -> Result<T, StoreError>,
) -> Result<T, Option<StoreError>> {
    let mut tx = conn
        .client
        .build_transaction()
        .isolation_level(isolation)
        .read_only(read_only)
        .start()
        .map_err(|e| Some(StoreError(chain(&e))))?;
    let (out, conflict) = {
        let db = Tx {
            tx: RefCell::new(&mut tx),
            statements: RefCell::new(&mut conn.statements),
            replica,
            conflict: Cell::new(false),
        };
        let out = f(&db);
        (out, db.conflict.get())
    };
    if conflict {
        return Err(None);
    }
    let out = out.map_err(Some)?;
    let end = if read_only {
        tx.rollback()
    } else {
        tx.commit()
    };
    match end {
        Ok(()) => Ok(out),
        Err(e) if retryable(&e) => Err(None),
        Err(e) => Err(Some(StoreError(format!("commit: {}", chain(&e))))),
    }
}

// --- the store thread -------------------------------------------------------------------

/// The writing connection: an asynchronous client on a runtime of the store thread's own, so
/// that a statement whose answer no operation waits for ([`Db::exec_later`]: an audit row) is
/// sent at once and answered while the next statements run (pipelined), instead of costing a
/// round trip of its own.
struct Writer {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    /// Prepared statements, each with how often it ran since.
    statements: HashMap<String, (Statement, u32)>,
}

/// Runs of a statement over a set of rows before it is prepared (and planned) again.
const REPLAN_AFTER: u32 = 200;

impl Writer {
    fn open(options: &Options) -> Result<Writer, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError(format!("cannot start the store's runtime: {e}")))?;
        let client = options.connect_async(&rt)?;
        Ok(Writer {
            rt,
            client,
            statements: HashMap::new(),
        })
    }
}

/// A statement sent without waiting for its answer.
type Later<'t> = Pin<Box<dyn Future<Output = Result<u64, postgres::Error>> + 't>>;

/// A write transaction on the [`Writer`], as the store's operations see it.
pub(super) struct WriteTx<'t> {
    rt: &'t tokio::runtime::Runtime,
    client: &'t tokio_postgres::Client,
    statements: RefCell<&'t mut HashMap<String, (Statement, u32)>>,
    replica: &'t super::Replica,
    /// Statements sent and not answered yet, oldest first.
    later: RefCell<Vec<Later<'t>>>,
    /// A serialization failure or deadlock was met: the transaction must run again.
    conflict: Cell<bool>,
    /// The first other error of a statement sent without waiting.
    later_failed: RefCell<Option<StoreError>>,
    /// The batch's accepting operations not yet accepted together ([`sets::accept_all`]).
    accepts: RefCell<Vec<(u64, Vec<super::NewJob>, f64)>>,
    /// What they were accepted with, by token; or why not.
    accepted: RefCell<Result<HashMap<u64, super::Accepted>, StoreError>>,
    /// What was read ahead for the batch's decisions ([`sets::prefetch`]), by job; emptied at
    /// the first write it cannot tell is harmless to it ([`WriteTx::writes`]).
    prefetched: RefCell<HashMap<i64, sets::Prefetched>>,
    /// The job of the decision running now.
    deciding: Cell<Option<i64>>,
    /// Ends of new occurrences' jobs to write together before the next statement
    /// ([`sets::end_all`]).
    ends: RefCell<Vec<sets::End>>,
}

impl<'t> WriteTx<'t> {
    /// Waits for `fut`, taking the answers of the statements sent before it meanwhile (the
    /// connection hands each answer over only once the one before it is taken).
    fn wait<T>(
        &self,
        fut: impl Future<Output = Result<T, postgres::Error>>,
    ) -> Result<T, postgres::Error> {
        let mut fut = std::pin::pin!(fut);
        self.rt.block_on(std::future::poll_fn(|cx| {
            self.poll_later(cx);
            fut.as_mut().poll(cx)
        }))
    }

    /// Takes the answers that arrived for statements sent without waiting.
    fn poll_later(&self, cx: &mut Context<'_>) {
        self.later
            .borrow_mut()
            .retain_mut(|f| match f.as_mut().poll(cx) {
                Poll::Ready(Ok(_)) => false,
                Poll::Ready(Err(e)) => {
                    self.failed_later(&e);
                    false
                }
                Poll::Pending => true,
            });
    }

    fn failed_later(&self, e: &postgres::Error) {
        if retryable(e) {
            self.conflict.set(true);
        } else {
            self.later_failed
                .borrow_mut()
                .get_or_insert_with(|| StoreError(chain(e)));
        }
    }

    /// Sends the ends kept for later ([`Db::end_later`]) in one statement.
    fn flush_ends(&self) {
        let ends = std::mem::take(&mut *self.ends.borrow_mut());
        if ends.is_empty() {
            return;
        }
        // The ends of the batch's decisions, each allowed alone (see `writes`): sent as they
        // are, without dropping what was read ahead.
        let ahead = std::mem::take(&mut *self.prefetched.borrow_mut());
        if let Err(e) = sets::end_all(self, ends) {
            self.later_failed.borrow_mut().get_or_insert(e);
        }
        *self.prefetched.borrow_mut() = ahead;
    }

    /// Waits until every statement sent has been answered.
    fn settle(&self) {
        self.flush_ends();
        self.rt.block_on(std::future::poll_fn(|cx| {
            self.poll_later(cx);
            if self.later.borrow().is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
    }

    /// Sends `fut`'s statement now (its first poll queues it on the connection, which writes
    /// it at the next wait) and keeps it to take its answer later.
    fn send_later(&self, mut fut: Later<'t>) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => self.failed_later(&e),
            Poll::Pending => self.later.borrow_mut().push(fut),
        }
    }

    /// The rows `sql` returned, as the store reads them.
    fn rows(&self, rows: &[postgres::Row], sql: &str) -> Result<Vec<Row>, StoreError> {
        read_rows(rows, &self.conflict, sql)
    }

    /// Notes that `sql` runs with `p`: unless it only reads, or is the running decision's end
    /// of its own job or an audit row, what was read ahead for the decisions is dropped.
    fn writes(&self, sql: &str, p: &[Value]) {
        if self.prefetched.borrow().is_empty() {
            return;
        }
        let own_job = sql
            .strip_prefix("WITH ended AS (")
            .unwrap_or(sql)
            .starts_with("UPDATE jobs SET state = ?2, result = ?3")
            && sql.contains("WHERE id = ?1 AND")
            && self
                .deciding
                .get()
                .is_some_and(|j| p.first() == Some(&Value::Int(j)));
        if !(sql.starts_with("SELECT ") || sql.starts_with("INSERT INTO audit ") || own_job) {
            self.prefetched.borrow_mut().clear();
        }
    }

    /// What every statement of the transaction does first: the ends kept for later are sent,
    /// what it writes drops what was read ahead, and it is prepared.
    fn next(&self, sql: &str, p: &[Value]) -> Result<Statement, StoreError> {
        self.flush_ends();
        self.writes(sql, p);
        self.statement(sql)
    }

    /// `sql` prepared on the connection. A statement over a set of rows from its JSON parameter
    /// (see `sets`) is prepared again every [`REPLAN_AFTER`] runs: PostgreSQL keeps the plan it
    /// made for a prepared statement, and one made while the tables were young (a scan of the
    /// whole table, the cheapest way through a few rows) is slow once they have grown.
    fn statement(&self, sql: &str) -> Result<Statement, StoreError> {
        if let Some((st, uses)) = self.statements.borrow_mut().get_mut(sql) {
            *uses += 1;
            if *uses < REPLAN_AFTER || !sql.contains("json_to_recordset") {
                return Ok(st.clone());
            }
        }
        let st = self
            .wait(self.client.prepare(&placeholders(sql)))
            .map_err(|e| self.error(&e, sql))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_string(), (st.clone(), 0));
        Ok(st)
    }

    fn error(&self, e: &postgres::Error, sql: &str) -> StoreError {
        failure(&self.conflict, e, sql)
    }
}

impl Db for WriteTx<'_> {
    fn exec(&self, sql: &str, p: &[Value]) -> Result<usize, StoreError> {
        let st = self.next(sql, p)?;
        let n = self
            .wait(self.client.execute(&st, &params(p)))
            .map_err(|e| self.error(&e, sql))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn exec_later(&self, sql: &str, p: &[Value]) -> Result<(), StoreError> {
        let st = self.next(sql, p)?;
        let values = p.to_vec();
        let client = self.client;
        self.send_later(Box::pin(async move {
            client.execute(&st, &params(&values)).await
        }));
        Ok(())
    }

    fn query(&self, sql: &str, p: &[Value]) -> Result<Vec<Row>, StoreError> {
        let st = self.next(sql, p)?;
        let rows = self
            .wait(self.client.query(&st, &params(p)))
            .map_err(|e| self.error(&e, sql))?;
        self.rows(&rows, sql)
    }

    fn insert(&self, sql: &str, p: &[Value]) -> Result<i64, StoreError> {
        super::db::row(self, &format!("{sql} RETURNING id"), p, |r| r.get(0))
    }

    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        self.flush_ends();
        self.writes(sql, &[]);
        self.wait(self.client.batch_execute(sql))
            .map_err(|e| self.error(&e, sql))
    }

    fn replica(&self) -> &super::Replica {
        self.replica
    }

    fn take_accepted(&self, token: u64) -> Option<Result<super::Accepted, StoreError>> {
        let pending = std::mem::take(&mut *self.accepts.borrow_mut());
        if !pending.is_empty() {
            let all = sets::accept_all(self, &pending);
            let mut accepted = self.accepted.borrow_mut();
            match (&mut *accepted, all) {
                (Ok(done), Ok(more)) => done.extend(more),
                (done, Err(e)) => *done = Err(e),
                (Err(_), Ok(_)) => {}
            }
        }
        match &mut *self.accepted.borrow_mut() {
            Ok(done) => done.remove(&token).map(Ok),
            Err(e) => Some(Err(e.clone())),
        }
    }

    fn take_prefetched(&self, job: i64) -> Option<sets::Prefetched> {
        self.prefetched.borrow_mut().remove(&job)
    }

    fn end_later(&self, end: sets::End) -> Option<sets::End> {
        // Only a decision's end of its own job, and each job once: anything else now.
        if self.deciding.get() != Some(end.job) {
            return Some(end);
        }
        if self.ends.borrow().iter().any(|e| e.job == end.job) {
            self.flush_ends();
        }
        self.ends.borrow_mut().push(end);
        None
    }
}

/// How a batch's transaction ended, when it did not commit.
enum TxEnd {
    /// Another replica's transaction conflicted: run it again.
    Conflict,
    /// An operation failed on its own (its error is its answer).
    OperationFailed,
    /// A statement sent without waiting failed (the error of the operation that sent it).
    Later(StoreError),
    /// The database failed.
    Db(StoreError),
}

/// Runs `ops` in one `SERIALIZABLE` transaction of `w` and commits it.
fn write_batch(w: &mut Writer, replica: &super::Replica, ops: &mut [Op]) -> Result<(), TxEnd> {
    let Writer {
        rt,
        client,
        statements,
    } = w;
    let client: &tokio_postgres::Client = client;
    let tx = WriteTx {
        rt,
        client,
        statements: RefCell::new(statements),
        replica,
        later: RefCell::new(Vec::new()),
        conflict: Cell::new(false),
        later_failed: RefCell::new(None),
        accepts: RefCell::new(Vec::new()),
        accepted: RefCell::new(Ok(HashMap::new())),
        prefetched: RefCell::new(HashMap::new()),
        deciding: Cell::new(None),
        ends: RefCell::new(Vec::new()),
    };
    // Sent with the first statement, not waited for on its own.
    tx.send_later(Box::pin(async move {
        client
            .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
            .await
            .map(|()| 0)
    }));
    // What the operations will do first, done for all of them at once (see `sets`): the
    // decisions run first, then the others in the order they came.
    let mut decides = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match op.hint() {
            Some(sets::Hint::Accept { token, jobs, now }) => {
                tx.accepts.borrow_mut().push((*token, jobs.clone(), *now));
            }
            Some(sets::Hint::Decide { job, subject }) => decides.push((i, *job, subject.clone())),
            None => {}
        }
    }
    // A batch of acceptances only (the accepting writer's): its one statement and the commit
    // are sent together, the commit not waiting for the statement's answer. Should the
    // statement fail, PostgreSQL ends the transaction without committing anything.
    let committing = !ops.is_empty() && tx.accepts.borrow().len() == ops.len();
    if committing {
        let pending = std::mem::take(&mut *tx.accepts.borrow_mut());
        let (sql, values) = sets::accept_statement(&pending, &replica.instance);
        let accepted = tx.statement(sql).and_then(|st| {
            let args = params(&values);
            let mut query = std::pin::pin!(client.query(&st, &args));
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let sent = query.as_mut().poll(&mut cx);
            tx.send_later(Box::pin(async move {
                client.batch_execute("COMMIT").await.map(|()| 0)
            }));
            let rows = match sent {
                Poll::Ready(r) => r,
                Poll::Pending => tx.wait(query),
            }
            .map_err(|e| tx.error(&e, sql))?;
            sets::accepted(&tx.rows(&rows, sql)?, &pending)
        });
        *tx.accepted.borrow_mut() = accepted;
    }
    if decides.len() > 1 {
        let keys: Vec<(i64, &str)> = decides.iter().map(|(_, j, s)| (*j, s.as_str())).collect();
        // On an error each decision reads for itself (and meets the same error).
        if let Ok(ahead) = sets::prefetch(&tx, &keys) {
            *tx.prefetched.borrow_mut() = ahead;
        }
    }
    let mut first = vec![false; ops.len()];
    for (i, ..) in &decides {
        first[*i] = true;
    }
    let order = decides
        .iter()
        .map(|(i, ..)| *i)
        .chain((0..ops.len()).filter(|i| !first[*i]));
    let mut ok = !tx.conflict.get();
    if ok {
        for i in order {
            tx.deciding.set(
                decides
                    .iter()
                    .find(|(d, ..)| *d == i)
                    .map(|(_, job, _)| *job),
            );
            if !first[i] {
                // The decisions are done: nothing read ahead is of use any more.
                tx.prefetched.borrow_mut().clear();
            }
            ok = ops[i].run(&tx);
            if !ok || tx.conflict.get() {
                break;
            }
        }
    }
    tx.settle();
    let end = if client.is_closed() {
        TxEnd::Db(StoreError("the connection to PostgreSQL was lost".into()))
    } else if tx.conflict.get() {
        TxEnd::Conflict
    } else if let Some(e) = tx.later_failed.take() {
        TxEnd::Later(e)
    } else if !ok {
        TxEnd::OperationFailed
    } else if committing {
        // Committed with the statement (its error would have failed the operations).
        return Ok(());
    } else {
        match tx.wait(client.batch_execute("COMMIT")) {
            Ok(()) => return Ok(()),
            Err(e) if retryable(&e) => TxEnd::Conflict,
            Err(e) => TxEnd::Db(StoreError(format!("commit: {}", chain(&e)))),
        }
    };
    // After a failed statement PostgreSQL ignores everything up to the end of the transaction.
    let _ = tx.wait(client.batch_execute("ROLLBACK"));
    Err(end)
}

/// Runs operations until every sender is gone, connecting (again) when needed.
pub(super) fn run(
    options: &Options,
    replica: &super::Replica,
    conflicts: &Arc<std::sync::atomic::AtomicU64>,
    rx: &std_mpsc::Receiver<Op>,
) {
    let mut conn: Option<Writer> = None;
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        run_batch(options, replica, conflicts, &mut conn, ops);
    }
}

/// What a batch's transaction ended with, when it did not commit.
enum Ended {
    /// An operation failed on its own, with the error of a statement it sent without waiting
    /// if that was how: nothing was committed.
    OperationFailed(Option<StoreError>),
    /// The database failed.
    Failed(String),
}

/// Runs `ops` in one transaction, without savepoints: most operations succeed, and a round
/// trip per savepoint costs more than running the batch again. When one fails on its own,
/// nothing is committed and each operation runs again in a transaction of its own. Answers
/// every operation.
fn run_batch(
    options: &Options,
    replica: &super::Replica,
    conflicts: &Arc<std::sync::atomic::AtomicU64>,
    conn: &mut Option<Writer>,
    mut ops: Vec<Op>,
) {
    let failed = |e: &String| tracing::error!(error = %e, "store commit failed");
    if ops.len() > 1 {
        match run_together(options, replica, conflicts, conn, &mut ops) {
            Ok(()) => {
                for op in ops {
                    op.finish(Ok(()));
                }
                return;
            }
            Err(Ended::Failed(e)) => {
                failed(&e);
                for op in ops {
                    op.finish(Err(e.clone()));
                }
                return;
            }
            Err(Ended::OperationFailed(_)) => {}
        }
    }
    let mut rest = ops.into_iter();
    while let Some(mut op) = rest.next() {
        match run_together(
            options,
            replica,
            conflicts,
            conn,
            std::slice::from_mut(&mut op),
        ) {
            // An operation that failed on its own has its error as its answer.
            Ok(()) | Err(Ended::OperationFailed(None)) => op.finish(Ok(())),
            Err(Ended::OperationFailed(Some(e))) => op.finish(Err(e.0)),
            Err(Ended::Failed(e)) => {
                failed(&e);
                op.finish(Err(e.clone()));
                for op in rest {
                    op.finish(Err(e.clone()));
                }
                return;
            }
        }
    }
}

/// Runs `ops` in one transaction, again after each conflict (at most `MAX_TRIES` times).
fn run_together(
    options: &Options,
    replica: &super::Replica,
    conflicts: &Arc<std::sync::atomic::AtomicU64>,
    conn: &mut Option<Writer>,
    ops: &mut [Op],
) -> Result<(), Ended> {
    for tries in 0..MAX_TRIES {
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            *conn = Some(Writer::open(options).map_err(|e| Ended::Failed(e.0))?);
        }
        let Some(w) = conn.as_mut() else {
            return Err(Ended::Failed("no connection".into()));
        };
        match write_batch(w, replica, ops) {
            Ok(()) => return Ok(()),
            Err(TxEnd::Conflict) => {
                conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // Another replica committed first: run again after a short, random pause so
                // the two do not meet again at once.
                let pause = 1 + (rand_u64() % (2u64 << tries.min(6)));
                std::thread::sleep(Duration::from_millis(pause));
            }
            Err(TxEnd::OperationFailed) => return Err(Ended::OperationFailed(None)),
            Err(TxEnd::Later(e)) => return Err(Ended::OperationFailed(Some(e))),
            Err(TxEnd::Db(e)) => {
                if w.client.is_closed() {
                    *conn = None;
                }
                return Err(Ended::Failed(e.0));
            }
        }
    }
    Err(Ended::Failed(format!(
        "gave up after {MAX_TRIES} conflicts with other replicas in a row"
    )))
}

/// A cheap random number for the pause after a conflict.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

// --- reads ------------------------------------------------------------------------------

impl Drop for Readers {
    fn drop(&mut self) {
        // A blocking client cannot be dropped inside an async runtime (it shuts its own one
        // down): the idle connections close on a thread of their own.
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("stackmedic-store-close".into())
                .spawn(move || drop(idle));
        }
    }
}

/// The pool of read connections.
pub(super) struct Readers {
    options: Options,
    replica: Arc<super::Replica>,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
}

impl Readers {
    pub(super) fn new(options: Options, replica: Arc<super::Replica>) -> Readers {
        Readers {
            options,
            replica,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(READERS),
        }
    }

    /// Runs `f` in a read-only snapshot on a blocking thread.
    pub(super) async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Db) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError("the readers are closed".into()))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = this.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut conn = match conn {
                Some(c) if !c.client.is_closed() => c,
                _ => Conn::open(&this.options)?,
            };
            let out = transaction(
                &mut conn,
                &this.replica,
                IsolationLevel::RepeatableRead,
                true,
                |db| f(db),
            )
            .map_err(|e| e.unwrap_or_else(|| StoreError("a read conflicted".into())));
            if !conn.client.is_closed() {
                this.idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError(format!("a read failed: {e}")))?
    }
}

/// Opens a connection for the schema and the start check.
pub(super) fn connect(options: &Options) -> Result<Client, StoreError> {
    options.connect()
}

/// Where a database path given as `sqlite:///DIR` points.
#[must_use]
pub fn sqlite_dir(url: &str) -> Option<PathBuf> {
    url.strip_prefix("sqlite://").map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        assert_eq!(
            placeholders("SELECT '?' , x FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT '?' , x FROM t WHERE a = $1 AND b = $12"
        );
    }

    #[test]
    fn a_password_in_the_url_is_refused() {
        let e = Options::new("postgres://u:secret@127.0.0.1:5432/db", None, None, "r").unwrap_err();
        assert!(e.0.contains("--storage.password-file"), "{e}");
        assert!(!e.0.contains("secret"), "{e}");
    }

    #[test]
    fn a_url_without_user_is_refused() {
        let e = Options::new("postgres://127.0.0.1:5432/db", None, None, "r").unwrap_err();
        assert!(e.0.contains("names no user"), "{e}");
    }
}
