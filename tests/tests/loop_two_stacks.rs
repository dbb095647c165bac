//! A host that runs two stacks of the example set, built as `examples/README.md` says: the set
//! copied with only its documented values changed, then the files of every other stack deleted
//! (`examples/exporter.d/`, `examples/remediator.d/`, `alerts/stacks/`). The Open WebUI stack
//! (its container a busybox `httpd` standing in for Open WebUI) and the backup timers (a backup
//! folder with a fresh archive of each expected volume) run; the assistant backend, the gateway
//! and the camera/PLC app do not exist on this host.
//!
//! Real dockerd, Prometheus, Alertmanager, stackmedic-exporter and stackmedic-remediator run
//! the copy. Once every probe of the two stacks has run and the rules have been evaluated for
//! longer than the remediation tier's waits, no alert, pending or firing, names a probe, a
//! container or an alert of the other stacks, and none reaches on-call or the remediator; the
//! contract check over the two stacks' files holds. Then the stack at work: the Open WebUI
//! container stopped is restarted by the remediator. The on-call and ticket receivers are the
//! tests' own webhook recorder (no real pager runs here).

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use stackmedic_tests::docker::{docker, ensure_docker};
use stackmedic_tests::examples::{loop_dir, run_watched, ExampleSet, LoopValues, Ports, Stack};
use stackmedic_tests::webhook_sink::WebhookSink;
use stackmedic_tests::{bin_path, free_port, http, unique_name, wait_until};

/// The probe names of the exporter files left in the copy.
fn probes_of(set: &ExampleSet) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(set.path("examples/exporter.d")).unwrap() {
        let path = entry.unwrap().path();
        let doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for p in doc["probes"].as_array().unwrap() {
            names.insert(p["name"].as_str().unwrap().to_owned());
        }
    }
    names
}

/// The alert names of the repository's rule files of the stacks not kept.
fn alerts_of_other_stacks(kept: &[&str]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let dir = stackmedic_tests::alerting::repo_root().join("alerts/stacks");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let stack = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".rules.yml")
            .to_owned();
        if kept.contains(&stack.as_str()) {
            continue;
        }
        let doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for group in doc["groups"].as_array().unwrap() {
            for rule in group["rules"].as_array().unwrap() {
                if let Some(name) = rule["alert"].as_str() {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    assert!(!names.is_empty());
    names
}

#[test]
fn a_host_of_two_stacks_sees_no_alert_of_the_others() {
    ensure_docker();
    let kept = ["open-webui", "backups"];
    let dir = loop_dir("stackmedic-two-stacks-");
    let d = dir.path();
    let name = unique_name("sm-two-owui");
    let web_port = free_port();
    let web = format!("http://127.0.0.1:{web_port}/");
    let sink = WebhookSink::start();
    let closed = format!("127.0.0.1:{}", free_port());
    let ports = Ports::pick();
    let token_file = d.join("stackmedic-remediator.token");
    // The backup timers' folder, with today's archive of every expected volume.
    let backups = d.join("backups");
    std::fs::create_dir(&backups).unwrap();
    std::fs::set_permissions(
        &backups,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "-");
    for volume in ["owui-data", "tm-data", "context6-data", "qdrant-data"] {
        let archive = backups.join(format!("{volume}__{stamp}.tar.gz"));
        let tar = Command::new("tar")
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(d)
            .arg("www")
            .status()
            .unwrap();
        assert!(tar.success());
    }
    std::fs::write(
        backups.join(format!("output__{stamp}.tar.gz")),
        std::fs::read(backups.join(format!("owui-data__{stamp}.tar.gz"))).unwrap(),
    )
    .unwrap();

    let mut values = LoopValues {
        container: &name,
        web_port,
        closed: &closed,
        access_log: &d.join("access.log"),
        compose_file: &d.join("stack/docker-compose.yml"),
        camera_app: &closed,
        sink_port: sink.port(),
        token_file: &token_file,
    }
    .replacements(&ports);
    values.push(("/srv/ai-stack/backups", backups.display().to_string()));
    values.push((
        "replace-with-a-long-random-token",
        unique_name("two-stacks-token"),
    ));
    let set = ExampleSet::copy(&values);
    set.keep_stacks(&kept);
    let probes = probes_of(&set);
    assert_eq!(
        probes,
        [
            "ai-stack-backups",
            "owui-containers",
            "owui-edge",
            "owui-local"
        ]
        .map(str::to_owned)
        .into(),
        "the two stacks' exporter files"
    );

    // The contract over the two stacks' files holds, and it reads the included files.
    let check = Command::new(bin_path("stackmedic-remediator"))
        .current_dir(set.dir())
        .envs(set.env())
        .args([
            "--config.check",
            "--config.file",
            "examples/remediator.yml",
            "--rules.file",
            "alerts/stackmedic.rules.yml",
            "--rules.file",
            "alerts/stacks/*.rules.yml",
            "--alertmanager.config.file",
            "alerts/alertmanager.example.yml",
            "--exporter.config.file",
            "examples/exporter.yml",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && stdout.contains("2 rules, 1 targets"),
        "the contract of the two stacks does not hold:\n{stdout}{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let container = run_watched(&name, &d.join("www"), web_port);
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            http::get(&web).is_ok_and(|r| r.status == 200)
        }),
        "the watched container does not serve {web}: {}",
        container.logs()
    );
    let mut stack = Stack::start(&set, ports, &token_file);

    // Every probe of the two stacks has run and been scraped.
    let ran = |probe: &str| {
        stack
            .query(&format!(
                "stackmedic_probe_last_run_timestamp_seconds{{probe=\"{probe}\"}}"
            ))
            .is_some()
    };
    assert!(
        wait_until(Duration::from_secs(90), Duration::from_millis(500), || {
            probes.iter().all(|p| ran(p))
        }),
        "not every probe ran: {probes:?}\n{}",
        stack.describe()
    );
    let series = stack.query("count(count by (probe) (stackmedic_probe_success))");
    assert_eq!(
        series,
        Some(probes.len() as f64),
        "probes the exporter runs"
    );

    // Every rule group evaluated 25 s after every probe had run: longer than the remediation
    // tier's waits (10 s), and a few evaluations of every group (15 s): what the other stacks
    // would raise had time to show, at least as pending.
    let all_ran = stackmedic_tests::remediator::unix_now();
    assert!(
        wait_until(Duration::from_secs(120), Duration::from_millis(500), || {
            stack.rule_groups_evaluated_after("", all_ran + 25.0)
        }),
        "Prometheus did not evaluate every rule group:\n{}",
        stack.describe()
    );

    let others = alerts_of_other_stacks(&kept);
    let other_containers = ["backend", "nginx", "cloudflared", "leitstand", "caddy"];
    let alerts = stack.prometheus_alerts();
    let foreign: Vec<&Value> = alerts
        .iter()
        .filter(|a| {
            let l = &a["labels"];
            let alertname = l["alertname"].as_str().unwrap_or_default();
            others.contains(alertname)
                || l["probe"].as_str().is_some_and(|p| !probes.contains(p))
                || l["container"]
                    .as_str()
                    .is_some_and(|c| other_containers.contains(&c))
        })
        .collect();
    assert!(
        foreign.is_empty(),
        "alerts of stacks this host does not run: {foreign:#?}"
    );
    // Nothing of theirs reached on-call, the tickets or the remediator either.
    for path in ["/page", "/ticket"] {
        let got = sink.alerts(path);
        assert!(
            got.iter().all(|(a, _)| {
                a["labels"]["probe"]
                    .as_str()
                    .is_none_or(|p| probes.contains(p))
            }),
            "{path} got alerts of other stacks: {got:#?}"
        );
    }
    assert_eq!(
        stack.query("sum(stackmedic_remediator_unmatched_alerts_total) > 0"),
        None,
        "the remediator got alerts no rule matches: {:#}",
        stack.history()
    );

    // The Open WebUI stack at work: its container stopped is restarted.
    docker(&["stop", "-t", "1", &name]);
    assert!(
        wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
            http::get(&web).is_ok_and(|r| r.status == 200)
        }),
        "the remediator did not bring {name} back: {:#}\n{}",
        stack.history(),
        stack.describe()
    );
    drop(container);
}
