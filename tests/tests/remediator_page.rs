//! The on-call page `/` of a real remediator, rendered by headless Debian Chromium: a
//! screenshot is taken (kept in the test's temporary directory) and must be a real 1200×900
//! PNG of some substance, and the page's HTML must show the open circuits, the escalations
//! (before any failure the empty state; then one active and delivered to a real Alertmanager,
//! and one resolved because its alert resolved), the dry run, the denial and the failures that
//! led to them — with no external assets.

use std::time::Duration;

use stackmedic_tests::alertmanager::Alertmanager;
use stackmedic_tests::chromium;
use stackmedic_tests::docker::ensure_docker;
use stackmedic_tests::remediator::{alert, payload, Remediator};
use stackmedic_tests::{unique_name, wait_until};

const ESCALATION: &str = "StackmedicRemediationFailed";

/// `original_alertname` of the escalations Alertmanager holds as active, sorted.
fn paged(am: &Alertmanager) -> Vec<String> {
    let mut names: Vec<String> = am
        .alerts()
        .ok()
        .and_then(|a| a.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == ESCALATION && a["status"]["state"] == "active")
        .filter_map(|a| {
            a["labels"]["original_alertname"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// The page's section from `<h2>{title}</h2>` to the next `<h2>` (or the end).
fn section<'a>(html: &'a str, title: &str) -> &'a str {
    let head = format!("<h2>{title}</h2>");
    let start = html
        .find(&head)
        .unwrap_or_else(|| panic!("no {head} in:\n{html}"));
    let rest = &html[start + head.len()..];
    &rest[..rest.find("<h2>").unwrap_or(rest.len())]
}

/// `GET /`: must be a 200 HTML page.
fn get_page(rem: &Remediator) -> String {
    let page = stackmedic_tests::http::get(&rem.url("/")).unwrap();
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    page.text()
}

/// `posts` of the active escalation in `GET /api/actions`.
fn active_posts(rem: &Remediator) -> i64 {
    let history = rem.history();
    history["escalations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["state"] == "firing")
        .and_then(|e| e["posts"].as_i64())
        .unwrap_or_else(|| panic!("no active escalation: {history:#}"))
}

#[test]
fn remediator_page_renders_in_chromium() {
    ensure_docker();
    let ghost = unique_name("sm-ghost");
    let gone = unique_name("sm-gone");
    let am = Alertmanager::start("route: {receiver: oncall}\nreceivers: [{name: oncall}]\n");
    let config = format!(
        "escalation:\n  alertmanager_url: {am_url}\n  resend_interval: 2s\n  min_backoff: 200ms\n  max_backoff: 1s\n  timeout: 2s\n\
         targets:\n\
         - name: apps\n  docker: {{containers: [owui]}}\n\
         - name: ghost\n  max_attempts: 1\n  docker: {{containers: [{ghost}]}}\n  verify: {{deadline: 1s}}\n\
         - name: gone\n  max_attempts: 1\n  docker: {{containers: [{gone}]}}\n  verify: {{deadline: 1s}}\n\
         rules:\n\
         - name: owui-restart\n  matchers: ['alertname=\"OwuiDown\"']\n  action: container_restart\n  target: apps\n  container_label: container\n  dry_run: true\n\
         - name: ghost-restart\n  matchers: ['alertname=\"GhostDown\"']\n  action: container_restart\n  target: ghost\n\
         - name: gone-start\n  matchers: ['alertname=\"GoneDown\"']\n  action: container_start\n  target: gone\n",
        am_url = am.url(""),
    );
    let mut rem = Remediator::start(&config);

    // Before anything failed: the escalations' empty state, between the circuits and the
    // decisions.
    let html = get_page(&rem);
    let escalations = section(&html, "Escalations");
    assert!(
        escalations.contains("No escalation: nobody has been paged by the remediator."),
        "{html}"
    );
    assert!(!escalations.contains("<table"), "{html}");
    let circuits_at = html.find("<h2>Open circuits</h2>").unwrap();
    let escalations_at = html.find("<h2>Escalations</h2>").unwrap();
    let decisions_at = html.find("<h2>Recent decisions</h2>").unwrap();
    assert!(
        circuits_at < escalations_at && escalations_at < decisions_at,
        "{html}"
    );

    let gone_down = alert(
        "firing",
        &[("alertname", "GoneDown"), ("instance", "gone")],
        "2026-11-22T10:00:00Z",
    );
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
        gone_down.clone(),
    ];
    assert_eq!(rem.webhook(&payload(alerts), None).unwrap().status, 200);
    rem.wait_for("dry_run", 1, Duration::from_secs(30));
    rem.wait_for("failed", 2, Duration::from_secs(30));
    // Both failures opened their circuit and paged on-call through the real Alertmanager.
    let both = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        paged(&am) == ["GhostDown", "GoneDown"]
    });
    assert!(
        both,
        "escalations not in Alertmanager: {:#}\nhistory {:#}\n{}",
        am.alerts().unwrap_or_default(),
        rem.history(),
        rem.process().describe()
    );
    // GoneDown resolves: its escalation is resolved in Alertmanager; GhostDown's stays active.
    let mut resolved = gone_down;
    resolved["status"] = "resolved".into();
    resolved["endsAt"] = "2026-11-22T10:30:00Z".into();
    assert_eq!(
        rem.webhook(&payload(vec![resolved]), None).unwrap().status,
        200
    );
    rem.wait_for("escalation_resolved", 1, Duration::from_secs(30));
    assert_eq!(paged(&am), ["GhostDown"], "{:#}", am.alerts().unwrap());

    let posts_before = active_posts(&rem);
    let html = get_page(&rem);
    let posts_after = active_posts(&rem);
    for want in [
        "<h1>stackmedic-remediator</h1>",
        "Open circuits",
        "2 open circuit(s)",
        "ghost",
        "Recent decisions",
        "dry_run",
        "denied",
        "failed",
        "escalated",
        "escalation_resolved",
        "OwuiDown",
        "GhostDown",
        "&lt;script&gt;",
    ] {
        assert!(html.contains(want), "missing {want:?} in:\n{html}");
    }
    // The escalations: the active one first, with what was escalated and its delivery, then
    // the resolved one with why it ended.
    let escalations = section(&html, "Escalations");
    let (active, done) = escalations
        .split_once("<h3>Recently resolved</h3>")
        .unwrap_or_else(|| panic!("no resolved escalation in:\n{escalations}"));
    for want in [
        "1 active escalation(s)",
        "<span class=\"r firing\">firing</span>",
        "GhostDown",
        "ghost-restart",
        "container_restart",
        // The subject: the target, which lists exactly one container.
        "<td>ghost</td>",
        "<span class=\"r succeeded\">delivered</span>",
        "Next re-post",
    ] {
        assert!(active.contains(want), "missing {want:?} in:\n{escalations}");
    }
    for unwanted in [
        "GoneDown",
        "failing",
        "pending",
        "not accepted",
        "No escalation",
    ] {
        assert!(
            !active.contains(unwanted),
            "unexpected {unwanted:?} in:\n{escalations}"
        );
    }
    // Its posts as the API counts them (it may be re-posted between the requests).
    assert!(posts_before >= 1);
    assert!(
        (posts_before..=posts_after).any(|n| active.contains(&format!("<td>{n}</td>"))),
        "{posts_before}..={posts_after} posts not shown in:\n{escalations}"
    );
    for want in [
        "GoneDown",
        "gone-start",
        "<td>gone</td>",
        "the alert resolved",
    ] {
        assert!(done.contains(want), "missing {want:?} in:\n{escalations}");
    }
    assert!(!done.contains("GhostDown"), "{escalations}");

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
