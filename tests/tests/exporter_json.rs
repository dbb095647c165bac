//! `json` probes of the camera/PLC app's admin API, exactly as `examples/exporter.d/camera-plc.yml` ships
//! them, and the shipped alerts over them in a real Prometheus: RingWebrtcStuck with the
//! `camera` label and CameraDaemonUnhealthy fire, as the rules of `examples/remediator.yml`
//! expect, and so do StreamUnhealthy (label `stream`) and RestartErrorsBurst.
//!
//! No real camera/PLC app exists here (it is the runbooks' own application), so a real nginx
//! stands in for its admin API: it serves JSON documents this test writes, in the shapes the
//! example describes, and refuses requests without the bearer token, as the app does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stackmedic_tests::alerting;
use stackmedic_tests::exporter::{value, Exporter, Options, WAIT};
use stackmedic_tests::metrics::find;
use stackmedic_tests::nginx::Nginx;
use stackmedic_tests::prometheus::Prometheus;

const TOKEN: &str = "example-admin-token";

fn rfc3339(seconds_ago: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(now - seconds_ago))
        .to_string()
}

fn admin_api() -> Nginx {
    let nginx = Nginx::start(&format!(
        "location /api/ {{\n\
           default_type application/json;\n\
           if ($http_authorization != \"Bearer {TOKEN}\") {{ return 401 '{{\"detail\":\"not authenticated\"}}'; }}\n\
           root {{www}};\n\
           try_files $uri.json =404;\n\
         }}\n"
    ));
    nginx.write(
        "www/api/monitor/streams.json",
        r#"{"streams": [
            {"name": "cam-entrance", "kind": "rtsp", "healthy": true, "restarts": 0},
            {"name": "cam-yard", "kind": "rtsp", "healthy": false, "restarts": 4},
            {"name": "front-door", "kind": "ring", "healthy": false,
             "webrtc": {"state": "connecting", "since": "2026-11-28T10:00:00Z"}},
            {"name": "garage", "kind": "ring", "healthy": true,
             "webrtc": {"state": "connected", "since": "2026-11-28T09:00:00Z"}}
        ]}"#,
    );
    let entry = |kind: &str, ago: u64| {
        format!(
            "{{\"type\": \"{kind}\", \"service\": \"ffmpeg-cam-yard\", \"timestamp\": \"{}\", \"message\": \"exit status 1\"}}",
            rfc3339(ago)
        )
    };
    nginx.write(
        "www/api/admin/logs.json",
        format!(
            "{{\"entries\": [{}, {}, {}, {}, {}]}}",
            entry("restart_error", 120),
            entry("restart_error", 300),
            entry("restart_error", 600),
            entry("restart_error", 2400),
            entry("restart", 60)
        ),
    );
    nginx.write(
        "www/api/system/status.json",
        r#"{"daemon": {"state": "degraded", "healthy": false}, "plc": {"connected": true}, "uptime_seconds": 86400}"#,
    );
    nginx.write(
        "www/api/monitor/slo.json",
        r#"{"availability": 0.998, "stream_latency_p95_seconds": 2.5}"#,
    );
    nginx
}

/// The json probes of the shipped camera/PLC app's stack file, pointed at the stand-in, with
/// their token from a file and runs every half second.
fn example_probes(port: u16) -> Vec<serde_json::Value> {
    let text = alerting::read_repo_file("examples/exporter.d/camera-plc.yml")
        .replace(
            "http://127.0.0.1:8000/",
            &format!("http://127.0.0.1:{port}/"),
        )
        .replace(
            "bearer_token_env: STACKMEDIC_CAMERA_APP_TOKEN",
            "bearer_token_file: '{dir}/token'",
        )
        .lines()
        .map(|l| {
            let t = l.trim_start();
            let indent = &l[..l.len() - t.len()];
            if t.starts_with("interval:") {
                format!("{indent}interval: 500ms")
            } else if t.starts_with("timeout:") {
                format!("{indent}timeout: 450ms")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("the stack file is YAML");
    doc["probes"]
        .as_array()
        .expect("probes")
        .iter()
        .filter(|p| p.get("json").is_some())
        .cloned()
        .collect()
}

#[test]
fn the_example_reads_the_admin_api_and_the_shipped_alerts_fire() {
    let api = admin_api();
    let mut probes = example_probes(api.port());
    probes.push(serde_json::json!({
        "name": "wrong-token",
        "interval": "500ms",
        "timeout": "450ms",
        "json": {
            "url": format!("http://127.0.0.1:{}/api/system/status", api.port()),
            "headers": {"Authorization": "Bearer wrong"},
            "values": [{"field": "daemon_healthy", "pointer": "/daemon/healthy"}]
        }
    }));
    let config = serde_json::json!({ "probes": probes }).to_string();
    let mut exporter = Exporter::start_with(Options {
        config: Some(&config),
        files: vec![("token", format!("{TOKEN}\n").into_bytes())],
        ..Default::default()
    });
    let probes = [
        "camera-streams",
        "camera-restart-log",
        "camera-system",
        "camera-slo",
        "wrong-token",
    ];
    let s = exporter.wait_for("every json probe ran", WAIT, |s| {
        probes
            .iter()
            .all(|p| find(s, "stackmedic_probe_success", &[("probe", p)]).is_some())
    });
    for p in &probes[..4] {
        assert_eq!(
            value(&s, "stackmedic_probe_success", &[("probe", p)]),
            1.0,
            "{p}"
        );
        assert_eq!(
            value(&s, "stackmedic_http_status_code", &[("probe", p)]),
            200.0,
            "{p}"
        );
    }
    let element = |field: &str, e: &str| {
        find(
            &s,
            "stackmedic_json_element_value",
            &[
                ("probe", "camera-streams"),
                ("field", field),
                ("element", e),
            ],
        )
    };
    assert_eq!(element("healthy", "cam-entrance"), Some(1.0));
    assert_eq!(element("healthy", "cam-yard"), Some(0.0));
    assert_eq!(element("restarts", "cam-yard"), Some(4.0));
    assert_eq!(element("webrtc_connecting", "front-door"), Some(1.0));
    assert_eq!(element("webrtc_connecting", "garage"), Some(0.0));
    // RTSP streams have no WebRTC session: no series, and no problem.
    assert_eq!(element("webrtc_connecting", "cam-yard"), None);
    // 2026-11-28T10:00:00Z
    assert_eq!(
        element("webrtc_state_since", "front-door"),
        Some(1_795_860_000.0)
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_json_elements",
            &[("probe", "camera-streams")]
        ),
        4.0
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_json_elements_matching",
            &[("probe", "camera-streams"), ("count", "unhealthy")]
        ),
        2.0
    );
    // Three restart errors in the last 15 minutes; one older, and one restart that worked.
    assert_eq!(
        value(
            &s,
            "stackmedic_json_elements_matching",
            &[
                ("probe", "camera-restart-log"),
                ("count", "recent_restart_errors")
            ]
        ),
        3.0
    );
    let field =
        |p: &str, f: &str| value(&s, "stackmedic_json_value", &[("probe", p), ("field", f)]);
    assert_eq!(field("camera-system", "daemon_healthy"), 0.0);
    assert_eq!(field("camera-system", "plc_connected"), 1.0);
    assert_eq!(field("camera-system", "uptime_seconds"), 86400.0);
    assert_eq!(field("camera-slo", "availability_ratio"), 0.998);
    // Without the token the app answers 401: reason http_status, nothing read.
    assert_eq!(
        value(
            &s,
            "stackmedic_http_status_code",
            &[("probe", "wrong-token")]
        ),
        401.0
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_probe_failure_reason",
            &[("probe", "wrong-token"), ("reason", "http_status")]
        ),
        1.0
    );
    assert!(find(&s, "stackmedic_json_value", &[("probe", "wrong-token")]).is_none());

    // The shipped rules (for: shortened to 2 s) over these series in a real Prometheus.
    let rules = alerting::with_for(
        &alerting::read_repo_file("alerts/stackmedic.rules.yml"),
        "2s",
    );
    let camera_rules = alerting::with_for(
        &alerting::read_repo_file("alerts/stacks/camera-plc.rules.yml"),
        "2s",
    );
    let prom = Prometheus::start_with_rules(
        &format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n\
             - {{job_name: stackmedic-exporter, static_configs: [{{targets: ['127.0.0.1:{}']}}]}}\n",
            exporter.port()
        ),
        &[
            ("stackmedic.rules.yml", &rules),
            ("camera-plc.rules.yml", &camera_rules),
        ],
    );
    let expected: [(&str, &[(&str, &str)]); 4] = [
        (
            "RingWebrtcStuck",
            &[("camera", "front-door"), ("remediation", "webrtc_restart")],
        ),
        (
            "StreamUnhealthy",
            &[("stream", "cam-yard"), ("remediation", "stream_restart")],
        ),
        (
            "CameraDaemonUnhealthy",
            &[
                ("probe", "camera-system"),
                ("remediation", "daemon_restart"),
            ],
        ),
        (
            "RestartErrorsBurst",
            &[
                ("probe", "camera-restart-log"),
                ("count", "recent_restart_errors"),
            ],
        ),
    ];
    let mut last = serde_json::Value::Null;
    let all_fired =
        stackmedic_tests::wait_until(Duration::from_secs(30), Duration::from_millis(250), || {
            last = prom.alerts().unwrap_or_default();
            expected
                .iter()
                .all(|(name, labels)| firing(&last, name, labels).is_some())
        });
    assert!(all_fired, "not every camera alert fired:\n{last:#}");
    // Exactly those streams: a healthy stream, and a Ring camera stuck connecting (which is
    // RingWebrtcStuck), are not StreamUnhealthy; a connected Ring camera is not stuck.
    let names = |alert: &str, label: &str| -> Vec<String> {
        last.as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["labels"]["alertname"] == alert && a["state"] == "firing")
            .filter_map(|a| a["labels"][label].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(names("StreamUnhealthy", "stream"), ["cam-yard"]);
    assert_eq!(names("RingWebrtcStuck", "camera"), ["front-door"]);
}

fn firing<'a>(
    alerts: &'a serde_json::Value,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a serde_json::Value> {
    alerts.as_array()?.iter().find(|a| {
        a["labels"]["alertname"] == name
            && a["state"] == "firing"
            && labels.iter().all(|(k, v)| a["labels"][*k] == *v)
    })
}
