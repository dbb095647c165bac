//! Containers against the real Docker Engine: busybox containers (image made with
//! `docker import` from Debian's busybox-static) running, stopped, started again and given a
//! failing health check; an expected container that does not exist; an engine that is gone.

use std::time::Duration;

use stackmedic_tests::docker::{docker_ok, ensure_docker, run_busybox};
use stackmedic_tests::exporter::{value, Exporter, Options};
use stackmedic_tests::http;
use stackmedic_tests::metrics::{find, Sample};
use stackmedic_tests::unique_name;

const RUNNING: &str = "stackmedic_container_running";
const STARTED: &str = "stackmedic_container_started_timestamp_seconds";
const FINISHED: &str = "stackmedic_container_finished_timestamp_seconds";

#[test]
fn container_states_show_in_metrics() {
    ensure_docker();
    let web = run_busybox(&unique_name("sm-web"), &[], &["sleep", "300"]);
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
        &["sleep", "300"],
    );
    let gone = unique_name("sm-gone");
    let config = format!(
        "probes:
  - name: box
    interval: 500ms
    timeout: 500ms
    docker:
      name_pattern: \"^({web}|{sick})$\"
  - name: expected
    interval: 500ms
    timeout: 500ms
    docker:
      name_pattern: \"^{web}$\"
      expected: [{web}, {gone}]
",
        web = web.name(),
        sick = sick.name(),
    );
    let mut exporter = Exporter::start(&config);
    let box_ = ("probe", "box");
    let w = ("container", web.name());

    // Running.
    let s = exporter.wait_value(RUNNING, &[box_, w], 1.0);
    assert_eq!(value(&s, "stackmedic_docker_up", &[box_]), 1.0);
    assert_eq!(value(&s, "stackmedic_containers_matched", &[box_]), 2.0);
    assert_eq!(
        value(
            &s,
            "stackmedic_container_state",
            &[box_, w, ("state", "running")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_container_state",
            &[box_, w, ("state", "exited")]
        ),
        0.0
    );
    // The state set lists every state the Engine API knows, also those this Engine never
    // reports.
    assert_eq!(
        value(
            &s,
            "stackmedic_container_state",
            &[box_, w, ("state", "stopping")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_container_health_status",
            &[box_, w, ("status", "none")]
        ),
        1.0
    );
    assert_eq!(
        value(&s, "stackmedic_container_restarts_total", &[box_, w]),
        0.0
    );
    assert_eq!(
        value(&s, "stackmedic_container_last_exit_code", &[box_, w]),
        0.0
    );
    let first_start = value(&s, STARTED, &[box_, w]);
    let at = now();
    assert!(
        first_start > at - 120.0 && first_start <= at + 1.0,
        "started at {first_start}, now {at}"
    );

    // A failing health check.
    let k = ("container", sick.name());
    let s = exporter.wait_value(
        "stackmedic_container_health_status",
        &[box_, k, ("status", "unhealthy")],
        1.0,
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_container_health_status",
            &[box_, k, ("status", "healthy")]
        ),
        0.0
    );
    assert_eq!(
        value(&s, RUNNING, &[box_, k]),
        1.0,
        "unhealthy is still running"
    );

    // A container that never stopped reports its creation as its last stop.
    let created = value(&s, FINISHED, &[box_, w]);
    assert!(
        created <= first_start && created > first_start - 120.0,
        "never stopped: finished {created}, started {first_start}"
    );

    // Stopped: `docker stop -t 0` kills the sleep, exit code 137.
    let before_stop = now();
    docker_ok(&["stop", "-t", "0", web.name()]);
    let after_stop = now();
    let s = exporter.wait_value(RUNNING, &[box_, w], 0.0);
    // The time of the stop by the Engine's clock (ContainerDown counts from it).
    let finished = value(&s, FINISHED, &[box_, w]);
    assert!(
        finished >= before_stop - 1.0 && finished <= after_stop + 1.0,
        "stopped between {before_stop} and {after_stop}, finished {finished}"
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_container_state",
            &[box_, w, ("state", "exited")]
        ),
        1.0
    );
    assert_eq!(
        value(&s, "stackmedic_container_last_exit_code", &[box_, w]),
        137.0
    );
    assert_eq!(
        value(&s, "stackmedic_probe_success", &[box_]),
        1.0,
        "a stopped container is data, not a probe failure"
    );

    // Started again: running, with a newer start time.
    std::thread::sleep(Duration::from_millis(1100));
    docker_ok(&["start", web.name()]);
    let s = exporter.wait_value(RUNNING, &[box_, w], 1.0);
    let second_start = value(&s, STARTED, &[box_, w]);
    assert!(
        second_start > first_start + 1.0,
        "start time {second_start} must be newer than {first_start}"
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_container_state",
            &[box_, w, ("state", "running")]
        ),
        1.0
    );

    // An expected container that does not exist.
    let e = ("probe", "expected");
    let s = exporter.wait_value(
        "stackmedic_probe_failure_reason",
        &[e, ("reason", "not_found")],
        1.0,
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_container_exists",
            &[e, ("container", &gone)]
        ),
        0.0
    );
    assert_eq!(value(&s, RUNNING, &[e, ("container", &gone)]), 0.0);
    assert_eq!(value(&s, "stackmedic_container_exists", &[e, w]), 1.0);
    assert_eq!(value(&s, "stackmedic_probe_success", &[e]), 0.0);
    assert_eq!(value(&s, "stackmedic_docker_up", &[e]), 1.0);
}

#[test]
fn an_engine_that_is_gone_is_reported_and_the_exporter_keeps_serving() {
    let config = "probes:
  - name: nowhere
    interval: 300ms
    timeout: 300ms
    docker:
      host: unix:///nonexistent.sock
      expected: [owui]
";
    let mut exporter = Exporter::start(config);
    let p = ("probe", "nowhere");
    let s = exporter.wait_value(
        "stackmedic_probe_failure_reason",
        &[p, ("reason", "connect")],
        1.0,
    );
    assert_eq!(value(&s, "stackmedic_docker_up", &[p]), 0.0);
    assert_eq!(value(&s, "stackmedic_probe_success", &[p]), 0.0);
    assert_eq!(value(&s, RUNNING, &[p, ("container", "owui")]), 0.0);
    // Several failed runs later it still serves.
    let s = exporter.wait_for(
        "three failed runs",
        Duration::from_secs(20),
        |s: &[Sample]| {
            find(
                s,
                "stackmedic_probe_failures_total",
                &[p, ("reason", "connect")],
            )
            .is_some_and(|v| v >= 3.0)
        },
    );
    assert_eq!(value(&s, "stackmedic_docker_up", &[p]), 0.0);
    assert_eq!(
        http::get(&exporter.url("/-/healthy"))
            .expect("healthy")
            .status,
        200
    );
    assert!(exporter.process().is_running());
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// A socket the exporter cannot open names the operating system's reason in its failure
/// message on the landing page, not only the client's "client error (Connect)": a real Unix
/// socket of this test with mode 000 (the exporter runs as `nobody` when the test runs as root,
/// whom file modes do not stop), a regular file where the socket should be, and a missing path.
#[test]
fn an_unusable_socket_names_the_os_error() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let socket = dir.path().join("docker.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind socket");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "plain file").expect("write");
    // Writable for the exporter: connecting needs write permission before it finds no socket.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let missing = dir.path().join("missing/docker.sock");
    let config = format!(
        "probes:
  - name: denied
    interval: 300ms
    docker: {{host: 'unix://{}', expected: [owui]}}
  - name: regular-file
    interval: 300ms
    docker: {{host: 'unix://{}'}}
  - name: missing
    interval: 300ms
    docker: {{host: 'unix://{}'}}
",
        socket.display(),
        file.display(),
        missing.display()
    );
    let mut exporter = Exporter::start_with(Options {
        config: Some(&config),
        run_as: stackmedic_tests::is_root().then_some(NOBODY),
        ..Options::default()
    });
    for p in ["denied", "regular-file", "missing"] {
        exporter.wait_value(
            "stackmedic_probe_failure_reason",
            &[("probe", p), ("reason", "connect")],
            1.0,
        );
    }
    let page = http::get(&exporter.url("/")).expect("status page").text();
    for (path, cause) in [
        (&socket, "Permission denied (os error 13)"),
        (&file, "Connection refused (os error 111)"),
        (&missing, "Socket not found"),
    ] {
        let want = format!("docker engine at unix://{}: ", path.display());
        let at = page
            .find(&want)
            .unwrap_or_else(|| panic!("no message for {want} in:\n{page}"));
        let message = &page[at..];
        let message = &message[..message.find('<').unwrap_or(message.len())];
        assert!(message.contains(cause), "{cause} missing from {message:?}");
    }
    // The expected container's own line says why it is not known.
    assert!(
        page.contains("the Docker Engine did not answer: docker engine at unix://"),
        "{page}"
    );
}

/// The user and group id of `nobody`.
const NOBODY: u32 = 65534;
