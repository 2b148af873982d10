//! The application's HTTP server: bind, accept, serve HTTP/1.1 and h2c on one port, and
//! drain on shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::admin::{self, Admin};
use crate::admission::Admission;
use crate::app::{AppSource, HostPolicy};
use crate::config::ServeConfig;
use crate::engine;
use crate::exchange::{ObservedBody, Observer};
use crate::handler::{Handler, HandlerSettings, plain_response};
use crate::limits::{self, ClientLimits};
use crate::metrics::Metrics;
use crate::metrics_server::{self, METRICS_PATH};
use crate::outbound::Outbound;
use crate::registry::LazyRegistry;
use crate::reload::{self, ActiveComponent};
use crate::workers::{self, Followers, Secondaries};
use crate::{shutdown, watch};

/// How long to wait before accepting again after `accept` fails (for example when the
/// process is out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Connections the kernel queues for each worker before it accepts them; what
/// `TcpListener::bind` uses.
const LISTEN_BACKLOG: i32 = 1024;

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
    let metrics = Arc::new(Metrics::new());
    // Every load error surfaces here, before the port is bound.
    let policy = HostPolicy {
        guest_env: config.guest_env.clone(),
        outbound: config.outbound.clone(),
        shared_outbound: Arc::new(Outbound::new(&config.outbound)),
    };
    let active = Arc::new(
        ActiveComponent::load(
            engine.clone(),
            linker,
            config.source.clone(),
            policy,
            LazyRegistry::new(config.registry.clone()),
            metrics.clone(),
        )
        .await?,
    );
    limits::start_epoch_ticker(&engine).context("cannot start the epoch ticker thread")?;
    reload::reload_on_hangup(active.clone())?;
    let admission = Arc::new(Admission::new(config.admission.clone()));
    let settings = HandlerSettings {
        request_timeout: config.request_timeout,
        max_body_size: config.client.max_body_size,
        instance: config.instance.clone(),
        metrics: metrics.clone(),
    };
    let handler = Arc::new(Handler::new(active.clone(), settings, admission.clone()));
    let observer = Observer::new(
        config.trace_project.clone(),
        config.access_log,
        metrics.clone(),
    );
    let builder = connection_builder(&config.client);
    let (listener, secondary_listeners) = match config.secondary {
        Some(role) => (role.listener()?, Vec::new()),
        None => bind_workers(config.addr, config.workers).await?,
    };
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;

    let mut secondaries = None;
    let mut side_servers = Vec::new();
    let stop: Pin<Box<dyn Future<Output = Result<()>> + Send>> = match config.secondary {
        // A secondary serves requests only; the primary speaks for it.
        Some(role) => {
            let control_stop = Arc::new(Notify::new());
            workers::serve_control(active.clone(), metrics.clone(), control_stop.clone())?;
            tracing::info!(
                "worker {} of {} serving on http://{local}/",
                role.number,
                config.workers
            );
            Box::pin(async move {
                tokio::select! {
                    stopped = shutdown::requested() => stopped,
                    () = control_stop.notified() => Ok(()),
                }
            })
        }
        None => {
            if !secondary_listeners.is_empty() {
                let started = Secondaries::start(secondary_listeners).await?;
                active.lead(started.followers());
                secondaries = Some(started);
            }
            // The configuration allows `--watch` with files only.
            if config.watch {
                watch::spawn_watcher(active.clone(), &config.source)?;
            }
            let followers = secondaries.as_ref().map(Secondaries::followers);
            side_servers =
                start_side_servers(&config, &active, &metrics, followers, &builder).await?;
            match &config.source {
                AppSource::Manifest(manifest) => {
                    tracing::info!(app = %manifest.display(), "listening on http://{local}/");
                }
                source => {
                    tracing::info!("outbound: {}", config.outbound);
                    tracing::info!(component = %source, "listening on http://{local}/");
                }
            }
            Box::pin(shutdown::requested())
        }
    };

    // The component is loaded before the port is bound, so once the probe path answers
    // the instance is ready for traffic.
    let health_path: Option<Arc<str>> = config.health_path.as_deref().map(Arc::from);
    let graceful = GracefulShutdown::new();
    let service = move |request: Request<Incoming>, peer| {
        let handler = handler.clone();
        let is_probe = health_path.as_deref() == Some(request.uri().path());
        let exchange = (!is_probe).then(|| observer.begin(&request, peer));
        async move {
            match exchange {
                None => ObservedBody::unobserved_response(plain_response(StatusCode::OK, "ok")),
                Some(exchange) => {
                    let response = handler.handle(request).instrument(exchange.span()).await;
                    exchange.finish(response)
                }
            }
        }
    };
    let outcome = tokio::select! {
        stopped = stop => stopped,
        lost = secondary_exit(&mut secondaries) => Err(lost),
        never = accept_connections(&listener, &builder, &graceful, service) => match never {},
    };

    drop(listener);
    tracing::info!(
        in_flight = admission.in_flight(),
        "stopped accepting; draining for up to {:?}",
        config.shutdown_timeout
    );
    let drained = async {
        tokio::select! {
            _ = graceful.shutdown() => tracing::info!("all connections drained"),
            _ = tokio::time::sleep(config.shutdown_timeout) => {
                tracing::warn!(
                    in_flight = admission.in_flight(),
                    "shutdown timeout reached; cancelling the requests still in flight"
                );
            }
        }
    };
    let secondaries_stopped = async {
        match secondaries {
            Some(secondaries) => secondaries.stop(config.shutdown_timeout).await,
            None => Ok(()),
        }
    };
    let ((), secondaries_stopped) = tokio::join!(drained, secondaries_stopped);
    // Metrics stay up through the drain; side servers do not wait for their requests.
    for server in side_servers {
        server.abort();
    }
    outcome.and(secondaries_stopped)
}

/// Resolves with the error when one of `secondaries` exits while serving; never, when
/// there are none.
async fn secondary_exit(secondaries: &mut Option<Secondaries>) -> anyhow::Error {
    match secondaries {
        Some(secondaries) => secondaries.exited().await,
        None => std::future::pending().await,
    }
}

/// Starts the admin endpoint and the metrics server, where configured. The metrics
/// served are the sum over `followers` too, when there are secondary workers.
async fn start_side_servers(
    config: &ServeConfig,
    active: &Arc<ActiveComponent>,
    metrics: &Arc<Metrics>,
    followers: Option<Arc<Followers>>,
    builder: &auto::Builder<TokioExecutor>,
) -> Result<Vec<JoinHandle<()>>> {
    let mut side_servers = Vec::new();
    if let Some(admin) = &config.admin {
        let endpoint = Arc::new(Admin::new(active.clone(), &admin.token, admin.max_upload));
        let service = move |request, peer| {
            let endpoint = endpoint.clone();
            async move { endpoint.handle(request, peer).await }
        };
        let server = start_side_server(
            "the admin endpoint",
            admin::COMPONENT_PATH,
            admin.addr,
            builder,
            service,
        );
        side_servers.push(server.await?);
    }
    if let Some(addr) = config.metrics_addr {
        let metrics = metrics.clone();
        let service = move |request: Request<Incoming>, _peer| {
            let (metrics, followers) = (metrics.clone(), followers.clone());
            async move { metrics_server::respond(&metrics, followers.as_deref(), &request).await }
        };
        side_servers
            .push(start_side_server("metrics", METRICS_PATH, addr, builder, service).await?);
    }
    Ok(side_servers)
}

/// Binds `addr` for the side server `name` (admin, metrics) and serves `service` there
/// in a task of its own; aborting the task closes it.
async fn start_side_server<S, F, B>(
    name: &'static str,
    path: &str,
    addr: SocketAddr,
    builder: &auto::Builder<TokioExecutor>,
    service: S,
) -> Result<JoinHandle<()>>
where
    S: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for {name} on {addr}: is another server using that port?")
    })?;
    let local = listener
        .local_addr()
        .with_context(|| format!("cannot read the bound address of {name}"))?;
    tracing::info!("serving {name} at http://{local}{path}");
    let builder = builder.clone();
    Ok(tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        match accept_connections(&listener, &builder, &graceful, service).await {}
    }))
}

/// Accepts connections on `listener` and serves each with `service`, forever; each
/// connection is watched by `graceful`.
async fn accept_connections<S, F, B>(
    listener: &TcpListener,
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    service: S,
) -> Infallible
where
    S: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!("accept failed: {error}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Responses are often one small write; Nagle would hold them back waiting for
        // the client's delayed ACK.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "cannot set TCP_NODELAY: {error}");
        }
        let service = service.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let response = service(request, peer);
            async move { Ok::<_, Infallible>(response.await) }
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

/// Binds `addr` for `workers` processes: this one's listener, and a socket for each
/// other worker to accept from.
async fn bind_workers(addr: SocketAddr, workers: u32) -> Result<(TcpListener, Vec<OwnedFd>)> {
    if workers > 1 {
        match bind_reusing_port(addr, workers) {
            Ok(bound) => return Ok(bound),
            // gVisor refuses a second socket on the port; sharing one works everywhere,
            // though whichever process wakes first takes each new connection.
            Err(error) => tracing::info!(
                "SO_REUSEPORT refused ({error}); the workers share one listening socket"
            ),
        }
    }
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr}: is another server using that port? (set PORT or --addr)")
    })?;
    let copies = (1..workers)
        .map(|_| listener.as_fd().try_clone_to_owned())
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot share the listening socket with the workers")?;
    Ok((listener, copies))
}

/// One socket per worker on the same port, with `SO_REUSEPORT`: the kernel spreads new
/// connections over them.
fn bind_reusing_port(
    addr: SocketAddr,
    workers: u32,
) -> std::io::Result<(TcpListener, Vec<OwnedFd>)> {
    let own = reusing_port(addr)?;
    let local = own
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("the bound address is not an IP address"))?;
    let others = (1..workers)
        .map(|_| reusing_port(local).map(OwnedFd::from))
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok((TcpListener::from_std(own.into())?, others))
}

fn reusing_port(addr: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // What `TcpListener::bind` sets, so a restart need not wait out TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket)
}
