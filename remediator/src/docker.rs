//! Docker Engines: how each is reached (a Unix socket, or TCP — with client TLS certificates
//! for an engine on another host), the name that tells its containers' subjects apart, and one
//! lazily connected client per distinct engine, shared by the container actions, container
//! resolution and verification.
//!
//! **Invariant:** only the configuration names an engine (the global `docker` section, a
//! target's `docker.host`, or `DOCKER_HOST`); an alert label never chooses one.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256};
use stackmedic_common::config::{self as common, ConfigErrors};
use stackmedic_common::errors::error_chain;
use tokio::sync::Mutex;

/// The local engine's socket, where a Docker Engine listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Time one Docker API request may take.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Time a TCP connection to an engine may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Docker's ports by convention: plain TCP, and TCP with TLS.
const PLAIN_PORT: u16 = 2375;
const TLS_PORT: u16 = 2376;

/// Longest socket path a Unix socket address can hold (`sun_path` less its terminating zero).
const MAX_SOCKET_PATH: usize = 107;

/// Longest host name (a DNS name's limit).
const MAX_HOST: usize = 253;

/// Engines whose clients are kept without being asked for; beyond it, clients idle for
/// [`IDLE_ENGINE`] are dropped (a reload that changes certificates makes a new engine).
const KEPT_ENGINES: usize = 32;
const IDLE_ENGINE: Duration = Duration::from_secs(3600);

/// The keys that name an engine, as written in the global `docker` section or in a target's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineKeys {
    /// `unix:///path`, `tcp://host[:port]`, `https://host[:port]` or `http://host[:port]`.
    pub host: Option<String>,
    /// The CA certificates (PEM) the engine's server certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// This client's certificate (PEM), with its chain.
    pub cert_file: Option<PathBuf>,
    /// This client's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// The name the engine's certificate must carry, when it is not the host of `host`.
    pub tls_server_name: Option<String>,
}

impl EngineKeys {
    fn is_empty(&self) -> bool {
        *self == EngineKeys::default()
    }

    fn tls_given(&self) -> bool {
        self.ca_file.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.tls_server_name.is_some()
    }
}

/// Where an engine listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Address {
    /// A Unix socket, by its absolute path.
    Unix(PathBuf),
    /// A TCP port: an IP address (IPv6 in brackets) or a lower-case host name, and the port.
    Tcp { host: String, port: u16 },
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
            Address::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

/// Client TLS of an engine, built from the files as they were read at load.
#[derive(Clone)]
struct Tls {
    config: Arc<rustls::ClientConfig>,
    /// `tls_server_name`, when given.
    server_name: Option<ServerName<'static>>,
    /// SHA-256 over the files' contents and the server name: changed files make another
    /// client.
    digest: String,
}

/// One Docker Engine as the configuration names it, checked and with its TLS files read.
#[derive(Clone)]
pub struct Engine {
    address: Address,
    tls: Option<Tls>,
    /// The default engine (the global `docker` section, `DOCKER_HOST`, or the local socket):
    /// its containers' subjects carry no engine.
    default: bool,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("address", &self.address.to_string())
            .field("tls", &self.tls.is_some())
            .field("default", &self.default)
            .finish()
    }
}

/// The local socket: the default engine when nothing else names one.
impl Default for Engine {
    fn default() -> Self {
        Engine {
            address: Address::Unix(PathBuf::from(DEFAULT_SOCKET)),
            tls: None,
            default: true,
        }
    }
}

/// Where a problem with an engine's keys is reported.
enum Source<'a> {
    /// Keys of the configuration file under this path.
    File(&'a str),
    /// `DOCKER_HOST`, `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`.
    Environment,
}

impl Source<'_> {
    fn at(&self, key: &str) -> String {
        match self {
            Source::File(path) => common::join(path, key),
            Source::Environment => match key {
                "host" => "DOCKER_HOST".into(),
                "ca_file" | "cert_file" | "key_file" => "DOCKER_CERT_PATH".into(),
                _ => "DOCKER_TLS_VERIFY".into(),
            },
        }
    }
}

impl Engine {
    /// The engine's address, canonical: `unix:///path` or `tcp://host:port`.
    #[must_use]
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Whether this is the default engine.
    #[must_use]
    pub fn is_default(&self) -> bool {
        self.default
    }

    /// ` on <address>` for an engine other than the default, for messages; empty otherwise.
    #[must_use]
    pub fn on(&self) -> String {
        if self.default {
            String::new()
        } else {
            format!(" on {}", self.address)
        }
    }

    /// The subject of container `name` on this engine: `container:NAME` on the default engine,
    /// `container:NAME@ADDRESS` on another, so two containers of one name on two engines are
    /// two subjects and one engine named by two targets is one.
    #[must_use]
    pub fn container_subject(&self, name: &str) -> String {
        if self.default {
            format!("container:{name}")
        } else {
            format!("container:{name}@{}", self.address)
        }
    }

    /// What tells two engine clients apart: the address and the TLS material.
    fn identity(&self) -> String {
        match &self.tls {
            None => self.address.to_string(),
            Some(t) => format!("{} tls:{}", self.address, t.digest),
        }
    }

    /// The default engine: the global `docker` section's keys at `path` when it names a host,
    /// else `DOCKER_HOST` (with the certificates of `DOCKER_CERT_PATH`, or `~/.docker`, when
    /// `DOCKER_TLS_VERIFY` is set, as the Docker CLI reads them), else the local socket.
    pub fn load_default(keys: EngineKeys, path: &str, errs: &mut ConfigErrors) -> Engine {
        if keys.host.is_some() || keys.tls_given() {
            return Self::load_keys(&keys, &Source::File(path), errs)
                .map(|e| Engine { default: true, ..e })
                .unwrap_or_default();
        }
        let Some(host) = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()) else {
            return Engine::default();
        };
        let mut env = EngineKeys {
            host: Some(host),
            ..EngineKeys::default()
        };
        if std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty()) {
            let dir = std::env::var_os("DOCKER_CERT_PATH")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
                .unwrap_or_else(|| PathBuf::from(".docker"));
            env.ca_file = Some(dir.join("ca.pem"));
            env.cert_file = Some(dir.join("cert.pem"));
            env.key_file = Some(dir.join("key.pem"));
        }
        Self::load_keys(&env, &Source::Environment, errs)
            .map(|e| Engine { default: true, ..e })
            .unwrap_or_default()
    }

    /// A target's engine from its `docker` keys at `path`: the default engine when it names
    /// none or names the default's address (its subjects then stay `container:NAME`).
    pub fn load(
        keys: EngineKeys,
        path: &str,
        default: &Arc<Engine>,
        errs: &mut ConfigErrors,
    ) -> Arc<Engine> {
        if keys.is_empty() {
            return default.clone();
        }
        if keys.host.is_none() {
            errs.push(
                path,
                "ca_file, cert_file, key_file and tls_server_name need `host`, the engine they reach",
            );
            return default.clone();
        }
        let Some(engine) = Self::load_keys(&keys, &Source::File(path), errs) else {
            return default.clone();
        };
        let default = same_address(&engine.address, &default.address);
        Arc::new(Engine { default, ..engine })
    }

    /// Parses the address and reads the TLS files, recording every problem.
    fn load_keys(keys: &EngineKeys, at: &Source<'_>, errs: &mut ConfigErrors) -> Option<Engine> {
        let Some(host) = &keys.host else {
            errs.push(
                at.at("host"),
                "missing: ca_file, cert_file, key_file and tls_server_name need the engine's address",
            );
            return None;
        };
        let (address, scheme) = match parse_address(host, keys.tls_given()) {
            Ok(a) => a,
            Err(e) => {
                errs.push(at.at("host"), e);
                return None;
            }
        };
        let tls = match (&address, scheme) {
            (Address::Unix(_), _) => {
                if keys.tls_given() {
                    errs.push(
                        at.at("host"),
                        "a unix:// socket takes no TLS keys (ca_file, cert_file, key_file, tls_server_name)",
                    );
                }
                None
            }
            (Address::Tcp { .. }, Scheme::Plain) => {
                if keys.tls_given() {
                    errs.push(
                        at.at("host"),
                        format!(
                            "{host:?} is plain HTTP: write tcp:// or https:// to use the TLS keys"
                        ),
                    );
                } else if !address.is_loopback() {
                    errs.push(
                        at.at("host"),
                        format!(
                            "{host:?} is plain TCP to another host, which anyone on the network could use as root: give ca_file, cert_file and key_file for TLS"
                        ),
                    );
                }
                None
            }
            (Address::Tcp { .. }, Scheme::Tls) => Some(load_tls(keys, at, errs)?),
        };
        Some(Engine {
            address,
            tls,
            default: false,
        })
    }
}

impl Address {
    fn is_loopback(&self) -> bool {
        match self {
            Address::Unix(_) => true,
            Address::Tcp { host, .. } => {
                host == "localhost"
                    || host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        }
    }
}

/// Whether two addresses reach one engine: equal, or two paths of one socket
/// (`/var/run/docker.sock` and `/run/docker.sock`).
fn same_address(a: &Address, b: &Address) -> bool {
    match (a, b) {
        (Address::Unix(x), Address::Unix(y)) => x == y || canonical(x) == canonical(y),
        _ => a == b,
    }
}

/// A socket path with its folder's symbolic links resolved, as far as they can be now.
fn canonical(p: &Path) -> PathBuf {
    match (p.parent().map(std::fs::canonicalize), p.file_name()) {
        (Some(Ok(dir)), Some(name)) => dir.join(name),
        _ => p.to_path_buf(),
    }
}

/// Whether an address is spoken to in plain HTTP or in TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Plain,
    Tls,
}

/// Parses an engine address: `unix:///path` (or a bare absolute path), `tcp://host[:port]`
/// (TLS when TLS keys are given), `https://host[:port]` (TLS) or `http://host[:port]`.
fn parse_address(text: &str, tls_keys: bool) -> Result<(Address, Scheme), String> {
    let path = text
        .strip_prefix("unix://")
        .or_else(|| text.starts_with('/').then_some(text));
    if let Some(path) = path {
        if !path.starts_with('/') {
            return Err(format!("{text:?}: a unix:// socket needs an absolute path"));
        }
        if path.len() > MAX_SOCKET_PATH {
            return Err(format!(
                "{text:?}: a socket path has at most {MAX_SOCKET_PATH} bytes"
            ));
        }
        return Ok((Address::Unix(PathBuf::from(path)), Scheme::Plain));
    }
    let (scheme, rest) = match text.split_once("://") {
        Some(("tcp", rest)) if tls_keys => (Scheme::Tls, rest),
        Some(("tcp" | "http", rest)) => (Scheme::Plain, rest),
        Some(("https", rest)) => {
            if !tls_keys {
                return Err(format!(
                    "{text:?} is TLS: give ca_file, cert_file and key_file (the engine's CA and this client's certificate)"
                ));
            }
            (Scheme::Tls, rest)
        }
        _ => {
            return Err(format!(
                "{text:?} is not an engine address: write unix:///path, tcp://host:port or https://host:port"
            ))
        }
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "{text:?}: give the engine's host and port only, without a path, query or user"
        ));
    }
    let (host, port) = split_host_port(authority).map_err(|e| format!("{text:?}: {e}"))?;
    let port = match port {
        None if scheme == Scheme::Tls => TLS_PORT,
        None => PLAIN_PORT,
        Some(p) => p,
    };
    Ok((Address::Tcp { host, port }, scheme))
}

/// `host[:port]` with an IPv6 address in brackets; the host checked and in lower case.
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| "an IPv6 address needs its closing bracket".to_string())?;
        ip.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {p:?} after the address"))?,
            ),
        };
        (format!("[{}]", ip.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let host = host.to_ascii_lowercase();
        let valid = !host.is_empty()
            && host.len() <= MAX_HOST
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !valid {
            return Err(format!("{host:?} is not a host name or IPv4 address"));
        }
        (host, port)
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{p:?} is not a port"))?,
        ),
    };
    Ok((host, port))
}

/// Reads and checks the CA, the client certificate and its key, and builds the TLS client
/// configuration from what was read; every problem is recorded with its key's path.
fn load_tls(keys: &EngineKeys, at: &Source<'_>, errs: &mut ConfigErrors) -> Option<Tls> {
    let mut missing = false;
    for (key, file) in [
        ("ca_file", &keys.ca_file),
        ("cert_file", &keys.cert_file),
        ("key_file", &keys.key_file),
    ] {
        if file.is_none() {
            missing = true;
            errs.push(
                at.at(key),
                "missing: client TLS needs ca_file, cert_file and key_file together (the engine's CA, and this client's certificate and key)",
            );
        }
    }
    if missing {
        return None;
    }
    let mut digest = Sha256::new();
    let mut read = |key: &str, file: &Path| -> Option<Vec<u8>> {
        match std::fs::read(file) {
            Ok(bytes) => {
                digest.update((bytes.len() as u64).to_be_bytes());
                digest.update(&bytes);
                Some(bytes)
            }
            Err(e) => {
                errs.push(at.at(key), format!("cannot read {}: {e}", file.display()));
                None
            }
        }
    };
    let ca_path = keys.ca_file.as_deref()?;
    let cert_path = keys.cert_file.as_deref()?;
    let key_path = keys.key_file.as_deref()?;
    let ca = read("ca_file", ca_path);
    let cert = read("cert_file", cert_path);
    let key = read("key_file", key_path);
    let server_name = match &keys.tls_server_name {
        None => None,
        Some(n) => match ServerName::try_from(n.clone()) {
            Ok(s) => {
                digest.update(n.as_bytes());
                Some(s)
            }
            Err(e) => {
                errs.push(
                    at.at("tls_server_name"),
                    format!("{n:?} is not a DNS name or IP address: {e}"),
                );
                None
            }
        },
    };
    let roots = ca.and_then(|pem| {
        let mut roots = rustls::RootCertStore::empty();
        match certificates(&pem) {
            Ok(certs) => {
                for c in certs {
                    if let Err(e) = roots.add(c) {
                        errs.push(at.at("ca_file"), format!("{}: {e}", ca_path.display()));
                        return None;
                    }
                }
                Some(roots)
            }
            Err(e) => {
                errs.push(at.at("ca_file"), format!("{}: {e}", ca_path.display()));
                None
            }
        }
    });
    let chain = cert.and_then(|pem| match certificates(&pem) {
        Ok(c) => Some(c),
        Err(e) => {
            errs.push(at.at("cert_file"), format!("{}: {e}", cert_path.display()));
            None
        }
    });
    let key = key.and_then(|pem| match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(k) => Some(k),
        Err(e) => {
            errs.push(
                at.at("key_file"),
                format!("{}: no PEM private key: {e}", key_path.display()),
            );
            None
        }
    });
    let (roots, chain, key) = (roots?, chain?, key?);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| errs.push(at.at("ca_file"), format!("TLS: {e}")))
        .ok()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            let why = match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "{} is not the key of the certificate in {}",
                    key_path.display(),
                    cert_path.display()
                ),
                other => format!("{}: {other}", key_path.display()),
            };
            errs.push(at.at("key_file"), why);
        })
        .ok()?;
    let digest: String = digest
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(Tls {
        config: Arc::new(config),
        server_name,
        digest,
    })
}

/// The certificates of a PEM bundle; at least one.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

/// The Docker Engines' clients, one per distinct engine (its address and TLS material), each
/// connected on first use and again after a failed connect, negotiating the API version so an
/// older engine is spoken to in its own version.
#[derive(Default)]
pub struct DockerClient {
    engines: std::sync::Mutex<HashMap<String, Arc<Connection>>>,
}

struct Connection {
    client: Mutex<Option<Docker>>,
    last_used: std::sync::Mutex<Instant>,
}

impl DockerClient {
    /// The connected client of `engine`.
    ///
    /// # Errors
    /// When the engine cannot be reached, with the reason (a TLS problem named as such).
    pub async fn get(&self, engine: &Engine) -> Result<Docker, String> {
        let connection = self.connection(engine);
        let mut guard = connection.client.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let at = engine.address();
        let docker = connect(engine)
            .map_err(|e| format!("cannot connect to the Docker Engine at {at}: {e}"))?;
        let docker = docker.negotiate_version().await.map_err(|e| {
            format!(
                "cannot reach the Docker Engine at {at}: {}",
                error_chain(&e)
            )
        })?;
        *guard = Some(docker.clone());
        Ok(docker)
    }

    fn connection(&self, engine: &Engine) -> Arc<Connection> {
        let mut engines = self.engines.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let identity = engine.identity();
        if engines.len() >= KEPT_ENGINES && !engines.contains_key(&identity) {
            engines.retain(|_, c| {
                c.last_used
                    .lock()
                    .map_or(true, |t| now.duration_since(*t) < IDLE_ENGINE)
            });
        }
        let c = engines
            .entry(identity)
            .or_insert_with(|| {
                Arc::new(Connection {
                    client: Mutex::new(None),
                    last_used: std::sync::Mutex::new(now),
                })
            })
            .clone();
        if let Ok(mut t) = c.last_used.lock() {
            *t = now;
        }
        c
    }
}

/// A client of `engine`, not yet connected.
fn connect(engine: &Engine) -> Result<Docker, String> {
    let version = bollard::API_DEFAULT_VERSION;
    match (&engine.address, &engine.tls) {
        (Address::Unix(path), _) => {
            Docker::connect_with_socket(&path.to_string_lossy(), REQUEST_TIMEOUT_SECS, version)
                .map_err(|e| error_chain(&e))
        }
        (Address::Tcp { host, port }, None) => Docker::connect_with_http(
            &format!("tcp://{host}:{port}"),
            REQUEST_TIMEOUT_SECS,
            version,
        )
        .map_err(|e| error_chain(&e)),
        (Address::Tcp { host, port }, Some(tls)) => connect_tls(host, *port, tls),
    }
}

/// A client speaking HTTPS with this process' TLS stack: only the configured CA is trusted,
/// the client certificate is the one read at load, and a failure names the TLS problem.
fn connect_tls(host: &str, port: u16, tls: &Tls) -> Result<Docker, String> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let resolver: Arc<dyn hyper_rustls::ResolveServerName + Send + Sync> = match &tls.server_name {
        Some(name) => Arc::new(hyper_rustls::FixedServerNameResolver::new(name.clone())),
        None => Arc::new(hyper_rustls::DefaultServerNameResolver::default()),
    };
    let https = hyper_rustls::HttpsConnector::new(http, tls.config.clone(), true, resolver);
    // No idle connections kept, as bollard's own transports do: a kept connection the engine
    // closed meanwhile (it restarted) would fail the next request for nothing.
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(https);
    let transport = move |request: bollard::BollardRequest| {
        let client = client.clone();
        async move {
            client
                .request(request)
                .await
                .map_err(|e| bollard::errors::Error::IOError {
                    err: std::io::Error::other(tls_error(&e)),
                })
        }
    };
    Docker::connect_with_custom_transport(
        transport,
        Some(format!("https://{host}:{port}")),
        REQUEST_TIMEOUT_SECS,
        bollard::API_DEFAULT_VERSION,
    )
    .map_err(|e| error_chain(&e))
}

/// A failed request to a TLS engine in words: what TLS found, when it was TLS, and the chain
/// of causes.
fn tls_error(e: &(dyn std::error::Error + 'static)) -> String {
    let text = error_chain(e);
    let hint = if text.contains("invalid peer certificate") {
        "TLS: the engine's certificate is not trusted (it must chain to ca_file and name the host, or tls_server_name): "
    } else if text.contains("received fatal alert") {
        "TLS: the engine refused the handshake (it must trust cert_file, this client's certificate): "
    } else if text.contains("InvalidContentType")
        || text.contains("corrupt message")
        || text.contains("HandshakeFailure")
    {
        "TLS: the handshake failed (does the engine speak TLS on this port?): "
    } else {
        ""
    };
    format!("{hint}{text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str, tls: bool) -> Result<String, String> {
        parse_address(text, tls).map(|(a, _)| a.to_string())
    }

    #[test]
    fn addresses_are_canonical() {
        assert_eq!(
            address("unix:///run/docker.sock", false).unwrap(),
            "unix:///run/docker.sock"
        );
        assert_eq!(
            address("/run/docker.sock", false).unwrap(),
            "unix:///run/docker.sock"
        );
        assert_eq!(
            address("tcp://Docker.Example.org", true).unwrap(),
            "tcp://docker.example.org:2376"
        );
        assert_eq!(
            address("https://10.0.0.5:2376/", true).unwrap(),
            address("tcp://10.0.0.5", true).unwrap()
        );
        assert_eq!(
            address("http://127.0.0.1", false).unwrap(),
            "tcp://127.0.0.1:2375"
        );
        assert_eq!(
            address("tcp://[::1]:2400", true).unwrap(),
            "tcp://[::1]:2400"
        );
        for bad in [
            "unix://relative.sock",
            "ssh://host",
            "tcp://",
            "tcp://host:0",
            "tcp://host:99999",
            "tcp://host/path",
            "tcp://user@host",
            "tcp://bad_host",
            "tcp://[::1",
            "https://host",
        ] {
            assert!(address(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn subjects_carry_the_engine_unless_it_is_the_default() {
        let default = Arc::new(Engine::default());
        let mut errs = ConfigErrors::default();
        let same = Engine::load(
            EngineKeys {
                host: Some(format!("unix://{DEFAULT_SOCKET}")),
                ..EngineKeys::default()
            },
            "targets[0].docker",
            &default,
            &mut errs,
        );
        let other = Engine::load(
            EngineKeys {
                host: Some("unix:///run/other-docker.sock".into()),
                ..EngineKeys::default()
            },
            "targets[1].docker",
            &default,
            &mut errs,
        );
        let loopback = Engine::load(
            EngineKeys {
                host: Some("tcp://127.0.0.1:2375".into()),
                ..EngineKeys::default()
            },
            "targets[2].docker",
            &default,
            &mut errs,
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(same.container_subject("owui"), "container:owui");
        assert_eq!(
            other.container_subject("owui"),
            "container:owui@unix:///run/other-docker.sock"
        );
        assert_eq!(
            loopback.container_subject("owui"),
            "container:owui@tcp://127.0.0.1:2375"
        );
    }

    #[test]
    fn plain_tcp_to_another_host_and_partial_tls_are_refused() {
        let default = Arc::new(Engine::default());
        let mut errs = ConfigErrors::default();
        let load = |host: &str, ca: Option<&str>, errs: &mut ConfigErrors| {
            Engine::load(
                EngineKeys {
                    host: Some(host.into()),
                    ca_file: ca.map(PathBuf::from),
                    ..EngineKeys::default()
                },
                "targets[0].docker",
                &default,
                errs,
            );
        };
        load("tcp://10.0.0.5:2375", None, &mut errs);
        load(
            "tcp://10.0.0.5:2376",
            Some("/nonexistent/ca.pem"),
            &mut errs,
        );
        load("unix:///run/x.sock", Some("/nonexistent/ca.pem"), &mut errs);
        let problems: Vec<String> = errs.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(
            problems[0].contains("plain TCP to another host"),
            "{problems:#?}"
        );
        assert!(
            problems[1].starts_with("targets[0].docker.cert_file: missing"),
            "{problems:#?}"
        );
        assert!(
            problems[2].starts_with("targets[0].docker.key_file: missing"),
            "{problems:#?}"
        );
        assert!(problems[3].contains("takes no TLS keys"), "{problems:#?}");
    }
}
