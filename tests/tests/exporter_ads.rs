//! ADS probe against real ADS/AMS servers: pyads' test server (`pyads.testserver`, PyPI `pyads`)
//! started by `tests/fixtures/ads/ads_server.py`, whose handler subclass answers ReadState with
//! the state the test chooses (run, stop), with an AMS error code (0x7, "target machine not
//! found", as a router without a route answers) or not at all (hang). Also nothing listening
//! (connection refused), a killed server (down within one interval) that comes back in Stop (the
//! probe reconnects), two probes on one router sharing one TCP connection, and the app's
//! route-status endpoint served by a real nginx from JSON files written by the test (the camera
//! app itself is not available, so its response is a fixture).

use std::time::{Duration, Instant};

use stackmedic_tests::ads::AdsServer;
use stackmedic_tests::exporter::{value, Exporter, WAIT};
use stackmedic_tests::metrics::{find, Sample};
use stackmedic_tests::nginx::Nginx;

const SUCCESS: &str = "stackmedic_probe_success";
const REASON: &str = "stackmedic_probe_failure_reason";
const REACHABLE: &str = "stackmedic_ads_reachable";
const CONNECTED: &str = "stackmedic_ads_connected";
const STATE: &str = "stackmedic_ads_state";
const CONNECTS: &str = "stackmedic_ads_connects_total";
const ERROR_CODE: &str = "stackmedic_ads_error_code";
const ROUTE: &str = "stackmedic_ads_route_present";

fn reason(s: &[Sample], probe: &str, r: &str) -> bool {
    find(s, REASON, &[("probe", probe), ("reason", r)]) == Some(1.0)
}

fn native(name: &str, port: u16, extra: &str) -> String {
    format!(
        "  - name: {name}\n    interval: 1s\n    timeout: 1s\n    ads:\n      host: 127.0.0.1\n      port: {port}\n      ams_net_id: 5.32.116.5.1.1\n{extra}"
    )
}

#[test]
fn ads_state_route_and_reconnects() {
    let p_run = stackmedic_tests::free_port();
    let p_stop = stackmedic_tests::free_port();
    let p_noroute = stackmedic_tests::free_port();
    let p_hang = stackmedic_tests::free_port();
    let p_closed = stackmedic_tests::free_port();
    let mut plc = AdsServer::start(p_run, &[]);
    let _stopped = AdsServer::start(p_stop, &["--state", "stop"]);
    let _noroute = AdsServer::start(p_noroute, &["--error-code", "0x7"]);
    let _hang = AdsServer::start(p_hang, &["--hang"]);

    let nginx = Nginx::start("location / { root {www}; default_type application/json; }");
    nginx.write(
        "www/ok/api/plc/ads/route/status",
        r#"{"status": "connected", "route": {"present": true}, "ads": {"state": "Run", "device_state": 0, "last_error": null}}"#,
    );
    nginx.write(
        "www/noroute/api/plc/ads/route/status",
        r#"{"status": "disconnected", "route": {"present": false}, "ads": {"state": "Invalid", "device_state": 0, "last_error": "0x7"}}"#,
    );
    let route_status = |name: &str, prefix: &str| {
        format!(
            "  - name: {name}\n    interval: 1s\n    ads:\n      route_status:\n        url: {}\n        reachable: /status\n        route: /route/present\n        ads_state: /ads/state\n        device_state: /ads/device_state\n        error_code: /ads/last_error\n",
            nginx.url(&format!("/{prefix}/api/plc/ads/route/status"))
        )
    };

    let config = [
        "probes:\n".to_string(),
        native("plc", p_run, ""),
        // A second AMS port on the same router: it must share the first probe's connection.
        native("plc-rt2", p_run, "      ams_port: 852\n"),
        native("stopped", p_stop, ""),
        native("stopped-ok", p_stop, "      expected_state: Stop\n"),
        native("noroute", p_noroute, ""),
        native("hang", p_hang, ""),
        native("refused", p_closed, ""),
        route_status("app-ok", "ok"),
        route_status("app-noroute", "noroute"),
    ]
    .concat();
    let mut exporter = Exporter::start(&config);

    // Every probe has run at least three times, so reused connections have been exercised.
    let s = exporter.wait_for("three runs of every probe", WAIT, |s| {
        [
            "plc",
            "plc-rt2",
            "stopped",
            "stopped-ok",
            "noroute",
            "hang",
            "refused",
            "app-ok",
            "app-noroute",
        ]
        .iter()
        .all(|p| stackmedic_tests::exporter::runs(s, p) >= 3)
    });

    // Run: reachable, state set, device info, one connection shared by both AMS ports.
    for probe in ["plc", "plc-rt2"] {
        let l = [("probe", probe)];
        assert_eq!(value(&s, SUCCESS, &l), 1.0, "{probe}");
        assert_eq!(value(&s, REACHABLE, &l), 1.0, "{probe}");
        assert_eq!(value(&s, CONNECTED, &l), 1.0, "{probe}");
        assert_eq!(value(&s, STATE, &[("probe", probe), ("state", "run")]), 1.0);
        assert_eq!(
            value(&s, STATE, &[("probe", probe), ("state", "stop")]),
            0.0
        );
        assert_eq!(
            value(&s, CONNECTS, &l),
            1.0,
            "{probe}: one connection, kept"
        );
        assert_eq!(
            value(
                &s,
                "stackmedic_ads_device_info",
                &[
                    ("probe", probe),
                    ("name", "Plc30 App"),
                    ("version", "3.1.4024")
                ]
            ),
            1.0
        );
    }

    // Stop: answered, but not in the expected state.
    assert_eq!(value(&s, SUCCESS, &[("probe", "stopped")]), 0.0);
    assert!(reason(&s, "stopped", "mismatch"));
    assert_eq!(value(&s, REACHABLE, &[("probe", "stopped")]), 1.0);
    assert_eq!(
        value(&s, STATE, &[("probe", "stopped"), ("state", "stop")]),
        1.0
    );
    assert_eq!(value(&s, SUCCESS, &[("probe", "stopped-ok")]), 1.0);

    // An AMS error code 0x7 is "no route", told apart from refused and timeout.
    assert_eq!(value(&s, SUCCESS, &[("probe", "noroute")]), 0.0);
    assert!(reason(&s, "noroute", "no_route"));
    assert_eq!(value(&s, REACHABLE, &[("probe", "noroute")]), 0.0);
    assert_eq!(value(&s, CONNECTED, &[("probe", "noroute")]), 1.0);
    assert_eq!(value(&s, ERROR_CODE, &[("probe", "noroute")]), 7.0);
    assert_eq!(value(&s, ROUTE, &[("probe", "noroute")]), 0.0);
    assert!(reason(&s, "hang", "timeout"));
    assert_eq!(value(&s, REACHABLE, &[("probe", "hang")]), 0.0);
    assert!(reason(&s, "refused", "connect"));
    assert_eq!(value(&s, CONNECTED, &[("probe", "refused")]), 0.0);
    assert_eq!(find(&s, ROUTE, &[("probe", "refused")]), None);

    // The app's route status, mapped to the same metrics.
    assert_eq!(value(&s, SUCCESS, &[("probe", "app-ok")]), 1.0);
    assert_eq!(value(&s, REACHABLE, &[("probe", "app-ok")]), 1.0);
    assert_eq!(
        value(&s, STATE, &[("probe", "app-ok"), ("state", "run")]),
        1.0
    );
    assert!(reason(&s, "app-noroute", "no_route"));
    assert_eq!(value(&s, ROUTE, &[("probe", "app-noroute")]), 0.0);
    assert_eq!(value(&s, ERROR_CODE, &[("probe", "app-noroute")]), 7.0);

    // Kill the PLC: down within one interval (1 s), with reason connect.
    plc.process().kill();
    let killed = Instant::now();
    let s = exporter.wait_for("plc down after the kill", WAIT, |s| {
        find(s, REACHABLE, &[("probe", "plc")]) == Some(0.0)
    });
    let took = killed.elapsed();
    eprintln!("plc down {took:?} after the kill");
    assert!(
        took <= Duration::from_millis(2500),
        "plc took {took:?} to turn down (interval 1s)"
    );
    assert!(reason(&s, "plc", "connect"), "refused after the kill");
    assert_eq!(value(&s, CONNECTED, &[("probe", "plc")]), 0.0);

    // It comes back in Stop: the probe reconnects (a second connection) and reports mismatch.
    let _plc = AdsServer::start(p_run, &["--state", "stop"]);
    let s = exporter.wait_for("plc back in stop", WAIT, |s| {
        find(s, STATE, &[("probe", "plc"), ("state", "stop")]) == Some(1.0)
    });
    assert_eq!(value(&s, REACHABLE, &[("probe", "plc")]), 1.0);
    assert!(reason(&s, "plc", "mismatch"));
    assert_eq!(value(&s, CONNECTS, &[("probe", "plc")]), 2.0);
}

#[test]
fn a_short_device_info_answer_is_explained() {
    // A device whose READ_DEVICE_INFO answer is cut short: its state is still read and checked,
    // the name/version series is left out, and the log says why.
    let port = stackmedic_tests::free_port();
    let _plc = AdsServer::start(port, &["--short-device-info"]);
    let mut exporter = Exporter::start(&format!("probes:\n{}", native("short", port, "")));
    let s = exporter.wait_value(SUCCESS, &[("probe", "short")], 1.0);
    assert_eq!(
        value(&s, STATE, &[("probe", "short"), ("state", "run")]),
        1.0
    );
    assert_eq!(
        find(&s, "stackmedic_ads_device_info", &[("probe", "short")]),
        None,
        "a short answer must not produce a device info series"
    );
    let explained = stackmedic_tests::wait_until(WAIT, Duration::from_millis(50), || {
        let log = exporter.process().stderr();
        log.lines().any(|l| {
            l.contains("device info not read")
                && l.contains("got less data than expected")
                && l.contains("probe=short")
        })
    });
    assert!(
        explained,
        "no debug line explains the missing device info:\n{}",
        exporter.process().describe()
    );
}
