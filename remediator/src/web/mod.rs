//! HTTP routes: `POST /webhook`, `GET /api/actions`, `GET /` (the on-call page, [`page`]),
//! `GET /metrics`, and the lifecycle endpoints from the shared crate.

pub mod control;
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
use stackmedic_common::webconfig::BasicAuth;

use crate::clock::now;
use crate::limits;
use crate::pipeline::Engine;
use crate::store::views::{ALERTS_SHOWN, MAX_ACTIONS, PAGE_TEXT_BYTES};
use crate::store::{Overview, OverviewLimits, StoreError};
use crate::unmatched::Recent;
use crate::vocab::WebhookResult;
use crate::webhook::{self, PayloadError};

/// Closed incidents listed by the API and the page.
const CLOSED_INCIDENTS: usize = 10;

/// Audit rows of `GET /api/actions` without `limit`.
const DEFAULT_ACTIONS: usize = 100;

/// `GET /api/actions`: one page of the store's overview, the unmatched alerts of the last hour,
/// where the next page starts, and the sizes that bound what is kept.
#[derive(Serialize)]
struct Api {
    #[serde(flatten)]
    overview: Overview,
    unmatched: Vec<Recent>,
    /// On-call's pause in force, if any.
    pause: Option<crate::store::Pause>,
    /// The URL of the next (older) page of `actions`, when there is one.
    next: Option<String>,
    limits: Limits,
}

/// The sizes that bound stored and listed values, so a reader knows what was cut.
#[derive(Serialize)]
struct Limits {
    /// Label and annotation values, alert names and reasons are cut to this many bytes and
    /// marked `…(+N bytes)`.
    value_bytes: usize,
    /// The detail of an audit row about a job (what an action did, such as the files a cleanup
    /// removed) is cut to this many bytes.
    detail_bytes: usize,
    /// Label and annotation names are cut to this many bytes.
    name_bytes: usize,
    /// An alert's labels, and its annotations, keep at most this many bytes.
    labels_bytes: usize,
    /// Fingerprints and start times longer than this are replaced by a digest.
    identity_bytes: usize,
    /// Most audit rows of one page (`limit`).
    actions_per_page: usize,
    /// Most bytes of text of one page of audit rows.
    page_text_bytes: usize,
    /// Alerts listed per incident, the latest ones.
    alerts_per_incident: usize,
}

impl Limits {
    const IN_FORCE: Limits = Limits {
        value_bytes: limits::VALUE_BYTES,
        detail_bytes: limits::DETAIL_BYTES,
        name_bytes: limits::NAME_BYTES,
        labels_bytes: limits::MAP_BYTES,
        identity_bytes: limits::IDENTITY_BYTES,
        actions_per_page: MAX_ACTIONS,
        page_text_bytes: PAGE_TEXT_BYTES,
        alerts_per_incident: ALERTS_SHOWN,
    };
}

/// `limit` and `before` of a history request.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PageQuery {
    limit: usize,
    before: Option<i64>,
}

impl PageQuery {
    /// Reads `limit` (clamped to 1..=[`MAX_ACTIONS`]) and `before` from a query string; a value
    /// that is not a number is ignored.
    fn parse(q: Option<&str>, default_limit: usize) -> PageQuery {
        let value = |key: &str| {
            q.and_then(|q| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v)
            })
        };
        PageQuery {
            limit: value("limit")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(default_limit)
                .clamp(1, MAX_ACTIONS),
            before: value("before").and_then(|v| v.parse::<i64>().ok()),
        }
    }
}

/// Answers one request. `web_auth` is the web configuration's basic auth, which on-call's
/// controls accept beside the webhook's credentials.
pub async fn handle(
    engine: Arc<Engine>,
    reload_handle: ReloadHandle,
    web_auth: Option<Arc<BasicAuth>>,
    req: Request,
) -> Response {
    if req.uri().path() == "/-/ready" {
        if let Some(f) = engine.store.health.failing() {
            return server::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "Not ready: the store cannot write since {}: {}\n",
                    crate::clock::rfc3339(f.since),
                    f.error
                ),
            );
        }
    }
    let req = match reload::lifecycle(req, &reload_handle, true).await {
        Ok(resp) => return resp,
        Err(req) => req,
    };
    if control::is_control(req.uri().path()) {
        return control::handle(&engine, web_auth.as_ref(), req).await;
    }
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
            let page = PageQuery::parse(req.uri().query(), DEFAULT_ACTIONS);
            let limits = OverviewLimits {
                actions: page.limit,
                before: page.before,
                closed_incidents: CLOSED_INCIDENTS,
                escalations: 50,
            };
            let t = now();
            match engine.store.overview(limits, t).await {
                Ok(overview) => {
                    let next = overview
                        .next_before
                        .map(|b| format!("/api/actions?limit={}&before={b}", page.limit));
                    let api = Api {
                        overview,
                        pause: engine.store.paused().await.ok().flatten(),
                        unmatched: engine.unmatched.recent(t),
                        next,
                        limits: Limits::IN_FORCE,
                    };
                    match serde_json::to_vec(&api) {
                        Ok(body) => {
                            server::with_type(StatusCode::OK, "application/json", Bytes::from(body))
                        }
                        Err(e) => server::json(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            &json!({"error": e.to_string()}),
                        ),
                    }
                }
                Err(e) => server::json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"error": e.to_string()}),
                ),
            }
        }
        (&Method::GET, "/metrics") => {
            let m = &engine.metrics;
            let errors = engine.store.health.errors();
            m.store_errors
                .inc_by(errors.saturating_sub(m.store_errors.get()));
            m.store_writable
                .set(i64::from(engine.store.health.failing().is_none()));
            let conflicts = engine
                .store
                .conflicts
                .load(std::sync::atomic::Ordering::Relaxed);
            m.store_conflicts
                .inc_by(conflicts.saturating_sub(m.store_conflicts.get()));
            m.leader.set(i64::from(engine.replica.is_leader()));
            if let Ok(p) = engine.store.paused().await {
                m.paused.set(i64::from(p.is_some()));
                m.pause_until.set(p.and_then(|p| p.until).unwrap_or(0.0));
            }
            if let Ok(g) = engine.store.gauges(now()).await {
                let m = &engine.metrics;
                m.queue_depth.set(g.due_jobs);
                for (state, n) in g.incidents {
                    m.incidents.with_label_values(&[state.as_str()]).set(n);
                }
                m.escalations_pending.set(g.escalations_pending);
                m.escalations_active.set(g.escalations_active);
            }
            engine
                .metrics
                .set_unmatched_dropped(engine.unmatched.dropped());
            server::with_type(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                Bytes::from(engine.metrics.render()),
            )
        }
        (&Method::GET, "/") => {
            let page_query = PageQuery::parse(req.uri().query(), page::DECISIONS_SHOWN);
            let t = now();
            let read = async {
                let limits = OverviewLimits {
                    actions: page::DECISIONS_SHOWN,
                    before: page_query.before,
                    closed_incidents: page::CLOSED_SHOWN,
                    escalations: 0,
                };
                let overview = engine.store.overview(limits, t).await?;
                let escalations = engine
                    .store
                    .escalation_overview(page::RESOLVED_SHOWN)
                    .await?;
                let pause = engine.store.paused().await?;
                Ok::<_, StoreError>((overview, escalations, pause))
            };
            match read.await {
                Ok((overview, (active, resolved), pause)) => {
                    let cfg = engine.config();
                    let view = page::View {
                        cfg: &cfg,
                        overview: &overview,
                        active: &active,
                        resolved: &resolved,
                        unmatched: &engine.unmatched.recent(t),
                        before: page_query.before,
                        now: t,
                        pause,
                        replicas: replicas_line(&engine),
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
        (req.uri().path() == "/webhook" && engine.config().webhook.credentials.is_set())
            || control::own_auth(&engine, req)
    })
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

/// With replicas sharing PostgreSQL: this replica, the leader and how many share the store.
fn replicas_line(engine: &crate::pipeline::Engine) -> Option<String> {
    if engine.store.engine() != crate::store::db::Engine::Postgres {
        return None;
    }
    let me = &engine.store.replica.name;
    let leader = if engine.replica.is_leader() {
        "this replica is the leader".to_string()
    } else {
        match engine.replica.leader_name() {
            Some(l) => format!("the leader is {l}"),
            None => "no replica leads right now".to_string(),
        }
    };
    Some(format!(
        "Replica {me} of {} sharing the store (PostgreSQL); {leader}. Each decision below names the replica that made it.",
        engine.replica.live()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_query_clamps_the_limit_and_reads_the_cursor() {
        let q = |s: &str| PageQuery::parse(Some(s), DEFAULT_ACTIONS);
        assert_eq!(
            PageQuery::parse(None, 50),
            PageQuery {
                limit: 50,
                before: None
            }
        );
        assert_eq!(q("limit=1000").limit, MAX_ACTIONS);
        assert_eq!(q("limit=0").limit, 1);
        assert_eq!(
            q("limit=x&before=y"),
            PageQuery::parse(None, DEFAULT_ACTIONS)
        );
        assert_eq!(
            q("before=42&limit=7"),
            PageQuery {
                limit: 7,
                before: Some(42)
            }
        );
        assert_eq!(q("xlimit=3").limit, DEFAULT_ACTIONS);
    }
}
