//! Crash between acceptance and action: the remediator is killed with SIGKILL after answering
//! 2xx and before acting (the rule waits 3 s before acting), then started again on the same
//! database; the stored job runs exactly once, and a re-sent notification is a duplicate.

use std::time::Duration;

use stackmedic_tests::docker::{ensure_docker, run_busybox};
use stackmedic_tests::remediator::{alert, payload, Remediator};
use stackmedic_tests::unique_name;

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
    assert!(stackmedic_tests::wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || starts() == 1
    ));

    let config = format!(
        "targets:\n- name: app\n  docker: {{containers: [{}], stop_timeout: 1s}}\n  verify: {{deadline: 30s}}\n\
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
    assert_eq!(
        rem.actions_with("succeeded").len(),
        1,
        "{:#}",
        rem.history()
    );
}
