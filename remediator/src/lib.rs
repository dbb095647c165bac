//! stackmedic-remediator: Alertmanager webhooks to scoped, durable, audited recovery actions.
//!
//! Data flow: `POST /webhook` ([`web`]) → authentication and validation ([`webhook`]) →
//! matching and selection ([`pipeline`], [`matcher`]) → durable acceptance ([`store`]) → per job:
//! the canonical subject, the subject's incident ([`incident`]), lock, global limit,
//! [`action`], verification, audit → the next attempt at its stored time, or escalation to
//! Alertmanager ([`escalation`]) when attempts run out or the subject flaps. Open incidents
//! are reconciled with Alertmanager's alerts ([`reconcile`]). The binary is thin: it parses
//! flags and calls [`run`].

pub mod action;
pub mod alertmanager;
pub mod clock;
pub mod config;
pub mod contract;
pub mod credentials;
pub mod docker;
pub mod escalation;
pub mod incident;
pub mod limits;
pub mod matcher;
pub mod metrics;
pub mod paging;
pub mod pipeline;
pub mod reconcile;
pub mod replica;
pub mod store;
pub mod systemd_bus;
pub mod unmatched;
pub mod vocab;
pub mod web;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use stackmedic_common::reload::{self, ReloadMetrics};
use stackmedic_common::server::{self, Handler};
use stackmedic_common::webconfig::WebSecurity;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// Default listen address.
pub const DEFAULT_LISTEN_ADDRESS: &str = "127.0.0.1:8791";

/// File name of the database inside the storage directory.
pub const DATABASE_FILE: &str = "remediator.sqlite";

/// Everything [`run`] needs besides the listener and the configuration.
pub struct Options {
    /// The configuration file to reload from; `None` means the embedded default.
    pub config_file: Option<PathBuf>,
    /// Where the store is.
    pub storage: Storage,
    /// This replica's name (`--replica.name`).
    pub replica_name: String,
    /// How long this replica's claim on its work lasts without renewal (`--replica.lease`).
    pub lease: std::time::Duration,
    /// TLS and basic auth of the web interface.
    pub security: WebSecurity,
}

/// Where the store is: a SQLite database in a directory (one remediator), or PostgreSQL
/// (shared by replicas).
#[derive(Debug, Clone)]
pub enum Storage {
    /// The directory of the SQLite database (`--storage.path`, or `--storage.url=sqlite:///DIR`).
    Sqlite(PathBuf),
    /// PostgreSQL (`--storage.url=postgres://…`).
    Postgres(Box<store::pg::Options>),
}

impl Storage {
    /// The store `url` names (`sqlite:///DIR` or `postgres://USER@HOST:PORT/DB`), with the
    /// password from `password_file` (else `PGPASSWORD`) and the server's CA from `ca_file`.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn from_url(
        url: &str,
        password_file: Option<&Path>,
        ca_file: Option<&Path>,
        replica: &str,
    ) -> anyhow::Result<Storage> {
        if let Some(dir) = store::pg::sqlite_dir(url) {
            if dir.as_os_str().is_empty() {
                anyhow::bail!("--storage.url {url:?} names no directory (sqlite:///DIR)");
            }
            return Ok(Storage::Sqlite(dir));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Storage::Postgres(Box::new(store::pg::Options::new(
                url,
                password_file,
                ca_file,
                replica,
            )?)));
        }
        anyhow::bail!(
            "--storage.url {url:?}: expected sqlite:///DIR or postgres://USER@HOST:PORT/DATABASE"
        )
    }

    /// Opens the store as replica `replica`.
    ///
    /// # Errors
    /// When it cannot be opened.
    pub fn open(&self, replica: store::Replica) -> anyhow::Result<store::Store> {
        match self {
            Storage::Sqlite(dir) => open_store_as(dir, replica),
            Storage::Postgres(o) => store::Store::open_postgres(o, replica)
                .with_context(|| format!("cannot open the store at {}", o.url)),
        }
    }
}

/// Refuses a configuration without webhook authentication on a non-loopback listener.
///
/// # Errors
/// A message explaining the refusal.
pub fn check_exposure(config: &Config, listener: &TcpListener) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() && !config.webhook.credentials.is_set() {
        anyhow::bail!(
            "refusing to listen on {addr} without webhook authentication: configure \
             webhook.bearer_token_file or webhook.basic_auth, or listen on a loopback address"
        );
    }
    Ok(())
}

/// Opens the store in `dir`, creating the directory.
///
/// # Errors
/// When the directory or database cannot be created.
pub fn open_store(dir: &Path) -> anyhow::Result<store::Store> {
    open_store_as(dir, store::Replica::new(&store::Replica::host_name()))
}

/// Opens the store in `dir` as replica `replica`, creating the directory.
///
/// # Errors
/// When the directory or database cannot be created.
pub fn open_store_as(dir: &Path, replica: store::Replica) -> anyhow::Result<store::Store> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create storage directory {}", dir.display()))?;
    // SQLite needs to write beside the database (its log): a directory it cannot write to is
    // refused here with the operating system's reason, not later as "unable to open".
    let probe = dir.join(".stackmedic-write-test");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .with_context(|| format!("cannot write the storage directory {}", dir.display()))?;
    let path = dir.join(DATABASE_FILE);
    store::Store::open_sqlite(&path, replica)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// While the store fails, probes it with a small write (1 s, doubled to 10 s apart) until it
/// writes again; the sweeper then picks up the stored work that waited.
async fn watch_store(engine: Arc<pipeline::Engine>, shutdown: CancellationToken) {
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        if engine.store.health.failing().is_none() {
            wait = std::time::Duration::from_secs(1);
            continue;
        }
        match engine.store.probe(clock::now()).await {
            Ok(()) => {
                wait = std::time::Duration::from_secs(1);
                engine.wake_sweeper();
            }
            Err(_) => wait = (wait * 2).min(std::time::Duration::from_secs(10)),
        }
    }
}

/// Deletes history older than `global.retention` at start and every hour.
async fn prune_history(engine: Arc<pipeline::Engine>, shutdown: CancellationToken) {
    loop {
        let retention = engine.config().global.retention.as_secs_f64();
        // The leader prunes; another replica looks again in an hour.
        if engine.replica.is_leader() {
            match engine.store.prune(clock::now() - retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "old history deleted"),
                Err(e) => tracing::error!(error = %e, "cannot delete old history"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
        }
    }
}

/// Runs the remediator on `listener` until `shutdown` is cancelled: resumes stored jobs, starts
/// the escalator and the reconciler, and serves HTTP.
///
/// # Errors
/// When the listener is exposed without authentication, the store cannot be opened, or serving
/// fails for good.
pub async fn run(
    listener: TcpListener,
    config: Config,
    options: Options,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    check_exposure(&config, &listener)?;
    let store = options
        .storage
        .open(store::Replica::new(&options.replica_name))?;
    let metrics = metrics::Metrics::new()?;
    let reload_metrics = ReloadMetrics::register(&metrics.registry, "stackmedic_remediator")?;
    let engine = pipeline::Engine::new(config, store, Arc::new(metrics), shutdown.clone())?;
    engine.replica.set_lease(options.lease);
    // The lease first: on SQLite it takes over every job of the previous process, on
    // PostgreSQL those of replicas whose lease ran out; then this replica's jobs are resumed.
    replica::renew_once(&engine).await;
    tracing::info!(
        replica = %engine.store.replica.name,
        engine = ?engine.store.engine(),
        lease = %humantime::format_duration(options.lease),
        leader = engine.replica.is_leader(),
        "store opened"
    );

    let resumed = engine
        .store
        .resume()
        .await
        .context("cannot resume stored jobs")?;
    if !resumed.jobs.is_empty() {
        let interrupted = resumed
            .jobs
            .iter()
            .filter(|j| j.started_at.is_some())
            .count();
        tracing::info!(
            resumed = resumed.jobs.len(),
            interrupted,
            "stored jobs resumed (an interrupted action is verified, not run again; one found later than global.resume_max_age after it was due escalates its incident)"
        );
    }
    engine.apply_config().await;
    for job in resumed.jobs {
        engine.spawn(job);
    }
    tokio::spawn(replica::run(engine.clone(), shutdown.clone()));
    tokio::spawn(escalation::run(engine.escalator(), shutdown.clone()));
    tokio::spawn(reconcile::run(engine.reconciler(), shutdown.clone()));
    tokio::spawn(engine.clone().sweeper(shutdown.clone()));
    tokio::spawn(prune_history(engine.clone(), shutdown.clone()));
    tokio::spawn(watch_store(engine.clone(), shutdown.clone()));

    let local = listener.local_addr()?;
    let reload_fn: reload::ReloadFn = {
        let engine = engine.clone();
        let path = options.config_file.clone();
        Arc::new(move || {
            let engine = engine.clone();
            let path = path.clone();
            Box::pin(async move {
                let cfg = config::load(path.as_deref()).map_err(|e| e.to_string())?;
                if !local.ip().is_loopback() && !cfg.webhook.credentials.is_set() {
                    return Err(format!(
                        "the new configuration has no webhook authentication and {local} is not a loopback address"
                    ));
                }
                if cfg.rules.is_empty() {
                    tracing::warn!("{}", config::NO_RULES);
                }
                engine.set_config(cfg);
                engine.apply_config().await;
                Ok(())
            })
        })
    };
    let reload_handle = reload::spawn(reload_fn, reload_metrics, shutdown.clone());
    let handler: Handler = {
        let engine = engine.clone();
        let web_auth = options.security.auth.clone();
        Arc::new(move |req| {
            let engine = engine.clone();
            let reload_handle = reload_handle.clone();
            let web_auth = web_auth.clone();
            Box::pin(async move { web::handle(engine, reload_handle, web_auth, req).await })
        })
    };
    let mut security = options.security;
    security.own_auth = Some(web::own_auth(engine.clone()));
    tracing::info!(address = %local, "stackmedic-remediator listening");
    let served = server::serve(listener, security, handler, shutdown).await;
    replica::leave(&engine).await;
    served?;
    Ok(())
}
