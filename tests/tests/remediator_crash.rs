//! Crashes (`kill -9`) of a real remediator on the same database, counting every result row of
//! every job: a replay recorded as `skipped_*`, a second result, or a second call fails.
//!
//! * Between acceptance and action: the stored job runs exactly once after the restart, and a
//!   re-sent notification is a duplicate (a real container in the real Docker Engine).
//! * With decided jobs waiting for the global limit: `max_concurrent_actions: 1`, a 10 minute
//!   backoff, an `http_sequence` step that takes 2 s, alerts for the allow-listed values a, b
//!   and c, `kill -9` after 0.5 s. The attempt counts when its action starts, so the one that
//!   had started is verified (not run again) and the two that had not run once each. The admin
//!   API is the test library's recorder, standing in for the camera/PLC app (no real peer).

use std::time::Duration;

use stackmedic_tests::admin_api::{AdminApi, Rule};
use stackmedic_tests::docker::{ensure_docker, run_busybox};
use stackmedic_tests::remediator::{alert, payload, Remediator};
use stackmedic_tests::{unique_name, wait_until};

/// Every job's results must be exactly one `succeeded`.
fn assert_each_job_succeeded_once(rem: &Remediator, jobs: usize) {
    let results = rem.job_results();
    assert_eq!(results.len(), jobs, "{results:?}\n{:#}", rem.history());
    for (job, rows) in &results {
        assert_eq!(
            rows,
            &["succeeded"],
            "job {job} has results {rows:?}\n{:#}",
            rem.history()
        );
    }
    let history = rem.history();
    for row in history["actions"].as_array().unwrap() {
        let result = row["result"].as_str().unwrap_or_default();
        assert!(
            !result.starts_with("skipped_"),
            "a replay was skipped: {row:#}"
        );
    }
}

#[test]
fn remediator_crash_after_acceptance_runs_the_action_once() {
    ensure_docker();
    let data = tempfile::Builder::new()
        .prefix("stackmedic-crash-")
        .tempdir()
        .unwrap();
    let mount = format!("{}:/data", data.path().display());
    let app = run_busybox(
        &unique_name("sm-crash"),
        &["-v", &mount],
        &["sh", "-c", "echo started >> /data/starts; exec sleep 600"],
    );
    let starts = || {
        std::fs::read_to_string(data.path().join("starts"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || starts() == 1
    ));

    let config = format!(
        "targets:\n- name: app\n  docker: {{containers: [{}], stop_timeout: 1s}}\n  verify: {{deadline: 30s, stable_for: 1s}}\n\
         rules:\n- name: app-down\n  matchers: ['alertname=\"AppDown\"']\n  action: container_restart\n  target: app\n  delay: 3s\n",
        app.name()
    );
    let mut rem = Remediator::start(&config);
    let p = payload(vec![alert(
        "firing",
        &[("alertname", "AppDown")],
        "2026-11-22T10:00:00Z",
    )]);
    let r = rem.webhook(&p, None).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json().unwrap()["queued"], 1);
    rem.kill9();
    assert_eq!(starts(), 1, "acted before the crash");

    rem.restart();
    rem.wait_for("succeeded", 1, Duration::from_secs(60));
    // Alertmanager re-sends the group after the restart: it is a duplicate, not a new job.
    let r = rem.webhook(&p, None).unwrap();
    assert_eq!(r.json().unwrap()["duplicates"], 1, "{}", r.text());
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        starts(),
        2,
        "the container must have been restarted exactly once"
    );
    assert_each_job_succeeded_once(&rem, 1);
}

#[test]
fn remediator_kill9_runs_every_decided_job_once() {
    let api = AdminApi::start(&[Rule::slow("/api/streams/", Duration::from_secs(2))]);
    let config = format!(
        "global: {{max_concurrent_actions: 1, reconcile_interval: 0s}}\n\
         targets:\n- name: camera-app\n  backoff: 10m\n  max_backoff: 10m\n  http: {{base_url: '{}'}}\n\
         rules:\n- name: stream-restart\n  matchers: ['alertname=\"HlsPlaylistStale\"']\n  action: http_sequence\n  target: camera-app\n\
         \x20 params: {{stream: {{label: stream, allowed: [a, b, c]}}}}\n  steps: [{{path: '/api/streams/{{stream}}/restart'}}]\n",
        api.url("/")
    );
    let mut rem = Remediator::start(&config);
    let alerts = ["a", "b", "c"]
        .iter()
        .map(|s| {
            alert(
                "firing",
                &[("alertname", "HlsPlaylistStale"), ("stream", s)],
                "2026-11-22T10:00:00Z",
            )
        })
        .collect();
    let r = rem.webhook(&payload(alerts), None).unwrap();
    assert_eq!(r.json().unwrap()["queued"], 3, "{}", r.text());
    std::thread::sleep(Duration::from_millis(500));
    rem.kill9();
    let before: Vec<String> = api.calls().into_iter().map(|c| c.path).collect();
    assert_eq!(
        before.len(),
        1,
        "one action had started (the global limit is 1): {before:?}"
    );

    rem.restart();
    rem.wait_for("succeeded", 3, Duration::from_secs(30));
    // Give a replay the time it would need to show.
    std::thread::sleep(Duration::from_secs(3));
    for s in ["a", "b", "c"] {
        let path = format!("/api/streams/{s}/restart");
        assert_eq!(
            api.count(&path),
            1,
            "{path} must have been called exactly once: {:?}",
            api.calls()
        );
    }
    assert_each_job_succeeded_once(&rem, 3);
    // The one that had started was verified after the restart, not run again.
    let interrupted: Vec<_> = rem
        .actions_with("succeeded")
        .into_iter()
        .filter(|a| {
            a["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("the process stopped during the action")
        })
        .collect();
    assert_eq!(interrupted.len(), 1, "{:#}", rem.history());
    let stream = before[0].split('/').nth(3).unwrap_or_default().to_owned();
    assert_eq!(
        interrupted[0]["subject"],
        format!("camera-app?stream={stream}"),
        "{interrupted:#?}"
    );
}
