//! A resolve muted by an Alertmanager inhibition is caught by reconciliation within one
//! interval. A real Alertmanager routes a remediable alert to a real remediator, which cannot
//! fix it (the container does not exist) and escalates; the escalation inhibits the original
//! alert, as the shipped example's inhibition does, so when the original alert resolves
//! Alertmanager never delivers the resolve. The remediator's reconciliation with
//! `GET /api/v2/alerts` finds it gone, closes the incident and resolves the page.

use std::time::{Duration, Instant};

use serde_json::json;
use stackmedic_tests::alertmanager::Alertmanager;
use stackmedic_tests::docker::ensure_docker;
use stackmedic_tests::remediator::{rfc3339, unix_now, Remediator};
use stackmedic_tests::{unique_name, wait_until};

const ESCALATION: &str = "StackmedicRemediationFailed";
const INTERVAL_SECONDS: u64 = 3;

fn config(ghost: &str, escalation: &str) -> String {
    format!(
        "global: {{reconcile_interval: {INTERVAL_SECONDS}s}}\n{escalation}\
         targets:\n- name: ghost\n  max_attempts: 1\n  docker: {{containers: [{ghost}]}}\n  verify: {{deadline: 1s}}\n\
         rules:\n- name: ghost-start\n  matchers: ['alertname=\"GhostDown\"']\n  action: container_start\n  target: ghost\n"
    )
}

#[test]
fn remediator_reconciliation_catches_a_resolve_muted_by_an_inhibition() {
    ensure_docker();
    let ghost = unique_name("sm-ghost");
    let mut rem = Remediator::start(&config(&ghost, ""));
    let am = Alertmanager::start(&format!(
        "route:\n  receiver: remediator\n  group_by: [alertname, instance]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         \x20 routes:\n  - matchers: ['alertname=\"{ESCALATION}\"']\n    receiver: oncall\n\
         receivers:\n\
         - name: remediator\n  webhook_configs:\n  - url: 'http://127.0.0.1:{}/webhook'\n    send_resolved: true\n\
         - name: oncall\n\
         inhibit_rules:\n\
         - source_matchers: ['alertname=\"{ESCALATION}\"']\n  target_matchers: ['severity=\"page\"', 'remediation=~\".+\"']\n  equal: [instance]\n",
        rem.port()
    ));
    // Escalations (and reconciliation) go to the Alertmanager started after the remediator.
    let escalation = format!(
        "escalation: {{alertmanager_url: '{}', resend_interval: 1s, min_backoff: 200ms, timeout: 2s}}\n",
        am.url("")
    );
    assert_eq!(rem.reconfigure(&config(&ghost, &escalation)).status, 200);

    let labels = json!({"alertname": "GhostDown", "severity": "page", "remediation": "container_start", "instance": "host-1"});
    am.post_alerts(&json!([{"labels": labels, "annotations": {"summary": "ghost is gone"}}]))
        .unwrap();
    rem.wait_for("escalated", 1, Duration::from_secs(60));
    let page_active = || {
        am.alerts_named(ESCALATION)
            .iter()
            .any(|a| a["status"]["state"] == "active")
    };
    assert!(
        wait_until(
            Duration::from_secs(20),
            Duration::from_millis(100),
            page_active
        ),
        "no page in Alertmanager: {:#}",
        am.alerts().unwrap_or_default()
    );
    // The page inhibits the original alert.
    let suppressed = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        am.alerts_named("GhostDown").iter().any(|a| {
            a["status"]["state"] == "suppressed"
                && a["status"]["inhibitedBy"]
                    .as_array()
                    .is_some_and(|i| !i.is_empty())
        })
    });
    assert!(suppressed, "{:#}", am.alerts().unwrap_or_default());

    // A human fixed it: the original alert resolves in Alertmanager, which mutes the resolve.
    let resolved_at = Instant::now();
    am.post_alerts(&json!([{"labels": labels, "endsAt": rfc3339(unix_now())}]))
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            !page_active()
        }),
        "the page stayed active: {:#}\n{:#}\n{}",
        am.alerts().unwrap_or_default(),
        rem.history(),
        rem.process().describe()
    );
    let took = resolved_at.elapsed();
    // Within one interval, plus the resolving post (generous margin, not a timing test).
    assert!(
        took < Duration::from_secs(INTERVAL_SECONDS + 5),
        "the page was resolved {took:?} after the alert resolved"
    );
    let audited = rem.wait_for("escalation_resolved", 1, Duration::from_secs(10));
    assert!(
        audited[0]["detail"]
            .as_str()
            .unwrap()
            .contains("reconciled: the alert is no longer active in Alertmanager"),
        "{audited:#?}"
    );
    // It was reconciliation, not a delivered resolve, that closed the incident.
    let history = rem.history();
    let closed = &history["recent_incidents"][0];
    assert_eq!(closed["close_reason"], "reconciled", "{history:#}");
    assert_eq!(closed["subject"], format!("container:{ghost}"));
    assert!(rem.incidents().is_empty(), "{history:#}");
    assert_eq!(
        rem.metric("stackmedic_remediator_reconciled_alerts_total", &[]),
        1.0
    );
    assert!(
        rem.metric(
            "stackmedic_remediator_reconciliations_total",
            &[("result", "ok")]
        ) >= 1.0
    );
}
