//! Every dashboard panel has data in a running loop: real dockerd, Prometheus (the shipped
//! rules), Alertmanager (the shipped example configuration), stackmedic-exporter (probes of
//! every family the dashboards show) and stackmedic-remediator (the shipped example), and a
//! watched busybox container playing Open WebUI (busybox `httpd` serving the page the probes
//! and the verification read). The container is stopped once; `ContainerDown` fires, the
//! remediator restarts it, and with the stack healthy again every dashboard panel query must
//! return data from this Prometheus (the exceptions are listed in `NO_DATA_IN_LOOP` with the
//! reason).
//!
//! This test shortens every interval (scrape and rule evaluation 1 s, probe intervals 1 s,
//! every `for:` 2 s, Alertmanager's waits to seconds, the remediator's backoff to 1 s) and adds
//! probes of families the example set does not watch (backups, SRI, a finished playlist, pyads'
//! ADS test server; the gateway's probes resolving `localhost` and connecting to the ADS
//! server's port; the disk probes on the test's directory and the real Engine; the camera/PLC
//! app's admin API played by JSON files the watched container serves, all healthy): it is about
//! the dashboards. The loop as shipped, with the example set's
//! files unchanged but for their documented values, is `loop_self_healing.rs`.
//!
//! The on-call and ticket receivers of the Alertmanager example point at `WebhookSink`, the
//! tests' own fixture: a generic webhook receiver that records what it gets (there is no real
//! pager to run here).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stackmedic_tests::alerting;
use stackmedic_tests::alertmanager::Alertmanager;
use stackmedic_tests::docker::{docker, ensure_docker};
use stackmedic_tests::examples::{loop_dir, replace_word, run_watched};
use stackmedic_tests::exporter::Exporter;
use stackmedic_tests::metrics;
use stackmedic_tests::prometheus::Prometheus;
use stackmedic_tests::remediator::Remediator;
use stackmedic_tests::webhook_sink::WebhookSink;
use stackmedic_tests::{free_port, unique_name, wait_until, Process};

const TOKEN: &str = "loop-webhook-token-7c21";

/// Panel queries that cannot return data in this loop, by a fragment of the query, and why.
const NO_DATA_IN_LOOP: &[(&str, &str)] = &[
    (
        "stackmedic_summary_warming_since_timestamp_seconds",
        "only exists while the backend warms; the loop's backend summary reports llm.path=primary",
    ),
    (
        "stackmedic_http_header_present",
        "only probes with expect_headers have it; the shipped one (backend-edge) checks cf-ray on \
         the Cloudflare edge, which is not on 127.0.0.1",
    ),
    (
        "stackmedic_tls_not_after_timestamp_seconds",
        "the loop has no TLS endpoint (the shipped TLS probes address the gateway's name); \
         exporter_tls_tcp covers the certificate facts against nginx",
    ),
    (
        "stackmedic_tls_chain_verified",
        "the loop has no TLS endpoint; exporter_tls_tcp covers the certificate facts",
    ),
    (
        "stackmedic_docker_volume_unused_bytes",
        "names only unused volumes matching the example's report_unused_volumes, none of which \
         exist on the test's Engine; exporter_docker_disk covers it",
    ),
];

fn yaml_file(relative: &str) -> Value {
    serde_saphyr::from_str(&alerting::read_repo_file(relative))
        .unwrap_or_else(|e| panic!("{relative} is not YAML: {e}"))
}

/// `examples/<base>.yml` with the lists of every file it includes (`examples/<base>.d/*.yml`)
/// appended, as the binaries read it.
fn with_included(base: &str, lists: &[&str]) -> Value {
    let mut doc = yaml_file(&format!("examples/{base}.yml"));
    let folder = alerting::repo_root().join(format!("examples/{base}.d"));
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let part: Value = serde_saphyr::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for list in lists {
            if let Some(entries) = part[*list].as_array() {
                let merged = doc
                    .as_object_mut()
                    .unwrap()
                    .entry(*list)
                    .or_insert_with(|| json!([]));
                merged
                    .as_array_mut()
                    .unwrap()
                    .extend(entries.iter().cloned());
            }
        }
    }
    doc.as_object_mut().unwrap().remove("include");
    doc
}

fn probe(config: &Value, name: &str) -> Value {
    config["probes"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no probe {name} in the example"))
}

/// The exporter examples (exporter.yml with the stacks' files it includes, sri.yml, disk.yml)
/// adapted to the loop.
fn exporter_config(container: &str, web: &str, dir: &Path, ads_port: u16) -> String {
    let example = with_included("exporter", &["probes"]);
    let mut probes = Vec::new();
    let mut owui = probe(&example, "owui-local");
    owui["http"]["url"] = json!(format!("{web}/index.html"));
    probes.push(owui);
    let mut summary = probe(&example, "backend-summary");
    summary["http"]["url"] = json!(format!("{web}/summary.json"));
    probes.push(summary);
    let mut cors = probe(&example, "backend-cors");
    cors["cors"]["url"] = json!(format!("{web}/chat"));
    probes.push(cors);
    let mut log = probe(&example, "status-path-log");
    log["access_log"]["path"] = json!(dir.join("access.log"));
    probes.push(log);
    let mut containers = probe(&example, "owui-containers");
    containers["docker"]["name_pattern"] = json!(format!("^{container}$"));
    containers["docker"]["expected"] = json!([container]);
    probes.push(containers);

    let mut backups = probe(&example, "ai-stack-backups");
    for folder in backups["backup"]["folders"].as_array_mut().unwrap() {
        folder["path"] = json!(dir.join("backups"));
    }
    backups["timeout"] = json!("1s");
    probes.push(backups);
    let mut sri = probe(&yaml_file("examples/sri.yml"), "frontend-sri");
    sri["sri"]["manifest"] = json!(dir.join("sri-manifest.json"));
    sri["sri"]["root"] = json!(dir.join("www"));
    sri["sri"].as_object_mut().unwrap().remove("base_url");
    sri["timeout"] = json!("1s");
    probes.push(sri);
    // No example exists for the HLS probe yet: a finished (VOD) playlist, so it never reads
    // stale and the stream-restart rule stays out of this loop.
    probes.push(json!({"name": "cam-loop", "hls": {"path": dir.join("live.m3u8")}}));
    // No example exists for the ADS probe yet either: the PLC "line1" of the remediator's
    // example, played by pyads' test server (in Run, so no PLC alert fires).
    probes.push(json!({"name": "line1", "ads": {
        "host": "127.0.0.1", "port": ads_port, "ams_net_id": "5.32.116.5.1.1"
    }}));

    // The gateway's checks, on this host: the system resolver's `localhost`, and a port that
    // stays open through both scenarios (the ADS server's).
    let gateway = &example;
    let mut dns = probe(gateway, "leitstand-dns");
    dns["dns"]["name"] = json!("localhost");
    dns["dns"]["expected"] = json!(["127.0.0.1"]);
    probes.push(dns);
    let mut port = probe(gateway, "gateway-80");
    port["tcp"]["address"] = json!(format!("127.0.0.1:{ads_port}"));
    probes.push(port);
    let disk = yaml_file("examples/disk.yml");
    let mut media = probe(&disk, "media-disk");
    media["filesystem"]["path"] = json!(dir);
    media["filesystem"]["folders"] = json!([
        {"path": dir.join("www"), "name": "hls"},
        {"path": dir.join("backups"), "name": "backups"}
    ]);
    probes.push(media);
    probes.push(probe(&disk, "docker-disk"));
    // The camera/PLC app's admin API: its answers as files the watched container serves, all
    // healthy (so no camera alert sends the remediator to the app, which does not run here).
    let camera = &example;
    std::fs::write(dir.join("camera-token"), "unused\n").unwrap();
    for (name, file) in [
        ("camera-streams", "streams.json"),
        ("camera-restart-log", "restart-log.json"),
        ("camera-system", "system-status.json"),
        ("camera-slo", "slo.json"),
    ] {
        let mut p = probe(camera, name);
        let json = p["json"].as_object_mut().unwrap();
        json.insert("url".into(), json!(format!("{web}/{file}")));
        json.remove("bearer_token_env");
        json.insert("bearer_token_file".into(), json!(dir.join("camera-token")));
        probes.push(p);
    }

    for p in &mut probes {
        p["interval"] = json!("1s");
        if p.get("timeout").is_none_or(|t| t.as_str() != Some("1s")) {
            p["timeout"] = json!("1s");
        }
    }
    let mut config = json!({"global": example["global"].clone(), "probes": probes});
    config["global"]["interval"] = json!("1s");
    config["global"]["timeout"] = json!("1s");
    serde_json::to_string_pretty(&config).unwrap()
}

/// examples/remediator.yml adapted to the loop (escalation URL added once Alertmanager runs).
fn remediator_config(container: &str, web: &str, dir: &Path, alertmanager: &str) -> String {
    // The container is the example's `owui` under the test's name (a documented value).
    let merged = with_included("remediator", &["targets", "rules"]).to_string();
    let (text, _) = replace_word(&merged, "owui", container);
    let mut c: Value = serde_json::from_str(&text).expect("examples/remediator.yml is YAML");
    // Secrets from files in the test's directory instead of the environment.
    fn env_to_file(v: &mut Value, dir: &Path) {
        if let Value::Object(map) = v {
            let keys: Vec<String> = map
                .keys()
                .filter(|k| k.ends_with("_env"))
                .cloned()
                .collect();
            for key in keys {
                let name = map.remove(&key).unwrap();
                let file = dir.join(name.as_str().unwrap());
                let secret = if name == "STACKMEDIC_WEBHOOK_TOKEN" {
                    TOKEN
                } else {
                    "unused"
                };
                std::fs::write(&file, secret).unwrap();
                map.insert(key.replace("_env", "_file"), json!(file));
            }
            map.values_mut().for_each(|x| env_to_file(x, dir));
        } else if let Value::Array(a) = v {
            a.iter_mut().for_each(|x| env_to_file(x, dir));
        }
    }
    env_to_file(&mut c, dir);
    c["escalation"]["alertmanager_urls"] = json!([alertmanager]);
    c["escalation"]["min_backoff"] = json!("200ms");
    for target in c["targets"].as_array_mut().unwrap() {
        // Read with get(): indexing a serde_json value mutably inserts missing keys.
        let has_docker = target.get("docker").is_some();
        let verify_containers = target
            .get("verify")
            .and_then(|v| v.get("containers"))
            .is_some();
        let verify_owui = target
            .get("verify")
            .and_then(|v| v.get("url"))
            .is_some_and(|u| u == "http://127.0.0.1:3000/");
        target["backoff"] = json!("1s");
        if has_docker {
            target["docker"]["containers"] = json!([container]);
            target["docker"]["stop_timeout"] = json!("1s");
        }
        if verify_containers {
            target["verify"]["containers"] = json!([container]);
        }
        if verify_owui {
            target["verify"]["url"] = json!(format!("{web}/index.html"));
            target["verify"]["interval"] = json!("200ms");
        }
    }
    serde_json::to_string_pretty(&c).unwrap()
}

/// alerts/alertmanager.example.yml adapted to the loop.
fn alertmanager_config(remediator: &str, sink: u16, token_file: &Path) -> String {
    let text = alerting::read_repo_file("alerts/alertmanager.example.yml")
        .replace(
            "http://127.0.0.1:8791/webhook",
            &format!("{remediator}/webhook"),
        )
        .replace(
            "http://127.0.0.1:9095/",
            &format!("http://127.0.0.1:{sink}/"),
        )
        .replace(
            "/etc/prometheus/stackmedic-remediator.token",
            &token_file.display().to_string(),
        );
    text.lines()
        .map(|line| {
            let t = line.trim_start();
            let indent = &line[..line.len() - t.len()];
            if t == "group_wait: 5m" {
                format!("{indent}group_wait: 20s")
            } else if t.starts_with("group_wait:") {
                format!("{indent}group_wait: 0s")
            } else if t.starts_with("group_interval:") {
                format!("{indent}group_interval: 1s")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn firing(prom: &Prometheus, alertname: &str, container: &str) -> Option<Value> {
    prom.alerts().ok()?.as_array()?.iter().find_map(|a| {
        (a["labels"]["alertname"] == alertname
            && a["labels"]["container"] == container
            && a["state"] == "firing")
            .then(|| a.clone())
    })
}

fn remediator_metric(rem: &Remediator, name: &str, labels: &[(&str, &str)]) -> f64 {
    let samples = metrics::scrape(&rem.url("/metrics")).expect("scrape the remediator");
    metrics::find(&samples, name, labels).unwrap_or(0.0)
}

#[test]
fn every_dashboard_panel_has_data_in_a_running_loop() {
    ensure_docker();
    let dir = loop_dir("stackmedic-loop-");
    let d = dir.path();
    let name = unique_name("sm-loop-owui");

    // What the watched container serves, and the files the other probes read.
    let www = d.join("www");
    std::fs::write(www.join("app.js"), "console.log('owui');\n").unwrap();
    std::fs::write(
        www.join("summary.json"),
        r#"{"ready": true, "llm": {"path": "primary", "primary_model_present": true}, "status": {"fallback": false}, "build": {"sha": "0a1b2c3"}}"#,
    )
    .unwrap();
    // The camera/PLC app's admin API answers, in the shapes examples/exporter.d/camera-plc.yml describes.
    std::fs::write(
        www.join("streams.json"),
        r#"{"streams": [{"name": "cam-entrance", "kind": "rtsp", "healthy": true, "restarts": 0},
            {"name": "garage", "kind": "ring", "healthy": true,
             "webrtc": {"state": "connected", "since": "2026-11-28T09:00:00Z"}}]}"#,
    )
    .unwrap();
    std::fs::write(
        www.join("restart-log.json"),
        r#"{"entries": [{"type": "restart_error", "service": "ffmpeg-cam-yard", "timestamp": "2026-01-01T00:00:00Z"}]}"#,
    )
    .unwrap();
    std::fs::write(
        www.join("system-status.json"),
        r#"{"daemon": {"state": "running", "healthy": true}, "plc": {"connected": true}, "uptime_seconds": 86400}"#,
    )
    .unwrap();
    std::fs::write(
        www.join("slo.json"),
        r#"{"availability": 0.999, "stream_latency_p95_seconds": 2.0}"#,
    )
    .unwrap();
    // A digest that matches nothing: the SRI probe reports drift (an SriDrift ticket).
    std::fs::write(
        d.join("sri-manifest.json"),
        format!(r#"{{"app.js": {{"sha384": "sha384-{}"}}}}"#, "A".repeat(64)),
    )
    .unwrap();
    std::fs::write(
        d.join("live.m3u8"),
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.0,\nseg7.ts\n#EXTINF:2.0,\nseg8.ts\n#EXT-X-ENDLIST\n",
    )
    .unwrap();
    let backups = d.join("backups");
    std::fs::create_dir(&backups).unwrap();
    std::fs::write(d.join("data.txt"), "owui data\n").unwrap();
    let archive = backups.join("owui-data__20261122T030000Z.tar.gz");
    let tar = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(d)
        .arg("data.txt")
        .status()
        .expect("run tar");
    assert!(tar.success());

    let web_port = free_port();
    let web = format!("http://127.0.0.1:{web_port}");
    let container = run_watched(&name, &www, web_port);
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            stackmedic_tests::http::get(&format!("{web}/index.html")).is_ok_and(|r| r.status == 200)
        }),
        "the watched container does not serve {web}: {}",
        container.logs()
    );

    let sink = WebhookSink::start();
    let rem_dir = tempfile::Builder::new()
        .prefix("stackmedic-remediator-")
        .tempdir()
        .unwrap();
    let secrets = rem_dir.path().to_path_buf();
    let mut rem = Remediator::start_in(
        rem_dir,
        &remediator_config(&name, &web, &secrets, "http://127.0.0.1:9/"),
    );
    let token_file = secrets.join("STACKMEDIC_WEBHOOK_TOKEN");
    let am = Alertmanager::start(&alertmanager_config(&rem.url(""), sink.port(), &token_file));
    std::fs::write(
        rem.dir().join("remediator.yml"),
        remediator_config(&name, &web, &secrets, &am.url("")),
    )
    .unwrap();
    let reload = stackmedic_tests::http::request("POST", &rem.url("/-/reload"), &[], None).unwrap();
    assert_eq!(reload.status, 200, "remediator reload: {}", reload.text());

    // A real ADS/AMS server (pyads' test server) as the PLC.
    let ads_port = free_port();
    let mut ads_command = std::process::Command::new("python3");
    ads_command
        .arg(alerting::repo_root().join("tests/fixtures/ads/ads_server.py"))
        .arg("--port")
        .arg(ads_port.to_string());
    let mut ads_server = Process::spawn("ads-server", ads_command, d);
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
            !ads_server.is_running() || stackmedic_tests::port_accepts(ads_port)
        }) && ads_server.is_running(),
        "the ADS test server did not start (pyads for python3):\n{}",
        ads_server.describe()
    );

    let exporter = Exporter::start(&exporter_config(&name, &web, d, ads_port));
    // The core rules and every stack's.
    let mut rules = vec![(
        "stackmedic.rules.yml".to_owned(),
        alerting::with_for(
            &alerting::read_repo_file("alerts/stackmedic.rules.yml"),
            "2s",
        ),
    )];
    for file in alerting::repo_files("alerts/stacks", ".rules.yml") {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        rules.push((
            name,
            alerting::with_for(&std::fs::read_to_string(&file).unwrap(), "2s"),
        ));
    }
    let rules: Vec<(&str, &str)> = rules
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let prom = Prometheus::start_with_rules(
        &format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             alerting: {{alertmanagers: [{{static_configs: [{{targets: ['{am}']}}]}}]}}\n\
             scrape_configs:\n\
             - {{job_name: stackmedic-exporter, static_configs: [{{targets: ['127.0.0.1:{exp}']}}]}}\n\
             - {{job_name: stackmedic-remediator, static_configs: [{{targets: ['127.0.0.1:{rem}']}}]}}\n",
            am = am.address(),
            exp = exporter.port(),
            rem = rem.port(),
        ),
        &rules,
    );
    let healthy = format!("stackmedic_container_running{{container=\"{name}\"}} == 1");
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            prom.query_value(&healthy).ok().flatten().is_some()
        }),
        "Prometheus never saw the container running: {:#}",
        prom.targets().unwrap_or_default()
    );
    // A real client hit on the legacy status path, for the status-path panels.
    std::fs::write(
        d.join("access.log"),
        "127.0.0.1 - - [22/Nov/2026:10:00:00 +0000] \"GET /status/summary HTTP/1.1\" 200 12 \"-\" \"curl/8.5\" xsp=\"legacy\"\n",
    )
    .unwrap();

    // ---- Scenario 1: stop the container; nobody touches anything. ----
    let started_before = container.inspect()["State"]["StartedAt"].clone();
    let stopped_at = Instant::now();
    docker(&["stop", "-t", "1", &name]);
    assert_eq!(container.status().as_deref(), Some("exited"));

    let mut alert = None;
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            alert = firing(&prom, "ContainerDown", &name);
            alert.is_some()
        }),
        "ContainerDown did not fire: {:#}",
        prom.alerts().unwrap_or_default()
    );
    let alert = alert.unwrap();
    assert_eq!(alert["labels"]["remediation"], "container_restart");
    assert_eq!(alert["labels"]["severity"], "info");
    assert!(alert["annotations"]["runbook_url"]
        .as_str()
        .unwrap()
        .ends_with("docs/runbooks/ContainerDown.md"));

    let done = rem.wait_for("succeeded", 1, Duration::from_secs(60));
    let running_again = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        container.status().as_deref() == Some("running")
    });
    let elapsed = stopped_at.elapsed();
    assert!(running_again, "the container is not running again");
    println!("loop: container stopped -> running again in {elapsed:.1?} (nobody touched it)");
    assert_ne!(container.inspect()["State"]["StartedAt"], started_before);
    assert_eq!(done[0]["alertname"], "ContainerDown");
    assert_eq!(done[0]["rule"], "container-restart");
    assert_eq!(done[0]["action"], "container_restart");
    assert!(
        done[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("verified"),
        "verification not recorded: {done:#?}"
    );
    assert!(
        remediator_metric(
            &rem,
            "stackmedic_remediator_webhooks_total",
            &[("result", "accepted")]
        ) >= 1.0,
        "no webhook from Alertmanager was accepted"
    );
    assert_eq!(
        remediator_metric(
            &rem,
            "stackmedic_remediator_webhooks_total",
            &[("result", "unauthorized")]
        ),
        0.0
    );

    // The alert resolves in Prometheus and Alertmanager, and the resolve reaches the remediator.
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            firing(&prom, "ContainerDown", &name).is_none()
                && am.alerts().is_ok_and(|a| {
                    !a.as_array().unwrap().iter().any(|x| {
                        x["labels"]["alertname"] == "ContainerDown"
                            && x["labels"]["container"] == name.as_str()
                    })
                })
                && remediator_metric(
                    &rem,
                    "stackmedic_remediator_alerts_total",
                    &[("decision", "resolved")],
                ) >= 1.0
        }),
        "ContainerDown did not resolve: {:#}\n{:#}",
        prom.alerts().unwrap_or_default(),
        am.alerts().unwrap_or_default()
    );
    // The remediator fixed it: it never escalated to on-call. (The paging tier's alerts do
    // page here: this test shortens their grace period to 2 s.)
    let escalations: Vec<Value> = sink
        .alerts("/page")
        .into_iter()
        .map(|(a, _)| a)
        .filter(|a| a["labels"]["alertname"] == "StackmedicRemediationFailed")
        .collect();
    assert!(escalations.is_empty(), "{escalations:#?}");

    // ---- Every dashboard panel query returns data from this Prometheus. ----
    std::thread::sleep(Duration::from_secs(3));
    let mut missing = Vec::new();
    let mut exempt = BTreeSet::new();
    for (file, dashboard) in alerting::dashboards() {
        for q in alerting::dashboard_queries(&file, &dashboard).unwrap() {
            let expr = alerting::instantiate(&q.expr, "1m");
            let result = prom
                .query(&expr)
                .unwrap_or_else(|e| panic!("{}: {expr}: {e:#}", q.origin()));
            let has_data = result.as_array().is_some_and(|a| !a.is_empty());
            let excuse = NO_DATA_IN_LOOP
                .iter()
                .find(|(frag, _)| q.expr.contains(frag));
            match (has_data, excuse) {
                (true, _) => {}
                (false, Some((frag, _))) => {
                    exempt.insert(*frag);
                }
                (false, None) => missing.push(format!("{}: {}", q.origin(), q.expr)),
            }
        }
    }
    assert!(
        missing.is_empty(),
        "panel queries without data in the loop:\n{}",
        missing.join("\n")
    );
    for (frag, why) in NO_DATA_IN_LOOP {
        println!("loop: no data expected for {frag}: {why}");
    }

    drop(container);
    ads_server.stop();
}
