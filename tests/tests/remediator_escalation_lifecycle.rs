//! The escalation's lifecycle in a real Alertmanager (Debian `prometheus-alertmanager`): the
//! remediator re-posts `StackmedicRemediationFailed` every `resend_interval` while its incident
//! is escalated, so it stays firing past the `endsAt` of any single post; it resolves it (a post
//! with `endsAt` = now) when Alertmanager delivers the original alert's resolve, or when
//! reconciliation no longer finds the original alert in Alertmanager; and after a `kill -9` and
//! a restart on the same database it resumes re-posting the same alert (same labels, same
//! start).

use std::time::Duration;

use serde_json::{json, Value};
use stackmedic_tests::alertmanager::Alertmanager;
use stackmedic_tests::docker::ensure_docker;
use stackmedic_tests::metrics;
use stackmedic_tests::remediator::{alert, payload, rfc3339, unix_now, unix_seconds, Remediator};
use stackmedic_tests::{unique_name, wait_until};

const ESCALATION: &str = "StackmedicRemediationFailed";

/// Escalations Alertmanager holds as active (resolved alerts are not listed).
fn escalations(am: &Alertmanager) -> Vec<Value> {
    am.alerts()
        .map(|a| {
            a.as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|x| x["labels"]["alertname"] == ESCALATION)
                .collect()
        })
        .unwrap_or_default()
}

fn time(v: &Value) -> f64 {
    v.as_str()
        .and_then(unix_seconds)
        .unwrap_or_else(|| panic!("not a time: {v}"))
}

fn counter(rem: &Remediator, result: &str) -> f64 {
    metrics::scrape(&rem.url("/metrics"))
        .ok()
        .and_then(|s| {
            metrics::find(
                &s,
                "stackmedic_remediator_escalations_total",
                &[("result", result)],
            )
        })
        .unwrap_or(0.0)
}

fn gauge(rem: &Remediator, name: &str) -> Option<f64> {
    metrics::scrape(&rem.url("/metrics"))
        .ok()
        .and_then(|s| metrics::find(&s, name, &[]))
}

/// Waits until exactly one escalation is active in Alertmanager and returns it.
fn wait_escalation(am: &Alertmanager, rem: &mut Remediator, within: Duration) -> Value {
    let mut found = None;
    let ok = wait_until(within, Duration::from_millis(100), || {
        let e = escalations(am);
        found = e.first().cloned();
        e.len() == 1
    });
    assert!(
        ok,
        "no single escalation in Alertmanager: {:#}\nhistory {:#}\n{}",
        am.alerts().unwrap_or_default(),
        rem.history(),
        rem.process().describe()
    );
    found.unwrap()
}

/// A target whose container does not exist; `reconcile_interval` `0s` turns reconciliation off.
fn ghost_config(ghost: &str, reconcile_interval: &str) -> String {
    format!(
        "global: {{reconcile_interval: {reconcile_interval}}}\n\
         targets:\n- name: ghost\n  max_attempts: 1\n  timeout: 10s\n  docker: {{containers: [{ghost}]}}\n  verify: {{deadline: 1s}}\n\
         rules:\n- name: ghost-down\n  matchers: ['alertname=\"GhostDown\"']\n  action: container_start\n  target: ghost\n"
    )
}

fn escalation_section(am: &Alertmanager) -> String {
    format!(
        "escalation:\n  alertmanager_url: {}\n  resend_interval: 1s\n  min_backoff: 200ms\n  max_backoff: 1s\n  timeout: 2s\n",
        am.url("")
    )
}

#[test]
fn remediator_escalation_stays_active_while_reposted_and_resolves_with_its_alert() {
    ensure_docker();
    let ghost = unique_name("sm-ghost");
    let mut rem = Remediator::start(&ghost_config(&ghost, "1m"));
    let am = Alertmanager::start(&format!(
        "route:\n  receiver: remediator\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         \x20 routes:\n  - matchers: ['alertname=\"{ESCALATION}\"']\n    receiver: oncall\n\
         receivers:\n\
         - name: remediator\n  webhook_configs:\n  - url: 'http://127.0.0.1:{}/webhook'\n    send_resolved: true\n\
         - name: oncall\n",
        rem.port()
    ));
    // Escalations go to the Alertmanager started after the remediator: reload with its URL.
    let config = format!("{}{}", ghost_config(&ghost, "1m"), escalation_section(&am));
    std::fs::write(rem.dir().join("remediator.yml"), config).unwrap();
    let reload = stackmedic_tests::http::request("POST", &rem.url("/-/reload"), &[], None).unwrap();
    assert_eq!(reload.status, 200, "reload: {}", reload.text());

    let original = json!({
        "labels": {"alertname": "GhostDown", "severity": "critical", "instance": "ghost"},
        "annotations": {"summary": "ghost is gone"},
    });
    am.post_alerts(&json!([original])).unwrap();
    rem.wait_for("failed", 1, Duration::from_secs(60));
    let first = wait_escalation(&am, &mut rem, Duration::from_secs(30));
    assert_eq!(first["labels"]["original_alertname"], "GhostDown");
    assert_eq!(first["labels"]["instance"], "ghost");
    assert_eq!(first["status"]["state"], "active");
    let first_end = time(&first["endsAt"]);
    // endsAt = post + 4 × resend_interval: a remediator that stops posting lets it resolve.
    assert!(
        first_end - unix_now() <= 5.0,
        "endsAt too far ahead: {first:#}"
    );

    // Past the first post's endsAt the escalation is still active: it was re-posted, as the
    // same alert (same fingerprint, labels and start).
    std::thread::sleep(Duration::from_secs_f64(
        (first_end - unix_now() + 2.0).max(0.0),
    ));
    let later = wait_escalation(&am, &mut rem, Duration::from_secs(1));
    assert_eq!(later["status"]["state"], "active", "{later:#}");
    assert_eq!(later["fingerprint"], first["fingerprint"]);
    assert_eq!(later["labels"], first["labels"]);
    assert_eq!(time(&later["startsAt"]), time(&first["startsAt"]));
    assert!(time(&later["endsAt"]) > first_end + 1.0, "{later:#}");
    assert!(
        counter(&rem, "resent") >= 3.0,
        "{}",
        rem.process().describe()
    );
    assert_eq!(counter(&rem, "delivered"), 1.0);
    assert_eq!(
        gauge(&rem, "stackmedic_remediator_escalations_active"),
        Some(1.0)
    );

    // The original alert resolves in Alertmanager, which tells the remediator (send_resolved);
    // the remediator resolves its escalation with a post whose endsAt is now. It disappears
    // before the endsAt of its last re-post, so it was resolved, not left to expire.
    let mut resolved = original.clone();
    resolved["endsAt"] = json!(rfc3339(unix_now()));
    am.post_alerts(&json!([resolved])).unwrap();
    let mut last_end = time(&later["endsAt"]);
    let mut gone_at = None;
    let gone = wait_until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || match escalations(&am).first() {
            Some(e) => {
                last_end = time(&e["endsAt"]);
                false
            }
            None => {
                gone_at = Some(unix_now());
                true
            }
        },
    );
    assert!(
        gone,
        "the escalation stayed active after its alert resolved: {:#}\nhistory {:#}\n{}",
        am.alerts().unwrap_or_default(),
        rem.history(),
        rem.process().describe()
    );
    let gone_at = gone_at.unwrap();
    assert!(
        gone_at < last_end - 1.0,
        "the escalation expired (gone at {gone_at}, last endsAt {last_end}) instead of being resolved"
    );
    let audited = rem.wait_for("escalation_resolved", 1, Duration::from_secs(10));
    assert!(
        audited[0]["detail"]
            .as_str()
            .unwrap()
            .contains("the alert resolved"),
        "{audited:#?}"
    );
    assert_eq!(audited[0]["alertname"], "GhostDown");
    assert_eq!(counter(&rem, "resolved"), 1.0);
    // No more posts: it stays resolved.
    let resent = counter(&rem, "resent");
    std::thread::sleep(Duration::from_secs(3));
    assert!(escalations(&am).is_empty(), "{:#}", am.alerts().unwrap());
    assert_eq!(counter(&rem, "resent"), resent);
    let history = rem.history();
    let esc = history["escalations"].as_array().unwrap();
    assert_eq!(
        esc.len(),
        1,
        "one escalation per escalated incident: {history:#}"
    );
    assert_eq!(esc[0]["state"], "resolved", "{history:#}");
    assert_eq!(
        gauge(&rem, "stackmedic_remediator_escalations_active"),
        Some(0.0)
    );
    assert_eq!(
        gauge(&rem, "stackmedic_remediator_escalations_pending"),
        Some(0.0)
    );
}

#[test]
fn remediator_escalation_reposting_resumes_after_kill9_and_ends_by_reconciliation() {
    ensure_docker();
    let ghost = unique_name("sm-ghost");
    let am = Alertmanager::start("route: {receiver: oncall}\nreceivers: [{name: oncall}]\n");
    // The alert is sent to the remediator directly, so Alertmanager does not hold it:
    // reconciliation is off until the end of the test.
    let config = format!("{}{}", ghost_config(&ghost, "0s"), escalation_section(&am));
    let mut rem = Remediator::start(&config);
    let p = payload(vec![alert(
        "firing",
        &[("alertname", "GhostDown"), ("instance", "ghost")],
        "2026-11-22T10:00:00Z",
    )]);
    assert_eq!(rem.webhook(&p, None).unwrap().status, 200);
    let first = wait_escalation(&am, &mut rem, Duration::from_secs(30));

    rem.kill9();
    // Nobody re-posts: Alertmanager lets the page resolve on its own within 4 × resend_interval.
    let expired = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        escalations(&am).is_empty()
    });
    assert!(
        expired,
        "the escalation did not expire: {:#}",
        am.alerts().unwrap()
    );

    rem.restart();
    // The stored, still active escalation is posted again: the same alert.
    let again = wait_escalation(&am, &mut rem, Duration::from_secs(10));
    assert_eq!(again["labels"], first["labels"]);
    assert_eq!(again["fingerprint"], first["fingerprint"]);
    assert_eq!(time(&again["startsAt"]), time(&first["startsAt"]));
    let end = time(&again["endsAt"]);
    // And again: still active past that post's endsAt.
    std::thread::sleep(Duration::from_secs_f64((end - unix_now() + 2.0).max(0.0)));
    let later = wait_escalation(&am, &mut rem, Duration::from_secs(1));
    assert!(time(&later["endsAt"]) > end + 1.0, "{later:#}");
    // Counters start at zero in the new process: every post of it was a re-post.
    assert!(
        counter(&rem, "resent") >= 3.0,
        "{}",
        rem.process().describe()
    );
    assert_eq!(counter(&rem, "delivered"), 0.0);
    let history = rem.history();
    let esc = history["escalations"].as_array().unwrap();
    assert_eq!(esc.len(), 1, "{history:#}");
    assert_eq!(esc[0]["state"], "firing", "{history:#}");
    assert_eq!(rem.actions_with("escalated").len(), 1);
    // The failed attempt is not repeated after the restart: its incident is escalated.
    assert_eq!(rem.actions_with("failed").len(), 1);
    rem.wait_incident(
        &format!("container:{ghost}"),
        "escalated",
        Duration::from_secs(1),
    );

    // Reconciliation is turned on: Alertmanager does not hold GhostDown, so the incident ends
    // within one interval and its escalation is resolved in Alertmanager. No Prometheus sends
    // to this Alertmanager: a resend delay of 1s makes it settled after 2s of uptime.
    let on = format!(
        "{}{}reconciliation: {{alertmanager_url: '{}', prometheus_resend_delay: 1s}}\n",
        ghost_config(&ghost, "1s"),
        escalation_section(&am),
        am.url("")
    );
    assert_eq!(rem.reconfigure(&on).status, 200);
    let audited = rem.wait_for("escalation_resolved", 1, Duration::from_secs(15));
    assert!(
        audited[0]["detail"]
            .as_str()
            .unwrap()
            .contains("reconciled: the alert is no longer active in Alertmanager"),
        "{audited:#?}"
    );
    assert!(
        escalations(&am).is_empty(),
        "{:#}",
        am.alerts().unwrap_or_default()
    );
    assert_eq!(counter(&rem, "resolved"), 1.0);
    assert!(rem.incidents().is_empty(), "{:#}", rem.history());
    assert_eq!(
        rem.metric("stackmedic_remediator_reconciled_alerts_total", &[]),
        1.0
    );
}
