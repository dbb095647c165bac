//! HTTP routes: `POST /webhook`, `GET /api/actions`, `GET /` (HTML), `GET /metrics`, and the
//! lifecycle endpoints from the shared crate.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::{json, Value};
use stackmedic_common::reload::{self, ReloadHandle};
use stackmedic_common::server::{self, escape_html, Request, Response};

use crate::pipeline::{now, Engine};
use crate::webhook::{self, PayloadError};

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
        (&Method::GET, "/") => match engine.store.history(50, now()).await {
            Ok(v) => server::html(StatusCode::OK, page(&engine, &v)),
            Err(e) => server::text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        },
        _ => server::text(StatusCode::NOT_FOUND, "not found\n"),
    }
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
    let too_large = || format!("body larger than {limit} bytes (global.max_body_bytes)");
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return reject(
                engine,
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                too_large(),
            );
        }
    }
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return reject(
                    engine,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    too_large(),
                );
            }
            return reject(
                engine,
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("cannot read the body: {e}"),
            );
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

/// The on-call page: open circuits, pending jobs and recent decisions. Server-rendered, no
/// scripts, no external assets.
fn page(engine: &Engine, h: &Value) -> String {
    let cfg = engine.config();
    let mut out = String::with_capacity(16 * 1024);
    out.push_str(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"30\">\
         <title>stackmedic-remediator</title><style>\
         body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d232a;background:#f7f8fa}\
         h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin-top:1.6rem}\
         table{border-collapse:collapse;width:100%;background:#fff;font-size:.9rem}\
         th,td{border:1px solid #d5d9df;padding:.35rem .5rem;text-align:left;vertical-align:top}\
         th{background:#e9edf2}td.t{white-space:nowrap}.r{font-weight:600}.succeeded{color:#17692f}.failed,.escalated{color:#b3261e}.escalation_resolved{color:#17692f}\
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
