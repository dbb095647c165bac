//! Response bodies: whole, or streamed while they are sent.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Frame, SizeHint};

/// The body of a [`Response`]: whole, or a stream of pieces that a handler produces while the
/// connection sends the ones before (a large answer then needs neither one buffer of its whole
/// size nor the time to fill it before its first byte goes out).
pub struct ResponseBody {
    kind: BodyKind,
    /// Keeps the request counted as in progress until hyper is done with the body (set by the
    /// server).
    guard: Option<super::RequestGuard>,
}

enum BodyKind {
    Whole(Full<Bytes>),
    Stream(Pin<Box<dyn hyper::body::Body<Data = Bytes, Error = Infallible> + Send>>),
}

impl ResponseBody {
    /// A body sent as it is produced by `body` (without a `Content-Length` unless its size
    /// hint is exact). It must not fail: a producer that cannot go on ends the body.
    pub fn stream(
        body: impl hyper::body::Body<Data = Bytes, Error = Infallible> + Send + 'static,
    ) -> Self {
        Self::of(BodyKind::Stream(Box::pin(body)))
    }

    fn of(kind: BodyKind) -> Self {
        Self { kind, guard: None }
    }

    /// This body, keeping its request counted as in progress until it is dropped.
    pub(super) fn tracked(mut self, guard: super::RequestGuard) -> Self {
        self.guard = Some(guard);
        self
    }
}

impl From<Bytes> for ResponseBody {
    fn from(bytes: Bytes) -> Self {
        Self::of(BodyKind::Whole(Full::new(bytes)))
    }
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().kind {
            BodyKind::Whole(b) => Pin::new(b).poll_frame(cx),
            BodyKind::Stream(b) => b.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Whole(b) => b.is_end_stream(),
            BodyKind::Stream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Whole(b) => b.size_hint(),
            BodyKind::Stream(b) => b.size_hint(),
        }
    }
}
