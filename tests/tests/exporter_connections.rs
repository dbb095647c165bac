//! How `http` probes use connections, seen from a real nginx that logs each request's
//! connection serial number (`$connection`) and its count on that connection
//! (`$connection_requests`): kept-alive connections are reused run after run, and
//! `reuse_connections: false` opens one per run, over plain HTTP (the lean client) and over TLS
//! (the general client). A target that redirects is followed as configured, a proxy from the
//! environment is used, and `/metrics` of many probes passes `promtool check metrics`.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};

use stackmedic_tests::exporter::{value, Exporter, Options, WAIT};
use stackmedic_tests::metrics::find;
use stackmedic_tests::nginx::Nginx;
use stackmedic_tests::prometheus::promtool;
use stackmedic_tests::tls::make_certificates;

/// nginx's access log with the connection serial number and the request's number on it.
const CONNECTION_LOG: &str = "log_format conn '$connection $connection_requests $request_uri';";

/// Per path: the connection serial numbers seen and the largest request count on one of them.
fn connections(nginx: &Nginx, path: &str) -> (BTreeSet<u64>, u64, usize) {
    let log = std::fs::read_to_string(nginx.dir().join("conn.log")).unwrap_or_default();
    let mut serials = BTreeSet::new();
    let (mut most, mut lines) = (0, 0);
    for line in log.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() == 3 && f[2] == path {
            serials.insert(f[0].parse().expect("serial"));
            most = most.max(f[1].parse().expect("count"));
            lines += 1;
        }
    }
    (serials, most, lines)
}

fn probe(name: &str, url: &str, extra: &str) -> String {
    probe_every("200ms", name, url, extra)
}

fn probe_every(interval: &str, name: &str, url: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    interval: {interval}\n    timeout: 150ms\n    http:\n      url: {url}\n{extra}"
    )
}

fn assert_kept_alive_and_fresh(nginx: &Nginx, keep: &str, fresh: &str) {
    let ok = stackmedic_tests::wait_until(WAIT, std::time::Duration::from_millis(100), || {
        connections(nginx, keep).2 >= 8 && connections(nginx, fresh).2 >= 8
    });
    assert!(ok, "fewer than 8 requests of each probe in {WAIT:?}");
    let (serials, most, lines) = connections(nginx, keep);
    assert!(
        serials.len() <= 2 && most >= 4,
        "kept-alive probe: {lines} requests on connections {serials:?}, at most {most} on one"
    );
    let (serials, most, lines) = connections(nginx, fresh);
    assert_eq!(
        most, 1,
        "reuse_connections: false sent two requests on one connection"
    );
    assert_eq!(serials.len(), lines, "a connection served two runs");
}

#[test]
fn plain_http_connections_are_kept_alive_unless_told_otherwise() {
    let nginx = Nginx::start_with_http(
        "access_log {dir}/conn.log conn;\nlocation / { return 200 'ok'; }\n",
        CONNECTION_LOG,
    );
    let config = format!(
        "probes:\n{}{}",
        probe("keep", &nginx.url("/keep"), ""),
        probe(
            "fresh",
            &nginx.url("/fresh"),
            "      reuse_connections: false\n"
        ),
    );
    let mut exporter = Exporter::start(&config);
    assert_kept_alive_and_fresh(&nginx, "/keep", "/fresh");
    let s = exporter.scrape();
    for p in ["keep", "fresh"] {
        assert_eq!(value(&s, "stackmedic_probe_success", &[("probe", p)]), 1.0);
        assert_eq!(
            value(&s, "stackmedic_http_status_code", &[("probe", p)]),
            200.0
        );
    }
}

#[test]
fn https_connections_are_kept_alive_unless_told_otherwise() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certificates(certs.path());
    let dir = certs.path().display();
    let nginx = Nginx::start_with_http(
        &format!(
            "listen 127.0.0.1:{{port}} ssl;\n\
             ssl_certificate {dir}/server.crt;\n\
             ssl_certificate_key {dir}/server.key;\n\
             access_log {{dir}}/conn.log conn;\n\
             location / {{ return 200 'ok'; }}\n"
        ),
        CONNECTION_LOG,
    );
    let url = |path: &str| format!("https://127.0.0.1:{}{path}", nginx.port());
    let tls = format!("      tls: {{ca_file: {dir}/ca.crt}}\n");
    let config = format!(
        "probes:\n{}{}",
        probe("keep", &url("/keep"), &tls),
        probe(
            "fresh",
            &url("/fresh"),
            &format!("{tls}      reuse_connections: false\n")
        ),
    );
    let mut exporter = Exporter::start(&config);
    assert_kept_alive_and_fresh(&nginx, "/keep", "/fresh");
    let s = exporter.scrape();
    for p in ["keep", "fresh"] {
        assert_eq!(value(&s, "stackmedic_probe_success", &[("probe", p)]), 1.0);
    }
}

#[test]
fn redirects_are_followed_as_configured() {
    let nginx = Nginx::start(
        "location = /old { return 301 /new; }\n\
         location = /new { return 200 'moved here'; }\n",
    );
    let config = format!(
        "probes:\n{}{}",
        probe("follow", &nginx.url("/old"), ""),
        probe(
            "stay",
            &nginx.url("/old"),
            "      follow_redirects: false\n"
        ),
    );
    let mut exporter = Exporter::start(&config);
    let s = exporter.wait_for("both probes ran three times", WAIT, |s| {
        ["follow", "stay"].iter().all(|p| {
            find(s, "stackmedic_probe_runs_total", &[("probe", p)]).is_some_and(|n| n >= 3.0)
        })
    });
    // Followed to the new location, on every run (also after the first redirect).
    assert_eq!(
        value(&s, "stackmedic_http_status_code", &[("probe", "follow")]),
        200.0
    );
    assert_eq!(
        value(&s, "stackmedic_probe_success", &[("probe", "follow")]),
        1.0
    );
    assert_eq!(
        find(
            &s,
            "stackmedic_probe_failures_total",
            &[("probe", "follow")]
        ),
        None,
        "a run of the redirected probe failed"
    );
    // Not followed: the redirect itself is the answer, and it is not a 2xx.
    assert_eq!(
        value(&s, "stackmedic_http_status_code", &[("probe", "stay")]),
        301.0
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_probe_failure_reason",
            &[("probe", "stay"), ("reason", "http_status")]
        ),
        1.0
    );
    let log = std::fs::read_to_string(nginx.access_log()).expect("access log");
    assert!(
        log.lines()
            .any(|l| l.contains("GET /new ") && l.contains("stackmedic-exporter/")),
        "nginx never saw the followed request:\n{log}"
    );
}

#[test]
fn a_proxy_from_the_environment_is_used_for_plain_http() {
    // The proxy answers every request itself; the target's port is closed, so only a request
    // that went through the proxy can succeed.
    let proxy = Nginx::start("location / { return 200 'from the proxy'; }\n");
    let closed = stackmedic_tests::free_port();
    let config = probe("proxied", &format!("http://127.0.0.1:{closed}/ready"), "");
    let mut exporter = Exporter::start_with(Options {
        config: Some(&format!("probes:\n{config}")),
        env: vec![("http_proxy", proxy.url("/"))],
        ..Options::default()
    });
    exporter.wait_value("stackmedic_probe_success", &[("probe", "proxied")], 1.0);
    let log = std::fs::read_to_string(proxy.access_log()).expect("access log");
    assert!(
        log.contains(&format!("GET http://127.0.0.1:{closed}/ready HTTP/1.1")),
        "the proxy never saw the request:\n{log}"
    );
}

#[test]
fn metrics_of_many_probes_pass_promtool() {
    let nginx = Nginx::start(
        "location = /ok { add_header X-Status-Path legacy; return 200 'ok'; }\n\
         location = /down { return 503; }\n",
    );
    let closed = stackmedic_tests::free_port();
    let mut config = String::from("probes:\n");
    let headers = "      expect_headers: [x-status-path, cf-ray]\n";
    for i in 0..50 {
        config += &probe_every("1s", &format!("ok-{i}"), &nginx.url("/ok"), headers);
        config += &probe_every("1s", &format!("down-{i}"), &nginx.url("/down"), "");
        let refused = format!("http://127.0.0.1:{closed}/");
        config += &probe_every("1s", &format!("refused-{i}"), &refused, "");
    }
    config += &format!(
        "  - name: sampled\n    interval: 1s\n    status_path:\n      url: {}\n",
        nginx.url("/ok")
    );
    let mut exporter = Exporter::start(&config);
    exporter.wait_for("every probe ran twice", WAIT, |s| {
        s.iter()
            .filter(|x| x.name == "stackmedic_probe_runs_total" && x.value >= 2.0)
            .count()
            == 151
    });
    let text = stackmedic_tests::http::get(&exporter.url("/metrics"))
        .expect("scrape")
        .text();
    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = check.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Each family once, each series once.
    let mut seen = BTreeSet::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("# TYPE ") {
            assert!(seen.insert(name.to_string()), "family {name} twice");
        } else if !line.starts_with('#') {
            let series = line.rsplit_once(' ').expect("value").0;
            assert!(seen.insert(series.to_string()), "series {series} twice");
        }
    }
    assert!(text.contains(
        "stackmedic_probe_failure_reason{probe=\"refused-7\",kind=\"http\",reason=\"connect\"} 1\n"
    ));
}
