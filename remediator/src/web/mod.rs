//! HTTP routes: `POST /webhook`, `GET /api/actions`, `GET /` (the on-call page, [`page`]),
//! `GET /metrics`, and the lifecycle endpoints from the shared crate.

mod format;
mod page;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Method, StatusCode};
use serde::Serialize;
use serde_json::json;
use stackmedic_common::reload::{self, ReloadHandle};
use stackmedic_common::server::{self, BodyError, Request, Response};

use crate::clock::now;
use crate::pipeline::Engine;
use crate::store::{Overview, OverviewLimits, StoreError};
use crate::unmatched::Recent;
use crate::vocab::WebhookResult;
use crate::webhook::{self, PayloadError};

/// Closed incidents listed by the API and the page.
const CLOSED_INCIDENTS: usize = 10;

/// `GET /api/actions`: the store's overview and the unmatched alerts of the last hour.
#[derive(Serialize)]
struct Api {
    #[serde(flatten)]
    overview: Overview,
    unmatched: Vec<Recent>,
}

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
            engine.metrics.webhook(WebhookResult::MethodNotAllowed);
            server::text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n")
        }
        (&Method::GET, "/api/actions") => {
            let limits = OverviewLimits {
                actions: query_limit(req.uri().query()),
                closed_incidents: CLOSED_INCIDENTS,
                escalations: 50,
            };
            let t = now();
            match engine.store.overview(limits, t).await {
                Ok(overview) => {
                    let api = Api {
                        overview,
                        unmatched: engine.unmatched.recent(t),
                    };
                    server::json(
                        StatusCode::OK,
                        &serde_json::to_value(&api).unwrap_or_default(),
                    )
                }
                Err(e) => server::json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"error": e.to_string()}),
                ),
            }
        }
        (&Method::GET, "/metrics") => {
            if let Ok(g) = engine.store.gauges(now()).await {
                let m = &engine.metrics;
                m.queue_depth.set(g.due_jobs);
                for (state, n) in g.incidents {
                    m.incidents.with_label_values(&[state.as_str()]).set(n);
                }
                m.escalations_pending.set(g.escalations_pending);
                m.escalations_active.set(g.escalations_active);
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
                let limits = OverviewLimits {
                    actions: 50,
                    closed_incidents: page::CLOSED_SHOWN,
                    escalations: 0,
                };
                let overview = engine.store.overview(limits, t).await?;
                let escalations = engine
                    .store
                    .escalation_overview(page::RESOLVED_SHOWN)
                    .await?;
                Ok::<_, StoreError>((overview, escalations))
            };
            match read.await {
                Ok((overview, (active, resolved))) => {
                    let cfg = engine.config();
                    let view = page::View {
                        cfg: &cfg,
                        overview: &overview,
                        active: &active,
                        resolved: &resolved,
                        unmatched: &engine.unmatched.recent(t),
                        now: t,
                    };
                    server::html(StatusCode::OK, page::render(&view))
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

fn query_limit(q: Option<&str>) -> usize {
    q.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("limit="))
            .and_then(|v| v.parse::<usize>().ok())
    })
    .unwrap_or(100)
    .clamp(1, 1000)
}

fn reject(engine: &Engine, status: StatusCode, result: WebhookResult, message: String) -> Response {
    engine.metrics.webhook(result);
    tracing::warn!(result = %result, %message, "webhook rejected");
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
        let mut r = reject(
            engine,
            StatusCode::UNAUTHORIZED,
            WebhookResult::Unauthorized,
            msg.into(),
        );
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
                    WebhookResult::TooLarge,
                    format!("body larger than {limit} bytes (global.max_body_bytes)"),
                ),
                BodyError::Busy => (WebhookResult::Busy, e.to_string()),
                BodyError::Timeout(_) => (WebhookResult::Timeout, e.to_string()),
                BodyError::Read(_) => (WebhookResult::Malformed, e.to_string()),
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
                WebhookResult::UnsupportedVersion,
                e.to_string(),
            )
        }
        Err(e @ PayloadError::Malformed(_)) => {
            return reject(
                engine,
                StatusCode::BAD_REQUEST,
                WebhookResult::Malformed,
                e.to_string(),
            )
        }
    };
    match engine.accept(&payload).await {
        Ok(s) => {
            engine.metrics.webhook(WebhookResult::Accepted);
            server::json(
                StatusCode::OK,
                &json!({
                    "status": "accepted",
                    "queued": s.queued,
                    "duplicates": s.duplicates,
                    "denied": s.denied,
                    "unmatched": s.unmatched,
                    "resolved": s.resolved,
                    "ignored": s.ignored,
                }),
            )
        }
        Err(e) => {
            // A 5xx makes Alertmanager retry, which is right: nothing was stored.
            tracing::error!(error = %e, "cannot store a webhook");
            engine.metrics.webhook(WebhookResult::StoreError);
            server::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "error", "error": format!("the job could not be stored: {e}")}),
            )
        }
    }
}
