//! Self-tests of the shared test helpers against the real peers: every helper must really start
//! its peer and talk to it. A peer that cannot start fails the test (the helpers panic with its
//! log); nothing here is ever skipped.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stackmedic_tests::alertmanager::{amtool, Alertmanager};
use stackmedic_tests::docker::{self, run_busybox, Container};
use stackmedic_tests::metrics::{self, find};
use stackmedic_tests::nginx::Nginx;
use stackmedic_tests::postgres::{self, psql_client, Postgres};
use stackmedic_tests::prometheus::{promtool, Prometheus};
use stackmedic_tests::{free_port, http, unique_name, wait_until, wait_until_async};

#[test]
fn metrics_parser_reads_escaped_labels_and_special_values() {
    let text = r#"# HELP stackmedic_probe_success Whether the last probe succeeded.
# TYPE stackmedic_probe_success gauge
stackmedic_probe_success{probe="ready",target="http://127.0.0.1:8080/api/ready"} 1
stackmedic_probe_success{probe="sri",target="a \"quoted\" \\ back\nslash"} 0 1700000000000
stackmedic_probe_duration_seconds_bucket{le="+Inf",probe="ready"} 7
stackmedic_hls_stale{stream="cam1"} NaN
process_start_time_seconds 1.7e9
"#;
    let samples = metrics::parse(text).expect("valid exposition text");
    assert_eq!(samples.len(), 5);
    assert_eq!(
        find(&samples, "stackmedic_probe_success", &[("probe", "ready")]),
        Some(1.0)
    );
    assert_eq!(
        find(
            &samples,
            "stackmedic_probe_success",
            &[("target", "a \"quoted\" \\ back\nslash")]
        ),
        Some(0.0)
    );
    assert_eq!(
        find(
            &samples,
            "stackmedic_probe_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        Some(7.0)
    );
    assert!(find(&samples, "stackmedic_hls_stale", &[])
        .expect("NaN sample")
        .is_nan());
    assert_eq!(
        find(&samples, "process_start_time_seconds", &[]),
        Some(1.7e9)
    );
    assert_eq!(
        find(&samples, "stackmedic_probe_success", &[("probe", "nope")]),
        None
    );
    assert_eq!(
        metrics::find_all(&samples, "stackmedic_probe_success", &[]).len(),
        2
    );
    assert!(metrics::parse("broken{label=\"unterminated} 1").is_err());
}

#[test]
fn wait_until_polls_until_true_or_timeout() {
    let mut calls = 0;
    assert!(wait_until(
        Duration::from_secs(5),
        Duration::from_millis(1),
        || {
            calls += 1;
            calls == 3
        }
    ));
    assert_eq!(calls, 3);
    assert!(!wait_until(
        Duration::from_millis(50),
        Duration::from_millis(10),
        || false
    ));
}

#[tokio::test]
async fn wait_until_async_polls_on_the_runtime() {
    let mut calls = 0;
    let became_true = wait_until_async(Duration::from_secs(5), Duration::from_millis(1), || {
        calls += 1;
        let done = calls == 3;
        async move { done }
    })
    .await;
    assert!(became_true);
    assert!(
        !wait_until_async(
            Duration::from_millis(50),
            Duration::from_millis(10),
            || async { false }
        )
        .await
    );
}

#[test]
fn free_port_is_bindable_on_loopback() {
    let port = free_port();
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the free port can be bound");
}

#[test]
#[should_panic(expected = "not found")]
fn bin_path_panics_clearly_for_a_missing_binary() {
    stackmedic_tests::bin_path("stackmedic-no-such-binary");
}

#[test]
fn nginx_serves_static_files_logs_access_and_reopens_logs() {
    let mut nginx = Nginx::start(
        "location / { root {www}; }\n\
         location = /port { return 200 \"port {port}\"; }",
    );
    nginx.write("www/app.js", "console.log('stackmedic');\n");

    let response = http::get(&nginx.url("/app.js")).expect("GET /app.js");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), "console.log('stackmedic');\n");
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.contains("javascript")),
        "mime.types applied: {:?}",
        response.headers
    );
    let response = http::get(&nginx.url("/port")).expect("GET /port");
    assert_eq!(response.text(), format!("port {}", nginx.port()));
    assert_eq!(
        http::get(&nginx.url("/missing"))
            .expect("GET /missing")
            .status,
        404
    );

    // nginx writes the access log line after the response; wait for it.
    let access_log = nginx.access_log();
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            std::fs::read_to_string(&access_log).is_ok_and(|log| log.contains("\"GET /missing "))
        }),
        "access log lines missing"
    );
    let log = std::fs::read_to_string(&access_log).unwrap();
    assert!(log.contains("\"GET /app.js HTTP/1.1\" 200 "), "{log}");

    // Rotate as logrotate does: move the file, reopen, and the next hit lands in a new file.
    let rotated = nginx.dir().join("access.log.1");
    std::fs::rename(&access_log, &rotated).unwrap();
    nginx.reopen();
    assert!(access_log.exists(), "reopen created a new access.log");
    http::get(&nginx.url("/app.js?after-reopen")).expect("GET after reopen");
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            std::fs::read_to_string(&access_log).is_ok_and(|log| log.contains("after-reopen"))
        }),
        "request after reopen not in the new access.log"
    );
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(!old.contains("after-reopen"), "{old}");

    let port = nginx.port();
    nginx.stop();
    assert!(
        !stackmedic_tests::port_accepts(port),
        "nginx still listens after stop"
    );
}

#[test]
#[should_panic(expected = "127.0.0.1")]
fn nginx_refuses_to_listen_beyond_loopback() {
    Nginx::start("listen 0.0.0.0:{port};\nlocation / { return 204; }");
}

#[test]
#[should_panic(expected = "nginx did not start")]
fn nginx_fails_loudly_on_a_bad_configuration() {
    Nginx::start("this_is_not_a_directive on;");
}

#[test]
fn busybox_image_runs_a_container_on_the_host_network() {
    docker::ensure_docker();
    let image = docker::busybox_image();
    assert_eq!(image, "stackmedic-busybox:test");
    // Idempotent: a second call (and the check of another process) finds the image.
    assert_eq!(docker::busybox_image(), image);
    docker::docker_ok(&["image", "inspect", image]);

    let name = unique_name("stackmedic-selftest");
    let port = free_port();
    let port_arg = format!("127.0.0.1:{port}");
    let container = run_busybox(
        &name,
        &["--label", "stackmedic.test=selftest"],
        &["httpd", "-f", "-p", &port_arg, "-h", "/etc"],
    );
    assert!(!container.id().is_empty());

    let listed = docker::docker_ok(&[
        "ps",
        "--filter",
        &format!("name=^/{name}$"),
        "--format",
        "{{.Names}} {{.Image}}",
    ]);
    assert_eq!(listed, format!("{name} {image}"));
    assert_eq!(container.status().as_deref(), Some("running"));
    assert_eq!(
        container.inspect()["HostConfig"]["NetworkMode"],
        serde_json::json!("host")
    );

    // busybox httpd inside the container answers on the host's loopback (--network host).
    let url = format!("http://127.0.0.1:{port}/hosts");
    let mut body = String::new();
    let answered = wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || match http::get(&url) {
            Ok(r) if r.status == 200 => {
                body = r.text();
                true
            }
            _ => false,
        },
    );
    assert!(
        answered,
        "busybox httpd did not answer: {}",
        container.logs()
    );
    assert!(body.contains("127.0.0.1 localhost"), "{body}");

    let echoed = docker::docker_ok(&["exec", &name, "sh", "-c", "echo hello; true && ! false"]);
    assert_eq!(echoed, "hello");

    drop(container);
    let all = docker::docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("name=^/{name}$"),
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(all, "", "container removed on drop");
}

#[test]
fn container_guard_adopts_and_removes_a_container() {
    let image = docker::busybox_image();
    let name = unique_name("stackmedic-adopt");
    docker::docker_ok(&[
        "create",
        "--network",
        "host",
        "--name",
        &name,
        image,
        "true",
    ]);
    let guard = Container::adopt(&name);
    assert!(!guard.id().is_empty());
    assert_eq!(guard.status().as_deref(), Some("created"));
    drop(guard);
    assert!(!docker::docker(&["inspect", &name]).status.success());
}

#[test]
fn prometheus_and_alertmanager_start_and_deliver_an_alert() {
    let alertmanager = Alertmanager::start(
        "route:\n  receiver: blackhole\n  group_wait: 0s\nreceivers:\n  - name: blackhole\n",
    );
    let ready = http::get(&alertmanager.url("/-/ready")).expect("alertmanager /-/ready");
    assert_eq!(ready.status, 200);
    let check = Command::new(amtool())
        .arg("check-config")
        .arg(alertmanager.dir().join("alertmanager.yml"))
        .output()
        .expect("run amtool");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{}']\n\
         scrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{{port}}']\n",
        alertmanager.address()
    );
    let rules = "groups:\n  - name: selftest\n    rules:\n      - alert: StackmedicSelftest\n        expr: vector(1)\n        labels:\n          severity: none\n";
    let mut prometheus = Prometheus::start_with_rules(&config, &[("selftest.yml", rules)]);
    let ready = http::get(&prometheus.url("/-/ready")).expect("prometheus /-/ready");
    assert_eq!(ready.status, 200);

    let check = Command::new(promtool())
        .args(["check", "rules"])
        .arg(prometheus.rules_dir().join("selftest.yml"))
        .output()
        .expect("run promtool");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    assert_eq!(prometheus.query_value("vector(42)").unwrap(), Some(42.0));
    // Prometheus scrapes itself: `up` of job "self" becomes 1.
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            prometheus
                .query_value("up{job=\"self\"}")
                .is_ok_and(|v| v == Some(1.0))
        }),
        "self-scrape never succeeded: {:?}",
        prometheus.targets()
    );
    // Its own /metrics parses with our parser.
    let samples = metrics::scrape(&prometheus.url("/metrics")).expect("scrape prometheus");
    assert!(find(&samples, "prometheus_build_info", &[]).is_some());

    // The always-firing rule reaches Alertmanager.
    let delivered = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        alertmanager.alerts().is_ok_and(|alerts| {
            alerts.as_array().is_some_and(|a| {
                a.iter()
                    .any(|alert| alert["labels"]["alertname"] == "StackmedicSelftest")
            })
        })
    });
    assert!(
        delivered,
        "alert never reached Alertmanager; prometheus alerts: {:?}\n{}",
        prometheus.alerts(),
        prometheus.process().describe()
    );

    // The API used for escalations accepts an alert too.
    alertmanager
        .post_alerts(&serde_json::json!([{
            "labels": {"alertname": "StackmedicEscalation", "severity": "page"},
            "annotations": {"summary": "selftest"}
        }]))
        .expect("post an alert");
    let alerts = alertmanager.alerts().unwrap();
    assert!(
        alerts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["labels"]["alertname"] == "StackmedicEscalation"),
        "{alerts}"
    );
}

#[test]
#[should_panic(expected = "was not ready")]
fn prometheus_fails_loudly_on_a_bad_configuration() {
    Prometheus::start("scrape_configs: [{job_name: 42, no_such_field: true}]\n");
}

#[test]
fn prometheus_extra_flags_replace_the_defaults() {
    let mut prometheus = Prometheus::start_with_args(
        "global: {scrape_interval: 1m}\n",
        &[],
        &[
            "--rules.alert.resend-delay=2s",
            "--query.lookback-delta=30s",
        ],
    );
    let flags = http::get(&prometheus.url("/api/v1/status/flags"))
        .and_then(|r| r.json())
        .expect("flags");
    assert_eq!(flags["data"]["rules.alert.resend-delay"], "2s");
    assert_eq!(flags["data"]["query.lookback-delta"], "30s");
    assert!(prometheus.process().is_running());
}

#[test]
fn postgres_cluster_keeps_committed_rows_across_stop_and_kill9_and_speaks_tls() {
    let started = Instant::now();
    let mut pg = Postgres::start();
    println!(
        "PostgreSQL cluster (initdb, start, role and database) ready in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let port = pg.port();
    assert!(pg.is_running());
    assert_eq!(
        pg.url(),
        format!("postgres://stackmedic@127.0.0.1:{port}/stackmedic")
    );
    assert!(!pg.url().contains(pg.password()));
    assert!(pg.password().len() >= 32, "{}", pg.password());
    let file = pg.password_file();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        format!("{}\n", pg.password())
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(pg.ca_file(), None);

    // Loopback only, durable, and its socket in its own folder.
    assert_eq!(pg.psql("SHOW listen_addresses"), "127.0.0.1");
    assert_eq!(pg.psql("SHOW fsync"), "on");
    assert_eq!(pg.psql("SHOW synchronous_commit"), "on");
    assert_eq!(
        pg.psql("SHOW unix_socket_directories"),
        pg.socket_dir().display().to_string()
    );
    assert!(pg.socket_dir().join(format!(".s.PGSQL.{port}")).exists());

    // The role logs in over TCP with its password, owns what it creates, and a wrong password
    // is refused.
    let url = pg.client_url();
    let password = pg.password().to_owned();
    let tcp = |sql: &str| psql_client(&url, &password, sql);
    tcp(
        "CREATE TABLE facts (id int PRIMARY KEY, what text NOT NULL);\n\
         INSERT INTO facts VALUES (1, 'before stop');",
    )
    .expect("create and insert over TCP");
    assert_eq!(
        tcp("SELECT current_user, inet_server_addr(), what FROM facts").unwrap(),
        "stackmedic|127.0.0.1|before stop"
    );
    assert_eq!(
        pg.psql("SELECT tableowner FROM pg_tables WHERE tablename = 'facts'"),
        "stackmedic"
    );
    let refused = psql_client(&url, "not-the-password", "SELECT 1").unwrap_err();
    assert!(
        refused.contains("password authentication failed"),
        "{refused}"
    );
    let err = pg.try_psql("SELECT * FROM no_such_table").unwrap_err();
    assert!(err.contains("no_such_table"), "{err}");

    // A clean stop and start: same port, same data.
    pg.stop();
    assert!(!pg.is_running());
    assert!(!stackmedic_tests::port_accepts(port));
    assert!(pg.try_psql("SELECT 1").is_err());
    pg.start_again();
    assert_eq!(pg.port(), port);
    assert_eq!(tcp("SELECT what FROM facts").unwrap(), "before stop");

    // kill -9 of the whole server: a committed row survives, a transaction left open does not.
    tcp("INSERT INTO facts VALUES (2, 'before kill');").unwrap();
    let mut open = Command::new(postgres::program("psql"))
        .env_clear()
        .env("PGPASSWORD", &password)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--dbname", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run psql");
    std::io::Write::write_all(
        open.stdin.as_mut().unwrap(),
        b"BEGIN;\nINSERT INTO facts VALUES (3, 'never committed');\nSELECT pg_sleep(600);\n",
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'")
                == "1"
        }),
        "the open transaction never reached its sleep"
    );
    let postmaster = pg.process().pid();
    pg.kill9();
    assert!(!pg.is_running());
    assert!(!std::path::Path::new(&format!("/proc/{postmaster}/status")).exists());
    assert!(!stackmedic_tests::port_accepts(port));
    let _ = open.kill();
    let _ = open.wait();
    pg.start_again();
    assert!(
        pg.log().contains("database system was interrupted")
            || pg.log().contains("was not properly shut down"),
        "no crash recovery after kill -9:\n{}",
        pg.log()
    );
    assert_eq!(
        tcp("SELECT id || ':' || what FROM facts ORDER BY id").unwrap(),
        "1:before stop\n2:before kill"
    );

    // Dropping it stops the server and deletes its folder.
    let dir = pg.dir().to_path_buf();
    let postmaster = pg.process().pid();
    drop(pg);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(!std::path::Path::new(&format!("/proc/{postmaster}/status")).exists());

    // TLS: verify-full with the CA accepts the server for 127.0.0.1, and refuses it under
    // another host name, with another CA, or without TLS.
    let started = Instant::now();
    let pg = Postgres::start_tls();
    println!(
        "PostgreSQL cluster with TLS (certificates, initdb, start, role and database) ready in \
         {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let ca = pg.ca_file().expect("a CA file with TLS");
    let port = pg.port();
    let verify_full = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url(),
        ca.display()
    );
    assert_eq!(pg.client_url(), verify_full);
    assert_eq!(
        psql_client(
            &verify_full,
            pg.password(),
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        .unwrap(),
        "t"
    );
    let wrong_host = format!(
        "host=stackmedic.invalid hostaddr=127.0.0.1 port={port} dbname=stackmedic \
         user=stackmedic sslmode=verify-full sslrootcert={}",
        ca.display()
    );
    let refused = psql_client(&wrong_host, pg.password(), "SELECT 1").unwrap_err();
    assert!(
        refused.contains("does not match host name \"stackmedic.invalid\""),
        "{refused}"
    );
    let other = tempfile::tempdir().unwrap();
    stackmedic_tests::tls::make_certificates(other.path());
    let other_ca = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url(),
        other.path().join("ca.crt").display()
    );
    let refused = psql_client(&other_ca, pg.password(), "SELECT 1").unwrap_err();
    assert!(refused.contains("certificate verify failed"), "{refused}");
    let plain = format!("{}?sslmode=disable", pg.url());
    let refused = psql_client(&plain, pg.password(), "SELECT 1").unwrap_err();
    assert!(refused.contains("no encryption"), "{refused}");
}

#[test]
#[should_panic(expected = "unrecognized configuration parameter \"no_such_setting\"")]
fn postgres_fails_loudly_with_its_log_on_a_bad_setting() {
    Postgres::start_with(&postgres::Options {
        settings: vec![("no_such_setting".to_owned(), "1".to_owned())],
        ..postgres::Options::default()
    });
}
