//! Bad input never leads to an action: malformed JSON, a wrong payload version, a missing or
//! wrong token and an oversized body get a 4xx that says why; an unknown target and labels
//! trying to escape the allow-lists (`../`, `;`, a URL, an unlisted container) are recorded as
//! denials. Checked against a real container in the real Docker Engine and a listener standing
//! in for the admin API that must never be called.

use std::net::TcpListener;
use std::time::Duration;

use serde_json::json;
use stackmedic_tests::docker::{ensure_docker, run_busybox};
use stackmedic_tests::metrics;
use stackmedic_tests::remediator::{alert, payload, Remediator};
use stackmedic_tests::unique_name;

const TOKEN: &str = "t0ken-for-tests";

#[test]
fn remediator_bad_input_is_rejected_or_denied_never_acted_on() {
    ensure_docker();
    let victim = run_busybox(&unique_name("sm-victim"), &[], &["sleep", "600"]);
    let started = victim.inspect()["State"]["StartedAt"].clone();
    // Stands in for the admin API; nothing may ever connect to it.
    let admin = TcpListener::bind("127.0.0.1:0").unwrap();
    admin.set_nonblocking(true).unwrap();
    let admin_port = admin.local_addr().unwrap().port();

    let dir = tempfile::Builder::new()
        .prefix("stackmedic-remediator-")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    let config = format!(
        "global: {{max_body_bytes: 4096}}\n\
         webhook: {{bearer_token_file: '{{dir}}/token'}}\n\
         targets:\n\
         - name: apps\n  docker: {{containers: [{victim}]}}\n\
         - name: camera\n  http: {{base_url: 'http://127.0.0.1:{admin_port}'}}\n\
         rules:\n\
         - name: by-label\n  matchers: ['alertname=\"ContainerDown\"']\n  action: container_restart\n  target_label: stack\n  targets: [apps]\n  container_label: container\n\
         - name: any-page\n  matchers: ['severity=\"page\"']\n  action: container_restart\n  target_label: stack\n  targets: [apps]\n  container_label: container\n\
         - name: stream\n  matchers: ['alertname=\"StreamStuck\"']\n  action: http_sequence\n  target: camera\n  params: {{stream: {{label: stream, allowed: [cam1]}}}}\n  steps: [{{path: '/api/streams/{{stream}}/restart'}}]\n",
        victim = victim.name()
    );
    let mut rem = Remediator::start_in(dir, &config);
    let good = payload(vec![alert(
        "firing",
        &[("alertname", "Nothing")],
        "2026-11-22T10:00:00Z",
    )]);

    let r = rem
        .webhook_raw(b"{\"version\": \"4\", \"alerts\": [", Some(TOKEN))
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("invalid webhook payload"), "{}", r.text());

    let mut v3 = good.clone();
    v3["version"] = json!("3");
    let r = rem.webhook(&v3, Some(TOKEN)).unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.text()
            .contains("unsupported webhook payload version \\\"3\\\""),
        "{}",
        r.text()
    );

    let r = rem.webhook(&good, None).unwrap();
    assert_eq!(r.status, 401);
    assert!(r.text().contains("missing credentials"), "{}", r.text());
    let r = rem.webhook(&good, Some("t0ken-for-test")).unwrap();
    assert_eq!(r.status, 401);
    assert!(r.text().contains("wrong credentials"), "{}", r.text());

    let big = payload(vec![alert(
        "firing",
        &[("alertname", &"x".repeat(5000))],
        "2026-11-22T10:00:00Z",
    )]);
    let r = rem.webhook(&big, Some(TOKEN)).unwrap();
    assert_eq!(r.status, 413, "{}", r.text());

    let container_tricks = [
        ("apps", "../".to_owned() + victim.name()),
        ("apps", format!("{};docker rm -f x", victim.name())),
        ("apps", "http://127.0.0.1:2375/containers/x/kill".to_owned()),
        ("apps", "unlisted-container".to_owned()),
        ("nope", victim.name().to_owned()),
        ("../apps", victim.name().to_owned()),
    ];
    for (i, (stack, container)) in container_tricks.iter().enumerate() {
        let p = payload(vec![alert(
            "firing",
            &[
                ("alertname", "ContainerDown"),
                ("stack", stack),
                ("container", container),
            ],
            &format!("2026-11-22T10:00:0{i}Z"),
        )]);
        let r = rem.webhook(&p, Some(TOKEN)).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json().unwrap()["denied"], 1, "{container}: {}", r.text());
    }
    for (i, stream) in [
        "../admin",
        "cam1;reboot",
        "http://127.0.0.1:1/x",
        "cam1/../../x",
        "",
    ]
    .iter()
    .enumerate()
    {
        let p = payload(vec![alert(
            "firing",
            &[("alertname", "StreamStuck"), ("stream", stream)],
            &format!("2026-11-22T10:01:0{i}Z"),
        )]);
        let r = rem.webhook(&p, Some(TOKEN)).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json().unwrap()["denied"], 1, "{stream}: {}", r.text());
    }

    // The remediator's own escalation carries the original labels and so matches the broad
    // `any-page` rule; acting on it would loop. It is never acted on.
    let escalation = payload(vec![alert(
        "firing",
        &[
            ("alertname", "StackmedicRemediationFailed"),
            ("severity", "page"),
            ("stack", "apps"),
            ("container", victim.name()),
        ],
        "2026-11-22T10:02:00Z",
    )]);
    let r = rem.webhook(&escalation, Some(TOKEN)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json().unwrap();
    assert_eq!(body["queued"], 0, "{}", r.text());
    assert_eq!(body["ignored"], 1, "{}", r.text());
    assert_eq!(body["unmatched"], 0, "{}", r.text());

    let denied = rem.wait_for("denied", 11, Duration::from_secs(10));
    assert!(denied.iter().any(|d| d["detail"]
        .as_str()
        .unwrap()
        .contains("outside the allow-list")));
    assert!(denied.iter().any(|d| d["detail"]
        .as_str()
        .unwrap()
        .contains("does not name an allowed target")));
    assert!(denied.iter().any(|d| d["detail"]
        .as_str()
        .unwrap()
        .contains("not a valid container name")));
    assert!(denied.iter().any(|d| d["detail"]
        .as_str()
        .unwrap()
        .contains("not an allowed value of {stream}")));
    std::thread::sleep(Duration::from_secs(1));
    let history = rem.history();
    for a in history["actions"].as_array().unwrap() {
        assert_eq!(
            a["result"], "denied",
            "an action other than a denial: {a:#}"
        );
    }
    assert!(history["pending_jobs"].as_array().unwrap().is_empty());
    assert_eq!(
        victim.inspect()["State"]["StartedAt"],
        started,
        "the container was touched"
    );
    assert!(admin.accept().is_err(), "the admin API was called");

    let samples = metrics::scrape(&rem.url("/metrics")).unwrap();
    for (result, n) in [
        ("unauthorized", 2.0),
        ("malformed", 1.0),
        ("unsupported_version", 1.0),
        ("too_large", 1.0),
        ("accepted", 12.0),
    ] {
        assert_eq!(
            metrics::find(
                &samples,
                "stackmedic_remediator_webhooks_total",
                &[("result", result)]
            ),
            Some(n),
            "{result}"
        );
    }
}
