//! The store as a fault domain, against the real binary:
//!
//! * a full disk (a real, small tmpfs filled to the last byte) while acknowledged alerts are
//!   being decided: `/-/ready` says why it is not ready, webhooks get 503, and once space is
//!   returned every acknowledged alert is acted on exactly once and no incident is left stuck
//!   — without a restart (the admin API is the test library's recorder, standing in for the
//!   camera/PLC app, which has no real peer);
//! * a store on a read-only filesystem, and a store whose data page was overwritten, are refused
//!   at start with a clear message and a non-zero exit.

use std::io::Write as _;
use std::process::Command;
use std::time::Duration;

use stackmedic_tests::admin_api::AdminApi;
use stackmedic_tests::remediator::{alert, payload, Flags, Remediator};
use stackmedic_tests::tmpfs::Tmpfs;
use stackmedic_tests::{bin_path, wait_until};

const STREAMS: usize = 40;

fn streams() -> Vec<String> {
    (0..STREAMS).map(|i| format!("cam-{i:02}")).collect()
}

/// Fills the filesystem at `dir` to its last byte; returns the filler's path.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 * 1024];
    loop {
        if f.write_all(&block).is_err() {
            break;
        }
    }
    // The last partial block, byte by byte, so nothing is left.
    for _ in 0..64 * 1024 {
        if f.write_all(&[0]).is_err() {
            break;
        }
    }
    let _ = f.flush();
    path
}

#[test]
fn a_full_disk_while_deciding_loses_no_acknowledged_alert_and_recovers_by_itself() {
    let fs = Tmpfs::mount("16m", 1000);
    let api = AdminApi::start(&[]);
    let list = streams()
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let config = format!(
        "global: {{reconcile_interval: 0s}}\n\
         targets:\n- name: camera-app\n  blast_radius: {{enabled: false}}\n  http: {{base_url: '{}'}}\n\
         rules:\n- name: stream-restart\n  matchers: ['alertname=\"HlsPlaylistStale\"']\n  action: http_sequence\n  target: camera-app\n  delay: 3s\n  \
           params: {{stream: {{label: stream, allowed: [{list}]}}}}\n  steps: [{{path: '/api/streams/{{stream}}/restart'}}]\n",
        api.url("/")
    );
    let dir = tempfile::Builder::new()
        .prefix("stackmedic-remediator-")
        .tempdir()
        .unwrap();
    let rem = Remediator::start_with(
        dir,
        &config,
        Flags {
            storage: Some(fs.path().join("data")),
            ..Flags::default()
        },
    );
    // Every alert acknowledged (200) while there is room; each waits 3 s before it is decided.
    // (40 streams failing at once would be held by the blast-radius guard, which is off here:
    // this test is about the store.)
    for s in streams() {
        let p = payload(vec![alert(
            "firing",
            &[("alertname", "HlsPlaylistStale"), ("stream", &s)],
            "2026-11-22T10:00:00Z",
        )]);
        let r = rem.webhook(&p, None).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // The disk fills before they are decided, and stays full for 7 s.
    let filler = fill(fs.path());
    let not_ready = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        stackmedic_tests::http::get(&rem.url("/-/ready")).is_ok_and(|r| r.status == 503)
    });
    assert!(not_ready, "the store cannot write, yet /-/ready said ready");
    let ready = stackmedic_tests::http::get(&rem.url("/-/ready"))
        .unwrap()
        .text();
    assert!(ready.contains("the store cannot write"), "{ready}");
    // A new webhook meanwhile is not acknowledged: Alertmanager will retry it.
    let late = payload(vec![alert(
        "firing",
        &[("alertname", "HlsPlaylistStale"), ("stream", "cam-00")],
        "2026-11-22T11:00:00Z",
    )]);
    assert_eq!(rem.webhook(&late, None).unwrap().status, 503);
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(
        api.calls().len(),
        0,
        "acted while nothing could be recorded"
    );
    std::fs::remove_file(&filler).unwrap();
    let freed = std::time::Instant::now();
    // Space is back: every acknowledged alert is acted on once, without a restart.
    let done = wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        streams()
            .iter()
            .all(|s| api.count(&format!("/api/streams/{s}/restart")) >= 1)
    });
    assert!(
        done,
        "not every acknowledged alert was acted on: {} calls; {:#}",
        api.calls().len(),
        rem.history()
    );
    // A figure for docs/security.md, not an assertion.
    eprintln!(
        "store faults: {STREAMS} acknowledged alerts acted on {:.1} s after space was returned",
        freed.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(2));
    for s in streams() {
        assert_eq!(
            api.count(&format!("/api/streams/{s}/restart")),
            1,
            "stream {s} acted on more than once"
        );
    }
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || { stackmedic_tests::http::get(&rem.url("/-/ready")).is_ok_and(|r| r.status == 200) }
    ));
    let history = rem.history();
    let stuck: Vec<_> = history["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] != "healed")
        .collect();
    assert!(stuck.is_empty(), "incidents stuck: {stuck:#?}");
    assert!(
        history["pending_jobs"].as_array().unwrap().is_empty(),
        "{history:#}"
    );
    assert!(rem.metric("stackmedic_remediator_store_errors_total", &[]) >= 1.0);
    assert_eq!(rem.metric("stackmedic_remediator_store_writable", &[]), 1.0);
    // The webhook Alertmanager retries is accepted now.
    assert_eq!(rem.webhook(&late, None).unwrap().status, 200);
    drop(rem);
}

/// Runs the remediator on `storage` until it exits (it must, refusing the store; one that
/// still runs after 30 s is stopped and the test fails).
fn refused(storage: &std::path::Path) -> String {
    let mut child = Command::new(bin_path("stackmedic-remediator"))
        .arg(format!("--storage.path={}", storage.display()))
        .arg(format!(
            "--web.listen-address=127.0.0.1:{}",
            stackmedic_tests::free_port()
        ))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(exited, "it started on a broken store and kept running");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "it started on a broken store: {text}"
    );
    text
}

/// Makes a store with some history, by running the remediator once.
fn make_store(storage: &std::path::Path) {
    let dir = tempfile::Builder::new()
        .prefix("stackmedic-remediator-")
        .tempdir()
        .unwrap();
    let rem = Remediator::start_with(
        dir,
        "rules: []\n",
        Flags {
            storage: Some(storage.to_owned()),
            ..Flags::default()
        },
    );
    drop(rem);
    // Everything into the database file itself, so its pages can be overwritten.
    let db =
        rusqlite::Connection::open(storage.join(stackmedic_remediator::DATABASE_FILE)).unwrap();
    db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
}

#[test]
fn a_read_only_or_corrupt_store_is_refused_at_start() {
    // Read-only: a filesystem remounted read-only (root can write any file mode, not there).
    let fs = Tmpfs::mount("8m", 100);
    let storage = fs.path().join("data");
    make_store(&storage);
    let out = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(fs.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = refused(&storage);
    assert!(
        text.contains("cannot write") || text.contains("readonly") || text.contains("read-only"),
        "{text}"
    );
    let _ = Command::new("mount")
        .args(["-o", "remount,rw"])
        .arg(fs.path())
        .output();

    // Corrupt: a data page overwritten.
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data");
    make_store(&storage);
    let db = storage.join(stackmedic_remediator::DATABASE_FILE);
    let len = std::fs::metadata(&db).unwrap().len();
    assert!(len >= 3 * 4096, "the store has data pages: {len} bytes");
    let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(2 * 4096)).unwrap();
    f.write_all(&stackmedic_tests::pseudo_random_bytes(4096, 7))
        .unwrap();
    f.sync_all().unwrap();
    drop(f);
    let text = refused(&storage);
    assert!(
        text.contains("corrupt") || text.contains("malformed"),
        "{text}"
    );
}
