//! DNS (the gateway: `getent hosts leitstand…`): resolve a name through the system resolver (as
//! `getent hosts` does: `/etc/hosts`, then DNS as `nsswitch.conf` says) or by asking a
//! configured server directly; whether it resolved, how many addresses came back, how long it
//! took, and whether the addresses are exactly the expected ones.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, TokioResolver};
use serde::Deserialize;
use stackmedic_common::config::join;
use stackmedic_common::ConfigErrors;

use super::{Health, Item, ProbeError, Reason, RunContext};
use crate::metrics::{Family, Samples};

static RESOLVED: Family = Family::gauge(
    "stackmedic_dns_resolved",
    "Whether the name resolved to at least one address (1) or not (0).",
);
static ANSWERS: Family = Family::gauge(
    "stackmedic_dns_answers",
    "Addresses the lookup returned (of the configured address family).",
);
static LOOKUP_SECONDS: Family = Family::gauge(
    "stackmedic_dns_lookup_seconds",
    "Time the lookup took, in seconds.",
);
static MATCH: Family = Family::gauge(
    "stackmedic_dns_answers_match",
    "With expected: whether the addresses are exactly the expected set (1) or not (0).",
);

/// The status page's item noun.
const NAME: &str = "name";

/// Which addresses count.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IpVersion {
    /// IPv4 and IPv6 (A and AAAA).
    #[default]
    Any,
    /// IPv4 only (A).
    Ipv4,
    /// IPv6 only (AAAA).
    Ipv6,
}

impl IpVersion {
    /// The name as written in the configuration.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            IpVersion::Any => "any",
            IpVersion::Ipv4 => "ipv4",
            IpVersion::Ipv6 => "ipv6",
        }
    }
}

/// The transport used to ask a configured server.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// UDP (default).
    #[default]
    Udp,
    /// TCP.
    Tcp,
}

/// Settings of a `dns` probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// The name to resolve.
    pub name: String,
    /// A server to ask directly (`127.0.0.1:53`, `[::1]:5353`); the system resolver otherwise.
    pub server: Option<SocketAddr>,
    /// How to reach `server`.
    #[serde(default)]
    pub transport: Transport,
    /// Which addresses count.
    #[serde(default)]
    pub ip_version: IpVersion,
    /// The addresses the name must resolve to, all of them and no other.
    #[serde(default)]
    pub expected: Vec<IpAddr>,
}

impl DnsConfig {
    /// Checks the name, the transport and the expected addresses.
    pub fn validate(&mut self, path: &str, errs: &mut ConfigErrors) {
        let name = self.name.trim_end_matches('.');
        let ok = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !ok {
            errs.push(
                join(path, "name"),
                format!("{:?} is not a DNS name", self.name),
            );
        }
        if self.server.is_none()
            && self.transport != Transport::Udp
            && !errs.has(&join(path, "server"))
        {
            errs.push(join(path, "transport"), "needs `server`");
        }
        for (i, ip) in self.expected.iter().enumerate() {
            let wrong = match self.ip_version {
                IpVersion::Any => false,
                IpVersion::Ipv4 => ip.is_ipv6(),
                IpVersion::Ipv6 => ip.is_ipv4(),
            };
            if wrong {
                errs.push(
                    format!("{path}.expected[{i}]"),
                    format!("{ip} is not of ip_version {}", self.ip_version.as_str()),
                );
            }
        }
    }
}

/// A `dns` probe.
pub struct DnsProbe {
    cfg: DnsConfig,
}

impl DnsProbe {
    /// Builds the probe.
    #[must_use]
    pub fn new(cfg: DnsConfig) -> Self {
        Self { cfg }
    }

    /// Resolves the name once.
    ///
    /// # Errors
    /// `not_found` (no such name, or no address of the family), `timeout`, `protocol` (the
    /// server answered with an error such as SERVFAIL or REFUSED), `connect`, `mismatch` (not
    /// the expected addresses).
    pub async fn run(&self, cx: &RunContext, out: &mut Samples) -> Result<(), ProbeError> {
        let started = Instant::now();
        let lookup = async {
            match self.cfg.server {
                None => self.system().await,
                Some(server) => self.ask(cx, server).await,
            }
        };
        let result = match tokio::time::timeout_at(cx.deadline(), lookup).await {
            Ok(r) => r,
            Err(_) => Err(cx.expired("lookup")),
        };
        out.push(&LOOKUP_SECONDS, &[], started.elapsed().as_secs_f64());
        let addresses: BTreeSet<IpAddr> = match result {
            Ok(list) => list
                .into_iter()
                .filter(|ip| match self.cfg.ip_version {
                    IpVersion::Any => true,
                    IpVersion::Ipv4 => ip.is_ipv4(),
                    IpVersion::Ipv6 => ip.is_ipv6(),
                })
                .collect(),
            Err(e) => {
                cx.report(
                    Item::new(NAME, &self.cfg.name, Health::Failing, "does not resolve")
                        .detail(&e.message),
                );
                out.flag(&RESOLVED, &[], false);
                out.push(&ANSWERS, &[], 0.0);
                if !self.cfg.expected.is_empty() {
                    out.flag(&MATCH, &[], false);
                }
                return Err(e);
            }
        };
        out.flag(&RESOLVED, &[], !addresses.is_empty());
        out.push(&ANSWERS, &[], addresses.len() as f64);
        let matched = if self.cfg.expected.is_empty() {
            true
        } else {
            let expected: BTreeSet<IpAddr> = self.cfg.expected.iter().copied().collect();
            let same = expected == addresses;
            out.flag(&MATCH, &[], same);
            same
        };
        let resolved = format!("resolves to {}", list(addresses.iter()));
        cx.report(if addresses.is_empty() {
            Item::new(NAME, &self.cfg.name, Health::Failing, "has no address")
        } else if matched {
            Item::new(NAME, &self.cfg.name, Health::Ok, resolved)
        } else {
            Item::new(NAME, &self.cfg.name, Health::Failing, resolved)
                .detail(format!("expected {}", list(self.cfg.expected.iter())))
        });
        if addresses.is_empty() {
            return Err(ProbeError::new(
                Reason::NotFound,
                format!(
                    "{} has no address of ip_version {}",
                    self.cfg.name,
                    self.cfg.ip_version.as_str()
                ),
            ));
        }
        if !matched {
            return Err(ProbeError::new(
                Reason::Mismatch,
                format!(
                    "{} resolved to {}, expected {}",
                    self.cfg.name,
                    list(addresses.iter()),
                    list(self.cfg.expected.iter())
                ),
            ));
        }
        Ok(())
    }

    /// The system resolver (`getaddrinfo`, as `getent hosts` uses), on a blocking thread.
    async fn system(&self) -> Result<Vec<IpAddr>, ProbeError> {
        match tokio::net::lookup_host((self.cfg.name.as_str(), 0)).await {
            Ok(addrs) => Ok(addrs.map(|a| a.ip()).collect()),
            // getaddrinfo's error codes are not exposed beyond their message: EAI_NONAME
            // ("Name or service not known") and EAI_NODATA mean the name has no address.
            Err(e) => {
                let message = e.to_string();
                let lower = message.to_ascii_lowercase();
                let reason = if lower.contains("not known")
                    || lower.contains("no address")
                    || lower.contains("not found")
                {
                    Reason::NotFound
                } else if lower.contains("temporary failure") {
                    Reason::Timeout
                } else {
                    Reason::Other
                };
                Err(ProbeError::new(
                    reason,
                    format!("resolve {}: {message}", self.cfg.name),
                ))
            }
        }
    }

    /// Asks the configured server, once, with the time left of the run. The resolver is built
    /// for this run, so nothing is cached between runs.
    async fn ask(&self, cx: &RunContext, server: SocketAddr) -> Result<Vec<IpAddr>, ProbeError> {
        let protocol = match self.cfg.transport {
            Transport::Udp => Protocol::Udp,
            Transport::Tcp => Protocol::Tcp,
        };
        let mut config = ResolverConfig::new();
        config.add_name_server(NameServerConfig::new(server, protocol));
        let mut opts = ResolverOpts::default();
        opts.timeout = cx.remaining();
        opts.attempts = 1;
        opts.cache_size = 0;
        // The configured server answers alone: no /etc/hosts, no search domains.
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        opts.ip_strategy = match self.cfg.ip_version {
            IpVersion::Any => LookupIpStrategy::Ipv4AndIpv6,
            IpVersion::Ipv4 => LookupIpStrategy::Ipv4Only,
            IpVersion::Ipv6 => LookupIpStrategy::Ipv6Only,
        };
        let resolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(opts)
                .build();
        let fqdn = format!("{}.", self.cfg.name.trim_end_matches('.'));
        match resolver.lookup_ip(fqdn.as_str()).await {
            Ok(lookup) => Ok(lookup.iter().collect()),
            Err(e) => Err(classify(&self.cfg.name, server, &e)),
        }
    }
}

fn classify(name: &str, server: SocketAddr, e: &ResolveError) -> ProbeError {
    let reason = match e.proto().map(|p| p.kind()) {
        Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => match *response_code {
            ResponseCode::NXDomain | ResponseCode::NoError => Reason::NotFound,
            _ => Reason::Protocol,
        },
        Some(ProtoErrorKind::Timeout) => Reason::Timeout,
        Some(ProtoErrorKind::Io(_)) => Reason::Connect,
        _ => Reason::Other,
    };
    ProbeError::new(reason, format!("resolve {name} at {server}: {e}"))
}

fn list<'a>(ips: impl Iterator<Item = &'a IpAddr>) -> String {
    let v: Vec<String> = ips.map(ToString::to_string).collect();
    if v.is_empty() {
        "nothing".into()
    } else {
        v.join(", ")
    }
}
