//! Failures that only verification or the timeout catches, each through its attempts to an
//! escalation in a real Alertmanager:
//!
//! * the action succeeds but verification fails: a real container that restarts and stays
//!   unhealthy, and one that restarts and exits again (after it was good);
//! * the action hangs until the target's timeout (the admin API is the test library's recorder,
//!   standing in for the camera/PLC app, which has no real peer; it never answers that path).

use std::time::Duration;

use stackmedic_tests::admin_api::{AdminApi, Rule};
use stackmedic_tests::alertmanager::{Alertmanager, ESCALATION};
use stackmedic_tests::docker::{ensure_docker, run_busybox};
use stackmedic_tests::remediator::{alert, payload, Remediator};
use stackmedic_tests::{unique_name, wait_until};

fn escalation(am: &Alertmanager) -> String {
    format!(
        "escalation: {{alertmanager_url: '{}', min_backoff: 200ms, timeout: 2s}}\n",
        am.url("")
    )
}

/// Failed rows of `rule`, oldest first.
fn failures(rem: &Remediator, rule: &str) -> Vec<String> {
    let mut rows: Vec<String> = rem
        .actions_with("failed")
        .into_iter()
        .filter(|a| a["rule"] == rule)
        .map(|a| a["detail"].as_str().unwrap_or_default().to_owned())
        .collect();
    rows.reverse();
    rows
}

#[test]
fn remediator_verification_failures_escalate_after_their_attempts() {
    ensure_docker();
    let sick = run_busybox(
        &unique_name("sm-sick"),
        &[
            "--health-cmd",
            "false",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
        ],
        &["sleep", "600"],
    );
    let crashy = run_busybox(
        &unique_name("sm-crashy"),
        &[],
        &["sh", "-c", "sleep 1; exit 3"],
    );
    let am = Alertmanager::start("route: {receiver: oncall}\nreceivers: [{name: oncall}]\n");
    let config = format!(
        "global: {{reconcile_interval: 0s}}\n{}\
         targets:\n\
         - name: sick\n  max_attempts: 2\n  backoff: 1s\n  docker: {{containers: [{sick}], stop_timeout: 1s}}\n  verify: {{deadline: 4s, interval: 300ms, stable_for: 1s}}\n\
         - name: crashy\n  max_attempts: 2\n  backoff: 1s\n  docker: {{containers: [{crashy}], stop_timeout: 1s}}\n  verify: {{deadline: 10s, interval: 200ms, stable_for: 3s}}\n\
         rules:\n\
         - name: sick-restart\n  matchers: ['alertname=\"SickDown\"']\n  action: container_restart\n  target: sick\n\
         - name: crashy-restart\n  matchers: ['alertname=\"CrashyDown\"']\n  action: container_restart\n  target: crashy\n",
        escalation(&am),
        sick = sick.name(),
        crashy = crashy.name(),
    );
    let mut rem = Remediator::start(&config);
    let alerts = ["SickDown", "CrashyDown"]
        .iter()
        .map(|n| alert("firing", &[("alertname", n)], "2026-11-22T10:00:00Z"))
        .collect();
    assert_eq!(rem.webhook(&payload(alerts), None).unwrap().status, 200);
    rem.wait_for("failed", 4, Duration::from_secs(90));
    let both = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        am.paged() == ["CrashyDown", "SickDown"]
    });
    assert!(
        both,
        "escalations not in Alertmanager: {:#}\n{:#}\n{}",
        am.alerts().unwrap_or_default(),
        rem.history(),
        rem.process().describe()
    );
    let sick_rows = failures(&rem, "sick-restart");
    assert_eq!(sick_rows.len(), 2, "{sick_rows:#?}");
    for (i, d) in sick_rows.iter().enumerate() {
        assert!(
            d.starts_with(&format!(
                "attempt {} of 2: restarted container {}",
                i + 1,
                sick.name()
            )),
            "{d}"
        );
        assert!(d.contains("verification failed within 4s"), "{d}");
        assert!(d.contains("is running but"), "{d}");
    }
    let crashy_rows = failures(&rem, "crashy-restart");
    assert_eq!(crashy_rows.len(), 2, "{crashy_rows:#?}");
    for d in &crashy_rows {
        assert!(
            d.contains(&format!("restarted container {}", crashy.name())),
            "{d}"
        );
        // It exits a second after each start: whether or not it was good before, an exit
        // fails the verification at once, with its exit code.
        assert!(d.contains("exit code 3"), "{d}");
    }
    for subject in [
        format!("container:{}", sick.name()),
        format!("container:{}", crashy.name()),
    ] {
        let i = rem.wait_incident(&subject, "escalated", Duration::from_secs(5));
        assert_eq!(
            (i["attempts"].as_i64(), i["page_active"].as_bool()),
            (Some(2), Some(true)),
            "{i:#}"
        );
    }
    assert_eq!(rem.actions_with("escalated").len(), 2);
}

#[test]
fn remediator_hanging_action_times_out_through_its_attempts_to_escalation() {
    let api = AdminApi::start(&[Rule::hang("/api/plc/connect")]);
    let am = Alertmanager::start("route: {receiver: oncall}\nreceivers: [{name: oncall}]\n");
    let config = format!(
        "global: {{reconcile_interval: 0s}}\n{}\
         targets:\n- name: camera-app\n  timeout: 1s\n  max_attempts: 2\n  backoff: 1s\n  http: {{base_url: '{}'}}\n\
         rules:\n- name: plc-connect\n  matchers: ['alertname=\"PlcAdsNoRoute\"']\n  action: http_sequence\n  target: camera-app\n  steps: [{{path: /api/plc/connect}}]\n",
        escalation(&am),
        api.url("/")
    );
    let mut rem = Remediator::start(&config);
    let p = payload(vec![alert(
        "firing",
        &[("alertname", "PlcAdsNoRoute"), ("plc", "line1")],
        "2026-11-22T10:00:00Z",
    )]);
    assert_eq!(rem.webhook(&p, None).unwrap().status, 200);
    rem.wait_for("failed", 2, Duration::from_secs(30));
    let escalated = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        am.paged() == ["PlcAdsNoRoute"]
    });
    assert!(
        escalated,
        "{:#}\n{:#}",
        am.alerts().unwrap_or_default(),
        rem.history()
    );
    let rows = failures(&rem, "plc-connect");
    assert_eq!(
        rows,
        [
            "attempt 1 of 2: the action timed out after 1s",
            "attempt 2 of 2: the action timed out after 1s"
        ]
    );
    for a in rem.actions_with("failed") {
        let d = a["duration_seconds"].as_f64().unwrap();
        assert!((1.0..3.0).contains(&d), "an attempt took {d} s: {a:#}");
    }
    assert_eq!(api.count("/api/plc/connect"), 2, "{:?}", api.calls());
    let page = &am.alerts_named(ESCALATION)[0];
    assert!(
        page["annotations"]["remediation_tried"]
            .as_str()
            .unwrap()
            .contains("timed out after 1s"),
        "{page:#}"
    );
}
