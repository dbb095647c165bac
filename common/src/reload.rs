//! Configuration reload, requested by `POST /-/reload` or SIGHUP, one at a time.
//!
//! A failed reload keeps the running configuration; it shows as
//! `<namespace>_config_last_reload_successful 0` and an error in the log.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use prometheus::{Gauge, Registry};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::server::{self, Request, Response};

/// The binary's reload: loads the configuration again and swaps it in, or fails and keeps it.
pub type ReloadFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

type Reply = oneshot::Sender<Result<(), String>>;

/// Requests reloads from the reload task.
#[derive(Clone)]
pub struct ReloadHandle {
    tx: mpsc::Sender<Reply>,
}

impl ReloadHandle {
    /// Reloads and waits for the outcome.
    ///
    /// # Errors
    /// The reload's error message, or a message when the reload task is gone.
    pub async fn reload(&self) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(reply)
            .await
            .map_err(|_| "reload task stopped".to_string())?;
        rx.await.map_err(|_| "reload task stopped".to_string())?
    }
}

/// Reload metrics, registered under `<namespace>_config_…`.
#[derive(Clone)]
pub struct ReloadMetrics {
    successful: Gauge,
    success_timestamp: Gauge,
}

impl ReloadMetrics {
    /// Registers the gauges, marking the initial load as successful now.
    ///
    /// # Errors
    /// Fails when the names are already registered.
    pub fn register(registry: &Registry, namespace: &str) -> prometheus::Result<Self> {
        let successful = Gauge::new(
            format!("{namespace}_config_last_reload_successful"),
            "Whether the last configuration reload attempt was successful (1) or not (0).",
        )?;
        let success_timestamp = Gauge::new(
            format!("{namespace}_config_last_reload_success_timestamp_seconds"),
            "Unix time of the last successful configuration load.",
        )?;
        registry.register(Box::new(successful.clone()))?;
        registry.register(Box::new(success_timestamp.clone()))?;
        let m = Self {
            successful,
            success_timestamp,
        };
        m.record(true);
        Ok(m)
    }

    fn record(&self, ok: bool) {
        self.successful.set(if ok { 1.0 } else { 0.0 });
        if ok {
            self.success_timestamp.set(unix_now());
        }
    }
}

/// Seconds since the Unix epoch, as a float.
#[must_use]
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Starts the reload task, which also reloads on SIGHUP.
#[must_use]
pub fn spawn(
    reload: ReloadFn,
    metrics: ReloadMetrics,
    shutdown: CancellationToken,
) -> ReloadHandle {
    let (tx, mut rx) = mpsc::channel::<Reply>(8);
    let handle = ReloadHandle { tx };
    let sighup_handle = handle.clone();
    let sighup_shutdown = shutdown.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload");
                return;
            };
            loop {
                tokio::select! {
                    () = sighup_shutdown.cancelled() => return,
                    s = hup.recv() => if s.is_none() { return },
                }
                tracing::info!("SIGHUP received, reloading configuration");
                // The outcome is logged by the reload task.
                let _ = sighup_handle.reload().await;
            }
        }
    });
    tokio::spawn(async move {
        loop {
            let reply = tokio::select! {
                () = shutdown.cancelled() => return,
                r = rx.recv() => match r { Some(r) => r, None => return },
            };
            let result = reload().await;
            match &result {
                Ok(()) => tracing::info!("configuration reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "configuration reload failed; keeping the running configuration")
                }
            }
            metrics.record(result.is_ok());
            let _ = reply.send(result);
        }
    });
    handle
}

/// Answers the lifecycle endpoints `/-/healthy`, `/-/ready` and `/-/reload`, or returns the
/// request untouched for the application's own routes.
///
/// `POST /-/reload` answers 403 unless the server runs with `--web.enable-lifecycle`, as in
/// Prometheus; the web configuration's basic auth has been checked by the server before.
pub async fn lifecycle(
    req: Request,
    reload: &ReloadHandle,
    ready: bool,
) -> Result<Response, Request> {
    match req.uri().path() {
        "/-/healthy" => Ok(server::text(StatusCode::OK, "Healthy.\n")),
        "/-/ready" if ready => Ok(server::text(StatusCode::OK, "Ready.\n")),
        "/-/ready" => Ok(server::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready.\n",
        )),
        "/-/reload" if !server::lifecycle_enabled(&req) => Ok(server::text(
            StatusCode::FORBIDDEN,
            "lifecycle APIs are not enabled: start with --web.enable-lifecycle, or send SIGHUP\n",
        )),
        "/-/reload" if req.method() == Method::POST || req.method() == Method::PUT => {
            Ok(match reload.reload().await {
                Ok(()) => server::text(StatusCode::OK, "configuration reloaded\n"),
                Err(e) => server::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("failed to reload config: {e}\n"),
                ),
            })
        }
        "/-/reload" => Ok(server::text(
            StatusCode::METHOD_NOT_ALLOWED,
            "this endpoint requires a POST request\n",
        )),
        _ => Err(req),
    }
}
