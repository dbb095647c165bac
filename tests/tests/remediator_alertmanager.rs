//! A real Alertmanager (Debian `prometheus-alertmanager`) delivers its webhook with bearer
//! authentication to a real `stackmedic-remediator`, which restarts a real container in the
//! real Docker Engine, verifies it, records it in the audit history, and — for an alert it
//! cannot fix — posts one escalation back to the same Alertmanager's `/api/v2/alerts`.

use std::time::Duration;

use serde_json::json;
use stackmedic_tests::alertmanager::Alertmanager;
use stackmedic_tests::docker::{ensure_docker, run_busybox, Container};
use stackmedic_tests::metrics;
use stackmedic_tests::remediator::Remediator;
use stackmedic_tests::{unique_name, wait_until};

const TOKEN: &str = "am-to-remediator-3f9c";

fn started_at(c: &Container) -> String {
    c.inspect()["State"]["StartedAt"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn remediator_alertmanager_webhook_restarts_container_and_escalates() {
    ensure_docker();
    // With a health check: verification waits until the restarted container is healthy again.
    let owui = run_busybox(
        &unique_name("sm-owui"),
        &["--health-cmd", "true", "--health-interval", "1s"],
        &["sleep", "600"],
    );
    let ghost = unique_name("sm-ghost");
    let before = started_at(&owui);

    let dir = tempfile::Builder::new()
        .prefix("stackmedic-remediator-")
        .tempdir()
        .unwrap();
    let token_file = dir.path().join("webhook-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let config = format!(
        "webhook:\n  bearer_token_file: {{dir}}/webhook-token\n\
         targets:\n\
         - name: owui\n  cooldown: 1s\n  docker: {{containers: [{owui}], stop_timeout: 1s}}\n  verify: {{deadline: 30s}}\n\
         - name: ghost\n  max_attempts: 1\n  cooldown: 0s\n  timeout: 10s\n  docker: {{containers: [{ghost}]}}\n  verify: {{deadline: 2s}}\n\
         rules:\n\
         - name: owui-down\n  matchers: ['alertname=\"OwuiDown\"']\n  action: container_restart\n  target: owui\n\
         - name: ghost-down\n  matchers: ['alertname=\"GhostDown\"']\n  action: container_start\n  target: ghost\n",
        owui = owui.name(),
    );
    let mut rem = Remediator::start_in(dir, &config);

    let am = Alertmanager::start(&format!(
        "route:\n  receiver: remediator\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         \x20 routes:\n  - matchers: ['alertname=\"StackmedicRemediationFailed\"']\n    receiver: oncall\n\
         receivers:\n\
         - name: remediator\n  webhook_configs:\n  - url: 'http://127.0.0.1:{}/webhook'\n    send_resolved: true\n    http_config:\n      authorization:\n        type: Bearer\n        credentials_file: {}\n\
         - name: oncall\n",
        rem.port(),
        token_file.display()
    ));

    // Escalations go to the Alertmanager started after the remediator: reload with its URL.
    let with_escalation = format!(
        "{}escalation:\n  alertmanager_url: {}\n  min_backoff: 200ms\n",
        std::fs::read_to_string(rem.dir().join("remediator.yml")).unwrap(),
        am.url("")
    );
    std::fs::write(rem.dir().join("remediator.yml"), with_escalation).unwrap();
    let reload = stackmedic_tests::http::request("POST", &rem.url("/-/reload"), &[], None).unwrap();
    assert_eq!(reload.status, 200, "reload: {}", reload.text());

    am.post_alerts(&json!([{
        "labels": {"alertname": "OwuiDown", "severity": "critical", "instance": "owui"},
        "annotations": {"summary": "Open WebUI answers 502"},
    }]))
    .unwrap();

    let done = rem.wait_for("succeeded", 1, Duration::from_secs(60));
    assert_eq!(done[0]["rule"], "owui-down");
    assert_eq!(done[0]["action"], "container_restart");
    assert_eq!(done[0]["alertname"], "OwuiDown");
    assert!(
        done[0]["detail"].as_str().unwrap().contains("verified"),
        "{done:?}"
    );
    let after = started_at(&owui);
    assert_ne!(before, after, "the container was not restarted");
    assert_eq!(owui.status().as_deref(), Some("running"));
    assert_eq!(owui.inspect()["State"]["Health"]["Status"], "healthy");

    // The webhook really came from Alertmanager, with the token.
    let samples = metrics::scrape(&rem.url("/metrics")).unwrap();
    assert!(
        metrics::find(
            &samples,
            "stackmedic_remediator_webhooks_total",
            &[("result", "accepted")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(
        metrics::find(
            &samples,
            "stackmedic_remediator_webhooks_total",
            &[("result", "unauthorized")]
        ),
        Some(0.0)
    );
    assert_eq!(
        metrics::find(
            &samples,
            "stackmedic_remediator_actions_total",
            &[("kind", "container_restart"), ("result", "succeeded")]
        ),
        Some(1.0)
    );

    // A container that does not exist cannot be started: one failed attempt, no attempts
    // left, the circuit opens and one escalation reaches Alertmanager.
    am.post_alerts(&json!([{
        "labels": {"alertname": "GhostDown", "severity": "critical"},
        "annotations": {"summary": "ghost is gone"},
    }]))
    .unwrap();
    rem.wait_for("failed", 1, Duration::from_secs(60));
    let escalated = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        am.alerts()
            .map(|a| {
                a.as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["labels"]["alertname"] == "StackmedicRemediationFailed")
            })
            .unwrap_or(false)
    });
    assert!(
        escalated,
        "no escalation in Alertmanager: {:#}\n{}",
        am.alerts().unwrap(),
        rem.process().describe()
    );
    let alerts = am.alerts().unwrap();
    let esc: Vec<_> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["labels"]["alertname"] == "StackmedicRemediationFailed")
        .collect();
    assert_eq!(esc.len(), 1, "{alerts:#}");
    assert_eq!(esc[0]["labels"]["severity"], "page");
    assert_eq!(esc[0]["labels"]["original_alertname"], "GhostDown");
    assert_eq!(esc[0]["labels"]["remediation_target"], "ghost");
    assert!(esc[0]["annotations"]["remediation_tried"]
        .as_str()
        .unwrap()
        .contains(&ghost));
    let history = rem.history();
    assert_eq!(
        history["open_circuits"].as_array().unwrap().len(),
        1,
        "{history:#}"
    );
    assert!(!rem.actions_with("escalated").is_empty());
}
