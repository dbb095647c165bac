//! The pipeline's bookkeeping through the library API: a resolve cancels a job still waiting for
//! its rule's delay, and stored jobs found too old at start are expired, not run.

use std::time::Duration;

use stackmedic_common::config::parse_yaml;
use stackmedic_remediator::pipeline::{self, Engine};
use stackmedic_remediator::{config, metrics, open_store, webhook};
use tokio_util::sync::CancellationToken;

fn engine(dir: &std::path::Path, yaml: &str) -> (std::sync::Arc<Engine>, CancellationToken) {
    let cfg = config::from_value(&parse_yaml(yaml).unwrap()).unwrap();
    let shutdown = CancellationToken::new();
    let e = Engine::new(
        cfg,
        open_store(dir).unwrap(),
        metrics::Metrics::new().unwrap(),
        shutdown.clone(),
    )
    .unwrap();
    (e, shutdown)
}

const CONFIG: &str = "targets: [{name: t, docker: {containers: [x]}}]\n\
                      rules: [{name: r, action: container_restart, target: t, delay: 2s}]\n";

fn body(status: &str) -> Vec<u8> {
    format!(
        r#"{{"version":"4","alerts":[{{"status":"{status}","labels":{{"alertname":"A"}},"startsAt":"2026-11-22T10:00:00Z","fingerprint":"f1"}}]}}"#
    )
    .into_bytes()
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
    let h = e.store.history(10, pipeline::now()).await.unwrap();
    let results: Vec<&str> = h["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, vec!["cancelled"], "{h:#}");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_stored_jobs_are_expired_at_start() {
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
    let (kept, expired) = store.resume(60.0, pipeline::now() + 3600.0).await.unwrap();
    assert_eq!((kept.len(), expired), (0, 1));
    let h = store.history(10, pipeline::now()).await.unwrap();
    assert_eq!(h["actions"][0]["result"], "expired", "{h:#}");
    assert!(h["pending_jobs"].as_array().unwrap().is_empty());
}
