//! The remediator binary's configuration handling: `examples/remediator.yml` (with the
//! per-stack files it includes) passes `--config.check`; a broken file prints every problem
//! with its path (and the included file it is in) and exits non-zero; the
//! embedded default is valid; a non-loopback listener without webhook authentication is refused.

use std::path::PathBuf;
use std::process::Command;

use stackmedic_tests::bin_path;

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/remediator.yml")
}

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(bin_path("stackmedic-remediator"))
        .args(args)
        .env("STACKMEDIC_WEBHOOK_TOKEN", "example-token")
        .env("STACKMEDIC_CAMERA_APP_TOKEN", "example-admin-token")
        .env("STACKMEDIC_PLC_PASSWORD", "example-password")
        .output()
        .expect("run stackmedic-remediator");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn remediator_config_example_passes_check() {
    let (ok, text) = run(&[
        &format!("--config.file={}", example().display()),
        "--config.check",
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("configuration is valid: 7 rules, 3 targets"),
        "{text}"
    );
    // The opt-in host measures load on their own too (their webhook and escalation settings are
    // those of the configuration they are added to).
    let host = example().with_file_name("remediator-host.yml");
    let (ok, text) = run(&[
        &format!("--config.file={}", host.display()),
        "--config.check",
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("configuration is valid: 6 rules, 6 targets"),
        "{text}"
    );
}

#[test]
fn remediator_config_check_names_the_keys_in_the_file_and_no_knock_on_problem() {
    // The example without its secrets in the environment: each problem names the key the file
    // has (`…_env`), and the PLC target whose `ads` section failed is not reported again as
    // lacking that section.
    let out = Command::new(bin_path("stackmedic-remediator"))
        .args([
            &format!("--config.file={}", example().display()),
            "--config.check",
        ])
        .env_remove("STACKMEDIC_WEBHOOK_TOKEN")
        .env_remove("STACKMEDIC_CAMERA_APP_TOKEN")
        .env_remove("STACKMEDIC_PLC_PASSWORD")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("warning: ") && !l.starts_with("configuration is invalid"))
        .collect();
    // The targets' problems are named in the stack's file that example() includes, where they
    // are written.
    let camera = example()
        .with_file_name("remediator.d")
        .join("camera-plc.yml")
        .display()
        .to_string();
    assert_eq!(
        problems,
        [
            "webhook.bearer_token_env: environment variable STACKMEDIC_WEBHOOK_TOKEN is not set"
                .to_owned(),
            format!("{camera}: targets[0].http.bearer_token_env: environment variable STACKMEDIC_CAMERA_APP_TOKEN is not set"),
            format!("{camera}: targets[1].ads.password_env: environment variable STACKMEDIC_PLC_PASSWORD is not set"),
        ],
        "{text}"
    );
}

#[test]
fn remediator_config_check_finds_a_compose_command_that_is_not_installed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yml");
    std::fs::write(
        &file,
        "targets:\n- name: stack\n  compose: {file: /srv/stack/compose.yml, command: [stackmedic-no-such-compose, up]}\n\
         rules:\n- name: up\n  action: compose_up\n  target: stack\n",
    )
    .unwrap();
    let (ok, text) = run(&[
        &format!("--config.file={}", file.display()),
        "--config.check",
    ]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("targets[0].compose.command: stackmedic-no-such-compose is not installed (not found in PATH)"),
        "{text}"
    );
}

#[test]
fn remediator_config_default_passes_check() {
    let (ok, text) = run(&["--config.check"]);
    assert!(ok, "{text}");
}

#[test]
fn remediator_config_check_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yml");
    std::fs::write(
        &file,
        "global: {dry_run: yes-please}\nwebhook: {bearer_token_file: /nonexistent/token}\n\
         escalation:\n  alertmanager_url: 'http://127.0.0.1:9093'\n\
         \x20 labels: {alertname: Quiet, remediation_target: other, team: ops, severity: critical, bad-name: x}\n\
         targets:\n\
         - name: a\n  cooldown: 5m\n  docker: {containers: ['../x']}\n\
         - name: b\n  backoff: 0s\n  http: {base_url: 'ftp://x'}\n\
         rules:\n\
         - name: r\n  action: container_restart\n  target: nope\n\
         - name: s\n  action: container_restart\n  target: a\n  matchers: ['severity=~\"(\"']\n\
         - name: t\n  action: http_sequence\n  target: b\n  steps: [{path: no-slash}]\n",
    )
    .unwrap();
    let (ok, text) = run(&[
        &format!("--config.file={}", file.display()),
        "--config.check",
    ]);
    assert!(!ok, "{text}");
    let expected = [
        "global.dry_run: invalid type: string \"yes-please\", expected a boolean",
        "webhook.bearer_token_file: cannot read secret file /nonexistent/token",
        "escalation.labels.alertname: is set by the remediator on every escalation: the loop guard",
        "escalation.labels.bad-name: is not a label name",
        "escalation.labels.remediation_target: is set by the remediator on every escalation",
        "targets[0].cooldown: removed: a failed attempt is retried after `backoff` inside its incident",
        "targets[0].docker.containers[0]: \"../x\" is not a valid container name",
        "targets[1].http.base_url: ftp://x/ is not an http(s) URL with a host",
        "targets[1].backoff: must be greater than 0s",
        "rules[0].target: unknown target \"nope\"",
        "rules[1].matchers[0]: matcher \"severity=~\\\"(\\\"\": invalid regular expression",
        "rules[2].steps[0].path: must start with `/` and contain neither `..` nor a scheme",
    ];
    // A problem is a line starting with its path; a message may continue on further lines
    // (the regular expression parser's caret).
    let problems: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("configuration is invalid"))
        .filter(|l| {
            ["global.", "webhook.", "escalation.", "targets[", "rules["]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    for want in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in:\n{text}"
        );
    }
    assert_eq!(problems.len(), expected.len(), "{text}");
    assert!(
        text.contains(&format!(
            "configuration is invalid: {} problem(s)",
            expected.len()
        )),
        "{text}"
    );
}

#[test]
fn remediator_config_refuses_non_loopback_without_auth() {
    let dir = tempfile::tempdir().unwrap();
    let port = stackmedic_tests::free_port();
    let (ok, text) = run(&[
        &format!("--web.listen-address=0.0.0.0:{port}"),
        &format!("--storage.path={}", dir.path().display()),
    ]);
    assert!(!ok, "{text}");
    assert!(text.contains("without webhook authentication"), "{text}");
}

/// Each invalid fixture under `tests/fixtures/remediator-config/invalid/` and every problem
/// `--config.check` must print for it, in order (a problem is a line starting with its path;
/// each expected text starts its line). Nothing else may be printed as a problem: a problem
/// that only follows from another one is not one.
const INVALID: &[(&str, &[&str])] = &[
    (
        "01-duplicate-keys.yml",
        &[
            "global.dry_run: duplicate key at line 3, first at line 2; a key may appear once in a mapping",
            "targets[0].docker: duplicate key at line 7, first at line 6; a key may appear once in a mapping",
            "rules[0].action: duplicate key at line 12, first at line 10; a key may appear once in a mapping",
        ],
    ),
    (
        "02-keys-of-the-rule-kind.yml",
        &[
            "rules[0].steps: unknown field `steps`, expected one of `name`, `matchers`, `action`, `target`, `target_label`, `targets`, `dry_run`, `delay`, `container_label`",
            "rules[1].container_label: unknown field `container_label`, expected one of `name`, `matchers`, `action`, `target`, `target_label`, `targets`, `dry_run`, `delay`",
        ],
    ),
    (
        "03-type-error-beside-other-problems.yml",
        &[
            "global.dry_run: invalid type: string \"maybe\", expected a boolean",
            "global.max_concurrent_actions: must be at least 1",
            "targets[0].docker.containers[0]: \"../etc\" is not a valid container name",
            "targets[0].backoff: invalid duration \"soon\"",
            "targets[0].max_attempts: must be at least 1",
            "targets[0].verify.interval: must be greater than 0s",
            "rules[0].delay: invalid duration \"later\"",
            "rules[0].matchers[0]: matcher \"severity=~\\\"(\\\"\": invalid regular expression",
            "rules[0].target: unknown target \"nowhere\"",
        ],
    ),
    (
        "04-no-knock-on-problems.yml",
        &[
            "global.retention: must be at least 1h",
            "escalation.resend_interval: invalid duration \"often\"",
            "targets[0].docker.containers: invalid type: integer `5`, expected a sequence",
            "targets[1].max_backoff: invalid duration \"soon\"",
            "rules[1].steps[0].method: invalid type: integer `7`, expected a string",
            "rules[1].targets: unknown target \"gone\"",
        ],
    ),
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/remediator-config")
}

#[test]
fn remediator_config_every_invalid_fixture_prints_exactly_its_problems() {
    let dir = fixtures().join("invalid");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("list the fixtures")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml"))
        .collect();
    on_disk.sort();
    let in_table: Vec<&str> = INVALID.iter().map(|(f, _)| *f).collect();
    assert_eq!(on_disk, in_table, "fixtures on disk and the table differ");
    let mut failures = Vec::new();
    for (file, expected) in INVALID {
        let (ok, text) = run(&[
            &format!("--config.file={}", dir.join(file).display()),
            "--config.check",
        ]);
        if ok {
            failures.push(format!("{file}: accepted"));
            continue;
        }
        let problems: Vec<&str> = text
            .lines()
            .filter(|l| {
                [
                    "global.",
                    "webhook.",
                    "escalation.",
                    "docker.",
                    "targets[",
                    "rules[",
                ]
                .iter()
                .any(|p| l.starts_with(p))
            })
            .collect();
        if problems.len() != expected.len()
            || problems
                .iter()
                .zip(expected.iter())
                .any(|(l, w)| !l.starts_with(w))
            || !text.contains(&format!(
                "configuration is invalid: {} problem(s)",
                expected.len()
            ))
        {
            failures.push(format!(
                "{file}: got\n  {}\nexpected\n  {}",
                problems.join("\n  "),
                expected.join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn remediator_config_check_warns_about_a_configuration_without_rules() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("no-rules.yml");
    std::fs::write(
        &file,
        "targets:\n- name: app\n  docker: {containers: [app]}\n",
    )
    .unwrap();
    let (ok, text) = run(&[
        &format!("--config.file={}", file.display()),
        "--config.check",
    ]);
    assert!(ok, "valid, if idle: {text}");
    assert!(
        text.contains("configuration is valid: 0 rules, 1 targets"),
        "{text}"
    );
    assert!(
        text.contains("warning: no rules configured (0 rules): every alert is counted as unmatched and no action runs"),
        "{text}"
    );
    // A configuration with rules has no such warning.
    let (ok, text) = run(&[
        &format!("--config.file={}", example().display()),
        "--config.check",
    ]);
    assert!(ok && !text.contains("no rules configured"), "{text}");
}
