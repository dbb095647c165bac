//! HTTP routes: landing page, `/metrics` and the lifecycle endpoints.

use std::sync::Arc;

use http::{Method, StatusCode};
use prometheus::{Encoder, TextEncoder};
use stackmedic_common::reload::{lifecycle, ReloadHandle};
use stackmedic_common::server::{self, escape_html, Handler, Request, Response};

use crate::App;

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
                (&Method::GET | &Method::HEAD, "/") => landing(&app),
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

fn landing(app: &App) -> Response {
    let mut rows = String::new();
    for slot in app.runner.slots() {
        let (state, reason, detail, when, took) = match slot.last_run() {
            None => (
                "pending",
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ),
            Some(r) => (
                if r.success { "ok" } else { "failing" },
                r.reason.map(|x| x.as_str().to_string()).unwrap_or_default(),
                r.message.unwrap_or_default(),
                format_time(r.finished_at),
                format!("{:.3} s", r.duration),
            ),
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"{state}\">{state}</td><td>{}</td><td class=\"nowrap\">{}</td><td class=\"nowrap\">{}</td><td class=\"detail\">{}</td></tr>\n",
            escape_html(slot.name()),
            slot.kind(),
            escape_html(&reason),
            escape_html(&when),
            escape_html(&took),
            escape_html(&detail),
        ));
    }
    let body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>stackmedic exporter</title>\
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em 1em;text-align:left;vertical-align:top}}\
.ok{{color:#060}}.failing{{color:#b00;font-weight:bold}}.pending{{color:#666}}.detail{{color:#444;font-size:90%;max-width:40em}}.nowrap{{white-space:nowrap}}</style></head>\
<body><h1>stackmedic exporter</h1><p>Version {}</p>\
<ul><li><a href=\"metrics\">Metrics</a></li><li><a href=\"-/healthy\">Health</a></li>\
<li><a href=\"-/ready\">Readiness</a></li></ul>\
<h2>Probes</h2><table><tr><th>Probe</th><th>Kind</th><th>Status</th><th>Reason</th><th>Last run (UTC)</th><th>Took</th><th>Detail</th></tr>\n{rows}</table></body></html>\n",
        env!("CARGO_PKG_VERSION"),
    );
    server::html(StatusCode::OK, body)
}

fn format_time(unix: f64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(unix.max(0.0));
    humantime::format_rfc3339_seconds(t).to_string()
}
