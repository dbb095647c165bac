//! More accepted jobs than fit in memory: the surplus waits in the database and the sweeper
//! runs it as room frees, so every job is decided exactly once.

use std::time::Duration;

use stackmedic_common::config::parse_yaml;
use stackmedic_remediator::pipeline::{self, Engine, MAX_JOBS_IN_MEMORY};
use stackmedic_remediator::webhook;
use stackmedic_remediator::{config, metrics, open_store};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_beyond_memory_bound_are_swept_from_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config::from_value(
        &parse_yaml(
            "global: {dry_run: true}\n\
             targets: [{name: t, cooldown: 0s, max_attempts: 1000000, docker: {containers: [x]}}]\n\
             rules: [{name: r, action: container_restart, target: t}]\n",
        )
        .unwrap(),
    )
    .unwrap();
    let store = open_store(dir.path()).unwrap();
    let shutdown = CancellationToken::new();
    let engine = Engine::new(
        cfg,
        store,
        metrics::Metrics::new().unwrap(),
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
        let (queued, _, _, _) = engine.store.gauges(pipeline::now()).await.unwrap();
        if queued == 0 {
            let h = engine.store.history(1, pipeline::now()).await.unwrap();
            assert!(h["pending_jobs"].as_array().unwrap().is_empty());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{queued} jobs still queued"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dry = engine
        .metrics
        .actions
        .with_label_values(&["container_restart", "dry_run"])
        .get();
    assert_eq!(dry as usize, total);
    shutdown.cancel();
}
