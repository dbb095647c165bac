//! Code that both stackmedic binaries need, written once: command-line flags in the Prometheus
//! exporter convention, logging, strict YAML configuration loading with every problem reported
//! by path and `include` of per-stack files, the exporter-toolkit web configuration (TLS and basic auth), the HTTP server,
//! configuration reload through `POST /-/reload` and SIGHUP, and the `--healthcheck` client of
//! container images.

pub mod cli;
pub mod config;
pub mod errors;
pub mod healthcheck;
pub mod include;
pub mod logging;
pub mod reload;
pub mod runtime;
pub mod server;
pub mod webconfig;

pub use config::{ConfigErrors, Problem};
