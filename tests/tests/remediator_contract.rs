//! The contract check (`stackmedic-remediator --config.check --rules.file …
//! --alertmanager.config.file … --exporter.config.file …`) run as a user runs it: it passes on
//! the shipped set, and each broken set of the table (one edit to one shipped file) produces its
//! finding, naming the file and the alert, rule, route or inhibition, with a non-zero exit. The
//! opt-in host measures (`examples/remediator-host.yml` added to `examples/remediator.yml`) hold
//! with their alerts (`alerts/host-measures.rules.yml`), and neither holds without the other.

use std::path::Path;
use std::process::{Command, Output};

use stackmedic_tests::alerting::{read_repo_file, repo_root};
use stackmedic_tests::bin_path;

const REMEDIATOR: &str = "examples/remediator.yml";
const RULES: &str = "alerts/stackmedic.rules.yml";
const ALERTMANAGER: &str = "alerts/alertmanager.example.yml";
const EXPORTER: &str = "examples/exporter.yml";
/// The host measures, opt-in: their targets and rules, and their alerts.
const HOST: &str = "examples/remediator-host.yml";
const HOST_RULES: &str = "alerts/host-measures.rules.yml";
/// The exporter configuration of the media disk, whose probe the cleanup alert names.
const DISK: &str = "examples/disk.yml";

/// The secrets of the example set, as its README loads them.
fn env() -> Vec<(String, String)> {
    read_repo_file("examples/stackmedic.env")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Runs the check in `root` over the four files there.
fn check(root: &Path) -> Output {
    Command::new(bin_path("stackmedic-remediator"))
        .current_dir(root)
        .envs(env())
        .args([
            "--config.check",
            "--config.file",
            REMEDIATOR,
            "--rules.file",
            RULES,
            "--alertmanager.config.file",
            ALERTMANAGER,
            "--exporter.config.file",
            EXPORTER,
        ])
        .output()
        .expect("run stackmedic-remediator")
}

/// One broken set: `file` with the first `from` replaced by `to` (or, when `to` starts with
/// `CUT_UNTIL`, everything from `from` up to the text after it removed), and a finding expected.
struct Broken {
    what: &'static str,
    file: &'static str,
    from: &'static str,
    to: &'static str,
    finding: &'static str,
}

const CUT_UNTIL: &str = "cut until: ";

fn edit(text: &str, from: &str, to: &str) -> String {
    match to.strip_prefix(CUT_UNTIL) {
        Some(until) => {
            let start = text.find(from).unwrap();
            let end = start + text[start..].find(until).expect("the end of the cut");
            format!("{}{}", &text[..start], &text[end..])
        }
        None => text.replacen(from, to, 1),
    }
}

const TABLE: &[Broken] = &[
    Broken {
        what: "a rule removed",
        file: REMEDIATOR,
        from: "  # The camera/PLC app's playbook A.1: restart a stale or unhealthy stream",
        to: "cut until:   # The camera/PLC app's playbook B.2",
        finding: "alerts/stackmedic.rules.yml: alert HlsPlaylistStale: remediable (remediation=\"stream_restart\"), but no rule of examples/remediator.yml matches it",
    },
    Broken {
        what: "a rule for an alert that does not exist",
        file: REMEDIATOR,
        from: "alertname=~\"HlsPlaylistStale|StreamUnhealthy\"",
        to: "alertname=~\"HlsPlaylistStaled|StreamUnhealthy\"",
        finding: "examples/remediator.yml: rules[2] \"stream-restart\": matcher alertname=~\"HlsPlaylistStaled|StreamUnhealthy\" names alert HlsPlaylistStaled, which no rule file defines",
    },
    Broken {
        what: "a label renamed in the rule",
        file: RULES,
        from: "\"stream\", \"$1\", \"probe\"",
        to: "\"camera\", \"$1\", \"probe\"",
        finding: "examples/remediator.yml: rules[2] \"stream-restart\": params.stream.allowed chooses by the label stream, which alert HlsPlaylistStale (alerts/stackmedic.rules.yml) never carries",
    },
    Broken {
        what: "an allow-list naming a stream no probe has",
        file: EXPORTER,
        from: "- name: cam-entrance",
        to: "- name: camera-entrance",
        finding: "examples/remediator.yml: rules[2] \"stream-restart\": params.stream.allowed names \"cam-entrance\", which the label stream of alert HlsPlaylistStale (alerts/stackmedic.rules.yml) cannot take: it is \"camera-entrance\"",
    },
    Broken {
        what: "a container allow-list naming a container no probe watches",
        file: EXPORTER,
        from: "name_pattern: '^(owui|backend|nginx|cloudflared|leitstand|caddy)$'\n      expected: [owui,",
        to: "name_pattern: '^(open-webui|backend|nginx|cloudflared|leitstand|caddy)$'\n      expected: [open-webui,",
        finding: "examples/remediator.yml: rules[0] \"container-restart\": targets names \"owui\", which the label container of alert ContainerDown (alerts/stackmedic.rules.yml) cannot take",
    },
    Broken {
        what: "a rule matcher on a value the label cannot take",
        file: REMEDIATOR,
        from: "matchers: ['alertname=\"PlcAdsNoRoute\"']\n    action: http_sequence",
        to: "matchers: ['alertname=\"PlcAdsNoRoute\"', 'plc=\"line1\"']\n    action: http_sequence",
        finding: "examples/remediator.yml: rules[3] \"plc-route-add-and-connect\": can never match alert PlcAdsNoRoute (alerts/stackmedic.rules.yml): plc=\"line1\", but plc is \"plc-line1\"",
    },
    Broken {
        what: "an inhibition muting a remediable alert",
        file: ALERTMANAGER,
        from: "target_matchers: ['alertname=~\"ContainerDownPersistent|",
        to: "target_matchers: ['alertname=~\"ContainerDown|ContainerDownPersistent|",
        finding: "alerts/alertmanager.example.yml: inhibit_rules[1]: mutes alert ContainerDown (alerts/stackmedic.rules.yml), its firing and its resolve, towards the remediator",
    },
    Broken {
        what: "the escalation's inhibition aimed at the remediation tier",
        file: ALERTMANAGER,
        from: "target_matchers: ['alertname=~\".+Persistent\"']",
        to: "target_matchers: ['remediation=~\".+\"']",
        finding: "alerts/alertmanager.example.yml: inhibit_rules[3]: mutes alert HlsPlaylistStale (alerts/stackmedic.rules.yml)",
    },
    Broken {
        what: "a route catching remediable alerts before the remediator's",
        file: ALERTMANAGER,
        from: "  routes:\n",
        to: "  routes:\n    - receiver: ops-tickets\n      matchers: ['alertname=~\"Container.*\"']\n",
        finding: "alerts/alertmanager.example.yml: route: alert ContainerDown (alerts/stackmedic.rules.yml) is not routed to the remediator: it ends at ops-tickets (route.routes[0])",
    },
    Broken {
        what: "resolves not sent to the remediator",
        file: ALERTMANAGER,
        from: "        send_resolved: true\n        max_alerts: 0",
        to: "        send_resolved: false\n        max_alerts: 0",
        finding: "alerts/alertmanager.example.yml: receivers[0].webhook_configs[0]: send_resolved is false: the remediator never learns that alert ContainerDown (alerts/stackmedic.rules.yml) resolved",
    },
    Broken {
        what: "the remediation route muted at night",
        file: ALERTMANAGER,
        from: "      group_interval: 5s\n",
        to: "      group_interval: 5s\n      mute_time_intervals: [night]\n",
        finding: "alerts/alertmanager.example.yml: route.routes[1]: mute_time_intervals night keep alert ContainerDown",
    },
];

fn copy_set(root: &Path) {
    for file in [REMEDIATOR, RULES, ALERTMANAGER, EXPORTER] {
        let to = root.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(&to, read_repo_file(file)).unwrap();
    }
}

#[test]
fn shipped_set_holds_and_every_broken_set_is_found() {
    let shipped = check(&repo_root());
    let stdout = String::from_utf8_lossy(&shipped.stdout);
    let stderr = String::from_utf8_lossy(&shipped.stderr);
    assert!(
        shipped.status.success(),
        "the shipped set breaks the contract:\n{stdout}{stderr}"
    );
    assert!(
        stdout.contains("contract holds: ")
            && stdout.contains(
                " remediable, each matched by a rule and routed to the remediator with its resolve"
            ),
        "{stdout}"
    );

    let mut failures = Vec::new();
    for case in TABLE {
        let dir = tempfile::tempdir().unwrap();
        copy_set(dir.path());
        let path = dir.path().join(case.file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(case.from),
            "{}: {} no longer contains {:?}",
            case.what,
            case.file,
            case.from
        );
        if case.file == ALERTMANAGER && case.to.contains("mute_time_intervals") {
            // The interval must exist for Alertmanager; the contract reads routes regardless.
            std::fs::write(
                &path,
                edit(&text, case.from, case.to)
                    + "\ntime_intervals:\n  - name: night\n    time_intervals: [{times: [{start_time: '00:00', end_time: '06:00'}]}]\n",
            )
            .unwrap();
        } else {
            std::fs::write(&path, edit(&text, case.from, case.to)).unwrap();
        }
        let out = check(dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !stderr.contains(case.finding) {
            failures.push(format!(
                "{}: expected exit 1 and\n  {}\ngot {} and\n{stderr}",
                case.what, case.finding, out.status
            ));
        }
        assert!(
            stderr.contains("contract is broken: "),
            "{}: {stderr}",
            case.what
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `examples/remediator.yml` with the targets and rules of `examples/remediator-host.yml`
/// appended, as that file says to add them, written as JSON (which is YAML) to `to`.
fn with_host_measures(to: &Path) {
    let base: serde_json::Value = serde_saphyr::from_str(&read_repo_file(REMEDIATOR)).unwrap();
    let host: serde_json::Value = serde_saphyr::from_str(&read_repo_file(HOST)).unwrap();
    let mut merged = base.clone();
    for key in ["targets", "rules"] {
        let list = merged[key].as_array_mut().unwrap();
        let extra = host[key].as_array().unwrap();
        assert!(!extra.is_empty(), "{HOST} has no {key}");
        list.extend(extra.iter().cloned());
    }
    std::fs::write(to, merged.to_string()).unwrap();
}

/// Runs the check on `config` with the given rule files and the shipped Alertmanager and
/// exporter configurations (the example host's and its media disk's).
fn check_with(config: &Path, rule_files: &[&str]) -> Output {
    let mut cmd = Command::new(bin_path("stackmedic-remediator"));
    cmd.current_dir(repo_root())
        .envs(env())
        .arg("--config.check");
    cmd.arg("--config.file").arg(config);
    for f in rule_files {
        cmd.args(["--rules.file", f]);
    }
    cmd.args([
        "--alertmanager.config.file",
        ALERTMANAGER,
        "--exporter.config.file",
        EXPORTER,
        "--exporter.config.file",
        DISK,
    ]);
    cmd.output().expect("run stackmedic-remediator")
}

#[test]
fn host_measures_hold_with_their_alerts_and_only_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("remediator.yml");
    with_host_measures(&config);

    // Every host alert is matched by a rule of the addition, and every rule of it by an alert.
    let out = check_with(&config, &[RULES, HOST_RULES]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the set with the host measures breaks the contract:\n{stdout}{stderr}"
    );
    assert!(stdout.contains("contract holds: "), "{stdout}");

    // The rules of the addition without their alerts' file: each names an alert no file has.
    let out = check_with(&config, &[RULES]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for alert in [
        "BackupOverdue",
        "CameraAppDown",
        "FilesystemCleanupDue",
        "OllamaModelMissing",
        "OllamaMemoryHigh",
    ] {
        assert!(
            stderr.contains(&format!(
                "matcher alertname=\"{alert}\" names alert {alert}, which no rule file defines"
            )),
            "{alert}: {stderr}"
        );
    }

    // The alerts' file without the addition's rules: each host alert is remediable, but no
    // rule of examples/remediator.yml matches it.
    let out = check_with(&repo_root().join(REMEDIATOR), &[RULES, HOST_RULES]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "alerts/host-measures.rules.yml: alert FilesystemCleanupDue: remediable (remediation=\"cleanup\"), but no rule of "
        ),
        "{stderr}"
    );
}

#[test]
fn contract_flags_need_config_check() {
    let out = Command::new(bin_path("stackmedic-remediator"))
        .args(["--rules.file", RULES])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--config.check"), "{stderr}");
}
