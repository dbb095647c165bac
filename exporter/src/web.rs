//! HTTP routes: the status page, `/metrics` and the lifecycle endpoints.
//!
//! `/metrics` answers in the format the scraper's `Accept` header prefers (the Prometheus text
//! format, or OpenMetrics as Prometheus asks by default) and gzip-compressed when its
//! `Accept-Encoding` allows, as Prometheus' client libraries do.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use prometheus::{Encoder, TextEncoder};
use stackmedic_common::reload::{lifecycle, ReloadHandle};
use stackmedic_common::server::{self, Handler, Request, Response};

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

/// Most buffers kept for later answers.
const POOLED_BODIES: usize = 1;

/// The buffers of earlier `/metrics` answers, kept for the next ones: the text of ten thousand
/// probes takes 4.4 MB, which would otherwise be allocated, faulted in and freed by each
/// scrape, and left behind in the allocator's arena of each thread that served one.
#[derive(Default)]
pub(crate) struct BodyPool(Arc<Mutex<Vec<Vec<u8>>>>);

impl BodyPool {
    /// An empty buffer with room for `size` bytes.
    fn take(&self, size: usize) -> Vec<u8> {
        let mut buf = crate::support::lock(&self.0).pop().unwrap_or_default();
        buf.clear();
        buf.reserve(size);
        buf
    }

    /// Keeps `buf` for a later answer.
    fn give(pool: &Mutex<Vec<Vec<u8>>>, buf: Vec<u8>) {
        let mut pool = crate::support::lock(pool);
        if pool.len() < POOLED_BODIES {
            pool.push(buf);
        }
    }

    /// A response body that gives its buffer back when the server is done with it.
    fn body(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: self.0.clone(),
        })
    }
}

/// A body whose buffer goes back to its pool when it is dropped.
struct Pooled {
    buf: Vec<u8>,
    pool: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        BodyPool::give(&self.pool, std::mem::take(&mut self.buf));
    }
}

async fn metrics(app: &App, headers: &HeaderMap) -> Response {
    let header_str = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let format = Format::negotiate(header_str(header::ACCEPT));
    let families = app.registry.gather();
    let mut buf = app.bodies.take(app.runner.exposition_size_hint());
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
    // Compressing takes milliseconds of CPU: on the blocking pool, so this runtime's workers
    // keep serving other requests meanwhile. If it fails, the body goes as it is.
    let (buf, compressed) = if gzip {
        tokio::task::spawn_blocking(move || {
            let compressed = gzip::compress(&buf);
            (buf, compressed)
        })
        .await
        .unwrap_or_else(|_| (Vec::new(), None))
    } else {
        (buf, None)
    };
    let (buf, compressed) = match compressed {
        Some(c) => {
            BodyPool::give(&app.bodies.0, buf);
            (Vec::new(), Some(c))
        }
        None => (buf, None),
    };
    let mut resp = match compressed {
        Some(compressed) => {
            let mut r = server::with_type(StatusCode::OK, format.content_type(), compressed.into());
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        None if buf.is_empty() => {
            return server::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot compress the metrics\n",
            )
        }
        None => server::with_type(StatusCode::OK, format.content_type(), app.bodies.body(buf)),
    };
    // Caches between the exporter and the scraper must keep the encodings apart.
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    resp
}
