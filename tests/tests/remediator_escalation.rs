//! Escalations survive an unreachable Alertmanager and a crash: the escalation is stored,
//! delivery fails and is retried, the remediator is killed with SIGKILL, and after a restart
//! pointed at a real Alertmanager the stored escalation is delivered — once.

use std::time::Duration;

use stackmedic_tests::alertmanager::Alertmanager;
use stackmedic_tests::docker::ensure_docker;
use stackmedic_tests::metrics;
use stackmedic_tests::remediator::{alert, payload, Remediator};
use stackmedic_tests::{free_port, unique_name, wait_until};

/// The alert is sent to the remediator directly, not through Alertmanager, so reconciliation
/// (which would resolve it as unknown to Alertmanager) is off.
fn config(alertmanager: &str, ghost: &str) -> String {
    format!(
        "global: {{reconcile_interval: 0s}}\n\
         escalation: {{alertmanager_url: '{alertmanager}', min_backoff: 100ms, max_backoff: 1s, timeout: 2s}}\n\
         targets:\n- name: ghost\n  max_attempts: 1\n  docker: {{containers: [{ghost}]}}\n  verify: {{deadline: 1s}}\n\
         rules:\n- name: ghost-down\n  matchers: ['alertname=\"GhostDown\"']\n  action: container_start\n  target: ghost\n"
    )
}

#[test]
fn remediator_escalation_is_retried_and_survives_a_crash() {
    ensure_docker();
    let ghost = unique_name("sm-ghost");
    // Nothing listens on this port: deliveries fail.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let mut rem = Remediator::start(&config(&nowhere, &ghost));
    let p = payload(vec![alert(
        "firing",
        &[("alertname", "GhostDown")],
        "2026-11-22T10:00:00Z",
    )]);
    assert_eq!(rem.webhook(&p, None).unwrap().status, 200);
    rem.wait_for("escalated", 1, Duration::from_secs(30));
    let retried = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        metrics::scrape(&rem.url("/metrics"))
            .ok()
            .and_then(|s| {
                metrics::find(
                    &s,
                    "stackmedic_remediator_escalations_total",
                    &[("result", "failed")],
                )
            })
            .is_some_and(|n| n >= 2.0)
    });
    assert!(
        retried,
        "delivery was not retried:\n{}",
        rem.process().describe()
    );
    rem.kill9();

    let am = Alertmanager::start("route: {receiver: oncall}\nreceivers: [{name: oncall}]\n");
    std::fs::write(
        rem.dir().join("remediator.yml"),
        config(&am.url(""), &ghost),
    )
    .unwrap();
    rem.restart();
    let delivered = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        !am.alerts_named("StackmedicRemediationFailed").is_empty()
    });
    assert!(delivered, "{}", rem.process().describe());
    let history = rem.history();
    let esc = history["escalations"].as_array().unwrap();
    assert_eq!(esc.len(), 1, "{history:#}");
    assert!(esc[0]["delivered_at"].as_f64().is_some(), "{history:#}");
    assert!(esc[0]["tries"].as_i64().unwrap() >= 3, "{history:#}");
    // The failed attempt is not repeated after the restart: its incident is escalated.
    assert_eq!(rem.actions_with("failed").len(), 1);
}
