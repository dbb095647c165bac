//! TCP ports (the gateway: "ports 80/443 must listen"): connect to an address, optionally run a
//! TLS handshake (exporting the certificate's facts) and optionally read a banner that must
//! match a regex (an SSH or SMTP greeting).

use std::time::Instant;

use serde::Deserialize;
use stackmedic_common::config::{join, Regex};
use stackmedic_common::ConfigErrors;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use super::fetch::TlsOptions;
use super::{certificate, ProbeError, Reason, RunContext};
use crate::metrics::{Family, Samples};
use crate::support::truncate;

static CONNECTED: Family = Family::gauge(
    "stackmedic_tcp_connected",
    "Whether the TCP connection was established (1) or not (0).",
);
static CONNECT_SECONDS: Family = Family::gauge(
    "stackmedic_tcp_connect_seconds",
    "Time until the TCP connection was established, in seconds.",
);
static HANDSHAKE_SECONDS: Family = Family::gauge(
    "stackmedic_tcp_tls_handshake_seconds",
    "With tls: time the TLS handshake took, in seconds.",
);
static BANNER_MATCHED: Family = Family::gauge(
    "stackmedic_tcp_banner_matched",
    "With expect_banner: whether the banner matched (1) or not (0).",
);

fn default_max_banner() -> usize {
    4096
}

/// Settings of a `tcp` probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// `host:port`; the host a name or an IP address (`[::1]:443` for IPv6).
    pub address: String,
    /// Run a TLS handshake after connecting.
    #[serde(default)]
    pub tls: bool,
    /// Trust settings of the handshake.
    #[serde(default)]
    pub tls_config: TlsOptions,
    /// The name the certificate must be valid for; the address's host by default.
    pub server_name: Option<String>,
    /// A regex the first bytes the server sends must match.
    pub expect_banner: Option<Regex>,
    /// Most bytes read while waiting for the banner.
    #[serde(default = "default_max_banner")]
    pub max_banner_bytes: usize,
}

impl TcpConfig {
    /// Checks the address, the server name and the limits; reads the CA file.
    pub fn validate(&mut self, path: &str, errs: &mut ConfigErrors) {
        if split_address(&self.address).is_none() {
            errs.push(
                join(path, "address"),
                format!("{:?} is not host:port", self.address),
            );
        }
        if let Some(n) = &self.server_name {
            if let Err(e) = certificate::server_name(n) {
                errs.push(join(path, "server_name"), e);
            }
        }
        if !self.tls
            && (self.server_name.is_some() || self.tls_config != TlsOptions::default())
            && !errs.has(&join(path, "tls"))
        {
            errs.push(path, "server_name and tls_config need `tls: true`");
        }
        self.tls_config.load(&join(path, "tls_config"), errs);
        if !(1..=65536).contains(&self.max_banner_bytes) {
            errs.push(join(path, "max_banner_bytes"), "must be 1 to 65536");
        }
    }
}

/// `host:port` split into host (brackets of an IPv6 address removed) and port.
fn split_address(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = if let Some(inner) = host.strip_prefix('[') {
        inner.strip_suffix(']')?.to_string()
    } else if host.contains(':') {
        return None;
    } else {
        host.to_string()
    };
    (!host.is_empty()).then_some((host, port))
}

/// A `tcp` probe.
pub struct TcpProbe {
    cfg: TcpConfig,
    host: String,
    port: u16,
}

impl TcpProbe {
    /// Builds the probe.
    ///
    /// # Errors
    /// When the address is not `host:port` (validation reports it first).
    pub fn new(cfg: TcpConfig) -> Result<Self, String> {
        let (host, port) = split_address(&cfg.address)
            .ok_or_else(|| format!("{:?} is not host:port", cfg.address))?;
        Ok(Self { cfg, host, port })
    }

    /// Connects, and shakes hands and reads the banner as configured.
    ///
    /// # Errors
    /// `connect`, `timeout`, `tls` (handshake failed, or the chain did not verify without
    /// `insecure_skip_verify`), `mismatch` (the banner did not match).
    pub async fn run(&self, cx: &RunContext, out: &mut Samples) -> Result<(), ProbeError> {
        let started = Instant::now();
        let target = (self.host.as_str(), self.port);
        let tcp = match tokio::time::timeout_at(cx.deadline(), TcpStream::connect(target)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                out.flag(&CONNECTED, &[], false);
                return Err(ProbeError::new(
                    Reason::Connect,
                    format!("connect {}: {e}", self.cfg.address),
                ));
            }
            Err(_) => {
                out.flag(&CONNECTED, &[], false);
                return Err(cx.expired("connect"));
            }
        };
        out.flag(&CONNECTED, &[], true);
        out.push(&CONNECT_SECONDS, &[], started.elapsed().as_secs_f64());
        if !self.cfg.tls {
            return self.banner(cx, tcp, out).await;
        }
        let name = certificate::server_name(self.cfg.server_name.as_deref().unwrap_or(&self.host))
            .map_err(|e| ProbeError::new(Reason::Tls, e))?;
        let shaking = Instant::now();
        let (stream, facts) = certificate::handshake(cx, tcp, name, &self.cfg.tls_config).await?;
        out.push(&HANDSHAKE_SECONDS, &[], shaking.elapsed().as_secs_f64());
        facts.export(out);
        cx.report(facts.item(stackmedic_common::reload::unix_now()));
        if !self.cfg.tls_config.insecure_skip_verify {
            facts.require_verified()?;
        }
        self.banner(cx, stream, out).await
    }

    async fn banner<S: AsyncRead + Unpin>(
        &self,
        cx: &RunContext,
        mut stream: S,
        out: &mut Samples,
    ) -> Result<(), ProbeError> {
        let Some(re) = &self.cfg.expect_banner else {
            return Ok(());
        };
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        let result = loop {
            if re.get().is_match(&String::from_utf8_lossy(&seen)) {
                break Ok(());
            }
            if seen.len() >= self.cfg.max_banner_bytes {
                break Err("the banner did not match within max_banner_bytes");
            }
            let want = buf.len().min(self.cfg.max_banner_bytes - seen.len());
            match tokio::time::timeout_at(cx.deadline(), stream.read(&mut buf[..want])).await {
                Err(_) => break Err("no matching banner before the run's deadline"),
                Ok(Ok(0)) => break Err("the server closed the connection"),
                Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
                Ok(Err(_)) => break Err("reading the banner failed"),
            }
        };
        out.flag(&BANNER_MATCHED, &[], result.is_ok());
        result.map_err(|why| {
            ProbeError::new(
                Reason::Mismatch,
                format!(
                    "{why}: got {:?}",
                    truncate(&String::from_utf8_lossy(&seen), 80)
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            split_address("127.0.0.1:443"),
            Some(("127.0.0.1".into(), 443))
        );
        assert_eq!(split_address("[::1]:80"), Some(("::1".into(), 80)));
        assert_eq!(
            split_address("gw.home.arpa:22"),
            Some(("gw.home.arpa".into(), 22))
        );
        assert_eq!(split_address("::1:80"), None);
        assert_eq!(split_address("host"), None);
        assert_eq!(split_address("host:0"), None);
        assert_eq!(split_address(":80"), None);
    }
}
