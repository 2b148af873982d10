//! Body wrappers at the host's edges: a body that stops at a size limit, a request body
//! that fails when the client stops sending it, and a response body that reports a
//! guest failure as an error instead of a clean end.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, DropGuard};
use wasmtime_wasi_http::{Error, WasiBody};

/// A body that fails once more than `limit` bytes have arrived: a client's request body
/// (`413` for the client) or an upstream's response body (an error for the guest).
pub struct LimitedBody<B> {
    inner: B,
    remaining: u64,
    limit: u64,
    exceeded: Option<Arc<AtomicBool>>,
    too_large: fn(Option<u64>) -> Error,
}

impl<B> LimitedBody<B> {
    /// Wraps a request body; `exceeded` is set when the limit is passed, so the host can
    /// answer `413`.
    pub fn request(inner: B, limit: u64, exceeded: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
            exceeded: Some(exceeded),
            too_large: Error::HttpRequestBodySize,
        }
    }

    /// Wraps an upstream's response body.
    pub fn response(inner: B, limit: u64) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
            exceeded: None,
            too_large: Error::HttpResponseBodySize,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Error>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |data| data.len() as u64);
                match this.remaining.checked_sub(len) {
                    Some(remaining) => {
                        this.remaining = remaining;
                        Poll::Ready(Some(Ok(frame)))
                    }
                    None => {
                        if let Some(exceeded) = &this.exceeded {
                            exceeded.store(true, Ordering::Release);
                        }
                        Poll::Ready(Some(Err((this.too_large)(Some(this.limit)))))
                    }
                }
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client's request body that fails once the client has sent nothing for `timeout`
/// while the host waited for more, setting `stalled` so the host can answer `408`.
pub struct IdleTimeoutBody<B> {
    inner: B,
    timeout: Duration,
    stalled: Arc<AtomicBool>,
    /// Running while the host waits for the client; reset by every frame.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<B> IdleTimeoutBody<B> {
    pub fn new(inner: B, timeout: Duration, stalled: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            timeout,
            stalled,
            waiting: None,
        }
    }
}

impl<B> Body for IdleTimeoutBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Error>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                let timeout = this.timeout;
                let waiting = this
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if waiting.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.stalled.store(true, Ordering::Release);
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
            ready => {
                this.waiting = None;
                ready.map(|frame| frame.map(|result| result.map_err(Into::into)))
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

/// The instance a guest's response body comes from, held until the body ends.
pub trait GuestSource: Send + Sync + 'static {
    /// Whether the instance failed: a body that ends then was cut off.
    fn failed(&self) -> bool;
}

/// Every response the host sends: a guest's body, watched for a guest failure, or a
/// short body the host wrote itself.
pub struct ResponseBody {
    inner: WasiBody,
    source: Option<Box<dyn GuestSource>>,
    /// The request's admission slot: a request counts against the concurrency cap until
    /// its body has been sent or dropped.
    _slot: Option<OwnedSemaphorePermit>,
    /// Cancelled, to tell the guest's instance that the client went away, when the
    /// body is dropped before its end.
    client_gone: Option<CancellationToken>,
    /// Whether the body has ended, cleanly or not.
    ended: bool,
}

impl ResponseBody {
    /// A guest's body. If its `source` has failed when it ends (the guest's instance
    /// failed before finishing it), it ends in an error, so the client sees an aborted
    /// response rather than a complete-looking truncated one.
    /// `client_present` fires if the body is dropped before its end (the client went
    /// away), and not otherwise.
    pub fn from_guest(
        inner: WasiBody,
        source: Option<Box<dyn GuestSource>>,
        slot: OwnedSemaphorePermit,
        client_present: DropGuard,
    ) -> Self {
        Self {
            inner,
            source,
            _slot: Some(slot),
            client_gone: Some(client_present.disarm()),
            ended: false,
        }
    }

    /// A complete body written by the host.
    pub fn host(bytes: Bytes) -> Self {
        Self {
            inner: http_body_util::Full::new(bytes)
                .map_err(|never| match never {})
                .boxed_unsync(),
            source: None,
            _slot: None,
            client_gone: None,
            ended: false,
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // hyper stops polling a body that says it has ended, without waiting for the
        // `None` after its last frame: only a body dropped short of its end was cut off.
        if let Some(client_gone) = &self.client_gone
            && !self.ended
            && !self.inner.is_end_stream()
        {
            client_gone.cancel();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            // The guest's body ends cleanly both when it finished the body and when its
            // instance died with the body open; only the instance's fate tells them
            // apart. It is recorded before the instance is dropped, so it is current here.
            Poll::Ready(None) if self.source.as_ref().is_some_and(|source| source.failed()) => {
                Poll::Ready(Some(Err(Error::HttpResponseIncomplete)))
            }
            other => other,
        };
        self.ended |= matches!(frame, Poll::Ready(None | Some(Err(_))));
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
