//! A resolve muted by an Alertmanager inhibition is caught by reconciliation within one
//! interval. A real Alertmanager routes a remediable alert to a real remediator, which cannot
//! fix it (the container does not exist) and escalates; the escalation inhibits the original
//! alert, as the shipped example's inhibition does, so when the original alert resolves
//! Alertmanager never delivers the resolve. The remediator's reconciliation with
//! `GET /api/v2/alerts` finds it gone, closes the incident and resolves the page.
//!
//! With a cluster of two real Alertmanagers and a real Prometheus posting to both: one member
//! killed, every escalation is still delivered through the other; the other restarted (empty,
//! as Alertmanager keeps alerts in memory), its empty list is not taken for news while it has
//! been up less than twice Prometheus' resend delay: no incident closes, no page resolves, no
//! attempt starts again at 1. And reconciliation works with a `reconciliation` section alone,
//! without an escalation section.

use std::time::{Duration, Instant};

use serde_json::json;
use stackmedic_tests::alertmanager::Alertmanager;
use stackmedic_tests::docker::ensure_docker;
use stackmedic_tests::prometheus::Prometheus;
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
    // Alertmanager was started for this test: its list is news once it has been up for twice
    // the resend delay of Prometheus, here one that would post every second.
    let escalation = format!(
        "escalation: {{alertmanager_url: '{}', resend_interval: 1s, min_backoff: 200ms, timeout: 2s}}\n\
         reconciliation: {{alertmanager_url: '{}', prometheus_resend_delay: 1s, timeout: 2s}}\n",
        am.url(""),
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

/// Prometheus' resend delay in the cluster test: a restarted member holds no alert for up to
/// this (plus an evaluation interval).
const RESEND_DELAY_SECONDS: u64 = 4;

fn cluster_alertmanager_config(remediator_port: u16) -> String {
    format!(
        "route:\n  receiver: remediator\n  group_by: [alertname, instance]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         \x20 routes:\n  - matchers: ['alertname=\"{ESCALATION}\"']\n    receiver: oncall\n\
         receivers:\n\
         - name: remediator\n  webhook_configs:\n  - url: 'http://127.0.0.1:{remediator_port}/webhook'\n    send_resolved: true\n\
         - name: oncall\n"
    )
}

fn ghost_rules(firing: bool) -> String {
    let expr = if firing {
        "vector(1)"
    } else {
        "vector(1) unless vector(1)"
    };
    format!(
        "groups:\n- name: remediation\n  interval: 1s\n  rules:\n  - alert: GhostDown\n    expr: {expr}\n    labels: {{severity: page, remediation: container_start, instance: ghost}}\n"
    )
}

fn origin(am: &Alertmanager) -> String {
    format!("http://127.0.0.1:{}", am.port())
}

fn requests(rem: &Remediator, am: &Alertmanager, request: &str, result: &str) -> f64 {
    rem.metric(
        "stackmedic_remediator_alertmanager_requests_total",
        &[
            ("alertmanager", &origin(am)),
            ("request", request),
            ("result", result),
        ],
    )
}

#[test]
fn remediator_with_an_alertmanager_cluster_survives_a_dead_member_and_one_restarted_empty() {
    ensure_docker();
    let ghost = unique_name("sm-ghost");
    let targets = format!(
        "targets:\n- name: ghost\n  max_attempts: 2\n  backoff: 1s\n  docker: {{containers: [{ghost}]}}\n  verify: {{deadline: 1s}}\n\
         rules:\n- name: ghost-start\n  matchers: ['alertname=\"GhostDown\"']\n  action: container_start\n  target: ghost\n"
    );
    let mut rem = Remediator::start(&format!("global: {{reconcile_interval: 0s}}\n{targets}"));
    let mut cluster = Alertmanager::start_cluster(&cluster_alertmanager_config(rem.port()), 2);
    let mut dead = cluster.pop().unwrap();
    let mut live = cluster.pop().unwrap();
    let urls = format!("['{}', '{}']", live.url(""), dead.url(""));
    let config = format!(
        "global: {{reconcile_interval: 1s}}\n\
         escalation: {{alertmanager_urls: {urls}, resend_interval: 1s, min_backoff: 200ms, max_backoff: 1s, timeout: 2s}}\n\
         reconciliation: {{alertmanager_urls: {urls}, prometheus_resend_delay: {RESEND_DELAY_SECONDS}s, timeout: 2s}}\n{targets}"
    );
    assert_eq!(rem.reconfigure(&config).status, 200);

    // One member dies before anything fires.
    dead.kill();
    let prometheus_config = format!(
        "global: {{evaluation_interval: 1s}}\n\
         alerting:\n  alertmanagers:\n  - static_configs: [{{targets: ['{}', '{}']}}]\n",
        live.address(),
        dead.address()
    );
    let resend = format!("--rules.alert.resend-delay={RESEND_DELAY_SECONDS}s");
    let prom = Prometheus::start_with_args(
        &prometheus_config,
        &[("ghost.yml", &ghost_rules(true))],
        &[&resend],
    );

    // Two failed attempts, then the escalation: delivered through the member that lives.
    rem.wait_for("escalated", 1, Duration::from_secs(90));
    let paged = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        live.paged() == ["GhostDown"]
    });
    assert!(
        paged,
        "no page in the live member: {:#}\n{}",
        live.alerts().unwrap_or_default(),
        rem.process().describe()
    );
    let escalations = |result: &str| {
        rem.metric(
            "stackmedic_remediator_escalations_total",
            &[("result", result)],
        )
    };
    assert_eq!(escalations("delivered"), 1.0);
    assert_eq!(escalations("failed"), 0.0, "one member took every post");
    assert!(requests(&rem, &dead, "post", "failed") >= 1.0);
    assert!(requests(&rem, &live, "post", "ok") >= 1.0);
    let history = rem.history();
    assert!(
        history["escalations"][0]["delivered_at"].as_f64().is_some(),
        "{history:#}"
    );
    let subject = format!("container:{ghost}");
    let incident = rem.wait_incident(&subject, "escalated", Duration::from_secs(5));
    let failed = rem.actions_with("failed").len();
    assert_eq!(failed, 2, "{:#}", rem.history());

    // The live member restarts: it comes back without any alert, while the other is still
    // dead. Its empty list is no news until it has been up for twice the resend delay, and by
    // then Prometheus has sent it GhostDown again.
    let held_before = rem.metric(
        "stackmedic_remediator_reconciliations_total",
        &[("result", "held")],
    );
    let started_before = live.started_at().unwrap();
    live.restart();
    assert_ne!(live.started_at().unwrap(), started_before);
    let empty_at_first = live.alerts_named("GhostDown").is_empty();
    let watch = Duration::from_secs(3 * RESEND_DELAY_SECONDS + 4);
    let until = Instant::now() + watch;
    while Instant::now() < until {
        let open = rem.incidents();
        assert_eq!(open.len(), 1, "{:#}", rem.history());
        assert_eq!(open[0]["id"], incident["id"], "{:#}", rem.history());
        assert_eq!(open[0]["state"], "escalated", "{:#}", rem.history());
        assert_eq!(
            open[0]["attempts"],
            incident["attempts"],
            "{:#}",
            rem.history()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        rem.metric(
            "stackmedic_remediator_reconciliations_total",
            &[("result", "held")]
        ) > held_before,
        "no round was held for the restarted member:\n{}",
        rem.process().describe()
    );
    assert_eq!(
        rem.metric("stackmedic_remediator_reconciled_alerts_total", &[]),
        0.0
    );
    assert!(
        rem.metric(
            "stackmedic_remediator_reconciliations_total",
            &[("result", "ok")]
        ) >= 1.0,
        "the restarted member settled and was reconciled with:\n{}",
        rem.process().describe()
    );
    assert_eq!(rem.actions_with("failed").len(), failed, "no attempt again");
    assert!(
        rem.actions_with("escalation_resolved").is_empty(),
        "{:#}",
        rem.history()
    );
    assert_eq!(live.paged(), ["GhostDown"], "the page is posted again");
    assert!(!live.alerts_named("GhostDown").is_empty());
    eprintln!(
        "the restarted member listed no GhostDown when first asked: {empty_at_first}; \
         {} rounds held",
        rem.metric(
            "stackmedic_remediator_reconciliations_total",
            &[("result", "held")]
        ) - held_before
    );

    // The outage ends: Prometheus sends the resolve, the incident closes and the page resolves.
    std::fs::write(prom.rules_dir().join("ghost.yml"), ghost_rules(false)).unwrap();
    prom.reload().unwrap();
    let ended = wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        rem.incidents().is_empty() && live.paged().is_empty()
    });
    assert!(
        ended,
        "{:#}\n{:#}\n{}",
        rem.history(),
        live.alerts().unwrap_or_default(),
        rem.process().describe()
    );
    drop(dead);
}

/// Reconciliation has its own Alertmanager setting: with a `reconciliation` section and no
/// `escalation`, a resolve Alertmanager never delivers (its receiver has `send_resolved:
/// false`) still closes the incident.
#[test]
fn remediator_reconciles_without_an_escalation_section() {
    ensure_docker();
    let ghost = unique_name("sm-ghost");
    let mut rem = Remediator::start(&config(&ghost, ""));
    let am = Alertmanager::start(&format!(
        "route:\n  receiver: remediator\n  group_by: [alertname, instance]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n\
         - name: remediator\n  webhook_configs:\n  - url: 'http://127.0.0.1:{}/webhook'\n    send_resolved: false\n",
        rem.port()
    ));
    let reconciliation = format!(
        "reconciliation: {{alertmanager_urls: ['{}'], prometheus_resend_delay: 1s, timeout: 2s}}\n",
        am.url("")
    );
    assert_eq!(
        rem.reconfigure(&config(&ghost, &reconciliation)).status,
        200
    );
    let labels = json!({"alertname": "GhostDown", "instance": "host-2"});
    am.post_alerts(&json!([{"labels": labels}])).unwrap();
    rem.wait_incident(
        &format!("container:{ghost}"),
        "escalated",
        Duration::from_secs(60),
    );
    am.post_alerts(&json!([{"labels": labels, "endsAt": rfc3339(unix_now())}]))
        .unwrap();
    let closed = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        rem.incidents().is_empty()
    });
    assert!(closed, "{:#}\n{}", rem.history(), rem.process().describe());
    let history = rem.history();
    assert_eq!(
        history["recent_incidents"][0]["close_reason"], "reconciled",
        "{history:#}"
    );
    assert!(history["escalations"].as_array().is_none_or(Vec::is_empty));
}
