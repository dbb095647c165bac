//! Status path (the assistant backend) against a real nginx: locations that answer `X-Status-Path: legacy`,
//! `api` or another value, a `log_format` that writes the header into the access log, and the
//! exporter counting real client hits from that log across rotation by rename-and-reopen and by
//! copytruncate, with exact counts; plus active sampling by class.

use std::path::{Path, PathBuf};
use std::time::Duration;

use stackmedic_tests::exporter::{runs, value, Exporter};
use stackmedic_tests::http;
use stackmedic_tests::metrics::Sample;
use stackmedic_tests::nginx::Nginx;

const HITS: &str = "stackmedic_status_path_hits_total";
const QUIET: &str = "stackmedic_status_path_legacy_quiet_since_timestamp_seconds";
const CURL_UA: &str = "curl/8.5.0";

const LOG_FORMAT: &str = r#"log_format xsp '$remote_addr - [$time_local] "$request" $status "$http_user_agent" xsp="$sent_http_x_status_path"';"#;

const LOCATIONS: &str = r#"
        access_log {dir}/xsp.log xsp;
        location = /status/summary {
            add_header X-Status-Path legacy always;
            default_type application/json;
            return 200 '{"legacy":true}';
        }
        location = /api/status/summary {
            add_header X-Status-Path api always;
            default_type application/json;
            return 200 '{"legacy":false}';
        }
        location = /v3/status {
            add_header X-Status-Path v3 always;
            return 200 'v3';
        }
        location = /plain {
            return 200 'plain';
        }
"#;

fn start_nginx() -> Nginx {
    Nginx::start_with_http(LOCATIONS, LOG_FORMAT)
}

/// A request as a real client sends it (curl's User-Agent), checked to carry `expected`.
fn client_get(nginx: &Nginx, path: &str, expected: Option<&str>) {
    let r = http::request("GET", &nginx.url(path), &[("User-Agent", CURL_UA)], None)
        .unwrap_or_else(|e| panic!("GET {path}: {e:#}"));
    assert_eq!(r.status, 200, "GET {path}");
    assert_eq!(r.header("x-status-path"), expected, "GET {path}");
}

fn hits(s: &[Sample], probe: &str, class: &str) -> f64 {
    value(s, HITS, &[("probe", probe), ("value", class)])
}

fn counts(s: &[Sample], probe: &str) -> [u64; 4] {
    ["api", "legacy", "other", "missing"].map(|c| hits(s, probe, c) as u64)
}

#[test]
fn access_log_counts_real_legacy_hits_across_rename_and_copytruncate() {
    let mut nginx = start_nginx();
    let log: PathBuf = nginx.dir().join("xsp.log");
    let config = format!(
        "probes:
  - name: log
    interval: 200ms
    timeout: 150ms
    access_log:
      path: {log}
  # The exporter's own requests land in the same log; they are not client hits.
  - name: sampler
    interval: 300ms
    timeout: 250ms
    status_path:
      url: {legacy}
",
        log = log.display(),
        legacy = nginx.url("/status/summary"),
    );
    let mut exporter = Exporter::start(&config);
    // Counting starts at the end of the log as it is at the first run.
    let s = exporter.wait_runs("log", 1);
    let quiet_start = value(&s, QUIET, &[("probe", "log")]);
    assert_eq!(counts(&s, "log"), [0, 0, 0, 0]);

    // Hits are dated by the line's $time_local, in whole seconds: the next ones must fall in
    // a later second than the start for the quiet-since time to move.
    next_second();
    for _ in 0..3 {
        client_get(&nginx, "/status/summary", Some("legacy"));
    }
    client_get(&nginx, "/api/status/summary", Some("api"));
    client_get(&nginx, "/api/status/summary", Some("api"));
    client_get(&nginx, "/v3/status", Some("v3"));
    client_get(&nginx, "/plain", None);
    let s = exporter.wait_for("7 client hits counted", Duration::from_secs(20), |s| {
        counts(s, "log") == [2, 3, 1, 1]
    });
    let quiet = value(&s, QUIET, &[("probe", "log")]);
    assert!(
        quiet > quiet_start,
        "quiet-since {quiet} must move past {quiet_start} on a legacy hit"
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_status_path_last_hit_timestamp_seconds",
            &[("probe", "log"), ("value", "legacy")]
        ),
        quiet
    );
    assert_eq!(line_count(&s, "counted"), 7.0);
    // The sampler's own requests were logged and excluded, never counted.
    let s = exporter.wait_for(
        "the sampler's lines excluded",
        Duration::from_secs(10),
        |s| line_count(s, "excluded") >= 2.0,
    );
    assert!(
        log_mentions(&log, "stackmedic-exporter/"),
        "the sampler's requests must be in the log"
    );
    assert_eq!(counts(&s, "log")[1], 3);
    assert_eq!(line_count(&s, "unmatched"), 0.0);

    // Rotation by rename: one line before the move, two after it that nginx still writes to the
    // old file, then reopen and two into the new file.
    next_second();
    client_get(&nginx, "/status/summary", Some("legacy"));
    let rotated = nginx.dir().join("xsp.log.1");
    std::fs::rename(&log, &rotated).expect("mv xsp.log xsp.log.1");
    client_get(&nginx, "/status/summary", Some("legacy"));
    client_get(&nginx, "/status/summary", Some("legacy"));
    nginx.reopen();
    assert!(log.exists(), "nginx reopened a new xsp.log");
    client_get(&nginx, "/status/summary", Some("legacy"));
    client_get(&nginx, "/status/summary", Some("legacy"));
    let s = exporter.wait_for(
        "8 legacy hits after the rename",
        Duration::from_secs(20),
        |s| counts(s, "log") == [2, 8, 1, 1],
    );
    assert_eq!(rotations(&s, "rename"), 1.0);
    assert_eq!(rotations(&s, "truncate"), 0.0);
    let quiet_after_rename = value(&s, QUIET, &[("probe", "log")]);
    assert!(quiet_after_rename > quiet);

    // copytruncate: copy the file, then truncate it in place; nginx keeps writing through its
    // O_APPEND descriptor, so new lines start again at offset 0.
    std::fs::copy(&log, nginx.dir().join("xsp.log.2")).expect("copy the log");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .and_then(|f| f.set_len(0))
        .expect("truncate the log");
    client_get(&nginx, "/status/summary", Some("legacy"));
    client_get(&nginx, "/api/status/summary", Some("api"));
    let s = exporter.wait_for("hits after copytruncate", Duration::from_secs(20), |s| {
        counts(s, "log") == [3, 9, 1, 1]
    });
    assert_eq!(rotations(&s, "truncate"), 1.0);
    assert_eq!(rotations(&s, "rename"), 1.0);

    // No double counting: several more runs, with the sampler still writing, change nothing.
    let before = runs(&s, "log");
    let s = exporter.wait_runs("log", before + 6);
    assert_eq!(
        counts(&s, "log"),
        [3, 9, 1, 1],
        "counts changed without client hits"
    );
    assert_eq!(line_count(&s, "counted"), 14.0);
    assert_eq!(
        value(&s, "stackmedic_probe_success", &[("probe", "log")]),
        1.0
    );
}

#[test]
fn sampling_counts_responses_by_class() {
    let nginx = start_nginx();
    let probe = |name: &str, path: &str| {
        format!(
            "  - name: {name}\n    interval: 300ms\n    timeout: 250ms\n    status_path:\n      url: {}\n      samples: 2\n",
            nginx.url(path)
        )
    };
    let config = format!(
        "probes:\n{}{}{}{}",
        probe("s-api", "/api/status/summary"),
        probe("s-legacy", "/status/summary"),
        probe("s-other", "/v3/status"),
        probe("s-missing", "/plain"),
    );
    let mut exporter = Exporter::start(&config);
    let s = exporter.wait_for("two runs of every sampler", Duration::from_secs(20), |s| {
        ["s-api", "s-legacy", "s-other", "s-missing"]
            .iter()
            .all(|p| runs(s, p) >= 2)
    });
    for (i, p) in ["s-api", "s-legacy", "s-other", "s-missing"]
        .iter()
        .enumerate()
    {
        let c = counts(&s, p);
        // Each run samples twice; every sample of a probe lands in its one class.
        let n = runs(&s, p) * 2;
        let mut want = [0; 4];
        want[i] = n;
        assert_eq!(c, want, "{p}");
        assert_eq!(
            value(&s, "stackmedic_probe_success", &[("probe", p)]),
            1.0,
            "{p}"
        );
    }
    // A legacy hit moves the quiet-since time forward; without legacy hits it stays put.
    let legacy_quiet = value(&s, QUIET, &[("probe", "s-legacy")]);
    let api_quiet = value(&s, QUIET, &[("probe", "s-api")]);
    let r = runs(&s, "s-legacy");
    let s = exporter.wait_for("two more legacy samples", Duration::from_secs(20), |s| {
        runs(s, "s-legacy") >= r + 2 && runs(s, "s-api") >= r + 2
    });
    assert!(value(&s, QUIET, &[("probe", "s-legacy")]) > legacy_quiet);
    assert_eq!(value(&s, QUIET, &[("probe", "s-api")]), api_quiet);
}

fn line_count(s: &[Sample], result: &str) -> f64 {
    value(
        s,
        "stackmedic_access_log_lines_total",
        &[("probe", "log"), ("result", result)],
    )
}

fn rotations(s: &[Sample], kind: &str) -> f64 {
    value(
        s,
        "stackmedic_access_log_rotations_total",
        &[("probe", "log"), ("kind", kind)],
    )
}

fn log_mentions(log: &Path, needle: &str) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(needle)
}

/// Sleeps until the wall clock has passed into the next whole second.
fn next_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    std::thread::sleep(Duration::from_nanos(
        1_000_000_000 - u64::from(now.subsec_nanos()) + 5_000_000,
    ));
}
