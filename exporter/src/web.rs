//! HTTP routes: the status page, `/metrics` and the lifecycle endpoints.
//!
//! `/metrics` answers in the format the scraper's `Accept` header prefers (the Prometheus text
//! format, or OpenMetrics as Prometheus asks by default) and gzip-compressed when its
//! `Accept-Encoding` allows, as Prometheus' client libraries do.

use std::io::Write as _;
use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use prometheus::{Encoder, TextEncoder};
use stackmedic_common::reload::{lifecycle, ReloadHandle};
use stackmedic_common::server::{self, Handler, Request, Response};

use crate::metrics::{accepts_gzip, write_registry_open_metrics, Format};
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
                (&Method::GET | &Method::HEAD, "/metrics") => metrics(&app, req.headers()),
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

fn metrics(app: &App, headers: &HeaderMap) -> Response {
    let header_str = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let format = Format::negotiate(header_str(header::ACCEPT));
    let families = app.registry.gather();
    let mut buf = Vec::with_capacity(app.runner.exposition_size_hint());
    match format {
        Format::Text => {
            if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
                tracing::error!(error = %e, "cannot encode metrics");
                return server::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode metrics: {e}\n"),
                );
            }
        }
        Format::OpenMetrics => write_registry_open_metrics(&families, &mut buf),
    }
    // The probes' series come pre-rendered; their families never share a name with the
    // registry's, so the two parts simply follow each other.
    app.runner.render(&mut buf, format);
    if format == Format::OpenMetrics {
        buf.extend_from_slice(b"# EOF\n");
    }
    let gzip = accepts_gzip(header_str(header::ACCEPT_ENCODING)) && buf.len() >= MIN_GZIP_BYTES;
    let body = if gzip { compress(&buf) } else { None };
    let mut resp = match body {
        Some(compressed) => {
            let mut r = server::with_type(StatusCode::OK, format.content_type(), compressed.into());
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        None => server::with_type(StatusCode::OK, format.content_type(), buf.into()),
    };
    // Caches between the exporter and the scraper must keep the encodings apart.
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    resp
}

/// The gzip form of `body`, at the fastest level: a scrape is answered in time, and the text
/// is repetitive enough to shrink about tenfold anyway. `None` if compressing fails (the body
/// is then sent as it is).
fn compress(body: &[u8]) -> Option<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8),
        flate2::Compression::fast(),
    );
    e.write_all(body).ok()?;
    e.finish().ok()
}
