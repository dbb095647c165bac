//! The contract check (`stackmedic-remediator --config.check --rules.file …
//! --alertmanager.config.file … --exporter.config.file …`) run as a user runs it: it passes on
//! the shipped set (the configurations with the per-stack files they include, the core rules
//! and the stacks' rules by a glob), and each broken set of the table (one edit to one shipped
//! file) produces its finding, naming the file (the included one where the problem is) and the
//! alert, rule, route or inhibition, with a non-zero exit. The opt-in host measures
//! (`examples/remediator-host.yml` copied into `examples/remediator.d/`) hold with their alerts
//! (`alerts/host-measures.rules.yml`), and neither holds without the other.

use std::path::Path;
use std::process::{Command, Output};

use stackmedic_tests::alerting::{read_repo_file, repo_root};
use stackmedic_tests::bin_path;

const REMEDIATOR: &str = "examples/remediator.yml";
const RULES: &str = "alerts/stackmedic.rules.yml";
/// The stacks' rule files, as Prometheus' rule_files and the check read them: a glob.
const STACK_RULES: &str = "alerts/stacks/*.rules.yml";
const ALERTMANAGER: &str = "alerts/alertmanager.example.yml";
const EXPORTER: &str = "examples/exporter.yml";
/// Files of the stacks, included by the files above.
const CAMERA_REMEDIATOR: &str = "examples/remediator.d/camera-plc.yml";
const CAMERA_RULES: &str = "alerts/stacks/camera-plc.rules.yml";
const CAMERA_EXPORTER: &str = "examples/exporter.d/camera-plc.yml";
const OWUI_EXPORTER: &str = "examples/exporter.d/open-webui.yml";
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

/// Runs the check in `root` over the files there.
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
            "--rules.file",
            STACK_RULES,
            "--alertmanager.config.file",
            ALERTMANAGER,
            "--exporter.config.file",
            EXPORTER,
        ])
        .output()
        .expect("run stackmedic-remediator")
}

/// One broken set: `file` with the first `from` replaced by `to` (or, when `to` starts with
/// `CUT_UNTIL`, everything from `from` up to the text after it removed; when it is `DELETE`,
/// the file deleted, as a stack is removed), and a finding expected.
struct Broken {
    what: &'static str,
    file: &'static str,
    from: &'static str,
    to: &'static str,
    finding: &'static str,
}

const CUT_UNTIL: &str = "cut until: ";
const DELETE: &str = "delete the file";

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
        file: CAMERA_REMEDIATOR,
        from: "  # The camera/PLC app's playbook A.1: restart a stale or unhealthy stream",
        to: "cut until:   # The camera/PLC app's playbook B.2",
        finding: "alerts/stacks/camera-plc.rules.yml: alert HlsPlaylistStale: remediable (remediation=\"stream_restart\"), but no rule of examples/remediator.yml matches it",
    },
    Broken {
        what: "a stack's remediator file deleted, its rules loaded",
        file: CAMERA_REMEDIATOR,
        from: "targets:",
        to: DELETE,
        finding: "alerts/stacks/camera-plc.rules.yml: alert PlcAdsNoRoute: remediable (remediation=\"ads_route_add\"), but no rule of examples/remediator.yml matches it, nor of the file it includes",
    },
    Broken {
        what: "a rule for an alert that does not exist",
        file: CAMERA_REMEDIATOR,
        from: "alertname=~\"HlsPlaylistStale|StreamUnhealthy\"",
        to: "alertname=~\"HlsPlaylistStaled|StreamUnhealthy\"",
        finding: "examples/remediator.d/camera-plc.yml: rules[0] \"stream-restart\": matcher alertname=~\"HlsPlaylistStaled|StreamUnhealthy\" names alert HlsPlaylistStaled, which no rule file defines",
    },
    Broken {
        what: "a label renamed in the rule",
        file: CAMERA_RULES,
        from: "\"stream\", \"$1\", \"probe\"",
        to: "\"camera\", \"$1\", \"probe\"",
        finding: "examples/remediator.d/camera-plc.yml: rules[0] \"stream-restart\": params.stream.allowed chooses by the label stream, which alert HlsPlaylistStale (alerts/stacks/camera-plc.rules.yml) never carries",
    },
    Broken {
        what: "an allow-list naming a stream no probe has",
        file: CAMERA_EXPORTER,
        from: "- name: cam-entrance",
        to: "- name: camera-entrance",
        finding: "examples/remediator.d/camera-plc.yml: rules[0] \"stream-restart\": params.stream.allowed names \"cam-entrance\", which the label stream of alert HlsPlaylistStale (alerts/stacks/camera-plc.rules.yml) cannot take: it is \"camera-entrance\"",
    },
    Broken {
        what: "a container allow-list naming a container no probe watches",
        file: OWUI_EXPORTER,
        from: "name_pattern: '^(owui)$'\n      expected: [owui]",
        to: "name_pattern: '^(open-webui)$'\n      expected: [open-webui]",
        finding: "examples/remediator.d/open-webui.yml: rules[0] \"container-restart\": targets names \"owui\", which the label container of alert ContainerDown (alerts/stackmedic.rules.yml) cannot take",
    },
    Broken {
        what: "a rule matcher on a value the label cannot take",
        file: CAMERA_REMEDIATOR,
        from: "matchers: ['alertname=\"PlcAdsNoRoute\"']\n    action: http_sequence",
        to: "matchers: ['alertname=\"PlcAdsNoRoute\"', 'plc=\"line1\"']\n    action: http_sequence",
        finding: "examples/remediator.d/camera-plc.yml: rules[1] \"plc-route-add-and-connect\": can never match alert PlcAdsNoRoute (alerts/stacks/camera-plc.rules.yml): plc=\"line1\", but plc is \"plc-line1\"",
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
        from: "target_matchers: ['alertname=~\".+Persistent|BackupTooOld|ModelMissing\"']",
        to: "target_matchers: ['remediation=~\".+\"']",
        finding: "alerts/alertmanager.example.yml: inhibit_rules[3]: mutes alert HlsPlaylistStale (alerts/stacks/camera-plc.rules.yml)",
    },
    Broken {
        what: "the escalation's inhibition removed: a persistent twin and the escalation both page",
        file: ALERTMANAGER,
        from: "  # One page per cause",
        to: "cut until:   # A specific SEV-1/SEV-2 alert",
        finding: "alerts/alertmanager.example.yml: inhibit_rules: alert ContainerDown (alerts/stackmedic.rules.yml): its paging twin ContainerDownPersistent (alerts/stackmedic.rules.yml, to oncall-page) and the remediator's escalation StackmedicRemediationFailed (to oncall-page) both reach on-call for one cause",
    },
    Broken {
        what: "the escalation's inhibition blind to the stream: one stream's escalation mutes every stream's page",
        file: ALERTMANAGER,
        from: "equal: [instance, probe, container, stream, camera, plc]",
        to: "equal: [instance, probe, container]",
        finding: "alerts/alertmanager.example.yml: inhibit_rules[3]: mutes StreamUnhealthyPersistent (alerts/stacks/camera-plc.rules.yml) of every stream while the escalation of one alert StreamUnhealthy (alerts/stacks/camera-plc.rules.yml) fires: add stream to its equal",
    },
    Broken {
        what: "the escalation's inhibition on a label the twin sets otherwise",
        file: ALERTMANAGER,
        from: "equal: [instance, probe, container, stream, camera, plc]",
        to: "equal: [instance, probe, container, stream, camera, plc, severity]",
        finding: "alerts/alertmanager.example.yml: inhibit_rules: alert ContainerUnhealthy (alerts/stackmedic.rules.yml): its paging twin ContainerUnhealthyPersistent (alerts/stackmedic.rules.yml, to ops-tickets) and the remediator's escalation StackmedicRemediationFailed (to oncall-page) both reach on-call for one cause",
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
        from: "      group_interval: 1s\n",
        to: "      group_interval: 1s\n      mute_time_intervals: [night]\n",
        finding: "alerts/alertmanager.example.yml: route.routes[1]: mute_time_intervals night keep alert ContainerDown",
    },
];

/// Copies the example set and the rules (with their per-stack folders) into `root`.
fn copy_set(root: &Path) {
    for folder in ["examples", "alerts"] {
        let mut pending = vec![folder.to_owned()];
        while let Some(dir) = pending.pop() {
            std::fs::create_dir_all(root.join(&dir)).unwrap();
            for entry in std::fs::read_dir(repo_root().join(&dir)).unwrap() {
                let entry = entry.unwrap();
                let name = format!("{dir}/{}", entry.file_name().to_string_lossy());
                if entry.file_type().unwrap().is_dir() {
                    pending.push(name);
                } else {
                    std::fs::write(root.join(&name), read_repo_file(&name)).unwrap();
                }
            }
        }
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
        if case.to == DELETE {
            std::fs::remove_file(&path).unwrap();
        } else if case.file == ALERTMANAGER && case.to.contains("mute_time_intervals") {
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

/// A copy of the set in `root` with `examples/remediator-host.yml` copied into
/// `examples/remediator.d/`, as its comment says to add it.
fn with_host_measures(root: &Path) {
    copy_set(root);
    std::fs::copy(
        root.join(HOST),
        root.join("examples/remediator.d/host-measures.yml"),
    )
    .unwrap();
}

/// Runs the check in `root` on the set's remediator configuration with the given rule files
/// and the shipped Alertmanager and exporter configurations (the example host's and its media
/// disk's).
fn check_with(root: &Path, rule_files: &[&str]) -> Output {
    let mut cmd = Command::new(bin_path("stackmedic-remediator"));
    cmd.current_dir(root)
        .envs(env())
        .args(["--config.check", "--config.file", REMEDIATOR]);
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
    let root = dir.path();
    with_host_measures(root);

    // Every host alert is matched by a rule of the addition, and every rule of it by an alert.
    let out = check_with(root, &[RULES, STACK_RULES, HOST_RULES]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the set with the host measures breaks the contract:\n{stdout}{stderr}"
    );
    assert!(stdout.contains("contract holds: "), "{stdout}");

    // The rules of the addition without their alerts' file: each names an alert no file has.
    let out = check_with(root, &[RULES, STACK_RULES]);
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
    // Named in the included file, where the rule is.
    assert!(
        stderr.contains("examples/remediator.d/host-measures.yml: rules["),
        "{stderr}"
    );

    // The alerts' file without the addition's rules: each host alert is remediable, but no
    // rule of examples/remediator.yml and its files matches it.
    std::fs::remove_file(root.join("examples/remediator.d/host-measures.yml")).unwrap();
    let out = check_with(root, &[RULES, STACK_RULES, HOST_RULES]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "alerts/host-measures.rules.yml: alert FilesystemCleanupDue: remediable (remediation=\"cleanup\"), but no rule of "
        ),
        "{stderr}"
    );
}

/// A rule-file pattern that matches nothing is a finding: the check never passes on rules it
/// did not read.
#[test]
fn a_rule_file_pattern_matching_nothing_is_a_finding() {
    let out = Command::new(bin_path("stackmedic-remediator"))
        .current_dir(repo_root())
        .envs(env())
        .args([
            "--config.check",
            "--config.file",
            REMEDIATOR,
            "--rules.file",
            RULES,
            "--rules.file",
            "alerts/stack/*.rules.yml",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("alerts/stack/*.rules.yml: rule file: the pattern matches no file"),
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
