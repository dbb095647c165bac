//! The Debian packages `scripts/package.sh` built, installed on this machine with `dpkg -i`:
//! their files, the system user, the conffiles, `systemd-analyze verify` and the offline
//! security review of both units, each installed binary run the way its unit runs it on its
//! installed default configuration (`--config.check`, then serving, a scrape, a webhook and a
//! SIGHUP reload), `dpkg -r` keeping configuration and data, and `dpkg --purge` leaving nothing
//! behind but the system user, which Debian policy keeps.
//!
//! No systemd runs as PID 1 here: the units are checked with `systemd-analyze`, and the binaries
//! are started as `ExecStart=` says, as the unit's user (see `stackmedic_tests::packaging`).

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use stackmedic_tests::metrics::{find, scrape};
use stackmedic_tests::packaging::{
    deb_file, package_installed, package_known, purge_packages, remove_service_user,
    require_systemd_analyze, run, run_ok, Service, Unit, BINARIES, UNIT_DIR,
};
use stackmedic_tests::remediator::{alert, payload};
use stackmedic_tests::{bin_path, is_root, wait_until};

/// Files each package must install, besides `/usr/share/doc/<package>/copyright`.
fn expected_files(package: &str) -> Vec<String> {
    let short = package.trim_start_matches("stackmedic-");
    let mut files = vec![
        format!("/usr/bin/{package}"),
        format!("/etc/stackmedic/{short}.yml"),
        format!("/etc/default/{package}"),
        format!("{UNIT_DIR}/{package}.service"),
        format!("/usr/share/doc/{package}/docker-socket.conf"),
        format!("/usr/share/doc/{package}/configuration.md"),
        // The stacks' folder the configuration includes, and the example set with its README,
        // secrets file and stack files.
        format!("/etc/stackmedic/{short}.d/README"),
        format!("/usr/share/doc/{package}/examples/README.md"),
        format!("/usr/share/doc/{package}/examples/stackmedic.env"),
        format!("/usr/share/doc/{package}/examples/remediator.yml"),
        format!("/usr/share/doc/{package}/examples/remediator.d/open-webui.yml"),
        format!("/usr/share/doc/{package}/examples/remediator.d/camera-plc.yml"),
    ];
    if package == "stackmedic-exporter" {
        files.extend(
            [
                "/usr/share/doc/stackmedic-exporter/metrics.md",
                "/usr/share/doc/stackmedic-exporter/examples/exporter.yml",
                "/usr/share/doc/stackmedic-exporter/examples/prometheus.yml",
                "/usr/share/doc/stackmedic-exporter/examples/exporter.d/open-webui.yml",
                "/usr/share/doc/stackmedic-exporter/examples/exporter.d/assistant-backend.yml",
                "/usr/share/doc/stackmedic-exporter/examples/exporter.d/gateway.yml",
                "/usr/share/doc/stackmedic-exporter/examples/exporter.d/backups.yml",
                "/usr/share/doc/stackmedic-exporter/examples/exporter.d/camera-plc.yml",
                "/usr/share/doc/stackmedic-exporter/runbooks/ContainerDown.md",
                "/usr/share/doc/stackmedic-exporter/runbooks/StackmedicRemediationFailed.md",
                "/usr/share/stackmedic/alerts/stackmedic.rules.yml",
                "/usr/share/stackmedic/alerts/stacks/assistant-backend.rules.yml",
                "/usr/share/stackmedic/alerts/stacks/backups.rules.yml",
                "/usr/share/stackmedic/alerts/stacks/gateway.rules.yml",
                "/usr/share/stackmedic/alerts/stacks/camera-plc.rules.yml",
                "/usr/share/stackmedic/alerts/host-measures.rules.yml",
                "/usr/share/stackmedic/alerts/alertmanager.example.yml",
                "/usr/share/stackmedic/dashboards/stackmedic-overview.json",
                "/usr/share/stackmedic/dashboards/stackmedic-remediator.json",
                "/usr/share/stackmedic/grafana/provisioning/datasources/stackmedic.yml",
                "/usr/share/stackmedic/grafana/provisioning/dashboards/stackmedic.yml",
            ]
            .map(str::to_owned),
        );
    } else {
        files.push("/usr/share/doc/stackmedic-remediator/remediator.md".to_owned());
        files.push("/usr/share/doc/stackmedic-remediator/ha.md".to_owned());
        files.push("/usr/share/doc/stackmedic-remediator/examples/remediator-host.yml".to_owned());
        files.push(
            "/usr/share/doc/stackmedic-remediator/runbooks/StackmedicRemediationFailed.md"
                .to_owned(),
        );
    }
    files
}

/// Installed files that are copies of repository files, byte for byte.
const COPIES: &[(&str, &str)] = &[
    (
        "/usr/lib/systemd/system/stackmedic-exporter.service",
        "packaging/systemd/stackmedic-exporter.service",
    ),
    (
        "/usr/lib/systemd/system/stackmedic-remediator.service",
        "packaging/systemd/stackmedic-remediator.service",
    ),
    (
        "/usr/share/doc/stackmedic-exporter/docker-socket.conf",
        "packaging/systemd/docker-socket.conf",
    ),
    (
        "/etc/default/stackmedic-exporter",
        "packaging/default/stackmedic-exporter",
    ),
    (
        "/etc/default/stackmedic-remediator",
        "packaging/default/stackmedic-remediator",
    ),
    (
        "/usr/share/stackmedic/dashboards/stackmedic-overview.json",
        "dashboards/stackmedic-overview.json",
    ),
    (
        "/usr/share/stackmedic/grafana/provisioning/dashboards/stackmedic.yml",
        "dashboards/provisioning/dashboards/stackmedic.yml",
    ),
    (
        "/usr/share/stackmedic/alerts/stackmedic.rules.yml",
        "alerts/stackmedic.rules.yml",
    ),
    (
        "/usr/share/stackmedic/alerts/host-measures.rules.yml",
        "alerts/host-measures.rules.yml",
    ),
    (
        "/usr/share/stackmedic/alerts/stacks/camera-plc.rules.yml",
        "alerts/stacks/camera-plc.rules.yml",
    ),
    (
        "/usr/share/doc/stackmedic-exporter/examples/exporter.d/open-webui.yml",
        "examples/exporter.d/open-webui.yml",
    ),
    (
        "/usr/share/doc/stackmedic-remediator/examples/remediator.d/open-webui.yml",
        "examples/remediator.d/open-webui.yml",
    ),
    (
        "/usr/share/doc/stackmedic-exporter/examples/README.md",
        "examples/README.md",
    ),
    (
        "/usr/share/doc/stackmedic-exporter/runbooks/ContainerDown.md",
        "docs/runbooks/ContainerDown.md",
    ),
];

/// Purges the packages when the test ends, however it ends.
struct PurgeOnDrop;

impl Drop for PurgeOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Leave the machine clean even after a failed assertion; errors are secondary.
            let _ = std::panic::catch_unwind(purge_packages);
        } else {
            purge_packages();
        }
    }
}

#[test]
fn debian_packages_install_run_and_purge() {
    assert!(
        is_root(),
        "installing packages needs root: run the tests as root (scripts/test.sh)"
    );
    let systemd_analyze = require_systemd_analyze();
    let debs: Vec<PathBuf> = BINARIES.iter().map(|b| deb_file(b)).collect();
    purge_packages();
    remove_service_user();
    let _purge = PurgeOnDrop;

    let mut args = vec!["-i".to_owned()];
    args.extend(debs.iter().map(|p| p.display().to_string()));
    run_ok("dpkg", &args.iter().map(String::as_str).collect::<Vec<_>>());
    for package in BINARIES {
        assert!(package_installed(package), "{package} is not installed");
    }

    // Files, and which of them are conffiles.
    let mut listed = BTreeSet::new();
    for package in BINARIES {
        let files: BTreeSet<String> = run_ok("dpkg", &["-L", package])
            .lines()
            .map(str::to_owned)
            .collect();
        for file in expected_files(package)
            .into_iter()
            .chain([format!("/usr/share/doc/{package}/copyright")])
        {
            assert!(
                files.contains(&file),
                "{package} does not list {file}: {files:#?}"
            );
            assert!(Path::new(&file).is_file(), "{file} is not installed");
        }
        let mode = std::fs::metadata(format!("/usr/bin/{package}"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755, "/usr/bin/{package}");
        let short = package.trim_start_matches("stackmedic-");
        let conffiles: BTreeSet<String> = run_ok(
            "dpkg-query",
            &["-W", "--showformat=${Conffiles}\n", package],
        )
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect();
        assert_eq!(
            conffiles,
            BTreeSet::from([
                format!("/etc/default/{package}"),
                format!("/etc/stackmedic/{short}.yml"),
                format!("/etc/stackmedic/{short}.d/README"),
            ]),
            "conffiles of {package}"
        );
        // Enabled on installation although no systemd runs here (as in a chroot or an image
        // being built): the [Install] link exists, and nothing was started.
        assert!(
            Path::new(&format!(
                "/etc/systemd/system/multi-user.target.wants/{package}.service"
            ))
            .exists(),
            "{package} is not enabled after installation without a running systemd"
        );
        listed.extend(files);
    }
    let root = stackmedic_tests::alerting::repo_root();
    for (installed, source) in COPIES {
        assert_eq!(
            std::fs::read(installed).unwrap(),
            std::fs::read(root.join(source)).unwrap(),
            "{installed} differs from {source}"
        );
    }

    // The packaged configurations are the embedded defaults, written out with a header: the
    // installed binary and the one built from this source print the same default, and the
    // file ends with it.
    for package in BINARIES {
        let short = package.trim_start_matches("stackmedic-");
        let installed = std::fs::read_to_string(format!("/etc/stackmedic/{short}.yml")).unwrap();
        let printed = run_ok(&format!("/usr/bin/{package}"), &["--config.print-default"]);
        let from_source = run_ok(
            &bin_path(package).display().to_string(),
            &["--config.print-default"],
        );
        assert_eq!(printed, from_source, "{package}: embedded defaults differ");
        assert!(
            installed.starts_with(&format!("# /etc/stackmedic/{short}.yml: the configuration")),
            "{installed}"
        );
        assert!(
            installed.contains(&printed),
            "/etc/stackmedic/{short}.yml is not the embedded default:\n{installed}"
        );
        // …and includes the stacks' folder.
        assert!(
            installed.ends_with(&format!("include:\n  - {short}.d/*.yml\n")),
            "/etc/stackmedic/{short}.yml does not include {short}.d/:\n{installed}"
        );
    }

    // Paths in the installed examples resolve once installed: the rule files the example
    // Prometheus configuration loads.
    let prometheus =
        std::fs::read_to_string("/usr/share/doc/stackmedic-exporter/examples/prometheus.yml")
            .unwrap();
    let rule_files: Vec<&str> = prometheus
        .lines()
        .skip_while(|l| !l.starts_with("rule_files:"))
        .skip(1)
        .take_while(|l| l.starts_with("  - "))
        .map(|l| l.trim_start_matches("  - "))
        .collect();
    assert!(rule_files.len() >= 2, "{prometheus}");
    for pattern in rule_files {
        assert!(
            pattern.starts_with("/usr/share/stackmedic/alerts/"),
            "the installed prometheus.yml names {pattern}, which is not where the rules are"
        );
        let dir = Path::new(pattern).parent().unwrap();
        let suffix = Path::new(pattern)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches('*')
            .to_owned();
        let found = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with(&suffix))
            })
            .unwrap_or(false);
        assert!(
            found,
            "{pattern} of the installed prometheus.yml matches no installed file"
        );
    }

    // The system user: no login, no home, not in the Docker socket's group (opt-in only).
    let passwd = run_ok("getent", &["passwd", "stackmedic"]);
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid < 1000, "stackmedic is not a system user: {passwd}");
    assert_eq!(fields[5], "/nonexistent", "{passwd}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{passwd}");
    assert_eq!(
        run_ok("id", &["-Gn", "stackmedic"]).trim(),
        "stackmedic",
        "the service user must be in no further group (the Docker socket is opt-in)"
    );
    let store = std::fs::metadata("/var/lib/stackmedic-remediator").unwrap();
    assert_eq!(store.uid(), uid, "owner of /var/lib/stackmedic-remediator");
    assert_eq!(store.mode() & 0o7777, 0o750);

    // The units: valid, hardened, reloading with SIGHUP, restarting on failure.
    let units: Vec<Unit> = BINARIES
        .iter()
        .map(|p| Unit::read(&Path::new(UNIT_DIR).join(format!("{p}.service")), &[]))
        .collect();
    let unit_paths: Vec<String> = BINARIES
        .iter()
        .map(|p| format!("{UNIT_DIR}/{p}.service"))
        .collect();
    let mut verify = vec!["verify".to_owned()];
    verify.extend(unit_paths.iter().cloned());
    let output = run(
        &systemd_analyze.display().to_string(),
        &verify.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "systemd-analyze verify: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for path in &unit_paths {
        let report = run(
            &systemd_analyze.display().to_string(),
            &["security", "--offline=true", "--no-pager", path],
        );
        let text = String::from_utf8_lossy(&report.stdout);
        let level: f64 = text
            .lines()
            .find_map(|l| {
                l.split_once("Overall exposure level for ")?
                    .1
                    .split_once(": ")
            })
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level for {path}:\n{text}"));
        // systemd rates 0–10; up to 2.9 it calls a service "OK" or better.
        assert!(level <= 2.9, "{path}: exposure level {level}:\n{text}");
    }
    for unit in &units {
        let package = unit.name().trim_end_matches(".service");
        let short = package.trim_start_matches("stackmedic-");
        assert_eq!(unit.service("User"), "stackmedic");
        assert_eq!(unit.service("Group"), "stackmedic");
        assert_eq!(unit.service("Restart"), "on-failure");
        // procps's /bin/kill, a dependency of the package.
        assert_eq!(unit.service("ExecReload"), "/bin/kill -HUP $MAINPID");
        assert_eq!(unit.service("NoNewPrivileges"), "yes");
        assert_eq!(unit.service("ProtectSystem"), "strict");
        assert_eq!(unit.service("PrivateTmp"), "yes");
        assert_eq!(unit.service("CapabilityBoundingSet"), "");
        assert!(!unit.service("ProtectHome").is_empty());
        assert!(unit.service("RestrictAddressFamilies").contains("AF_UNIX"));
        assert!(
            unit.supplementary_groups().is_empty(),
            "{package}: no groups by default"
        );
        assert!(unit.service("ExecStart").starts_with(&format!(
            "/usr/bin/{package} --config.file=/etc/stackmedic/{short}.yml"
        )));
        assert_eq!(
            unit.service("EnvironmentFile"),
            format!("-/etc/default/{package}")
        );
    }
    let remediator_unit = &units[1];
    assert_eq!(
        remediator_unit.service("ReadWritePaths"),
        "/var/lib/stackmedic-remediator"
    );
    assert!(remediator_unit
        .service("ExecStart")
        .contains("--storage.path=/var/lib/stackmedic-remediator"));

    // Each binary as its unit runs it, on the installed configuration.
    let logs = tempfile::tempdir().unwrap();
    for package in BINARIES {
        let short = package.trim_start_matches("stackmedic-");
        let out = run_ok(
            "setpriv",
            &[
                "--reuid=stackmedic",
                "--regid=stackmedic",
                "--clear-groups",
                "--",
                &format!("/usr/bin/{package}"),
                "--config.check",
                &format!("--config.file=/etc/stackmedic/{short}.yml"),
            ],
        );
        assert!(!out.is_empty(), "{package} --config.check printed nothing");
        let help = run_ok(&format!("/usr/bin/{package}"), &["--help"]);
        for topic in ["Endpoints:", "Signals:", "Files of the Debian package:"] {
            assert!(
                help.contains(topic),
                "{package} --help lacks {topic}:\n{help}"
            );
        }
    }

    let mut exporter = Service::start(&units[0], logs.path());
    // The default configuration's containers probe runs, and fails: the service user has no
    // access to the Docker socket until an administrator grants it.
    let url = exporter.url("/metrics");
    let mut samples = Vec::new();
    let ran = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        samples = scrape(&url).unwrap_or_default();
        find(
            &samples,
            "stackmedic_probe_success",
            &[("probe", "containers")],
        )
        .is_some()
    });
    assert!(
        ran,
        "the containers probe never ran:\n{}",
        exporter.process().describe()
    );
    assert_eq!(
        find(
            &samples,
            "stackmedic_probe_success",
            &[("probe", "containers")]
        ),
        Some(0.0),
        "without the opt-in the service user must not reach the Docker socket"
    );
    assert_eq!(
        find(
            &samples,
            "stackmedic_probe_failure_reason",
            &[("probe", "containers"), ("reason", "connect")]
        ),
        Some(1.0),
        "the containers probe should fail to connect to the Docker socket"
    );
    // ExecReload: SIGHUP reloads the installed configuration.
    assert!(exporter.process().signal("HUP"));
    let reloaded = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        exporter
            .process()
            .stderr()
            .contains("configuration reloaded")
    });
    assert!(
        reloaded,
        "no reload after SIGHUP:\n{}",
        exporter.process().describe()
    );
    assert_eq!(
        find(
            &scrape(&url).unwrap(),
            "stackmedic_exporter_config_last_reload_successful",
            &[]
        ),
        Some(1.0)
    );
    drop(exporter);

    let mut remediator = Service::start(&units[1], logs.path());
    let response = stackmedic_tests::http::post_json(
        &remediator.url("/webhook"),
        &payload(vec![alert(
            "firing",
            &[
                ("alertname", "ContainerDown"),
                ("container", "sm-pkg-absent"),
            ],
            "2026-11-22T10:00:00Z",
        )]),
    )
    .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    // Without the opt-in the service user cannot ask the Docker Engine, so the job cannot
    // be made canonical: it is stored, counted and shown waiting with the reason, never
    // decided on the label alone.
    let metrics_url = remediator.url("/metrics");
    let postponed = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        scrape(&metrics_url).is_ok_and(|s| {
            find(&s, "stackmedic_remediator_subject_postponed_total", &[]).is_some_and(|v| v >= 1.0)
        })
    });
    assert!(
        postponed,
        "the job waiting for the Docker Engine was not counted:\n{}",
        remediator.process().describe()
    );
    let page = stackmedic_tests::http::get(&remediator.url("/"))
        .unwrap()
        .text();
    assert!(
        page.contains("waiting to make the subject canonical")
            && page.contains("Permission denied"),
        "the page does not show the waiting job with its reason:\n{page}"
    );
    let stored: Vec<_> = std::fs::read_dir("/var/lib/stackmedic-remediator")
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert!(
        !stored.is_empty(),
        "the store is not in /var/lib/stackmedic-remediator"
    );
    for entry in &stored {
        assert_eq!(
            entry.metadata().unwrap().uid(),
            uid,
            "{} is not owned by the service user",
            entry.path().display()
        );
    }
    drop(remediator);

    // Remove keeps configuration and data; purge removes them, and the user stays.
    run_ok("dpkg", &["-r", BINARIES[0], BINARIES[1]]);
    for package in BINARIES {
        assert!(!Path::new(&format!("/usr/bin/{package}")).exists());
        assert!(
            package_known(package),
            "{package}: conffiles should remain after remove"
        );
    }
    assert!(Path::new("/etc/stackmedic/exporter.yml").is_file());
    assert!(Path::new("/var/lib/stackmedic-remediator").is_dir());

    run_ok("dpkg", &["--purge", BINARIES[0], BINARIES[1]]);
    for package in BINARIES {
        assert!(!package_known(package), "{package} is still known to dpkg");
    }
    let left: Vec<&String> = listed
        .iter()
        .filter(|path| {
            let p = Path::new(path.as_str());
            // Directories shared with other packages (/usr, /etc/default, …) stay, as they must.
            p.exists() && !p.is_dir()
        })
        .collect();
    assert!(left.is_empty(), "left behind after purge: {left:?}");
    for gone in [
        "/etc/systemd/system/multi-user.target.wants/stackmedic-exporter.service",
        "/etc/systemd/system/multi-user.target.wants/stackmedic-remediator.service",
        // The masks of a removed package's units, gone with the purge.
        "/etc/systemd/system/stackmedic-exporter.service",
        "/etc/systemd/system/stackmedic-remediator.service",
        "/etc/stackmedic",
        "/var/lib/stackmedic-remediator",
        "/usr/share/stackmedic",
        "/usr/share/doc/stackmedic-exporter",
        "/usr/share/doc/stackmedic-remediator",
    ] {
        // symlink_metadata: a link left behind counts, even when its target is gone.
        assert!(
            std::fs::symlink_metadata(gone).is_err(),
            "{gone} is left behind after purge"
        );
    }
    assert!(
        run("getent", &["passwd", "stackmedic"]).status.success(),
        "the system user stays after purge (Debian policy)"
    );
}
