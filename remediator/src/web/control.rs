//! On-call's controls: `POST /api/subjects/{subject}/reset`. They act, so they are behind the
//! webhook's credentials or the web configuration's basic auth (either one), and refused
//! without them; with neither configured the remediator listens on loopback only.

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

/// Whether the server leaves a control request's authentication to the handler: when webhook
/// credentials are configured, either they or the web configuration's basic auth may be used,
/// which only the handler can check.
#[must_use]
pub fn own_auth(engine: &Engine, req: &Request) -> bool {
    reset_subject(req.uri().path()).is_some() && engine.config().webhook.credentials.is_set()
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
pub async fn reset(
    engine: &Arc<Engine>,
    web_auth: Option<&Arc<BasicAuth>>,
    subject: String,
    req: Request,
) -> Response {
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
    let body = match server::read_body(req, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return server::json(
                e.status(),
                &json!({"status": "rejected", "error": e.to_string()}),
            )
        }
    };
    let parsed: ResetBody = if body.iter().all(u8::is_ascii_whitespace) {
        ResetBody::default()
    } else {
        match serde_json::from_slice(&body) {
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
