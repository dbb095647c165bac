//! Several Docker Engines: a target names its engine (`docker.host`, with client TLS
//! certificates over TCP), and a container on another engine than the default is a subject of
//! its own, `container:NAME@tcp://HOST:PORT`.
//!
//! Against two real engines: the one `scripts/test.sh` starts (the default, on the local
//! socket) and a second, private `dockerd` started by the test on a loopback TCP port with TLS
//! and client certificates made by `openssl` ([`Dockerd`]). Both hold a container of the same
//! name. Also: an engine refusing the client, an engine the client does not trust (by its CA or
//! by `tls_server_name`), an attempt that meets a refused client after a reload, and every
//! unusable engine key of the file or the environment reported with its path.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use stackmedic_tests::docker::{ensure_docker, run_busybox};
use stackmedic_tests::dockerd::Dockerd;
use stackmedic_tests::remediator::{alert, payload, Remediator};
use stackmedic_tests::{bin_path, unique_name, wait_until};

/// The `docker` section keys that reach the engine at `host` over TCP with TLS, trusting `ca`
/// and presenting the client certificate `cert` with its key.
fn tls_keys(host: &str, ca: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "host: {host}, ca_file: {}, cert_file: {}, key_file: {}",
        ca.display(),
        cert.display(),
        key.display()
    )
}

/// The trusted client's keys for `engine` at `host` (an address of the engine).
fn trusted(engine: &Dockerd, host: &str) -> String {
    tls_keys(
        host,
        &engine.ca_file(),
        &engine.client_cert(),
        &engine.client_key(),
    )
}

#[test]
fn remediator_restarts_the_container_on_its_target_s_engine_and_not_its_namesake() {
    ensure_docker();
    let engine = Dockerd::start();
    let name = unique_name("sm-engines");
    let sidecar = unique_name("sm-sidecar");
    let local = run_busybox(&name, &[], &["sleep", "600"]);
    let remote_id = engine.run_busybox(
        &name,
        &["--label", "stackmedic.restart=true"],
        &["sleep", "600"],
    );
    // Only on the second engine: verification finds it only if it asks the target's engine.
    engine.run_busybox(&sidecar, &[], &["sleep", "600"]);
    let started = |e: &Dockerd| e.inspect(&name, "{{.State.StartedAt}}");
    let local_before = local.inspect()["State"]["StartedAt"].clone();
    let remote_before = started(&engine);

    let tcp = engine.tcp_address();
    // The same engine written another way: one engine, so one subject.
    let https = format!("https://127.0.0.1:{}/", engine.port());
    let again = format!("{}, tls_server_name: 127.0.0.1", trusted(&engine, &https));
    let config = format!(
        "global: {{reconcile_interval: 0s}}\n\
         targets:\n\
         - name: remote\n  docker: {{{remote}, containers: [{name}], stop_timeout: 1s}}\n  verify: {{deadline: 30s, stable_for: 1s, containers: [{sidecar}]}}\n\
         - name: remote-opted-in\n  docker: {{{again}, require_label: stackmedic.restart=true, stop_timeout: 1s}}\n  verify: {{deadline: 30s, stable_for: 1s, containers: [{sidecar}]}}\n\
         - name: local\n  docker: {{containers: [{name}], stop_timeout: 1s}}\n  verify: {{deadline: 30s, stable_for: 1s}}\n\
         rules:\n\
         - name: restart-remote\n  matchers: ['alertname=\"RemoteDown\"']\n  action: container_restart\n  target: remote\n  container_label: container\n\
         - name: restart-remote-by-id\n  matchers: ['alertname=\"RemoteDown\"']\n  action: container_restart\n  target: remote-opted-in\n  container_label: container_id\n\
         - name: restart-local\n  matchers: ['alertname=\"LocalDown\"']\n  action: container_restart\n  target: local\n  container_label: container\n",
        remote = trusted(&engine, &tcp),
    );
    let mut rem = Remediator::start(&config);

    // One alert, two rules: by name on one target, by ID prefix (resolved through the second
    // engine, where alone that ID exists) on the other.
    rem.fire(
        &[
            ("alertname", "RemoteDown"),
            ("container", &name),
            ("container_id", &remote_id[..12]),
        ],
        "2026-12-06T10:00:00Z",
    );
    let succeeded = rem.wait_for("succeeded", 1, Duration::from_secs(90));
    rem.wait_for("joined", 1, Duration::from_secs(30));
    let remote_subject = format!("container:{name}@{tcp}");
    assert_eq!(
        succeeded[0]["subject"],
        remote_subject.as_str(),
        "{succeeded:#?}"
    );
    let detail = succeeded[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("restarted container {name} on {tcp}")),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("verified {name}, {sidecar}")),
        "{detail}"
    );
    let joined = rem.actions_with("joined");
    assert_eq!(joined[0]["subject"], remote_subject.as_str(), "{joined:#?}");
    assert_ne!(
        started(&engine),
        remote_before,
        "the second engine's container was not restarted"
    );
    assert_eq!(
        local.inspect()["State"]["StartedAt"],
        local_before,
        "the default engine's namesake was restarted"
    );

    // The default engine's container is another subject: its own incident, its own restart.
    let remote_after = started(&engine);
    rem.fire(
        &[("alertname", "LocalDown"), ("container", &name)],
        "2026-12-06T10:01:00Z",
    );
    rem.wait_for("succeeded", 2, Duration::from_secs(90));
    let local_row = rem
        .actions_with("succeeded")
        .into_iter()
        .find(|a| a["rule"] == "restart-local")
        .expect("the local restart's row");
    assert_eq!(local_row["subject"], format!("container:{name}").as_str());
    assert!(
        local_row["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("restarted container {name} (stop timeout")),
        "{local_row:#}"
    );
    assert_ne!(
        local.inspect()["State"]["StartedAt"],
        local_before,
        "the default engine's container was not restarted"
    );
    assert_eq!(
        started(&engine),
        remote_after,
        "the second engine's container was restarted again"
    );
    let mut subjects: Vec<String> = rem
        .incidents()
        .iter()
        .map(|i| {
            assert_eq!(i["attempts"], 1, "{i:#}");
            i["subject"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    subjects.sort();
    assert_eq!(subjects, [format!("container:{name}"), remote_subject]);
    assert_eq!(
        rem.metric(
            "stackmedic_remediator_actions_total",
            &[("kind", "container_restart"), ("result", "succeeded")]
        ),
        2.0
    );
}

#[test]
fn remediator_names_the_tls_problem_when_the_engine_refuses_the_client_or_is_not_trusted() {
    let engine = Dockerd::start();
    let name = unique_name("sm-tls");
    // One container per target, so each is a subject of its own with its own problem.
    let (client_c, ca_c, name_c) = (
        format!("{name}-client"),
        format!("{name}-ca"),
        format!("{name}-name"),
    );
    for c in [&client_c, &ca_c, &name_c] {
        engine.run_busybox(c, &[], &["sleep", "600"]);
    }
    let before = engine.inspect(&client_c, "{{.State.StartedAt}}");
    let tcp = engine.tcp_address();
    let (bad_cert, bad_key) = engine.untrusted_client();
    let config = |client: &str| {
        format!(
            "global: {{reconcile_interval: 0s}}\n\
             targets:\n\
             - name: wrong-client\n  docker: {{{client}, containers: [{client_c}], stop_timeout: 1s}}\n  verify: {{deadline: 30s, stable_for: 1s}}\n\
             - name: wrong-ca\n  docker: {{{wrong_ca}, containers: [{ca_c}], stop_timeout: 1s}}\n\
             - name: wrong-name\n  docker: {{{good}, tls_server_name: docker2.example.org, containers: [{name_c}], stop_timeout: 1s}}\n\
             rules:\n\
             - name: restart-wrong-client\n  matchers: ['alertname=\"ClientDown\"']\n  action: container_restart\n  target: wrong-client\n  container_label: container\n\
             - name: restart-wrong-ca\n  matchers: ['alertname=\"CaDown\"']\n  action: container_restart\n  target: wrong-ca\n  container_label: container\n\
             - name: restart-wrong-name\n  matchers: ['alertname=\"NameDown\"']\n  action: container_restart\n  target: wrong-name\n  container_label: container\n",
            good = trusted(&engine, &tcp),
            wrong_ca = tls_keys(
                &tcp,
                &engine.untrusted_ca_file(),
                &engine.client_cert(),
                &engine.client_key()
            ),
        )
    };
    let mut rem = Remediator::start(&config(&tls_keys(
        &tcp,
        &engine.ca_file(),
        &bad_cert,
        &bad_key,
    )));
    rem.webhook(
        &payload(vec![
            alert(
                "firing",
                &[("alertname", "ClientDown"), ("container", &client_c)],
                "2026-12-06T10:00:00Z",
            ),
            alert(
                "firing",
                &[("alertname", "CaDown"), ("container", &ca_c)],
                "2026-12-06T10:00:00Z",
            ),
            alert(
                "firing",
                &[("alertname", "NameDown"), ("container", &name_c)],
                "2026-12-06T10:00:00Z",
            ),
        ]),
        None,
    )
    .unwrap();
    // None of the engines can be asked: each action is held, its incident saying why.
    let detail_of = |incidents: &[Value], c: &str| {
        incidents
            .iter()
            .find(|i| i["subject"] == format!("container:{c}@{tcp}") && i["state"] == "held")
            .and_then(|i| i["detail"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let mut incidents = Vec::new();
    let held = wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        incidents = rem.incidents();
        [&client_c, &ca_c, &name_c]
            .iter()
            .all(|c| !detail_of(&incidents, c).is_empty())
    });
    assert!(held, "{incidents:#?}\n{}", rem.process().describe());
    let client_detail = detail_of(&incidents, &client_c);
    assert!(
        client_detail.contains(&format!("cannot reach the Docker Engine at {tcp}"))
            && client_detail.contains("TLS: the engine refused the handshake")
            && client_detail.contains("cert_file"),
        "{client_detail}"
    );
    let ca_detail = detail_of(&incidents, &ca_c);
    assert!(
        ca_detail.contains("TLS: the engine's certificate is not trusted")
            && ca_detail.contains("invalid peer certificate"),
        "{ca_detail}"
    );
    // The certificate names 127.0.0.1, not the name the target expects.
    let name_detail = detail_of(&incidents, &name_c);
    assert!(
        name_detail.contains("TLS: the engine's certificate is not trusted")
            && name_detail.contains("certificate not valid for name \"docker2.example.org\""),
        "{name_detail}"
    );
    assert_eq!(
        rem.metric("stackmedic_remediator_incidents", &[("state", "held")]),
        3.0,
        "the holds are counted"
    );
    assert!(rem.actions_with("succeeded").is_empty());
    assert_eq!(engine.inspect(&client_c, "{{.State.StartedAt}}"), before);

    // With the trusted client certificate the held action goes on by itself.
    let fixed = config(&trusted(&engine, &tcp));
    let r = rem.reconfigure(&fixed);
    assert_eq!(r.status, 200, "{}", r.text());
    let done = rem.wait_for("succeeded", 1, Duration::from_secs(90));
    assert_eq!(done[0]["rule"], "restart-wrong-client");
    assert_eq!(
        done[0]["subject"],
        format!("container:{client_c}@{tcp}").as_str()
    );
    assert_ne!(engine.inspect(&client_c, "{{.State.StartedAt}}"), before);
}

#[test]
fn remediator_attempt_on_an_engine_that_refuses_the_client_is_held_naming_tls() {
    let engine = Dockerd::start();
    let name = unique_name("sm-tls-attempt");
    // It exits at once after every start: the first attempt fails its verification.
    engine.run_busybox(&name, &[], &["sh", "-c", "exit 3"]);
    let tcp = engine.tcp_address();
    let (bad_cert, bad_key) = engine.untrusted_client();
    let config = |keys: &str| {
        format!(
            "global: {{reconcile_interval: 0s}}\n\
             targets:\n\
             - name: remote\n  max_attempts: 2\n  backoff: 10s\n  docker: {{{keys}, containers: [{name}], stop_timeout: 1s}}\n  verify: {{deadline: 20s, stable_for: 1s}}\n\
             rules:\n\
             - name: restart-remote\n  matchers: ['alertname=\"RemoteDown\"']\n  action: container_restart\n  target: remote\n  container_label: container\n",
        )
    };
    let mut rem = Remediator::start(&config(&trusted(&engine, &tcp)));
    rem.fire(
        &[("alertname", "RemoteDown"), ("container", &name)],
        "2026-12-06T10:00:00Z",
    );
    let first = rem.wait_for("failed", 1, Duration::from_secs(90));
    let detail = first[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("attempt 1 of 2: restarted container") && detail.contains("exit code 3"),
        "{detail}"
    );
    // The client certificate is replaced by one the engine does not trust before the next
    // attempt: the attempt is not spent on an engine that cannot be asked — it is held, saying
    // why, and the incident keeps its one attempt.
    let r = rem.reconfigure(&config(&tls_keys(
        &tcp,
        &engine.ca_file(),
        &bad_cert,
        &bad_key,
    )));
    assert_eq!(r.status, 200, "{}", r.text());
    let subject = format!("container:{name}@{tcp}");
    let incident = rem.wait_incident(&subject, "held", Duration::from_secs(60));
    let detail = incident["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("cannot reach the Docker Engine at")
            && detail.contains("TLS: the engine refused the handshake"),
        "{detail}"
    );
    assert_eq!(incident["attempts"], 1, "{incident:#}");
    assert_eq!(rem.actions_with("failed").len(), 1);
}

#[test]
fn remediator_config_check_names_each_unusable_engine_key_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let (good, other) = (dir.path().join("good"), dir.path().join("other"));
    for d in [&good, &other] {
        std::fs::create_dir(d).unwrap();
        stackmedic_tests::tls::make_certificates(d);
        stackmedic_tests::tls::make_client_certificate(d);
    }
    let not_pem = dir.path().join("not-pem.key");
    std::fs::write(&not_pem, "not a key\n").unwrap();
    let missing = dir.path().join("missing.crt");
    let g = |f: &str| good.join(f).display().to_string();
    let config = format!(
        "docker: {{host: tcp://127.0.0.1:2376, cert_file: {cert}}}\n\
         targets:\n\
         - name: a\n  docker: {{host: tcp://127.0.0.1:2376, ca_file: {missing}, cert_file: {folder}, key_file: {not_pem}, containers: [x]}}\n\
         - name: b\n  docker: {{host: tcp://127.0.0.1:2376, ca_file: {ca}, cert_file: {cert}, key_file: {other_key}, containers: [x]}}\n\
         - name: c\n  docker: {{host: https://docker.example.org, containers: [x]}}\n\
         - name: d\n  docker: {{host: tcp://docker.example.org:2375, containers: [x]}}\n\
         - name: e\n  docker: {{ca_file: {ca}, containers: [x]}}\n\
         - name: f\n  docker: {{host: 'ssh://docker.example.org', containers: [x]}}\n\
         - name: g\n  docker: {{host: 'unix:///run/other/docker.sock', containers: [x]}}\n  compose: {{file: /srv/stack/compose.yml}}\n\
         rules: []\n",
        cert = g("client.crt"),
        ca = g("ca.crt"),
        missing = missing.display(),
        folder = dir.path().display(),
        not_pem = not_pem.display(),
        other_key = other.join("client.key").display(),
    );
    let file = dir.path().join("remediator.yml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(bin_path("stackmedic-remediator"))
        .args([
            &format!("--config.file={}", file.display()),
            "--config.check",
        ])
        .env_remove("DOCKER_HOST")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("warning: ") && !l.starts_with("configuration is invalid"))
        .collect();
    let missing_tls = "missing: client TLS needs ca_file, cert_file and key_file together (the engine's CA, and this client's certificate and key)";
    let expected = [
        format!("docker.ca_file: {missing_tls}"),
        format!("docker.key_file: {missing_tls}"),
        format!(
            "targets[0].docker.ca_file: cannot read {}: No such file or directory (os error 2)",
            missing.display()
        ),
        format!(
            "targets[0].docker.cert_file: cannot read {}: Is a directory (os error 21)",
            dir.path().display()
        ),
        format!(
            "targets[0].docker.key_file: {}: no PEM private key: no items found",
            not_pem.display()
        ),
        format!(
            "targets[1].docker.key_file: {} is not the key of the certificate in {}",
            other.join("client.key").display(),
            g("client.crt")
        ),
        "targets[2].docker.host: \"https://docker.example.org\" is TLS: give ca_file, cert_file and key_file (the engine's CA and this client's certificate)".to_owned(),
        "targets[3].docker.host: \"tcp://docker.example.org:2375\" is plain TCP to another host, which anyone on the network could use as root: give ca_file, cert_file and key_file for TLS".to_owned(),
        "targets[4].docker: ca_file, cert_file, key_file and tls_server_name need `host`, the engine they reach".to_owned(),
        "targets[5].docker.host: \"ssh://docker.example.org\" is not an engine address: write unix:///path, tcp://host:port or https://host:port".to_owned(),
        "targets[6].docker.host: names unix:///run/other/docker.sock, another engine than the default, but compose_up runs the Docker CLI on the default engine: put the compose stack in a target of its own".to_owned(),
    ];
    assert_eq!(problems, expected, "{text}");

    // The default engine from the environment, as the Docker CLI reads it: its problems name
    // the variable.
    let plain = dir.path().join("plain.yml");
    std::fs::write(&plain, "rules: []\n").unwrap();
    let check = |env: &[(&str, &str)]| {
        let mut command = Command::new(bin_path("stackmedic-remediator"));
        command
            .args([
                &format!("--config.file={}", plain.display()),
                "--config.check",
            ])
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, text) = check(&[("DOCKER_HOST", "tcp://docker.example.org:2375")]);
    assert!(
        !ok && text.contains(
            "DOCKER_HOST: \"tcp://docker.example.org:2375\" is plain TCP to another host"
        ),
        "{text}"
    );
    let empty = dir.path().join("no-certificates");
    std::fs::create_dir(&empty).unwrap();
    let (ok, text) = check(&[
        ("DOCKER_HOST", "tcp://127.0.0.1:2376"),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", &empty.display().to_string()),
    ]);
    assert!(
        !ok && text.contains(&format!(
            "DOCKER_CERT_PATH: cannot read {}: No such file or directory",
            empty.join("ca.pem").display()
        )),
        "{text}"
    );
    let (ok, text) = check(&[
        ("DOCKER_HOST", "tcp://127.0.0.1:2376"),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", &good.display().to_string()),
    ]);
    assert!(!ok, "{text}");
    // ca.pem, cert.pem and key.pem under the folder: the test's files are named otherwise.
    for (from, to) in [
        ("ca.crt", "ca.pem"),
        ("client.crt", "cert.pem"),
        ("client.key", "key.pem"),
    ] {
        std::fs::copy(good.join(from), good.join(to)).unwrap();
    }
    let (ok, text) = check(&[
        ("DOCKER_HOST", "tcp://127.0.0.1:2376"),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", &good.display().to_string()),
    ]);
    assert!(ok, "{text}");
}
