//! A container's full ID, its 12-character ID, an ID prefix and its name are one subject: in
//! opt-in mode (the embedded default's shape) four alerts naming one real container these four
//! ways restart it once; the other three join its incident, all recorded under the name the
//! Docker Engine reports.

use std::time::Duration;

use stackmedic_tests::docker::{ensure_docker, run_busybox};
use stackmedic_tests::remediator::{alert, payload, Remediator};
use stackmedic_tests::unique_name;

#[test]
fn remediator_id_prefix_and_name_of_one_container_are_one_subject() {
    ensure_docker();
    let app = run_busybox(
        &unique_name("sm-subject"),
        &["--label", "stackmedic.restart=true"],
        &["sleep", "600"],
    );
    let id = app.id().to_owned();
    assert!(id.len() >= 12, "{id}");
    let before = app.inspect()["State"]["StartedAt"].clone();
    let config = "global: {reconcile_interval: 0s}\n\
         targets:\n- name: opted\n  docker: {require_label: stackmedic.restart=true, stop_timeout: 1s}\n  verify: {deadline: 30s, stable_for: 1s}\n\
         rules:\n- name: restart-opted-in\n  matchers: ['container=~\".+\"']\n  action: container_restart\n  target: opted\n  container_label: container\n";
    let mut rem = Remediator::start(config);
    let names = [app.name(), id.as_str(), &id[..12], &id[..5]];
    let alerts = names
        .iter()
        .map(|n| {
            alert(
                "firing",
                &[("alertname", "ContainerDown"), ("container", n)],
                "2026-11-22T10:00:00Z",
            )
        })
        .collect();
    let r = rem.webhook(&payload(alerts), None).unwrap();
    assert_eq!(r.json().unwrap()["queued"], 4, "{}", r.text());
    rem.wait_for("succeeded", 1, Duration::from_secs(60));
    rem.wait_for("joined", 3, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));

    let subject = format!("container:{}", app.name());
    let results = rem.job_results();
    assert_eq!(results.len(), 4, "{results:?}");
    let history = rem.history();
    let rows: Vec<_> = history["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["job_id"].is_i64())
        .collect();
    let mut kinds: Vec<&str> = rows.iter().map(|a| a["result"].as_str().unwrap()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["joined", "joined", "joined", "succeeded"],
        "{history:#}"
    );
    for a in &rows {
        assert_eq!(a["subject"], subject.as_str(), "{a:#}");
    }
    let incidents = rem.incidents();
    assert_eq!(incidents.len(), 1, "{history:#}");
    assert_eq!(incidents[0]["subject"], subject.as_str());
    assert_eq!(incidents[0]["attempts"], 1);
    assert_eq!(incidents[0]["alerts"].as_array().unwrap().len(), 4);
    let after = app.inspect()["State"]["StartedAt"].clone();
    assert_ne!(before, after, "the container was not restarted");
    assert_eq!(
        rem.metric(
            "stackmedic_remediator_actions_total",
            &[("kind", "container_restart"), ("result", "succeeded")]
        ),
        1.0,
        "restarted more than once"
    );
}
