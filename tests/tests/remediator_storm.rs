//! Storms against a real `stackmedic-remediator`, a real Docker Engine and a real Alertmanager:
//! the same group re-sent 100 times runs one action; a second alert of the same container
//! joins its incident instead of acting again; a container that cannot be started fails its
//! attempts one after the other at their stored times (no re-send), its other alerts join the
//! incident, and exactly one escalation reaches Alertmanager's `/api/v2/alerts`.

use std::time::Duration;

use stackmedic_tests::alertmanager::Alertmanager;
use stackmedic_tests::docker::{ensure_docker, run_busybox};
use stackmedic_tests::remediator::{alert, payload, Remediator};
use stackmedic_tests::{unique_name, wait_until};

#[test]
fn remediator_storm_dedup_join_attempts_and_one_escalation() {
    ensure_docker();
    let app = run_busybox(&unique_name("sm-storm"), &[], &["sleep", "600"]);
    let ghost = unique_name("sm-ghost");
    let am = Alertmanager::start("route: {receiver: oncall}\nreceivers: [{name: oncall}]\n");
    let config = format!(
        "global: {{reconcile_interval: 0s}}\n\
         escalation: {{alertmanager_url: '{am}', min_backoff: 200ms}}\n\
         targets:\n\
         - name: app\n  docker: {{containers: [{app}], stop_timeout: 1s}}\n  verify: {{deadline: 30s, stable_for: 1s}}\n\
         - name: ghost\n  max_attempts: 3\n  backoff: 300ms\n  max_backoff: 600ms\n  docker: {{containers: [{ghost}]}}\n  verify: {{deadline: 1s}}\n\
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

    // Another alert of the same container, of the same outage (it began before the heal):
    // it joins the healed incident, recorded, without a second restart.
    let second = payload(vec![alert(
        "firing",
        &[("alertname", "AppDown"), ("instance", "b")],
        "2026-11-22T10:01:00Z",
    )]);
    assert_eq!(rem.webhook(&second, None).unwrap().status, 200);
    let joined = rem.wait_for("joined", 1, Duration::from_secs(30));
    assert_eq!(joined.len(), 1);
    assert!(
        joined[0]["detail"].as_str().unwrap().contains("healed"),
        "{joined:#?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        rem.actions_with("succeeded").len(),
        1,
        "{:#}",
        rem.history()
    );
    assert_eq!(
        rem.metric(
            "stackmedic_remediator_alerts_total",
            &[("decision", "duplicate")]
        ),
        99.0
    );
    assert_eq!(
        rem.metric(
            "stackmedic_remediator_actions_total",
            &[("kind", "container_restart"), ("result", "succeeded")]
        ),
        1.0
    );

    // Four distinct alerts on a target whose container is gone, sent once: the first opens
    // the incident, the others join it; its three attempts fail at their stored times and it
    // is escalated once.
    for i in 0..4 {
        let p = payload(vec![alert(
            "firing",
            &[("alertname", "GhostDown"), ("instance", &format!("g{i}"))],
            "2026-11-22T10:02:00Z",
        )]);
        assert_eq!(rem.webhook(&p, None).unwrap().status, 200);
    }
    rem.wait_for("failed", 3, Duration::from_secs(60));
    rem.wait_for("escalated", 1, Duration::from_secs(30));
    let delivered = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        rem.metric(
            "stackmedic_remediator_escalations_total",
            &[("result", "delivered")],
        ) == 1.0
    });
    assert!(delivered, "{}", rem.process().describe());
    let esc = am.alerts_named("StackmedicRemediationFailed");
    assert_eq!(esc.len(), 1, "{esc:#?}");
    assert_eq!(esc[0]["labels"]["severity"], "page");
    assert_eq!(esc[0]["labels"]["remediation_target"], "ghost");
    assert_eq!(rem.actions_with("failed").len(), 3);
    assert_eq!(rem.actions_with("escalated").len(), 1);
    let others = rem.actions_with("joined").len() + rem.actions_with("skipped_escalated").len();
    assert_eq!(others, 1 + 3, "{:#}", rem.history());
    assert_eq!(
        rem.metric(
            "stackmedic_remediator_webhooks_total",
            &[("result", "accepted")]
        ),
        105.0,
        "no notification was re-sent for the attempts"
    );
    assert_eq!(
        rem.metric("stackmedic_remediator_incidents", &[("state", "escalated")]),
        1.0
    );
}
