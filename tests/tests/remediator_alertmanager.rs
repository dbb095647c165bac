//! A real Alertmanager (Debian `prometheus-alertmanager`) delivers its webhook with bearer
//! authentication to a real `stackmedic-remediator`, which restarts a real container in the
//! real Docker Engine, verifies it, records it in the audit history, and — for an alert it
//! cannot fix — posts one escalation back to the same Alertmanager's `/api/v2/alerts`. The
//! same delivery with basic auth (`password_file`) runs the action; a wrong password is a 401.

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
         - name: owui\n  docker: {{containers: [{owui}], stop_timeout: 1s}}\n  verify: {{deadline: 30s}}\n\
         - name: ghost\n  max_attempts: 1\n  timeout: 10s\n  docker: {{containers: [{ghost}]}}\n  verify: {{deadline: 2s}}\n\
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
    // left, the incident is escalated and one escalation reaches Alertmanager.
    am.post_alerts(&json!([{
        "labels": {"alertname": "GhostDown", "severity": "critical"},
        "annotations": {"summary": "ghost is gone"},
    }]))
    .unwrap();
    rem.wait_for("failed", 1, Duration::from_secs(60));
    let escalated = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        !am.alerts_named("StackmedicRemediationFailed").is_empty()
    });
    assert!(
        escalated,
        "no escalation in Alertmanager: {:#}\n{}",
        am.alerts().unwrap(),
        rem.process().describe()
    );
    let esc = am.alerts_named("StackmedicRemediationFailed");
    assert_eq!(esc.len(), 1, "{esc:#?}");
    assert_eq!(esc[0]["labels"]["severity"], "page");
    assert_eq!(esc[0]["labels"]["original_alertname"], "GhostDown");
    assert_eq!(esc[0]["labels"]["remediation_target"], "ghost");
    assert!(esc[0]["annotations"]["remediation_tried"]
        .as_str()
        .unwrap()
        .contains(&ghost));
    let incident = rem.wait_incident(
        &format!("container:{ghost}"),
        "escalated",
        Duration::from_secs(10),
    );
    assert_eq!(incident["attempts"], 1, "{incident:#}");
    assert_eq!(incident["page_active"], true, "{incident:#}");
    assert_eq!(rem.actions_with("escalated").len(), 1);
}

/// The same delivery with `http_config.basic_auth` (username and `password_file`) to a
/// remediator configured with `webhook.basic_auth`: the container is restarted. A second
/// receiver of the same Alertmanager sends a wrong password: 401, counted as unauthorized,
/// never a job.
#[test]
fn remediator_alertmanager_webhook_with_basic_auth() {
    ensure_docker();
    let app = run_busybox(&unique_name("sm-basic"), &[], &["sleep", "600"]);
    let before = started_at(&app);

    let dir = tempfile::Builder::new()
        .prefix("stackmedic-remediator-")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("webhook-password"), "s3cret-basic-7d1e\n").unwrap();
    std::fs::write(dir.path().join("wrong-password"), "not-the-password\n").unwrap();
    let secrets = dir.path().to_path_buf();
    let config = format!(
        "webhook:\n  basic_auth:\n    username: alertmanager\n    password_file: {{dir}}/webhook-password\n\
         targets:\n\
         - name: app\n  docker: {{containers: [{app}], stop_timeout: 1s}}\n  verify: {{deadline: 30s}}\n\
         rules:\n\
         - name: app-down\n  matchers: ['alertname=~\"AppDown|Intruder\"']\n  action: container_restart\n  target: app\n",
        app = app.name(),
    );
    let mut rem = Remediator::start_in(dir, &config);
    let receiver = |name: &str, password_file: &str| {
        format!(
            "- name: {name}\n  webhook_configs:\n  - url: 'http://127.0.0.1:{}/webhook'\n    send_resolved: true\n    http_config:\n      basic_auth:\n        username: alertmanager\n        password_file: {}\n",
            rem.port(),
            secrets.join(password_file).display()
        )
    };
    let mut am = Alertmanager::start(&format!(
        "route:\n  receiver: remediator\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         \x20 routes:\n  - matchers: ['alertname=\"Intruder\"']\n    receiver: wrong\n\
         receivers:\n{}{}",
        receiver("remediator", "webhook-password"),
        receiver("wrong", "wrong-password"),
    ));

    am.post_alerts(&json!([{
        "labels": {"alertname": "AppDown", "severity": "critical"},
        "annotations": {"summary": "app is down"},
    }]))
    .unwrap();
    let done = rem.wait_for("succeeded", 1, Duration::from_secs(60));
    assert_eq!(done[0]["rule"], "app-down");
    assert_eq!(done[0]["alertname"], "AppDown");
    assert_ne!(before, started_at(&app), "the container was not restarted");
    assert_eq!(app.status().as_deref(), Some("running"));

    // Same user, wrong password: refused, and the alert never becomes a job although the
    // rule matches it.
    am.post_alerts(&json!([{
        "labels": {"alertname": "Intruder", "severity": "critical"},
    }]))
    .unwrap();
    let webhooks = |result: &str| {
        metrics::scrape(&rem.url("/metrics"))
            .ok()
            .and_then(|s| {
                metrics::find(
                    &s,
                    "stackmedic_remediator_webhooks_total",
                    &[("result", result)],
                )
            })
            .unwrap_or(0.0)
    };
    let refused = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        webhooks("unauthorized") >= 1.0
    });
    assert!(
        refused,
        "no unauthorized webhook counted:\n{}",
        rem.process().describe()
    );
    assert!(webhooks("accepted") >= 1.0);
    // Alertmanager logs the 401 it got.
    let logged = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        am.process().stderr().contains("401")
    });
    let history = rem.history();
    let actions = history["actions"].as_array().unwrap();
    assert!(
        !actions.iter().any(|a| a["alertname"] == "Intruder"),
        "{history:#}"
    );
    assert_eq!(actions.len(), 1, "{history:#}");
    assert!(
        logged,
        "Alertmanager did not log the 401:\n{}",
        am.process().describe()
    );
}
