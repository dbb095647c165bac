//! Every incident ends in a heal, a page or a resolve, off the drawn paths too — each case
//! against the real binary, a real Docker Engine and, where a page is involved, a real
//! Alertmanager:
//!
//! 1. a container healed, then stopped again while its alert keeps firing (and Alertmanager
//!    re-sends the same notification) is tried again in the same incident, attempts kept;
//! 2. dry run switched on with a retry waiting: the retry is not executed, the incident pages;
//! 3. a crash loop fails each attempt at once, with its exit code and last log lines, and is
//!    escalated in well under a minute;
//! 4. nothing closes silently: an attempt found too late after a restart, a refused action and a
//!    removed rule page instead of closing;
//! 5. one container is one subject: a restart and a compose up of it share one incident, and an
//!    alert naming it by ID while the Docker Engine cannot be asked waits instead of becoming a
//!    second subject;
//! 6. a resolved occurrence never acts again: a late firing after its resolve, and a firing
//!    whose resolve arrived first;
//! 7. on-call resets a flapping subject over the API (authenticated) and the CLI.

use std::time::{Duration, Instant};

use serde_json::Value;
use stackmedic_tests::alertmanager::Alertmanager;
use stackmedic_tests::docker::{
    busybox_image, docker, docker_ok, ensure_docker, is_running, run_busybox, started_at, Container,
};
use stackmedic_tests::remediator::{alert, payload, rfc3339, unix_now, Remediator};
use stackmedic_tests::{bin_path, unique_name, wait_until};

fn escalation(am: &Alertmanager) -> String {
    format!(
        "escalation: {{alertmanager_url: '{}', resend_interval: 2s, min_backoff: 200ms, timeout: 2s}}\n",
        am.url("")
    )
}

fn no_alertmanager_routes() -> Alertmanager {
    Alertmanager::start("route: {receiver: oncall}\nreceivers: [{name: oncall}]\n")
}

fn incident_of(rem: &Remediator, subject: &str) -> Option<Value> {
    rem.incidents()
        .into_iter()
        .find(|i| i["subject"] == subject)
}

fn count(rem: &Remediator, result: &str) -> usize {
    rem.actions_with(result).len()
}

#[test]
fn a_subject_failing_again_after_its_heal_is_tried_again_in_the_same_incident() {
    ensure_docker();
    let app = run_busybox(&unique_name("sm-again"), &[], &["sleep", "600"]);
    let am = no_alertmanager_routes();
    let config = format!(
        "global: {{reconcile_interval: 0s}}\n{}\
         targets:\n- name: app\n  max_attempts: 2\n  backoff: 2s\n  docker: {{containers: [{}], stop_timeout: 1s}}\n  \
           verify: {{deadline: 20s, interval: 250ms, stable_for: 2s, resolve_within: 4s}}\n\
         rules:\n- name: app-down\n  matchers: ['alertname=\"AppDown\"']\n  action: container_restart\n  target: app\n",
        escalation(&am),
        app.name()
    );
    let mut rem = Remediator::start(&config);
    let subject = format!("container:{}", app.name());
    docker_ok(&["stop", "-t", "1", app.name()]);
    let starts_at = "2026-11-22T10:00:00Z";
    let labels = [("alertname", "AppDown")];
    rem.fire(&labels, starts_at);
    let healed = rem.wait_incident(&subject, "healed", Duration::from_secs(60));
    let id = healed["id"].clone();
    assert_eq!(healed["attempts"], 1);
    assert!(
        healed["next_check_at"].as_f64().is_some(),
        "a healed incident shows when it is verified again: {healed:#}"
    );
    // Down again; Alertmanager keeps re-sending the same notification (the alert never
    // resolved): nothing but the re-check can notice.
    docker_ok(&["stop", "-t", "1", app.name()]);
    let second = wait_until(Duration::from_secs(60), Duration::from_millis(500), || {
        rem.fire(&labels, starts_at);
        incident_of(&rem, &subject).is_some_and(|i| i["attempts"] == 2 && i["state"] == "healed")
    });
    assert!(
        second,
        "the heal that did not hold was not tried again: {:#}",
        rem.history()
    );
    let inc = incident_of(&rem, &subject).unwrap();
    assert_eq!(inc["id"], id, "the same incident, attempts kept: {inc:#}");
    assert!(is_running(app.name()), "the second attempt restarted it");
    let failed = rem.actions_with("failed");
    assert!(
        failed.iter().any(|a| a["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("the heal did not hold")),
        "{failed:#?}"
    );
    assert!(
        rem.metric(
            "stackmedic_remediator_alerts_total",
            &[("decision", "duplicate")]
        ) >= 1.0,
        "the re-sends were duplicates"
    );
    assert!(
        rem.metric(
            "stackmedic_remediator_rechecks_total",
            &[("result", "failed")]
        ) >= 1.0,
        "the re-check that found the heal not holding is counted"
    );
    // Down once more: no attempts left, so on-call is paged — never silence.
    docker_ok(&["stop", "-t", "1", app.name()]);
    let paged = wait_until(Duration::from_secs(60), Duration::from_millis(500), || {
        rem.fire(&labels, starts_at);
        am.active_escalations().len() == 1
    });
    assert!(
        paged,
        "no page after the attempts ran out: {:#}",
        rem.history()
    );
    let inc = rem.wait_incident(&subject, "escalated", Duration::from_secs(5));
    assert_eq!((inc["id"].clone(), inc["attempts"].clone()), (id, 2.into()));
    assert!(
        !is_running(app.name()),
        "nothing acts on an escalated subject"
    );
}

#[test]
fn dry_run_switched_on_stops_a_stored_retry_and_pages() {
    ensure_docker();
    let ghost = unique_name("sm-dryretry");
    let _guard = Container::adopt(&ghost);
    let am = no_alertmanager_routes();
    let config = |dry: bool| {
        format!(
            "global: {{reconcile_interval: 0s, dry_run: {dry}}}\n{}\
             targets:\n- name: late\n  max_attempts: 3\n  backoff: 4s\n  docker: {{containers: [{ghost}]}}\n  verify: {{deadline: 10s, stable_for: 0s}}\n\
             rules:\n- name: late-start\n  matchers: ['alertname=\"LateDown\"']\n  action: container_start\n  target: late\n",
            escalation(&am)
        )
    };
    let mut rem = Remediator::start(&config(false));
    rem.fire(&[("alertname", "LateDown")], "2026-11-22T10:00:00Z");
    // The container does not exist: attempt 1 fails, attempt 2 is stored for 4 s later.
    let subject = format!("container:{ghost}");
    rem.wait_incident(&subject, "waiting", Duration::from_secs(30));
    // It appears, stopped: were the retry executed, it would start it.
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
    let r = rem.reconfigure(&config(true));
    assert_eq!(r.status, 200, "{}", r.text());
    let inc = rem.wait_incident(&subject, "escalated", Duration::from_secs(30));
    assert_eq!(inc["attempts"], 1, "{inc:#}");
    assert!(
        inc["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("dry run"),
        "{inc:#}"
    );
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(250), || {
            am.active_escalations().len() == 1
        }),
        "dry run stopped a remediation without telling on-call"
    );
    assert_eq!(
        docker_ok(&["inspect", "--format", "{{.State.Status}}", &ghost]),
        "created",
        "the stored retry ran in dry run"
    );
    let dry = rem.actions_with("dry_run");
    assert_eq!(dry.len(), 1, "{dry:#?}");
}

#[test]
fn a_crash_loop_fails_at_once_and_is_escalated_in_well_under_a_minute() {
    ensure_docker();
    // Exits at once after every start, with a last word in its log.
    let app = run_busybox(
        &unique_name("sm-crash"),
        &[],
        &["sh", "-c", "echo 'db: connection refused'; exit 3"],
    );
    assert!(wait_until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || !is_running(app.name())
    ));
    let am = no_alertmanager_routes();
    // The Open WebUI stack's policy of the shipped example (examples/remediator.yml): 3
    // attempts 10 s then 20 s apart, verification with a 2 min deadline and 20 s of stability.
    let name = app.name();
    let config = format!(
        "global: {{reconcile_interval: 0s}}\n{}\
         targets:\n- name: {name}\n  max_attempts: 3\n  backoff: 10s\n  max_backoff: 1m\n  flapping: {{count: 5, window: 1h}}\n  timeout: 2m\n  \
           docker: {{containers: [{name}], stop_timeout: 20s}}\n  \
           verify: {{containers: [{name}], deadline: 2m, interval: 1s, stable_for: 20s}}\n\
         rules:\n- name: container-restart\n  matchers: ['alertname=~\"ContainerDown|ContainerUnhealthy\"']\n  action: container_restart\n  target_label: container\n  targets: [{name}]\n",
        escalation(&am),
    );
    let mut rem = Remediator::start(&config);
    let first_alert = unix_now();
    // Timed on the monotonic clock: a step of the wall clock meanwhile is not time spent.
    let fired = Instant::now();
    rem.fire(
        &[("alertname", "ContainerDown"), ("container", app.name())],
        &rfc3339(first_alert),
    );
    let mut page = None;
    assert!(
        wait_until(Duration::from_secs(90), Duration::from_millis(250), || {
            page = am.active_escalations().pop();
            page.is_some()
        }),
        "the crash loop was not escalated: {:#}",
        rem.history()
    );
    let paged_after = fired.elapsed().as_secs_f64();
    assert!(
        paged_after < 60.0,
        "escalated {paged_after:.1} s after the first alert; three attempts take 10 s + 20 s of backoff"
    );
    let page = page.unwrap();
    let tried = page["annotations"]["remediation_tried"]
        .as_str()
        .unwrap_or_default();
    assert!(
        tried.contains("exit code 3") && tried.contains("db: connection refused"),
        "the page says what the container did: {tried}"
    );
    let failed = rem.actions_with("failed");
    assert_eq!(failed.len(), 3, "{failed:#?}");
    for f in &failed {
        let took = f["duration_seconds"].as_f64().unwrap_or(f64::MAX);
        assert!(
            took < 15.0,
            "an attempt waited {took} s for a container that had exited: {f:#}"
        );
        assert!(
            f["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("exit code 3"),
            "{f:#}"
        );
    }
    assert_eq!(
        rem.wait_incident(
            &format!("container:{}", app.name()),
            "escalated",
            Duration::from_secs(5)
        )["attempts"],
        3
    );
}

#[test]
fn an_attempt_found_late_after_a_restart_pages_and_keeps_its_attempts() {
    ensure_docker();
    let ghost = unique_name("sm-expired");
    let _guard = Container::adopt(&ghost);
    let am = no_alertmanager_routes();
    let config = format!(
        "global: {{reconcile_interval: 0s, resume_max_age: 2s}}\n{}\
         targets:\n- name: late\n  max_attempts: 3\n  backoff: 3s\n  docker: {{containers: [{ghost}]}}\n  verify: {{deadline: 10s, stable_for: 0s}}\n\
         rules:\n- name: late-start\n  matchers: ['alertname=\"LateDown\"']\n  action: container_start\n  target: late\n",
        escalation(&am)
    );
    let mut rem = Remediator::start(&config);
    rem.fire(&[("alertname", "LateDown")], "2026-11-22T10:00:00Z");
    let subject = format!("container:{ghost}");
    let waiting = rem.wait_incident(&subject, "waiting", Duration::from_secs(30));
    let due = waiting["next_attempt_at"].as_f64().unwrap();
    rem.kill9();
    // Down past the attempt's time by more than resume_max_age.
    while unix_now() < due + 4.0 {
        std::thread::sleep(Duration::from_millis(200));
    }
    rem.restart();
    let inc = rem.wait_incident(&subject, "escalated", Duration::from_secs(30));
    assert_eq!(inc["attempts"], 1, "attempts are kept: {inc:#}");
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(250), || {
            am.active_escalations().len() == 1
        }),
        "the late attempt closed without a page: {:#}",
        rem.history()
    );
    assert_eq!(rem.actions_with("expired").len(), 1);
    // Alertmanager sends the alert again an hour later: part of the page, not attempt 1 again.
    rem.fire(&[("alertname", "LateDown")], "2026-11-22T10:00:00Z");
    assert_eq!(rem.actions_with("failed").len(), 1);
    assert_eq!(incident_of(&rem, &subject).unwrap()["attempts"], 1);
}

#[test]
fn a_refused_action_and_a_removed_rule_page_instead_of_closing() {
    ensure_docker();
    let name = unique_name("sm-refuse");
    // Opted in, but cannot start: its command does not exist.
    let _c = Container::adopt(&name);
    docker_ok(&[
        "create",
        "--network",
        "host",
        "--name",
        &name,
        "--label",
        "stackmedic.restart=true",
        busybox_image(),
        "/no/such/command",
    ]);
    let other = unique_name("sm-unconf");
    let _o = Container::adopt(&other);
    let am = no_alertmanager_routes();
    let config = |with_other_rule: bool| {
        let mut c = format!(
            "global: {{reconcile_interval: 0s}}\n{}\
             targets:\n- name: opted\n  max_attempts: 3\n  backoff: 4s\n  docker: {{require_label: stackmedic.restart=true}}\n  verify: {{deadline: 5s, stable_for: 0s}}\n\
             - name: other\n  max_attempts: 3\n  backoff: 30s\n  docker: {{containers: [{other}]}}\n  verify: {{deadline: 5s, stable_for: 0s}}\n\
             rules:\n- name: opted-start\n  matchers: ['alertname=\"OptedDown\"']\n  action: container_start\n  target: opted\n  container_label: container\n",
            escalation(&am)
        );
        if with_other_rule {
            c.push_str("- name: other-start\n  matchers: ['alertname=\"OtherDown\"']\n  action: container_start\n  target: other\n");
        }
        c
    };
    let mut rem = Remediator::start(&config(true));
    rem.fire(
        &[("alertname", "OptedDown"), ("container", &name)],
        "2026-11-22T10:00:00Z",
    );
    rem.fire(&[("alertname", "OtherDown")], "2026-11-22T10:00:00Z");
    let subject = format!("container:{name}");
    rem.wait_incident(&subject, "waiting", Duration::from_secs(30));
    rem.wait_incident(
        &format!("container:{other}"),
        "waiting",
        Duration::from_secs(30),
    );
    // Before the retry, the container is created again without the opt-in label: the action is
    // refused when about to run.
    docker_ok(&["rm", "-f", &name]);
    docker_ok(&[
        "create",
        "--network",
        "host",
        "--name",
        &name,
        busybox_image(),
        "sleep",
        "600",
    ]);
    let refused = rem.wait_incident(&subject, "escalated", Duration::from_secs(30));
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("refused"),
        "{refused:#}"
    );
    // The other rule is removed while its next attempt waits 30 s: escalated at the reload.
    let r = rem.reconfigure(&config(false));
    assert_eq!(r.status, 200, "{}", r.text());
    let removed = rem.wait_incident(
        &format!("container:{other}"),
        "escalated",
        Duration::from_secs(10),
    );
    assert!(
        removed["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("removed from the configuration"),
        "{removed:#}"
    );
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(250), || {
            am.active_escalations().len() == 2
        }),
        "pages: {:#?}",
        am.active_escalations()
    );
    assert!(
        rem.history()["recent_incidents"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing closed silently"
    );
}

#[test]
fn a_restart_and_a_compose_up_of_one_container_share_one_incident() {
    ensure_docker();
    let name = unique_name("sm-one");
    let _guard = Container::adopt(&name);
    let dir = tempfile::tempdir().unwrap();
    let stack = dir.path().join("stack");
    std::fs::create_dir_all(&stack).unwrap();
    std::fs::write(
        stack.join("docker-compose.yml"),
        format!(
            "services:\n  app:\n    image: {}\n    container_name: {name}\n    network_mode: host\n    command: [sleep, '600']\n",
            busybox_image()
        ),
    )
    .unwrap();
    let config = format!(
        "global: {{reconcile_interval: 0s}}\n\
         targets:\n- name: {name}\n  max_attempts: 3\n  backoff: 3s\n  timeout: 60s\n  docker: {{containers: [{name}]}}\n  \
           compose: {{file: '{}', command: [docker-compose]}}\n  verify: {{deadline: 20s, stable_for: 1s}}\n\
         rules:\n- name: container-restart\n  matchers: ['alertname=\"ContainerDown\"']\n  action: container_restart\n  target_label: container\n  targets: [{name}]\n\
         - name: compose-up\n  matchers: ['alertname=\"ContainerMissing\"']\n  action: compose_up\n  target_label: container\n  targets: [{name}]\n  container_label: container\n",
        stack.join("docker-compose.yml").display()
    );
    let mut rem = Remediator::start(&config);
    // The container is gone: both alerts fire for it, together.
    let p = payload(vec![
        alert(
            "firing",
            &[("alertname", "ContainerDown"), ("container", &name)],
            "2026-11-22T10:00:00Z",
        ),
        alert(
            "firing",
            &[("alertname", "ContainerMissing"), ("container", &name)],
            "2026-11-22T10:00:01Z",
        ),
    ]);
    assert_eq!(rem.webhook(&p, None).unwrap().status, 200);
    let subject = format!("container:{name}");
    let healed = rem.wait_incident(&subject, "healed", Duration::from_secs(90));
    assert!(is_running(&name));
    let history = rem.history();
    let all: Vec<Value> = history["actions"].as_array().unwrap().clone();
    let subjects: std::collections::BTreeSet<&str> =
        all.iter().filter_map(|a| a["subject"].as_str()).collect();
    assert_eq!(subjects.len(), 1, "one subject: {subjects:?}");
    let incidents: std::collections::BTreeSet<i64> = all
        .iter()
        .filter_map(|a| a["incident_id"].as_i64())
        .collect();
    assert_eq!(incidents.len(), 1, "one incident: {history:#}");
    let succeeded: Vec<&Value> = all.iter().filter(|a| a["result"] == "succeeded").collect();
    assert_eq!(succeeded.len(), 1, "{history:#}");
    assert_eq!(
        succeeded[0]["action"], "compose_up",
        "the missing container came back by compose up"
    );
    assert!(healed["alerts_total"].as_i64() == Some(2), "{healed:#}");
}

#[test]
fn an_alert_naming_a_container_by_id_waits_for_the_engine_instead_of_a_second_subject() {
    ensure_docker();
    let app = run_busybox(&unique_name("sm-byid"), &[], &["sleep", "600"]);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let config = format!(
        "global: {{reconcile_interval: 0s}}\n\
         docker: {{host: 'unix://{}'}}\n\
         targets:\n- name: apps\n  docker: {{require_label: stackmedic.test=byid}}\n  verify: {{deadline: 20s, stable_for: 1s}}\n\
         rules:\n- name: restart\n  matchers: ['alertname=\"AppDown\"']\n  action: container_restart\n  target: apps\n  container_label: container\n",
        socket.display()
    );
    // Needs the opt-in label: a container run with it.
    drop(app);
    let app = run_busybox(
        &unique_name("sm-byid"),
        &["--label", "stackmedic.test=byid"],
        &["sleep", "600"],
    );
    let mut rem = Remediator::start(&config);
    let before = started_at(app.name());
    // The Engine cannot be asked (its socket is not there yet); one alert names the container by
    // its short ID, another by its name.
    let short = &app.id()[..12];
    let p = payload(vec![
        alert(
            "firing",
            &[("alertname", "AppDown"), ("container", short)],
            "2026-11-22T10:00:00Z",
        ),
        alert(
            "firing",
            &[("alertname", "AppDown"), ("container", app.name())],
            "2026-11-22T10:00:01Z",
        ),
    ]);
    assert_eq!(rem.webhook(&p, None).unwrap().status, 200);
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
            rem.metric("stackmedic_remediator_subject_postponed_total", &[]) >= 2.0
        }),
        "the jobs did not wait for the Engine: {:#}",
        rem.history()
    );
    let pending = rem.history()["pending_jobs"].clone();
    assert!(
        pending
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["note"].as_str().unwrap_or_default().contains("canonical")),
        "{pending:#}"
    );
    assert!(rem.incidents().is_empty(), "no incident on a raw label");
    // The Engine is back.
    std::os::unix::fs::symlink("/var/run/docker.sock", &socket).unwrap();
    let subject = format!("container:{}", app.name());
    rem.wait_incident(&subject, "healed", Duration::from_secs(60));
    assert_ne!(started_at(app.name()), before, "restarted once");
    assert_eq!(count(&rem, "succeeded"), 1, "{:#}", rem.history());
    assert_eq!(count(&rem, "joined"), 1, "{:#}", rem.history());
    assert_eq!(rem.incidents().len(), 1);
}

#[test]
fn a_resolved_occurrence_never_acts_again() {
    ensure_docker();
    let app = run_busybox(&unique_name("sm-final"), &[], &["sleep", "600"]);
    let config = format!(
        "global: {{reconcile_interval: 0s}}\n\
         targets:\n- name: app\n  docker: {{containers: [{}], stop_timeout: 1s}}\n  verify: {{deadline: 20s, stable_for: 0s}}\n\
         rules:\n- name: app-down\n  matchers: ['alertname=\"AppDown\"']\n  action: container_restart\n  target: app\n",
        app.name()
    );
    let mut rem = Remediator::start(&config);
    let labels = [("alertname", "AppDown"), ("instance", "a")];
    let start = "2026-11-22T10:00:00Z";
    rem.fire(&labels, start);
    rem.wait_for("succeeded", 1, Duration::from_secs(60));
    let mut resolved = alert("resolved", &labels, start);
    resolved["endsAt"] = rfc3339(unix_now()).into();
    assert_eq!(
        rem.webhook(&payload(vec![resolved]), None).unwrap().status,
        200
    );
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || rem.incidents().is_empty()
    ));
    let after_heal = started_at(app.name());
    // A second Alertmanager's firing of the same occurrence arrives late.
    let r = rem
        .webhook(&payload(vec![alert("firing", &labels, start)]), None)
        .unwrap();
    assert_eq!(r.status, 200);
    let body: Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(
        (body["queued"].clone(), body["duplicates"].clone()),
        (0.into(), 1.into()),
        "{body}"
    );

    // Another occurrence whose resolve arrives before its firing.
    let labels_b = [("alertname", "AppDown"), ("instance", "b")];
    let start_b = "2026-11-22T11:00:00Z";
    let mut early = alert("resolved", &labels_b, start_b);
    early["endsAt"] = rfc3339(unix_now()).into();
    assert_eq!(
        rem.webhook(&payload(vec![early]), None).unwrap().status,
        200
    );
    let r = rem
        .webhook(&payload(vec![alert("firing", &labels_b, start_b)]), None)
        .unwrap();
    let body: Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(
        (body["queued"].clone(), body["duplicates"].clone()),
        (0.into(), 1.into()),
        "{body}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        started_at(app.name()),
        after_heal,
        "a healthy container was restarted"
    );
    assert_eq!(count(&rem, "succeeded"), 1);
    assert!(rem.incidents().is_empty());
}

#[test]
fn on_call_resets_a_flapping_subject_over_the_api_and_the_cli() {
    ensure_docker();
    let app = run_busybox(&unique_name("sm-reset"), &[], &["sleep", "600"]);
    let am = no_alertmanager_routes();
    let dir = tempfile::Builder::new()
        .prefix("stackmedic-remediator-")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("token"), "reset-secret\n").unwrap();
    let config = format!(
        "global: {{reconcile_interval: 0s}}\n{}\
         webhook: {{bearer_token_file: '{{dir}}/token'}}\n\
         targets:\n- name: app\n  flapping: {{count: 2, window: 1h}}\n  docker: {{containers: [{}], stop_timeout: 1s}}\n  verify: {{deadline: 20s, stable_for: 0s}}\n\
         rules:\n- name: app-down\n  matchers: ['alertname=\"AppDown\"']\n  action: container_restart\n  target: app\n",
        escalation(&am),
        app.name()
    );
    let mut rem = Remediator::start_in(dir, &config);
    let token = Some("reset-secret");
    let subject = format!("container:{}", app.name());
    let send = |rem: &Remediator, status: &str, start: &str| {
        let mut a = alert(status, &[("alertname", "AppDown")], start);
        if status == "resolved" {
            a["endsAt"] = rfc3339(unix_now()).into();
        }
        let r = rem.webhook(&payload(vec![a]), token).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    };
    // Two outages, each healed and resolved.
    for (i, start) in ["2026-11-22T10:00:00Z", "2026-11-22T11:00:00Z"]
        .iter()
        .enumerate()
    {
        send(&rem, "firing", start);
        rem.wait_for("succeeded", i + 1, Duration::from_secs(60));
        send(&rem, "resolved", start);
        assert!(wait_until(
            Duration::from_secs(10),
            Duration::from_millis(100),
            || rem.incidents().is_empty()
        ));
    }
    // The third: flapping, paged without an action.
    let third = "2026-11-22T12:00:00Z";
    send(&rem, "firing", third);
    rem.wait_incident(&subject, "escalated", Duration::from_secs(30));
    assert!(wait_until(
        Duration::from_secs(20),
        Duration::from_millis(250),
        || am.active_escalations().len() == 1
    ));
    let before = started_at(app.name());
    let page = stackmedic_tests::http::get(&rem.url("/")).unwrap().text();
    assert!(
        page.contains(&format!("stackmedic-remediator reset {subject}")),
        "the page shows the reset"
    );

    // Without credentials: refused.
    let path = format!("/api/subjects/{}/reset", subject.replace(':', "%3A"));
    let r = stackmedic_tests::http::request("POST", &rem.url(&path), &[], Some(b"{}")).unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    let r = stackmedic_tests::http::request(
        "POST",
        &rem.url(&path),
        &[("Authorization", "Bearer wrong")],
        Some(b"{}"),
    )
    .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    // With the webhook's token: the page resolves, the subject is re-armed, the alert acts.
    let r = stackmedic_tests::http::request(
        "POST",
        &rem.url(&path),
        &[
            ("Authorization", "Bearer reset-secret"),
            ("Content-Type", "application/json"),
        ],
        Some(br#"{"note": "fixed the disk by hand"}"#),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let body: Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(
        (body["status"].clone(), body["requeued"].clone()),
        ("reset".into(), 1.into()),
        "{body}"
    );
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(250), || {
            am.active_escalations().is_empty()
        }),
        "the page did not resolve"
    );
    rem.wait_for("succeeded", 3, Duration::from_secs(60));
    assert_ne!(started_at(app.name()), before, "the re-armed alert acted");
    let resets = rem.actions_with("reset");
    assert!(
        resets[0]["detail"]
            .as_str()
            .unwrap()
            .contains("fixed the disk by hand"),
        "{resets:#?}"
    );
    // A reset while the subject's incident is healed, not escalated: 409, nothing changes.
    let r = stackmedic_tests::http::request(
        "POST",
        &rem.url(&path),
        &[("Authorization", "Bearer reset-secret")],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 409, "{}", r.text());
    // The CLI form, once the incident closed: the flapping history is cleared.
    send(&rem, "resolved", third);
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || rem.incidents().is_empty()
    ));
    let out = std::process::Command::new(bin_path("stackmedic-remediator"))
        .args([
            "reset",
            &subject,
            "--note",
            "from the shell",
            "--remediator.url",
            &rem.url(""),
            "--bearer-token-file",
        ])
        .arg(rem.dir().join("token"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("flapping history is cleared"), "{text}");
    let out = std::process::Command::new(bin_path("stackmedic-remediator"))
        .args(["reset", &subject, "--remediator.url", &rem.url("")])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the CLI reset without credentials must fail"
    );
    assert_eq!(
        rem.metric("stackmedic_remediator_resets_total", &[]),
        2.0,
        "the two resets that were done are counted"
    );
    // The next outage acts again: the flapping history was cleared.
    send(&rem, "firing", "2026-11-22T13:00:00Z");
    rem.wait_for("succeeded", 4, Duration::from_secs(60));
    let _ = docker(&["ps"]);
}
