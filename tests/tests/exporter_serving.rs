//! Serving: the `stackmedic-exporter` binary with a web configuration (basic auth with a bcrypt
//! hash, TLS with a certificate made by `openssl`), reload by `POST /-/reload` and SIGHUP, the
//! landing and lifecycle endpoints, and the embedded default configuration against the local
//! Docker Engine.

use std::time::Duration;

use stackmedic_tests::backend::{Backend, LlmPath};
use stackmedic_tests::docker::{ensure_docker, run_busybox};
use stackmedic_tests::exporter::{runs, value, Exporter, Options};
use stackmedic_tests::metrics::{self, find};
use stackmedic_tests::tls::make_certificates;
use stackmedic_tests::{free_port, http, unique_name};

const USER: &str = "prometheus";
const PASSWORD: &str = "correct horse battery staple";

struct Reply {
    status: u16,
    www_authenticate: Option<String>,
    body: String,
}

fn https_get(
    client: &reqwest::Client,
    url: &str,
    auth: Option<(&str, &str)>,
) -> Result<Reply, reqwest::Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut req = client.get(url);
        if let Some((u, p)) = auth {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let www_authenticate = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.text().await?;
        Ok(Reply {
            status,
            www_authenticate,
            body,
        })
    })
}

#[test]
fn basic_auth_with_bcrypt_and_tls() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certificates(certs.path());
    // Cost 4 keeps the test fast; the exporter accepts any bcrypt cost.
    let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
    let d = certs.path().display();
    let web = format!(
        "tls_server_config:\n  cert_file: {d}/server.crt\n  key_file: {d}/server.key\nbasic_auth_users:\n  {USER}: '{hash}'\n"
    );
    let backend = Backend::start();
    backend.set_path(LlmPath::Primary);
    let config = format!(
        "probes:\n  - name: ready\n    interval: 300ms\n    timeout: 250ms\n    http:\n      url: {}\n",
        backend.url("/api/ready")
    );
    let exporter = Exporter::start_with(Options {
        config: Some(&config),
        web_config: Some(&web),
        ..Options::default()
    });
    let base = format!("https://127.0.0.1:{}", exporter.port());
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.path().join("ca.crt")).unwrap())
        .expect("CA certificate");
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .expect("client");

    let r = https_get(&client, &format!("{base}/metrics"), None).expect("TLS with the CA works");
    assert_eq!(r.status, 401);
    assert!(r.www_authenticate.is_some_and(|v| v.starts_with("Basic")));
    let r = https_get(&client, &format!("{base}/metrics"), Some((USER, "wrong"))).expect("request");
    assert_eq!(r.status, 401);
    let r = https_get(
        &client,
        &format!("{base}/metrics"),
        Some(("nobody", PASSWORD)),
    )
    .expect("request");
    assert_eq!(r.status, 401);
    for path in ["/-/healthy", "/"] {
        let r = https_get(&client, &format!("{base}{path}"), None).expect("request");
        assert_eq!(r.status, 401, "{path} must require credentials too");
    }

    // With credentials: the probe's results are there.
    let mut last = String::new();
    let ok =
        stackmedic_tests::wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            let r = https_get(&client, &format!("{base}/metrics"), Some((USER, PASSWORD)))
                .expect("request");
            assert_eq!(r.status, 200, "{}", r.body);
            last = r.body;
            let s = metrics::parse(&last).expect("exposition format");
            find(&s, "stackmedic_probe_success", &[("probe", "ready")]) == Some(1.0)
        });
    assert!(ok, "no successful probe over TLS with auth:\n{last}");

    // A client that does not trust the CA fails the handshake; plain HTTP gets no metrics.
    let untrusting = reqwest::Client::builder()
        .tls_certs_only(Vec::<reqwest::Certificate>::new())
        .build()
        .expect("client");
    let err = https_get(
        &untrusting,
        &format!("{base}/metrics"),
        Some((USER, PASSWORD)),
    )
    .err()
    .expect("an unknown CA must be refused");
    assert!(err.is_connect(), "{err:?}");
    let plain = http::request_with_timeout(
        "GET",
        &exporter.url("/metrics"),
        &[],
        None,
        Duration::from_secs(5),
    );
    assert!(
        plain.as_ref().map_or(true, |r| r.status != 200),
        "plain HTTP must not be served"
    );
}

fn self_probe(name: &str, port: u16, path: &str) -> String {
    format!(
        "  - name: {name}\n    interval: 300ms\n    timeout: 250ms\n    http:\n      url: http://127.0.0.1:{port}{path}\n"
    )
}

#[test]
fn reload_by_post_and_sighup_keeps_the_old_config_when_broken() {
    let port = free_port();
    let one = format!("probes:\n{}", self_probe("healthy", port, "/-/healthy"));
    let mut exporter = Exporter::start_with(Options {
        config: Some(&one),
        port: Some(port),
        ..Options::default()
    });
    let s = exporter.wait_value("stackmedic_probe_success", &[("probe", "healthy")], 1.0);
    assert_eq!(
        value(&s, "stackmedic_exporter_probes", &[("kind", "http")]),
        1.0
    );
    assert_eq!(
        find(&s, "stackmedic_probe_success", &[("probe", "ready")]),
        None
    );

    // A changed valid config, reloaded by POST, adds a probe before the unchanged one.
    let two = format!(
        "probes:\n{}{}",
        self_probe("ready", port, "/-/ready"),
        self_probe("healthy", port, "/-/healthy")
    );
    exporter.write_config(&two);
    let runs_before = runs(&exporter.scrape(), "healthy");
    let r =
        http::request("POST", &exporter.url("/-/reload"), &[], Some(b"")).expect("POST /-/reload");
    assert_eq!(r.status, 200, "{}", r.text());
    // The unchanged probe's series moved with it at once: a scrape right after the reload
    // has them, before its next run.
    assert!(
        runs(&exporter.scrape(), "healthy") >= runs_before,
        "the unchanged probe's series are missing right after the reload"
    );
    let s = exporter.wait_value("stackmedic_probe_success", &[("probe", "ready")], 1.0);
    assert_eq!(
        value(&s, "stackmedic_exporter_probes", &[("kind", "http")]),
        2.0
    );
    assert_eq!(
        value(&s, "stackmedic_exporter_config_last_reload_successful", &[]),
        1.0
    );
    // The unchanged probe kept its state.
    assert!(
        runs(&s, "healthy") >= runs_before,
        "the unchanged probe was restarted"
    );

    // A broken file and SIGHUP: the old probes stay, the failure is visible.
    exporter.write_config(&format!("{two}  - name: broken\n    intervall: 1s\n"));
    assert!(exporter.process().signal("HUP"), "SIGHUP delivered");
    let s = exporter.wait_value(
        "stackmedic_exporter_config_last_reload_successful",
        &[],
        0.0,
    );
    assert_eq!(
        value(&s, "stackmedic_exporter_probes", &[("kind", "http")]),
        2.0
    );
    let (h, r) = (runs(&s, "healthy"), runs(&s, "ready"));
    let s = exporter.wait_for(
        "both old probes still running",
        Duration::from_secs(10),
        |s| runs(s, "healthy") >= h + 2 && runs(s, "ready") >= r + 2,
    );
    assert_eq!(
        find(&s, "stackmedic_probe_runs_total", &[("probe", "broken")]),
        None
    );
    let logged =
        stackmedic_tests::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            exporter
                .process()
                .stderr()
                .contains("configuration reload failed")
        });
    assert!(
        logged,
        "the reload error must be logged:\n{}",
        exporter.process().describe()
    );
    assert!(exporter.process().stderr().contains("probes[2].intervall"));
    assert!(exporter.process().is_running());

    // POST reports the same problem; a fixed file reloads again.
    let r =
        http::request("POST", &exporter.url("/-/reload"), &[], Some(b"")).expect("POST /-/reload");
    assert_eq!(r.status, 500);
    assert!(
        r.text().contains("probes[2].intervall: unknown field"),
        "{}",
        r.text()
    );
    exporter.write_config(&one);
    let r =
        http::request("POST", &exporter.url("/-/reload"), &[], Some(b"")).expect("POST /-/reload");
    assert_eq!(r.status, 200, "{}", r.text());
    let s = exporter.scrape();
    assert_eq!(
        value(&s, "stackmedic_exporter_config_last_reload_successful", &[]),
        1.0
    );
    assert_eq!(
        value(&s, "stackmedic_exporter_probes", &[("kind", "http")]),
        1.0
    );
    assert_eq!(
        find(&s, "stackmedic_probe_runs_total", &[("probe", "ready")]),
        None
    );
}

#[test]
fn landing_page_and_lifecycle_endpoints_answer() {
    let port = free_port();
    // Nothing listens on `closed`: that probe fails with `connect`, and the page says why.
    let closed = free_port();
    let config = format!(
        "probes:\n{}{}",
        self_probe("self-check", port, "/-/healthy"),
        self_probe("refused", closed, "/")
    );
    let mut exporter = Exporter::start_with(Options {
        config: Some(&config),
        port: Some(port),
        ..Options::default()
    });
    exporter.wait_value("stackmedic_probe_success", &[("probe", "self-check")], 1.0);
    exporter.wait_value("stackmedic_probe_success", &[("probe", "refused")], 0.0);
    let landing = http::get(&exporter.url("/")).expect("GET /");
    assert_eq!(landing.status, 200);
    let html = landing.text();
    for needle in [
        "stackmedic exporter",
        "href=\"metrics\"",
        "self-check",
        env!("CARGO_PKG_VERSION"),
        "<strong>refused</strong> <span class=\"kind\">HTTP check</span>",
        "<strong>cannot connect</strong> <code>connect</code>",
        "Connection refused",
        &format!("http://127.0.0.1:{closed}/"),
    ] {
        assert!(
            html.contains(needle),
            "{needle:?} missing from the landing page:\n{html}"
        );
    }
    let healthy = http::get(&exporter.url("/-/healthy")).expect("healthy");
    assert_eq!(
        (healthy.status, healthy.text().as_str()),
        (200, "Healthy.\n")
    );
    let ready = http::get(&exporter.url("/-/ready")).expect("ready");
    assert_eq!((ready.status, ready.text().as_str()), (200, "Ready.\n"));
    assert_eq!(
        http::get(&exporter.url("/-/reload"))
            .expect("GET reload")
            .status,
        405
    );
    assert_eq!(http::get(&exporter.url("/nope")).expect("404").status, 404);
    let s = exporter.scrape();
    assert_eq!(
        value(
            &s,
            "stackmedic_exporter_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
}

#[test]
fn embedded_default_reports_the_local_engines_containers() {
    ensure_docker();
    let c = run_busybox(&unique_name("sm-default"), &[], &["sleep", "300"]);
    let mut exporter = Exporter::start_with(Options::default());
    let p = ("probe", "containers");
    let s = exporter.wait_value(
        "stackmedic_container_running",
        &[p, ("container", c.name())],
        1.0,
    );
    assert_eq!(value(&s, "stackmedic_docker_up", &[p]), 1.0);
    assert_eq!(
        value(&s, "stackmedic_probe_success", &[p, ("kind", "docker")]),
        1.0
    );
    assert_eq!(
        value(&s, "stackmedic_exporter_probes", &[("kind", "docker")]),
        1.0
    );
    assert!(value(&s, "stackmedic_containers_matched", &[p]) >= 1.0);
}
