//! On-call's controls: `POST /api/subjects/{subject}/reset`, `POST /api/pause` and
//! `POST /api/resume`. They act, so they are behind the webhook's credentials or the web
//! configuration's basic auth (either one), and refused without them; with neither configured
//! the remediator listens on loopback only.

use std::sync::Arc;

use http::{header, StatusCode};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::json;
use stackmedic_common::server::{self, Request, Response};
use stackmedic_common::webconfig::BasicAuth;

use crate::pipeline::Engine;
use crate::store::ResetOutcome;
use crate::webhook;

/// Largest body of a control request.
const MAX_BODY: usize = 4096;

/// Longest note kept with a reset.
const MAX_NOTE: usize = 512;

/// The subject of `/api/subjects/{subject}/reset`, percent-decoded; `None` for another path.
#[must_use]
pub fn reset_subject(path: &str) -> Option<String> {
    let inner = path
        .strip_prefix("/api/subjects/")?
        .strip_suffix("/reset")?;
    let subject = percent_decode_str(inner).decode_utf8().ok()?;
    (!subject.is_empty()).then(|| subject.into_owned())
}

/// Whether `path` is one of on-call's controls.
#[must_use]
pub fn is_control(path: &str) -> bool {
    matches!(path, "/api/pause" | "/api/resume") || reset_subject(path).is_some()
}

/// Whether the server leaves a control request's authentication to the handler: when webhook
/// credentials are configured, either they or the web configuration's basic auth may be used,
/// which only the handler can check.
#[must_use]
pub fn own_auth(engine: &Engine, req: &Request) -> bool {
    is_control(req.uri().path()) && engine.config().webhook.credentials.is_set()
}

/// Answers a control request: checks its method and credentials, then runs it.
pub async fn handle(
    engine: &Arc<Engine>,
    web_auth: Option<&Arc<BasicAuth>>,
    req: Request,
) -> Response {
    if req.method() != http::Method::POST {
        return server::text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
    }
    if !authorized(engine, web_auth, &req).await {
        let mut r = server::json(
            StatusCode::UNAUTHORIZED,
            &json!({"status": "rejected", "error": "send the webhook's credentials or a web user's basic auth"}),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer, Basic realm=\"stackmedic\""),
        );
        return r;
    }
    let path = req.uri().path().to_string();
    let body = match server::read_body(req, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return server::json(
                e.status(),
                &json!({"status": "rejected", "error": e.to_string()}),
            )
        }
    };
    match path.as_str() {
        "/api/pause" => pause(engine, &body).await,
        "/api/resume" => resume(engine).await,
        p => match reset_subject(p) {
            Some(subject) => reset(engine, subject, &body).await,
            None => server::text(StatusCode::NOT_FOUND, "not found\n"),
        },
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    reason: String,
    /// The planned end, RFC 3339.
    until: Option<String>,
    /// The planned length (`30m`, `2h`), instead of `until`.
    #[serde(rename = "for")]
    length: Option<String>,
}

/// `POST /api/pause` with `{"reason": "…", "until": "RFC 3339"}` or `{"reason": "…", "for":
/// "2h"}`: no action starts until `POST /api/resume`; alerts are still recorded and incidents
/// opened, held.
async fn pause(engine: &Arc<Engine>, body: &[u8]) -> Response {
    let bad = |msg: String| {
        server::json(
            StatusCode::BAD_REQUEST,
            &json!({"status": "rejected", "error": msg}),
        )
    };
    let parsed: PauseBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => {
            return bad(format!(
                "the body must be {{\"reason\": \"…\", \"until\": \"RFC 3339\"}} or {{\"reason\": \"…\", \"for\": \"2h\"}}: {e}"
            ))
        }
    };
    if parsed.reason.trim().is_empty() {
        return bad("a pause needs a reason".into());
    }
    let now = crate::clock::now();
    let until = match (&parsed.until, &parsed.length) {
        (Some(_), Some(_)) => return bad("give `until` or `for`, not both".into()),
        (Some(u), None) => match crate::clock::parse_rfc3339(u) {
            Some(t) if t > now => Some(t),
            Some(_) => return bad(format!("until {u} is not in the future")),
            None => return bad(format!("until {u:?} is not an RFC 3339 time")),
        },
        (None, Some(l)) => match stackmedic_common::config::parse_duration(l) {
            Ok(d) if !d.is_zero() => Some(now + d.as_secs_f64()),
            Ok(_) => return bad("`for` must be longer than 0s".into()),
            Err(e) => return bad(format!("for {l:?}: {e}")),
        },
        (None, None) => None,
    };
    let reason = crate::limits::cut(parsed.reason.trim(), MAX_NOTE);
    match engine.pause(&reason, until).await {
        Ok(p) => server::json(
            StatusCode::OK,
            &json!({
                "status": "paused",
                "reason": p.reason,
                "since": p.since,
                "until": p.until,
                "message": format!(
                    "paused{}: no action starts until it is resumed; alerts are recorded and incidents opened, held",
                    p.until.map_or(String::new(), |u| format!(" until {} (planned)", crate::clock::rfc3339(u)))
                ),
            }),
        ),
        Err(e) => server::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "error", "error": format!("the pause could not be stored: {e}")}),
        ),
    }
}

/// `POST /api/resume`: the pause ends; held incidents are released, one subject of a target at a
/// time.
async fn resume(engine: &Arc<Engine>) -> Response {
    match engine.resume().await {
        Ok(Some(p)) => server::json(
            StatusCode::OK,
            &json!({
                "status": "resumed",
                "paused_since": p.since,
                "message": "resumed: held incidents act again, one subject of a target at a time",
            }),
        ),
        Ok(None) => server::json(
            StatusCode::OK,
            &json!({"status": "resumed", "message": "the remediator was not paused"}),
        ),
        Err(e) => server::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "error", "error": format!("the resume could not be stored: {e}")}),
        ),
    }
}

/// Checks a control request's credentials (the server checked the web configuration's basic
/// auth already unless [`own_auth`] said otherwise).
async fn authorized(engine: &Engine, web_auth: Option<&Arc<BasicAuth>>, req: &Request) -> bool {
    if !own_auth(engine, req) {
        return true;
    }
    let given = req.headers().get(header::AUTHORIZATION);
    if webhook::authorized(&engine.config().webhook.credentials, given) {
        return true;
    }
    match web_auth {
        Some(auth) => auth.check(given).await,
        None => false,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    #[serde(default)]
    note: String,
}

/// `POST /api/subjects/{subject}/reset` with an optional JSON body `{"note": "…"}`.
async fn reset(engine: &Arc<Engine>, subject: String, body: &[u8]) -> Response {
    let parsed: ResetBody = if body.iter().all(u8::is_ascii_whitespace) {
        ResetBody::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(e) => {
                return server::json(
                    StatusCode::BAD_REQUEST,
                    &json!({"status": "rejected", "error": format!("the body must be {{\"note\": \"…\"}} or empty: {e}")}),
                )
            }
        }
    };
    let note = crate::limits::cut(&parsed.note, MAX_NOTE);
    match engine.reset(&subject, &note).await {
        Ok(ResetOutcome::Reset { closed, requeued }) => server::json(
            StatusCode::OK,
            &json!({
                "status": "reset",
                "subject": subject,
                "incident": closed.id,
                "requeued": requeued.len(),
                "message": format!(
                    "incident {} closed and its page resolves; the flapping history is cleared; {} alert(s) still firing are handled again",
                    closed.id,
                    requeued.len()
                ),
            }),
        ),
        Ok(ResetOutcome::Forgotten) => server::json(
            StatusCode::OK,
            &json!({
                "status": "reset",
                "subject": subject,
                "incident": null,
                "requeued": 0,
                "message": "no incident was open; the flapping history is cleared",
            }),
        ),
        Ok(ResetOutcome::Busy(state)) => server::json(
            StatusCode::CONFLICT,
            &json!({
                "status": "busy",
                "subject": subject,
                "state": state,
                "error": format!("the subject's incident is {state}: it is being remediated; reset applies to an escalated or flapping subject"),
            }),
        ),
        Err(e) => server::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "error", "error": format!("the reset could not be stored: {e}")}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_paths_name_a_percent_encoded_subject() {
        assert_eq!(
            reset_subject("/api/subjects/container:owui/reset").as_deref(),
            Some("container:owui")
        );
        assert_eq!(
            reset_subject("/api/subjects/camera-app%3Fcamera%3Dgarage/reset").as_deref(),
            Some("camera-app?camera=garage")
        );
        assert_eq!(reset_subject("/api/subjects//reset"), None);
        assert_eq!(reset_subject("/api/subjects/x"), None);
        assert_eq!(reset_subject("/api/subjects/%ff/reset"), None);
    }
}
