//! The access-log probe against real web servers writing real logs: nginx (a `log_format` with
//! the `X-Status-Path` response header and `$time_local` or `$time_iso8601`), Caddy's JSON
//! access log, and the real `logrotate` (Debian package `logrotate`) in its `create`,
//! `compress`, `delaycompress` and `copytruncate` modes. Each case counts exactly: a file that
//! is truncated and grows past the old position before the next run, a rename while a backlog
//! larger than `max_read_bytes` is still unread, a log that appears only after the exporter
//! started, and hit times taken from the lines rather than from when they were read.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stackmedic_tests::caddy::Caddy;
use stackmedic_tests::exporter::{runs, value, Exporter, WAIT};
use stackmedic_tests::http;
use stackmedic_tests::metrics::{find, Sample};
use stackmedic_tests::nginx::Nginx;

const HITS: &str = "stackmedic_status_path_hits_total";
const LAST_HIT: &str = "stackmedic_status_path_last_hit_timestamp_seconds";
const ROTATIONS: &str = "stackmedic_access_log_rotations_total";
const CURL_UA: &str = "curl/8.5.0";

const LOCAL_FORMAT: &str = r#"log_format xsp '$remote_addr - [$time_local] "$request" $status "$http_user_agent" xsp="$sent_http_x_status_path"';"#;
const ISO_FORMAT: &str = r#"log_format xsp_iso '$time_iso8601 $remote_addr "$request" $status "$http_user_agent" xsp="$sent_http_x_status_path"';"#;

fn locations(log: &str) -> String {
    format!(
        r#"
        access_log {log} xsp;
        location = /status/summary {{
            add_header X-Status-Path legacy always;
            return 200 'legacy';
        }}
        location = /api/status/summary {{
            add_header X-Status-Path api always;
            return 200 'api';
        }}
"#
    )
}

fn get(url: &str) {
    let r = http::request("GET", url, &[("User-Agent", CURL_UA)], None)
        .unwrap_or_else(|e| panic!("GET {url}: {e:#}"));
    assert_eq!(r.status, 200, "GET {url}");
}

fn legacy(nginx: &Nginx, n: usize) {
    for _ in 0..n {
        get(&nginx.url("/status/summary"));
    }
}

fn api(nginx: &Nginx, n: usize) {
    for _ in 0..n {
        get(&nginx.url("/api/status/summary"));
    }
}

fn counts(s: &[Sample], probe: &str) -> [u64; 4] {
    ["api", "legacy", "other", "missing"]
        .map(|c| find(s, HITS, &[("probe", probe), ("value", c)]).unwrap_or(-1.0) as u64)
}

fn rotations(s: &[Sample], probe: &str, kind: &str) -> f64 {
    value(s, ROTATIONS, &[("probe", probe), ("kind", kind)])
}

fn probe(name: &str, log: &Path, interval: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    interval: {interval}\n    access_log:\n      path: {}\n{extra}",
        log.display()
    )
}

/// Waits for `counts == want`, then for two more runs, and checks they stay so.
fn settle(e: &mut Exporter, probe: &str, want: [u64; 4]) -> Vec<Sample> {
    let s = e.wait_for(&format!("{probe} counts {want:?}"), WAIT, |s| {
        counts(s, probe) == want
    });
    let r = runs(&s, probe);
    let s = e.wait_runs(probe, r + 2);
    assert_eq!(counts(&s, probe), want, "{probe}: counts moved on");
    s
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

fn truncate(path: &Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(0))
        .unwrap_or_else(|e| panic!("truncate {}: {e}", path.display()));
}

#[test]
fn copytruncate_with_regrowth_before_the_next_run_counts_every_hit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("access.log");
    let nginx = Nginx::start_with_http(&locations(&log.display().to_string()), LOCAL_FORMAT);
    let mut e = Exporter::start(&format!("probes:\n{}", probe("log", &log, "1500ms", "")));
    e.wait_runs("log", 1);
    legacy(&nginx, 10);
    settle(&mut e, "log", [0, 10, 0, 0]);
    // Right after a run: copy, truncate, and more than the old size of new lines, all well
    // within the interval, so the next run finds the file longer than where it stopped.
    let r = runs(&e.scrape(), "log");
    e.wait_runs("log", r + 1);
    let old_len = std::fs::metadata(&log).expect("stat").len();
    std::fs::copy(&log, dir.path().join("access.log.1")).expect("copy");
    truncate(&log);
    legacy(&nginx, 40);
    assert!(std::fs::metadata(&log).expect("stat").len() > old_len);
    let s = settle(&mut e, "log", [0, 50, 0, 0]);
    assert_eq!(rotations(&s, "log", "truncate"), 1.0);
    assert_eq!(rotations(&s, "log", "rename"), 0.0);
}

#[test]
fn a_rename_with_a_backlog_beyond_the_read_budget_finishes_the_old_file() {
    let mut nginx = Nginx::start_with_http(&locations("{dir}/access.log"), LOCAL_FORMAT);
    let log = nginx.dir().join("access.log");
    let mut e = Exporter::start(&format!(
        "probes:\n{}",
        probe("log", &log, "300ms", "      max_read_bytes: 1500\n")
    ));
    e.wait_runs("log", 1);
    // 60 lines of about 100 bytes: four runs' worth, renamed away long before they are read.
    legacy(&nginx, 60);
    std::fs::rename(&log, nginx.dir().join("access.log.1")).expect("mv");
    nginx.reopen();
    api(&nginx, 5);
    // The budget makes the reader fall behind for a few runs.
    e.wait_value("stackmedic_access_log_behind", &[("probe", "log")], 1.0);
    let s = settle(&mut e, "log", [5, 60, 0, 0]);
    assert_eq!(rotations(&s, "log", "rename"), 1.0);
    assert_eq!(
        value(
            &s,
            "stackmedic_access_log_lines_total",
            &[("probe", "log"), ("result", "unmatched")]
        ),
        0.0,
        "a line cut by the budget was counted as a line"
    );
    assert_eq!(
        value(&s, "stackmedic_access_log_behind", &[("probe", "log")]),
        0.0
    );
}

#[test]
fn a_log_that_appears_after_start_is_read_from_its_beginning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("late.log");
    // The default start_at is `end`: it must apply only to a file present at the first run.
    let mut e = Exporter::start(&format!("probes:\n{}", probe("late", &log, "2s", "")));
    let s = e.wait_runs("late", 1);
    assert_eq!(
        value(
            &s,
            "stackmedic_probe_failure_reason",
            &[("probe", "late"), ("reason", "not_found")]
        ),
        1.0
    );
    // nginx creates the log when it starts; the hits land before the exporter's next run.
    let nginx = Nginx::start_with_http(&locations(&log.display().to_string()), LOCAL_FORMAT);
    legacy(&nginx, 3);
    api(&nginx, 1);
    let s = settle(&mut e, "late", [1, 3, 0, 0]);
    assert_eq!(
        value(&s, "stackmedic_probe_success", &[("probe", "late")]),
        1.0
    );
}

#[test]
fn hit_times_come_from_the_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("local.log");
    let iso = dir.path().join("iso.log");
    let body = format!(
        "{}\n        access_log {} xsp_iso;\n",
        locations(&local.display().to_string()),
        iso.display()
    );
    let nginx = Nginx::start_with_http(&body, &format!("{LOCAL_FORMAT}\n{ISO_FORMAT}"));
    let before = unix_now();
    legacy(&nginx, 2);
    api(&nginx, 1);
    let after = unix_now();
    // Read well after the requests: a read time would be seconds later than the lines say.
    std::thread::sleep(Duration::from_millis(2500));
    let mut e = Exporter::start(&format!(
        "probes:\n{}{}",
        probe("local", &local, "300ms", "      start_at: beginning\n"),
        probe("iso", &iso, "300ms", "      start_at: beginning\n"),
    ));
    for p in ["local", "iso"] {
        let s = settle(&mut e, p, [1, 2, 0, 0]);
        for class in ["legacy", "api"] {
            let t = value(&s, LAST_HIT, &[("probe", p), ("value", class)]);
            // The logs have whole seconds.
            assert!(
                t >= before.floor() && t <= after,
                "{p} {class}: last hit {t}, requests between {before} and {after}"
            );
        }
    }
}

#[test]
fn caddy_json_access_log_is_a_first_class_format() {
    let caddy = Caddy::start(
        "\thandle /status/summary {\n\t\theader X-Status-Path legacy\n\t\trespond \"legacy\" 200\n\t}\n\
         \thandle /api/status/summary {\n\t\theader X-Status-Path api\n\t\trespond \"api\" 200\n\t}\n\
         \thandle /v3/status {\n\t\theader X-Status-Path v3\n\t\trespond \"v3\" 200\n\t}\n\
         \trespond \"plain\" 200\n",
    );
    let log = caddy.access_log();
    let mut e = Exporter::start(&format!(
        "probes:\n{}  - name: sampler\n    interval: 300ms\n    status_path:\n      url: {}\n",
        probe(
            "gateway",
            &log,
            "300ms",
            "      format: caddy\n      include: '\"uri\":\"/(api/|v3/)?status'\n"
        ),
        caddy.url("/status/summary"),
    ));
    e.wait_runs("gateway", 1);
    let before = unix_now();
    for (path, n) in [
        ("/status/summary", 3),
        ("/api/status/summary", 2),
        ("/v3/status", 1),
        ("/plain", 2),
    ] {
        for _ in 0..n {
            get(&caddy.url(path));
        }
    }
    let after = unix_now();
    let s = settle(&mut e, "gateway", [2, 3, 1, 0]);
    // The sampler's own requests are in the log, and excluded.
    let excluded = value(
        &s,
        "stackmedic_access_log_lines_total",
        &[("probe", "gateway"), ("result", "excluded")],
    );
    assert!(excluded >= 2.0, "excluded {excluded}");
    let logged = std::fs::read_to_string(&log).expect("read caddy's log");
    assert!(logged.contains("stackmedic-exporter/"), "{logged}");
    assert!(
        logged.contains("\"X-Status-Path\":[\"legacy\"]"),
        "{logged}"
    );
    // Caddy's `ts` has sub-second precision.
    let t = value(&s, LAST_HIT, &[("probe", "gateway"), ("value", "other")]);
    assert!(t >= before && t <= after, "{t} not in [{before}, {after}]");
    // /plain (no header) is outside `include`; without it, it counts as missing.
    let mut e2 = Exporter::start(&format!(
        "probes:\n{}",
        probe(
            "all",
            &log,
            "300ms",
            "      format: caddy\n      start_at: beginning\n"
        )
    ));
    let s = e2.wait_for("all lines counted", WAIT, |s| {
        counts(s, "all")[3] >= 2 && counts(s, "all")[1] >= 3
    });
    assert_eq!(counts(&s, "all")[..3], [2, 3, 1]);
}

/// Runs the real logrotate once, forced, with its state in `dir`.
fn logrotate(dir: &Path, log: &Path, directives: &str) {
    let program = stackmedic_tests::require_program(&["/usr/sbin/logrotate"], "logrotate");
    let conf = dir.join("logrotate.conf");
    std::fs::write(
        &conf,
        format!(
            "{} {{\n    rotate 5\n    missingok\n    su root root\n{directives}\n}}\n",
            log.display()
        ),
    )
    .expect("write logrotate.conf");
    let out = Command::new(program)
        .arg("--force")
        .arg("--state")
        .arg(dir.join("logrotate.state"))
        .arg(&conf)
        .output()
        .expect("run logrotate");
    assert!(
        out.status.success(),
        "logrotate failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("access.log"))
        .collect();
    v.sort();
    v
}

#[test]
fn logrotate_create_compress_delaycompress_and_copytruncate() {
    let logs = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let log: PathBuf = logs.path().join("access.log");
    let mut nginx = Nginx::start_with_http(&locations(&log.display().to_string()), LOCAL_FORMAT);
    let mut e = Exporter::start(&format!("probes:\n{}", probe("log", &log, "300ms", "")));
    e.wait_runs("log", 1);
    legacy(&nginx, 3);
    settle(&mut e, "log", [0, 3, 0, 0]);

    // create + compress + delaycompress (Debian's nginx default): renamed to .1, a new empty
    // file created; nginx writes to the old file until it is told to reopen.
    logrotate(
        state.path(),
        &log,
        "    create\n    compress\n    delaycompress",
    );
    assert_eq!(names(logs.path()), ["access.log", "access.log.1"]);
    legacy(&nginx, 2);
    nginx.reopen();
    api(&nginx, 2);
    let s = settle(&mut e, "log", [2, 5, 0, 0]);
    assert_eq!(rotations(&s, "log", "rename"), 1.0);

    // Again: the previous .1 is compressed now, this file becomes .1.
    logrotate(
        state.path(),
        &log,
        "    create\n    compress\n    delaycompress",
    );
    assert_eq!(
        names(logs.path()),
        ["access.log", "access.log.1", "access.log.2.gz"]
    );
    legacy(&nginx, 1);
    nginx.reopen();
    legacy(&nginx, 1);
    let s = settle(&mut e, "log", [2, 7, 0, 0]);
    assert_eq!(rotations(&s, "log", "rename"), 2.0);

    // compress without delaycompress: logrotate compresses and deletes the renamed file at
    // once, while nginx still writes to it; those lines are read through the open handle.
    logrotate(state.path(), &log, "    create\n    compress");
    assert!(!logs.path().join("access.log.1").exists());
    assert!(logs.path().join("access.log.1.gz").exists());
    legacy(&nginx, 2);
    nginx.reopen();
    api(&nginx, 1);
    let s = settle(&mut e, "log", [3, 9, 0, 0]);
    assert_eq!(rotations(&s, "log", "rename"), 3.0);

    // copytruncate: nginx keeps its file; it starts over at its beginning.
    logrotate(
        state.path(),
        &log,
        "    copytruncate\n    compress\n    delaycompress",
    );
    assert_eq!(std::fs::metadata(&log).expect("stat").len(), 0);
    legacy(&nginx, 4);
    let s = settle(&mut e, "log", [3, 13, 0, 0]);
    assert_eq!(rotations(&s, "log", "truncate"), 1.0);
    assert_eq!(rotations(&s, "log", "rename"), 3.0);
    assert_eq!(
        value(&s, "stackmedic_probe_success", &[("probe", "log")]),
        1.0
    );
}

const SKIPPED: &str = "stackmedic_access_log_skipped_bytes_total";
const FOUND: &str = "stackmedic_access_log_rotated_found_total";
const ROTATED_FILES: &str = "stackmedic_access_log_rotated_files";

fn skipped(s: &[Sample], probe: &str, reason: &str) -> f64 {
    value(s, SKIPPED, &[("probe", probe), ("reason", reason)])
}

/// Waits until `probe` has run `n` more times with its counts unchanged at `want`.
fn quiet_spell(e: &mut Exporter, probe: &str, n: u64, want: [u64; 4]) {
    let r = runs(&e.scrape(), probe);
    let s = e.wait_runs(probe, r + n);
    assert_eq!(
        counts(&s, probe),
        want,
        "{probe}: counts moved in a quiet spell"
    );
}

#[test]
fn caddy_with_logrotate_create_and_a_quiet_spell_loses_no_hit() {
    // Caddy never reopens its log: with logrotate's `create` it keeps writing the renamed file
    // for good, and a quiet night must not make the exporter let go of it.
    let caddy = Caddy::start(
        "\thandle /status/summary {\n\t\theader X-Status-Path legacy\n\t\trespond \"legacy\" 200\n\t}\n\
         \thandle /api/status/summary {\n\t\theader X-Status-Path api\n\t\trespond \"api\" 200\n\t}\n",
    );
    let log = caddy.access_log();
    let state = tempfile::tempdir().expect("tempdir");
    let mut e = Exporter::start(&format!(
        "probes:\n{}",
        probe("gateway", &log, "300ms", "      format: caddy\n")
    ));
    e.wait_runs("gateway", 1);
    let hit = |path: &str, n: usize| {
        for _ in 0..n {
            get(&caddy.url(path));
        }
    };
    hit("/status/summary", 3);
    settle(&mut e, "gateway", [0, 3, 0, 0]);
    logrotate(state.path(), &log, "    create");
    assert_eq!(
        names(caddy.dir()),
        ["access.log", "access.log.1"],
        "logrotate renamed the log and created a new one"
    );
    hit("/status/summary", 2);
    hit("/api/status/summary", 1);
    settle(&mut e, "gateway", [1, 5, 0, 0]);
    // A quiet spell of many runs (the exporter used to let go of a rotated file after two).
    quiet_spell(&mut e, "gateway", 8, [1, 5, 0, 0]);
    hit("/status/summary", 4);
    let s = settle(&mut e, "gateway", [1, 9, 0, 0]);
    assert_eq!(
        value(&s, ROTATED_FILES, &[("probe", "gateway")]),
        1.0,
        "Caddy's renamed log is still followed"
    );
    // The new, empty log written by nobody holds nothing; everything went to the renamed one.
    assert_eq!(std::fs::metadata(&log).expect("stat").len(), 0);
    // Rotated again: Caddy's file moves on to .2 and is still read by its handle.
    logrotate(state.path(), &log, "    create");
    hit("/api/status/summary", 2);
    quiet_spell(&mut e, "gateway", 8, [3, 9, 0, 0]);
    hit("/status/summary", 1);
    let s = settle(&mut e, "gateway", [3, 10, 0, 0]);
    assert_eq!(rotations(&s, "gateway", "rename"), 2.0);
    for reason in ["too_many_rotated", "compressed", "truncated"] {
        assert_eq!(skipped(&s, "gateway", reason), 0.0, "{reason}");
    }
    assert_eq!(
        value(&s, "stackmedic_probe_success", &[("probe", "gateway")]),
        1.0
    );
}

#[test]
fn nginx_reopening_late_after_a_quiet_spell_loses_no_hit() {
    let logs = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("access.log");
    let mut nginx = Nginx::start_with_http(&locations(&log.display().to_string()), LOCAL_FORMAT);
    let mut e = Exporter::start(&format!("probes:\n{}", probe("log", &log, "300ms", "")));
    e.wait_runs("log", 1);
    legacy(&nginx, 2);
    settle(&mut e, "log", [0, 2, 0, 0]);
    // Rotated, but nginx is told to reopen only much later: it writes the renamed file
    // through a quiet spell.
    logrotate(state.path(), &log, "    create");
    legacy(&nginx, 3);
    settle(&mut e, "log", [0, 5, 0, 0]);
    quiet_spell(&mut e, "log", 8, [0, 5, 0, 0]);
    legacy(&nginx, 4);
    nginx.reopen();
    api(&nginx, 2);
    let s = settle(&mut e, "log", [2, 9, 0, 0]);
    assert_eq!(rotations(&s, "log", "rename"), 1.0);
}

/// Runs logrotate with `directives` (and `rotate 30`) `rotations` times, each after `hits`
/// requests, telling nginx to reopen after each; returns the hits made.
fn rotate_often(
    nginx: &mut Nginx,
    state: &Path,
    log: &Path,
    directives: &str,
    rotations: usize,
) -> [u64; 4] {
    let conf = format!("    rotate 30\n{directives}");
    let mut made = [0u64; 4];
    for i in 0..rotations {
        legacy(nginx, 1 + i % 3);
        api(nginx, 1);
        made[1] += 1 + (i % 3) as u64;
        made[0] += 1;
        logrotate(state, log, &conf);
        nginx.reopen();
    }
    made
}

/// A backlog of twenty rotations between two runs of the probe, in `directives`' way; every
/// hit is counted.
fn twenty_rotations_between_two_runs(directives: &str, files: &[&str]) {
    let logs = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("access.log");
    let mut nginx = Nginx::start_with_http(&locations(&log.display().to_string()), LOCAL_FORMAT);
    // A long interval: the twenty rotations take a few seconds and happen between two runs.
    let mut e = Exporter::start(&format!(
        "probes:\n{}",
        probe("log", &log, "30s", "").replace(
            "    interval: 30s\n",
            "    interval: 30s\n    timeout: 10s\n"
        )
    ));
    e.wait_runs("log", 1);
    let before = runs(&e.scrape(), "log");
    let made = rotate_often(&mut nginx, state.path(), &log, directives, 20);
    let during = runs(&e.scrape(), "log");
    let on_disk = names(logs.path());
    for f in files {
        assert!(on_disk.iter().any(|n| n == f), "{f} not in {on_disk:?}");
    }
    let s = e.wait_for(&format!("counts {made:?}"), Duration::from_secs(90), |s| {
        counts(s, "log") == made
    });
    // Nothing more arrives, and nothing was skipped.
    let r = runs(&s, "log");
    let s = e.wait_for("the next run", Duration::from_secs(90), |s| {
        runs(s, "log") > r
    });
    assert_eq!(counts(&s, "log"), made);
    for reason in ["too_many_rotated", "compressed", "truncated"] {
        assert_eq!(skipped(&s, "log", reason), 0.0, "{reason}");
    }
    eprintln!(
        "runs before the rotations {before}, after them {during}; {} found in the folder",
        value(&s, FOUND, &[("probe", "log")])
    );
    if during == before {
        // The backlog case: the file followed at the last run, and the other nineteen found
        // in the folder.
        assert_eq!(rotations(&s, "log", "rename"), 1.0);
        assert_eq!(value(&s, FOUND, &[("probe", "log")]), 19.0);
    }
}

#[test]
fn a_backlog_of_twenty_rotations_is_read_whole() {
    twenty_rotations_between_two_runs("    create", &["access.log.1", "access.log.20"]);
}

#[test]
fn a_backlog_of_twenty_compressed_rotations_is_read_whole() {
    // Compressed at once (no delaycompress): each rotated file is gzip by the next run.
    twenty_rotations_between_two_runs(
        "    create\n    compress",
        &["access.log.1.gz", "access.log.20.gz"],
    );
}

#[test]
fn rotated_files_of_another_compressor_are_counted_as_skipped() {
    let logs = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("access.log");
    let mut nginx = Nginx::start_with_http(&locations(&log.display().to_string()), LOCAL_FORMAT);
    let mut e = Exporter::start(&format!(
        "probes:\n{}",
        probe("log", &log, "30s", "").replace(
            "    interval: 30s\n",
            "    interval: 30s\n    timeout: 10s\n"
        )
    ));
    e.wait_runs("log", 1);
    let before = runs(&e.scrape(), "log");
    let xz = stackmedic_tests::require_program(&["/usr/bin/xz"], "xz-utils");
    rotate_often(
        &mut nginx,
        state.path(),
        &log,
        &format!(
            "    create\n    compress\n    compresscmd {}\n    compressext .xz\n",
            xz.display()
        ),
        3,
    );
    let during = runs(&e.scrape(), "log");
    let xz_bytes: u64 = names(logs.path())
        .iter()
        .filter(|n| n.ends_with(".xz"))
        .map(|n| std::fs::metadata(logs.path().join(n)).expect("stat").len())
        .sum();
    assert!(xz_bytes > 0);
    let s = e.wait_for("the xz files counted", Duration::from_secs(90), |s| {
        find(s, SKIPPED, &[("probe", "log"), ("reason", "compressed")]).unwrap_or(0.0) > 0.0
    });
    if during == before {
        // The file followed at the last run arrives through its handle (the first rotation's
        // two hits); the three xz files cannot be read here and are counted by their size,
        // also the xz form of the followed file: the tailer cannot tell what it holds.
        assert_eq!(counts(&s, "log"), [1, 1, 0, 0]);
        assert_eq!(skipped(&s, "log", "compressed"), xz_bytes as f64);
    }
}

#[test]
fn copytruncate_reads_what_the_copy_holds_beyond_the_last_run() {
    let logs = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("access.log");
    let nginx = Nginx::start_with_http(&locations(&log.display().to_string()), LOCAL_FORMAT);
    let mut e = Exporter::start(&format!(
        "probes:\n{}",
        probe("log", &log, "30s", "").replace(
            "    interval: 30s\n",
            "    interval: 30s\n    timeout: 10s\n"
        )
    ));
    e.wait_runs("log", 1);
    legacy(&nginx, 2);
    let r = runs(&e.scrape(), "log");
    let s = e.wait_for("the next run", Duration::from_secs(90), |s| {
        runs(s, "log") > r
    });
    assert_eq!(counts(&s, "log"), [0, 2, 0, 0]);
    // Between two runs: more hits, then copytruncate; the hits before the copy are only in
    // the copy (access.log.1), the ones after it in the truncated log.
    legacy(&nginx, 5);
    logrotate(state.path(), &log, "    copytruncate");
    api(&nginx, 3);
    let s = e.wait_for("every hit", Duration::from_secs(90), |s| {
        counts(s, "log") == [3, 7, 0, 0]
    });
    assert_eq!(rotations(&s, "log", "truncate"), 1.0);
    assert_eq!(skipped(&s, "log", "truncated"), 0.0);
    assert_eq!(value(&s, FOUND, &[("probe", "log")]), 1.0, "the copy");
}
