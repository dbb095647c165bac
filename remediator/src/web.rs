//! HTTP routes: `POST /webhook`, `GET /api/actions`, `GET /` (HTML), `GET /metrics`, and the
//! lifecycle endpoints from the shared crate.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Method, StatusCode};
use serde_json::{json, Value};
use stackmedic_common::reload::{self, ReloadHandle};
use stackmedic_common::server::{self, escape_html, BodyError, Request, Response};

use crate::pipeline::{now, Engine};
use crate::store::ESCALATION_RESOLVING;
use crate::webhook::{self, PayloadError};

/// Resolved escalations shown on the page, most recently resolved first.
const RESOLVED_SHOWN: usize = 5;

/// Answers one request.
pub async fn handle(engine: Arc<Engine>, reload_handle: ReloadHandle, req: Request) -> Response {
    let req = match reload::lifecycle(req, &reload_handle, true).await {
        Ok(resp) => return resp,
        Err(req) => req,
    };
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/webhook") => {
            let started = Instant::now();
            let resp = webhook_route(&engine, req).await;
            engine
                .metrics
                .webhook_duration
                .observe(started.elapsed().as_secs_f64());
            resp
        }
        (_, "/webhook") => {
            count(&engine, "method_not_allowed");
            server::text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n")
        }
        (&Method::GET, "/api/actions") => {
            let limit = query_limit(req.uri().query());
            match engine.store.history(limit, now()).await {
                Ok(v) => server::json(StatusCode::OK, &v),
                Err(e) => server::json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"error": e.to_string()}),
                ),
            }
        }
        (&Method::GET, "/metrics") => {
            if let Ok((queued, open, pending, active)) = engine.store.gauges(now()).await {
                engine.metrics.queue_depth.set(queued);
                engine.metrics.circuits_open.set(open);
                engine.metrics.escalations_pending.set(pending);
                engine.metrics.escalations_active.set(active);
            }
            server::with_type(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                Bytes::from(engine.metrics.render()),
            )
        }
        (&Method::GET, "/") => {
            let t = now();
            let read = async {
                let h = engine.store.history(50, t).await?;
                let esc = engine.store.escalation_overview(RESOLVED_SHOWN).await?;
                Ok::<_, crate::store::StoreError>((h, esc))
            };
            match read.await {
                Ok((h, (active, resolved))) => {
                    server::html(StatusCode::OK, page(&engine, &h, &active, &resolved, t))
                }
                Err(e) => server::text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            }
        }
        _ => server::text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Whether the webhook authenticates a request with its own credentials, so the web
/// configuration's basic auth does not apply to it: `POST /webhook` with `webhook` credentials
/// configured. Without them, the web configuration's basic auth protects the webhook too.
pub fn own_auth(engine: Arc<Engine>) -> server::OwnAuth {
    Arc::new(move |req: &Request| {
        req.uri().path() == "/webhook" && engine.config().webhook.credentials.is_set()
    })
}

fn count(engine: &Engine, result: &str) {
    engine.metrics.webhooks.with_label_values(&[result]).inc();
}

fn query_limit(q: Option<&str>) -> usize {
    q.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("limit="))
            .and_then(|v| v.parse::<usize>().ok())
    })
    .unwrap_or(100)
    .clamp(1, 1000)
}

fn reject(engine: &Engine, status: StatusCode, result: &str, message: String) -> Response {
    count(engine, result);
    tracing::warn!(result, %message, "webhook rejected");
    server::json(status, &json!({ "status": "rejected", "error": message }))
}

async fn webhook_route(engine: &Arc<Engine>, req: Request) -> Response {
    let cfg = engine.config();
    if !webhook::authorized(
        &cfg.webhook.credentials,
        req.headers().get(header::AUTHORIZATION),
    ) {
        let msg = if req.headers().contains_key(header::AUTHORIZATION) {
            "wrong credentials"
        } else {
            "missing credentials: send the configured bearer token or basic auth"
        };
        let mut r = reject(engine, StatusCode::UNAUTHORIZED, "unauthorized", msg.into());
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"stackmedic-remediator\""),
        );
        return r;
    }
    let limit = cfg.global.max_body_bytes;
    // Held until the answer: the parsed payload's memory is proportional to it.
    let body = match server::read_body(req, limit).await {
        Ok(b) => b,
        Err(e) => {
            let (result, message) = match &e {
                BodyError::TooLarge { .. } => (
                    "too_large",
                    format!("body larger than {limit} bytes (global.max_body_bytes)"),
                ),
                BodyError::Busy => ("busy", e.to_string()),
                BodyError::Timeout(_) => ("timeout", e.to_string()),
                BodyError::Read(_) => ("malformed", e.to_string()),
            };
            let mut r = reject(engine, e.status(), result, message);
            if matches!(e, BodyError::Busy) {
                server::retry_after(&mut r);
            }
            return r;
        }
    };
    let payload = match webhook::parse(&body) {
        Ok(p) => p,
        Err(e @ PayloadError::Version(_)) => {
            return reject(
                engine,
                StatusCode::BAD_REQUEST,
                "unsupported_version",
                e.to_string(),
            )
        }
        Err(e @ PayloadError::Malformed(_)) => {
            return reject(engine, StatusCode::BAD_REQUEST, "malformed", e.to_string())
        }
    };
    match engine.accept(&payload).await {
        Ok(s) => {
            count(engine, "accepted");
            server::json(
                StatusCode::OK,
                &json!({
                    "status": "accepted",
                    "queued": s.queued,
                    "duplicates": s.duplicates,
                    "denied": s.denied,
                    "unmatched": s.unmatched,
                    "resolved": s.resolved,
                }),
            )
        }
        Err(e) => {
            // A 5xx makes Alertmanager retry, which is right: nothing was stored.
            tracing::error!(error = %e, "cannot store a webhook");
            count(engine, "store_error");
            server::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "error", "error": format!("the job could not be stored: {e}")}),
            )
        }
    }
}

fn fmt_time(t: Option<f64>) -> String {
    match t {
        Some(t) if t > 0.0 => {
            let st = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t);
            humantime::format_rfc3339_seconds(st).to_string()
        }
        _ => String::new(),
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// `t` relative to `now`, for a person: `12 s ago`, `in 3 min`, `now`.
fn fmt_relative(t: f64, now: f64) -> String {
    let d = t - now;
    let a = d.abs();
    if a < 1.0 {
        return "now".into();
    }
    let amount = if a < 60.0 {
        format!("{:.0} s", a.floor())
    } else if a < 3600.0 {
        format!("{:.0} min", (a / 60.0).floor())
    } else if a < 86_400.0 {
        format!(
            "{:.0} h {:.0} min",
            (a / 3600.0).floor(),
            ((a % 3600.0) / 60.0).floor()
        )
    } else {
        format!(
            "{:.0} d {:.0} h",
            (a / 86_400.0).floor(),
            ((a % 86_400.0) / 3600.0).floor()
        )
    };
    if d < 0.0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// An absolute time with its distance from `now`: `2026-11-22T10:00:00Z (3 min ago)`.
fn fmt_when(t: Option<f64>, now: f64) -> String {
    match t {
        Some(t) if t > 0.0 => format!(
            "<span class=\"t\">{} <span class=\"m\">({})</span></span>",
            fmt_time(Some(t)),
            fmt_relative(t, now)
        ),
        _ => String::new(),
    }
}

fn f(v: &Value, k: &str) -> Option<f64> {
    v.get(k).and_then(Value::as_f64)
}

/// The escalation's delivery to Alertmanager: delivered, pending, or failing with the error and
/// the next retry.
fn delivery(e: &Value, now: f64) -> String {
    let failures = e.get("failures").and_then(Value::as_i64).unwrap_or(0);
    let delivered = f(e, "delivered_at").is_some();
    let resolving = s(e, "state") == ESCALATION_RESOLVING;
    let next = fmt_when(f(e, "next_post_at"), now);
    let last = fmt_when(f(e, "last_post_at"), now);
    if failures > 0 {
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
            "<span class=\"r failed\">failing</span>: {what} failed {failures} time(s) in a row: {}. Next retry {next}.{before}",
            escape_html(e.get("last_error").and_then(Value::as_str).unwrap_or("unknown error")),
        )
    } else if resolving {
        format!("<span class=\"r pending\">pending</span>: the resolving post (endsAt = now) is due {next}. Last delivered post {last}.")
    } else if delivered {
        format!("<span class=\"r succeeded\">delivered</span> {last}. Next re-post {next}.")
    } else {
        format!("<span class=\"r pending\">pending</span>: the first post is due {next}.")
    }
}

/// The "Escalations" section: active escalations, then the few most recently resolved ones.
fn escalations_section(
    out: &mut String,
    active: &[Value],
    resolved: &[Value],
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
            .filter(|e| {
                e.get("failures").and_then(Value::as_i64).unwrap_or(0) > 0
                    || f(e, "delivered_at").is_none()
            })
            .count();
        let mut text = format!(
            "{} active escalation(s): StackmedicRemediationFailed is posted to Alertmanager until the alert resolves or its circuit closes.",
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
        out.push_str("<table><tr><th>Since (UTC)</th><th>State</th><th>Alert</th><th>Rule</th><th>Subject</th><th>Posts</th><th>Delivery</th></tr>");
        for e in active {
            let state = s(e, "state");
            let reason = match e.get("resolve_reason").and_then(Value::as_str) {
                Some(r) if state == ESCALATION_RESOLVING => {
                    format!("<br><span class=\"m\">{}</span>", escape_html(r))
                }
                _ => String::new(),
            };
            out.push_str(&format!(
                "<tr><td class=\"t\">{}</td><td><span class=\"r {}\">{}</span>{reason}</td><td>{}</td><td>{}<br><span class=\"m\">{}</span></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                fmt_when(f(e, "created_at"), now),
                escape_html(state),
                escape_html(state),
                escape_html(s(e, "alertname")),
                escape_html(s(e, "rule")),
                escape_html(s(e, "action")),
                escape_html(s(e, "subject")),
                e.get("posts").and_then(Value::as_i64).unwrap_or(0),
                delivery(e, now),
            ));
        }
        out.push_str("</table>");
    }
    if !resolved.is_empty() {
        out.push_str("<h3>Recently resolved</h3><table><tr><th>Resolved (UTC)</th><th>Alert</th><th>Rule</th><th>Subject</th><th>Active since</th><th>Posts</th><th>Why it ended</th></tr>");
        for e in resolved {
            out.push_str(&format!(
                "<tr><td class=\"t\">{}</td><td>{}</td><td>{}<br><span class=\"m\">{}</span></td><td>{}</td><td class=\"t\">{}</td><td>{}</td><td>{}</td></tr>",
                fmt_when(f(e, "resolved_at"), now),
                escape_html(s(e, "alertname")),
                escape_html(s(e, "rule")),
                escape_html(s(e, "action")),
                escape_html(s(e, "subject")),
                fmt_time(f(e, "created_at")),
                e.get("posts").and_then(Value::as_i64).unwrap_or(0),
                escape_html(s(e, "resolve_reason")),
            ));
        }
        out.push_str("</table>");
    }
}

/// The on-call page: open circuits, escalations, pending jobs and recent decisions.
/// Server-rendered, no scripts, no external assets.
fn page(engine: &Engine, h: &Value, active: &[Value], resolved: &[Value], now: f64) -> String {
    let cfg = engine.config();
    let mut out = String::with_capacity(16 * 1024);
    out.push_str(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"30\">\
         <title>stackmedic-remediator</title><style>\
         body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d232a;background:#f7f8fa}\
         h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin-top:1.6rem}h3{font-size:.95rem;margin:1rem 0 .4rem}\
         table{border-collapse:collapse;width:100%;background:#fff;font-size:.9rem}\
         th,td{border:1px solid #d5d9df;padding:.35rem .5rem;text-align:left;vertical-align:top}\
         th{background:#e9edf2}.t{white-space:nowrap}.r{font-weight:600}.succeeded{color:#17692f}.failed,.escalated{color:#b3261e}.escalation_resolved,.resolved{color:#17692f}.firing{color:#b3261e}.resolving,.pending{color:#8a4b00}.m{color:#5a6270;font-size:.85em}\
         .denied,.skipped_circuit_open{color:#8a4b00}.dry_run,.skipped_cooldown,.cancelled,.expired{color:#5a6270}\
         .banner{padding:.5rem .8rem;border-radius:4px;margin:.6rem 0}.open{background:#fde2e0;border:1px solid #b3261e}\
         .ok{background:#e3f4e8;border:1px solid #17692f}.dry{background:#fff4d6;border:1px solid #8a6d00}\
         </style></head><body><h1>stackmedic-remediator</h1>",
    );
    out.push_str(&format!(
        "<p>{} rules, {} targets. <a href=\"/api/actions\">JSON</a> · <a href=\"/metrics\">metrics</a></p>",
        cfg.rules.len(),
        cfg.targets.len()
    ));
    if cfg.global.dry_run {
        out.push_str("<div class=\"banner dry\">Dry run: decisions are recorded, no action is executed.</div>");
    }
    let circuits = h
        .get("open_circuits")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    out.push_str("<h2>Open circuits</h2>");
    if circuits.is_empty() {
        out.push_str("<div class=\"banner ok\">No open circuit: remediation is allowed on every target.</div>");
    } else {
        let paged = if cfg.escalation.is_some() {
            "each was escalated to Alertmanager for on-call"
        } else {
            "no escalation is configured, so nobody was paged"
        };
        out.push_str(&format!(
            "<div class=\"banner open\">{} open circuit(s): no automatic attempts on these until they close; {paged}.</div>",
            circuits.len()
        ));
        out.push_str(
            "<table><tr><th>Subject</th><th>Opened</th><th>Open until</th><th>Reason</th></tr>",
        );
        for c in &circuits {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape_html(s(c, "subject")),
                fmt_time(c.get("opened_at").and_then(Value::as_f64)),
                fmt_time(c.get("open_until").and_then(Value::as_f64)),
                escape_html(s(c, "reason")),
            ));
        }
        out.push_str("</table>");
    }
    escalations_section(&mut out, active, resolved, cfg.escalation.is_some(), now);
    let pending = h
        .get("pending_jobs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !pending.is_empty() {
        out.push_str("<h2>Pending jobs</h2><table><tr><th>Job</th><th>Accepted</th><th>Not before</th><th>Rule</th><th>Action</th><th>Subject</th></tr>");
        for j in &pending {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                j.get("job_id").and_then(Value::as_i64).unwrap_or_default(),
                fmt_time(j.get("accepted_at").and_then(Value::as_f64)),
                fmt_time(j.get("not_before").and_then(Value::as_f64)),
                escape_html(s(j, "rule")),
                escape_html(s(j, "action")),
                escape_html(s(j, "subject")),
            ));
        }
        out.push_str("</table>");
    }
    out.push_str("<h2>Recent decisions</h2>");
    let actions = h
        .get("actions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if actions.is_empty() {
        out.push_str("<p>Nothing recorded yet.</p>");
    } else {
        out.push_str("<table><tr><th>Time (UTC)</th><th>Result</th><th>Alert</th><th>Rule</th><th>Action</th><th>Subject</th><th>Duration</th><th>Detail</th></tr>");
        for a in &actions {
            let result = s(a, "result");
            let dur = a
                .get("duration_seconds")
                .and_then(Value::as_f64)
                .map(|d| format!("{d:.2} s"))
                .unwrap_or_default();
            out.push_str(&format!(
                "<tr><td class=\"t\">{}</td><td class=\"r {}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                fmt_time(a.get("time").and_then(Value::as_f64)),
                escape_html(result),
                escape_html(result),
                escape_html(s(a, "alertname")),
                escape_html(s(a, "rule")),
                escape_html(s(a, "action")),
                escape_html(s(a, "subject")),
                dur,
                escape_html(s(a, "detail")),
            ));
        }
        out.push_str("</table>");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: f64 = 1_800_000_000.0;

    fn escalation(state: &str) -> Value {
        json!({
            "state": state,
            "alertname": "GhostDown",
            "rule": "ghost-restart",
            "action": "container_start",
            "target": "ghost",
            "subject": "ghost/sm-ghost",
            "created_at": NOW - 300.0,
            "posts": 4,
            "failures": 0,
            "delivered_at": NOW - 300.0,
            "last_post_at": NOW - 20.0,
            "next_post_at": NOW + 40.0,
            "resolve_reason": null,
            "resolved_at": null,
            "last_error": null,
        })
    }

    fn section(active: &[Value], resolved: &[Value], configured: bool) -> String {
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
        let html = section(&[escalation("firing")], &[], true);
        for want in [
            "1 active escalation(s)",
            "GhostDown",
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
        assert!(!html.contains("No escalation"), "{html}");
    }

    #[test]
    fn failing_and_pending_posts_show_the_error_and_the_retry_escaped() {
        let mut failing = escalation("firing");
        failing["failures"] = json!(3);
        failing["last_error"] = json!("connection refused <b>&</b>");
        failing["next_post_at"] = json!(NOW + 8.0);
        let mut never = escalation("firing");
        never["delivered_at"] = Value::Null;
        never["last_post_at"] = Value::Null;
        never["posts"] = json!(0);
        never["failures"] = json!(2);
        never["last_error"] = json!("timeout");
        let mut first = escalation("firing");
        first["delivered_at"] = Value::Null;
        first["last_post_at"] = Value::Null;
        first["next_post_at"] = json!(NOW);
        let mut resolving = escalation("resolving");
        resolving["resolve_reason"] = json!("the alert resolved");
        resolving["next_post_at"] = json!(NOW + 2.0);
        resolving["subject"] = json!("<script>x</script>");
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
        let mut done = escalation("resolved");
        done["state"] = json!("resolved");
        done["resolve_reason"] = json!("the circuit closed");
        done["resolved_at"] = json!(NOW - 7200.0);
        done["next_post_at"] = Value::Null;
        let html = section(&[], std::slice::from_ref(&done), true);
        assert!(
            html.contains("No active escalation: nobody is being paged by the remediator now."),
            "{html}"
        );
        assert!(html.contains("<h3>Recently resolved</h3>"), "{html}");
        assert!(html.contains("the circuit closed"), "{html}");
        assert!(html.contains("(2 h 0 min ago)"), "{html}");
        let both = section(&[escalation("firing")], &[done], true);
        assert!(
            both.find("active escalation(s)").unwrap() < both.find("Recently resolved").unwrap(),
            "{both}"
        );
    }

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(fmt_relative(NOW, NOW), "now");
        assert_eq!(fmt_relative(NOW - 12.4, NOW), "12 s ago");
        assert_eq!(fmt_relative(NOW + 150.0, NOW), "in 2 min");
        assert_eq!(
            fmt_relative(NOW - 3.0 * 86_400.0 - 7200.0, NOW),
            "3 d 2 h ago"
        );
    }
}
