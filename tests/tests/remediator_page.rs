//! The on-call page `/` of a real remediator as headless Debian Chromium draws it: the text of
//! the DOM Chromium built (not the HTML source, and not CSS class names that every page
//! carries) must say, per subject, the incident's state in words, its attempts, its next
//! attempt time, its flapping count and whether a page is active; the unmatched alerts of the
//! last hour; the escalations (one active and delivered to a real Alertmanager, one resolved
//! because its alert resolved) and the decisions that led to them. Before anything happened it
//! must show the empty states. A screenshot is taken too (kept in the test's temporary
//! directory) and must be a real 1200×900 PNG of some substance; the page has no scripts and no
//! external assets.

use std::time::Duration;

use stackmedic_tests::admin_api::{AdminApi, Rule};
use stackmedic_tests::alertmanager::Alertmanager;
use stackmedic_tests::chromium;
use stackmedic_tests::docker::ensure_docker;
use stackmedic_tests::remediator::{alert, payload, Remediator};
use stackmedic_tests::{unique_name, wait_until};

/// The drawn text from `heading` to the next of `next` (or the end).
fn section<'a>(text: &'a str, heading: &str, next: &str) -> &'a str {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?} in:\n{text}"));
    let rest = &text[start + heading.len()..];
    &rest[..rest.find(next).unwrap_or(rest.len())]
}

fn assert_in(text: &str, wants: &[&str]) {
    for want in wants {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn remediator_page_renders_in_chromium() {
    ensure_docker();
    let ghost = unique_name("sm-ghost");
    let gone = unique_name("sm-gone");
    let api = AdminApi::start(&[Rule::status("/fix", 500)]);
    let am = Alertmanager::start("route: {receiver: oncall}\nreceivers: [{name: oncall}]\n");
    // The alerts are sent to the remediator directly, not through Alertmanager: reconciliation
    // is off, or it would resolve them as unknown to Alertmanager.
    let config = format!(
        "global: {{reconcile_interval: 0s}}\n\
         escalation:\n  alertmanager_url: {am_url}\n  resend_interval: 2s\n  min_backoff: 200ms\n  max_backoff: 1s\n  timeout: 2s\n\
         targets:\n\
         - name: apps\n  docker: {{containers: [owui]}}\n\
         - name: ghost\n  max_attempts: 1\n  docker: {{containers: [{ghost}]}}\n  verify: {{deadline: 1s}}\n\
         - name: gone\n  max_attempts: 1\n  docker: {{containers: [{gone}]}}\n  verify: {{deadline: 1s}}\n\
         - name: waiter\n  backoff: 2h\n  max_backoff: 2h\n  http: {{base_url: '{api_url}'}}\n\
         rules:\n\
         - name: owui-restart\n  matchers: ['alertname=\"OwuiDown\"']\n  action: container_restart\n  target: apps\n  container_label: container\n  dry_run: true\n\
         - name: ghost-restart\n  matchers: ['alertname=\"GhostDown\"']\n  action: container_restart\n  target: ghost\n\
         - name: gone-start\n  matchers: ['alertname=\"GoneDown\"']\n  action: container_start\n  target: gone\n\
         - name: waiter-fix\n  matchers: ['alertname=\"WaiterDown\"']\n  action: http_sequence\n  target: waiter\n  steps: [{{path: /fix}}]\n",
        am_url = am.url(""),
        api_url = api.url("/"),
    );
    let mut rem = Remediator::start(&config);

    // Before anything happened: the empty states, in order.
    let text = chromium::rendered_text(&rem.url("/"), rem.dir());
    assert_in(
        &text,
        &[
            "stackmedic-remediator 4 rules, 4 targets.",
            "Incidents No open incident: nothing is being remediated or escalated.",
            "Unmatched alerts Unmatched in the last hour: none; every firing alert matched a rule.",
            "Escalations No escalation: nobody has been paged by the remediator.",
            "Recent decisions Nothing recorded yet.",
        ],
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
        alert(
            "firing",
            &[("alertname", "WaiterDown")],
            "2026-11-22T10:00:00Z",
        ),
        // A misnamed alert: no rule matches it.
        alert(
            "firing",
            &[("alertname", "OwuiDwn"), ("container", "owui")],
            "2026-11-22T10:00:00Z",
        ),
        gone_down.clone(),
    ];
    let r = rem.webhook(&payload(alerts), None).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json().unwrap()["unmatched"], 1, "{}", r.text());
    rem.wait_for("dry_run", 1, Duration::from_secs(30));
    rem.wait_for("failed", 3, Duration::from_secs(30));
    // Both containers' incidents were escalated and paged on-call through the real
    // Alertmanager.
    let both = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        am.paged() == ["GhostDown", "GoneDown"]
    });
    assert!(
        both,
        "escalations not in Alertmanager: {:#}\nhistory {:#}\n{}",
        am.alerts().unwrap_or_default(),
        rem.history(),
        rem.process().describe()
    );
    // GoneDown resolves: its incident closes and its escalation is resolved in Alertmanager.
    let mut resolved = gone_down;
    resolved["status"] = "resolved".into();
    resolved["endsAt"] = "2026-11-22T10:30:00Z".into();
    assert_eq!(
        rem.webhook(&payload(vec![resolved]), None).unwrap().status,
        200
    );
    rem.wait_for("escalation_resolved", 1, Duration::from_secs(30));
    assert_eq!(am.paged(), ["GhostDown"], "{:#}", am.alerts().unwrap());
    assert_eq!(
        rem.metric(
            "stackmedic_remediator_unmatched_alerts_total",
            &[("alertname", "OwuiDwn")]
        ),
        1.0
    );

    let text = chromium::rendered_text(&rem.url("/"), rem.dir());
    let ghost_subject = format!("container:{ghost}");
    let gone_subject = format!("container:{gone}");
    let heads = [
        "Incidents",
        "Unmatched alerts",
        "Escalations",
        "Recent decisions",
    ];
    let at: Vec<usize> = heads
        .iter()
        .map(|h| text.find(h).unwrap_or_else(|| panic!("no {h} in:\n{text}")))
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "sections out of order:\n{text}"
    );

    // Per subject: state in words, attempts, next attempt, flapping count, page.
    let incidents = section(&text, "Incidents", "Unmatched alerts");
    assert_in(
        incidents,
        &[
            "2 open incident(s): 1 waiting, 1 escalated. 1 escalated: no more actions on it until the alert resolves or on-call resets the subject ( stackmedic-remediator reset SUBJECT ).",
            &format!(
                "{ghost_subject} ghost-restart · container_restart escalated no more actions; on-call is paged until the alert resolves \
                 or on-call resets the subject reset: stackmedic-remediator reset {ghost_subject} \
                 1 of 1 none: escalated 0 of 3 healed within 1h active GhostDown since 2026-11-22T10:00:00Z"
            ),
            "waiter waiter-fix · http_sequence waiting the last attempt failed; the next one runs at its time 1 of 3",
            "(in 1 h 59 min) 0 of 3 healed within 1h none WaiterDown since 2026-11-22T10:00:00Z",
            "attempt 1 of 3 failed: attempt 1 of 3: step 0 POST /fix: unexpected status 500",
            "Recently closed",
            &format!("{gone_subject} the alert resolved 1 of 1 no GoneDown since 2026-11-22T10:00:00Z (resolved)"),
        ],
    );
    let unmatched = section(&text, "Unmatched alerts", "Escalations");
    assert_in(unmatched, &["Unmatched in the last hour: OwuiDwn (1)."]);
    let escalations = section(&text, "Escalations", "Recent decisions");
    let (active, done) = escalations
        .split_once("Recently resolved")
        .unwrap_or_else(|| panic!("no resolved escalation in:\n{escalations}"));
    assert_in(
        active,
        &[
            "1 active escalation(s)",
            "firing GhostDown ghost-restart container_restart",
            &ghost_subject,
            "GhostDown since 2026-11-22T10:00:00Z",
            "delivered",
            "Next re-post",
        ],
    );
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
    assert_in(
        done,
        &[
            "GoneDown gone-start container_start",
            &gone_subject,
            "the alert resolved",
        ],
    );
    assert!(!done.contains("GhostDown"), "{escalations}");
    let decisions = section(&text, "Recent decisions", "\u{0}");
    assert_in(
        decisions,
        &[
            "dry_run OwuiDown owui-restart container_restart container:owui",
            "denied OwuiDown owui-restart container_restart apps",
            "label container=\"<script>alert(1)</script>\" is not a valid container name",
            "failed GhostDown ghost-restart container_restart",
            "escalated GhostDown",
            "escalation_resolved GoneDown",
            "resolved GoneDown gone-start container_start",
        ],
    );

    // No scripts and no external assets in what the server sends.
    let html = stackmedic_tests::http::get(&rem.url("/")).unwrap().text();
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
