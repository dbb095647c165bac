//! The remediator binary's configuration handling: `examples/remediator.yml` passes
//! `--config.check`; a broken file prints every problem with its path and exits non-zero; the
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
        text.contains("configuration is valid: 7 rules, 4 targets"),
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
         targets:\n- name: a\n  docker: {containers: ['../x']}\n\
         rules:\n- name: r\n  action: container_restart\n  target: b\n  matchers: ['severity=~\"(\"']\n",
    )
    .unwrap();
    let (ok, text) = run(&[
        &format!("--config.file={}", file.display()),
        "--config.check",
    ]);
    assert!(!ok, "{text}");
    for want in [
        "global.dry_run:",
        "webhook.bearer_token_file: cannot read secret file /nonexistent/token",
        "targets[0].docker.containers[0]: \"../x\" is not a valid container name",
        "rules[0].matchers[0]:",
        "configuration is invalid",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
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
