//! A lean HTTP/1.1 client for `http://` targets of the `http` probe: the request, built once
//! when the probe is built, goes straight to a kept-alive connection of the target's pool.
//!
//! The general client ([`reqwest`]) puts layers around every request that a probe of a plain
//! HTTP target does not need: it parses the URL again for its redirect policy even when
//! redirects are off, checks the proxy settings, wraps the request for retries and builds its
//! headers anew. In the probe's profile its request path took 44,000 instructions per run, this
//! client's 5,000 (`docs/benchmarks.md`).
//!
//! The probe uses this client only where it behaves as the general one would: `http://` URLs
//! that no proxy variable covers (the general client's own proxy matcher decides). A target
//! that answers with a redirect is left to the general client, which follows it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use url::{Position, Url};

use super::{error_chain, Body, Streaming, USER_AGENT};
use crate::probe::{ProbeError, Reason, RunContext};
use crate::support::lock;

/// Longest time an idle connection waits for the next request. Servers close idle connections
/// after a while (nginx after 75 s); staying below that avoids most races with the close, and a
/// request that loses such a race is sent again on a new connection.
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// Most idle connections kept per target.
const MAX_IDLE: usize = 16;

type Sender = SendRequest<Empty<Bytes>>;

/// Idle connections to one `host:port`, shared by the probes of that target.
pub struct Pool {
    host: String,
    port: u16,
    idle: Mutex<Vec<(Sender, Instant)>>,
}

impl Pool {
    /// An idle connection that is still open, if there is one.
    fn checkout(&self) -> Option<Sender> {
        let mut idle = lock(&self.idle);
        while let Some((sender, since)) = idle.pop() {
            if !sender.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    fn put_back(&self, sender: Sender) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push((sender, Instant::now()));
        }
    }

    /// A new connection; `url` names the request in messages.
    async fn connect(&self, url: &str) -> Result<Sender, ProbeError> {
        let stream = TcpStream::connect((self.host.trim_matches(['[', ']']), self.port))
            .await
            .map_err(|e| {
                ProbeError::new(Reason::Connect, format!("cannot connect to {url}: {e}"))
            })?;
        // As the general client does: requests are small and must not wait for an ACK.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ProbeError::new(Reason::Connect, format!("{url}: {}", error_chain(&e))))?;
        let peer = format!("{}:{}", self.host, self.port);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(peer = %peer, error = %error_chain(&e), "probe connection ended");
            }
        });
        Ok(sender)
    }
}

/// The pools of the process, one per target, each alive while a probe uses it.
#[derive(Default)]
pub struct Pools {
    pools: Mutex<HashMap<(String, u16), Weak<Pool>>>,
}

impl Pools {
    fn get(&self, host: &str, port: u16) -> Arc<Pool> {
        let mut pools = lock(&self.pools);
        let key = (host.to_string(), port);
        if let Some(pool) = pools.get(&key).and_then(Weak::upgrade) {
            return pool;
        }
        pools.retain(|_, p| p.strong_count() > 0);
        let pool = Arc::new(Pool {
            host: key.0.clone(),
            port,
            idle: Mutex::default(),
        });
        pools.insert(key, Arc::downgrade(&pool));
        pool
    }
}

/// A probe's request to a plain HTTP target, built once.
pub struct PlainRequest {
    /// The URL, for messages.
    url: Box<str>,
    pool: Arc<Pool>,
    reuse_connections: bool,
    method: Method,
    /// Path and query, the request target of HTTP/1.1.
    target: Uri,
    /// `Host`, for the defaults of the general client.
    host: HeaderValue,
    /// The configured headers, which replace the defaults of the same name: a list (usually
    /// empty), as every probe keeps its request.
    extra: Box<[(header::HeaderName, HeaderValue)]>,
}

impl PlainRequest {
    /// The request, or `None` where the general client must send it: a URL other than
    /// `http://`, or one that a proxy variable (`http_proxy`, `all_proxy`, …) covers.
    #[must_use]
    pub fn new(
        url: &Url,
        method: Method,
        extra_headers: &HeaderMap,
        reuse_connections: bool,
        pools: &Pools,
    ) -> Option<Self> {
        if url.scheme() != "http" {
            return None;
        }
        let uri: Uri = url.as_str().parse().ok()?;
        if hyper_util::client::proxy::matcher::Matcher::from_env()
            .intercept(&uri)
            .is_some()
        {
            return None;
        }
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        let target: Uri = url[Position::BeforePath..Position::AfterQuery]
            .parse()
            .ok()?;
        let authority = &url[Position::BeforeHost..Position::AfterPort];
        // The general client's defaults (`Host`, `User-Agent`, `Accept`) are added to each
        // request; configured headers replace them.
        let host_header = HeaderValue::from_str(authority).ok()?;
        let extra = extra_headers
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        Some(Self {
            url: url.as_str().into(),
            pool: pools.get(host, port),
            reuse_connections,
            method,
            target,
            host: host_header,
            extra,
        })
    }

    /// Sends the request and returns once the headers arrived; the body is read with
    /// [`Streaming::chunk`]. Everything, the body included, ends by the run's deadline.
    ///
    /// # Errors
    /// `timeout` at the deadline, `connect` when no connection could be made or it broke
    /// before the response.
    pub async fn open(&self, cx: &RunContext, max_body: u64) -> Result<Streaming, ProbeError> {
        if cx.remaining().is_zero() {
            return Err(cx.expired("request not sent"));
        }
        let deadline = cx.deadline();
        let start = std::time::Instant::now();
        let (response, sender) = tokio::time::timeout_at(deadline, self.exchange())
            .await
            .map_err(|_| cx.expired("no response"))??;
        let header_time = start.elapsed();
        let (parts, incoming) = response.into_parts();
        Ok(Streaming {
            status: parts.status,
            headers: parts.headers,
            header_time,
            body: Body::Plain(PlainBody {
                incoming,
                deadline,
                timeout: cx.timeout(),
                sender: sender.map(|s| (self.pool.clone(), s)),
            }),
            max_body,
            read: 0,
        })
    }

    /// One exchange: on a kept-alive connection if one is idle, else on a new one. A request
    /// lost with a kept-alive connection that the server closed meanwhile is sent once more
    /// on a new connection; GET and HEAD may be repeated (RFC 9110, section 9.2.2).
    async fn exchange(&self) -> Result<(http::Response<Incoming>, Option<Sender>), ProbeError> {
        if self.reuse_connections {
            if let Some(mut sender) = self.pool.checkout() {
                if sender.ready().await.is_ok() {
                    if let Ok(response) = sender.send_request(self.request()).await {
                        return Ok((response, Some(sender)));
                    }
                }
            }
        }
        let mut sender = self.pool.connect(&self.url).await?;
        let response = sender.send_request(self.request()).await.map_err(|e| {
            ProbeError::new(
                Reason::Connect,
                format!("{}: {}", self.url, error_chain(&e)),
            )
        })?;
        Ok((response, self.reuse_connections.then_some(sender)))
    }

    fn request(&self) -> Request<Empty<Bytes>> {
        let mut req = Request::new(Empty::new());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.target.clone();
        let headers = req.headers_mut();
        headers.reserve(3 + self.extra.len());
        headers.insert(header::HOST, self.host.clone());
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        for (name, value) in self.extra.iter() {
            headers.insert(name, value.clone());
        }
        req
    }
}

/// The body of a response on a pooled connection; the connection goes back to its pool once
/// the body has been read to its end.
pub(super) struct PlainBody {
    incoming: Incoming,
    deadline: Instant,
    /// The run's timeout, for the message when the deadline passes.
    timeout: Duration,
    sender: Option<(Arc<Pool>, Sender)>,
}

impl PlainBody {
    pub(super) fn content_length(&self) -> Option<u64> {
        self.incoming.size_hint().exact()
    }

    pub(super) async fn chunk(&mut self) -> Result<Option<Bytes>, ProbeError> {
        loop {
            let frame = tokio::time::timeout_at(self.deadline, self.incoming.frame())
                .await
                .map_err(|_| {
                    ProbeError::new(
                        Reason::Timeout,
                        format!(
                            "body not read: the run's timeout of {:?} has passed",
                            self.timeout
                        ),
                    )
                })?;
            match frame {
                None => {
                    if let Some((pool, sender)) = self.sender.take() {
                        pool.put_back(sender);
                    }
                    return Ok(None);
                }
                Some(Err(e)) => {
                    return Err(ProbeError::new(
                        Reason::Parse,
                        format!("body not read: {}", error_chain(&e)),
                    ))
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                    // Trailers carry nothing the probe reads.
                }
            }
        }
    }
}
