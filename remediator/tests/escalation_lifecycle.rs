//! The escalation outbox's lifecycle through the store API: an escalation is posted, re-posted
//! every interval while active, switched to resolving when its alert resolves or its circuit
//! closes (a firing post racing the resolution does not undo it), ended by a delivered
//! resolving post (audited), and a database of the previous version is migrated.

use std::collections::BTreeMap;

use serde_json::json;
use stackmedic_remediator::open_store;
use stackmedic_remediator::store::{Batch, Decision, Job, Limits, NewJob, PostResult, Store};

const NOW: f64 = 1_800_000_000.0;

fn new_job() -> NewJob {
    NewJob {
        rule: "r".into(),
        action: "container_start".into(),
        target: "t".into(),
        subject: "t/ghost".into(),
        selection: Default::default(),
        fingerprint: "f1".into(),
        starts_at: "2026-11-22T10:00:00Z".into(),
        labels: BTreeMap::from([("alertname".into(), "GhostDown".into())]),
        annotations: BTreeMap::new(),
        not_before: NOW,
        cooldown: 0.0,
    }
}

/// Stores a job and lets it find no attempts left: the circuit opens and one escalation is
/// stored.
async fn escalated(store: &Store, circuit_open_for: f64) -> Job {
    let batch = Batch {
        jobs: vec![new_job()],
        ..Batch::default()
    };
    let job = store.accept(batch, NOW).await.unwrap().queued.remove(0);
    let limits = Limits {
        cooldown: 0.0,
        max_attempts: 0,
        attempt_window: 3600.0,
        circuit_open_for,
        dry_run: false,
    };
    let payload = json!([{"labels": {"alertname": "StackmedicRemediationFailed"}}]);
    let d = store
        .decide(job.clone(), limits, Some(payload), NOW)
        .await
        .unwrap();
    assert_eq!(d, Decision::Exhausted);
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reposted_while_active_then_resolved_by_the_alerts_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    escalated(&store, 3600.0).await;

    let due = store.due_escalations(NOW).await.unwrap();
    assert_eq!(due.len(), 1);
    let id = due[0].id;
    assert!(due[0].first && !due[0].resolving);
    store
        .escalation_posted(
            id,
            false,
            PostResult::Firing {
                next_post_at: NOW + 60.0,
            },
            NOW,
        )
        .await
        .unwrap();
    assert!(store.due_escalations(NOW + 30.0).await.unwrap().is_empty());
    assert_eq!(store.next_escalation_at().await.unwrap(), Some(NOW + 60.0));
    // Due again after the interval: a re-post, not a first delivery.
    let due = store.due_escalations(NOW + 61.0).await.unwrap();
    assert_eq!(due.len(), 1);
    assert!(!due[0].first && !due[0].resolving);
    let (_, _, pending, active) = store.gauges(NOW + 61.0).await.unwrap();
    assert_eq!((pending, active), (0, 1));

    // The original alert resolves: the resolving post is due at once.
    let batch = Batch {
        resolved: vec![("f1".into(), "2026-11-22T10:00:00Z".into())],
        ..Batch::default()
    };
    let accepted = store.accept(batch, NOW + 62.0).await.unwrap();
    assert_eq!(accepted.resolved_escalations, 1);
    // The re-post taken before the resolve ends now; it must not push the resolution back.
    store
        .escalation_posted(
            id,
            false,
            PostResult::Firing {
                next_post_at: NOW + 122.0,
            },
            NOW + 62.5,
        )
        .await
        .unwrap();
    let due = store.due_escalations(NOW + 63.0).await.unwrap();
    assert_eq!(due.len(), 1, "the resolution must still be due");
    assert!(due[0].resolving);
    assert_eq!(due[0].resolve_reason.as_deref(), Some("the alert resolved"));
    // A failed resolving post is retried.
    store
        .escalation_posted(
            id,
            true,
            PostResult::Failed {
                error: "connection refused".into(),
                retry_at: NOW + 64.0,
            },
            NOW + 63.0,
        )
        .await
        .unwrap();
    assert!(store.due_escalations(NOW + 63.5).await.unwrap().is_empty());
    let (_, _, pending, active) = store.gauges(NOW + 63.5).await.unwrap();
    assert_eq!((pending, active), (1, 0));
    let due = store.due_escalations(NOW + 64.0).await.unwrap();
    assert!(due.len() == 1 && due[0].resolving);
    let ended = store
        .escalation_posted(id, true, PostResult::Resolved, NOW + 64.0)
        .await
        .unwrap();
    assert!(ended);
    assert!(store
        .due_escalations(NOW + 9999.0)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.next_escalation_at().await.unwrap(), None);

    let h = store.history(10, NOW + 65.0).await.unwrap();
    let resolved: Vec<_> = h["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["result"] == "escalation_resolved")
        .collect();
    assert_eq!(resolved.len(), 1, "{h:#}");
    assert_eq!(resolved[0]["rule"], "r");
    assert_eq!(resolved[0]["alertname"], "GhostDown");
    assert!(resolved[0]["detail"]
        .as_str()
        .unwrap()
        .contains("the alert resolved"));
    let e = &h["escalations"][0];
    assert_eq!(e["state"], "resolved", "{h:#}");
    assert_eq!(e["posts"], 3, "{h:#}");
    assert_eq!(e["tries"], 4, "{h:#}");
    assert_eq!(e["subject"], "t/ghost");
    // Resolved escalations are pruned with the history; active ones never are.
    assert!(store.prune(NOW + 100.0).await.unwrap() >= 1);
    let h = store.history(10, NOW + 101.0).await.unwrap();
    assert!(h["escalations"].as_array().unwrap().is_empty(), "{h:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_when_the_circuit_closes_and_resumed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_store(dir.path()).unwrap();
        escalated(&store, 100.0).await;
        let id = store.due_escalations(NOW).await.unwrap()[0].id;
        store
            .escalation_posted(
                id,
                false,
                PostResult::Firing {
                    next_post_at: NOW + 60.0,
                },
                NOW,
            )
            .await
            .unwrap();
    }
    // A new process on the same database: the active escalation is posted again at once.
    let store = open_store(dir.path()).unwrap();
    assert_eq!(store.resume_escalations(NOW + 10.0).await.unwrap(), 1);
    let due = store.due_escalations(NOW + 10.0).await.unwrap();
    assert!(due.len() == 1 && !due[0].resolving && !due[0].first);
    // The circuit is open for 100 s: after that the escalation resolves.
    let due = store.due_escalations(NOW + 101.0).await.unwrap();
    assert_eq!(due.len(), 1);
    assert!(due[0].resolving);
    assert_eq!(due[0].resolve_reason.as_deref(), Some("the circuit closed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_previous_version_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = rusqlite::Connection::open(dir.path().join("remediator.sqlite")).unwrap();
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
             INSERT INTO jobs VALUES (7, 1799999000, 1799999000, 'r', 'container_start', 't', 't/ghost', '{}',
               'f9', '2026-11-22T09:00:00Z', '{\"alertname\":\"GhostDown\"}', '{}', 0, 'done', 'failed');
             INSERT INTO circuits VALUES ('t/ghost', 't', 1799999000, 1800003600, 'old');
             INSERT INTO escalations (job_id, created_at, payload, tries, next_try_at, delivered_at)
               VALUES (7, 1799999000, '[{\"labels\":{\"alertname\":\"StackmedicRemediationFailed\"}}]', 1, 1799999000, 1799999001);",
        )
        .unwrap();
    }
    let store = open_store(dir.path()).unwrap();
    let h = store.history(10, NOW).await.unwrap();
    let e = &h["escalations"][0];
    assert_eq!(e["state"], "firing", "{h:#}");
    assert_eq!(e["subject"], "t/ghost", "{h:#}");
    assert_eq!(e["posts"], 1, "{h:#}");
    // Still active (its circuit is open): re-posted, and resolved by its alert's resolve.
    let due = store.due_escalations(NOW).await.unwrap();
    assert!(due.len() == 1 && !due[0].first && !due[0].resolving);
    let batch = Batch {
        resolved: vec![("f9".into(), "2026-11-22T09:00:00Z".into())],
        ..Batch::default()
    };
    assert_eq!(
        store.accept(batch, NOW).await.unwrap().resolved_escalations,
        1
    );
}
