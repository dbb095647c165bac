//! `cleanup` on a real filesystem of fixed size: a tmpfs mounted with `size=` (as root) is
//! filled with the camera/PLC app's stream artefacts and old backups, the cleanup targets and
//! rules of `examples/remediator-host.yml` run on it (only the folders changed), and the filesystem
//! alert fires. The test checks what is removed (the oldest, never the newest of a group, never
//! young files), what is never touched (a link's target outside the folder, a folder matching
//! the pattern, a subfolder that is a link), that the space is free afterwards, that a dry run
//! lists what it would remove and removes nothing, and that the audit names every removed file.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use stackmedic_tests::remediator::Remediator;
use stackmedic_tests::tmpfs::Tmpfs;

/// Bytes available on the filesystem holding `path`, as `df` shows them.
fn available(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("df: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Writes `size` bytes to `dir/name`, last modified `age` ago.
fn file(dir: &Path, name: &str, size: usize, age: Duration) -> PathBuf {
    let p = dir.join(name);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, vec![7u8; size]).unwrap();
    File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
    p
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
const MIB: usize = 1024 * 1024;

/// The cleanup targets and rules of `examples/remediator-host.yml`, unchanged but for the folders.
fn shipped_config(hls: &Path, backups: &Path) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/remediator-host.yml"
    );
    let text = fs::read_to_string(path).unwrap();
    for folder in ["/srv/camapp/hls", "/srv/ai-stack/backups"] {
        assert!(
            text.contains(folder),
            "the example no longer names {folder}"
        );
    }
    let text = text
        .replace("/srv/camapp/hls", &hls.display().to_string())
        .replace("/srv/ai-stack/backups", &backups.display().to_string());
    let example: Value = serde_saphyr::from_str(&text).unwrap();
    let targets: Vec<Value> = example["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t.get("cleanup").is_some())
        .cloned()
        .collect();
    let rules: Vec<Value> = example["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "cleanup")
        .cloned()
        .collect();
    assert_eq!((targets.len(), rules.len()), (2, 2), "{rules:?}");
    // JSON is YAML.
    json!({"targets": targets, "rules": rules}).to_string()
}

#[test]
fn remediator_cleanup_frees_a_full_filesystem_within_its_limits() {
    let fs_ = Tmpfs::mount("20m", 1000);
    let outside = tempfile::tempdir().unwrap();
    let hls = fs_.path().join("hls");
    let backups = fs_.path().join("backups");
    // Stream artefacts: two streams, old and fresh segments.
    for stream in ["entrance", "yard"] {
        for i in 0..6 {
            file(
                &hls,
                &format!("{stream}/seg-{i:04}.ts"),
                MIB,
                DAY * 2 - HOUR * i,
            );
        }
        file(
            &hls,
            &format!("{stream}/seg-9999.ts"),
            100_000,
            Duration::ZERO,
        );
        file(&hls, &format!("{stream}/index.m3u8"), 100, DAY * 3);
    }
    // Hostile entries: a link to a matching file outside, a folder named like a segment, a
    // link to a folder outside.
    let victim = file(outside.path(), "victim.ts", 10, DAY * 9);
    std::os::unix::fs::symlink(&victim, hls.join("entrance/seg-0100.ts")).unwrap();
    fs::create_dir_all(hls.join("yard/seg-0200.ts")).unwrap();
    file(outside.path(), "deep/seg-0001.ts", 10, DAY * 9);
    std::os::unix::fs::symlink(outside.path().join("deep"), hls.join("linked")).unwrap();
    // Backups: four archives of one volume, 12 to 16 days old (retention keeps 14 days).
    for (day, age) in [(21u32, 12u64), (20, 13), (19, 15), (18, 16)] {
        file(
            &backups,
            &format!("owui-data__202611{day:02}T030000Z.tar.gz"),
            MIB,
            DAY * age as u32,
        );
    }
    let before = available(fs_.path());
    assert!(
        before < 5 * MIB as u64,
        "the filesystem is not full: {before}"
    );
    let labels = [
        ("alertname", "FilesystemCleanupDue"),
        ("probe", "media-disk"),
        ("remediation", "cleanup"),
    ];

    // A dry run lists what it would remove and removes nothing.
    let config = shipped_config(&hls, &backups);
    let mut dry: Value = serde_json::from_str(&config).unwrap();
    dry["global"] = json!({"dry_run": true});
    let mut rem = Remediator::start(&dry.to_string());
    rem.fire(&labels, "2026-11-22T09:00:00Z");
    let dry = rem.wait_for("dry_run", 2, Duration::from_secs(30));
    let d = dry
        .iter()
        .find(|r| r["rule"] == "hls-artefacts-cleanup")
        .unwrap_or_else(|| panic!("{dry:?}"))["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(d.contains("would remove 8 files (8388608 bytes)"), "{d}");
    assert!(d.contains("entrance/seg-0000.ts (1048576 B, "), "{d}");
    assert_eq!(fs::read_dir(hls.join("entrance")).unwrap().count(), 9);
    assert_eq!(available(fs_.path()), before);

    let reload = rem.reconfigure(&config);
    assert_eq!(reload.status, 200, "{}", reload.text());
    rem.fire(&labels, "2026-11-22T10:00:00Z");
    let ok = rem.wait_for("succeeded", 2, Duration::from_secs(60));
    let streams = ok
        .iter()
        .find(|r| r["rule"] == "hls-artefacts-cleanup")
        .unwrap_or_else(|| panic!("{ok:?}"));
    let d = streams["detail"].as_str().unwrap();
    assert!(d.contains(": removed 8 files (8388608 bytes)"), "{d}");
    // The audit names every removed file: the four oldest segments of each stream.
    for stream in ["entrance", "yard"] {
        for i in 0..4 {
            let name = format!("{stream}/seg-{i:04}.ts (1048576 B, ");
            assert!(d.contains(&name), "{name} not in {d}");
            assert!(!hls.join(format!("{stream}/seg-{i:04}.ts")).exists());
        }
        // The newest two old ones are within keep_newest (3, with the fresh one).
        for i in 4..6 {
            assert!(hls.join(format!("{stream}/seg-{i:04}.ts")).exists());
        }
        assert!(hls.join(format!("{stream}/seg-9999.ts")).exists());
        assert!(hls.join(format!("{stream}/index.m3u8")).exists());
    }
    assert!(
        victim.exists(),
        "a link's target outside the folder was removed"
    );
    assert!(outside.path().join("deep/seg-0001.ts").exists());
    assert!(hls.join("entrance/seg-0100.ts").symlink_metadata().is_ok());
    assert!(hls.join("yard/seg-0200.ts").is_dir());

    let backups_row = ok
        .iter()
        .find(|r| r["rule"] == "old-backups-cleanup")
        .unwrap_or_else(|| panic!("{ok:?}"));
    let d = backups_row["detail"].as_str().unwrap();
    assert!(d.contains(": removed 1 files"), "{d}");
    assert!(d.contains("owui-data__20261118T030000Z.tar.gz"), "{d}");
    for day in [19, 20, 21] {
        assert!(backups
            .join(format!("owui-data__202611{day}T030000Z.tar.gz"))
            .exists());
    }

    let after = available(fs_.path());
    assert!(
        after >= before + 9 * MIB as u64,
        "available {before} -> {after}"
    );
}
