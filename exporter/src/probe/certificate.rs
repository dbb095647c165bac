//! TLS certificate facts (the gateway: "strict TLS", "Caddy internal CA not in the trust store"):
//! the leaf certificate's validity, issuer and subject, and whether its chain verifies against
//! the trust store the probe's HTTP client uses (the system's plus `tls.ca_file`), or why not.
//!
//! The facts come from a handshake of our own: its verifier runs the same platform verifier as
//! the HTTP client, records the verdict and the leaf, and then lets the handshake finish, so an
//! untrusted or expired certificate is still read. No byte is sent after the handshake.
//!
//! The facts of a probe's endpoint are kept ([`FactsCache`]) and used again while the probe's
//! own requests meet the same leaf certificate, for at most [`FACTS_MAX_AGE`] and never past
//! the certificate's validity: a probe with a kept-alive connection makes no second handshake
//! per run, and a certificate replaced on the server is read again at the run that meets it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use url::Url;

use super::fetch::TlsOptions;
use super::report::duration_words;
use super::{Health, Item, ProbeError, Reason, RunContext};
use crate::metrics::{Family, Samples};
use crate::support::{lock, truncate};

static NOT_AFTER: Family = Family::gauge(
    "stackmedic_tls_not_after_timestamp_seconds",
    "Unix time at which the server's leaf certificate expires (notAfter).",
);
static NOT_BEFORE: Family = Family::gauge(
    "stackmedic_tls_not_before_timestamp_seconds",
    "Unix time from which the server's leaf certificate is valid (notBefore).",
);
static VERIFIED: Family = Family::gauge(
    "stackmedic_tls_chain_verified",
    "Whether the certificate chain verified against the trust store (1) or not (0).",
);
static VERIFY_ERROR: Family = Family::gauge(
    "stackmedic_tls_verify_error",
    "1 for the reason the chain did not verify; absent while it verifies.",
);
static INFO: Family = Family::gauge(
    "stackmedic_tls_certificate_info",
    "Constant 1 labelled with the leaf certificate's subject and issuer.",
);

/// Longest subject or issuer label value.
const MAX_NAME: usize = 128;

/// The status page's item noun.
const CERTIFICATE: &str = "certificate";

/// A certificate expiring sooner than this is a warning on the status page (the alert
/// TlsCertificateExpiresSoon uses the same 14 days).
const EXPIRY_WARNING_SECS: f64 = 14.0 * 86400.0;

/// Why a chain did not verify: a bounded set, one value of the `error` label each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// No trusted root issued the chain (a private CA that is not in the trust store).
    UnknownIssuer,
    /// A certificate of the chain has expired.
    Expired,
    /// A certificate of the chain is not valid yet.
    NotYetValid,
    /// The certificate is not valid for the name (or address) that was asked for.
    NameMismatch,
    /// The certificate was revoked.
    Revoked,
    /// A signature of the chain is wrong or of an unsupported algorithm.
    BadSignature,
    /// The certificate may not be used for a TLS server.
    InvalidPurpose,
    /// The certificate could not be parsed.
    BadEncoding,
    /// Anything else.
    Other,
}

impl VerifyError {
    /// Every error, in label order.
    pub const ALL: &'static [VerifyError] = &[
        VerifyError::UnknownIssuer,
        VerifyError::Expired,
        VerifyError::NotYetValid,
        VerifyError::NameMismatch,
        VerifyError::Revoked,
        VerifyError::BadSignature,
        VerifyError::InvalidPurpose,
        VerifyError::BadEncoding,
        VerifyError::Other,
    ];

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyError::UnknownIssuer => "unknown_issuer",
            VerifyError::Expired => "expired",
            VerifyError::NotYetValid => "not_yet_valid",
            VerifyError::NameMismatch => "name_mismatch",
            VerifyError::Revoked => "revoked",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::InvalidPurpose => "invalid_purpose",
            VerifyError::BadEncoding => "bad_encoding",
            VerifyError::Other => "other",
        }
    }

    fn of(e: &rustls::Error) -> Self {
        use CertificateError as C;
        match e {
            rustls::Error::InvalidCertificate(c) => match c {
                C::UnknownIssuer => VerifyError::UnknownIssuer,
                C::Expired | C::ExpiredContext { .. } => VerifyError::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => VerifyError::NotYetValid,
                C::NotValidForName | C::NotValidForNameContext { .. } => VerifyError::NameMismatch,
                C::Revoked => VerifyError::Revoked,
                C::BadSignature
                | C::UnsupportedSignatureAlgorithmContext { .. }
                | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                    VerifyError::BadSignature
                }
                C::InvalidPurpose | C::InvalidPurposeContext { .. } => VerifyError::InvalidPurpose,
                C::BadEncoding => VerifyError::BadEncoding,
                _ => VerifyError::Other,
            },
            _ => VerifyError::Other,
        }
    }
}

/// Longest time the facts of an endpoint are used again without a handshake of their own.
pub const FACTS_MAX_AGE: Duration = Duration::from_secs(3600);

/// The facts of each probed `https` endpoint (host, port and TLS settings), with when they
/// were read.
#[derive(Default)]
pub struct FactsCache {
    entries: Mutex<HashMap<Endpoint, (Facts, Instant)>>,
}

/// An endpoint's host, port and the TLS settings it is verified with.
type Endpoint = (String, u16, TlsOptions);

impl FactsCache {
    /// The facts of an endpoint, if they were read less than [`FACTS_MAX_AGE`] ago and the
    /// certificate is still within its validity at `now` (Unix time).
    #[must_use]
    pub fn fresh(&self, host: &str, port: u16, tls: &TlsOptions, now: f64) -> Option<Facts> {
        let entries = lock(&self.entries);
        let (facts, at) = entries.get(&(host.to_string(), port, tls.clone()))?;
        (at.elapsed() < FACTS_MAX_AGE && facts.valid_at(now)).then(|| facts.clone())
    }

    fn put(&self, host: &str, port: u16, tls: &TlsOptions, facts: Facts) {
        lock(&self.entries).insert(
            (host.to_string(), port, tls.clone()),
            (facts, Instant::now()),
        );
    }

    fn forget(&self, host: &str, port: u16, tls: &TlsOptions) {
        lock(&self.entries).remove(&(host.to_string(), port, tls.clone()));
    }

    /// Drops the facts of TLS settings for which `used` is false (a reload left them behind).
    pub fn retain(&self, used: impl Fn(&TlsOptions) -> bool) {
        lock(&self.entries).retain(|(_, _, tls), _| used(tls));
    }
}

/// What one handshake showed of the server's certificate.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The leaf certificate (DER).
    pub leaf: CertificateDer<'static>,
    /// The verdict of the trust store on the chain.
    pub verdict: Result<(), (VerifyError, String)>,
}

impl Facts {
    /// Whether `now` (Unix time) is within the leaf's validity, where the verdict, which
    /// depends on the time, still holds.
    fn valid_at(&self, now: f64) -> bool {
        x509_parser::parse_x509_certificate(&self.leaf).is_ok_and(|(_, cert)| {
            let v = cert.validity();
            (v.not_before.timestamp() as f64) <= now && now < v.not_after.timestamp() as f64
        })
    }

    /// Exports the facts: validity, verdict and names.
    pub fn export(&self, out: &mut Samples) {
        match &self.verdict {
            Ok(()) => out.flag(&VERIFIED, &[], true),
            Err((e, _)) => {
                out.flag(&VERIFIED, &[], false);
                out.flag(&VERIFY_ERROR, &[("error", e.as_str())], true);
            }
        }
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(&self.leaf) {
            let validity = cert.validity();
            out.push(&NOT_AFTER, &[], validity.not_after.timestamp() as f64);
            out.push(&NOT_BEFORE, &[], validity.not_before.timestamp() as f64);
            let subject = truncate(&cert.subject().to_string(), MAX_NAME);
            let issuer = truncate(&cert.issuer().to_string(), MAX_NAME);
            out.push(&INFO, &[("subject", &subject), ("issuer", &issuer)], 1.0);
        }
    }

    /// The certificate as the status page shows it at `now`: untrusted or expired is failing,
    /// expiring within 14 days a warning.
    #[must_use]
    pub fn item(&self, now: f64) -> Item {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(&self.leaf) else {
            return Item::new(CERTIFICATE, "", Health::Failing, "not readable")
                .detail("the server's leaf certificate is not valid X.509");
        };
        let not_after = cert.validity().not_after.timestamp() as f64;
        let left = not_after - now;
        let subject = cert.subject().to_string();
        let mut item = if left <= 0.0 {
            Item::new(
                CERTIFICATE,
                &subject,
                Health::Failing,
                format!("expired {} ago", duration_words(-left)),
            )
        } else {
            let health = if left < EXPIRY_WARNING_SECS {
                Health::Warning
            } else {
                Health::Ok
            };
            Item::new(
                CERTIFICATE,
                &subject,
                health,
                format!("expires in {}", duration_words(left)),
            )
        };
        if let Err((error, message)) = &self.verdict {
            item = item
                .problem(Health::Failing, format!("not trusted: {}", error.as_str()))
                .detail(message);
        }
        item.detail(format!("issued by {}", cert.issuer()))
            .at("expires", Some(not_after))
    }

    /// The verdict as a probe failure (reason `tls`), for probes that require a trusted chain.
    ///
    /// # Errors
    /// When the chain did not verify.
    pub fn require_verified(&self) -> Result<(), ProbeError> {
        match &self.verdict {
            Ok(()) => Ok(()),
            Err((_, message)) => Err(ProbeError::new(
                Reason::Tls,
                format!("certificate not trusted: {message}"),
            )),
        }
    }
}

/// The process's platform verifiers, one per distinct TLS setting (building one reads the
/// system's trust store).
#[derive(Default)]
pub struct Verifiers {
    cache: Mutex<HashMap<TlsOptions, Arc<rustls_platform_verifier::Verifier>>>,
}

impl Verifiers {
    /// Drops the verifiers of TLS settings for which `used` is false, so that settings a
    /// reload left behind do not stay in memory: the cache holds at most the settings of the
    /// running configuration (and of a run that was still in flight when it was swapped in).
    pub fn retain(&self, used: impl Fn(&TlsOptions) -> bool) {
        lock(&self.cache).retain(|tls, _| used(tls));
    }

    /// How many verifiers the cache holds.
    #[must_use]
    pub fn len(&self) -> usize {
        lock(&self.cache).len()
    }

    /// Whether the cache is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, tls: &TlsOptions) -> Result<Arc<rustls_platform_verifier::Verifier>, String> {
        let mut cache = lock(&self.cache);
        if let Some(v) = cache.get(tls) {
            return Ok(v.clone());
        }
        let mut extra = Vec::new();
        if let Some(pem) = tls.ca_bundle()? {
            for c in CertificateDer::pem_slice_iter(&pem) {
                extra.push(c.map_err(|e| format!("ca_file: {e}"))?);
            }
        }
        let v = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider())
            .map_err(|e| format!("cannot set up certificate verification: {e}"))?;
        let v = Arc::new(v);
        cache.insert(tls.clone(), v.clone());
        Ok(v)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Verifies with the platform verifier, records the leaf and the verdict, and accepts: the
/// handshake only serves to read the certificate.
#[derive(Debug)]
struct Recorder {
    inner: Arc<rustls_platform_verifier::Verifier>,
    seen: Mutex<Option<Facts>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map(|_| ())
            .map_err(|e| (VerifyError::of(&e), e.to_string()));
        *lock(&self.seen) = Some(Facts {
            leaf: end_entity.clone().into_owned(),
            verdict,
        });
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The TLS server name of a host as written in a URL or an address (`example.org`, `127.0.0.1`,
/// `[::1]`).
///
/// # Errors
/// A message when the host is neither a DNS name nor an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(bare.to_owned())
        .map_err(|e| format!("invalid TLS server name {host:?}: {e}"))
}

/// Runs a TLS handshake over `tcp` and returns the stream with the certificate's facts. The
/// handshake completes whatever the verdict; a caller that needs a trusted chain checks
/// [`Facts::require_verified`].
///
/// # Errors
/// `tls` when the handshake fails for another reason, `timeout` when the run's deadline passes.
pub async fn handshake(
    cx: &RunContext,
    tcp: TcpStream,
    name: ServerName<'static>,
    tls: &TlsOptions,
) -> Result<(TlsStream<TcpStream>, Facts), ProbeError> {
    let inner = cx
        .shared
        .certificates
        .get(tls)
        .map_err(|e| ProbeError::new(Reason::Tls, e))?;
    let recorder = Arc::new(Recorder {
        inner,
        seen: Mutex::new(None),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::new(Reason::Tls, e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = match tokio::time::timeout_at(cx.deadline(), connector.connect(name, tcp)).await {
        Err(_) => return Err(cx.expired("tls handshake")),
        Ok(Err(e)) => return Err(ProbeError::new(Reason::Tls, format!("tls handshake: {e}"))),
        Ok(Ok(s)) => s,
    };
    let facts = lock(&recorder.seen).take().ok_or_else(|| {
        ProbeError::new(
            Reason::Tls,
            "tls handshake ended without a server certificate",
        )
    })?;
    Ok((stream, facts))
}

/// Connects to `host:port` and returns the certificate's facts, within the run's deadline.
///
/// # Errors
/// `connect`, `tls` or `timeout`.
pub async fn inspect(
    cx: &RunContext,
    host: &str,
    port: u16,
    tls: &TlsOptions,
) -> Result<Facts, ProbeError> {
    let name = server_name(host).map_err(|e| ProbeError::new(Reason::Tls, e))?;
    let target = (host.trim_start_matches('[').trim_end_matches(']'), port);
    let tcp = match tokio::time::timeout_at(cx.deadline(), TcpStream::connect(target)).await {
        Err(_) => return Err(cx.expired("connect")),
        Ok(Err(e)) => {
            return Err(ProbeError::new(
                Reason::Connect,
                format!("connect {host}:{port}: {e}"),
            ))
        }
        Ok(Ok(s)) => s,
    };
    let (_stream, facts) = handshake(cx, tcp, name, tls).await?;
    Ok(facts)
}

/// The host and port of an `https` URL.
fn endpoint(url: &Url) -> Option<(&str, u16)> {
    if url.scheme() != "https" {
        return None;
    }
    Some((url.host_str()?, url.port_or_known_default()?))
}

/// Whether the facts of the endpoint of an `https` URL are kept and fresh, so that the run
/// needs no handshake of its own for them (see [`FactsCache::fresh`]).
#[must_use]
pub fn cached_for_url(cx: &RunContext, url: &Url, tls: &TlsOptions) -> Option<Facts> {
    let (host, port) = endpoint(url)?;
    cx.shared
        .facts
        .fresh(host, port, tls, stackmedic_common::reload::unix_now())
}

/// Reads the certificate facts of the endpoint of an `https` URL with a handshake of its own,
/// keeps them, and exports them. A failure is only logged: the probe's own request tells
/// whether the endpoint works, and its reason says why not.
pub async fn inspect_url(cx: &RunContext, url: &Url, tls: &TlsOptions, out: &mut Samples) {
    let Some((host, port)) = endpoint(url) else {
        return;
    };
    if cx.remaining().is_zero() {
        return;
    }
    match inspect(cx, host, port, tls).await {
        Ok(facts) => {
            cx.shared.facts.put(host, port, tls, facts.clone());
            export_facts(cx, &facts, out);
        }
        Err(e) => tracing::debug!(error = %e, "certificate not read"),
    }
}

/// Exports kept facts, unless the run's own requests met another leaf certificate at that
/// endpoint (it was replaced): then they are read again with a handshake, time permitting.
pub async fn use_cached(
    cx: &RunContext,
    url: &Url,
    tls: &TlsOptions,
    facts: Facts,
    out: &mut Samples,
) {
    let Some((host, port)) = endpoint(url) else {
        return;
    };
    let replaced = cx
        .peer_leaf(host, port)
        .is_some_and(|leaf| leaf.as_ref() != facts.leaf.as_ref());
    if replaced {
        cx.shared.facts.forget(host, port, tls);
        inspect_url(cx, url, tls, out).await;
    } else {
        export_facts(cx, &facts, out);
    }
}

fn export_facts(cx: &RunContext, facts: &Facts, out: &mut Samples) {
    facts.export(out);
    cx.report(facts.item(stackmedic_common::reload::unix_now()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_map_to_bounded_errors() {
        let e = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(VerifyError::of(&e), VerifyError::UnknownIssuer);
        let e = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert_eq!(VerifyError::of(&e).as_str(), "expired");
        assert_eq!(
            VerifyError::of(&rustls::Error::General("x".into())),
            VerifyError::Other
        );
        assert_eq!(VerifyError::ALL.len(), 9);
    }

    #[test]
    fn an_unreadable_leaf_is_a_failing_item() {
        // Items of real certificates are checked against nginx in tests/exporter_tls_tcp.rs.
        let facts = Facts {
            leaf: CertificateDer::from(vec![0x30, 0x00]),
            verdict: Ok(()),
        };
        let item = facts.item(0.0);
        assert_eq!(item.health, Health::Failing);
        assert_eq!(item.state, "not readable");
    }

    #[test]
    fn verifiers_of_settings_no_longer_used_are_dropped() {
        let verifiers = Verifiers::default();
        let plain = TlsOptions::default();
        let mut insecure = TlsOptions::default();
        insecure.insecure_skip_verify = true;
        verifiers.get(&plain).expect("verifier");
        verifiers.get(&insecure).expect("verifier");
        verifiers.get(&plain).expect("verifier");
        assert_eq!(verifiers.len(), 2);
        verifiers.retain(|t| *t == plain);
        assert_eq!(verifiers.len(), 1);
        verifiers.retain(|_| false);
        assert!(verifiers.is_empty());
    }

    #[test]
    fn server_names() {
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("leitstand.home.arpa"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(server_name("bad name").is_err());
    }
}
