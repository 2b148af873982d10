//! One accepted connection, watched for what ties it up without doing work: a client
//! that never sends its first request (or half the HTTP/2 preface, or only HTTP/2
//! settings), an HTTP/2 connection left open with no stream, a client that stops reading
//! its response, on the socket or, over HTTP/2, by granting a stream no more window.
//! The watch sits on the socket, below hyper-util's choice of HTTP/1 or HTTP/2, so it
//! covers the time before that choice too.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::config::ConnectionLimits;

/// What the connection is doing, shared by its socket and the requests on it.
#[derive(Debug)]
pub struct Activity {
    /// Requests whose response has not ended.
    in_flight: AtomicUsize,
    state: Mutex<IdleState>,
}

#[derive(Debug)]
struct IdleState {
    /// Whether a request has arrived yet.
    served: bool,
    /// Since when nothing has been in flight.
    idle_since: Instant,
    /// The socket's reader, woken to start its idle timer when the last response ends.
    reader: Option<Waker>,
    /// Responses that gave hyper a frame it has not sent yet, by when they did: how many
    /// since each instant. hyper asks for the next frame only once the client took this
    /// one, over HTTP/2 once the client granted the stream window for it.
    waiting_for_client: BTreeMap<Instant, usize>,
    /// The socket's reader, woken to start its stall timer when the first response
    /// starts waiting for the client.
    stall_watch: Option<Waker>,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            state: Mutex::new(IdleState {
                served: false,
                idle_since: Instant::now(),
                reader: None,
                waiting_for_client: BTreeMap::new(),
                stall_watch: None,
            }),
        })
    }

    /// A request arrived; the returned guard ends it when dropped.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.lock().served = true;
        InFlight(self.clone())
    }

    /// When the connection, idle since it was accepted or since its last response,
    /// must close; `None` while a request is in flight.
    fn idle_deadline(&self, limits: &ConnectionLimits, reader: &Waker) -> Option<Instant> {
        let mut state = self.lock();
        if self.in_flight.load(Ordering::Acquire) > 0 {
            state.reader = Some(reader.clone());
            return None;
        }
        let allowed = if state.served {
            limits.idle_timeout
        } else {
            limits.first_request_timeout
        };
        Some(state.idle_since + allowed)
    }

    /// Since when the response that has waited longest for the client has waited;
    /// `None` when none waits, and then `reader` is woken when one starts.
    fn waiting_since(&self, reader: &Waker) -> Option<Instant> {
        let mut state = self.lock();
        let oldest = state.waiting_for_client.keys().next().copied();
        if oldest.is_none() {
            state.stall_watch = Some(reader.clone());
        }
        oldest
    }

    /// Records that a response waits for the client from `since`, instead of from
    /// `before` if it already did.
    fn wait_for_client(&self, before: Option<Instant>, since: Option<Instant>) {
        let mut state = self.lock();
        if let Some(before) = before
            && let Some(count) = state.waiting_for_client.get_mut(&before)
        {
            *count -= 1;
            if *count == 0 {
                state.waiting_for_client.remove(&before);
            }
        }
        if let Some(since) = since {
            *state.waiting_for_client.entry(since).or_default() += 1;
            if let Some(watch) = state.stall_watch.take() {
                watch.wake();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IdleState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A request in flight on a connection, until its response ends or is dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            state.idle_since = Instant::now();
            if let Some(reader) = state.reader.take() {
                reader.wake();
            }
        }
    }
}

/// A response body that keeps its request in flight until it ends or is dropped, and
/// tells the connection while it waits for the client to take a frame.
pub struct TrackedBody<B> {
    inner: B,
    in_flight: InFlight,
    /// Since when hyper has held a frame of this body without asking for the next.
    waiting_since: Option<Instant>,
}

impl<B> TrackedBody<B> {
    /// Tracks `inner`, whose head is about to be sent: the client has to take that first.
    pub fn new(inner: B, in_flight: InFlight) -> Self {
        let mut body = Self {
            inner,
            in_flight,
            waiting_since: None,
        };
        body.wait_for_client(Some(Instant::now()));
        body
    }

    fn wait_for_client(&mut self, since: Option<Instant>) {
        if self.waiting_since != since {
            self.in_flight.0.wait_for_client(self.waiting_since, since);
            self.waiting_since = since;
        }
    }
}

impl<B> Drop for TrackedBody<B> {
    fn drop(&mut self) {
        self.wait_for_client(None);
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        // A body that has nothing yet waits for its guest, not for the client.
        let waiting = matches!(frame, Poll::Ready(Some(Ok(_)))).then(Instant::now);
        self.wait_for_client(waiting);
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket that ends (as if the client had closed it) once it has been idle too long,
/// and fails a write that waits too long for the client to read.
pub struct WatchedIo<I> {
    inner: I,
    activity: Arc<Activity>,
    limits: ConnectionLimits,
    idle: Pin<Box<Sleep>>,
    /// Running while a write waits for the client.
    write_stalled: Option<Pin<Box<Sleep>>>,
    /// Set to when the response that has waited longest for the client times out.
    response_stalled: Pin<Box<Sleep>>,
}

impl<I> WatchedIo<I> {
    /// Watches `inner`, a connection just accepted, with `limits`; the requests on it
    /// report to the returned [`Activity`].
    pub fn new(inner: I, limits: &ConnectionLimits) -> (Self, Arc<Activity>) {
        let activity = Activity::new();
        let io = Self {
            inner,
            activity: activity.clone(),
            limits: limits.clone(),
            idle: Box::pin(tokio::time::sleep(limits.first_request_timeout)),
            write_stalled: None,
            response_stalled: Box::pin(tokio::time::sleep(limits.write_timeout)),
        };
        (io, activity)
    }

    /// Whether the connection has been idle past its limit (the timer then wakes `cx`).
    fn idled_out(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.activity.idle_deadline(&self.limits, cx.waker()) else {
            return false;
        };
        if self.idle.deadline() != deadline {
            self.idle.as_mut().reset(deadline);
        }
        self.idle.as_mut().poll(cx).is_ready()
    }

    /// Whether a response has waited for the client to take a frame past the write
    /// timeout (the timer then wakes `cx`). Over HTTP/1 the socket's own write shows
    /// it first; over HTTP/2 a client stalls a stream by granting it no window, and the
    /// socket never blocks.
    fn response_stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(since) = self.activity.waiting_since(cx.waker()) else {
            return false;
        };
        let deadline = since + self.limits.write_timeout;
        if self.response_stalled.deadline() != deadline {
            self.response_stalled.as_mut().reset(deadline);
        }
        self.response_stalled.as_mut().poll(cx).is_ready()
    }

    /// `write`'s outcome, failed if it has been waiting for the client too long.
    fn watch_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if write.is_ready() {
            self.write_stalled = None;
            return write;
        }
        let timeout = self.limits.write_timeout;
        let stalled = self
            .write_stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading the response",
            ))),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WatchedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            // Nothing is in flight, so ending the stream loses nothing, and hyper closes
            // the connection as it would for a client that left.
            Poll::Pending if this.idled_out(cx) => Poll::Ready(Ok(())),
            Poll::Pending if this.response_stalled(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped taking the response",
            ))),
            other => other,
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WatchedIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let write = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch_write(cx, write)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let write = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch_write(cx, write)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flush = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch_write(cx, flush)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
