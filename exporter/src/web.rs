//! HTTP routes: the status page, `/metrics` and the lifecycle endpoints.
//!
//! `/metrics` answers in the format the scraper's `Accept` header prefers (the Prometheus text
//! format, or OpenMetrics as Prometheus asks by default) and gzip-compressed when its
//! `Accept-Encoding` allows, as Prometheus' client libraries do.

use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use prometheus::{Encoder, TextEncoder};
use stackmedic_common::reload::{lifecycle, ReloadHandle};
use stackmedic_common::server::{self, Handler, Request, Response, ResponseBody};

use crate::exposition::TextBody;
use crate::metrics::{accepts_gzip, write_registry_open_metrics, Format};
use crate::{gzip, status_page, App};

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
                (&Method::GET | &Method::HEAD, "/metrics") => metrics(&app, req.headers()).await,
                (&Method::GET | &Method::HEAD, "/") => status_page::response(&app.runner),
                (_, "/metrics" | "/") => {
                    server::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
                }
                _ => server::text(StatusCode::NOT_FOUND, "not found\n"),
            }
        })
    })
}

/// Below this size a body is sent as it is: compressing it saves less than it costs.
const MIN_GZIP_BYTES: usize = 1024;

async fn metrics(app: &App, headers: &HeaderMap) -> Response {
    let header_str = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let format = Format::negotiate(header_str(header::ACCEPT));
    let families = app.registry.gather();
    let mut head = Vec::new();
    match format {
        Format::Text => {
            if let Err(e) = TextEncoder::new().encode(&families, &mut head) {
                tracing::error!(error = %e, "cannot encode metrics");
                return server::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode metrics: {e}\n"),
                );
            }
        }
        Format::OpenMetrics => write_registry_open_metrics(&families, &mut head),
    }
    // The probes' series come pre-rendered; their families never share a name with the
    // registry's, so the two parts simply follow each other. They are written while the
    // answer is sent (`exposition.rs`), not into one buffer first.
    let exposition = app.runner.exposition();
    let tail: &'static [u8] = match format {
        Format::OpenMetrics => b"# EOF\n",
        Format::Text => b"",
    };
    let len = head.len() + exposition.len(format) + tail.len();
    let gzip = accepts_gzip(header_str(header::ACCEPT_ENCODING)) && len >= MIN_GZIP_BYTES;
    let mut resp = if gzip {
        let body = gzip::stream(head, exposition, format, tail);
        let mut r = server::with_body(StatusCode::OK, format.content_type(), body);
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        let body = ResponseBody::stream(TextBody::new(head, exposition, format, tail));
        server::with_body(StatusCode::OK, format.content_type(), body)
    };
    // Caches between the exporter and the scraper must keep the encodings apart.
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    resp
}
