//! A small HTTP/1 server for `GET /metrics` on its own address (`--metrics-addr`), apart
//! from the application's port: a scrape never waits behind admission, and the guest's
//! routes never collide with it. It stops with the main server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::server::ACCEPT_BACKOFF;

/// The one path served.
pub const METRICS_PATH: &str = "/metrics";

/// Content type of the OpenMetrics text format, which Prometheus reads.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a scrape may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a scrape still in progress at shutdown may take to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The running metrics server.
pub struct MetricsServer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `addr` and serves `metrics` there until [`MetricsServer::shutdown`].
    pub async fn start(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<Self> {
        let listener = TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen for metrics on {addr}: is another server using that port? (set --metrics-addr)")
        })?;
        let local = listener
            .local_addr()
            .context("cannot read the metrics server's bound address")?;
        tracing::info!("serving metrics at http://{local}{METRICS_PATH}");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, metrics, stopped));
        Ok(Self { stop, task })
    }

    /// Stops accepting and gives scrapes in progress a moment to finish.
    pub async fn shutdown(self) {
        // The loop may already have ended (the runtime is going away): nothing to stop.
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::warn!("the metrics server ended abnormally: {error}");
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut stop: oneshot::Receiver<()>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!("metrics: accept failed: {error}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let metrics = metrics.clone();
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = respond(&metrics, &request);
                    async move { Ok::<_, Infallible>(response) }
                });
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, "metrics connection ended with an error: {error}");
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("metrics scrapes still open at shutdown were cut off");
    }
}

fn respond(metrics: &Metrics, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() != METRICS_PATH {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut response = Response::new(Full::new(Bytes::from(metrics.encode())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
    );
    response
}

fn plain(status: StatusCode, message: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(message.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
