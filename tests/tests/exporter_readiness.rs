//! Readiness and edge probes against our backend fixture (`stackmedic_tests::backend`, written
//! by us because the assistant backend is not public), reached directly and through a real nginx
//! reverse proxy that adds a `cf-ray` header as a Cloudflare edge would.

use std::time::{Duration, Instant};

use stackmedic_tests::backend::{Backend, LlmPath, Silent, ALLOWED_ORIGIN};
use stackmedic_tests::exporter::{runs, value, Exporter};
use stackmedic_tests::http;
use stackmedic_tests::metrics::find;
use stackmedic_tests::nginx::Nginx;

const LLM_PATH: &str = "stackmedic_summary_llm_path";
const WARMING_SINCE: &str = "stackmedic_summary_warming_since_timestamp_seconds";

fn summary_probe(name: &str, url: &str) -> String {
    format!(
        "  - name: {name}
    interval: 300ms
    timeout: 250ms
    http:
      url: {url}
      json:
        ready: /ready
        llm_path: /llm/path
        model_present: /llm/primary_model_present
        fallback: /status/fallback
        build_sha: /build/sha
"
    )
}

#[test]
fn summary_states_and_warming_start() {
    let backend = Backend::start();
    let config = format!(
        "probes:\n{}  - name: ready\n    interval: 300ms\n    timeout: 250ms\n    http:\n      url: {}\n",
        summary_probe("summary", &backend.url("/status/summary")),
        backend.url("/api/ready")
    );
    let mut exporter = Exporter::start(&config);
    let p = ("probe", "summary");

    // Warming: not ready, the state set says warming, and the warming start is exported.
    let s = exporter.wait_value(LLM_PATH, &[p, ("path", "warming")], 1.0);
    for other in ["primary", "fallback", "other"] {
        assert_eq!(value(&s, LLM_PATH, &[p, ("path", other)]), 0.0, "{other}");
    }
    assert_eq!(value(&s, "stackmedic_summary_ready", &[p]), 0.0);
    assert_eq!(value(&s, "stackmedic_summary_model_present", &[p]), 0.0);
    assert_eq!(value(&s, "stackmedic_summary_fallback", &[p]), 0.0);
    assert_eq!(
        value(&s, "stackmedic_summary_build_info", &[p, ("sha", "abc123")]),
        1.0
    );
    assert_eq!(value(&s, "stackmedic_probe_success", &[p]), 1.0);
    let since = value(&s, WARMING_SINCE, &[p]);
    let now = now();
    assert!(
        since <= now && since > now - 30.0,
        "warming since {since}, now {now}"
    );

    let s = exporter.wait_value("stackmedic_http_status_code", &[("probe", "ready")], 503.0);
    assert_eq!(
        value(&s, "stackmedic_probe_success", &[("probe", "ready")]),
        0.0
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_probe_failure_reason",
            &[("probe", "ready"), ("reason", "http_status")]
        ),
        1.0
    );

    // The warming start stays where it was over several runs.
    let before = runs(&s, "summary");
    let s = exporter.wait_runs("summary", before + 3);
    assert_eq!(value(&s, WARMING_SINCE, &[p]), since, "warming start moved");

    // One summary without `llm.path` fails that run (reason `parse`), but says nothing about
    // warming: the start survives it.
    backend.omit_path(1);
    exporter.wait_value(
        "stackmedic_probe_failure_reason",
        &[p, ("reason", "parse")],
        1.0,
    );
    assert_eq!(backend.omitted_paths_pending(), 0);
    let s = exporter.wait_value("stackmedic_probe_success", &[p], 1.0);
    assert_eq!(value(&s, LLM_PATH, &[p, ("path", "warming")]), 1.0);
    assert_eq!(
        value(&s, WARMING_SINCE, &[p]),
        since,
        "one summary without llm.path reset the warming start"
    );

    // Primary: the warming start disappears, readiness recovers, a new build shows.
    backend.set_sha("def456");
    backend.set_path(LlmPath::Primary);
    let s = exporter.wait_value(LLM_PATH, &[p, ("path", "primary")], 1.0);
    assert_eq!(value(&s, LLM_PATH, &[p, ("path", "warming")]), 0.0);
    assert_eq!(
        find(&s, WARMING_SINCE, &[p]),
        None,
        "warming start must vanish"
    );
    assert_eq!(value(&s, "stackmedic_summary_ready", &[p]), 1.0);
    assert_eq!(value(&s, "stackmedic_summary_model_present", &[p]), 1.0);
    assert_eq!(
        value(&s, "stackmedic_summary_build_info", &[p, ("sha", "def456")]),
        1.0
    );
    assert_eq!(
        find(&s, "stackmedic_summary_build_info", &[p, ("sha", "abc123")]),
        None
    );
    let s = exporter.wait_value("stackmedic_probe_success", &[("probe", "ready")], 1.0);
    assert_eq!(
        value(&s, "stackmedic_http_status_code", &[("probe", "ready")]),
        200.0
    );
    assert_eq!(
        find(&s, "stackmedic_probe_failure_reason", &[("probe", "ready")]),
        None,
        "no failure reason while the probe succeeds"
    );

    // Fallback.
    backend.set_path(LlmPath::Fallback);
    let s = exporter.wait_value(LLM_PATH, &[p, ("path", "fallback")], 1.0);
    assert_eq!(value(&s, "stackmedic_summary_fallback", &[p]), 1.0);
    assert_eq!(value(&s, "stackmedic_summary_model_present", &[p]), 0.0);
    assert_eq!(find(&s, WARMING_SINCE, &[p]), None);

    // A new warming begins: its start is new, not the first one.
    backend.set_path(LlmPath::Warming);
    let s = exporter.wait_value(LLM_PATH, &[p, ("path", "warming")], 1.0);
    let again = value(&s, WARMING_SINCE, &[p]);
    assert!(
        again > since,
        "new warming start {again} must be after {since}"
    );
}

#[test]
fn through_nginx_edge_and_a_real_502() {
    let mut backend = Backend::start();
    backend.set_path(LlmPath::Primary);
    let nginx = Nginx::start(&format!(
        "location / {{
            proxy_pass http://127.0.0.1:{};
            proxy_connect_timeout 2s;
            add_header cf-ray 8c1d2e3f4a5b6c7d-FRA always;
        }}",
        backend.port()
    ));
    let config = format!(
        "probes:
  - name: edge
    interval: 300ms
    timeout: 250ms
    http:
      url: {edge}
      expect_headers: [cf-ray]
  - name: edge-cache
    interval: 300ms
    timeout: 250ms
    http:
      url: {edge}
      expect_headers: [cf-cache-status]
  - name: direct
    interval: 300ms
    timeout: 250ms
    http:
      url: {direct}
      expect_headers: [cf-ray]
{summary}",
        edge = nginx.url("/api/ready"),
        direct = backend.url("/api/ready"),
        summary = summary_probe("edge-summary", &nginx.url("/status/summary")),
    );
    let mut exporter = Exporter::start(&config);
    let edge = ("probe", "edge");
    let s = exporter.wait_value("stackmedic_probe_success", &[edge], 1.0);
    assert_eq!(value(&s, "stackmedic_http_status_code", &[edge]), 200.0);
    assert_eq!(
        value(
            &s,
            "stackmedic_http_header_present",
            &[edge, ("header", "cf-ray")]
        ),
        1.0
    );
    let latency = value(&s, "stackmedic_http_response_seconds", &[edge]);
    assert!(latency > 0.0 && latency < 0.25, "latency {latency}");
    // The summary read through the proxy.
    let s = exporter.wait_value(
        LLM_PATH,
        &[("probe", "edge-summary"), ("path", "primary")],
        1.0,
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_summary_build_info",
            &[("probe", "edge-summary"), ("sha", "abc123")]
        ),
        1.0
    );
    // Without the edge the header is missing, and a header the edge does not add is reported.
    let s = exporter.wait_value("stackmedic_probe_success", &[("probe", "direct")], 0.0);
    assert_eq!(
        value(
            &s,
            "stackmedic_http_header_present",
            &[("probe", "direct"), ("header", "cf-ray")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_probe_failure_reason",
            &[("probe", "direct"), ("reason", "header_missing")]
        ),
        1.0
    );
    let s = exporter.wait_value(
        "stackmedic_probe_failure_reason",
        &[("probe", "edge-cache"), ("reason", "header_missing")],
        1.0,
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_http_status_code",
            &[("probe", "edge-cache")]
        ),
        200.0
    );

    // The app stops: nginx itself answers 502, and the probe reports exactly that.
    backend.stop();
    let direct = http::get(&nginx.url("/api/ready")).expect("nginx answers");
    assert_eq!(
        direct.status,
        502,
        "nginx must answer 502: {}",
        direct.text()
    );
    let s = exporter.wait_value("stackmedic_http_status_code", &[edge], 502.0);
    assert_eq!(value(&s, "stackmedic_probe_success", &[edge]), 0.0);
    assert_eq!(
        value(
            &s,
            "stackmedic_probe_failure_reason",
            &[edge, ("reason", "http_status")]
        ),
        1.0
    );
    // The edge header is still there: the edge is up, the origin is not.
    assert_eq!(
        value(
            &s,
            "stackmedic_http_header_present",
            &[edge, ("header", "cf-ray")]
        ),
        1.0
    );
    let s = exporter.wait_value(
        "stackmedic_probe_failure_reason",
        &[("probe", "direct"), ("reason", "connect")],
        1.0,
    );
    assert_eq!(
        value(&s, "stackmedic_http_status_code", &[("probe", "direct")]),
        0.0
    );
    assert!(
        value(
            &s,
            "stackmedic_probe_failures_total",
            &[edge, ("reason", "http_status")]
        ) >= 1.0
    );

    // The app comes back on the same port: the edge recovers.
    backend.restart();
    let s = exporter.wait_value("stackmedic_http_status_code", &[edge], 200.0);
    assert_eq!(value(&s, "stackmedic_probe_success", &[edge]), 1.0);
}

#[test]
fn cors_preflight_allowed_and_denied_origins() {
    let backend = Backend::start();
    let config = format!(
        "probes:
  - name: cors-ok
    interval: 300ms
    timeout: 250ms
    cors:
      url: {chat}
      origin: {ALLOWED_ORIGIN}
      request_headers: [Content-Type]
  - name: cors-denied
    interval: 300ms
    timeout: 250ms
    cors:
      url: {chat}
      origin: https://evil.example
  - name: cors-bad-header
    interval: 300ms
    timeout: 250ms
    cors:
      url: {chat}
      origin: {ALLOWED_ORIGIN}
      request_headers: [X-Api-Key]
",
        chat = backend.url("/chat")
    );
    let mut exporter = Exporter::start(&config);
    let s = exporter.wait_value("stackmedic_probe_success", &[("probe", "cors-ok")], 1.0);
    assert_eq!(
        value(&s, "stackmedic_cors_allowed", &[("probe", "cors-ok")]),
        1.0
    );
    let s = exporter.wait_value(
        "stackmedic_probe_failure_reason",
        &[("probe", "cors-denied"), ("reason", "cors")],
        1.0,
    );
    assert_eq!(
        value(&s, "stackmedic_cors_allowed", &[("probe", "cors-denied")]),
        0.0
    );
    assert_eq!(
        value(&s, "stackmedic_probe_success", &[("probe", "cors-denied")]),
        0.0
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_http_status_code",
            &[("probe", "cors-denied")]
        ),
        200.0
    );
    let s = exporter.wait_value(
        "stackmedic_probe_failure_reason",
        &[("probe", "cors-bad-header"), ("reason", "cors")],
        1.0,
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_cors_allowed",
            &[("probe", "cors-bad-header")]
        ),
        0.0
    );
}

#[test]
fn hanging_target_times_out_on_schedule_while_metrics_answer() {
    let silent = Silent::start();
    let backend = Backend::start();
    let config = format!(
        "probes:
  - name: hang
    interval: 1s
    timeout: 600ms
    http:
      url: {hang}
  - name: hang-summary
    interval: 1s
    timeout: 600ms
    status_path:
      url: {hang}
  - name: fast
    interval: 200ms
    timeout: 150ms
    http:
      url: {fast}
      valid_status_codes: [503]
",
        hang = silent.url("/api/ready"),
        fast = backend.url("/api/ready"),
    );
    let mut exporter = Exporter::start(&config);
    let hang = ("probe", "hang");
    let s = exporter.wait_value(
        "stackmedic_probe_failure_reason",
        &[hang, ("reason", "timeout")],
        1.0,
    );
    let first_runs = runs(&s, "hang");
    let started = Instant::now();

    // While the target hangs, every scrape answers within a second (a correctness bound: a
    // scrape must never wait on a target), and the other probe keeps running.
    let fast_before = runs(&s, "fast");
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(4) {
        let t = Instant::now();
        let r = http::request_with_timeout(
            "GET",
            &exporter.url("/metrics"),
            &[],
            None,
            Duration::from_secs(5),
        )
        .expect("scrape during the hang");
        let took = t.elapsed();
        assert_eq!(r.status, 200);
        assert!(
            took < Duration::from_secs(1),
            "a scrape took {took:?} while a target hangs"
        );
        slowest = slowest.max(took);
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let s = exporter.scrape();

    // On schedule: about one run per second, each failing after about the timeout.
    let hang_runs = runs(&s, "hang") - first_runs;
    assert!(
        (elapsed.floor() as u64 - 1..=elapsed.ceil() as u64 + 1).contains(&hang_runs),
        "{hang_runs} runs of the hanging probe in {elapsed:.1}s with a 1s interval"
    );
    let duration = value(&s, "stackmedic_probe_duration_seconds", &[hang]);
    assert!(
        (0.55..1.0).contains(&duration),
        "duration {duration} for a 600ms timeout"
    );
    assert_eq!(value(&s, "stackmedic_probe_success", &[hang]), 0.0);
    assert_eq!(value(&s, "stackmedic_http_status_code", &[hang]), 0.0);
    assert!(
        value(
            &s,
            "stackmedic_probe_failures_total",
            &[hang, ("reason", "timeout")]
        ) >= 3.0
    );
    let d2 = value(
        &s,
        "stackmedic_probe_duration_seconds",
        &[("probe", "hang-summary")],
    );
    assert!((0.55..1.0).contains(&d2), "status_path duration {d2}");
    assert_eq!(
        value(
            &s,
            "stackmedic_probe_failure_reason",
            &[("probe", "hang-summary"), ("reason", "timeout")]
        ),
        1.0
    );
    let fast_runs = runs(&s, "fast") - fast_before;
    assert!(
        fast_runs >= 10,
        "the fast probe ran only {fast_runs} times in {elapsed:.1}s"
    );
    assert_eq!(
        value(&s, "stackmedic_probe_success", &[("probe", "fast")]),
        1.0
    );
    let last_run = value(&s, "stackmedic_probe_last_run_timestamp_seconds", &[hang]);
    assert!(now() - last_run < 2.0, "last run {last_run} is stale");
    eprintln!("slowest scrape during the hang: {slowest:?}");
}

#[test]
fn malformed_oversized_and_unknown_values_are_reported() {
    let backend = Backend::start();
    let probe = |name: &str, path: &str, extra: &str| {
        format!(
            "  - name: {name}\n    interval: 300ms\n    timeout: 250ms\n    http:\n      url: {}\n{extra}",
            backend.url(path)
        )
    };
    let json = "      json:\n        ready: /ready\n";
    let config = format!(
        "probes:\n{}{}{}{}{}  - name: odd\n    interval: 300ms\n    timeout: 250ms\n    status_path:\n      url: {}\n",
        probe("malformed", "/malformed", json),
        probe("huge", "/huge", ""),
        probe("huge-chunked", "/huge-chunked", ""),
        probe("no-field", "/status/summary", "      json:\n        llm_path: /llm/provider\n"),
        probe("small-limit", "/status/summary", "      max_body_bytes: 16\n"),
        backend.url("/odd-header"),
    );
    let mut exporter = Exporter::start(&config);
    let reason = |s: &[_], probe: &str, r: &str| {
        find(
            s,
            "stackmedic_probe_failure_reason",
            &[("probe", probe), ("reason", r)],
        ) == Some(1.0)
    };
    let s = exporter.wait_for("every edge case reported", Duration::from_secs(20), |s| {
        reason(s, "malformed", "parse")
            && reason(s, "huge", "body_too_large")
            && reason(s, "huge-chunked", "body_too_large")
            && reason(s, "no-field", "parse")
            && reason(s, "small-limit", "body_too_large")
            && find(
                s,
                "stackmedic_status_path_hits_total",
                &[("probe", "odd"), ("value", "other")],
            )
            .is_some_and(|v| v >= 1.0)
    });
    for p in [
        "malformed",
        "huge",
        "huge-chunked",
        "no-field",
        "small-limit",
    ] {
        assert_eq!(
            value(&s, "stackmedic_probe_success", &[("probe", p)]),
            0.0,
            "{p}"
        );
    }
    // The status arrived before the body was judged.
    for p in ["malformed", "huge", "huge-chunked", "small-limit"] {
        assert_eq!(
            value(&s, "stackmedic_http_status_code", &[("probe", p)]),
            200.0,
            "{p}"
        );
    }
    assert_eq!(
        find(&s, "stackmedic_summary_ready", &[("probe", "malformed")]),
        None
    );
    // An unknown header value is counted as `other`, not as an error.
    let odd = ("probe", "odd");
    assert_eq!(value(&s, "stackmedic_probe_success", &[odd]), 1.0);
    for class in ["api", "legacy", "missing"] {
        assert_eq!(
            value(
                &s,
                "stackmedic_status_path_hits_total",
                &[odd, ("value", class)]
            ),
            0.0,
            "{class}"
        );
    }
    // Still serving after all of it.
    let healthy = http::get(&exporter.url("/-/healthy")).expect("healthy");
    assert_eq!(healthy.status, 200);
    assert!(exporter.process().is_running());
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}
