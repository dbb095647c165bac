//! Structured logging to standard error, as logfmt or JSON.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::cli::{LogFormat, LogLevel};

/// Libraries whose records are passed on only from `info` up: at `debug` they write a line per
/// statement or connection step (with its parameters), which buries the program's own.
const QUIET_LIBRARIES: &[&str] = &["tokio_postgres", "postgres", "rustls", "hyper", "h2"];

/// Installs the global tracing subscriber.
///
/// # Errors
/// Fails when a global subscriber is already installed.
pub fn init(level: LogLevel, format: LogFormat) -> anyhow::Result<()> {
    let filter = match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    };
    let quiet = filter.min(LevelFilter::INFO);
    let mut filter = tracing_subscriber::filter::Targets::new().with_default(filter);
    for library in QUIET_LIBRARIES {
        filter = filter.with_target(*library, quiet);
    }
    let layer = match format {
        LogFormat::Logfmt => tracing_logfmt::builder()
            .with_span_path(false)
            .layer()
            .map_writer(|_| std::io::stderr)
            .with_filter(filter.clone())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    tracing_subscriber::registry().with(layer).try_init()?;
    Ok(())
}
