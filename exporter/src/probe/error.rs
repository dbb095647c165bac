//! Why a probe run failed: a bounded reason for the `reason` label and a message for the log.

use std::fmt;

/// The bounded set of failure reasons; each is one value of the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The run did not finish within the probe's timeout.
    Timeout,
    /// The target refused or dropped the connection, or its name did not resolve.
    Connect,
    /// The TLS handshake or certificate check failed.
    Tls,
    /// The response status was not an expected one.
    HttpStatus,
    /// A response or file could not be parsed.
    Parse,
    /// A response body exceeded the configured limit.
    BodyTooLarge,
    /// A required response header was missing.
    HeaderMissing,
    /// A CORS preflight did not allow the origin.
    Cors,
    /// A local file or folder could not be read.
    Io,
    /// The Docker Engine answered with an error.
    Docker,
    /// An expected item (container, file, stream) does not exist.
    NotFound,
    /// A checked value disagrees with the expected one (digest drift, PLC not in Run, …).
    Mismatch,
    /// A stream or backup is older than allowed.
    Stale,
    /// The remote protocol (ADS, HLS) reported an error.
    Protocol,
    /// The target answered that it has no route to the device (ADS "target machine not found",
    /// "target port not found", …), or closed the connection without an answer.
    NoRoute,
    /// Anything else.
    Other,
}

impl Reason {
    /// Every reason, in label order.
    pub const ALL: &'static [Reason] = &[
        Reason::Timeout,
        Reason::Connect,
        Reason::Tls,
        Reason::HttpStatus,
        Reason::Parse,
        Reason::BodyTooLarge,
        Reason::HeaderMissing,
        Reason::Cors,
        Reason::Io,
        Reason::Docker,
        Reason::NotFound,
        Reason::Mismatch,
        Reason::Stale,
        Reason::Protocol,
        Reason::NoRoute,
        Reason::Other,
    ];

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Connect => "connect",
            Reason::Tls => "tls",
            Reason::HttpStatus => "http_status",
            Reason::Parse => "parse",
            Reason::BodyTooLarge => "body_too_large",
            Reason::HeaderMissing => "header_missing",
            Reason::Cors => "cors",
            Reason::Io => "io",
            Reason::Docker => "docker",
            Reason::NotFound => "not_found",
            Reason::Mismatch => "mismatch",
            Reason::Stale => "stale",
            Reason::Protocol => "protocol",
            Reason::NoRoute => "no_route",
            Reason::Other => "other",
        }
    }
}

/// A failed probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeError {
    /// The bounded reason.
    pub reason: Reason,
    /// Details for the log.
    pub message: String,
}

impl ProbeError {
    /// A failure with a reason and a message.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.message)
    }
}

impl std::error::Error for ProbeError {}
