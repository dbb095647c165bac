//! The HTTP server both binaries run: HTTP/1.1 and HTTP/2, optional TLS and basic auth from the
//! web configuration, a bound on concurrent connections, and graceful stop on cancellation.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::webconfig::WebSecurity;

/// An incoming request.
pub type Request = http::Request<Incoming>;
/// A complete response.
pub type Response = http::Response<Full<Bytes>>;
/// A boxed response future.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response> + Send + 'static>>;
/// The application: turns a request into a response; it must not fail.
pub type Handler = Arc<dyn Fn(Request) -> ResponseFuture + Send + Sync>;

/// Most connections served at once; further clients wait in the accept queue.
const MAX_CONNECTIONS: usize = 512;
/// Time a client gets to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client gets to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `handler` on `listener` until `shutdown` is cancelled.
///
/// # Errors
/// Returns only when accepting connections fails for good.
pub async fn serve(
    listener: TcpListener,
    security: WebSecurity,
    handler: Handler,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let security = Arc::new(security);
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            p = limit.clone().acquire_owned() => p.expect("semaphore never closes"),
        };
        let (stream, remote) = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // Running out of file descriptors is transient; back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let security = security.clone();
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = {
                let security = security.clone();
                hyper::service::service_fn(move |req: Request| {
                    let security = security.clone();
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(respond(&security, &handler, req).await) }
                })
            };
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let result = if let Some(tls) = &security.tls {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let conn = builder.serve_connection(TokioIo::new(s), service);
                        run_conn(conn, &shutdown).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "tls handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "tls handshake timed out");
                        return;
                    }
                }
            } else {
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                run_conn(conn, &shutdown).await
            };
            if let Err(e) = result {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
}

async fn run_conn<F, E>(conn: F, shutdown: &CancellationToken) -> Result<(), E>
where
    F: Future<Output = Result<(), E>>,
{
    tokio::select! {
        r = conn => r,
        // In-flight responses are short; on shutdown the connection is simply dropped.
        () = shutdown.cancelled() => Ok(()),
    }
}

async fn respond(security: &WebSecurity, handler: &Handler, req: Request) -> Response {
    if let Some(auth) = &security.auth {
        if !auth.check(req.headers().get(header::AUTHORIZATION)).await {
            let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"stackmedic\""),
            );
            return r;
        }
    }
    let mut resp = handler(req).await;
    for (name, value) in &security.headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

/// A plain-text response.
#[must_use]
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response {
    with_type(status, "text/plain; charset=utf-8", body.into())
}

/// An HTML response.
#[must_use]
pub fn html(status: StatusCode, body: impl Into<Bytes>) -> Response {
    with_type(status, "text/html; charset=utf-8", body.into())
}

/// A JSON response.
#[must_use]
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    with_type(status, "application/json", body.into())
}

/// A response with the given content type.
#[must_use]
pub fn with_type(status: StatusCode, content_type: &'static str, body: Bytes) -> Response {
    let mut r = http::Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Escapes text for HTML.
#[must_use]
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Binds a listener, accepting `:PORT` for all interfaces as Prometheus tools do.
///
/// # Errors
/// Fails when the address is invalid or cannot be bound.
pub async fn bind(address: &str) -> std::io::Result<TcpListener> {
    let addr = if address.starts_with(':') {
        format!("[::]{address}")
    } else {
        address.to_string()
    };
    match TcpListener::bind(&addr).await {
        Ok(l) => Ok(l),
        // A host without IPv6 cannot bind `[::]`; fall back to IPv4 for `:PORT`.
        Err(_) if address.starts_with(':') => TcpListener::bind(format!("0.0.0.0{address}")).await,
        Err(e) => Err(e),
    }
}
