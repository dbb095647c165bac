//! The Debian packages on a clean Debian root, as a new user meets them: installed with apt into
//! the root filesystem of `stackmedic_tests::systemd` (Debian minbase with systemd and dbus, no
//! packages added by hand) while nothing runs, as into a chroot or an image, then booted with
//! systemd as PID 1.
//!
//! apt installs the two `.deb` files from `dist/` with their declared dependencies only: it
//! reads a local repository of what the root lacks for them (fetched once from the release's
//! mirror and cached, `stackmedic_tests::packaging::dependency_repo`), so a dependency the
//! packages forget (the CA certificates, `kill` of `ExecReload`) is missing here as on a user's
//! host.
//!
//! After the boot both services are enabled (the maintainer scripts enabled them without a
//! running systemd), running without restarts, and answering on the host's loopback (the
//! container shares the host's network); `systemd-analyze verify` finds nothing; a stack's file
//! copied from the installed example set into `/etc/stackmedic/exporter.d/` is live after
//! `systemctl reload`; the remediator's hardened unit hides `/home` from the example's compose
//! file until the drop-in `docs/remediator.md` shows is added; and `apt-get purge` stops and
//! removes both. The container gets the capabilities systemd needs to apply the units'
//! sandboxing (mount namespaces): `--cap-add SYS_ADMIN` and no seccomp filter.

use std::path::PathBuf;
use std::time::Duration;

use stackmedic_tests::docker::{docker, docker_ok};
use stackmedic_tests::packaging::{deb_file, dependency_repo, BINARIES};
use stackmedic_tests::systemd::{systemd_image, SystemdContainer};
use stackmedic_tests::{http, is_root, unique_name, wait_until};

/// The example's compose file, where `examples/remediator.d/open-webui.yml` names it.
const COMPOSE_FILE: &str = "/home/ops/ai_stack/open-webui/docker-compose.yml";

/// The drop-in of docs/remediator.md ("Compose files under /home").
const COMPOSE_HOME_DROPIN: &str =
    "[Service]\nProtectHome=tmpfs\nBindReadOnlyPaths=/home/ops/ai_stack/open-webui\n";

/// An image removed when dropped.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker(&["image", "rm", "-f", &self.0]);
    }
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `script` with `sh -c` in the booted container and returns its output; panics when it
/// fails.
fn sh(c: &SystemdContainer, script: &str) -> String {
    let out = c.exec(&["sh", "-c", script]);
    assert!(out.status.success(), "{script}:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The log lines of the unit's current run (its invocation).
fn current_run_log(c: &SystemdContainer, unit: &str) -> String {
    let id = c.property(unit, "InvocationID");
    sh(
        c,
        &format!("journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID={id}"),
    )
}

fn answers(url: &str) -> bool {
    http::get(url).is_ok_and(|r| r.status == 200)
}

#[test]
fn packages_install_into_a_clean_root_boot_enabled_reload_and_purge() {
    assert!(
        is_root(),
        "docker and the packages' files need root: run the tests as root"
    );
    let debs: Vec<PathBuf> = BINARIES.iter().map(|b| deb_file(b)).collect();
    let repo = dependency_repo(&debs);
    let image = systemd_image();

    // ---- Installed while nothing runs, as into a chroot or an image being built. ----
    let builder = unique_name("sm-pkg-install");
    let dist = debs[0].parent().unwrap().display().to_string();
    let mut script = String::from(
        "set -e\n\
         echo 'deb [trusted=yes] file:/repo ./' > /etc/apt/sources.list\n\
         rm -f /etc/apt/sources.list.d/*\n\
         apt-get update -qq\n\
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends",
    );
    for deb in &debs {
        script.push_str(&format!(
            " /dist/{}",
            deb.file_name().unwrap().to_string_lossy()
        ));
    }
    script.push('\n');
    let repo_mount = format!("{}:/repo:ro", repo.display());
    let dist_mount = format!("{dist}:/dist:ro");
    let out = docker(&[
        "run",
        "--name",
        &builder,
        "--network",
        "none",
        "-v",
        &repo_mount,
        "-v",
        &dist_mount,
        image,
        "sh",
        "-c",
        &script,
    ]);
    let install_log = text(&out);
    let installed = Image(format!("stackmedic-packages-boot:{}", unique_name("t")));
    if out.status.success() {
        // The image boots systemd again, not the install script it was made with.
        docker_ok(&[
            "commit",
            "--change",
            "CMD [\"/lib/systemd/systemd\"]",
            &builder,
            &installed.0,
        ]);
    }
    let _ = docker(&["rm", "-f", &builder]);
    assert!(
        out.status.success(),
        "apt could not install the packages into a clean root:\n{install_log}"
    );
    for package in BINARIES {
        assert!(
            !install_log.contains(&format!("{package}: the service did not start")),
            "{install_log}"
        );
    }

    // ---- Booted: enabled, running, answering. ----
    let c = SystemdContainer::start_image(
        &installed.0,
        &[],
        &[
            "--cap-add",
            "SYS_ADMIN",
            "--security-opt",
            "seccomp=unconfined",
        ],
    );
    let exporter = "stackmedic-exporter.service";
    let remediator = "stackmedic-remediator.service";
    for unit in [exporter, remediator] {
        let enabled = c.systemctl(&["is-enabled", unit]);
        assert_eq!(
            String::from_utf8_lossy(&enabled.stdout).trim(),
            "enabled",
            "{unit} is not enabled after installation into the image"
        );
    }
    assert!(
        wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
            answers("http://127.0.0.1:8790/-/ready") && answers("http://127.0.0.1:8791/-/ready")
        }),
        "the services do not answer:\n{}\n{}",
        c.journal(exporter),
        c.journal(remediator)
    );
    for unit in [exporter, remediator] {
        assert_eq!(c.property(unit, "ActiveState"), "active", "{unit}");
        assert_eq!(
            c.property(unit, "NRestarts"),
            "0",
            "{unit} restarted:\n{}",
            c.journal(unit)
        );
        let verify = c.exec(&["systemd-analyze", "verify", unit]);
        let said = text(&verify);
        assert!(
            verify.status.success() && !said.contains("stackmedic"),
            "systemd-analyze verify {unit}:\n{said}"
        );
    }
    let metrics = http::get("http://127.0.0.1:8790/metrics").unwrap().text();
    assert!(metrics.contains("stackmedic_probe_success{"), "{metrics}");

    // ---- A stack added from the installed example set, live after a reload. ----
    sh(
        &c,
        "cp /usr/share/doc/stackmedic-exporter/examples/exporter.d/open-webui.yml /etc/stackmedic/exporter.d/",
    );
    let main_pid = c.property(exporter, "MainPID");
    let reload = c.systemctl(&["reload", exporter]);
    assert!(reload.status.success(), "{}", text(&reload));
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(250), || {
            http::get("http://127.0.0.1:8790/metrics")
                .is_ok_and(|r| r.text().contains("probe=\"owui-local\""))
        }),
        "the stack's probes are not live after systemctl reload:\n{}",
        c.journal(exporter)
    );
    assert_eq!(
        c.property(exporter, "MainPID"),
        main_pid,
        "reload restarted the exporter"
    );

    // ---- The remediator's hardening and the example's compose file under /home. ----
    sh(
        &c,
        &format!(
            "mkdir -p {dir} && printf 'services:\\n  owui:\\n    image: ghcr.io/open-webui/open-webui:main\\n' > {COMPOSE_FILE} \
             && cp /usr/share/doc/stackmedic-remediator/examples/remediator.d/open-webui.yml /etc/stackmedic/remediator.d/",
            dir = COMPOSE_FILE.trim_end_matches("/docker-compose.yml")
        ),
    );
    let reload = c.systemctl(&["reload", remediator]);
    assert!(reload.status.success(), "{}", text(&reload));
    let restart = c.systemctl(&["restart", remediator]);
    assert!(restart.status.success(), "{}", text(&restart));
    let hidden = format!("{COMPOSE_FILE} cannot be read by this process");
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(250), || {
            current_run_log(&c, remediator).contains(&hidden)
        }),
        "ProtectHome=yes does not hide the compose file under /home:\n{}",
        c.journal(remediator)
    );
    sh(
        &c,
        &format!(
            "mkdir -p /etc/systemd/system/stackmedic-remediator.service.d && printf '{}' > /etc/systemd/system/stackmedic-remediator.service.d/compose-home.conf && systemctl daemon-reload && systemctl restart stackmedic-remediator",
            COMPOSE_HOME_DROPIN.replace('\n', "\\n")
        ),
    );
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(250), || {
            answers("http://127.0.0.1:8791/-/ready")
                && current_run_log(&c, remediator).contains("listening")
        }),
        "the remediator does not come back with the drop-in:\n{}",
        c.journal(remediator)
    );
    let log = current_run_log(&c, remediator);
    assert!(
        !log.contains(&hidden),
        "the drop-in does not show the compose file's folder:\n{log}"
    );
    // The rest of /home stays hidden, and the folder is read-only for the service.
    sh(&c, "mkdir -p /home/other && touch /home/other/secret");
    let probe = c.exec(&[
        "systemd-run",
        "--wait",
        "--pipe",
        "--quiet",
        "-p",
        "ProtectHome=tmpfs",
        "-p",
        "BindReadOnlyPaths=/home/ops/ai_stack/open-webui",
        "sh",
        "-c",
        &format!(
            "test -r {COMPOSE_FILE} && ! test -e /home/other/secret && ! touch {COMPOSE_FILE}"
        ),
    ]);
    assert!(
        probe.status.success(),
        "the drop-in's view of /home is not what the docs say:\n{}",
        text(&probe)
    );

    // ---- Purged: stopped, and nothing of them left. ----
    let purge = c.exec(&[
        "sh",
        "-c",
        "DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq stackmedic-exporter stackmedic-remediator",
    ]);
    assert!(purge.status.success(), "{}", text(&purge));
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(250), || {
            !answers("http://127.0.0.1:8790/-/ready") && !answers("http://127.0.0.1:8791/-/ready")
        }),
        "the services still answer after the purge"
    );
    for unit in [exporter, remediator] {
        let state = c.property(unit, "LoadState");
        assert_eq!(state, "not-found", "{unit} after the purge");
    }
    let left = c.exec(&[
        "sh",
        "-c",
        "ls -d /var/lib/stackmedic-remediator /usr/share/stackmedic /usr/share/doc/stackmedic-* \
         /etc/systemd/system/multi-user.target.wants/stackmedic-* 2>/dev/null; \
         find /etc/stackmedic -type f 2>/dev/null | sort; true",
    ]);
    let left = String::from_utf8_lossy(&left.stdout).trim().to_owned();
    // What the administrator added stays, as dpkg keeps files it did not install: the two
    // stack files copied above (and the drop-in under /etc/systemd/system). Nothing else.
    assert_eq!(
        left,
        "/etc/stackmedic/exporter.d/open-webui.yml\n/etc/stackmedic/remediator.d/open-webui.yml",
        "left behind after the purge"
    );
}
