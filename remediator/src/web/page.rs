//! The on-call page: per subject its incident (state, attempts, next attempt, flapping count,
//! whether a page is active), unmatched alerts, escalations, pending jobs and recent decisions.
//! Server-rendered, no scripts, no external assets; every value from the store or an alert is
//! HTML-escaped.

use stackmedic_common::server::escape_html;

use super::format::{time, when, window};
use crate::config::Config;
use crate::limits;
use crate::store::{EscalationView, IncidentView, Overview};
use crate::unmatched::Recent;
use crate::vocab::{EscalationState, IncidentState};

/// Resolved escalations shown, most recently resolved first.
pub(super) const RESOLVED_SHOWN: usize = 5;

/// Closed incidents shown, most recently closed first.
pub(super) const CLOSED_SHOWN: usize = 5;

/// Decisions shown per page of the history.
pub(super) const DECISIONS_SHOWN: usize = 50;

/// Everything the page shows.
pub(super) struct View<'a> {
    pub cfg: &'a Config,
    pub overview: &'a Overview,
    pub active: &'a [EscalationView],
    pub resolved: &'a [EscalationView],
    pub unmatched: &'a [Recent],
    /// The page of history asked for: decisions older than this id (`/?before=…`).
    pub before: Option<i64>,
    pub now: f64,
    /// On-call's pause, if one is in force.
    pub pause: Option<crate::store::Pause>,
    /// With replicas sharing the store: this one, the leader and how many share it.
    pub replicas: Option<String>,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d232a;background:#f7f8fa}\
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin-top:1.6rem}h3{font-size:.95rem;margin:1rem 0 .4rem}\
table{border-collapse:collapse;width:100%;background:#fff;font-size:.9rem}\
th,td{border:1px solid #d5d9df;padding:.35rem .5rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
th{background:#e9edf2}.t{white-space:nowrap}.r{font-weight:600}.m{color:#5a6270;font-size:.85em}\
.succeeded,.healed,.resolved,.escalation_resolved{color:#17692f}\
.failed,.escalated,.firing,.skipped_escalated,.skipped_flapping{color:#b3261e}\
.acting,.verifying,.waiting,.resolving,.pending,.denied,.held{color:#8a4b00}\
.dry_run,.joined,.cancelled,.expired{color:#5a6270}\
.banner{padding:.5rem .8rem;border-radius:4px;margin:.6rem 0}.open{background:#fde2e0;border:1px solid #b3261e}\
.ok{background:#e3f4e8;border:1px solid #17692f}.dry{background:#fff4d6;border:1px solid #8a6d00}\
.note{background:#eef2f7;border:1px solid #9aa5b1}";

/// Renders the page.
pub(super) fn render(v: &View<'_>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    out.push_str(&format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"30\"><title>stackmedic-remediator</title>\
         <style>{STYLE}</style></head><body><h1>stackmedic-remediator</h1>"
    ));
    out.push_str(&format!(
        "<p>{} rules, {} targets. <a href=\"/api/actions\">JSON</a> · <a href=\"/metrics\">metrics</a></p>",
        v.cfg.rules.len(),
        v.cfg.targets.len()
    ));
    if let Some(r) = &v.replicas {
        out.push_str(&format!("<p class=\"m\">{}</p>", escape_html(r)));
    }
    if v.cfg.global.dry_run {
        out.push_str("<div class=\"banner dry\">Dry run: decisions are recorded, no action is executed.</div>");
    }
    if let Some(p) = &v.pause {
        let until = match p.until {
            Some(u) if u < v.now => format!(
                ", planned until {}: <strong>longer than planned</strong>",
                when(Some(u), v.now)
            ),
            Some(u) => format!(", planned until {}", when(Some(u), v.now)),
            None => ", with no planned end".into(),
        };
        out.push_str(&format!(
            "<div class=\"banner open\">Paused by on-call since {}{until}: {}. No action starts; alerts are recorded and incidents are opened, held. Resume with <code>stackmedic-remediator resume</code>.</div>",
            when(Some(p.since), v.now),
            escape_html(&p.reason)
        ));
    }
    incidents_section(&mut out, v);
    unmatched_section(&mut out, v.unmatched);
    escalations_section(
        &mut out,
        v.active,
        v.resolved,
        v.cfg.escalation.is_some(),
        v.now,
    );
    pending_section(&mut out, v);
    decisions_section(&mut out, v);
    out.push_str("</body></html>\n");
    out
}

/// What a state means for the person reading the page.
fn state_words(i: &IncidentView) -> &'static str {
    match i.state {
        IncidentState::Acting => "an attempt is running or about to run",
        IncidentState::Verifying => "the action ran; its outcome is being verified",
        IncidentState::Waiting => "the last attempt failed; the next one runs at its time",
        IncidentState::Healed => {
            "fixed and verified; waiting for the alert to resolve (verified again if it still fires)"
        }
        IncidentState::Escalated => {
            "no more actions; on-call is paged until the alert resolves or on-call resets the subject"
        }
        IncidentState::Held => "its action waits (see what happened); it acts by itself when the hold ends",
        IncidentState::Resolved => "closed",
    }
}

fn incidents_section(out: &mut String, v: &View<'_>) {
    let open = &v.overview.incidents;
    out.push_str("<h2>Incidents</h2>");
    if open.is_empty() {
        out.push_str("<div class=\"banner ok\">No open incident: nothing is being remediated or escalated.</div>");
    } else {
        let count = |s: IncidentState| open.iter().filter(|i| i.state == s).count();
        let mut parts = Vec::new();
        for s in IncidentState::OPEN {
            let n = count(*s);
            if n > 0 {
                parts.push(format!("{n} {s}"));
            }
        }
        let escalated = count(IncidentState::Escalated);
        let class = if escalated > 0 { "open" } else { "note" };
        let mut text = format!("{} open incident(s): {}.", open.len(), parts.join(", "));
        if escalated > 0 {
            text.push_str(&format!(
                " {escalated} escalated: no more actions on {} until the alert resolves or on-call resets the subject (<code>stackmedic-remediator reset SUBJECT</code>).",
                if escalated == 1 { "it" } else { "them" }
            ));
        }
        out.push_str(&format!("<div class=\"banner {class}\">{text}</div>"));
        out.push_str("<table><tr><th>Subject</th><th>State</th><th>Attempts</th><th>Next attempt</th><th>Flapping</th><th>Page</th><th>Alerts</th><th>Since (UTC)</th><th>What happened</th></tr>");
        for i in open {
            let reset = if i.state == IncidentState::Escalated {
                format!(
                    "<br><span class=\"m\">reset: <code>stackmedic-remediator reset {}</code></span>",
                    escape_html(&shell_word(&i.subject))
                )
            } else {
                String::new()
            };
            out.push_str(&format!(
                "<tr><td>{}<br><span class=\"m\">{} · {}</span></td><td><span class=\"r {state}\">{state}</span><br><span class=\"m\">{}</span>{reset}</td><td>{} of {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape_html(&i.subject),
                escape_html(&i.rule),
                escape_html(&i.action),
                state_words(i),
                i.attempts,
                i.max_attempts,
                next_attempt(i, v.now),
                flapping(i),
                page_cell(i),
                alerts(i),
                when(Some(i.opened_at), v.now),
                escape_html(&i.detail),
                state = i.state,
            ));
        }
        out.push_str("</table>");
    }
    let closed = &v.overview.recent_incidents;
    if !closed.is_empty() {
        out.push_str("<h3>Recently closed</h3><table><tr><th>Closed (UTC)</th><th>Subject</th><th>Why it closed</th><th>Attempts</th><th>Healed</th><th>Alerts</th></tr>");
        for i in closed {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} of {}</td><td>{}</td><td>{}</td></tr>",
                when(i.closed_at, v.now),
                escape_html(&i.subject),
                i.close_reason.map_or("", |r| r.describe()),
                i.attempts,
                i.max_attempts,
                if i.healed_at.is_some() { "yes" } else { "no" },
                alerts(i),
            ));
        }
        out.push_str("</table>");
    }
}

fn next_attempt(i: &IncidentView, now: f64) -> String {
    match (i.state, i.next_attempt_at) {
        (IncidentState::Waiting, Some(t)) => when(Some(t), now),
        (IncidentState::Acting, _) => "now".into(),
        (IncidentState::Escalated, _) => "none: escalated".into(),
        (IncidentState::Healed, _) => match i.next_check_at {
            Some(t) => format!(
                "none; verified again {} if the alert still fires",
                when(Some(t), now)
            ),
            None => "none".into(),
        },
        _ => "none".into(),
    }
}

/// `s` as one word of a POSIX shell command line, quoted when it needs to be.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '.' | '_' | '-' | '@'))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn flapping(i: &IncidentView) -> String {
    if i.flapping.count == 0 {
        return format!("{} healed (no limit)", i.flapping.healed_in_window);
    }
    format!(
        "{} of {} healed within {}",
        i.flapping.healed_in_window,
        i.flapping.count,
        window(i.flapping.window_seconds)
    )
}

fn page_cell(i: &IncidentView) -> &'static str {
    match (i.page_active, i.state) {
        (true, _) => "active",
        (false, IncidentState::Escalated) => "not paged (no escalation configured)",
        (false, _) => "none",
    }
}

fn alerts(i: &IncidentView) -> String {
    let earlier = (i.alerts_total as usize).saturating_sub(i.alerts.len());
    let earlier = (earlier > 0).then(|| format!("{earlier} earlier alert(s)"));
    earlier
        .into_iter()
        .chain(i.alerts.iter().map(|a| {
            format!(
                "{} since {}{}",
                escape_html(&a.alertname),
                escape_html(&a.starts_at),
                if a.resolved_at.is_some() {
                    " (resolved)"
                } else {
                    ""
                }
            )
        }))
        .collect::<Vec<_>>()
        .join("<br>")
}

fn unmatched_section(out: &mut String, unmatched: &[Recent]) {
    out.push_str("<h2>Unmatched alerts</h2>");
    if unmatched.is_empty() {
        out.push_str("<p>Unmatched in the last hour: none; every firing alert matched a rule.</p>");
    } else {
        let names: Vec<String> = unmatched
            .iter()
            .map(|u| format!("{} ({})", escape_html(&u.alertname), u.count))
            .collect();
        out.push_str(&format!(
            "<div class=\"banner note\">Unmatched in the last hour: {}. No rule matches these alerts, so nothing is done for them; check the rules' matchers against the alerts' labels.</div>",
            names.join(", ")
        ));
    }
}

/// The escalation's delivery to Alertmanager: delivered, pending, or failing with the error and
/// the next retry.
fn delivery(e: &EscalationView, now: f64) -> String {
    let delivered = e.delivered_at.is_some();
    let resolving = e.state == EscalationState::Resolving;
    let next = when(e.next_post_at, now);
    let last = when(e.last_post_at, now);
    if e.failures > 0 {
        let what = if resolving {
            "the resolving post"
        } else if delivered {
            "the re-post"
        } else {
            "the first post"
        };
        let before = if delivered {
            format!(" Last delivered post {last}.")
        } else {
            " Never delivered: on-call has not been paged.".into()
        };
        format!(
            "<span class=\"r failed\">failing</span>: {what} failed {} time(s) in a row: {}. Next retry {next}.{before}",
            e.failures,
            escape_html(e.last_error.as_deref().unwrap_or("unknown error")),
        )
    } else if resolving {
        format!("<span class=\"r pending\">pending</span>: the resolving post (endsAt = now) is due {next}. Last delivered post {last}.")
    } else if delivered {
        format!("<span class=\"r succeeded\">delivered</span> {last}. Next re-post {next}.")
    } else {
        format!("<span class=\"r pending\">pending</span>: the first post is due {next}.")
    }
}

fn opt(s: &Option<String>) -> String {
    escape_html(s.as_deref().unwrap_or(""))
}

/// The "Escalations" section: active escalations, then the few most recently resolved ones.
fn escalations_section(
    out: &mut String,
    active: &[EscalationView],
    resolved: &[EscalationView],
    configured: bool,
    now: f64,
) {
    out.push_str("<h2>Escalations</h2>");
    if active.is_empty() {
        let text = if resolved.is_empty() {
            "No escalation: nobody has been paged by the remediator."
        } else {
            "No active escalation: nobody is being paged by the remediator now."
        };
        let note = if configured {
            ""
        } else {
            " Escalation is not configured, so a failed remediation pages nobody."
        };
        out.push_str(&format!("<div class=\"banner ok\">{text}{note}</div>"));
    } else {
        let undelivered = active
            .iter()
            .filter(|e| e.failures > 0 || e.delivered_at.is_none())
            .count();
        let mut text = format!(
            "{} active escalation(s): StackmedicRemediationFailed is posted to Alertmanager until the incident's alerts resolve.",
            active.len()
        );
        if undelivered > 0 {
            text.push_str(&format!(
                " {undelivered} with a post Alertmanager has not accepted yet: see Delivery."
            ));
        }
        if !configured {
            text.push_str(" Escalation is no longer configured: nothing is posted.");
        }
        out.push_str(&format!("<div class=\"banner open\">{text}</div>"));
        out.push_str("<table><tr><th>Since (UTC)</th><th>State</th><th>Alert</th><th>Rule</th><th>Subject</th><th>Alerts of the incident</th><th>Posts</th><th>Delivery</th></tr>");
        for e in active {
            let reason = match (&e.resolve_reason, e.state) {
                (Some(r), EscalationState::Resolving) => {
                    format!("<br><span class=\"m\">{}</span>", escape_html(r))
                }
                _ => String::new(),
            };
            out.push_str(&format!(
                "<tr><td class=\"t\">{}</td><td><span class=\"r {state}\">{state}</span>{reason}</td><td>{}</td><td>{}<br><span class=\"m\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                when(Some(e.created_at), now),
                opt(&e.alertname),
                opt(&e.rule),
                opt(&e.action),
                escape_html(&e.subject),
                opt(&e.alerts),
                e.posts,
                delivery(e, now),
                state = e.state,
            ));
        }
        out.push_str("</table>");
    }
    if !resolved.is_empty() {
        out.push_str("<h3>Recently resolved</h3><table><tr><th>Resolved (UTC)</th><th>Alert</th><th>Rule</th><th>Subject</th><th>Active since</th><th>Posts</th><th>Why it ended</th></tr>");
        for e in resolved {
            out.push_str(&format!(
                "<tr><td class=\"t\">{}</td><td>{}</td><td>{}<br><span class=\"m\">{}</span></td><td>{}</td><td class=\"t\">{}</td><td>{}</td><td>{}</td></tr>",
                when(e.resolved_at, now),
                opt(&e.alertname),
                opt(&e.rule),
                opt(&e.action),
                escape_html(&e.subject),
                time(Some(e.created_at)),
                e.posts,
                opt(&e.resolve_reason),
            ));
        }
        out.push_str("</table>");
    }
}

fn pending_section(out: &mut String, v: &View<'_>) {
    let pending = &v.overview.pending_jobs;
    if pending.is_empty() {
        return;
    }
    let replicas = v.replicas.is_some();
    out.push_str(&format!(
        "<h2>Pending jobs</h2><table><tr><th>Job</th><th>State</th><th>Accepted (UTC)</th><th>Not before</th><th>Rule</th><th>Action</th><th>Subject</th><th>Waiting for</th>{}</tr>",
        if replicas { "<th>Replica</th>" } else { "" }
    ));
    for j in pending {
        out.push_str(&format!(
            "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}</tr>",
            j.job_id,
            if j.retry { " (next attempt)" } else { "" },
            j.state,
            time(Some(j.accepted_at)),
            when(Some(j.not_before), v.now),
            escape_html(&j.rule),
            escape_html(&j.action),
            escape_html(&j.subject),
            match &j.note {
                Some(n) => format!("{} (tried {} time(s))", escape_html(n), j.postponed),
                None => String::new(),
            },
            if replicas {
                format!("<td>{}</td>", escape_html(j.replica.as_deref().unwrap_or("")))
            } else {
                String::new()
            },
        ));
    }
    out.push_str("</table>");
}

fn decisions_section(out: &mut String, v: &View<'_>) {
    out.push_str(if v.before.is_some() {
        "<h2>Older decisions</h2>"
    } else {
        "<h2>Recent decisions</h2>"
    });
    let actions = &v.overview.actions;
    if actions.is_empty() {
        out.push_str("<p>Nothing recorded yet.</p>");
    } else {
        let replicas = v.replicas.is_some();
        out.push_str(&format!(
            "<table><tr><th>Time (UTC)</th><th>Result</th><th>Alert</th><th>Rule</th><th>Action</th><th>Subject</th><th>Duration</th><th>Detail</th>{}</tr>",
            if replicas { "<th>Replica</th>" } else { "" }
        ));
        for a in actions {
            let dur = a
                .duration_seconds
                .map(|d| format!("{d:.2} s"))
                .unwrap_or_default();
            let repeated = if a.count > 1 {
                format!(
                    "<br><span class=\"m\">{} times since {}</span>",
                    a.count,
                    time(a.first_time)
                )
            } else {
                String::new()
            };
            out.push_str(&format!(
                "<tr><td class=\"t\">{}</td><td class=\"r {result}\">{result}{repeated}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}</tr>",
                time(Some(a.time)),
                escape_html(&a.alertname),
                escape_html(&a.rule),
                escape_html(&a.action),
                escape_html(&a.subject),
                dur,
                escape_html(&a.detail),
                if replicas {
                    format!("<td>{}</td>", escape_html(a.replica.as_deref().unwrap_or("")))
                } else {
                    String::new()
                },
                result = escape_html(&a.result),
            ));
        }
        out.push_str("</table>");
    }
    let mut links = Vec::new();
    if v.before.is_some() {
        links.push("<a href=\"/\">Newest decisions</a>".to_owned());
    }
    if let Some(next) = v.overview.next_before {
        links.push(format!("<a href=\"/?before={next}\">Older decisions</a>"));
    }
    if !links.is_empty() {
        out.push_str(&format!("<p>{}</p>", links.join(" · ")));
    }
    out.push_str(&format!(
        "<p class=\"m\">Alert names, label values and reasons longer than {} bytes are cut and marked …(+N bytes); \
         a denial repeated for one subject is one row with its count.</p>",
        limits::VALUE_BYTES
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_800_000_000.0;

    fn escalation(state: EscalationState) -> EscalationView {
        EscalationView {
            id: 1,
            job_id: Some(1),
            incident_id: Some(1),
            created_at: NOW - 300.0,
            tries: 4,
            delivered_at: Some(NOW - 300.0),
            last_error: None,
            subject: "ghost/sm-ghost".into(),
            state,
            posts: 4,
            failures: 0,
            last_post_at: Some(NOW - 20.0),
            next_post_at: Some(NOW + 40.0),
            resolve_reason: None,
            resolved_at: None,
            alertname: Some("GhostDown".into()),
            rule: Some("ghost-restart".into()),
            target: Some("ghost".into()),
            action: Some("container_start".into()),
            alerts: Some("GhostDown since 2026-11-22T10:00:00Z".into()),
        }
    }

    fn section(active: &[EscalationView], resolved: &[EscalationView], configured: bool) -> String {
        let mut out = String::new();
        escalations_section(&mut out, active, resolved, configured, NOW);
        out
    }

    #[test]
    fn empty_state_says_nobody_was_paged() {
        let html = section(&[], &[], true);
        assert!(html.contains("No escalation: nobody has been paged by the remediator."));
        assert!(!html.contains("<table"), "{html}");
        assert!(section(&[], &[], false).contains("Escalation is not configured"));
    }

    #[test]
    fn delivered_escalation_shows_what_was_escalated_and_the_next_repost() {
        let html = section(&[escalation(EscalationState::Firing)], &[], true);
        for want in [
            "1 active escalation(s)",
            "GhostDown since 2026-11-22T10:00:00Z",
            "ghost-restart",
            "container_start",
            "ghost/sm-ghost",
            "<td>4</td>",
            "class=\"r succeeded\">delivered</span>",
            "(20 s ago)",
            "Next re-post",
            "(in 40 s)",
            "(5 min ago)",
        ] {
            assert!(html.contains(want), "missing {want:?} in {html}");
        }
        assert!(!html.contains("not accepted"), "{html}");
    }

    #[test]
    fn failing_and_pending_posts_show_the_error_and_the_retry_escaped() {
        let mut failing = escalation(EscalationState::Firing);
        failing.failures = 3;
        failing.last_error = Some("connection refused <b>&</b>".into());
        failing.next_post_at = Some(NOW + 8.0);
        let mut never = escalation(EscalationState::Firing);
        never.delivered_at = None;
        never.last_post_at = None;
        never.posts = 0;
        never.failures = 2;
        never.last_error = Some("timeout".into());
        let mut first = escalation(EscalationState::Firing);
        first.delivered_at = None;
        first.last_post_at = None;
        first.next_post_at = Some(NOW);
        let mut resolving = escalation(EscalationState::Resolving);
        resolving.resolve_reason = Some("the alert resolved".into());
        resolving.next_post_at = Some(NOW + 2.0);
        resolving.subject = "<script>x</script>".into();
        let html = section(&[failing, never, first, resolving], &[], true);
        for want in [
            "4 active escalation(s)",
            "3 with a post Alertmanager has not accepted yet",
            "failed 3 time(s) in a row: connection refused &lt;b&gt;&amp;&lt;/b&gt;",
            "Next retry <span class=\"t\">2027-01-15T08:00:08Z <span class=\"m\">(in 8 s)</span></span>.",
            "Never delivered: on-call has not been paged.",
            "the first post is due <span class=\"t\">2027-01-15T08:00:00Z <span class=\"m\">(now)</span></span>.",
            "class=\"r resolving\">resolving</span><br><span class=\"m\">the alert resolved</span>",
            "the resolving post (endsAt = now) is due",
            "&lt;script&gt;x&lt;/script&gt;",
        ] {
            assert!(html.contains(want), "missing {want:?} in {html}");
        }
        assert!(!html.contains("<b>") && !html.contains("<script"), "{html}");
    }

    #[test]
    fn resolved_escalations_follow_with_their_reason() {
        let mut done = escalation(EscalationState::Resolved);
        done.resolve_reason =
            Some("reconciled: the alert is no longer active in Alertmanager".into());
        done.resolved_at = Some(NOW - 7200.0);
        done.next_post_at = None;
        let html = section(&[], std::slice::from_ref(&done), true);
        assert!(
            html.contains("No active escalation: nobody is being paged by the remediator now."),
            "{html}"
        );
        assert!(html.contains("<h3>Recently resolved</h3>"), "{html}");
        assert!(
            html.contains("reconciled: the alert is no longer active"),
            "{html}"
        );
        assert!(html.contains("(2 h 0 min ago)"), "{html}");
    }

    #[test]
    fn decisions_show_counts_and_page_links() {
        let cfg = crate::config::load(None).unwrap();
        let row = crate::store::AuditRow {
            id: 41,
            time: NOW,
            job_id: None,
            incident_id: None,
            rule: "app-down".into(),
            action: "container_restart".into(),
            target: "app".into(),
            subject: "app".into(),
            alertname: "AppDown".into(),
            fingerprint: "f".into(),
            result: "denied".into(),
            detail: "label container=\"x\" names a container outside the allow-list".into(),
            duration_seconds: None,
            accepted_at: None,
            started_at: None,
            count: 3,
            first_time: Some(NOW - 60.0),
            replica: None,
        };
        let overview = Overview {
            actions: vec![row],
            next_before: Some(41),
            incidents: Vec::new(),
            recent_incidents: Vec::new(),
            pending_jobs: Vec::new(),
            escalations: Vec::new(),
        };
        let view = |before| View {
            cfg: &cfg,
            overview: &overview,
            active: &[],
            resolved: &[],
            unmatched: &[],
            before,
            pause: None,
            replicas: None,
            now: NOW,
        };
        let mut html = String::new();
        decisions_section(&mut html, &view(None));
        for want in [
            "<h2>Recent decisions</h2>",
            "3 times since 2027-01-15T07:59:00Z",
            "<a href=\"/?before=41\">Older decisions</a>",
            "longer than 1024 bytes are cut",
        ] {
            assert!(html.contains(want), "missing {want:?} in {html}");
        }
        assert!(!html.contains("Newest decisions"), "{html}");
        let mut older = String::new();
        decisions_section(&mut older, &view(Some(99)));
        assert!(older.contains("<h2>Older decisions</h2>"), "{older}");
        assert!(
            older.contains("<a href=\"/\">Newest decisions</a>"),
            "{older}"
        );
    }
}
