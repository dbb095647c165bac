//! The on-call page `/` of a real remediator, rendered by headless Debian Chromium: a
//! screenshot is taken (kept in the test's temporary directory) and must be a real 1200×900
//! PNG of some substance, and the page's HTML must show the open circuit, the dry run, the
//! denial and the failure that led to them — with no external assets.

use std::time::Duration;

use stackmedic_tests::chromium;
use stackmedic_tests::docker::ensure_docker;
use stackmedic_tests::remediator::{alert, payload, Remediator};
use stackmedic_tests::unique_name;

#[test]
fn remediator_page_renders_in_chromium() {
    ensure_docker();
    let ghost = unique_name("sm-ghost");
    let config = format!(
        "targets:\n\
         - name: apps\n  docker: {{containers: [owui]}}\n\
         - name: ghost\n  max_attempts: 1\n  docker: {{containers: [{ghost}]}}\n  verify: {{deadline: 1s}}\n\
         rules:\n\
         - name: owui-restart\n  matchers: ['alertname=\"OwuiDown\"']\n  action: container_restart\n  target: apps\n  container_label: container\n  dry_run: true\n\
         - name: ghost-restart\n  matchers: ['alertname=\"GhostDown\"']\n  action: container_restart\n  target: ghost\n"
    );
    let mut rem = Remediator::start(&config);
    let alerts = vec![
        alert(
            "firing",
            &[("alertname", "OwuiDown"), ("container", "owui")],
            "2026-11-22T10:00:00Z",
        ),
        alert(
            "firing",
            &[
                ("alertname", "OwuiDown"),
                ("container", "<script>alert(1)</script>"),
            ],
            "2026-11-22T10:00:00Z",
        ),
        alert(
            "firing",
            &[("alertname", "GhostDown")],
            "2026-11-22T10:00:00Z",
        ),
    ];
    assert_eq!(rem.webhook(&payload(alerts), None).unwrap().status, 200);
    rem.wait_for("dry_run", 1, Duration::from_secs(30));
    rem.wait_for("failed", 1, Duration::from_secs(30));

    let page = stackmedic_tests::http::get(&rem.url("/")).unwrap();
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let html = page.text();
    for want in [
        "<h1>stackmedic-remediator</h1>",
        "Open circuits",
        "1 open circuit(s)",
        "ghost",
        "Recent decisions",
        "dry_run",
        "denied",
        "failed",
        "OwuiDown",
        "GhostDown",
        "&lt;script&gt;",
    ] {
        assert!(html.contains(want), "missing {want:?} in:\n{html}");
    }
    assert!(
        !html.contains("<script"),
        "the page must not carry scripts:\n{html}"
    );
    for external in ["src=\"http", "href=\"http", "@import", "url("] {
        assert!(
            !html.contains(external),
            "external asset {external:?} in:\n{html}"
        );
    }

    let shot = chromium::screenshot(&rem.url("/"), rem.dir());
    let png = std::fs::read(&shot).unwrap();
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
}
