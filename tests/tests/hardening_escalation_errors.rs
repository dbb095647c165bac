//! An escalation that cannot be delivered says why in its `last_error`, so on-call can tell a
//! stopped Alertmanager from a hanging one from a misconfigured URL:
//!
//! * a real Alertmanager, stopped: `connection refused`;
//! * a loopback listener that accepts and never answers (no real peer behaves so on purpose;
//!   the test's own listener stands in for a hung Alertmanager): `timeout`;
//! * a real Alertmanager reached under a wrong path prefix: the HTTP status with the start of
//!   Alertmanager's answer.
//!
//! The failing action is an `http_sequence` step answered 500 by the test library's admin-API
//! recorder (the camera/PLC app's API has no real peer), with `max_attempts: 1`, so the
//! incident escalates at its first failure.

use std::net::TcpListener;
use std::time::Duration;

use stackmedic_tests::admin_api::{AdminApi, Rule};
use stackmedic_tests::alertmanager::Alertmanager;
use stackmedic_tests::remediator::{alert, payload, Remediator};
use stackmedic_tests::wait_until;

fn config(alertmanager: &str, api: &AdminApi) -> String {
    format!(
        "global: {{reconcile_interval: 0s}}\n\
         escalation: {{alertmanager_url: '{alertmanager}', min_backoff: 200ms, max_backoff: 1s, timeout: 1s}}\n\
         targets:\n- name: camera-app\n  max_attempts: 1\n  http: {{base_url: '{}'}}\n\
         rules:\n- name: stream-restart\n  matchers: ['alertname=\"HlsPlaylistStale\"']\n  action: http_sequence\n  target: camera-app\n\
         \x20 steps: [{{path: '/api/streams/cam1/restart'}}]\n",
        api.url("/")
    )
}

/// Escalates one incident against `alertmanager` and returns the escalation's `last_error`
/// once it has failed twice.
fn last_error(alertmanager: &str) -> String {
    let api = AdminApi::start(&[Rule::status("/api/streams/", 500)]);
    let mut rem = Remediator::start(&config(alertmanager, &api));
    let p = payload(vec![alert(
        "firing",
        &[("alertname", "HlsPlaylistStale"), ("bad-name", "x")],
        "2026-11-22T10:00:00Z",
    )]);
    assert_eq!(rem.webhook(&p, None).unwrap().status, 200);
    rem.wait_for("escalated", 1, Duration::from_secs(30));
    let mut error = String::new();
    let failed = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        let history = rem.history();
        let Some(e) = history["escalations"].get(0) else {
            return false;
        };
        error = e["last_error"].as_str().unwrap_or_default().to_owned();
        e["failures"].as_i64().unwrap_or(0) >= 2
    });
    assert!(
        failed,
        "the escalation did not fail twice: {:#}\n{}",
        rem.history(),
        rem.process().describe()
    );
    error
}

#[test]
fn a_stopped_alertmanager_is_connection_refused() {
    let mut am = Alertmanager::start("route: {receiver: oncall}\nreceivers: [{name: oncall}]\n");
    let url = am.url("");
    let origin = url.trim_end_matches('/').to_owned();
    am.stop();
    let error = last_error(&url);
    assert_eq!(
        error,
        format!("connection refused: nothing accepts connections at {origin}")
    );
}

#[test]
fn an_alertmanager_that_never_answers_is_a_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts every connection and keeps it open without a word.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            match stream {
                Ok(s) => held.push(s),
                Err(_) => return,
            }
        }
    });
    let error = last_error(&format!("http://127.0.0.1:{port}"));
    assert_eq!(
        error,
        format!("timeout: Alertmanager at http://127.0.0.1:{port} did not answer within 1s")
    );
}

#[test]
fn an_http_error_names_the_status_and_the_answer() {
    let am = Alertmanager::start("route: {receiver: oncall}\nreceivers: [{name: oncall}]\n");
    let origin = am.url("").trim_end_matches('/').to_owned();
    let error = last_error(&am.url("/wrong-prefix"));
    assert_eq!(
        error,
        format!("HTTP 404 Not Found from Alertmanager at {origin}: 404 page not found")
    );

    // With the right URL the same escalation, with a label name Alertmanager would refuse in
    // the original alert, is delivered: the escalation leaves that label out.
    let api = AdminApi::start(&[Rule::status("/api/streams/", 500)]);
    let mut rem = Remediator::start(&config(&am.url(""), &api));
    let p = payload(vec![alert(
        "firing",
        &[("alertname", "HlsPlaylistStale"), ("bad-name", "x")],
        "2026-11-22T10:00:00Z",
    )]);
    assert_eq!(rem.webhook(&p, None).unwrap().status, 200);
    let delivered = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        !am.alerts_named("StackmedicRemediationFailed").is_empty()
    });
    assert!(
        delivered,
        "{:#}\n{}",
        rem.history(),
        rem.process().describe()
    );
    let page = &am.alerts_named("StackmedicRemediationFailed")[0];
    assert_eq!(page["labels"]["original_alertname"], "HlsPlaylistStale");
    assert!(page["labels"].get("bad-name").is_none(), "{page:#}");
}
