//! Every rule of the shipped `examples/remediator.yml` (the rules of the per-stack files it
//! includes, `examples/remediator.d/`) fired once, end to end, by the alert meant
//! to fire it: the example set with only its documented values changed, real dockerd,
//! Prometheus, Alertmanager, stackmedic-exporter and stackmedic-remediator.
//!
//! - `container-restart` by `ContainerDown`: the watched container is stopped.
//! - `compose-up` by `ContainerMissing`: the container is removed, and the real `docker-compose`
//!   (the documented alternative to the Compose plugin) recreates it from a compose file.
//! - `stream-restart` by `HlsPlaylistStale`, `plc-route-add-and-connect` by `PlcAdsNoRoute`,
//!   `ring-webrtc-restart` by `RingWebrtcStuck`, `daemon-restart` by `CameraDaemonUnhealthy`: the
//!   camera/PLC app's address points at the admin-API recorder fixture (the app has no real
//!   peer here), which serves no playlist (the stream reads as stale), a route status without
//!   the route, a Ring camera stuck connecting and an unhealthy daemon; it records the calls.
//! - `plc-native-route-add` by `PlcAdsNoRoute`: a dry run, as shipped (no TwinCAT router here).
//!
//! And a container in a real restart loop (Docker's restart policy, its command exiting after a
//! second) drives `ContainerRestarting`: its restart count is seen to grow, the alert fires and
//! reaches the ticket receiver. The on-call and ticket receivers are the tests' own recording
//! fixture (no real pager runs here).

use std::time::Duration;

use serde_json::Value;
use stackmedic_tests::admin_api::{AdminApi, Rule};
use stackmedic_tests::docker::{busybox_image, docker, ensure_docker, run_busybox, Container};
use stackmedic_tests::examples::{
    loop_dir, run_watched, watched_command, ExampleSet, LoopValues, Ports, Stack,
};
use stackmedic_tests::webhook_sink::WebhookSink;
use stackmedic_tests::{free_port, http, unique_name, wait_until};

/// The audit rows of `rule`.
fn rows_of(stack: &Stack, rule: &str) -> Vec<Value> {
    stack.history()["actions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["rule"] == rule)
        .collect()
}

fn has_row(stack: &Stack, rule: &str, alertname: &str, result: &str) -> bool {
    rows_of(stack, rule)
        .iter()
        .any(|a| a["alertname"] == alertname && a["result"] == result)
}

#[test]
fn every_shipped_rule_fires_once_and_a_restart_loop_raises_container_restarting() {
    ensure_docker();
    let dir = loop_dir("stackmedic-every-rule-");
    let d = dir.path();
    let name = unique_name("sm-rules-owui");
    let looping = unique_name("sm-rules-loop");
    let www = d.join("www");
    let web_port = free_port();
    let web = format!("http://127.0.0.1:{web_port}/");
    let sink = WebhookSink::start();
    let camera_app = AdminApi::start(&[
        Rule::json(
            "/api/plc/ads/route/status",
            r#"{"connected": true, "route": {"present": false}, "ads": {"state": "run", "device_state": 0, "last_error": 0}}"#,
        ),
        // A Ring camera stuck connecting; the daemon unhealthy.
        Rule::json(
            "/api/monitor/streams",
            r#"{"streams": [{"name": "front-door", "kind": "ring", "healthy": false, "webrtc": {"state": "connecting"}}]}"#,
        ),
        Rule::json(
            "/api/system/status",
            r#"{"daemon": {"state": "failed", "healthy": false}, "plc": {"connected": true}}"#,
        ),
    ]);
    let closed = format!("127.0.0.1:{}", free_port());
    let ports = Ports::pick();
    let token_file = d.join("token");
    // The stack's compose file, for the real docker-compose.
    let compose = d.join("stack/docker-compose.yml");
    std::fs::create_dir(d.join("stack")).unwrap();
    std::fs::write(
        &compose,
        format!(
            "version: '2.4'\nservices:\n  owui:\n    image: {}\n    container_name: {name}\n    network_mode: host\n    command: {}\n    volumes: ['{}:/www:ro']\n",
            busybox_image(),
            serde_json::to_string(&watched_command(web_port)).unwrap(),
            www.display()
        ),
    )
    .unwrap();

    let mut values = LoopValues {
        container: &name,
        web_port,
        closed: &closed,
        access_log: &d.join("access.log"),
        compose_file: &compose,
        camera_app: &camera_app.url("").replace("http://", ""),
        sink_port: sink.port(),
        token_file: &token_file,
    }
    .replacements(&ports);
    values.extend([
        ("leitstand", looping.clone()),
        ("[docker, compose]", "[docker-compose]".to_owned()),
    ]);
    let set = ExampleSet::copy(&values);

    let container = run_watched(&name, &www, web_port);
    // A container that exits after a second, restarted by Docker over and over.
    let restarting = run_busybox(
        &looping,
        &["--restart", "always"],
        &["sh", "-c", "sleep 1; exit 3"],
    );
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            http::get(&web).is_ok_and(|r| r.status == 200)
        }),
        "the watched container does not serve {web}"
    );
    let mut stack = Stack::start(&set, ports, &token_file);
    // The restart-looping container's count as Prometheus first sees it.
    let count = format!("stackmedic_container_restarts_total{{container=\"{looping}\"}}");
    let mut first = None;
    assert!(
        wait_until(Duration::from_secs(60), Duration::from_millis(500), || {
            first = stack.query(&count);
            first.is_some()
        }),
        "Prometheus never saw the restart count of {looping}"
    );
    let first = first.unwrap_or_default();

    // stream-restart, plc-route-add-and-connect and plc-native-route-add: the fixture's stream is
    // unreadable and its route missing from the start.
    let fired = wait_until(Duration::from_secs(120), Duration::from_millis(500), || {
        has_row(&stack, "stream-restart", "HlsPlaylistStale", "succeeded")
            && has_row(
                &stack,
                "ring-webrtc-restart",
                "RingWebrtcStuck",
                "succeeded",
            )
            && has_row(
                &stack,
                "daemon-restart",
                "CameraDaemonUnhealthy",
                "succeeded",
            )
            && has_row(
                &stack,
                "plc-route-add-and-connect",
                "PlcAdsNoRoute",
                "succeeded",
            )
            && has_row(&stack, "plc-native-route-add", "PlcAdsNoRoute", "dry_run")
    });
    assert!(
        fired,
        "the camera app's rules did not run: {:#}\n{}",
        stack.history(),
        stack.describe()
    );
    assert!(camera_app.count("/api/streams/cam-entrance/restart") >= 1);
    assert!(camera_app.count("/api/plc/ads/route/add") >= 1);
    assert!(camera_app.count("/api/plc/connect") >= 1);
    assert!(camera_app.count("/api/ring/front-door/webrtc/stop") >= 1);
    assert!(camera_app.count("/api/ring/front-door/webrtc/start") >= 1);
    assert!(camera_app.count("/api/admin/service/restart") >= 1);

    // container-restart by ContainerDown.
    docker(&["stop", "-t", "1", &name]);
    assert!(
        wait_until(Duration::from_secs(90), Duration::from_millis(250), || {
            has_row(&stack, "container-restart", "ContainerDown", "succeeded")
        }),
        "container-restart did not run: {:#}",
        stack.history()
    );

    // compose-up by ContainerMissing: the real docker-compose recreates the container.
    drop(container);
    assert!(
        wait_until(Duration::from_secs(120), Duration::from_millis(250), || {
            has_row(&stack, "compose-up", "ContainerMissing", "succeeded")
        }),
        "compose-up did not run: {:#}\n{}",
        stack.history(),
        stack.describe()
    );
    let recreated = Container::adopt(&name);
    assert_eq!(recreated.status().as_deref(), Some("running"));
    assert!(http::get(&web).is_ok_and(|r| r.status == 200));

    // Every rule of the shipped example ran (or, as shipped, dry-ran): the rules of every file
    // examples/remediator.yml includes.
    let mut rules = Vec::new();
    for entry in std::fs::read_dir(set.path("examples/remediator.d")).unwrap() {
        let shipped: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap())
                .unwrap();
        rules.extend(shipped["rules"].as_array().cloned().unwrap_or_default());
    }
    assert_eq!(
        rules.len(),
        7,
        "the rules of examples/remediator.d/: {rules:#?}"
    );
    for rule in &rules {
        let rule = rule["name"].as_str().unwrap();
        assert!(
            rows_of(&stack, rule)
                .iter()
                .any(|a| a["result"] == "succeeded" || a["result"] == "dry_run"),
            "rule {rule} never ran: {:#}",
            stack.history()
        );
    }

    // ContainerRestarting: the restart count grew (Docker doubles its restart delay, so by
    // now slowly), the alert fires and becomes a ticket.
    assert!(
        wait_until(Duration::from_secs(90), Duration::from_millis(500), || {
            stack.query(&count).is_some_and(|n| n >= first + 3.0)
        }),
        "the restart count of {looping} does not grow: {first} -> {:?}",
        stack.query(&count)
    );
    assert!(
        wait_until(Duration::from_secs(180), Duration::from_millis(500), || {
            sink.alerts("/ticket")
                .iter()
                .any(|(a, _)| a["labels"]["alertname"] == "ContainerRestarting")
        }),
        "ContainerRestarting did not reach the tickets: {:#?}",
        stack.prometheus_alerts()
    );
    assert!(stack.firing("ContainerRestarting", "container", &looping));
    drop(restarting);
    drop(recreated);
}
