//! The exporter's status page as on-call reads it at 3 a.m., rendered by headless Chromium:
//! real dockerd with a container that exited with code 3, one whose health check fails, a
//! healthy one and an expected one that does not exist; two real ffmpeg live streams, one of
//! them killed (stale); a backup folder readable by others with a stale and a fresh volume; an
//! SRI manifest one of whose files drifted; pyads' real ADS server with its PLC in Stop; an HTTP
//! check of a port nobody listens on; and a fine self check. The page must name every problem
//! with its state in words, problems first, and must not show the containers as fine.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use stackmedic_tests::ads::AdsServer;
use stackmedic_tests::chromium;
use stackmedic_tests::docker::{ensure_docker, run_busybox};
use stackmedic_tests::exporter::{Exporter, Options};
use stackmedic_tests::ffmpeg::live_hls;
use stackmedic_tests::metrics::{find, Sample};
use stackmedic_tests::{free_port, unique_name};

/// Long enough for the slowest peer here (a health check turning unhealthy, a killed stream
/// turning stale) on a loaded machine.
const SETTLE: Duration = Duration::from_secs(60);

/// A backup archive of `volume` named as the backup timers name theirs, `age` old by its name
/// (Unix seconds as the timestamp).
fn backup(folder: &Path, volume: &str, age: Duration) {
    let at = (SystemTime::now() - age)
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    std::fs::write(
        folder.join(format!("{volume}__{at}.tar.gz")),
        b"not read: verify_newest is off",
    )
    .expect("write backup");
}

fn has(s: &[Sample], name: &str, labels: &[(&str, &str)], v: f64) -> bool {
    find(s, name, labels) == Some(v)
}

/// Each needle must follow the previous one in `text`.
fn assert_in_order(text: &str, needles: &[&str]) {
    let mut at = 0;
    for needle in needles {
        match text[at..].find(needle) {
            Some(p) => at += p + needle.len(),
            None => {
                panic!("{needle:?} is not on the page after position {at} (or not at all):\n{text}")
            }
        }
    }
}

#[test]
fn status_page_shows_every_problem_first_in_words() {
    ensure_docker();
    let web = run_busybox(
        &unique_name("sm-sp-web"),
        &["--health-cmd", "true", "--health-interval", "1s"],
        &["sleep", "600"],
    );
    let crash = run_busybox(&unique_name("sm-sp-crash"), &[], &["sh", "-c", "exit 3"]);
    let sick = run_busybox(
        &unique_name("sm-sp-sick"),
        &[
            "--health-cmd",
            "echo database unreachable; exit 1",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
        ],
        &["sleep", "600"],
    );
    let gone = unique_name("sm-sp-gone");

    let dir = tempfile::tempdir().expect("temp dir");
    let streams = dir.path().join("streams");
    std::fs::create_dir_all(&streams).expect("streams dir");
    let (_yard, yard) = live_hls(&streams, "cam-yard");
    let (mut entrance_ffmpeg, entrance) = live_hls(&streams, "cam-entrance");
    // The entrance camera's packager dies: its playlist stays, and stops growing.
    entrance_ffmpeg.kill();

    let backups = dir.path().join("backups");
    std::fs::create_dir_all(&backups).expect("backups dir");
    backup(&backups, "owui-data", Duration::from_secs(3 * 86_400));
    backup(&backups, "context6-data", Duration::from_secs(3600));
    // Backups hold secrets; this folder lets others in, which the page warns about.
    std::fs::set_permissions(&backups, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).expect("site dir");
    std::fs::write(
        site.join("app.js"),
        "console.log('deployed after the manifest');\n",
    )
    .expect("app.js");
    // A well-formed sha384 token that no content has: app.js drifted.
    let zeros = "A".repeat(64);
    std::fs::write(
        dir.path().join("sri-manifest.json"),
        format!(r#"{{"app.js": {{"sha384": "sha384-{zeros}"}}}}"#),
    )
    .expect("manifest");

    let plc = AdsServer::start(free_port(), &["--state", "stop"]);
    let closed = free_port();
    let port = free_port();

    // The fine probes come first in the file: the page must put the problems before them.
    let config = format!(
        r#"probes:
  - name: self-check
    interval: 1s
    http:
      url: http://127.0.0.1:{port}/-/healthy
  - name: cam-yard
    interval: 1s
    hls:
      path: {yard}
      stale_multiplier: 8
  - name: containers
    interval: 1s
    docker:
      name_pattern: "^({web}|{crash}|{sick})$"
      expected: [{web}, {crash}, {sick}, {gone}]
  - name: cam-entrance
    interval: 1s
    hls:
      path: {entrance}
  - name: backups
    interval: 1s
    backup:
      folders:
        - path: {backups}
          max_age: 1d
  - name: frontend-sri
    interval: 1s
    sri:
      manifest: {manifest}
      root: {site}
  - name: plc-line1
    interval: 1s
    timeout: 1s
    ads:
      host: 127.0.0.1
      port: {plc_port}
      ams_net_id: 5.32.116.5.1.1
  - name: assistant-ready
    interval: 1s
    timeout: 1s
    http:
      url: http://127.0.0.1:{closed}/api/ready
"#,
        yard = yard.display(),
        entrance = entrance.display(),
        web = web.name(),
        crash = crash.name(),
        sick = sick.name(),
        backups = backups.display(),
        manifest = dir.path().join("sri-manifest.json").display(),
        site = site.display(),
        plc_port = plc.port(),
    );
    let mut exporter = Exporter::start_with(Options {
        config: Some(&config),
        port: Some(port),
        ..Options::default()
    });

    // Wait on /metrics until every peer is in the state the page is checked in.
    let container = |s: &[Sample], name: &str, label: (&str, &str)| {
        has(
            s,
            &format!(
                "stackmedic_container_{}",
                if label.0 == "status" {
                    "health_status"
                } else {
                    "state"
                }
            ),
            &[("probe", "containers"), ("container", name), label],
            1.0,
        )
    };
    exporter.wait_for("every peer in its state", SETTLE, |s| {
        container(s, sick.name(), ("status", "unhealthy"))
            && container(s, web.name(), ("status", "healthy"))
            && container(s, crash.name(), ("state", "exited"))
            && has(s, "stackmedic_hls_stale", &[("probe", "cam-entrance")], 1.0)
            && has(s, "stackmedic_hls_stale", &[("probe", "cam-yard")], 0.0)
            && has(
                s,
                "stackmedic_ads_state",
                &[("probe", "plc-line1"), ("state", "stop")],
                1.0,
            )
            && has(s, "stackmedic_probe_success", &[("probe", "backups")], 0.0)
            && has(
                s,
                "stackmedic_probe_success",
                &[("probe", "frontend-sri")],
                0.0,
            )
            && has(
                s,
                "stackmedic_probe_success",
                &[("probe", "assistant-ready")],
                0.0,
            )
            && has(
                s,
                "stackmedic_probe_success",
                &[("probe", "self-check")],
                1.0,
            )
    });
    // What the old landing page got wrong: the probe run succeeds while containers are down.
    let s = exporter.scrape();
    assert_eq!(
        find(&s, "stackmedic_probe_success", &[("probe", "containers")]),
        Some(0.0),
        "the containers probe fails only for the missing one"
    );

    let html = stackmedic_tests::http::get(&exporter.url("/"))
        .expect("GET /")
        .text();
    assert!(!html.contains("<script"), "no scripts:\n{html}");
    for external in ["src=\"http", "href=\"http", "@import", "url("] {
        assert!(
            !html.contains(external),
            "external asset {external:?}:\n{html}"
        );
    }
    assert!(html.contains("<meta http-equiv=\"refresh\""), "{html}");

    let text = chromium::rendered_text(&exporter.url("/"), exporter.dir());
    // Eight problems (three containers, the stale stream, the stale volume, the drifted file,
    // the stopped PLC, the refused check) and one warning (the open backup folder).
    assert_in_order(
        &text,
        &[
            "8 problems · 1 warning",
            "8 probes: 6 failing, 2 ok",
            "Problems",
            "probe containers",
            "FAILING stream cam-entrance probe cam-entrance stale: no new segment for",
            "FAILING volume owui-data probe backups stale: newest backup 3 d old, allowed 1 d",
            "FAILING file app.js probe frontend-sri digest drift",
            "FAILING PLC plc-line1 probe plc-line1 ADS state stop, expected run",
            "FAILING assistant-ready HTTP check cannot connect connect",
            &format!("http://127.0.0.1:{closed}/api/ready"),
            "WARNING folder",
            "accessible by others (mode 755)",
            "Probes",
            "FAILING containers Docker containers",
            "Watches 4: 3 failing, 1 ok.",
            "FAILING cam-entrance HLS stream",
            "FAILING backups backups",
            "FAILING frontend-sri SRI manifest",
            "FAILING plc-line1 PLC over ADS",
            "FAILING assistant-ready HTTP check",
            "OK self-check HTTP check",
            "OK cam-yard HLS stream",
            "OK stream cam-yard live",
        ],
    );
    // Each container problem in words, before the probe sections.
    let problems = &text[..text.find("Probes").expect("probe sections")];
    for needle in [
        format!(
            "FAILING container {} probe containers exited with code 3 since",
            crash.name()
        ),
        format!(
            "FAILING container {} probe containers running, unhealthy health check failed",
            sick.name()
        ),
        "last output: database unreachable".to_string(),
        format!("FAILING container {gone} probe containers missing"),
    ] {
        assert!(
            problems.contains(&needle),
            "{needle:?} not among the problems:\n{text}"
        );
    }
    assert!(
        text.contains(&format!(
            "OK container {} running, healthy started",
            web.name()
        )),
        "{text}"
    );
    assert!(
        !problems.contains(web.name()),
        "a healthy container is no problem:\n{text}"
    );
    assert!(
        !text.contains("OK containers"),
        "containers shown as fine:\n{text}"
    );

    let shot = chromium::screenshot(&exporter.url("/"), exporter.dir());
    let png = std::fs::read(&shot).expect("screenshot");
    assert_eq!(
        chromium::png_size(&png),
        Some((1200, 900)),
        "{}",
        shot.display()
    );
    assert!(
        png.len() > 10_000,
        "screenshot is only {} bytes: {}",
        png.len(),
        shot.display()
    );
    // For a person judging the page: STACKMEDIC_KEEP_SCREENSHOT=/tmp/page.png keeps the
    // screenshot there and the HTML beside it (/tmp/page.png.html).
    if let Ok(keep) = std::env::var("STACKMEDIC_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, &keep).expect("keep the screenshot");
        std::fs::write(format!("{keep}.html"), &html).expect("keep the page");
    }
}
