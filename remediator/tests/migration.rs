//! Databases of the previous schema are migrated when opened.
//!
//! `fixtures/store-4ab7122.sqlite` was made by the release before the incident model (commit
//! 4ab7122) with `fixtures/store-4ab7122.yml`: one container restarted and verified (its alert
//! then resolved), one container that does not exist started and failed with no attempts left,
//! so its circuit opened for ten years and its escalation was delivered to a real
//! Alertmanager, one job queued behind a ten-year rule delay, and one denial. The remediator was
//! stopped with SIGTERM and its write-ahead log checkpointed.

mod common;

use std::path::Path;

use common::NOW;
use stackmedic_remediator::open_store;
use stackmedic_remediator::store::{Batch, OverviewLimits};
use stackmedic_remediator::vocab::{CloseReason, EscalationState, IncidentState};

fn fixture(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-4ab7122.sqlite");
    std::fs::copy(&src, dir.join(stackmedic_remediator::DATABASE_FILE))
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", src.display()));
}

fn limits() -> OverviewLimits {
    OverviewLimits {
        actions: 100,
        before: None,
        closed_incidents: 10,
        escalations: 10,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_previous_release_opens_and_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let store = open_store(dir.path()).unwrap();

    let o = store.overview(limits(), NOW).await.unwrap();
    // The audit history is kept as it was written, newest first.
    let rows: Vec<(&str, &str)> = o
        .actions
        .iter()
        .map(|a| (a.result.as_str(), a.alertname.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("denied", "ByLabel"),
            ("escalated", "GhostDown"),
            ("failed", "GhostDown"),
            ("succeeded", "AppDown"),
        ],
        "{o:#?}"
    );
    // The open circuit with its delivered escalation is an escalated incident whose page stays
    // active until its alert resolves.
    assert_eq!(o.incidents.len(), 1, "{o:#?}");
    let i = &o.incidents[0];
    assert_eq!(i.subject, "ghost");
    assert_eq!(i.state, IncidentState::Escalated);
    assert_eq!(
        (i.rule.as_str(), i.action.as_str(), i.alertname.as_str()),
        ("ghost-down", "container_start", "GhostDown")
    );
    assert_eq!(i.attempts, 1);
    assert!(i.page_active, "{i:#?}");
    assert!(
        i.detail.contains("escalated by the previous release"),
        "{}",
        i.detail
    );
    assert_eq!(i.alerts.len(), 1);
    assert_eq!(i.alerts[0].alertname, "GhostDown");
    assert!(i.alerts[0].resolved_at.is_none());
    assert_eq!(o.escalations.len(), 1);
    let e = &o.escalations[0];
    assert_eq!(
        (e.state, e.incident_id, e.posts),
        (EscalationState::Firing, Some(i.id), 1)
    );
    assert!(e.delivered_at.is_some());
    // The queued job is still queued.
    assert_eq!(o.pending_jobs.len(), 1, "{o:#?}");
    assert_eq!(o.pending_jobs[0].rule, "later-down");

    // Occurrences are kept: re-sends of the three alerts are duplicates (the restarted one had
    // resolved, the others still fire).
    let mut resent = Vec::new();
    for (rule, fp, name) in [
        ("app-down", "a1a1a1a1a1a1a1a1", "AppDown"),
        ("ghost-down", "b2b2b2b2b2b2b2b2", "GhostDown"),
        ("later-down", "c3c3c3c3c3c3c3c3", "LaterDown"),
    ] {
        let mut job = common::new_job(fp, "2026-11-28T09:00:00Z");
        job.rule = rule.into();
        std::sync::Arc::make_mut(&mut job.labels).insert("alertname".into(), name.into());
        resent.push(job);
    }
    let again = store
        .accept(
            Batch {
                jobs: resent,
                ..Batch::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!((again.queued.len(), again.duplicates), (0, 3));

    // Resumed at start: the queued job is due in ten years, so it is kept.
    let resumed = store.resume().await.unwrap();
    assert_eq!(resumed.jobs.len(), 1);
    assert!(resumed.jobs[0].started_at.is_none());

    // The ghost's alert resolves: its incident closes and its escalation resolves.
    let r = store
        .accept(
            Batch {
                resolved: vec![common::resolved("b2b2b2b2b2b2b2b2", "2026-11-28T09:00:00Z")],
                ..Batch::default()
            },
            NOW + 1.0,
        )
        .await
        .unwrap()
        .resolution;
    assert_eq!((r.closed.len(), r.escalations_resolving), (1, 1));
    assert_eq!(r.closed[0].reason, CloseReason::AlertResolved);
    let due = store.due_escalations(NOW + 1.0).await.unwrap();
    assert!(due.len() == 1 && due[0].resolving && !due[0].first);
    drop(store);

    // The schema is the new one: the current version, the circuit tables gone.
    let c =
        rusqlite::Connection::open(dir.path().join(stackmedic_remediator::DATABASE_FILE)).unwrap();
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, stackmedic_remediator::store::schema::VERSION);
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        tables,
        [
            "audit",
            "early_resolves",
            "escalations",
            "health",
            "incidents",
            "jobs",
            "leader",
            "occurrences",
            "pause",
            "replicas",
            "subjects"
        ]
    );
    // Opening it again changes nothing.
    let store = open_store(dir.path()).unwrap();
    assert_eq!(
        store.overview(limits(), NOW).await.unwrap().actions.len(),
        5
    );
}

/// A database older still, from before the escalation lifecycle: its escalation rows lack the
/// lifecycle columns, and are completed from their jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_the_escalation_lifecycle_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = rusqlite::Connection::open(dir.path().join(stackmedic_remediator::DATABASE_FILE))
            .unwrap();
        c.execute_batch(
            "CREATE TABLE jobs (id INTEGER PRIMARY KEY, accepted_at REAL NOT NULL, not_before REAL NOT NULL,
               rule TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, subject TEXT NOT NULL,
               selection TEXT NOT NULL, fingerprint TEXT NOT NULL, starts_at TEXT NOT NULL,
               labels TEXT NOT NULL, annotations TEXT NOT NULL, cooldown REAL NOT NULL,
               state TEXT NOT NULL, result TEXT);
             CREATE TABLE circuits (subject TEXT PRIMARY KEY, target TEXT NOT NULL, opened_at REAL NOT NULL,
               open_until REAL NOT NULL, reason TEXT NOT NULL);
             CREATE TABLE escalations (id INTEGER PRIMARY KEY, job_id INTEGER, created_at REAL NOT NULL,
               payload TEXT NOT NULL, tries INTEGER NOT NULL DEFAULT 0, next_try_at REAL NOT NULL,
               delivered_at REAL, last_error TEXT);
             CREATE TABLE audit (id INTEGER PRIMARY KEY, at REAL NOT NULL, job_id INTEGER, rule TEXT NOT NULL,
               action TEXT NOT NULL, target TEXT NOT NULL, subject TEXT NOT NULL, alertname TEXT NOT NULL,
               fingerprint TEXT NOT NULL, result TEXT NOT NULL, detail TEXT NOT NULL, duration_seconds REAL,
               accepted_at REAL, started_at REAL);
             INSERT INTO jobs VALUES (7, 1799999000, 1799999000, 'r', 'container_start', 't', 't/ghost', '{}',
               'f9', '2026-11-22T09:00:00Z', '{\"alertname\":\"GhostDown\"}', '{}', 0, 'done', 'failed');
             INSERT INTO jobs VALUES (8, 1799999000, 1799999000, 'r', 'container_start', 't', 't/ghost', '{}',
               'f8', '2026-11-22T09:00:00Z', '{\"alertname\":\"GhostDown\"}', '{}', 0, 'running', NULL);
             INSERT INTO circuits VALUES ('t/ghost', 't', 1799999000, 1800003600, 'old');
             INSERT INTO escalations (job_id, created_at, payload, tries, next_try_at, delivered_at)
               VALUES (7, 1799999000, '[{\"labels\":{\"alertname\":\"StackmedicRemediationFailed\",\"remediation_target\":\"t\"}}]', 1, 1799999000, 1799999001);",
        )
        .unwrap();
    }
    let store = open_store(dir.path()).unwrap();
    let o = store.overview(limits(), NOW).await.unwrap();
    let e = &o.escalations[0];
    assert_eq!(
        (e.state, e.subject.as_str(), e.posts),
        (EscalationState::Firing, "t/ghost", 1),
        "{o:#?}"
    );
    assert_eq!(o.incidents.len(), 1, "{o:#?}");
    assert_eq!(o.incidents[0].state, IncidentState::Escalated);
    assert_eq!(e.incident_id, Some(o.incidents[0].id));
    // A job the old release had decided (running) runs once after the migration.
    let resumed = store.resume().await.unwrap();
    assert_eq!(
        resumed
            .jobs
            .iter()
            .map(|j| (j.id, j.started_at))
            .collect::<Vec<_>>(),
        vec![(8, None)]
    );
}
