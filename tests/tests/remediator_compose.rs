//! `compose_up` for a stack whose container is gone (the Open WebUI stack's recovery): a real compose CLI
//! (the `docker compose` plugin, or Debian's `docker-compose`) brings the stack up in the real
//! Docker Engine, and verification waits until the container runs.

use std::path::PathBuf;
use std::time::Duration;

use stackmedic_tests::docker::{busybox_image, docker, ensure_docker, Container};
use stackmedic_tests::remediator::{alert, payload, Remediator};
use stackmedic_tests::unique_name;

/// The compose command as YAML flow list.
fn compose_command() -> String {
    if docker(&["compose", "version"]).status.success() {
        return "[docker, compose]".into();
    }
    let path = stackmedic_tests::require_program(&["/usr/bin/docker-compose"], "docker-compose");
    format!("['{}']", path.display())
}

#[test]
fn remediator_compose_up_brings_back_a_missing_container() {
    ensure_docker();
    let image = busybox_image();
    let name = unique_name("sm-owui");
    let project = name.replace(['.', '-'], "_").to_lowercase();
    let _guard = Container::adopt(&name);
    let stack = tempfile::Builder::new()
        .prefix("stackmedic-stack-")
        .tempdir()
        .unwrap();
    let file: PathBuf = stack.path().join("docker-compose.yml");
    std::fs::write(
        &file,
        format!(
            "services:\n  owui:\n    image: {image}\n    container_name: {name}\n    network_mode: host\n    command: [sleep, '600']\n"
        ),
    )
    .unwrap();
    let config = format!(
        "targets:\n- name: owui-stack\n  timeout: 120s\n  compose: {{file: '{}', project_name: {project}, command: {}}}\n  verify: {{containers: [{name}], deadline: 60s}}\n\
         rules:\n- name: owui-gone\n  matchers: ['alertname=\"OwuiContainerMissing\"']\n  action: compose_up\n  target: owui-stack\n",
        file.display(),
        compose_command()
    );
    let mut rem = Remediator::start(&config);
    assert!(
        !docker(&["inspect", &name]).status.success(),
        "container exists before the test"
    );
    let p = payload(vec![alert(
        "firing",
        &[("alertname", "OwuiContainerMissing")],
        "2026-11-22T10:00:00Z",
    )]);
    assert_eq!(rem.webhook(&p, None).unwrap().status, 200);
    let ok = rem.wait_for("succeeded", 1, Duration::from_secs(150));
    assert_eq!(ok[0]["action"], "compose_up");
    assert!(
        ok[0]["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("verified {name}")),
        "{ok:?}"
    );
    let guard = Container::adopt(&name);
    assert_eq!(guard.status().as_deref(), Some("running"));
    let _ = docker(&["network", "rm", &format!("{project}_default")]);
}
