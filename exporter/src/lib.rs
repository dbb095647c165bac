//! `stackmedic-exporter`: probes what operators of self-hosted stacks check by hand and
//! publishes it for Prometheus.
//!
//! The binary parses flags and calls [`run`]; everything else lives here so tests can start the
//! exporter on `127.0.0.1:0`.

pub mod board;
pub mod config;
pub mod exposition;
pub mod gzip;
pub mod memory;
pub mod metrics;
pub mod probe;
pub mod runner;
pub mod status_page;
mod support;
mod web;

use std::path::PathBuf;
use std::sync::Arc;

use prometheus::{Gauge, GaugeVec, Opts, Registry};
use stackmedic_common::reload::{self, ReloadMetrics};
use stackmedic_common::server;
use stackmedic_common::webconfig::WebSecurity;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use runner::Runner;

/// The default listen address (outside the 9100–9999 range most exporters use).
pub const DEFAULT_LISTEN_ADDRESS: &str = ":8790";

/// What [`run`] needs besides the listener.
pub struct Options {
    /// The configuration file, re-read on reload; `None` for the embedded default.
    pub config_file: Option<PathBuf>,
    /// The configuration already loaded from it.
    pub config: Config,
    /// TLS and basic auth.
    pub web: WebSecurity,
}

/// Process-wide state behind the HTTP handler.
pub(crate) struct App {
    pub runner: Runner,
    pub registry: Registry,
    pub probes_configured: GaugeVec,
    pub config_file: Option<PathBuf>,
}

impl App {
    fn count_probes(&self, config: &Config) {
        self.probes_configured.reset();
        for p in &config.probes {
            self.probes_configured
                .with_label_values(&[p.kind.name()])
                .inc();
        }
    }
}

/// Runs the exporter until `shutdown` is cancelled.
///
/// # Errors
/// When the initial probes cannot be built or the server fails for good.
pub async fn run(
    listener: TcpListener,
    opts: Options,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let registry = Registry::new();
    let build = Gauge::with_opts(
        Opts::new(
            "stackmedic_exporter_build_info",
            "A metric with a constant 1 labelled with the exporter's version.",
        )
        .const_label("version", env!("CARGO_PKG_VERSION")),
    )?;
    build.set(1.0);
    registry.register(Box::new(build))?;
    let probes_configured = GaugeVec::new(
        Opts::new(
            "stackmedic_exporter_probes",
            "Probes in the running configuration, by kind.",
        ),
        &["kind"],
    )?;
    registry.register(Box::new(probes_configured.clone()))?;
    let reload_metrics = ReloadMetrics::register(&registry, "stackmedic_exporter")?;

    let Options {
        config_file,
        config,
        web,
    } = opts;
    let runner = Runner::new(shutdown.clone())?;
    runner.apply(&config).map_err(anyhow::Error::msg)?;
    let app = Arc::new(App {
        runner,
        registry,
        probes_configured,
        config_file,
    });
    app.count_probes(&config);
    tracing::info!(probes = config.probes.len(), "probes started");
    if config.probes.is_empty() {
        tracing::warn!("{}", config::NO_PROBES);
    }
    // The probes hold what they need of it; kept until the server stops, the parsed
    // configuration would double the memory of ten thousand probes.
    drop(config);

    let reload_app = app.clone();
    let reload_fn: reload::ReloadFn = Arc::new(move || {
        let app = reload_app.clone();
        Box::pin(async move {
            let path = app.config_file.clone();
            let config = tokio::task::spawn_blocking(move || config::load(path.as_deref()))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string().replace('\n', "; "))?;
            app.runner.apply(&config)?;
            app.count_probes(&config);
            if config.probes.is_empty() {
                tracing::warn!("{}", config::NO_PROBES);
            }
            Ok(())
        })
    });
    let reload = reload::spawn(reload_fn, reload_metrics, shutdown.clone());
    let handler = web::handler(app, reload);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(address = %addr, "listening");
    }
    server::serve(listener, web, handler, shutdown).await?;
    Ok(())
}
