//! Flags shared by both binaries, named as Prometheus exporters name them.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `key=value` pairs, one event per line.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Log level threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// Flags every stackmedic binary accepts.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Configuration file; without it the embedded default configuration is used.
    #[arg(long = "config.file", value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// Validate the configuration, print every problem and exit (non-zero when invalid).
    #[arg(long = "config.check")]
    pub config_check: bool,

    /// Print the embedded default configuration (a starting point for --config.file) and exit.
    #[arg(long = "config.print-default")]
    pub config_print_default: bool,

    /// Ask the server listening on --web.listen-address on this host for /-/healthy and exit
    /// 0 when it answers 200 (a container health check without curl).
    #[arg(long = "healthcheck")]
    pub healthcheck: bool,

    /// Address to listen on for the web interface and API.
    #[arg(
        long = "web.listen-address",
        value_name = "HOST:PORT",
        env = "STACKMEDIC_WEB_LISTEN_ADDRESS"
    )]
    pub listen_address: Option<String>,

    /// Web configuration file (TLS and basic auth), in the Prometheus exporter-toolkit format.
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,

    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", value_enum, default_value = "info")]
    pub log_level: LogLevel,

    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    pub log_format: LogFormat,
}
