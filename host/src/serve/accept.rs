//! Accepting connections and serving HTTP/1.1 and h2c on them, for the serving port and
//! the side servers alike: at most so many open at once, each watched for the drain and
//! for clients that hold it without using it (see [`super::connection`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::connection::{TrackedBody, WatchedIo};
use crate::config::{ClientLimits, ConnectionLimits};
use crate::observe::metrics::Metrics;
use crate::observe::summary::RepeatedWarnings;

/// How long to wait before accepting again after `accept` fails (for example when the
/// process is out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// HTTP/2 streams one connection may have open; admission caps the work behind them.
const H2_MAX_CONCURRENT_STREAMS: u32 = 250;

/// Streams a client may reset before the server has seen them, and streams the server
/// may reset for protocol errors, before the connection is closed (rapid-reset defence,
/// CVE-2023-44487).
const H2_MAX_PENDING_RESETS: usize = 20;
const H2_MAX_LOCAL_ERROR_RESETS: usize = 64;

/// What a client gets when it connects past the cap: HTTP/1 clients read a `503`, and
/// HTTP/2 ones a closed connection.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
    Connection: close\r\nContent-Length: 0\r\n\r\n";

/// How every port of the process accepts and serves connections.
#[derive(Clone)]
pub struct Acceptor {
    builder: auto::Builder<TokioExecutor>,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    warnings: Arc<RepeatedWarnings>,
}

impl Acceptor {
    /// Connections served with `client`'s and `limits`' limits, counted in `metrics`,
    /// refusals summed in `warnings`.
    pub fn new(
        client: &ClientLimits,
        limits: &ConnectionLimits,
        metrics: Arc<Metrics>,
        warnings: Arc<RepeatedWarnings>,
    ) -> Self {
        Self {
            builder: connection_builder(client),
            limits: limits.clone(),
            metrics,
            warnings,
        }
    }

    /// Accepts connections on `listener`, at most `max_connections` open at once, and
    /// serves each with `service`, forever; each connection is watched by `graceful`.
    pub async fn accept_connections<S, F, B>(
        &self,
        listener: &TcpListener,
        graceful: &GracefulShutdown,
        max_connections: u32,
        service: S,
    ) -> Infallible
    where
        S: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<B>> + Send + 'static,
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let open = Arc::new(Semaphore::new(max_connections as usize));
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!("accept failed: {error}");
                    self.warnings
                        .record("accepting a connection failed (out of open files?)");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            match open.clone().try_acquire_owned() {
                Ok(slot) => self.serve(stream, peer, slot, graceful, service.clone()),
                Err(_) => self.refuse(&stream),
            }
        }
    }

    /// Serves the connection `stream` from `peer` with `service` in a task of its own,
    /// holding `slot` until it closes.
    fn serve<S, F, B>(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        slot: OwnedSemaphorePermit,
        graceful: &GracefulShutdown,
        service: S,
    ) where
        S: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
        F: Future<Output = Response<B>> + Send + 'static,
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Responses are often one small write; Nagle would hold them back waiting for
        // the client's delayed ACK.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "cannot set TCP_NODELAY: {error}");
        }
        let (io, activity) = WatchedIo::new(stream, &self.limits);
        let service = service_fn(move |request: Request<Incoming>| {
            let in_flight = activity.request_started();
            let response = service(request, peer);
            async move {
                let response = response.await;
                Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, in_flight)))
            }
        });
        let connection = self
            .builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let metrics = self.metrics.clone();
        metrics.connection_opened();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, "connection ended with an error: {error}");
            }
            metrics.connection_closed();
            drop(slot);
        });
    }

    /// Turns away a connection past the cap, counted and summed for the log.
    fn refuse(&self, stream: &TcpStream) {
        // Best effort: a client whose socket cannot take it at once just sees the close.
        let _ = stream.try_write(REFUSED);
        self.metrics.connection_refused();
        self.warnings
            .record("connections refused: too many open (--max-connections)");
    }
}

/// HTTP/1.1 and HTTP/2 over cleartext (h2c, prior knowledge) on one port, with every
/// client-facing limit set explicitly.
fn connection_builder(client: &ClientLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(client.header_read_timeout)
        .max_buf_size(client.max_header_size);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(u32::try_from(client.max_header_size).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS);
    builder
}
