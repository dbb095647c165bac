//! Helpers for the store-level tests: a job of a known alert, a policy, and driving an
//! incident through the store API the way the pipeline does.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use stackmedic_remediator::action::{ActionKind, Selection};
use stackmedic_remediator::incident::{Decision, Flapping, Policy};
use stackmedic_remediator::paging::PageSpec;
use stackmedic_remediator::store::{
    Batch, Conditions, DecideInput, FinishInput, Finished, Job, NewJob, Outcome, ResolvedAlert,
    Start, Store,
};

/// The engine a store test runs on: every store test runs on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// SQLite in a temporary directory.
    Sqlite,
    /// A private PostgreSQL cluster (the Debian package's server, started by the test).
    Postgres,
}

/// A store test's database: opened, and opened again as after a restart.
pub struct Ctx {
    /// The engine.
    pub engine: Engine,
    /// SQLite's directory.
    pub dir: tempfile::TempDir,
    /// PostgreSQL's cluster, while the test runs.
    pub pg: Option<stackmedic_tests::postgres::Postgres>,
}

impl Ctx {
    /// A new, empty database on `engine`.
    pub fn new(engine: Engine) -> Ctx {
        Ctx {
            engine,
            dir: tempfile::tempdir().unwrap(),
            pg: (engine == Engine::Postgres).then(stackmedic_tests::postgres::Postgres::start),
        }
    }

    /// Opens the store (again).
    pub fn open(&self) -> Store {
        self.open_as("test")
    }

    /// Opens the store (again) as replica `name`.
    pub fn open_as(&self, name: &str) -> Store {
        let replica = stackmedic_remediator::store::Replica::new(name);
        match &self.pg {
            None => {
                let path = self.dir.path().join(stackmedic_remediator::DATABASE_FILE);
                Store::open_sqlite(&path, replica).unwrap()
            }
            Some(pg) => {
                let options = stackmedic_remediator::store::pg::Options::new(
                    &pg.url(),
                    Some(&pg.password_file()),
                    None,
                    name,
                )
                .unwrap();
                Store::open_postgres(&options, replica).unwrap()
            }
        }
    }
}

/// Runs each named `async fn NAME(ctx: &Ctx)` as two tests, `NAME::sqlite` and
/// `NAME::postgres`.
#[allow(unused_macros)]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(&$crate::common::Ctx::new($crate::common::Engine::Sqlite)).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(&$crate::common::Ctx::new($crate::common::Engine::Postgres)).await;
            }
        }
    )*};
}

/// A fixed "now" for store tests (2027-01-15T08:00:00Z).
pub const NOW: f64 = 1_800_000_000.0;

/// A policy: `max_attempts`, 10 s backoff doubling to 40 s, flapping at 2 heals within 1 h.
pub fn policy(max_attempts: u32) -> Policy {
    Policy {
        max_attempts,
        backoff: Duration::from_secs(10),
        max_backoff: Duration::from_secs(40),
        flapping: Flapping {
            count: 2,
            window: Duration::from_secs(3600),
        },
        resolve_within: Duration::from_secs(30),
    }
}

/// A container_start job of alert `fingerprint` (`GhostDown`, started at `starts_at`) on
/// `t/ghost`.
pub fn new_job(fingerprint: &str, starts_at: &str) -> NewJob {
    NewJob {
        rule: "r".into(),
        action: ActionKind::ContainerStart,
        target: "t".into(),
        subject: "t/ghost".into(),
        selection: Selection {
            container: Some("ghost".into()),
            params: BTreeMap::new(),
            unit: None,
        },
        fingerprint: fingerprint.into(),
        starts_at: starts_at.into(),
        labels: BTreeMap::from([("alertname".into(), "GhostDown".into())]).into(),
        annotations: BTreeMap::new().into(),
        not_before: NOW,
    }
}

/// Accepts one job and returns it (panics when it is a duplicate).
pub async fn accept(store: &Store, new: NewJob, now: f64) -> Job {
    let mut a = store
        .accept(
            Batch {
                jobs: vec![new],
                ..Batch::default()
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(a.queued.len(), 1, "not queued: {a:?}");
    a.queued.remove(0)
}

/// Decides on a job as the pipeline does (canonical subject `t/ghost`).
pub async fn decide(store: &Store, job: &Job, policy: Policy, now: f64) -> Decision {
    store
        .decide(
            DecideInput {
                job: job.clone(),
                subject: "t/ghost".into(),
                selection: job.new.selection.clone(),
                cond: cond(policy),
            },
            now,
        )
        .await
        .unwrap()
}

/// Starts an attempt and records its outcome.
pub async fn attempt(
    store: &Store,
    job: &Job,
    outcome: Outcome,
    policy: Policy,
    now: f64,
) -> Finished {
    let s = store.start(job.clone(), cond(policy), now).await.unwrap();
    assert!(matches!(s, Start::Started { .. }), "{s:?}");
    store
        .finish(
            FinishInput {
                job: job.clone(),
                outcome,
                detail: format!("{outcome:?}"),
                duration: 1.0,
                cond: cond(policy),
            },
            now,
        )
        .await
        .unwrap()
}

/// The conditions of a job under `policy`: configured, no dry run, escalations labelled.
pub fn cond(policy: Policy) -> Conditions {
    Conditions {
        policy,
        dry_run: false,
        dry_run_note: None,
        configured: true,
        resume_max_age: 900.0,
        page: Some(PageSpec::default()),
        guard: stackmedic_remediator::store::Guard::default(),
    }
}

/// Accepts and fails one attempt of a `max_attempts: 1` policy: the incident is escalated.
pub async fn escalated(store: &Store, fingerprint: &str, starts_at: &str, now: f64) -> Job {
    let job = accept(store, new_job(fingerprint, starts_at), now).await;
    let p = policy(1);
    assert!(matches!(
        decide(store, &job, p, now).await,
        Decision::Act { attempt: 1, .. }
    ));
    attempt(store, &job, Outcome::Failed, p, now).await;
    job
}

/// A resolved alert of a webhook whose alert a rule matches.
pub fn resolved(fingerprint: &str, starts_at: &str) -> ResolvedAlert {
    ResolvedAlert {
        fingerprint: fingerprint.into(),
        starts_at: starts_at.into(),
        matched: true,
    }
}
