//! The application's HTTP server: bind, accept, serve HTTP/1.1 and h2c on one port, and
//! drain on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::admission::Admission;
use crate::config::ServeConfig;
use crate::engine;
use crate::exchange::{ObservedBody, Observer};
use crate::handler::{Handler, HandlerSettings, plain_response};
use crate::limits::{self, ClientLimits};
use crate::metrics::Metrics;
use crate::metrics_server::MetricsServer;
use crate::shutdown;

/// How long to wait before accepting again after `accept` fails (for example when the
/// process is out of file descriptors), so the loop does not spin.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// HTTP/2 streams one connection may have open; admission caps the work behind them.
const H2_MAX_CONCURRENT_STREAMS: u32 = 250;

/// Streams a client may reset before the server has seen them, and streams the server
/// may reset for protocol errors, before the connection is closed (rapid-reset defence,
/// CVE-2023-44487).
const H2_MAX_PENDING_RESETS: usize = 20;
const H2_MAX_LOCAL_ERROR_RESETS: usize = 64;

/// Loads the component, binds, and serves until SIGTERM or SIGINT.
pub async fn serve(config: ServeConfig) -> Result<()> {
    let engine = engine::build_engine(&config.instance)?;
    let linker = engine::build_linker(&engine)?;
    // Every load error surfaces here, before the port is bound.
    let proxy = engine::load_proxy(&engine, &linker, &config.component)?;
    limits::start_epoch_ticker(&engine).context("cannot start the epoch ticker thread")?;
    let admission = Arc::new(Admission::new(config.admission.clone()));
    let metrics = Arc::new(Metrics::new());
    // The component loaded at startup is the first generation.
    metrics.set_component_generation(1);
    let settings = HandlerSettings {
        request_timeout: config.request_timeout,
        max_body_size: config.client.max_body_size,
        instance: config.instance.clone(),
        guest_env: config.guest_env.clone(),
        metrics: metrics.clone(),
    };
    let handler = Arc::new(Handler::new(proxy, settings, admission.clone()));
    let observer = Observer::new(config.trace_project.clone(), metrics.clone());
    let metrics_server = match config.metrics_addr {
        Some(addr) => Some(MetricsServer::start(addr, metrics).await?),
        None => None,
    };

    let listener = bind(config.addr).await?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    tracing::info!(component = %config.component.display(), "listening on http://{local}/");

    // The component is loaded before the port is bound, so once the probe path answers
    // the instance is ready for traffic.
    let health_path: Option<Arc<str>> = config.health_path.as_deref().map(Arc::from);
    let graceful = GracefulShutdown::new();
    let builder = connection_builder(&config.client);
    let stop = shutdown::requested();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            stopped = &mut stop => {
                stopped?;
                break;
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!("accept failed: {error}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                // Responses are often one small write; Nagle would hold them back
                // waiting for the client's delayed ACK.
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, "cannot set TCP_NODELAY: {error}");
                }
                let handler = handler.clone();
                let health_path = health_path.clone();
                let observer = observer.clone();
                let service = service_fn(move |request: Request<Incoming>| {
                    let handler = handler.clone();
                    let is_probe = health_path.as_deref() == Some(request.uri().path());
                    let exchange = (!is_probe).then(|| observer.begin(&request, peer));
                    async move {
                        let response = match exchange {
                            None => ObservedBody::unobserved_response(plain_response(StatusCode::OK, "ok")),
                            Some(exchange) => {
                                let response = handler.handle(request).instrument(exchange.span()).await;
                                exchange.finish(response)
                            }
                        };
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let connection = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, "connection ended with an error: {error}");
                    }
                });
            }
        }
    }

    drop(listener);
    tracing::info!(
        in_flight = admission.in_flight(),
        "stopped accepting; draining for up to {:?}",
        config.shutdown_timeout
    );
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(config.shutdown_timeout) => {
            tracing::warn!(
                in_flight = admission.in_flight(),
                "shutdown timeout reached; cancelling the requests still in flight"
            );
        }
    }
    if let Some(metrics_server) = metrics_server {
        metrics_server.shutdown().await;
    }
    Ok(())
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

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr}: is another server using that port? (set PORT or --addr)")
    })
}
