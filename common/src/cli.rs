//! Flags shared by both binaries, named as Prometheus exporters name them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio::net::TcpListener;

use crate::config::ConfigErrors;
use crate::server::Limits;
use crate::webconfig::{self, WebSecurity};

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

    /// Serve `POST /-/reload` (SIGHUP reloads either way). Without it the endpoint answers 403;
    /// with it, the web configuration's basic auth applies when one is configured.
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,

    /// Most connections open at once; a new connection beyond it closes the one that has made
    /// no progress (bytes moved) the longest.
    #[arg(long = "web.max-connections", value_name = "N", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Most connections open at once from one client address, unless the listen address is a
    /// loopback address (0: no limit); a new connection beyond it closes that address's
    /// connection with the least recent progress.
    #[arg(
        long = "web.max-connections-per-address",
        value_name = "N",
        default_value_t = 64
    )]
    pub max_connections_per_address: u32,

    /// Time a client gets from connecting until its request head is complete (TLS handshake
    /// included), and again to send a request body.
    #[arg(long = "web.read-timeout", value_name = "DURATION", default_value = "10s",
          value_parser = parse_positive_duration)]
    pub read_timeout: Duration,

    /// Time a keep-alive connection may stay open with no request in progress.
    #[arg(long = "web.idle-timeout", value_name = "DURATION", default_value = "60s",
          value_parser = parse_positive_duration)]
    pub idle_timeout: Duration,

    /// Bytes of request bodies held in memory at once, all connections together; a request
    /// beyond it gets 503 with Retry-After. Accepts B, KiB, MiB and GiB.
    #[arg(long = "web.max-body-bytes-in-flight", value_name = "SIZE", default_value = "8MiB",
          value_parser = parse_size)]
    pub body_bytes_in_flight: usize,

    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", value_enum, default_value = "info")]
    pub log_level: LogLevel,

    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    pub log_format: LogFormat,
}

impl CommonArgs {
    /// The server's limits as the flags set them.
    #[must_use]
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections as usize,
            max_connections_per_address: self.max_connections_per_address as usize,
            read_timeout: self.read_timeout,
            idle_timeout: self.idle_timeout,
            body_bytes_in_flight: self.body_bytes_in_flight,
        }
    }

    /// Loads `--web.config.file` (if any) and adds the limits and the lifecycle switch of the
    /// flags: everything the server enforces.
    ///
    /// # Errors
    /// Every problem of the web configuration file, with its path.
    pub fn web_security(&self) -> Result<WebSecurity, ConfigErrors> {
        let mut security = webconfig::load(self.web_config_file.as_deref())?;
        security.limits = self.limits();
        security.enable_lifecycle = self.enable_lifecycle;
        Ok(security)
    }

    /// The address to listen on: `--web.listen-address` (or its variable), else `default`.
    #[must_use]
    pub fn listen_address_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.listen_address.as_deref().unwrap_or(default)
    }

    /// Binds [`listen_address_or`](Self::listen_address_or)`(default)`.
    ///
    /// # Errors
    /// When the address is invalid or cannot be bound, naming it.
    pub async fn bind(&self, default: &str) -> anyhow::Result<TcpListener> {
        let address = self.listen_address_or(default);
        crate::server::bind(address)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))
    }

    /// For `--config.check`: prints every problem of `--web.config.file`, each after the
    /// file's path, to standard error, and returns whether the file is valid (true without
    /// one).
    pub fn check_web_config(&self) -> bool {
        let Some(web) = &self.web_config_file else {
            return true;
        };
        match webconfig::load(Some(web)) {
            Ok(_) => true,
            Err(errs) => {
                for p in &errs.problems {
                    eprintln!("{}: {p}", web.display());
                }
                false
            }
        }
    }
}

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let d = crate::config::parse_duration(text)?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// Parses a size such as `16MiB`, `512KiB` or `1048576` (bytes) into bytes.
///
/// # Errors
/// A message naming the accepted units.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 16MiB or 1048576"))?;
    let factor: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown unit {other:?}: use B, KiB, MiB or GiB")),
    };
    let bytes = n
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes == 0 {
        return Err("must be greater than zero".into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared flags as a binary flattens them.
    #[derive(clap::Parser)]
    struct Binary {
        #[command(flatten)]
        common: CommonArgs,
    }

    fn parse(args: &[&str]) -> CommonArgs {
        use clap::Parser as _;
        Binary::try_parse_from(std::iter::once("binary").chain(args.iter().copied()))
            .expect("valid flags")
            .common
    }

    #[test]
    fn listen_address_flag_wins_over_the_default() {
        let args = parse(&["--web.listen-address=127.0.0.1:7"]);
        assert_eq!(args.listen_address_or("127.0.0.1:8"), "127.0.0.1:7");
    }

    #[test]
    fn web_config_check_reports_a_bad_file_and_passes_without_one() {
        assert!(parse(&[]).check_web_config());
        let dir = tempfile::tempdir().expect("tempdir");
        let web = dir.path().join("web.yml");
        std::fs::write(&web, "bogus: 1\n").expect("write");
        let arg = format!("--web.config.file={}", web.display());
        assert!(!parse(&[&arg]).check_web_config());
        std::fs::write(&web, "http_server_config: {}\n").expect("write");
        assert!(parse(&[&arg]).check_web_config());
    }

    #[tokio::test]
    async fn bind_names_the_address_it_could_not_listen_on() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = taken.local_addr().expect("address").to_string();
        let err = parse(&[&format!("--web.listen-address={address}")])
            .bind("127.0.0.1:0")
            .await
            .expect_err("the port is taken");
        assert!(
            err.to_string()
                .starts_with(&format!("cannot listen on {address}: ")),
            "{err}"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("16MB").unwrap_err().contains("KiB"));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }
}
