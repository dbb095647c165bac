//! Backup age probe against real archives made by `tar czf`: per-volume newest/oldest/count and
//! sizes, a truncated newest archive found by verification (and its repair noticed), a
//! world-readable folder, a missing folder, an empty one with an expected volume, a name
//! without a timestamp (the modification time counts) and `max_age`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stackmedic_tests::exporter::{value, Exporter, WAIT};
use stackmedic_tests::metrics::{find, Sample};
use stackmedic_tests::pseudo_random_bytes;

const NEWEST: &str = "stackmedic_backup_newest_timestamp_seconds";
const OLDEST: &str = "stackmedic_backup_oldest_timestamp_seconds";
const COUNT: &str = "stackmedic_backup_count";
const VALID: &str = "stackmedic_backup_newest_valid";
const SIZE: &str = "stackmedic_backup_newest_size_bytes";
const REASON: &str = "stackmedic_probe_failure_reason";
const SUCCESS: &str = "stackmedic_probe_success";

/// 2026-11-22T03:00:00Z.
const T: f64 = 1_795_316_400.0;
const DAY: f64 = 86_400.0;

/// A real archive: `tar czf <archive> -C <src> .` over a folder with incompressible data.
fn tar_czf(archive: &Path, start: u64) {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(
        src.path().join("webui.db"),
        pseudo_random_bytes(300_000, start),
    )
    .unwrap();
    std::fs::create_dir(src.path().join("uploads")).unwrap();
    std::fs::write(src.path().join("uploads/a.txt"), b"hello\n").unwrap();
    let tar = stackmedic_tests::require_program(&["/usr/bin/tar", "/bin/tar"], "tar");
    let out = Command::new(tar)
        .arg("czf")
        .arg(archive)
        .arg("-C")
        .arg(src.path())
        .arg(".")
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar czf failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    backdate(archive);
}

/// Archives modified in the last 10 s are taken as still being written and not verified, so
/// the test's archives are made "a minute ago".
fn backdate(path: &Path) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(60)))
        .unwrap();
}

fn truncate_half(path: &Path) {
    let data = std::fs::read(path).unwrap();
    std::fs::write(path, &data[..data.len() / 2]).unwrap();
    backdate(path);
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn folder(dir: &Path, name: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir(&p).unwrap();
    chmod(&p, mode);
    p
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn probe(name: &str, body: &str) -> String {
    let body: String = body.lines().map(|l| format!("      {l}\n")).collect();
    format!("  - name: {name}\n    interval: 1s\n    timeout: 1s\n    backup:\n{body}")
}

fn ran(e: &mut Exporter, probe: &str) -> Vec<Sample> {
    e.wait_for(&format!("a run of {probe}"), WAIT, |s| {
        find(s, SUCCESS, &[("probe", probe)]).is_some()
    })
}

#[test]
fn volumes_verification_and_folder_states() {
    let dir = tempfile::tempdir().unwrap();
    let backups = folder(dir.path(), "backups", 0o700);
    tar_czf(&backups.join("owui-data__20261120T030000Z.tar.gz"), 1);
    tar_czf(&backups.join("owui-data__20261122T030000Z.tar.gz"), 2);
    tar_czf(&backups.join("tm-data__2026-11-22T03-00-00.tar.gz"), 3);
    tar_czf(&backups.join("context6-data__20261121-030000.tar.gz"), 4);
    let truncated = backups.join("context6-data__1795316400.tar.gz");
    tar_czf(&truncated, 5);
    truncate_half(&truncated);
    tar_czf(&backups.join("qdrant-data__yesterday.tar.gz"), 6);
    std::fs::write(backups.join("README.txt"), b"not a backup").unwrap();

    // The output-root backups: world-readable folder, names without a timestamp.
    let paths = folder(dir.path(), "paths", 0o755);
    let output = paths.join("output.tar.gz");
    tar_czf(&output, 7);
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(T as u64 - 3600);
    std::fs::File::options()
        .write(true)
        .open(&output)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let empty = folder(dir.path(), "empty", 0o700);
    let missing = dir.path().join("missing");

    let main = format!(
        "folders:\n  - path: {}\n    expected_volumes: [owui-data, tm-data, context6-data]\nverify_newest: true\nverify_timeout: 4s",
        backups.display()
    );
    let paths_cfg = format!(
        "folders:\n  - path: {}\n    pattern: '^output\\.tar\\.gz$'\n    volume: transcript-miner-output\nverify_newest: true",
        paths.display()
    );
    let empty_cfg = format!(
        "folders:\n  - path: {}\n    expected_volumes: [qdrant-data]",
        empty.display()
    );
    let missing_cfg = format!("folders:\n  - path: {}", missing.display());
    let config = format!(
        "probes:\n{}{}{}{}",
        probe("main", &main),
        probe("paths", &paths_cfg),
        probe("empty", &empty_cfg),
        probe("missing", &missing_cfg)
    );
    let mut e = Exporter::start(&config);

    let b = backups.display().to_string();
    let p = ("probe", "main");
    let s = ran(&mut e, "main");
    let v = |vol: &'static str| [p, ("folder", b.as_str()), ("volume", vol)];
    assert_eq!(value(&s, "stackmedic_backup_folder_exists", &[p]), 1.0);
    assert_eq!(
        value(&s, "stackmedic_backup_folder_accessible_by_others", &[p]),
        0.0
    );
    assert_eq!(value(&s, COUNT, &v("owui-data")), 2.0);
    assert_eq!(value(&s, NEWEST, &v("owui-data")), T);
    assert_eq!(value(&s, OLDEST, &v("owui-data")), T - 2.0 * DAY);
    let owui_size = std::fs::metadata(backups.join("owui-data__20261122T030000Z.tar.gz"))
        .unwrap()
        .len();
    assert_eq!(value(&s, SIZE, &v("owui-data")), owui_size as f64);
    assert_eq!(value(&s, NEWEST, &v("tm-data")), T);
    assert_eq!(value(&s, COUNT, &v("context6-data")), 2.0);
    assert_eq!(value(&s, NEWEST, &v("context6-data")), T);
    assert_eq!(value(&s, OLDEST, &v("context6-data")), T - DAY);
    assert_eq!(value(&s, VALID, &v("owui-data")), 1.0);
    assert_eq!(value(&s, VALID, &v("tm-data")), 1.0);
    assert_eq!(value(&s, VALID, &v("context6-data")), 0.0, "truncated");
    let files = |r: &'static str| [p, ("folder", b.as_str()), ("result", r)];
    assert_eq!(value(&s, "stackmedic_backup_files", &files("matched")), 5.0);
    assert_eq!(
        value(&s, "stackmedic_backup_files", &files("unmatched")),
        1.0
    );
    assert_eq!(
        value(&s, "stackmedic_backup_files", &files("bad_timestamp")),
        1.0
    );
    assert_eq!(value(&s, "stackmedic_backup_volumes", &[p]), 3.0);
    assert_eq!(value(&s, SUCCESS, &[p]), 0.0);
    assert_eq!(value(&s, REASON, &[p, ("reason", "parse")]), 1.0);

    // The output-root folder: world-readable, time from the modification time.
    let p2 = ("probe", "paths");
    let s = ran(&mut e, "paths");
    let vol = [p2, ("volume", "transcript-miner-output")];
    assert_eq!(
        value(&s, "stackmedic_backup_folder_accessible_by_others", &[p2]),
        1.0
    );
    assert_eq!(value(&s, NEWEST, &vol), T - 3600.0);
    assert_eq!(value(&s, VALID, &vol), 1.0);
    assert_eq!(value(&s, SUCCESS, &[p2]), 1.0);

    // An empty folder with an expected volume: count 0 and not_found.
    let p3 = ("probe", "empty");
    let s = ran(&mut e, "empty");
    assert_eq!(value(&s, "stackmedic_backup_folder_exists", &[p3]), 1.0);
    assert_eq!(value(&s, COUNT, &[p3, ("volume", "qdrant-data")]), 0.0);
    assert_eq!(find(&s, NEWEST, &[p3]), None);
    assert_eq!(value(&s, REASON, &[p3, ("reason", "not_found")]), 1.0);

    // A missing folder.
    let p4 = ("probe", "missing");
    let s = ran(&mut e, "missing");
    assert_eq!(value(&s, "stackmedic_backup_folder_exists", &[p4]), 0.0);
    assert_eq!(value(&s, REASON, &[p4, ("reason", "not_found")]), 1.0);

    // Repairing the truncated archive in place is noticed (the cached result is for the old
    // file), and the probe passes once the folder is created too.
    tar_czf(&truncated, 5);
    e.wait_value(VALID, &v("context6-data"), 1.0);
    e.wait_value(SUCCESS, &[p], 1.0);
    std::fs::create_dir(&missing).unwrap();
    e.wait_value(SUCCESS, &[p4], 1.0);
}

#[test]
fn max_age_and_world_readable_permission_change() {
    let dir = tempfile::tempdir().unwrap();
    let backups = folder(dir.path(), "backups", 0o700);
    let two_hours_ago = (now() - 7200.0) as u64;
    tar_czf(
        &backups.join(format!("qdrant-data__{two_hours_ago}.tar.gz")),
        9,
    );
    let cfg = |max_age: &str| {
        format!(
            "folders:\n  - path: {}\n    max_age: {max_age}",
            backups.display()
        )
    };
    let config = format!(
        "probes:\n{}{}",
        probe("fresh", &cfg("26h")),
        probe("strict", &cfg("1h"))
    );
    let mut e = Exporter::start(&config);
    let s = ran(&mut e, "strict");
    let s = if find(&s, SUCCESS, &[("probe", "fresh")]).is_none() {
        ran(&mut e, "fresh")
    } else {
        s
    };
    assert_eq!(value(&s, SUCCESS, &[("probe", "fresh")]), 1.0);
    assert_eq!(value(&s, SUCCESS, &[("probe", "strict")]), 0.0);
    assert_eq!(
        value(&s, REASON, &[("probe", "strict"), ("reason", "stale")]),
        1.0
    );
    assert_eq!(
        value(&s, NEWEST, &[("probe", "fresh"), ("volume", "qdrant-data")]),
        two_hours_ago as f64
    );
    // `chmod o+r` on the folder shows up on the next run.
    chmod(&backups, 0o704);
    e.wait_value(
        "stackmedic_backup_folder_accessible_by_others",
        &[("probe", "fresh")],
        1.0,
    );
}

#[test]
fn example_loads() {
    let path: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/exporter.d/backups.yml");
    let config = stackmedic_exporter::config::load(Some(&path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(config.probes.iter().any(|p| p.kind.name() == "backup"));
    for volume in ["owui-data", "tm-data", "context6-data", "qdrant-data"] {
        assert!(text.contains(volume), "{volume} missing from the example");
    }
}
