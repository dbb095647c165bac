//! The connections to AMS routers: one per router address and source, shared by the probes
//! that use it and kept across runs and reloads (see the module invariant of `ads`), opened on
//! demand and replaced when they break; requests with their failures told apart.

use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::*;

/// The router connections of the process, one per router address and source; see the module
/// invariant. Entries go away with the last probe that uses them.
#[derive(Default)]
pub struct AdsConnections {
    pub(super) links: Mutex<HashMap<LinkKey, Weak<Link>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct LinkKey {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) source: Option<(String, u16)>,
}

impl AdsConnections {
    pub(super) fn link(&self, key: LinkKey, source: ads::Source) -> Arc<Link> {
        let mut links = lock(&self.links);
        links.retain(|_, l| l.strong_count() > 0);
        if let Some(l) = links.get(&key).and_then(Weak::upgrade) {
            return l;
        }
        let l = Arc::new(Link {
            host: key.host.clone(),
            port: key.port,
            source,
            client: Mutex::new(None),
            connects: AtomicU64::new(0),
        });
        links.insert(key, Arc::downgrade(&l));
        l
    }
}

/// One connection to an AMS router, opened on demand and replaced when it breaks.
pub(super) struct Link {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) source: ads::Source,
    pub(super) client: Mutex<Option<Open>>,
    pub(super) connects: AtomicU64,
}

/// What the device answered.
pub(super) struct Reading {
    pub(super) state: u16,
    pub(super) device_state: u16,
    /// Name and version, or why they are not known.
    pub(super) info: Result<(String, String), String>,
}

/// Why the device did not answer, and whether the TCP connection is up.
pub(super) struct Failure {
    pub(super) error: ProbeError,
    pub(super) connected: bool,
    pub(super) code: Option<u32>,
}

impl Failure {
    pub(super) fn down(reason: Reason, message: String) -> Self {
        Self {
            error: ProbeError::new(reason, message),
            connected: false,
            code: None,
        }
    }
}

/// How a failed request is handled.
pub(super) enum Broken {
    /// The connection is gone: reconnect (once, if it was an old connection).
    Closed,
    /// No answer in time: drop the connection, since a late answer would confuse the next run.
    Timeout,
    /// The device answered with an ADS error code; the connection is fine.
    Code(u32),
    /// Anything else: drop the connection.
    Other,
}

pub(super) fn classify(e: &ads::Error, elapsed: Duration, op: Duration) -> Broken {
    use std::io::ErrorKind as K;
    match e {
        ads::Error::Ads(_, _, code) => Broken::Code(*code),
        ads::Error::Io(_, io) => match io.kind() {
            K::BrokenPipe
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::UnexpectedEof => Broken::Closed,
            // The client reports a reader that stopped because the socket closed as a receive
            // timeout, but it does so at once; only a wait of the full timeout is a timeout.
            K::TimedOut | K::WouldBlock if elapsed < op.mul_f64(0.8) => Broken::Closed,
            K::TimedOut | K::WouldBlock => Broken::Timeout,
            _ => Broken::Other,
        },
        _ => Broken::Other,
    }
}

impl Link {
    /// Opens a connection within `remaining`. Its replies may take `reply_timeout` (the
    /// probe's timeout): the connection outlives the run, so its read timeout cannot follow
    /// one run's deadline, and the run's own wait is bounded by the deadline instead.
    pub(super) fn connect(
        &self,
        remaining: Duration,
        reply_timeout: Duration,
    ) -> Result<Open, Failure> {
        let target = format!("{}:{}", self.host, self.port);
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| Failure::down(Reason::Connect, format!("cannot resolve {target}: {e}")))?
            .next()
            .ok_or_else(|| {
                Failure::down(Reason::Connect, format!("{target} resolves to no address"))
            })?;
        let timeouts = ads::Timeouts {
            connect: Some(remaining),
            read: Some(reply_timeout),
            write: Some(reply_timeout),
        };
        let client = ads::Client::new(addr, timeouts, self.source).map_err(|e| {
            let reason = match &e {
                ads::Error::Io(_, io)
                    if matches!(
                        io.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    ) =>
                {
                    Reason::Timeout
                }
                _ => Reason::Connect,
            };
            Failure::down(reason, format!("{target}: {e}"))
        })?;
        self.connects.fetch_add(1, Ordering::Relaxed);
        Ok(Open {
            client,
            reply_timeout,
        })
    }

    /// Reads the device's state (and name and version), connecting or reconnecting as needed,
    /// each step within the time left until `deadline`. Runs on a blocking thread.
    pub(super) fn query(
        &self,
        device: ads::AmsAddr,
        deadline: Instant,
        reply_timeout: Duration,
    ) -> Result<Reading, Failure> {
        let remaining = || deadline.saturating_duration_since(Instant::now());
        let expired = || {
            Failure::down(
                Reason::Timeout,
                "the run's deadline passed before the device answered".into(),
            )
        };
        let mut slot = lock(&self.client);
        let mut reused = slot.is_some();
        loop {
            if remaining().is_zero() {
                return Err(expired());
            }
            let open = match slot.take() {
                Some(c) => c,
                None => self.connect(remaining(), reply_timeout)?,
            };
            let dev = open.client.device(device);
            let started = Instant::now();
            let result = dev.get_state();
            let elapsed = started.elapsed();
            match result {
                Ok((state, device_state)) => {
                    let info = if remaining().is_zero() {
                        Err("no time left in the run to ask for it".to_string())
                    } else {
                        dev.get_info()
                            .map(|i| (i.name, format!("{}.{}.{}", i.major, i.minor, i.version)))
                            .map_err(|e| e.to_string())
                    };
                    *slot = Some(open);
                    return Ok(Reading {
                        state: state as u16,
                        device_state,
                        info,
                    });
                }
                // A state outside the known list is still an answer.
                Err(ads::Error::Reply("read state", "invalid state constant", value)) => {
                    *slot = Some(open);
                    return Ok(Reading {
                        state: u16::try_from(value).unwrap_or(u16::MAX),
                        device_state: 0,
                        info: Err("not asked: the state was outside the ADS list".into()),
                    });
                }
                Err(e) => match classify(&e, elapsed, open.reply_timeout) {
                    Broken::Code(code) => {
                        *slot = Some(open);
                        return Err(Failure {
                            error: ads_code_error(code, "read state"),
                            connected: true,
                            code: Some(code),
                        });
                    }
                    Broken::Closed if reused => {
                        // The connection broke since the last run (the PLC restarted, or
                        // another client from this host took over): try once with a new one.
                        drop(open);
                        reused = false;
                    }
                    Broken::Closed => {
                        return Err(Failure::down(
                            Reason::NoRoute,
                            format!(
                                "the router closed the connection without answering ({e}); \
                                 TwinCAT does this when it has no route for this host's AMS Net ID"
                            ),
                        ));
                    }
                    Broken::Timeout => {
                        return Err(Failure::down(
                            Reason::Timeout,
                            format!("no answer within {:?}: {e}", open.reply_timeout),
                        ));
                    }
                    Broken::Other => {
                        return Err(Failure::down(Reason::Protocol, e.to_string()));
                    }
                },
            }
        }
    }
}

/// An open connection and the reply timeout it was opened with.
pub(super) struct Open {
    pub(super) client: ads::Client,
    pub(super) reply_timeout: Duration,
}
