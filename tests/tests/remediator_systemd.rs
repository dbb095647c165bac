//! `systemd_restart` and `systemd_start` against a real systemd as PID 1 in a container built
//! from a `debootstrap`ed Debian root filesystem (see `stackmedic_tests::systemd`). The
//! remediator speaks to it over the container's system bus, through a socket in a host
//! directory; `systemctl` inside the container is only the test's own way of setting up and
//! checking.
//!
//! * a long-running unit: restarted (a new invocation, active again), started after it was
//!   stopped, a unit outside the allow-list denied, a dry run that says what it would do;
//! * the backup timers' oneshot `ai_stack_backup.service`, started when `BackupTooOld` fires:
//!   the job ends `done`, its result is `success`, and the real exporter's backup probe sees the
//!   new archive on its next run;
//! * failures: a oneshot that fails (job result `failed`), a service that dies a second after it
//!   started (verification fails after it was good), and a bus nobody listens on.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stackmedic_tests::exporter::Exporter;
use stackmedic_tests::metrics;
use stackmedic_tests::remediator::{alert, payload, Remediator};
use stackmedic_tests::systemd::SystemdContainer;
use stackmedic_tests::wait_until;

const APP_UNIT: &str = "[Unit]\nDescription=camera/PLC app host service (test)\n\
[Service]\nExecStart=/bin/sleep infinity\n";

/// Writes an archive the backup probe reads (`owui-data__<UTC timestamp>.tar.gz`).
const BACKUP_UNIT: &str = "[Unit]\nDescription=ai_stack volume backup (test)\n\
[Service]\nType=oneshot\nExecStartPre=/bin/mkdir -p /srv/shared/backups\n\
ExecStart=/bin/sh -c 'tar -czf /srv/shared/backups/owui-data__$(date -u +%%Y%%m%%dT%%H%%M%%SZ).tar.gz -C /etc os-release'\n";

const BROKEN_UNIT: &str = "[Service]\nType=oneshot\nExecStart=/bin/false\n";

const FLAKY_UNIT: &str = "[Service]\nExecStart=/bin/sh -c 'sleep 1; exit 3'\n";

fn detail(row: &serde_json::Value) -> String {
    row["detail"].as_str().unwrap_or_default().to_string()
}

fn rows(rem: &Remediator, result: &str, rule: &str) -> Vec<serde_json::Value> {
    rem.actions_with(result)
        .into_iter()
        .filter(|r| r["rule"] == rule)
        .collect()
}

#[test]
fn remediator_restarts_and_starts_allow_listed_units_over_the_system_bus() {
    let host = SystemdContainer::start(&[("sm-app.service", APP_UNIT)]);
    let started = host.systemctl(&["start", "sm-app.service"]);
    assert!(started.status.success(), "{started:?}");
    let first = host.property("sm-app.service", "InvocationID");
    assert!(!first.is_empty());

    let config = format!(
        "targets:\n\
         - name: camera-host\n  timeout: 30s\n  verify: {{deadline: 20s, interval: 200ms, stable_for: 1s}}\n  \
           systemd: {{bus_address: '{bus}', units: [sm-app.service]}}\n\
         - name: camera-host-dry\n  systemd: {{bus_address: '{bus}', units: [sm-app.service]}}\n\
         rules:\n\
         - name: host-restart\n  matchers: ['alertname=\"CameraAppHostServiceDown\"']\n  action: systemd_restart\n  target: camera-host\n  unit_label: unit\n\
         - name: host-start\n  matchers: ['alertname=\"CameraAppHostServiceStopped\"']\n  action: systemd_start\n  target: camera-host\n  unit_label: unit\n\
         - name: host-restart-dry\n  matchers: ['alertname=\"CameraAppHostServiceDry\"']\n  action: systemd_restart\n  target: camera-host-dry\n  dry_run: true\n",
        bus = host.bus_address()
    );
    let mut rem = Remediator::start(&config);

    // Restart: a new invocation, active again, verified over the bus.
    rem.fire(
        &[
            ("alertname", "CameraAppHostServiceDown"),
            ("unit", "sm-app.service"),
        ],
        "2026-11-22T10:00:00Z",
    );
    let ok = rem.wait_for("succeeded", 1, Duration::from_secs(60));
    let d = detail(&ok[0]);
    assert_eq!(ok[0]["action"], "systemd_restart");
    assert_eq!(
        ok[0]["subject"],
        format!("unit:sm-app.service@{}", host.bus_address()),
        "one subject per unit on its bus"
    );
    assert!(
        d.contains("restart job") && d.contains("of unit sm-app.service done"),
        "{d}"
    );
    assert!(d.contains("now active (running)"), "{d}");
    assert!(
        d.contains("verified unit sm-app.service (good for 1s)"),
        "{d}"
    );
    let second = host.property("sm-app.service", "InvocationID");
    assert_ne!(first, second, "the unit was not restarted");
    assert_eq!(host.property("sm-app.service", "ActiveState"), "active");

    // The outage ends; a later stop of the unit is a new one.
    let resolved = rem
        .webhook(
            &payload(vec![alert(
                "resolved",
                &[
                    ("alertname", "CameraAppHostServiceDown"),
                    ("unit", "sm-app.service"),
                ],
                "2026-11-22T10:00:00Z",
            )]),
            None,
        )
        .unwrap();
    assert_eq!(resolved.status, 200);
    rem.wait_for("resolved", 1, Duration::from_secs(20));

    // Start after a stop.
    let stopped = host.systemctl(&["stop", "sm-app.service"]);
    assert!(stopped.status.success(), "{stopped:?}");
    assert_eq!(host.property("sm-app.service", "ActiveState"), "inactive");
    rem.fire(
        &[
            ("alertname", "CameraAppHostServiceStopped"),
            ("unit", "sm-app.service"),
        ],
        "2026-11-22T10:05:00Z",
    );
    let ok = rem.wait_for("succeeded", 2, Duration::from_secs(60));
    let started = ok.iter().find(|r| r["rule"] == "host-start").unwrap();
    let d = detail(started);
    assert!(
        d.contains("start job") && d.contains("was inactive (dead)"),
        "{d}"
    );
    assert_eq!(host.property("sm-app.service", "ActiveState"), "active");

    // A label naming a unit outside the allow-list never reaches the bus.
    let dbus_before = host.property("dbus.service", "InvocationID");
    rem.fire(
        &[
            ("alertname", "CameraAppHostServiceDown"),
            ("unit", "dbus.service"),
        ],
        "2026-11-22T10:10:00Z",
    );
    let denied = rem.wait_for("denied", 1, Duration::from_secs(20));
    assert!(
        detail(&denied[0]).contains("outside the allow-list"),
        "{denied:?}"
    );
    assert_eq!(host.property("dbus.service", "InvocationID"), dbus_before);

    // A dry run reads the unit's state and says what it would do (the unit's healed incident
    // ended first: an alert of it would join that incident, one subject per unit).
    let resolved = rem
        .webhook(
            &payload(vec![alert(
                "resolved",
                &[
                    ("alertname", "CameraAppHostServiceStopped"),
                    ("unit", "sm-app.service"),
                ],
                "2026-11-22T10:05:00Z",
            )]),
            None,
        )
        .unwrap();
    assert_eq!(resolved.status, 200);
    rem.wait_for("resolved", 2, Duration::from_secs(20));
    let before = host.property("sm-app.service", "InvocationID");
    rem.fire(
        &[("alertname", "CameraAppHostServiceDry")],
        "2026-11-22T10:15:00Z",
    );
    let dry = rem.wait_for("dry_run", 1, Duration::from_secs(20));
    let d = detail(&dry[0]);
    assert!(
        d.contains("would restart unit sm-app.service, now active (running)"),
        "{d}"
    );
    assert_eq!(host.property("sm-app.service", "InvocationID"), before);
}

#[test]
fn remediator_starts_the_backup_oneshot_and_the_backup_probe_sees_its_archive() {
    let host = SystemdContainer::start(&[("ai_stack_backup.service", BACKUP_UNIT)]);
    let backups = host.shared_dir().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    // The last backup is three days old: BackupTooOld's condition.
    let old = "owui-data__20261119T030000Z.tar.gz";
    let made = std::process::Command::new("tar")
        .arg("-czf")
        .arg(backups.join(old))
        .args(["-C", "/etc", "hostname"])
        .status()
        .unwrap();
    assert!(made.success());

    let mut exporter = Exporter::start(&format!(
        "probes:\n- name: ai-stack-backups\n  interval: 1s\n  timeout: 900ms\n  backup:\n    folders:\n    - path: '{}'\n      name: volumes\n      expected_volumes: [owui-data]\n",
        backups.display()
    ));
    let labels = [("probe", "ai-stack-backups"), ("volume", "owui-data")];
    let scrape = exporter.wait_runs("ai-stack-backups", 1);
    let before = metrics::find(
        &scrape,
        "stackmedic_backup_newest_timestamp_seconds",
        &labels,
    )
    .unwrap();
    let old_ts = 1_795_057_200.0; // 2026-11-19T03:00:00Z
    assert!((before - old_ts).abs() < 1.0, "{before}");

    let config = format!(
        "targets:\n\
         - name: backup-timers\n  max_attempts: 1\n  timeout: 60s\n  verify: {{deadline: 20s, interval: 200ms, stable_for: 0s}}\n  \
           systemd: {{bus_address: '{}', units: [ai_stack_backup.service]}}\n\
         rules:\n\
         - name: backup-now\n  matchers: ['alertname=\"BackupTooOld\"', 'volume=~\"owui-data|tm-data\"']\n  action: systemd_start\n  target: backup-timers\n",
        host.bus_address()
    );
    let mut rem = Remediator::start(&config);
    let asked = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    rem.fire(
        &[
            ("alertname", "BackupTooOld"),
            ("volume", "owui-data"),
            ("folder", "volumes"),
            ("severity", "ticket"),
        ],
        "2026-11-22T10:00:00Z",
    );
    let ok = rem.wait_for("succeeded", 1, Duration::from_secs(60));
    let d = detail(&ok[0]);
    assert_eq!(
        ok[0]["subject"],
        format!("unit:ai_stack_backup.service@{}", host.bus_address())
    );
    assert!(d.contains("start job") && d.contains("done"), "{d}");
    assert!(d.contains("now inactive (dead), result success"), "{d}");
    assert!(d.contains("verified unit ai_stack_backup.service"), "{d}");
    assert_eq!(
        host.property("ai_stack_backup.service", "Result"),
        "success"
    );

    // The new archive is in the host folder, and the backup probe's next run sees it.
    let names: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let scrape = exporter.wait_for("the new archive", Duration::from_secs(20), |s| {
        metrics::find(s, "stackmedic_backup_newest_timestamp_seconds", &labels)
            .is_some_and(|t| t >= asked - 1.0)
    });
    assert_eq!(
        metrics::find(&scrape, "stackmedic_backup_count", &labels),
        Some(2.0)
    );
}

#[test]
fn remediator_systemd_failures_are_failed_attempts_that_say_why() {
    let host = SystemdContainer::start(&[
        ("sm-broken.service", BROKEN_UNIT),
        ("sm-flaky.service", FLAKY_UNIT),
    ]);
    let config = format!(
        "targets:\n\
         - name: host\n  max_attempts: 1\n  timeout: 30s\n  verify: {{deadline: 10s, interval: 100ms, stable_for: 3s}}\n  \
           systemd: {{bus_address: '{bus}', units: [sm-broken.service, sm-flaky.service]}}\n\
         - name: nobody\n  max_attempts: 1\n  timeout: 10s\n  systemd: {{bus_address: 'unix:path={dir}/no-such-socket', units: [x.service]}}\n\
         rules:\n\
         - name: start-unit\n  matchers: ['alertname=\"UnitDown\"']\n  action: systemd_start\n  target: host\n  unit_label: unit\n\
         - name: start-nowhere\n  matchers: ['alertname=\"NoBus\"']\n  action: systemd_start\n  target: nobody\n",
        bus = host.bus_address(),
        dir = host.shared_dir().display()
    );
    let mut rem = Remediator::start(&config);
    rem.fire(
        &[("alertname", "UnitDown"), ("unit", "sm-broken.service")],
        "2026-11-22T10:00:00Z",
    );
    rem.fire(
        &[("alertname", "UnitDown"), ("unit", "sm-flaky.service")],
        "2026-11-22T10:00:01Z",
    );
    rem.fire(&[("alertname", "NoBus")], "2026-11-22T10:00:02Z");
    rem.wait_for("failed", 2, Duration::from_secs(60));
    let failed = rows(&rem, "failed", "start-unit");
    let broken = failed
        .iter()
        .map(detail)
        .find(|d| d.contains("sm-broken.service"))
        .unwrap_or_else(|| panic!("{failed:?}"));
    assert!(broken.contains("ended with result \"failed\""), "{broken}");
    assert!(broken.contains("result exit-code"), "{broken}");
    let flaky = failed
        .iter()
        .map(detail)
        .find(|d| d.contains("sm-flaky.service"))
        .unwrap_or_else(|| panic!("{failed:?}"));
    assert!(flaky.contains("start job"), "{flaky}");
    assert!(
        flaky.contains(
            "verification failed: unit sm-flaky.service is failed (failed), result exit-code"
        ),
        "{flaky}"
    );
    assert!(flaky.contains("after it was good"), "{flaky}");
    // A bus that cannot be reached: the unit cannot be made canonical, so the job waits and is
    // tried again, shown with why; it never acts on the label's name alone.
    let waiting = wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
        rem.history()["pending_jobs"]
            .as_array()
            .is_some_and(|jobs| {
                jobs.iter().any(|j| {
                    j["rule"] == "start-nowhere"
                        && j["note"]
                            .as_str()
                            .is_some_and(|n| n.contains("cannot connect to the bus"))
                })
            })
    });
    assert!(waiting, "{:#}", rem.history());
    assert!(rem.metric("stackmedic_remediator_subject_postponed_total", &[]) >= 1.0);
    // One attempt each: both incidents are escalated.
    rem.wait_for("escalated", 2, Duration::from_secs(20));
    assert!(
        host.journal("sm-broken.service")
            .contains("sm-broken.service"),
        "the unit never ran"
    );
}
