//! The probe families, one module each, behind one enum dispatched by exhaustive `match`.
//!
//! The runner owns everything shared — schedule, deadline, success, duration, last run, failure
//! reason — so a probe only does its own work: it writes its samples and returns `Ok` or a
//! [`ProbeError`]. Samples written before a failure are kept (a 502 still reports its status).
//!
//! **Invariant:** a run ends by its [`RunContext`]'s deadline. Every request and every blocking
//! step of a probe takes the time that is left until then ([`RunContext::remaining`]), so a
//! probe that makes several requests never sets a timeout of its own.

pub mod ads;
pub mod backup;
pub mod certificate;
pub mod containers;
pub mod dns;
pub mod docker_disk;
pub mod error;
pub mod fetch;
mod files;
pub mod filesystem;
pub mod hls;
pub mod json;
pub mod readiness;
pub mod report;
pub mod sri;
pub mod status_path;
pub mod tail;
pub mod tcp;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use stackmedic_common::ConfigErrors;
use tokio::time::Instant;

pub use error::{ProbeError, ProblemKind, Problems, Reason};
pub use report::{Health, Item, Items};

use crate::metrics::Samples;
use fetch::HttpClients;

/// A probe's kind-specific settings; the YAML key names the kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKindConfig {
    /// HTTP(S) readiness, edge and JSON summary checks.
    Http(readiness::HttpConfig),
    /// CORS preflight check.
    Cors(readiness::CorsConfig),
    /// Active sampling of the `X-Status-Path` response header.
    StatusPath(status_path::SampleConfig),
    /// Passive counting of `X-Status-Path` values in an access log.
    AccessLog(status_path::AccessLogConfig),
    /// Containers of a Docker Engine.
    Docker(containers::DockerConfig),
    /// HLS playlist freshness.
    Hls(hls::HlsConfig),
    /// TwinCAT PLC state over ADS, or the app's ADS route status.
    Ads(ads::AdsConfig),
    /// Subresource integrity drift against a manifest.
    Sri(sri::SriConfig),
    /// Age, count and integrity of backup archives.
    Backup(backup::BackupConfig),
    /// A name resolved by the system resolver or a configured server.
    Dns(dns::DnsConfig),
    /// A TCP port: connect, optional TLS handshake and banner.
    Tcp(tcp::TcpConfig),
    /// Space and inodes of a filesystem, and the size of folders.
    Filesystem(filesystem::FilesystemConfig),
    /// Disk usage of a Docker Engine.
    DockerDisk(docker_disk::DockerDiskConfig),
    /// Values and counts read from a JSON API.
    Json(json::JsonConfig),
}

impl ProbeKindConfig {
    /// The kind names, as written in the configuration.
    pub const NAMES: &'static [&'static str] = &[
        "http",
        "cors",
        "status_path",
        "access_log",
        "docker",
        "hls",
        "ads",
        "sri",
        "backup",
        "dns",
        "tcp",
        "filesystem",
        "docker_disk",
        "json",
    ];

    /// The kind name; the `kind` label of the runner's metrics.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::Cors(_) => "cors",
            Self::StatusPath(_) => "status_path",
            Self::AccessLog(_) => "access_log",
            Self::Docker(_) => "docker",
            Self::Hls(_) => "hls",
            Self::Ads(_) => "ads",
            Self::Sri(_) => "sri",
            Self::Backup(_) => "backup",
            Self::Dns(_) => "dns",
            Self::Tcp(_) => "tcp",
            Self::Filesystem(_) => "filesystem",
            Self::DockerDisk(_) => "docker_disk",
            Self::Json(_) => "json",
        }
    }

    /// Checks what deserialization cannot, recording problems under `path`, and reads the
    /// files the probe needs (CA certificates) so that their problems are found at load.
    pub fn validate(&mut self, path: &str, errs: &mut ConfigErrors) {
        match self {
            Self::Http(c) => c.validate(path, errs),
            Self::Cors(c) => c.validate(path, errs),
            Self::StatusPath(c) => c.validate(path, errs),
            Self::AccessLog(c) => c.validate(path, errs),
            Self::Docker(c) => c.validate(path, errs),
            Self::Hls(c) => c.validate(path, errs),
            Self::Ads(c) => c.validate(path, errs),
            Self::Sri(c) => c.validate(path, errs),
            Self::Backup(c) => c.validate(path, errs),
            Self::Dns(c) => c.validate(path, errs),
            Self::Tcp(c) => c.validate(path, errs),
            Self::Filesystem(c) => c.validate(path, errs),
            Self::DockerDisk(c) => c.validate(path, errs),
            Self::Json(c) => c.validate(path, errs),
        }
    }
}

/// What all probes of the process share.
#[derive(Default)]
pub struct Shared {
    /// HTTP clients, one per distinct TLS and redirect setting.
    pub http: HttpClients,
    /// Connections to AMS routers, one per router address and source.
    pub ads: ads::AdsConnections,
    /// Certificate verifiers of the TLS inspection, one per distinct TLS setting.
    pub certificates: certificate::Verifiers,
    /// The certificate facts of each probed `https` endpoint, kept between runs.
    pub facts: certificate::FactsCache,
}

/// What a run gets besides its probe: its deadline, the process's shared resources, and where
/// it reports the things it watches.
pub struct RunContext {
    deadline: Instant,
    timeout: Duration,
    /// Process-wide resources.
    pub shared: Arc<Shared>,
    items: report::Collector,
    /// The leaf certificates the run's HTTPS responses came with, by host and port.
    peer_leaves: std::sync::Mutex<Vec<(String, u16, bytes::Bytes)>>,
}

impl RunContext {
    /// A run that starts now and may take `timeout`.
    #[must_use]
    pub fn new(timeout: Duration, shared: Arc<Shared>) -> Self {
        Self {
            deadline: Instant::now() + timeout,
            timeout,
            shared,
            items: report::Collector::default(),
            peer_leaves: std::sync::Mutex::default(),
        }
    }

    /// Notes the leaf certificate an HTTPS response of this run came with.
    pub fn note_peer_leaf(&self, host: &str, port: u16, leaf: &[u8]) {
        let mut leaves = crate::support::lock(&self.peer_leaves);
        if !leaves.iter().any(|(h, p, _)| h == host && *p == port) && leaves.len() < 8 {
            leaves.push((host.to_string(), port, bytes::Bytes::copy_from_slice(leaf)));
        }
    }

    /// The leaf certificate a response of this run from `host:port` came with, if any.
    #[must_use]
    pub fn peer_leaf(&self, host: &str, port: u16) -> Option<bytes::Bytes> {
        crate::support::lock(&self.peer_leaves)
            .iter()
            .find(|(h, p, _)| h == host && *p == port)
            .map(|(_, _, leaf)| leaf.clone())
    }

    /// Reports one watched thing and how it is, for the status page.
    pub fn report(&self, item: Item) {
        self.items.push(item);
    }

    /// The items reported so far, worst first and bounded; the collection is emptied.
    #[must_use]
    pub fn take_items(&self) -> Items {
        self.items.take()
    }

    /// When the run must have ended.
    #[must_use]
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The time left until the deadline; zero once it has passed.
    #[must_use]
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The probe's configured timeout, for messages.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The error of a step that found no time left.
    #[must_use]
    pub fn expired(&self, what: &str) -> ProbeError {
        ProbeError::new(
            Reason::Timeout,
            format!("{what}: the run's timeout of {:?} has passed", self.timeout),
        )
    }
}

/// A probe instance with whatever state it keeps between runs.
pub enum Probe {
    /// See [`readiness::HttpProbe`].
    Http(Box<readiness::HttpProbe>),
    /// See [`readiness::CorsProbe`].
    Cors(Box<readiness::CorsProbe>),
    /// See [`status_path::SampleProbe`].
    StatusPath(Box<status_path::SampleProbe>),
    /// See [`status_path::AccessLogProbe`].
    AccessLog(Box<status_path::AccessLogProbe>),
    /// See [`containers::DockerProbe`].
    Docker(Box<containers::DockerProbe>),
    /// See [`hls::HlsProbe`].
    Hls(Box<hls::HlsProbe>),
    /// See [`ads::AdsProbe`].
    Ads(Box<ads::AdsProbe>),
    /// See [`sri::SriProbe`].
    Sri(Box<sri::SriProbe>),
    /// See [`backup::BackupProbe`].
    Backup(Box<backup::BackupProbe>),
    /// See [`dns::DnsProbe`].
    Dns(Box<dns::DnsProbe>),
    /// See [`tcp::TcpProbe`].
    Tcp(Box<tcp::TcpProbe>),
    /// See [`filesystem::FilesystemProbe`].
    Filesystem(Box<filesystem::FilesystemProbe>),
    /// See [`docker_disk::DockerDiskProbe`].
    DockerDisk(Box<docker_disk::DockerDiskProbe>),
    /// See [`json::JsonProbe`].
    Json(Box<json::JsonProbe>),
}

impl ProbeKindConfig {
    /// The TLS settings of the kind's HTTP client, if it has one.
    #[must_use]
    pub fn tls(&self) -> Option<&fetch::TlsOptions> {
        match self {
            Self::Http(c) => Some(&c.tls),
            Self::Cors(c) => Some(&c.tls),
            Self::StatusPath(c) => Some(&c.tls),
            Self::Hls(c) => Some(&c.tls),
            Self::Sri(c) => c.base_url.as_ref().map(|_| &c.tls),
            Self::Ads(c) => c.route_status.as_ref().map(|r| &r.tls),
            Self::Json(c) => Some(&c.tls),
            Self::Tcp(c) => c.tls.then_some(&c.tls_config),
            Self::AccessLog(_)
            | Self::Docker(_)
            | Self::Backup(_)
            | Self::Dns(_)
            | Self::Filesystem(_)
            | Self::DockerDisk(_) => None,
        }
    }

    /// The configured `https` URL the kind's requests go to, with the TLS settings of its
    /// client: the endpoint whose certificate facts the runner exports beside each run. `None`
    /// for a kind without one, for a plain `http` URL, and for `tcp`, which reads the facts
    /// from its own handshake.
    #[must_use]
    pub fn https_endpoint(&self) -> Option<(&url::Url, &fetch::TlsOptions)> {
        let (url, tls) = match self {
            Self::Http(c) => (&c.url, &c.tls),
            Self::Cors(c) => (&c.url, &c.tls),
            Self::StatusPath(c) => (&c.url, &c.tls),
            Self::Json(c) => (&c.url, &c.tls),
            Self::Hls(c) => (c.url.as_ref()?, &c.tls),
            Self::Sri(c) => (c.base_url.as_ref()?, &c.tls),
            Self::Ads(c) => c.route_status.as_ref().map(|r| (&r.url, &r.tls))?,
            Self::Tcp(_)
            | Self::AccessLog(_)
            | Self::Docker(_)
            | Self::Backup(_)
            | Self::Dns(_)
            | Self::Filesystem(_)
            | Self::DockerDisk(_) => return None,
        };
        (url.scheme() == "https").then_some((url, tls))
    }
}

impl Probe {
    /// Builds the instance for a validated configuration.
    ///
    /// # Errors
    /// A message when a resource the probe needs cannot be set up (a CA file, a client).
    pub fn build(cfg: &ProbeKindConfig, shared: &Shared) -> Result<Self, String> {
        Ok(match cfg {
            ProbeKindConfig::Http(c) => {
                Self::Http(Box::new(readiness::HttpProbe::new(c.clone(), shared)?))
            }
            ProbeKindConfig::Cors(c) => {
                Self::Cors(Box::new(readiness::CorsProbe::new(c.clone(), shared)?))
            }
            ProbeKindConfig::StatusPath(c) => {
                Self::StatusPath(Box::new(status_path::SampleProbe::new(c.clone(), shared)?))
            }
            ProbeKindConfig::AccessLog(c) => {
                Self::AccessLog(Box::new(status_path::AccessLogProbe::new(c)))
            }
            ProbeKindConfig::Docker(c) => {
                Self::Docker(Box::new(containers::DockerProbe::new(c.clone())?))
            }
            ProbeKindConfig::Hls(c) => Self::Hls(Box::new(hls::HlsProbe::new(c.clone(), shared)?)),
            ProbeKindConfig::Ads(c) => Self::Ads(Box::new(ads::AdsProbe::new(c.clone(), shared)?)),
            ProbeKindConfig::Sri(c) => Self::Sri(Box::new(sri::SriProbe::new(c.clone(), shared)?)),
            ProbeKindConfig::Backup(c) => {
                Self::Backup(Box::new(backup::BackupProbe::new(c.clone())))
            }
            ProbeKindConfig::Dns(c) => Self::Dns(Box::new(dns::DnsProbe::new(c.clone()))),
            ProbeKindConfig::Tcp(c) => Self::Tcp(Box::new(tcp::TcpProbe::new(c.clone())?)),
            ProbeKindConfig::Filesystem(c) => {
                Self::Filesystem(Box::new(filesystem::FilesystemProbe::new(c.clone())))
            }
            ProbeKindConfig::DockerDisk(c) => {
                Self::DockerDisk(Box::new(docker_disk::DockerDiskProbe::new(c.clone())))
            }
            ProbeKindConfig::Json(c) => {
                Self::Json(Box::new(json::JsonProbe::new(c.clone(), shared)?))
            }
        })
    }

    /// Runs once, writing samples into `out`.
    ///
    /// # Errors
    /// The reason the run failed.
    pub async fn run(&self, cx: &RunContext, out: &mut Samples) -> Result<(), ProbeError> {
        match self {
            Self::Http(p) => p.run(cx, out).await,
            Self::Cors(p) => p.run(cx, out).await,
            Self::StatusPath(p) => p.run(cx, out).await,
            Self::AccessLog(p) => p.run(cx, out).await,
            Self::Docker(p) => p.run(cx, out).await,
            Self::Hls(p) => p.run(cx, out).await,
            Self::Ads(p) => p.run(cx, out).await,
            Self::Sri(p) => p.run(cx, out).await,
            Self::Backup(p) => p.run(cx, out).await,
            Self::Dns(p) => p.run(cx, out).await,
            Self::Tcp(p) => p.run(cx, out).await,
            Self::Filesystem(p) => p.run(cx, out).await,
            Self::DockerDisk(p) => p.run(cx, out).await,
            Self::Json(p) => p.run(cx, out).await,
        }
    }
}
