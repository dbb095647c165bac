//! HTTP routes: the status page, `/metrics` and the lifecycle endpoints.

use std::sync::Arc;

use http::{Method, StatusCode};
use prometheus::{Encoder, TextEncoder};
use stackmedic_common::reload::{lifecycle, ReloadHandle};
use stackmedic_common::server::{self, Handler, Request, Response};

use crate::{status_page, App};

pub(crate) fn handler(app: Arc<App>, reload: ReloadHandle) -> Handler {
    Arc::new(move |req: Request| {
        let app = app.clone();
        let reload = reload.clone();
        Box::pin(async move {
            let req = match lifecycle(req, &reload, true).await {
                Ok(resp) => return resp,
                Err(req) => req,
            };
            match (req.method(), req.uri().path()) {
                (&Method::GET | &Method::HEAD, "/metrics") => metrics(&app),
                (&Method::GET | &Method::HEAD, "/") => status_page::response(&app.runner),
                (_, "/metrics" | "/") => {
                    server::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
                }
                _ => server::text(StatusCode::NOT_FOUND, "not found\n"),
            }
        })
    })
}

fn metrics(app: &App) -> Response {
    let families = app.registry.gather();
    let encoder = TextEncoder::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    match encoder.encode(&families, &mut buf) {
        Ok(()) => {
            // The probes' series come pre-rendered; their families never share a name with the
            // registry's, so the two parts simply follow each other.
            app.runner.render(&mut buf);
            server::with_type(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                buf.into(),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            server::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode metrics: {e}\n"),
            )
        }
    }
}
