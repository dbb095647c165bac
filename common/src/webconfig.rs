//! The web configuration file of the Prometheus exporter-toolkit: TLS, client certificates,
//! basic auth with bcrypt hashes and extra response headers.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.crt
//!   min_version: TLS12
//! basic_auth_users:
//!   prometheus: $2y$10$...
//! http_server_config:
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::config::{self, ConfigErrors};
use crate::server::{Limits, OwnAuth};

/// bcrypt verifications running at once: each takes tens of milliseconds of CPU, and a flood of
/// wrong passwords must not take every core (verified credentials are cached and skip this).
const CONCURRENT_VERIFICATIONS: usize = 2;
/// A verification waiting longer than this for its turn fails: under such a flood, refusing is
/// better than queueing without bound.
const VERIFY_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// The password of the dummy hash an unknown user is checked against.
const DUMMY_PASSWORD: &str = "stackmedic: no such user";

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
    http_server_config: Option<HttpServerConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    client_auth_type: ClientAuthType,
    client_ca_file: Option<PathBuf>,
    min_version: Option<TlsVersion>,
}

#[derive(Debug, Deserialize, Default, PartialEq, Eq)]
enum ClientAuthType {
    #[default]
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
enum TlsVersion {
    TLS12,
    TLS13,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpServerConfig {
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// What the server enforces: TLS, basic auth and extra headers from the web configuration
/// file; limits against hostile clients and the lifecycle switch from the `--web.*` flags; and
/// which requests the application authenticates itself.
#[derive(Clone, Default)]
pub struct WebSecurity {
    /// TLS acceptor when TLS is configured.
    pub tls: Option<TlsAcceptor>,
    /// Basic auth users when any are configured.
    pub auth: Option<Arc<BasicAuth>>,
    /// Headers added to every response.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Connection, timeout and body-memory limits.
    pub limits: Limits,
    /// Whether `POST /-/reload` is served (`--web.enable-lifecycle`); 403 otherwise.
    pub enable_lifecycle: bool,
    /// Requests the handler authenticates with credentials of its own, exempt from `auth`.
    pub own_auth: Option<OwnAuth>,
}

impl std::fmt::Debug for WebSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSecurity")
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth.is_some())
            .field("limits", &self.limits)
            .field("enable_lifecycle", &self.enable_lifecycle)
            .field("own_auth", &self.own_auth.is_some())
            .finish()
    }
}

/// Basic auth against bcrypt hashes, with a cache of verified credentials so that bcrypt's
/// deliberate slowness is paid once per credential rather than on every scrape.
///
/// Every rejection costs the same bcrypt work, whatever the costs of the configured hashes, so
/// user names cannot be told apart by timing: an unknown user is checked against a dummy hash
/// of the highest configured cost, and a wrong password of a user whose hash is cheaper is
/// followed by checks against dummy hashes of that cost up to one below the highest. bcrypt's
/// work doubles with each cost step, so `2^c + 2^c + 2^(c+1) + … + 2^(max-1) = 2^max`: the
/// same work as one check at the highest cost.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// Hashes of [`DUMMY_PASSWORD`] by cost, from the lowest configured cost to the highest.
    dummies: BTreeMap<u32, String>,
    max_cost: u32,
    verified: Mutex<HashSet<[u8; 32]>>,
    verifying: Semaphore,
}

impl BasicAuth {
    /// Users and their bcrypt hashes; computes the dummy hashes (together about twice the work
    /// of one check at the highest cost).
    #[must_use]
    pub fn new(users: BTreeMap<String, String>) -> Self {
        let costs: Vec<u32> = users.values().filter_map(|h| bcrypt_cost(h)).collect();
        let max_cost = costs.iter().copied().max().unwrap_or(bcrypt::DEFAULT_COST);
        let min_cost = costs.iter().copied().min().unwrap_or(max_cost).max(4);
        let dummies = (min_cost..=max_cost)
            .filter_map(|c| Some((c, bcrypt::hash(DUMMY_PASSWORD, c).ok()?)))
            .collect();
        Self {
            users,
            dummies,
            max_cost,
            verified: Mutex::new(HashSet::new()),
            verifying: Semaphore::new(CONCURRENT_VERIFICATIONS),
        }
    }

    /// The dummy hashes checked after a wrong password for a hash of cost `cost` (none for an
    /// unknown user, who is checked against the highest-cost dummy instead of a hash).
    fn padding(&self, cost: Option<u32>) -> Vec<String> {
        match cost {
            Some(c) if c < self.max_cost => self
                .dummies
                .range(c..self.max_cost)
                .map(|(_, h)| h.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Checks an `Authorization` header value.
    pub async fn check(self: &Arc<Self>, header: Option<&http::HeaderValue>) -> bool {
        let Some((user, pass)) = header.and_then(parse_basic) else {
            return false;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(h) => (h.clone(), true),
            None => (
                self.dummies
                    .get(&self.max_cost)
                    .cloned()
                    .unwrap_or_default(),
                false,
            ),
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(pass.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        if known && self.verified.lock().is_ok_and(|v| v.contains(&key)) {
            return true;
        }
        let padding = if known {
            self.padding(bcrypt_cost(&hash))
        } else {
            Vec::new()
        };
        let Ok(Ok(_turn)) =
            tokio::time::timeout(VERIFY_QUEUE_TIMEOUT, self.verifying.acquire()).await
        else {
            return false;
        };
        let matched = tokio::task::spawn_blocking(move || {
            let matched = bcrypt::verify(&pass, &hash).unwrap_or(false);
            if !matched {
                for dummy in &padding {
                    // Only the time it takes matters.
                    let _ = bcrypt::verify(&pass, dummy);
                }
            }
            matched
        })
        .await
        .unwrap_or(false);
        let ok = known && matched;
        if ok {
            if let Ok(mut v) = self.verified.lock() {
                // Bounded: a flood of distinct valid credentials is not a realistic case, but
                // the cache must not grow without limit either way.
                if v.len() > 1024 {
                    v.clear();
                }
                v.insert(key);
            }
        }
        ok
    }
}

/// The cost of a bcrypt hash (`$2y$10$…` → 10).
fn bcrypt_cost(hash: &str) -> Option<u32> {
    hash.split('$').nth(2)?.parse().ok()
}

fn parse_basic(value: &http::HeaderValue) -> Option<(String, String)> {
    let text = value.to_str().ok()?;
    let (scheme, rest) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// A web configuration file, parsed and checked, before any file it names is read.
#[derive(Debug)]
pub struct WebConfig {
    file: WebConfigFile,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// Parses and checks the text of a web configuration file without reading the files it names
/// (certificates, keys): everything that can be wrong in the text itself.
///
/// # Errors
/// Every problem of the text, with its path.
pub fn parse(text: &[u8]) -> Result<WebConfig, ConfigErrors> {
    let mut errs = ConfigErrors::default();
    let Ok(text) = std::str::from_utf8(text) else {
        errs.push("", "the file is not valid UTF-8");
        return Err(errs);
    };
    let value = match config::parse_yaml(text) {
        Ok(v) => v,
        Err(e) => {
            errs.push("", e);
            return Err(errs);
        }
    };
    let Some(file) = config::typed::<WebConfigFile>(&value, "", &mut errs) else {
        return Err(errs);
    };
    for (user, hash) in &file.basic_auth_users {
        if bcrypt_cost(hash).is_none() || !hash.starts_with("$2") {
            errs.push(
                format!("basic_auth_users.{user}"),
                "expected a bcrypt hash (starting with $2a$, $2b$ or $2y$)",
            );
        }
    }
    if let Some(tls) = &file.tls_server_config {
        if tls.client_auth_type != ClientAuthType::NoClientCert
            && tls.client_ca_file.is_none()
            && !errs.has("tls_server_config.client_ca_file")
        {
            errs.push(
                "tls_server_config.client_ca_file",
                "required when client_auth_type asks for client certificates",
            );
        }
    }
    let mut headers = Vec::new();
    if let Some(h) = &file.http_server_config {
        for (name, value) in &h.headers {
            match (
                http::HeaderName::try_from(name.as_str()),
                http::HeaderValue::try_from(value.as_str()),
            ) {
                (Ok(n), Ok(v)) => headers.push((n, v)),
                _ => errs.push(
                    format!("http_server_config.headers.{name}"),
                    "invalid header name or value",
                ),
            }
        }
    }
    errs.into_result(WebConfig { file, headers })
}

/// Loads a web configuration file; `None` means plain HTTP without auth.
///
/// Relative paths inside the file are resolved against the file's folder, as the
/// exporter-toolkit does.
///
/// # Errors
/// Every problem of the file, with its path.
pub fn load(path: Option<&Path>) -> Result<WebSecurity, ConfigErrors> {
    let Some(path) = path else {
        return Ok(WebSecurity::default());
    };
    let text = std::fs::read(path).map_err(|e| {
        let mut errs = ConfigErrors::default();
        errs.push("", format!("cannot read {}: {e}", path.display()));
        errs
    })?;
    let parsed = parse(&text).map_err(|mut errs| {
        // A YAML syntax error is about the document: name the file as read_yaml_file does.
        for p in &mut errs.problems {
            if p.path.is_empty() {
                p.message = format!("{}: {}", path.display(), p.message);
            }
        }
        errs
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut errs = ConfigErrors::default();
    let mut sec = WebSecurity {
        headers: parsed.headers,
        ..WebSecurity::default()
    };
    if let Some(tls) = &parsed.file.tls_server_config {
        match build_tls(tls, base) {
            Ok(acceptor) => sec.tls = Some(acceptor),
            Err((field, msg)) => errs.push(format!("tls_server_config.{field}"), msg),
        }
    }
    if !parsed.file.basic_auth_users.is_empty() {
        sec.auth = Some(Arc::new(BasicAuth::new(parsed.file.basic_auth_users)));
    }
    errs.into_result(sec)
}

fn build_tls(tls: &TlsServerConfig, base: &Path) -> Result<TlsAcceptor, (&'static str, String)> {
    let cert_path = base.join(&tls.cert_file);
    let key_path = base.join(&tls.key_file);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            (
                "cert_file",
                format!("cannot load {}: {e}", cert_path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err((
            "cert_file",
            format!("no certificate in {}", cert_path.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
        (
            "key_file",
            format!("cannot load {}: {e}", key_path.display()),
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        Some(TlsVersion::TLS13) => &[&rustls::version::TLS13],
        _ => &[&rustls::version::TLS12, &rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| ("min_version", e.to_string()))?;
    let builder = if tls.client_auth_type == ClientAuthType::NoClientCert {
        builder.with_no_client_auth()
    } else {
        let Some(ca) = &tls.client_ca_file else {
            return Err((
                "client_ca_file",
                "required when client_auth_type asks for client certificates".into(),
            ));
        };
        let ca_path = base.join(ca);
        let mut roots = rustls::RootCertStore::empty();
        let cas = CertificateDer::pem_file_iter(&ca_path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                (
                    "client_ca_file",
                    format!("cannot load {}: {e}", ca_path.display()),
                )
            })?;
        for c in cas {
            roots
                .add(c)
                .map_err(|e| ("client_ca_file", e.to_string()))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        let verifier = match tls.client_auth_type {
            ClientAuthType::RequireAndVerifyClientCert | ClientAuthType::RequireAnyClientCert => {
                verifier
            }
            _ => verifier.allow_unauthenticated(),
        };
        builder.with_client_cert_verifier(
            verifier
                .build()
                .map_err(|e| ("client_ca_file", e.to_string()))?,
        )
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| ("key_file", format!("certificate and key do not match: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_keys_and_plain_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("web.yml");
        std::fs::write(&p, "basic_auth_users:\n  alice: secret\nfoo: 1\n").unwrap();
        let errs = load(Some(&p)).unwrap_err();
        assert!(errs.to_string().contains("unknown field `foo`"), "{errs}");
        std::fs::write(&p, "basic_auth_users:\n  alice: secret\n").unwrap();
        let errs = load(Some(&p)).unwrap_err();
        assert_eq!(errs.problems[0].path, "basic_auth_users.alice");
    }

    #[tokio::test]
    async fn basic_auth_checks_bcrypt() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth = Arc::new(BasicAuth::new([("alice".to_string(), hash)].into()));
        let good = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let bad = base64::engine::general_purpose::STANDARD.encode("alice:nope");
        let hv = |s: String| http::HeaderValue::from_str(&format!("Basic {s}")).unwrap();
        assert!(auth.check(Some(&hv(good.clone()))).await);
        assert!(auth.check(Some(&hv(good))).await);
        assert!(!auth.check(Some(&hv(bad))).await);
        assert!(!auth.check(None).await);
    }

    #[tokio::test]
    async fn an_unknown_user_is_checked_against_a_hash_of_the_highest_cost() {
        let low = bcrypt::hash("a", 4).unwrap();
        let high = bcrypt::hash("b", 6).unwrap();
        let auth = Arc::new(BasicAuth::new(
            [("low".to_string(), low), ("high".to_string(), high)].into(),
        ));
        assert_eq!(bcrypt_cost(&auth.dummies[&auth.max_cost]), Some(6));
        let hv = |s: &str| {
            let v = base64::engine::general_purpose::STANDARD.encode(s);
            http::HeaderValue::from_str(&format!("Basic {v}")).unwrap()
        };
        // Not even the dummy hash's own password lets an unknown user in.
        assert!(
            !auth
                .check(Some(&hv(&format!("nobody:{DUMMY_PASSWORD}"))))
                .await
        );
        assert!(auth.check(Some(&hv("high:b"))).await);
    }

    /// bcrypt's work for a hash of cost `c`, in units of the cheapest (cost 4).
    fn work(cost: u32) -> u64 {
        1 << (cost - 4)
    }

    #[test]
    fn every_rejection_costs_the_work_of_the_highest_cost() {
        let users: BTreeMap<String, String> = [("a", 4), ("b", 5), ("c", 7), ("d", 7)]
            .into_iter()
            .map(|(u, c)| (u.to_string(), bcrypt::hash("pw", c).unwrap()))
            .collect();
        let auth = BasicAuth::new(users.clone());
        assert_eq!(auth.max_cost, 7);
        let unknown = work(bcrypt_cost(&auth.dummies[&auth.max_cost]).unwrap());
        assert_eq!(unknown, work(7));
        for (user, hash) in &users {
            let cost = bcrypt_cost(hash).unwrap();
            let padded: u64 = work(cost)
                + auth
                    .padding(Some(cost))
                    .iter()
                    .map(|h| work(bcrypt_cost(h).unwrap()))
                    .sum::<u64>();
            assert_eq!(padded, unknown, "a wrong password for {user} (cost {cost})");
        }
    }

    /// Measured, with a margin far wider than a busy machine's noise and far narrower than the
    /// difference without padding (cost 4 against cost 10 is 64 times the work).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn known_and_unknown_users_are_rejected_in_about_the_same_time() {
        let auth = Arc::new(BasicAuth::new(
            [
                ("cheap".to_string(), bcrypt::hash("right", 4).unwrap()),
                ("dear".to_string(), bcrypt::hash("right", 10).unwrap()),
            ]
            .into(),
        ));
        let hv = |s: &str| {
            let v = base64::engine::general_purpose::STANDARD.encode(s);
            http::HeaderValue::from_str(&format!("Basic {v}")).unwrap()
        };
        let median = |credentials: &'static str| {
            let auth = auth.clone();
            async move {
                let mut times = Vec::new();
                for _ in 0..5 {
                    let started = std::time::Instant::now();
                    assert!(!auth.check(Some(&hv(credentials))).await);
                    times.push(started.elapsed());
                }
                times.sort();
                times[2]
            }
        };
        let cheap = median("cheap:wrong").await;
        let unknown = median("nobody:wrong").await;
        let dear = median("dear:wrong").await;
        eprintln!(
            "rejections: cost-4 user {cheap:?}, unknown user {unknown:?}, cost-10 user {dear:?}"
        );
        for (what, t) in [("cost-4 user", cheap), ("cost-10 user", dear)] {
            let ratio = t.as_secs_f64() / unknown.as_secs_f64();
            assert!(
                (1.0 / 3.0..3.0).contains(&ratio),
                "a wrong password of the {what} took {t:?}, an unknown user {unknown:?}"
            );
        }
    }

    #[test]
    fn parse_checks_the_text_without_reading_files() {
        let ok =
            parse(b"tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: k\n").unwrap();
        assert!(ok.file.tls_server_config.is_some());
        let errs = parse(
            b"tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireAndVerifyClientCert\nbasic_auth_users:\n  u: '$2y$x'\n",
        )
        .unwrap_err();
        let paths: Vec<&str> = errs.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["basic_auth_users.u", "tls_server_config.client_ca_file"]
        );
        assert!(parse(&[0xff, 0xfe]).is_err());
    }
}
