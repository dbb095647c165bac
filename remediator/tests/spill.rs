//! More accepted jobs than fit in memory: the surplus waits in the database and the sweeper
//! runs it as room frees, so every job is decided exactly once.

use std::sync::Arc;
use std::time::Duration;

use stackmedic_common::config::parse_yaml;
use stackmedic_remediator::clock::now;
use stackmedic_remediator::pipeline::{Engine, MAX_JOBS_IN_MEMORY};
use stackmedic_remediator::store::OverviewLimits;
use stackmedic_remediator::webhook;
use stackmedic_remediator::{action::ActionKind, config, metrics, open_store, vocab::Event};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_beyond_memory_bound_are_swept_from_the_database() {
    let dir = tempfile::tempdir().unwrap();
    // An admin API that is never called: every job is a dry run.
    let cfg = config::from_value(
        &parse_yaml(
            "global: {dry_run: true}\n\
             targets: [{name: t, http: {base_url: 'http://127.0.0.1:9'}}]\n\
             rules: [{name: r, action: http_sequence, target: t, steps: [{path: /restart}]}]\n",
        )
        .unwrap(),
    )
    .unwrap();
    let store = open_store(dir.path()).unwrap();
    let shutdown = CancellationToken::new();
    let engine = Engine::new(
        cfg,
        store,
        Arc::new(metrics::Metrics::new().unwrap()),
        shutdown.clone(),
    )
    .unwrap();
    tokio::spawn(engine.clone().sweeper(shutdown.clone()));
    let total = MAX_JOBS_IN_MEMORY * 2 + 100;
    let mut alerts = Vec::new();
    for i in 0..total {
        alerts.push(format!(
            r#"{{"status":"firing","labels":{{"alertname":"A","i":"{i}"}},"startsAt":"2026-11-22T10:00:00Z","fingerprint":"f{i}"}}"#
        ));
    }
    let body = format!(r#"{{"version":"4","alerts":[{}]}}"#, alerts.join(","));
    let payload = webhook::parse(body.as_bytes()).unwrap();
    let summary = engine.accept(&payload).await.unwrap();
    assert_eq!(summary.queued, total);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let due = engine.store.gauges(now()).await.unwrap().due_jobs;
        if due == 0 {
            let limits = OverviewLimits {
                actions: 1,
                before: None,
                closed_incidents: 0,
                escalations: 0,
            };
            let o = engine.store.overview(limits, now()).await.unwrap();
            assert!(o.pending_jobs.is_empty());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{due} jobs still queued"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each job's task counts its result right after its decision is stored: wait for the last.
    let dry = || {
        engine
            .metrics
            .actions
            .with_label_values(&[ActionKind::HttpSequence.as_str(), Event::DryRun.as_str()])
            .get() as usize
    };
    while dry() < total && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dry(), total);
    shutdown.cancel();
}
