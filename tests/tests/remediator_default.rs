//! The embedded default configuration against the real Docker Engine: loopback only, dry run,
//! and only containers that opted in with the Docker label `stackmedic.restart=true` may be
//! named by the alert's `container` label; nothing is restarted.

use std::time::Duration;

use stackmedic_tests::docker::{ensure_docker, run_busybox};
use stackmedic_tests::remediator::{alert, payload, Remediator};
use stackmedic_tests::unique_name;

#[test]
fn remediator_default_config_is_dry_run_and_opt_in() {
    ensure_docker();
    let opted = run_busybox(
        &unique_name("sm-opted"),
        &["--label", "stackmedic.restart=true"],
        &["sleep", "600"],
    );
    let other = run_busybox(&unique_name("sm-other"), &[], &["sleep", "600"]);
    let before = (
        opted.inspect()["State"]["StartedAt"].clone(),
        other.inspect()["State"]["StartedAt"].clone(),
    );
    let mut rem = Remediator::start_default();
    let p = payload(vec![
        alert(
            "firing",
            &[("alertname", "ContainerDown"), ("container", opted.name())],
            "2026-11-22T10:00:00Z",
        ),
        alert(
            "firing",
            &[("alertname", "ContainerDown"), ("container", other.name())],
            "2026-11-22T10:00:00Z",
        ),
    ]);
    let r = rem.webhook(&p, None).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let dry = rem.wait_for("dry_run", 1, Duration::from_secs(30));
    assert_eq!(dry[0]["subject"], format!("container:{}", opted.name()));
    let denied = rem.wait_for("denied", 1, Duration::from_secs(30));
    assert!(
        denied[0]["detail"]
            .as_str()
            .unwrap()
            .contains("does not carry the label stackmedic.restart=true"),
        "{denied:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rem.history()["actions"].as_array().unwrap().len(), 2);
    assert_eq!(
        (
            opted.inspect()["State"]["StartedAt"].clone(),
            other.inspect()["State"]["StartedAt"].clone()
        ),
        before,
        "a dry run must not restart anything"
    );
    let page = stackmedic_tests::http::get(&rem.url("/")).unwrap().text();
    assert!(page.contains("Dry run"), "{page}");
}
