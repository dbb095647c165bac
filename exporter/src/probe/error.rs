//! Why a probe run failed: a bounded reason for the `reason` label and a message for the log,
//! and [`Problems`], which gathers the failures of one run into that one error.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

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

    /// The reason in words, as the status page says it to someone who does not know the
    /// label values.
    #[must_use]
    pub fn words(self) -> &'static str {
        match self {
            Reason::Timeout => "no answer in time",
            Reason::Connect => "cannot connect",
            Reason::Tls => "TLS failed",
            Reason::HttpStatus => "unexpected HTTP status",
            Reason::Parse => "unreadable answer",
            Reason::BodyTooLarge => "answer too large",
            Reason::HeaderMissing => "header missing",
            Reason::Cors => "CORS preflight refused",
            Reason::Io => "cannot read",
            Reason::Docker => "Docker Engine error",
            Reason::NotFound => "missing",
            Reason::Mismatch => "not as expected",
            Reason::Stale => "stale",
            Reason::Protocol => "protocol error",
            Reason::NoRoute => "no route",
            Reason::Other => "failed",
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

impl ProbeError {
    /// A failed file operation: `not_found` when the file does not exist, `io` otherwise.
    pub fn io(what: &str, path: &Path, e: &std::io::Error) -> Self {
        let reason = if e.kind() == std::io::ErrorKind::NotFound {
            Reason::NotFound
        } else {
            Reason::Io
        };
        Self::new(reason, format!("{what} {}: {e}", path.display()))
    }
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.message)
    }
}

impl std::error::Error for ProbeError {}

/// A kind of problem a probe gathers during a run. The order of the kinds is their importance:
/// the first kind with a problem gives the run its reason.
pub trait ProblemKind: Ord + Copy {
    /// The failure reason of this kind.
    fn reason(self) -> Reason;
    /// What the problems of this kind are, as the heading of their list (`digest drift`);
    /// empty when the items speak for themselves.
    fn heading(self) -> &'static str;
}

/// How many items of one kind a message lists before it says how many more there are.
const LISTED: usize = 5;

/// The problems of one run, by kind. A probe that checks many things (manifest entries,
/// backup volumes, variant streams) records each problem and keeps going; at the end
/// [`Problems::into_result`] turns them into one [`ProbeError`].
#[derive(Debug)]
pub struct Problems<K> {
    groups: BTreeMap<K, Vec<String>>,
}

impl<K> Default for Problems<K> {
    fn default() -> Self {
        Self {
            groups: BTreeMap::new(),
        }
    }
}

impl<K: ProblemKind> Problems<K> {
    /// Records a problem.
    pub fn push(&mut self, kind: K, item: impl Into<String>) {
        self.groups.entry(kind).or_default().push(item.into());
    }

    /// How many problems of `kind` were recorded.
    #[must_use]
    pub fn count(&self, kind: K) -> usize {
        self.groups.get(&kind).map_or(0, Vec::len)
    }

    /// Whether nothing was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// `Ok` without problems; otherwise an error with the reason of the most important kind
    /// and a message that lists every kind, most important first (`digest drift: a.js; missing:
    /// b.js`), each with at most five items.
    ///
    /// # Errors
    /// When at least one problem was recorded.
    pub fn into_result(self) -> Result<(), ProbeError> {
        let Some(first) = self.groups.keys().next().copied() else {
            return Ok(());
        };
        let parts: Vec<String> = self
            .groups
            .into_iter()
            .map(|(kind, items)| {
                let mut list = items
                    .iter()
                    .take(LISTED)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                if items.len() > LISTED {
                    list.push_str(&format!(" and {} more", items.len() - LISTED));
                }
                if kind.heading().is_empty() {
                    list
                } else {
                    format!("{}: {list}", kind.heading())
                }
            })
            .collect();
        Err(ProbeError::new(first.reason(), parts.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Kind {
        Drift,
        Failed(Reason),
    }

    impl ProblemKind for Kind {
        fn reason(self) -> Reason {
            match self {
                Kind::Drift => Reason::Mismatch,
                Kind::Failed(r) => r,
            }
        }
        fn heading(self) -> &'static str {
            match self {
                Kind::Drift => "drift",
                Kind::Failed(_) => "",
            }
        }
    }

    #[test]
    fn most_important_kind_gives_the_reason_and_every_kind_is_listed() {
        let mut p = Problems::default();
        assert!(p.is_empty());
        p.push(Kind::Failed(Reason::Timeout), "c: no answer");
        for i in 0..7 {
            p.push(Kind::Drift, format!("f{i}"));
        }
        assert_eq!(p.count(Kind::Drift), 7);
        let e = p.into_result().unwrap_err();
        assert_eq!(e.reason, Reason::Mismatch);
        assert_eq!(
            e.message,
            "drift: f0, f1, f2, f3, f4 and 2 more; c: no answer"
        );
        assert!(Problems::<Kind>::default().into_result().is_ok());
    }
}
