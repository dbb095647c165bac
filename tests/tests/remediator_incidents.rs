//! The incident model against real peers:
//!
//! * a failed attempt's next attempt is stored, shown, and run at that time without
//!   Alertmanager re-sending anything (a real container in the real Docker Engine, created
//!   between the attempts);
//! * a flapping container (healed twice within the window) is escalated once, without a third
//!   restart, through a real Alertmanager; a new outage while it is escalated joins the same
//!   page, which stays active until every alert of the incident resolved;
//! * a reload with a broken file keeps the running rules (the admin API is the test library's
//!   recorder, standing in for the camera/PLC app, which has no real peer).

use std::time::Duration;

use serde_json::Value;
use stackmedic_tests::admin_api::AdminApi;
use stackmedic_tests::alertmanager::Alertmanager;
use stackmedic_tests::docker::{busybox_image, docker_ok, ensure_docker, run_busybox, Container};
use stackmedic_tests::remediator::{alert, payload, rfc3339, unix_now, Remediator};
use stackmedic_tests::{unique_name, wait_until};

#[test]
fn remediator_retries_at_the_stored_time_without_a_resend() {
    ensure_docker();
    let ghost = unique_name("sm-late");
    let _guard = Container::adopt(&ghost);
    let config = format!(
        "global: {{reconcile_interval: 0s}}\n\
         targets:\n- name: late\n  max_attempts: 3\n  backoff: 4s\n  docker: {{containers: [{ghost}]}}\n  verify: {{deadline: 20s, stable_for: 1s}}\n\
         rules:\n- name: late-start\n  matchers: ['alertname=\"LateDown\"']\n  action: container_start\n  target: late\n"
    );
    let mut rem = Remediator::start(&config);
    let p = payload(vec![alert(
        "firing",
        &[("alertname", "LateDown")],
        "2026-11-22T10:00:00Z",
    )]);
    assert_eq!(rem.webhook(&p, None).unwrap().status, 200);
    // The container does not exist yet: the first attempt fails, the next one is stored.
    let failed = rem.wait_for("failed", 1, Duration::from_secs(30));
    let subject = format!("container:{ghost}");
    let waiting = rem.wait_incident(&subject, "waiting", Duration::from_secs(10));
    let next = waiting["next_attempt_at"]
        .as_f64()
        .unwrap_or_else(|| panic!("no next attempt shown: {waiting:#}"));
    let failed_at = failed[0]["time"].as_f64().unwrap();
    assert!(
        (next - failed_at - 4.0).abs() < 0.5,
        "next attempt {next} is not 4 s after the failure at {failed_at}"
    );
    assert_eq!(waiting["attempts"], 1);
    assert_eq!(waiting["max_attempts"], 3);
    let page = stackmedic_tests::http::get(&rem.url("/")).unwrap().text();
    assert!(page.contains("the next one runs at its time"), "{page}");

    // The container appears before that time; nobody sends anything.
    docker_ok(&[
        "create",
        "--network",
        "host",
        "--name",
        &ghost,
        busybox_image(),
        "sleep",
        "600",
    ]);
    let done = rem.wait_for("succeeded", 1, Duration::from_secs(30));
    let started = done[0]["started_at"].as_f64().unwrap();
    assert!(
        started >= next - 0.05 && started <= next + 2.0,
        "the second attempt started at {started}, its stored time was {next}"
    );
    assert_eq!(
        rem.metric(
            "stackmedic_remediator_webhooks_total",
            &[("result", "accepted")]
        ),
        1.0,
        "the retry needed no re-sent notification"
    );
    let healed = rem.wait_incident(&subject, "healed", Duration::from_secs(5));
    assert_eq!(healed["attempts"], 2, "{healed:#}");
}

fn outage(instance: &str, starts_at: &str, status: &str) -> Value {
    let mut a = alert(
        status,
        &[("alertname", "AppDown"), ("instance", instance)],
        starts_at,
    );
    if status == "resolved" {
        a["endsAt"] = rfc3339(unix_now()).into();
    }
    payload(vec![a])
}

#[test]
fn remediator_flapping_escalates_once_and_a_new_outage_joins_the_page() {
    ensure_docker();
    let app = run_busybox(&unique_name("sm-flap"), &[], &["sleep", "600"]);
    let am = Alertmanager::start("route: {receiver: oncall}\nreceivers: [{name: oncall}]\n");
    // The alerts are sent to the remediator directly: reconciliation is off.
    let config = format!(
        "global: {{reconcile_interval: 0s}}\n\
         escalation: {{alertmanager_url: '{}', resend_interval: 1s, min_backoff: 200ms, timeout: 2s}}\n\
         targets:\n- name: app\n  flapping: {{count: 2, window: 1h}}\n  docker: {{containers: [{}], stop_timeout: 1s}}\n  verify: {{deadline: 20s, stable_for: 0s}}\n\
         rules:\n- name: app-down\n  matchers: ['alertname=\"AppDown\"']\n  action: container_restart\n  target: app\n",
        am.url(""),
        app.name()
    );
    let mut rem = Remediator::start(&config);
    let subject = format!("container:{}", app.name());
    // Two outages, each restarted and healed, each resolved.
    for n in 1..=2 {
        let start = rfc3339(unix_now());
        let instance = format!("outage-{n}");
        assert_eq!(
            rem.webhook(&outage(&instance, &start, "firing"), None)
                .unwrap()
                .status,
            200
        );
        rem.wait_for("succeeded", n, Duration::from_secs(60));
        assert_eq!(
            rem.webhook(&outage(&instance, &start, "resolved"), None)
                .unwrap()
                .status,
            200
        );
        assert!(
            wait_until(Duration::from_secs(10), Duration::from_millis(100), || rem
                .incidents()
                .is_empty()),
            "{:#}",
            rem.history()
        );
    }
    let started = app.inspect()["State"]["StartedAt"].clone();
    // The third outage: the container is flapping. No restart; one page.
    let third = rfc3339(unix_now());
    assert_eq!(
        rem.webhook(&outage("outage-3", &third, "firing"), None)
            .unwrap()
            .status,
        200
    );
    let flapping = rem.wait_for("skipped_flapping", 1, Duration::from_secs(30));
    assert!(
        flapping[0]["detail"]
            .as_str()
            .unwrap()
            .contains("flapping: 2 incidents"),
        "{flapping:#?}"
    );
    let escalated = rem.wait_incident(&subject, "escalated", Duration::from_secs(10));
    assert_eq!(
        escalated["flapping"]["healed_in_window"], 2,
        "{escalated:#}"
    );
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(100), || am
            .active_escalations()
            .len()
            == 1),
        "no page in Alertmanager: {:#}",
        am.alerts().unwrap_or_default()
    );
    // A new outage while escalated joins the same page: still one, listing both alerts.
    let fourth = rfc3339(unix_now());
    assert_eq!(
        rem.webhook(&outage("outage-4", &fourth, "firing"), None)
            .unwrap()
            .status,
        200
    );
    rem.wait_for("skipped_escalated", 1, Duration::from_secs(30));
    let both = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let pages = am.active_escalations();
        pages.len() == 1
            && pages[0]["annotations"]["alerts"]
                .as_str()
                .is_some_and(|a| a.contains(&third) && a.contains(&fourth))
    });
    assert!(
        both,
        "the page does not list both outages: {:#}",
        am.alerts().unwrap_or_default()
    );
    // The first alert of the incident resolves: the page stays active.
    assert_eq!(
        rem.webhook(&outage("outage-3", &third, "resolved"), None)
            .unwrap()
            .status,
        200
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        am.active_escalations().len(),
        1,
        "{:#}",
        am.alerts().unwrap_or_default()
    );
    assert_eq!(
        rem.metric("stackmedic_remediator_escalations_active", &[]),
        1.0
    );
    // The last one resolves: the page is resolved.
    assert_eq!(
        rem.webhook(&outage("outage-4", &fourth, "resolved"), None)
            .unwrap()
            .status,
        200
    );
    rem.wait_for("escalation_resolved", 1, Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            am.active_escalations().is_empty()
        }),
        "{:#}",
        am.alerts().unwrap_or_default()
    );
    assert_eq!(
        rem.actions_with("escalated").len(),
        1,
        "{:#}",
        rem.history()
    );
    assert_eq!(rem.actions_with("succeeded").len(), 2);
    assert_eq!(
        app.inspect()["State"]["StartedAt"],
        started,
        "restarted while flapping"
    );
}

#[test]
fn remediator_reload_with_a_broken_file_keeps_the_running_rules() {
    let api = AdminApi::start(&[]);
    let good = format!(
        "global: {{reconcile_interval: 0s}}\n\
         targets:\n- name: app\n  http: {{base_url: '{}'}}\n\
         rules:\n- name: daemon-restart\n  matchers: ['alertname=\"DaemonDown\"']\n  action: http_sequence\n  target: app\n  steps: [{{path: /api/admin/service/restart}}]\n",
        api.url("/")
    );
    let mut rem = Remediator::start(&good);
    assert_eq!(
        rem.metric("stackmedic_remediator_config_last_reload_successful", &[]),
        1.0
    );
    // The new file would route another alert to another path, but it is broken.
    let broken = good
        .replace("DaemonDown", "OtherDown")
        .replace("/api/admin", "/elsewhere")
        + "- name: bad\n  action: launch_rockets\n  target: app\n";
    let r = rem.reconfigure(&broken);
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("unknown action"), "{}", r.text());
    assert_eq!(
        rem.metric("stackmedic_remediator_config_last_reload_successful", &[]),
        0.0
    );
    // The running rules still act.
    let p = payload(vec![alert(
        "firing",
        &[("alertname", "DaemonDown")],
        "2026-11-22T10:00:00Z",
    )]);
    let body = rem.webhook(&p, None).unwrap().json().unwrap();
    assert_eq!(body["queued"], 1, "{body}");
    let p = payload(vec![alert(
        "firing",
        &[("alertname", "OtherDown")],
        "2026-11-22T10:00:00Z",
    )]);
    let body = rem.webhook(&p, None).unwrap().json().unwrap();
    assert_eq!(body["unmatched"], 1, "{body}");
    rem.wait_for("succeeded", 1, Duration::from_secs(30));
    assert_eq!(
        api.count("/api/admin/service/restart"),
        1,
        "{:?}",
        api.calls()
    );
    assert_eq!(api.calls().len(), 1, "{:?}", api.calls());
}
