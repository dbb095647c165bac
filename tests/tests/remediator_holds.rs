//! When the remediator must not act, against the real binary, a real Docker Engine and a real
//! Alertmanager:
//!
//! * the blast-radius guard: 5 of 6 allow-listed containers stopped together — in one webhook,
//!   and as five webhooks over 3 s — are held, none is restarted, and on-call gets one page for
//!   the group; when 4 are started by hand, the last is restarted by the remediator and the page
//!   resolves;
//! * an unreachable Docker Engine holds the action and pages once; it acts when the Engine
//!   answers again;
//! * dependency order: a database and an app depending on it stopped together — the database
//!   is restarted first, the app after the database was verified;
//! * pause: no action while paused (the page says so, `/metrics` too), actions continue after
//!   the resume.

use std::time::Duration;

use serde_json::Value;
use stackmedic_tests::alertmanager::Alertmanager;
use stackmedic_tests::docker::{
    docker_ok, ensure_docker, is_running, run_busybox, started_at, Container,
};
use stackmedic_tests::remediator::{alert, payload, rfc3339, unix_now, Remediator};
use stackmedic_tests::{bin_path, unique_name, wait_until};

use stackmedic_tests::alertmanager::ESCALATION;

fn oncall() -> Alertmanager {
    Alertmanager::start("route: {receiver: oncall}\nreceivers: [{name: oncall}]\n")
}

fn escalation(am: &Alertmanager) -> String {
    format!(
        "escalation: {{alertmanager_url: '{}', resend_interval: 2s, min_backoff: 200ms, timeout: 2s}}\n",
        am.url("")
    )
}

fn down(name: &str) -> Value {
    alert(
        "firing",
        &[("alertname", "ContainerDown"), ("container", name)],
        "2026-11-22T10:00:00Z",
    )
}

fn resolved(name: &str) -> Value {
    let mut a = alert(
        "resolved",
        &[("alertname", "ContainerDown"), ("container", name)],
        "2026-11-22T10:00:00Z",
    );
    a["endsAt"] = rfc3339(unix_now()).into();
    a
}

fn incidents_in(rem: &Remediator, state: &str) -> Vec<Value> {
    rem.incidents()
        .into_iter()
        .filter(|i| i["state"] == state)
        .collect()
}

/// Six containers of one target: five are stopped together and their alerts sent as
/// `batches` webhooks spread over 3 s.
fn mass_outage(batches: usize) {
    ensure_docker();
    let apps: Vec<Container> = (0..6)
        .map(|i| run_busybox(&unique_name(&format!("sm-mass{i}")), &[], &["sleep", "600"]))
        .collect();
    let names: Vec<String> = apps.iter().map(|c| c.name().to_owned()).collect();
    let am = oncall();
    let config = format!(
        "global: {{reconcile_interval: 0s}}\n{}\
         targets:\n- name: apps\n  docker: {{containers: [{}], stop_timeout: 1s}}\n  verify: {{deadline: 20s, stable_for: 1s}}\n\
         rules:\n- name: restart\n  matchers: ['alertname=\"ContainerDown\"']\n  action: container_restart\n  target: apps\n  container_label: container\n",
        escalation(&am),
        names.join(", ")
    );
    let mut rem = Remediator::start(&config);
    let stopped: Vec<String> = names[..5].to_vec();
    for n in &stopped {
        docker_ok(&["stop", "-t", "1", n]);
    }
    let before: Vec<String> = stopped.iter().map(|n| started_at(n)).collect();
    let per = stopped.len().div_ceil(batches);
    for (i, chunk) in stopped.chunks(per).enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(3000 / (batches as u64 - 1).max(1)));
        }
        let p = payload(chunk.iter().map(|n| down(n)).collect());
        assert_eq!(rem.webhook(&p, None).unwrap().status, 200);
    }
    // Held, all five; one page for the group.
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            incidents_in(&rem, "held").len() == 5
        }),
        "not held: {:#}",
        rem.history()
    );
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(200), || am
            .active_escalations()
            .len()
            == 1),
        "pages: {:#?}",
        am.active_escalations()
    );
    let page = &am.active_escalations()[0];
    let summary = page["annotations"]["summary"].as_str().unwrap_or_default();
    assert_eq!(
        summary, "5 of 6 subjects of target apps failing: actions held",
        "{page:#}"
    );
    std::thread::sleep(Duration::from_secs(3));
    for (n, b) in stopped.iter().zip(&before) {
        assert_eq!(&started_at(n), b, "{n} was restarted during a mass outage");
        assert!(!is_running(n));
    }
    assert_eq!(am.active_escalations().len(), 1, "still one page");
    let text = stackmedic_tests::http::get(&rem.url("/")).unwrap().text();
    assert!(
        text.contains("5 of 6 subjects of the target are failing"),
        "the page shows why"
    );

    // Four are started by hand; their alerts resolve. One subject of six is failing: the
    // remediator restarts the last by itself, and the page resolves.
    for n in &stopped[..4] {
        docker_ok(&["start", n]);
    }
    let p = payload(stopped[..4].iter().map(|n| resolved(n)).collect());
    assert_eq!(rem.webhook(&p, None).unwrap().status, 200);
    let last = &stopped[4];
    rem.wait_incident(
        &format!("container:{last}"),
        "healed",
        Duration::from_secs(60),
    );
    assert!(is_running(last));
    assert_ne!(started_at(last), before[4]);
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(250), || {
            am.active_escalations().is_empty()
        }),
        "the group's page did not resolve: {:#?}",
        am.alerts_named(ESCALATION)
    );
    assert_eq!(
        rem.actions_with("succeeded").len(),
        1,
        "exactly one restart"
    );
    assert_eq!(rem.actions_with("released").len(), 1);
}

#[test]
fn five_of_six_failing_in_one_webhook_are_held_with_one_page_and_released_one_by_one() {
    mass_outage(1);
}

#[test]
fn five_of_six_failing_over_three_seconds_are_held_with_one_page() {
    mass_outage(5);
}

#[test]
fn an_unreachable_engine_holds_the_action_and_pages_once() {
    ensure_docker();
    let app = run_busybox(&unique_name("sm-engine"), &[], &["sleep", "600"]);
    docker_ok(&["stop", "-t", "1", app.name()]);
    let am = oncall();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let config = format!(
        "global: {{reconcile_interval: 0s}}\n{}\
         docker: {{host: 'unix://{}'}}\n\
         targets:\n- name: app\n  docker: {{containers: [{}], stop_timeout: 1s}}\n  verify: {{deadline: 20s, stable_for: 1s}}\n\
         rules:\n- name: restart\n  matchers: ['alertname=\"ContainerDown\"']\n  action: container_restart\n  target: app\n  container_label: container\n",
        escalation(&am),
        socket.display(),
        app.name()
    );
    let mut rem = Remediator::start(&config);
    assert_eq!(
        rem.webhook(&payload(vec![down(app.name())]), None)
            .unwrap()
            .status,
        200
    );
    let subject = format!("container:{}", app.name());
    let held = rem.wait_incident(&subject, "held", Duration::from_secs(30));
    assert!(
        held["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot be reached"),
        "{held:#}"
    );
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(200), || am
            .active_escalations()
            .len()
            == 1),
        "no page for the unreachable engine"
    );
    // The Engine answers again: the held action runs.
    std::os::unix::fs::symlink("/var/run/docker.sock", &socket).unwrap();
    rem.wait_incident(&subject, "healed", Duration::from_secs(60));
    assert!(is_running(app.name()));
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(250), || {
            am.active_escalations().is_empty()
        }),
        "the page did not resolve"
    );
}

#[test]
fn a_dependency_is_restarted_and_verified_before_the_app_that_needs_it() {
    ensure_docker();
    let db = run_busybox(&unique_name("sm-db"), &[], &["sleep", "600"]);
    let app = run_busybox(&unique_name("sm-app"), &[], &["sleep", "600"]);
    let config = format!(
        "global: {{reconcile_interval: 0s}}\n\
         targets:\n- name: stack\n  docker: {{containers: [{db}, {app}], depends_on: {{{app}: [{db}]}}, stop_timeout: 1s}}\n  \
           verify: {{deadline: 30s, stable_for: 8s}}\n\
         rules:\n- name: restart\n  matchers: ['alertname=\"ContainerDown\"']\n  action: container_restart\n  target: stack\n  container_label: container\n",
        db = db.name(),
        app = app.name()
    );
    let mut rem = Remediator::start(&config);
    docker_ok(&["stop", "-t", "1", db.name()]);
    docker_ok(&["stop", "-t", "1", app.name()]);
    // The app's alert arrives first. Its job waits the settle time (5 s), then finds the
    // database still being verified (8 s of stability): held until the database healed.
    assert_eq!(
        rem.webhook(&payload(vec![down(app.name())]), None)
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        rem.webhook(&payload(vec![down(db.name())]), None)
            .unwrap()
            .status,
        200
    );
    rem.wait_incident(
        &format!("container:{}", app.name()),
        "healed",
        Duration::from_secs(90),
    );
    let done = rem.wait_for("succeeded", 2, Duration::from_secs(10));
    let of = |name: &str| {
        done.iter()
            .find(|a| a["subject"] == format!("container:{name}"))
            .cloned()
            .unwrap_or_else(|| panic!("no success for {name}: {done:#?}"))
    };
    let (db_row, app_row) = (of(db.name()), of(app.name()));
    let db_verified = db_row["time"].as_f64().unwrap();
    let app_started = app_row["started_at"].as_f64().unwrap();
    assert!(
        app_started >= db_verified,
        "the app was restarted at {app_started}, before its database was verified at {db_verified}"
    );
    assert!(
        rem.actions_with("held")
            .iter()
            .any(|a| a["subject"] == format!("container:{}", app.name())),
        "the app waited for its dependency: {:#}",
        rem.history()
    );
    assert!(is_running(db.name()) && is_running(app.name()));
}

#[test]
fn pause_holds_every_action_until_resume() {
    ensure_docker();
    let app = run_busybox(&unique_name("sm-pause"), &[], &["sleep", "600"]);
    let dir = tempfile::Builder::new()
        .prefix("stackmedic-remediator-")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("token"), "pause-secret\n").unwrap();
    let config = format!(
        "global: {{reconcile_interval: 0s}}\n\
         webhook: {{bearer_token_file: '{{dir}}/token'}}\n\
         targets:\n- name: app\n  docker: {{containers: [{}], stop_timeout: 1s}}\n  verify: {{deadline: 20s, stable_for: 1s}}\n\
         rules:\n- name: restart\n  matchers: ['alertname=\"ContainerDown\"']\n  action: container_restart\n  target: app\n  container_label: container\n",
        app.name()
    );
    let mut rem = Remediator::start_in(dir, &config);
    let url = rem.url("");
    let token = rem.dir().join("token");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(bin_path("stackmedic-remediator"))
            .args(args)
            .args(["--remediator.url", &url, "--bearer-token-file"])
            .arg(&token)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    // Without credentials the pause is refused.
    let r = stackmedic_tests::http::request(
        "POST",
        &rem.url("/api/pause"),
        &[("Content-Type", "application/json")],
        Some(br#"{"reason": "x"}"#),
    )
    .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    let (ok, text) = cli(&["pause", "--reason", "replacing the disk", "--for", "1h"]);
    assert!(ok, "{text}");
    assert_eq!(rem.metric("stackmedic_remediator_paused", &[]), 1.0);
    assert!(rem.metric("stackmedic_remediator_pause_until_timestamp_seconds", &[]) > unix_now());
    docker_ok(&["stop", "-t", "1", app.name()]);
    let before = started_at(app.name());
    let r = rem
        .webhook(&payload(vec![down(app.name())]), Some("pause-secret"))
        .unwrap();
    assert_eq!(r.status, 200, "alerts are still recorded while paused");
    let subject = format!("container:{}", app.name());
    let held = rem.wait_incident(&subject, "held", Duration::from_secs(30));
    assert!(
        held["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("paused"),
        "{held:#}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(started_at(app.name()), before, "acted while paused");
    let page = stackmedic_tests::http::get(&rem.url("/")).unwrap().text();
    assert!(page.contains("Paused by on-call since"), "{page}");
    assert!(page.contains("replacing the disk"));
    assert_eq!(rem.history()["pause"]["reason"], "replacing the disk");
    let (ok, text) = cli(&["resume"]);
    assert!(ok, "{text}");
    rem.wait_incident(&subject, "healed", Duration::from_secs(60));
    assert!(is_running(app.name()));
    assert_eq!(rem.metric("stackmedic_remediator_paused", &[]), 0.0);
    let page = stackmedic_tests::http::get(&rem.url("/")).unwrap().text();
    assert!(!page.contains("Paused by on-call since"));
}
