//! Crashes (`kill -9`) of a real remediator on the same database, at each stage of a job,
//! counting every result row of every job and every call of the action: a replay recorded as
//! `skipped_*`, a second result, or a second call fails.
//!
//! | stage at the kill | test | after the restart |
//! |---|---|---|
//! | during acceptance (webhooks in flight) | `remediator_kill9_during_acceptance_loses_no_acknowledged_webhook` | every 2xx'd alert runs once; the unanswered ones, sent again as Alertmanager does, run once or are duplicates |
//! | after acceptance, before the decision | `remediator_crash_after_acceptance_runs_the_action_once` | the stored job runs once; a re-send is a duplicate (a real container) |
//! | during the action, and with decided jobs waiting for the global limit | `remediator_kill9_runs_every_decided_job_once` | the started one is verified, not run again; the waiting ones run once |
//! | during verification | `remediator_kill9_during_verification_verifies_again_without_acting` | verified again, the action not run again |
//! | with an escalation undelivered | `remediator_kill9_with_an_escalation_undelivered_delivers_it_once` | delivered once to a real Alertmanager; the failed attempt is not repeated |
//!
//! The admin API is the test library's recorder, standing in for the camera/PLC app (no real
//! peer of it exists).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stackmedic_tests::admin_api::{AdminApi, Rule};
use stackmedic_tests::alertmanager::Alertmanager;
use stackmedic_tests::docker::{ensure_docker, run_busybox};
use stackmedic_tests::remediator::{alert, payload, Remediator};
use stackmedic_tests::{free_port, unique_name, wait_until};

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
         targets:\n- name: camera-app\n  blast_radius: {{enabled: false}}\n  backoff: 10m\n  max_backoff: 10m\n  http: {{base_url: '{}'}}\n\
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

/// A camera-app target on the recorder, with `extra` target keys, and a rule restarting the
/// allow-listed `streams` (`/api/streams/<stream>/restart`).
fn streams_config(api: &AdminApi, streams: &[String], global: &str, extra: &str) -> String {
    format!(
        "global: {{reconcile_interval: 0s{global}}}\n\
         targets:\n- name: camera-app\n  blast_radius: {{enabled: false}}\n  http: {{base_url: '{}'}}\n{extra}\
         rules:\n- name: stream-restart\n  matchers: ['alertname=\"HlsPlaylistStale\"']\n  action: http_sequence\n  target: camera-app\n\
         \x20 params: {{stream: {{label: stream, allowed: [{}]}}}}\n  steps: [{{path: '/api/streams/{{stream}}/restart'}}]\n",
        api.url("/"),
        streams.join(", ")
    )
}

fn stream_alert(stream: &str) -> serde_json::Value {
    payload(vec![alert(
        "firing",
        &[("alertname", "HlsPlaylistStale"), ("stream", stream)],
        "2026-11-22T10:00:00Z",
    )])
}

#[test]
fn remediator_kill9_during_acceptance_loses_no_acknowledged_webhook() {
    const STREAMS: usize = 160;
    const SENDERS: usize = 8;
    /// The kill comes once this many webhooks were answered 200, with the others in flight.
    const KILL_AFTER: usize = 24;
    let api = AdminApi::start(&[]);
    let streams: Vec<String> = (0..STREAMS).map(|i| format!("s{i:03}")).collect();
    let config = streams_config(&api, &streams, ", max_concurrent_actions: 8", "");
    let mut rem = Remediator::start(&config);

    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let answered = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|t| {
            let mine: Vec<String> = streams.iter().skip(t).step_by(SENDERS).cloned().collect();
            let url = rem.url("/webhook");
            let (acked, answered) = (acked.clone(), answered.clone());
            std::thread::spawn(move || {
                for stream in mine {
                    let body = serde_json::to_vec(&stream_alert(&stream)).unwrap();
                    let headers = [("Content-Type", "application/json")];
                    match stackmedic_tests::http::request("POST", &url, &headers, Some(&body)) {
                        Ok(r) if r.status == 200 => {
                            acked.lock().unwrap().insert(stream);
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        // The process is gone: the rest of this sender's alerts were never
                        // answered, as Alertmanager would see it.
                        _ => return,
                    }
                }
            })
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(60), Duration::from_millis(1), || {
            answered.load(Ordering::SeqCst) >= KILL_AFTER
        }),
        "the webhooks were not answered:\n{}",
        rem.process().describe()
    );
    rem.kill9();
    for s in senders {
        s.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= KILL_AFTER && acked.len() < STREAMS,
        "{}",
        acked.len()
    );

    rem.restart();
    // Alertmanager sends every alert again until it is answered, and re-sends groups: every
    // alert goes once more. An acknowledged one must be a duplicate by now.
    let mut duplicates = BTreeSet::new();
    for stream in &streams {
        let r = rem.webhook(&stream_alert(stream), None).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        if r.json().unwrap()["duplicates"] == 1 {
            duplicates.insert(stream.clone());
        }
    }
    eprintln!(
        "{} of {STREAMS} alerts answered 200 before the kill; {} duplicates after it",
        acked.len(),
        duplicates.len()
    );
    let lost: Vec<&String> = acked.difference(&duplicates).collect();
    assert!(
        lost.is_empty(),
        "answered 200 before the kill, but not stored: {lost:?}"
    );
    let done = rem.wait_for("succeeded", STREAMS, Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(2));
    // An action whose start was recorded when the process died is verified after the restart,
    // not run again (at most once), and its row says so: its request may never have left.
    let interrupted: BTreeSet<String> = done
        .iter()
        .filter(|a| {
            a["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("the process stopped during the action")
        })
        .map(|a| a["subject"].as_str().unwrap_or_default().to_owned())
        .collect();
    for stream in &streams {
        let path = format!("/api/streams/{stream}/restart");
        let calls = api.count(&path);
        let reported = interrupted.contains(&format!("camera-app?stream={stream}"));
        assert!(
            calls == 1 || (calls == 0 && reported),
            "{path} was called {calls} times (interrupted and reported: {reported})"
        );
    }
    assert_each_job_succeeded_once(&rem, STREAMS);
}

#[test]
fn remediator_kill9_during_verification_verifies_again_without_acting() {
    let api = AdminApi::start(&[]);
    let streams = vec!["cam1".to_owned()];
    let verify = format!(
        "  verify: {{url: '{}', interval: 200ms, stable_for: 4s, deadline: 30s}}\n",
        api.url("/health")
    );
    let mut rem = Remediator::start(&streams_config(&api, &streams, "", &verify));
    assert_eq!(
        rem.webhook(&stream_alert("cam1"), None).unwrap().status,
        200
    );
    // The action ran and verification has begun: the health URL is being polled.
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
            api.count("/health") >= 2
        }),
        "verification did not begin: {:?}\n{}",
        api.calls(),
        rem.process().describe()
    );
    assert_eq!(
        rem.incidents()[0]["state"],
        "verifying",
        "{:#}",
        rem.history()
    );
    rem.kill9();
    assert_eq!(api.count("/api/streams/cam1/restart"), 1);
    let polls_before = api.count("/health");

    rem.restart();
    let done = rem.wait_for("succeeded", 1, Duration::from_secs(30));
    assert!(
        done[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("the process stopped during the action"),
        "{done:#?}"
    );
    assert!(api.count("/health") > polls_before, "not verified again");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        api.count("/api/streams/cam1/restart"),
        1,
        "the action ran again: {:?}",
        api.calls()
    );
    assert_each_job_succeeded_once(&rem, 1);
}

#[test]
fn remediator_kill9_with_an_escalation_undelivered_delivers_it_once() {
    let api = AdminApi::start(&[Rule::status("/api/streams/", 500)]);
    let streams = vec!["cam1".to_owned()];
    let with_escalation = |url: &str| {
        streams_config(&api, &streams, "", "  max_attempts: 1\n").replace(
            "targets:",
            &format!(
                "escalation: {{alertmanager_url: '{url}', min_backoff: 100ms, max_backoff: 500ms, timeout: 2s}}\ntargets:"
            ),
        )
    };
    // Nothing listens here yet: every post is refused.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let mut rem = Remediator::start(&with_escalation(&nowhere));
    assert_eq!(
        rem.webhook(&stream_alert("cam1"), None).unwrap().status,
        200
    );
    rem.wait_for("escalated", 1, Duration::from_secs(30));
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            rem.history()["escalations"][0]["failures"]
                .as_i64()
                .unwrap_or(0)
                >= 2
        }),
        "{:#}",
        rem.history()
    );
    assert!(rem.history()["escalations"][0]["delivered_at"].is_null());
    rem.kill9();

    let am = Alertmanager::start("route: {receiver: oncall}\nreceivers: [{name: oncall}]\n");
    std::fs::write(
        rem.dir().join("remediator.yml"),
        with_escalation(&am.url("")),
    )
    .unwrap();
    rem.restart();
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            !am.alerts_named("StackmedicRemediationFailed").is_empty()
        }),
        "{:#}\n{}",
        rem.history(),
        rem.process().describe()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(am.alerts_named("StackmedicRemediationFailed").len(), 1);
    let history = rem.history();
    let escalations = history["escalations"].as_array().unwrap();
    assert_eq!(escalations.len(), 1, "{history:#}");
    assert!(
        escalations[0]["delivered_at"].as_f64().is_some(),
        "{history:#}"
    );
    assert_eq!(
        rem.metric(
            "stackmedic_remediator_escalations_total",
            &[("result", "delivered")]
        ),
        1.0
    );
    // The failed attempt was reported and is not repeated: its incident is escalated.
    assert_eq!(api.count("/api/streams/cam1/restart"), 1);
    assert_eq!(rem.actions_with("failed").len(), 1, "{history:#}");
}
