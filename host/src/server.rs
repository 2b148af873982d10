//! The only HTTP server code: bind, accept, serve HTTP/1.1 and h2c on one port, and drain
//! on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::config::ServeConfig;
use crate::engine;
use crate::handler::Handler;
use crate::limits::{self, InstanceLimits};
use crate::shutdown;

/// How long to wait before accepting again after `accept` fails (for example when the
/// process is out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Loads the component, binds, and serves until SIGTERM or SIGINT.
pub async fn serve(config: ServeConfig) -> Result<()> {
    let limits = InstanceLimits::default();
    let engine = engine::build_engine(&limits)?;
    let linker = engine::build_linker(&engine)?;
    // Every load error surfaces here, before the port is bound.
    let proxy = engine::load_proxy(&engine, &linker, &config.component)?;
    limits::start_epoch_ticker(&engine).context("cannot start the epoch ticker thread")?;
    let handler = Arc::new(Handler::new(proxy, config.request_timeout));

    let listener = bind(config.addr).await?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    tracing::info!(component = %config.component.display(), "listening on http://{local}/");

    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
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
                let service = service_fn(move |request| {
                    let handler = handler.clone();
                    async move { Ok::<_, std::convert::Infallible>(handler.handle(request).await) }
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
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(config.shutdown_timeout) => {
            tracing::warn!("shutdown timeout reached with requests still in flight");
        }
    }
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr}: is another server using that port? (set PORT or --addr)")
    })
}
