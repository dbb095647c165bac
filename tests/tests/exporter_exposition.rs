//! `/metrics` as scrapers ask for it: the Prometheus text format by default, OpenMetrics when
//! the `Accept` header asks for it as Prometheus does, gzip-compressed when `Accept-Encoding`
//! allows; each form holds the same series. A real Prometheus (which asks for OpenMetrics and
//! gzip) scrapes every series.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::time::Duration;

use stackmedic_tests::exporter::{Exporter, WAIT};
use stackmedic_tests::http;
use stackmedic_tests::metrics::parse;
use stackmedic_tests::nginx::Nginx;
use stackmedic_tests::prometheus::Prometheus;

/// The `Accept` header Prometheus sends by default.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn config(nginx: &Nginx) -> String {
    let mut config = String::from("probes:\n");
    for i in 0..20 {
        config += &format!(
            "  - name: ready-{i}\n    interval: 1s\n    timeout: 500ms\n    http:\n      url: {}\n",
            nginx.url("/ready")
        );
    }
    config += &format!(
        "  - name: refused\n    interval: 1s\n    timeout: 500ms\n    http:\n      url: http://127.0.0.1:{}/\n",
        stackmedic_tests::free_port()
    );
    config
}

fn start() -> (Nginx, Exporter) {
    let nginx = Nginx::start("location = /ready { return 200 'ok'; }\n");
    let mut exporter = Exporter::start(&config(&nginx));
    exporter.wait_for("every probe ran twice", WAIT, |s| {
        s.iter()
            .filter(|x| x.name == "stackmedic_probe_runs_total" && x.value >= 2.0)
            .count()
            == 21
    });
    (nginx, exporter)
}

/// The series of a text (0.0.4 or OpenMetrics) body: name and labels, without values.
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.rsplit_once(' ').expect("a value").0.to_string())
        .collect()
}

fn gunzip(body: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(body)
        .read_to_string(&mut text)
        .expect("a gzip body of UTF-8 text");
    text
}

#[test]
fn text_gzip_and_open_metrics_hold_the_same_series() {
    let (_nginx, exporter) = start();
    let url = exporter.url("/metrics");
    let plain = http::get(&url).expect("scrape");
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(plain.header("content-encoding"), None);
    let text = plain.text();
    let want = series(&text);
    assert!(want.len() > 100, "{} series", want.len());

    let zipped = http::request("GET", &url, &[("Accept-Encoding", "gzip")], None).expect("scrape");
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(zipped.header("vary"), Some("Accept-Encoding"));
    let unzipped = gunzip(&zipped.body);
    assert_eq!(series(&unzipped), want);
    assert!(
        zipped.body.len() * 4 < unzipped.len(),
        "{} bytes compressed to {}",
        unzipped.len(),
        zipped.body.len()
    );
    parse(&unzipped).expect("the text format");

    let om = http::request(
        "GET",
        &url,
        &[
            ("Accept", PROMETHEUS_ACCEPT),
            ("Accept-Encoding", "gzip, deflate"),
        ],
        None,
    )
    .expect("scrape");
    assert_eq!(
        om.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert_eq!(om.header("content-encoding"), Some("gzip"));
    let om = gunzip(&om.body);
    assert!(
        om.ends_with("# EOF\n"),
        "{}",
        &om[om.len().saturating_sub(200)..]
    );
    assert_eq!(series(&om), want);
    // A counter family is named without `_total`; its samples keep it.
    assert!(
        om.contains("# TYPE stackmedic_probe_runs counter\n"),
        "{om}"
    );
    assert!(
        om.contains("stackmedic_probe_runs_total{probe=\"ready-0\""),
        "{om}"
    );
    assert!(
        om.contains("# TYPE stackmedic_probe_success gauge\n"),
        "{om}"
    );
    // Each family once.
    let mut families = BTreeSet::new();
    for line in om.lines().filter(|l| l.starts_with("# TYPE ")) {
        assert!(families.insert(line.to_string()), "{line} twice");
    }
    // Other clients keep the text format.
    let text_asked = http::request(
        "GET",
        &url,
        &[("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")],
        None,
    )
    .expect("scrape");
    assert!(text_asked
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
}

#[test]
fn prometheus_scrapes_every_series_in_open_metrics_with_gzip() {
    let (_nginx, mut exporter) = start();
    let target = format!("127.0.0.1:{}", exporter.port());
    let prometheus = Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: stackmedic\n    static_configs:\n      - targets: ['{target}']\n"
    ));
    let series = exporter.scrape().len() as f64;
    let ok =
        stackmedic_tests::wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
            prometheus
                .query_value("up{job=\"stackmedic\"}")
                .ok()
                .flatten()
                == Some(1.0)
                && prometheus
                    .query_value("scrape_samples_scraped{job=\"stackmedic\"}")
                    .ok()
                    .flatten()
                    == Some(series)
        });
    assert!(
        ok,
        "Prometheus did not scrape {series} series: up {:?}, samples {:?}",
        prometheus.query_value("up{job=\"stackmedic\"}"),
        prometheus.query_value("scrape_samples_scraped{job=\"stackmedic\"}")
    );
    // A counter arrives under its sample name, with `_total`.
    let runs = prometheus
        .query_value("stackmedic_probe_runs_total{probe=\"ready-0\"}")
        .expect("query")
        .expect("a value");
    assert!(runs >= 2.0, "{runs}");
}
