//! Storms against a real `stackmedic-remediator`, a real Docker Engine and a real Alertmanager:
//! the same group re-sent 100 times runs one action; a second alert inside the cooldown is
//! skipped and recorded; N failures open the circuit and exactly one escalation reaches
//! Alertmanager's `/api/v2/alerts`.

use std::time::Duration;

use stackmedic_tests::alertmanager::Alertmanager;
use stackmedic_tests::docker::{ensure_docker, run_busybox};
use stackmedic_tests::metrics;
use stackmedic_tests::remediator::{alert, payload, Remediator};
use stackmedic_tests::{unique_name, wait_until};

#[test]
fn remediator_storm_dedup_cooldown_circuit_and_one_escalation() {
    ensure_docker();
    let app = run_busybox(&unique_name("sm-storm"), &[], &["sleep", "600"]);
    let ghost = unique_name("sm-ghost");
    let am = Alertmanager::start("route: {receiver: oncall}\nreceivers: [{name: oncall}]\n");
    let config = format!(
        "escalation: {{alertmanager_url: '{am}', min_backoff: 200ms}}\n\
         targets:\n\
         - name: app\n  cooldown: 10m\n  docker: {{containers: [{app}], stop_timeout: 1s}}\n  verify: {{deadline: 30s}}\n\
         - name: ghost\n  cooldown: 0s\n  max_attempts: 3\n  attempt_window: 1h\n  docker: {{containers: [{ghost}]}}\n  verify: {{deadline: 1s}}\n\
         rules:\n\
         - name: app-down\n  matchers: ['alertname=\"AppDown\"']\n  action: container_restart\n  target: app\n\
         - name: ghost-down\n  matchers: ['alertname=\"GhostDown\"']\n  action: container_restart\n  target: ghost\n",
        am = am.url(""),
        app = app.name(),
    );
    let mut rem = Remediator::start(&config);

    // The same group, re-sent 100 times from 4 concurrent senders, as Alertmanager does on
    // retries and repeat intervals.
    let storm = payload(vec![alert(
        "firing",
        &[("alertname", "AppDown"), ("instance", "a")],
        "2026-11-22T10:00:00Z",
    )]);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..25 {
                    let r = rem.webhook(&storm, None).unwrap();
                    assert_eq!(r.status, 200, "{}", r.text());
                }
            });
        }
    });
    rem.wait_for("succeeded", 1, Duration::from_secs(60));

    // A different alert on the same target inside the cooldown: skipped and recorded.
    let second = payload(vec![alert(
        "firing",
        &[("alertname", "AppDown"), ("instance", "b")],
        "2026-11-22T10:01:00Z",
    )]);
    assert_eq!(rem.webhook(&second, None).unwrap().status, 200);
    let skipped = rem.wait_for("skipped_cooldown", 1, Duration::from_secs(30));
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0]["detail"].as_str().unwrap().contains("cooldown"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        rem.actions_with("succeeded").len(),
        1,
        "{:#}",
        rem.history()
    );
    let samples = metrics::scrape(&rem.url("/metrics")).unwrap();
    assert_eq!(
        metrics::find(
            &samples,
            "stackmedic_remediator_alerts_total",
            &[("decision", "duplicate")]
        ),
        Some(99.0)
    );
    assert_eq!(
        metrics::find(
            &samples,
            "stackmedic_remediator_actions_total",
            &[("kind", "container_restart"), ("result", "succeeded")]
        ),
        Some(1.0)
    );

    // Four distinct alerts on a target whose container is gone: three failed attempts open
    // the circuit, the fourth is not attempted, one escalation is delivered.
    for i in 0..4 {
        let p = payload(vec![alert(
            "firing",
            &[("alertname", "GhostDown"), ("instance", &format!("g{i}"))],
            "2026-11-22T10:02:00Z",
        )]);
        assert_eq!(rem.webhook(&p, None).unwrap().status, 200);
    }
    rem.wait_for("failed", 3, Duration::from_secs(60));
    rem.wait_for("skipped_circuit_open", 1, Duration::from_secs(30));
    let delivered = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        metrics::scrape(&rem.url("/metrics")).ok().and_then(|s| {
            metrics::find(
                &s,
                "stackmedic_remediator_escalations_total",
                &[("result", "delivered")],
            )
        }) == Some(1.0)
    });
    assert!(delivered, "{}", rem.process().describe());
    let esc = am.alerts_named("StackmedicRemediationFailed");
    assert_eq!(esc.len(), 1, "{esc:#?}");
    assert_eq!(esc[0]["labels"]["severity"], "page");
    assert_eq!(esc[0]["labels"]["remediation_target"], "ghost");
    assert_eq!(rem.actions_with("failed").len(), 3);
    assert_eq!(rem.actions_with("escalated").len(), 1);
    let samples = metrics::scrape(&rem.url("/metrics")).unwrap();
    assert_eq!(
        metrics::find(&samples, "stackmedic_remediator_circuits_open", &[]),
        Some(1.0)
    );
}
