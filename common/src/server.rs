//! The HTTP server both binaries run: HTTP/1.1 and HTTP/2, optional TLS and basic auth from the
//! web configuration, and graceful stop on cancellation.
//!
//! The server is written for a network where a broken or hostile client can reach it:
//!
//! * every connection has a deadline from accept until its first request head is complete
//!   (TLS handshake and the HTTP/2 preface included), and a keep-alive connection with no
//!   request in progress is closed after the idle timeout; HTTP/2 connections are pinged;
//! * request bodies are read through [`read_body`], which bounds their size, the time they may
//!   take, and the bytes of all bodies in flight in the process together ([`BodyBudget`]);
//! * a connection's progress is measured by the bytes it moves: it last made progress when
//!   the bytes it read and wrote since then reached [`MIN_PROGRESS_RATE`] per second of the
//!   time since. A connection with a request in progress that waits on its client (a body that
//!   stopped arriving, an HTTP/2 stream whose flow-control window stays at zero) and makes no
//!   progress for the read timeout is closed;
//! * at the connection limit, a new connection closes the connection that has made no progress
//!   the longest instead of waiting (a new connection counts as having made progress when it
//!   was accepted; before choosing, the server lets the connections it accepted a moment ago
//!   read what they were sent, so a request that has arrived is not taken for silence), so
//!   clients that connect and send nothing, stop sending a body or stop reading cannot lock
//!   others out; a connection whose request the server itself is still working on is closed
//!   only when every connection is;
//! * where the listener is not loopback-only, one client address holds at most
//!   [`Limits::max_connections_per_address`] connections: a new one beyond it closes that
//!   address's own connection with the least recent progress.
//!
//! **Invariant:** no client can hold a connection slot, a file descriptor or body memory for
//! longer than the limits in [`Limits`] say, whatever it sends or does not send.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::webconfig::WebSecurity;

mod body;
pub use body::ResponseBody;

/// An incoming request.
pub type Request = http::Request<Incoming>;
/// A response: its body whole, or produced while it is sent ([`ResponseBody::stream`]).
pub type Response = http::Response<ResponseBody>;
/// A boxed response future.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response> + Send + 'static>>;
/// The application: turns a request into a response; it must not fail.
pub type Handler = Arc<dyn Fn(Request) -> ResponseFuture + Send + Sync>;
/// Tells the server that the handler authenticates this request itself, so the web
/// configuration's basic auth is not asked for (the remediator's webhook has its own
/// credentials).
pub type OwnAuth = Arc<dyn Fn(&Request) -> bool + Send + Sync>;

/// How long a request may stay in progress (body read, handler and handing the response to the
/// connection) before its connection is closed. No handler of ours takes more than a few
/// seconds; a request older than this belongs to a client that does not read its response.
const REQUEST_BACKSTOP: Duration = Duration::from_secs(120);
/// Interval of HTTP/2 keep-alive pings, and how long an answer may take.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams one HTTP/2 connection may have open at once.
const H2_MAX_STREAMS: u32 = 32;
/// HTTP/2 flow-control windows: they bound what a client can make us buffer for a body the
/// handler has not read yet, per stream and per connection.
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONNECTION_WINDOW: u32 = 128 * 1024;
/// Largest HTTP/1 read buffer, which bounds a request head (the default is about 400 KiB).
const H1_MAX_BUFFER: usize = 64 * 1024;
/// How long a connection that is being closed gets to finish a graceful shutdown.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// A connection has made progress when the bytes it moved (read and written) since it last made
/// progress reach this many per second of the time since. A client trickling a byte now and then
/// stays below it; any client that is really sending or reading stays far above it.
pub const MIN_PROGRESS_RATE: u64 = 256;
/// A connection waiting on its client with a request in progress is closed after the read
/// timeout plus this without progress: the handler's own 408 for a body that did not arrive
/// (after the read timeout) comes first.
const STALL_GRACE: Duration = Duration::from_secs(1);
/// At most one warning about shed connections per this interval.
const SHED_WARN_INTERVAL: Duration = Duration::from_secs(60);
/// Seconds a client is asked to wait before retrying a request refused for lack of body memory.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// The server's limits against slow, idle and greedy clients. Set by the `--web.*` flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once; a new one beyond it closes the one that has made no
    /// progress the longest.
    pub max_connections: usize,
    /// Most connections open at once from one client address, where the listener is not
    /// loopback-only (0: no limit); a new one beyond it closes that address's connection with
    /// the least recent progress.
    pub max_connections_per_address: usize,
    /// Time from accept until the first request head is complete, and time to read a body.
    pub read_timeout: Duration,
    /// Time a connection may stay open with no request in progress after its last response.
    pub idle_timeout: Duration,
    /// Bytes of request bodies all connections together may hold in memory at once.
    pub body_bytes_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            max_connections_per_address: 64,
            read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_bytes_in_flight: 8 << 20,
        }
    }
}

/// A process-wide bound on the bytes of request bodies held in memory at once. A body that does
/// not fit is refused at once ([`BodyError::Busy`], answered with 503 and `Retry-After`), so
/// many large requests in parallel cannot grow memory without bound.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    capacity: u32,
}

impl BodyBudget {
    /// A budget of `capacity` bytes (at most `u32::MAX`, at least 1).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let capacity = u32::try_from(capacity).unwrap_or(u32::MAX).max(1);
        Self {
            bytes: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
        }
    }

    /// Bytes not reserved by any body now.
    #[must_use]
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Grows `held` to cover `total` bytes, or fails when the budget has no room. A body larger
    /// than the whole budget needs the whole budget.
    fn reserve(&self, held: &mut Option<OwnedSemaphorePermit>, total: usize) -> bool {
        let total = u32::try_from(total).unwrap_or(u32::MAX).min(self.capacity);
        let have = held.as_ref().map_or(0, |p| p.num_permits() as u32);
        if total <= have {
            return true;
        }
        match self.bytes.clone().try_acquire_many_owned(total - have) {
            Ok(more) => {
                match held {
                    Some(p) => p.merge(more),
                    None => *held = Some(more),
                }
                true
            }
            Err(_) => false,
        }
    }
}

/// What the server tells a handler about its limits and settings, as a request extension.
#[derive(Clone, Debug)]
struct RequestContext {
    enable_lifecycle: bool,
    read_timeout: Duration,
    budget: BodyBudget,
}

/// Whether the lifecycle endpoints (`POST /-/reload`) are enabled for this request's server
/// (`--web.enable-lifecycle`). False for a request that did not come through [`serve`].
#[must_use]
pub fn lifecycle_enabled(req: &Request) -> bool {
    req.extensions()
        .get::<RequestContext>()
        .is_some_and(|c| c.enable_lifecycle)
}

/// A request body read in full. It holds its share of the [`BodyBudget`] until dropped, so keep
/// it only as long as the work on it lasts.
#[derive(Debug)]
pub struct Body {
    bytes: Bytes,
    _reserved: Option<OwnedSemaphorePermit>,
}

impl Body {
    /// The body's bytes.
    #[must_use]
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

impl std::ops::Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than the handler's limit (declared or counted).
    #[error("body larger than {limit} bytes")]
    TooLarge {
        /// The handler's limit.
        limit: usize,
    },
    /// The process holds as many body bytes as `--web.max-body-bytes-in-flight` allows.
    #[error("too many request bodies in flight; retry later")]
    Busy,
    /// The body did not arrive within the read timeout.
    #[error("the body did not arrive within {0:?}")]
    Timeout(Duration),
    /// The connection failed or the framing was invalid.
    #[error("cannot read the body: {0}")]
    Read(String),
}

impl BodyError {
    /// The status to answer with: 413, 503 (with [`retry_after`]), 408 or 400.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Read(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Adds `Retry-After` ([`RETRY_AFTER_SECONDS`]) to a response, for 503s a client should retry.
pub fn retry_after(resp: &mut Response) {
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
}

/// Reads the whole body of `req`, at most `limit` bytes, within the read timeout and inside the
/// process-wide [`BodyBudget`]. A declared `Content-Length` above `limit` is refused before a
/// byte is read; a body the budget has no room for is read and dropped, then refused as
/// [`BodyError::Busy`].
///
/// # Errors
/// See [`BodyError`].
pub async fn read_body(req: Request, limit: usize) -> Result<Body, BodyError> {
    let context = req.extensions().get::<RequestContext>().cloned();
    // While the body is awaited, the request waits on its client, not on the server: the
    // connection is judged by its progress like one with nothing in progress.
    let _waiting = req
        .extensions()
        .get::<ConnHandle>()
        .map(|c| WaitingOnClient::start(c.0.clone()));
    let (timeout, budget) = match context {
        Some(c) => (c.read_timeout, Some(c.budget)),
        None => (Limits::default().read_timeout, None),
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let declared = declared.map_or(0, |n| n as usize);
    let mut reserved = None;
    let mut body = req.into_body();
    let read = async {
        let mut buf = BytesMut::new();
        let mut busy = budget
            .as_ref()
            .is_some_and(|b| !b.reserve(&mut reserved, declared));
        if !busy {
            buf.reserve(declared);
        }
        let mut received = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            received += data.len();
            if received > limit {
                return Err(BodyError::TooLarge { limit });
            }
            busy = busy
                || budget
                    .as_ref()
                    .is_some_and(|b| !b.reserve(&mut reserved, received));
            // A body refused for lack of memory is still read to its end and dropped, so the
            // 503 reaches the client: closing a connection with unread data resets it, and
            // the reset can destroy the answer before the client reads it.
            if busy {
                reserved = None;
                buf = BytesMut::new();
            } else {
                buf.extend_from_slice(&data);
            }
        }
        if busy {
            return Err(BodyError::Busy);
        }
        Ok(buf.freeze())
    };
    let bytes = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| BodyError::Timeout(timeout))??;
    Ok(Body {
        bytes,
        _reserved: reserved,
    })
}

/// Serves `handler` on `listener` until `shutdown` is cancelled.
///
/// # Errors
/// Returns only when accepting connections fails for good.
pub async fn serve(
    listener: TcpListener,
    security: WebSecurity,
    handler: Handler,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let security = Arc::new(security);
    let limits = security.limits.clone();
    // Behind a loopback-only listener every client has the same address (a local Prometheus,
    // Alertmanager or proxy): a cap per address would be a second global limit.
    let loopback_only = listener.local_addr()?.ip().is_loopback();
    let per_address = if loopback_only {
        0
    } else {
        limits.max_connections_per_address
    };
    let tracker = Arc::new(Tracker::new(limits.max_connections.max(1), per_address));
    let context = RequestContext {
        enable_lifecycle: security.enable_lifecycle,
        read_timeout: limits.read_timeout,
        budget: BodyBudget::new(limits.body_bytes_in_flight),
    };
    loop {
        let (stream, remote) = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // Running out of file descriptors is transient; back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        if tracker.full_for(remote.ip()) {
            // A connection is about to be closed for this one. Connections accepted a moment
            // ago may have their request waiting, not yet read because their tasks have not
            // run: let them run first, so that they are judged by what they sent and not
            // mistaken for ones that sent nothing. (This also paces accepting at the limit to
            // the serving of the connections already open.)
            tokio::task::yield_now().await;
        }
        let registration = tracker.register(remote.ip());
        let conn = Connection {
            security: security.clone(),
            handler: handler.clone(),
            context: context.clone(),
            state: registration.state.clone(),
            epoch: tracker.epoch,
        };
        let shutdown = shutdown.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let state = registration.state.clone();
            let shed = state.shed.clone();
            let closing = CancellationToken::new();
            let watchdog = watchdog(&state, &limits, registration.epoch);
            tokio::pin!(watchdog);
            let served = conn.run(stream, closing.clone());
            tokio::pin!(served);
            let why = tokio::select! {
                r = &mut served => {
                    if let Err(e) = r {
                        tracing::debug!(%remote, error = %e, "connection ended with an error");
                    }
                    return;
                }
                // In-flight responses are short; on shutdown the connection is simply dropped.
                () = shutdown.cancelled() => return,
                // Shedding frees a slot and a file descriptor for a new connection: at once.
                () = shed.cancelled() => {
                    tracing::debug!(%remote, "closing connection to make room for a new one");
                    return;
                }
                why = &mut watchdog => why,
            };
            tracing::debug!(%remote, reason = why, "closing connection");
            // A graceful close lets HTTP/2 send GOAWAY and an idle HTTP/1 connection end
            // cleanly; a client that does not cooperate is dropped after a short grace.
            closing.cancel();
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut served).await;
        });
    }
}

/// One accepted connection and what serving it needs.
struct Connection {
    security: Arc<WebSecurity>,
    handler: Handler,
    context: RequestContext,
    state: Arc<ConnState>,
    epoch: Instant,
}

/// The connection a request came on, as a request extension, so that [`read_body`] can say
/// that the request waits on its client.
#[derive(Clone)]
struct ConnHandle(Arc<ConnState>);

impl Connection {
    async fn run(
        self,
        stream: TcpStream,
        closing: CancellationToken,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        // The head deadline and the idle timeout are the watchdog's; hyper's own HTTP/1 header
        // timeout would also close idle keep-alive connections, so it is off.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(H1_MAX_BUFFER);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(H2_PING_INTERVAL))
            .keep_alive_timeout(H2_PING_TIMEOUT)
            .max_concurrent_streams(H2_MAX_STREAMS)
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW);
        let Self {
            security,
            handler,
            context,
            state,
            epoch,
        } = self;
        let stream = Metered {
            inner: stream,
            state: state.clone(),
            epoch,
        };
        let service = {
            let security = security.clone();
            let state = state.clone();
            hyper::service::service_fn(move |mut req: Request| {
                let guard = RequestGuard::start(state.clone(), epoch);
                let security = security.clone();
                let handler = handler.clone();
                req.extensions_mut().insert(context.clone());
                req.extensions_mut().insert(ConnHandle(state.clone()));
                async move {
                    let resp = {
                        // The server works on the request until the response is handed over.
                        let _working = Working::start(&guard);
                        respond(&security, &handler, req).await
                    };
                    Ok::<_, Infallible>(resp.map(|body| body.tracked(guard)))
                }
            })
        };
        let io: Box<dyn Io> = match &security.tls {
            // The handshake counts against the head deadline, which the watchdog enforces.
            Some(tls) => Box::new(tls.accept(stream).await?),
            None => Box::new(stream),
        };
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => return r,
            () = closing.cancelled() => {}
        }
        conn.as_mut().graceful_shutdown();
        conn.await
    }
}

/// A plain or TLS stream.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// The TCP stream of a connection, counting the bytes it moves as the connection's progress
/// (below TLS, so a handshake counts too).
struct Metered {
    inner: TcpStream,
    state: Arc<ConnState>,
    epoch: Instant,
}

impl Metered {
    /// Counts what a write moved.
    fn written(&self, r: &Poll<std::io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = r {
            if *n > 0 {
                self.state.moved(*n, millis_since(self.epoch));
            }
        }
    }
}

impl tokio::io::AsyncRead for Metered {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.state.moved(n, millis_since(this.epoch));
            this.state.heard.store(true, Ordering::Release);
        }
        r
    }
}

impl tokio::io::AsyncWrite for Metered {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.written(&r);
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.written(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Waits until the connection has broken one of the limits, and says which.
async fn watchdog(state: &ConnState, limits: &Limits, epoch: Instant) -> &'static str {
    loop {
        let now = epoch.elapsed();
        let (since, limit, why) = if state.active.load(Ordering::Acquire) > 0 {
            let oldest = state.oldest_request_ms();
            let backstop = (
                oldest,
                limits.read_timeout + REQUEST_BACKSTOP,
                "a request took too long (the client does not read its response)",
            );
            if state.server_working() {
                backstop
            } else {
                // The requests in progress wait on the client: a body to arrive, or a response
                // to be read. Without progress, the client has stalled.
                let stalled = (
                    state.progress_ms.load(Ordering::Acquire),
                    limits.read_timeout + STALL_GRACE,
                    "a request in progress made no progress within the read timeout (a body that stopped arriving or a response the client does not read)",
                );
                if stalled.0 + millis(stalled.1) <= backstop.0 + millis(backstop.1) {
                    stalled
                } else {
                    backstop
                }
            }
        } else if state.requests.load(Ordering::Acquire) == 0 {
            (
                state.accepted_ms,
                limits.read_timeout,
                "no complete request head within the read timeout",
            )
        } else {
            (
                state.idle_since_ms.load(Ordering::Acquire),
                limits.idle_timeout,
                "idle for the idle timeout",
            )
        };
        let deadline = Duration::from_millis(since) + limit;
        if now >= deadline {
            return why;
        }
        // A request that starts or ends, and progress, change the deadline: wake up and
        // compute it again (progress is looked at when the deadline comes, which is enough).
        tokio::select! {
            () = tokio::time::sleep(deadline - now) => {}
            () = state.changed.notified() => {}
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The open connections, so that a new one can close the one with the least recent progress at
/// the limit.
struct Tracker {
    epoch: Instant,
    max: usize,
    /// Most connections per client address; 0 for no limit.
    per_address: usize,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    last_shed_warning: Mutex<Option<Instant>>,
}

/// What the tracker and the watchdog know about one connection.
struct ConnState {
    /// The client's address.
    peer: IpAddr,
    /// Milliseconds after the tracker's epoch when the connection was accepted.
    accepted_ms: u64,
    /// Requests whose head is complete and whose response has not been handed over yet.
    active: AtomicUsize,
    /// Requests the server is working on (authentication, the handler), not waiting on the
    /// client: from the request head until the response is handed over, less the time spent
    /// waiting for a body.
    working: AtomicUsize,
    /// Requests seen on this connection.
    requests: AtomicU64,
    /// Milliseconds after the tracker's epoch when the connection last became idle (the end of
    /// its last request).
    idle_since_ms: AtomicU64,
    /// Milliseconds after the epoch when the connection last made progress (see
    /// [`MIN_PROGRESS_RATE`]); the time it was accepted until then.
    progress_ms: AtomicU64,
    /// Bytes moved since `progress_ms`.
    moved_since_progress: AtomicU64,
    /// Whether the client has sent a byte yet.
    heard: AtomicBool,
    /// Start times (milliseconds after the epoch) of the requests in progress, by request.
    in_progress: Mutex<HashMap<u64, u64>>,
    /// Cancelled to close the connection to make room.
    shed: CancellationToken,
    /// Notified when a request starts or ends, so the watchdog recomputes its deadline.
    changed: tokio::sync::Notify,
}

impl ConnState {
    fn new(peer: IpAddr, now_ms: u64) -> Self {
        Self {
            peer,
            accepted_ms: now_ms,
            active: AtomicUsize::new(0),
            working: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(now_ms),
            progress_ms: AtomicU64::new(now_ms),
            moved_since_progress: AtomicU64::new(0),
            heard: AtomicBool::new(false),
            in_progress: Mutex::new(HashMap::new()),
            shed: CancellationToken::new(),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Counts `n` bytes moved at `now_ms`; progress when the bytes since the last progress
    /// reach [`MIN_PROGRESS_RATE`] per second of the time since.
    fn moved(&self, n: usize, now_ms: u64) {
        let moved = self
            .moved_since_progress
            .fetch_add(n as u64, Ordering::AcqRel)
            .saturating_add(n as u64);
        let last = self.progress_ms.load(Ordering::Acquire);
        let needed = now_ms
            .saturating_sub(last)
            .saturating_mul(MIN_PROGRESS_RATE)
            / 1000;
        if moved >= needed {
            self.progress_ms.store(now_ms, Ordering::Release);
            self.moved_since_progress.store(0, Ordering::Release);
        }
    }

    /// Whether the server is working on a request of this connection (rather than waiting on
    /// its client).
    fn server_working(&self) -> bool {
        self.working.load(Ordering::Acquire) > 0
    }

    /// When the oldest request in progress started (now when there is none).
    fn oldest_request_ms(&self) -> u64 {
        self.in_progress
            .lock()
            .ok()
            .and_then(|m| m.values().min().copied())
            .unwrap_or(self.idle_since_ms.load(Ordering::Acquire))
    }

    /// How the tracker orders victims, first to close first: connections the server is working
    /// on last, then by least recent progress; within the same millisecond, one whose client
    /// has sent nothing yet first (the tracker then takes the oldest).
    fn shed_order(&self) -> (bool, u64, bool) {
        (
            self.server_working(),
            self.progress_ms.load(Ordering::Acquire),
            self.heard.load(Ordering::Acquire),
        )
    }
}

/// A connection's entry in the tracker, removed when the connection task ends.
struct Registration {
    tracker: Arc<Tracker>,
    id: u64,
    state: Arc<ConnState>,
    epoch: Instant,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut conns) = self.tracker.conns.lock() {
            conns.remove(&self.id);
        }
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Tracker {
    fn new(max: usize, per_address: usize) -> Self {
        Self {
            epoch: Instant::now(),
            max,
            per_address,
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            last_shed_warning: Mutex::new(None),
        }
    }

    /// Whether registering a connection from `peer` now would close another.
    fn full_for(&self, peer: IpAddr) -> bool {
        self.conns
            .lock()
            .is_ok_and(|conns| conns.len() >= self.max || self.address_full(&conns, peer))
    }

    /// Whether `peer` holds as many of `conns` as one address may.
    fn address_full(&self, conns: &HashMap<u64, Arc<ConnState>>, peer: IpAddr) -> bool {
        self.per_address > 0
            && conns.values().filter(|c| c.peer == peer).count() >= self.per_address
    }

    /// Registers a new connection from `peer`. At the per-address limit it first closes that
    /// address's connection with the least recent progress; at the global limit, the one of
    /// all (a connection the server is working on only when every connection is one).
    fn register(self: &Arc<Self>, peer: IpAddr) -> Registration {
        let now = millis_since(self.epoch);
        let state = Arc::new(ConnState::new(peer, now));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut shed = 0usize;
        if let Ok(mut conns) = self.conns.lock() {
            while self.address_full(&conns, peer) && shed_first(&mut conns, |c| c.peer == peer) {
                shed += 1;
            }
            while conns.len() >= self.max && shed_first(&mut conns, |_| true) {
                shed += 1;
            }
            conns.insert(id, state.clone());
        }
        if shed > 0 {
            self.warn_shed();
        }
        Registration {
            tracker: self.clone(),
            id,
            state,
            epoch: self.epoch,
        }
    }

    fn warn_shed(&self) {
        let Ok(mut last) = self.last_shed_warning.lock() else {
            return;
        };
        if last.is_none_or(|t| t.elapsed() >= SHED_WARN_INTERVAL) {
            *last = Some(Instant::now());
            tracing::warn!(
                max_connections = self.max,
                max_connections_per_address = self.per_address,
                "connection limit reached: closing the connections with the least recent progress to accept new ones (--web.max-connections, --web.max-connections-per-address)"
            );
        }
    }
}

/// Closes the first to close ([`ConnState::shed_order`], then the oldest) of the connections
/// `which` picks and removes it from `conns`; false when `which` picks none.
fn shed_first(
    conns: &mut HashMap<u64, Arc<ConnState>>,
    which: impl Fn(&ConnState) -> bool,
) -> bool {
    let victim = conns
        .iter()
        .filter(|(_, c)| which(c))
        .min_by_key(|(id, c)| (c.shed_order(), **id))
        .map(|(id, _)| *id);
    match victim.and_then(|id| conns.remove(&id)) {
        Some(c) => {
            c.shed.cancel();
            true
        }
        None => false,
    }
}

/// Marks a request in progress on its connection until the response has been handed over.
struct RequestGuard {
    state: Arc<ConnState>,
    epoch: Instant,
    id: u64,
}

impl RequestGuard {
    fn start(state: Arc<ConnState>, epoch: Instant) -> Self {
        let id = state.requests.fetch_add(1, Ordering::AcqRel);
        state.active.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut m) = state.in_progress.lock() {
            m.insert(id, millis_since(epoch));
        }
        state.changed.notify_one();
        Self { state, epoch, id }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        // Idle time is stamped before the count drops, so the watchdog never sees an idle
        // connection with an old stamp.
        self.state
            .idle_since_ms
            .store(millis_since(self.epoch), Ordering::Release);
        if let Ok(mut m) = self.state.in_progress.lock() {
            m.remove(&self.id);
        }
        self.state.active.fetch_sub(1, Ordering::AcqRel);
        self.state.changed.notify_one();
    }
}

/// Marks the server as working on a request (authentication, the handler) while it lives.
struct Working(Arc<ConnState>);

impl Working {
    fn start(guard: &RequestGuard) -> Self {
        guard.state.working.fetch_add(1, Ordering::AcqRel);
        Working(guard.state.clone())
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        self.0.working.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

/// Marks a request as waiting on its client for a body while it lives: the server is not
/// working on it meanwhile.
struct WaitingOnClient(Arc<ConnState>);

impl WaitingOnClient {
    fn start(state: Arc<ConnState>) -> Self {
        state.working.fetch_sub(1, Ordering::AcqRel);
        state.changed.notify_one();
        WaitingOnClient(state)
    }
}

impl Drop for WaitingOnClient {
    fn drop(&mut self) {
        self.0.working.fetch_add(1, Ordering::AcqRel);
    }
}

async fn respond(security: &WebSecurity, handler: &Handler, req: Request) -> Response {
    if let Some(auth) = &security.auth {
        let own = security.own_auth.as_ref().is_some_and(|f| f(&req));
        if !own && !auth.check(req.headers().get(header::AUTHORIZATION)).await {
            let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"stackmedic\""),
            );
            return r;
        }
    }
    let mut resp = handler(req).await;
    for (name, value) in &security.headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

/// A plain-text response.
#[must_use]
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response {
    with_type(status, "text/plain; charset=utf-8", body.into())
}

/// An HTML response.
#[must_use]
pub fn html(status: StatusCode, body: impl Into<Bytes>) -> Response {
    with_type(status, "text/html; charset=utf-8", body.into())
}

/// A JSON response.
#[must_use]
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    with_type(status, "application/json", body.into())
}

/// A response with the given content type.
#[must_use]
pub fn with_type(status: StatusCode, content_type: &'static str, body: Bytes) -> Response {
    with_body(status, content_type, body.into())
}

/// A response with the given content type and body (whole or streamed).
#[must_use]
pub fn with_body(status: StatusCode, content_type: &'static str, body: ResponseBody) -> Response {
    let mut r = http::Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Escapes text for HTML.
#[must_use]
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Binds a listener, accepting `:PORT` for all interfaces as Prometheus tools do.
///
/// # Errors
/// Fails when the address is invalid or cannot be bound.
pub async fn bind(address: &str) -> std::io::Result<TcpListener> {
    let addr = if address.starts_with(':') {
        format!("[::]{address}")
    } else {
        address.to_string()
    };
    match TcpListener::bind(&addr).await {
        Ok(l) => Ok(l),
        // A host without IPv6 cannot bind `[::]`; fall back to IPv4 for `:PORT`.
        Err(_) if address.starts_with(':') => TcpListener::bind(format!("0.0.0.0{address}")).await,
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
