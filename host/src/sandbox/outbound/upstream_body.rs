//! An upstream's response body as the guest reads it: cut off past the size limit, at
//! the request's overall deadline, and when the upstream pauses longer than the guest
//! allowed between two chunks.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::Error;

use crate::http::body::LimitedBody;

/// A response body with the outbound limits applied.
pub struct UpstreamBody {
    inner: LimitedBody<Incoming>,
    deadline: Pin<Box<Sleep>>,
    between_bytes: Option<(Duration, Pin<Box<Sleep>>)>,
}

impl UpstreamBody {
    /// Wraps `inner`: at most `limit` bytes, nothing after `deadline`, and, if given, no
    /// pause longer than `between_bytes` between frames.
    pub fn new(
        inner: Incoming,
        limit: u64,
        deadline: Instant,
        between_bytes: Option<Duration>,
    ) -> Self {
        Self {
            inner: LimitedBody::response(inner, limit),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            between_bytes: between_bytes.map(|pause| (pause, Box::pin(tokio::time::sleep(pause)))),
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some((pause, timer)) = &mut this.between_bytes {
                    timer.as_mut().reset(Instant::now() + *pause);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(end_or_error) => Poll::Ready(end_or_error),
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(Error::HttpResponseTimeout)));
                }
                if let Some((_, timer)) = &mut this.between_bytes
                    && timer.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
