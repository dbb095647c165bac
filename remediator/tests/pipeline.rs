//! The pipeline's bookkeeping through the library API: a resolve cancels a job still waiting for
//! its rule's delay, the same occurrence firing again after its resolve is a duplicate, and a
//! stored job found too old at start is not run blindly: its incident is escalated.

use std::sync::Arc;
use std::time::Duration;

use stackmedic_common::config::parse_yaml;
use stackmedic_remediator::clock::now;
use stackmedic_remediator::incident::{Decision, Policy, Why};
use stackmedic_remediator::paging::PageSpec;
use stackmedic_remediator::pipeline::Engine;
use stackmedic_remediator::store::{Conditions, DecideInput, OverviewLimits, Store};
use stackmedic_remediator::{config, metrics, open_store, webhook};
use tokio_util::sync::CancellationToken;

fn engine(dir: &std::path::Path, yaml: &str) -> (Arc<Engine>, CancellationToken) {
    let cfg = config::from_value(&parse_yaml(yaml).unwrap()).unwrap();
    let shutdown = CancellationToken::new();
    let e = Engine::new(
        cfg,
        open_store(dir).unwrap(),
        Arc::new(metrics::Metrics::new().unwrap()),
        shutdown.clone(),
    )
    .unwrap();
    (e, shutdown)
}

const CONFIG: &str = "targets: [{name: t, http: {base_url: 'http://127.0.0.1:9'}}]\n\
                      rules: [{name: r, action: http_sequence, target: t, delay: 2s, steps: [{path: /restart}]}]\n";

fn body(status: &str) -> Vec<u8> {
    format!(
        r#"{{"version":"4","alerts":[{{"status":"{status}","labels":{{"alertname":"A"}},"startsAt":"2026-11-22T10:00:00Z","fingerprint":"f1"}}]}}"#
    )
    .into_bytes()
}

async fn results(store: &Store) -> Vec<String> {
    let limits = OverviewLimits {
        actions: 10,
        before: None,
        closed_incidents: 0,
        escalations: 0,
    };
    let o = store.overview(limits, now()).await.unwrap();
    o.actions.into_iter().map(|a| a.result).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolve_cancels_a_waiting_job() {
    let dir = tempfile::tempdir().unwrap();
    let (e, shutdown) = engine(dir.path(), CONFIG);
    let s = e
        .accept(&webhook::parse(&body("firing")).unwrap())
        .await
        .unwrap();
    assert_eq!(s.queued, 1);
    let s = e
        .accept(&webhook::parse(&body("resolved")).unwrap())
        .await
        .unwrap();
    assert_eq!(s.resolved, 1);
    // The same occurrence firing again after its resolve does not act either.
    let s = e
        .accept(&webhook::parse(&body("firing")).unwrap())
        .await
        .unwrap();
    assert_eq!((s.queued, s.duplicates), (0, 1));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(results(&e.store).await, vec!["cancelled"]);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_stored_job_is_not_run_blindly_but_escalated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (e, shutdown) = engine(dir.path(), CONFIG);
        // Shut down before the delay ends: the job stays queued in the database.
        e.accept(&webhook::parse(&body("firing")).unwrap())
            .await
            .unwrap();
        shutdown.cancel();
    }
    let store = open_store(dir.path()).unwrap();
    let resumed = store.resume().await.unwrap();
    assert_eq!(resumed.jobs.len(), 1);
    let job = resumed.jobs[0].clone();
    let d = store
        .decide(
            DecideInput {
                subject: "t".into(),
                selection: job.new.selection.clone(),
                job,
                cond: Conditions {
                    policy: Policy::default(),
                    dry_run: false,
                    dry_run_note: None,
                    configured: true,
                    resume_max_age: 60.0,
                    page: Some(PageSpec::default()),
                    guard: Default::default(),
                },
            },
            now() + 3600.0,
        )
        .await
        .unwrap();
    assert!(
        matches!(d, Decision::Escalated { why: Why::Late, .. }),
        "{d:?}"
    );
    assert_eq!(results(&store).await, vec!["expired", "escalated"]);
    let o = store
        .overview(
            OverviewLimits {
                actions: 1,
                before: None,
                closed_incidents: 0,
                escalations: 0,
            },
            now(),
        )
        .await
        .unwrap();
    assert!(o.pending_jobs.is_empty());
    assert_eq!(o.incidents.len(), 1, "the late job's incident is escalated");
    assert!(o.incidents[0].page_active);
}
