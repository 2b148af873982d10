//! The side servers a primary runs besides the serving port: the admin endpoint and the
//! metrics server, each on its own address.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::accept::Acceptor;
use super::metrics_endpoint::{self, METRICS_PATH};
use crate::config::{SIDE_SERVER_MAX_CONNECTIONS, ServeConfig};
use crate::observe::metrics::Metrics;
use crate::swap::active::ActiveComponent;
use crate::swap::admin::{self, Admin};
use crate::workers::SecondaryLinks;

/// Starts the admin endpoint and the metrics server, where configured. The metrics
/// served are the sum over `followers` too, when there are secondary workers.
pub async fn start_side_servers(
    config: &ServeConfig,
    active: &Arc<ActiveComponent>,
    metrics: &Arc<Metrics>,
    followers: Option<Arc<SecondaryLinks>>,
    acceptor: &Acceptor,
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
            acceptor,
            service,
        );
        side_servers.push(server.await?);
    }
    if let Some(addr) = config.metrics_addr {
        let metrics = metrics.clone();
        let service = move |request: Request<Incoming>, _peer| {
            let (metrics, followers) = (metrics.clone(), followers.clone());
            async move { metrics_endpoint::respond(&metrics, followers.as_deref(), &request).await }
        };
        side_servers
            .push(start_side_server("metrics", METRICS_PATH, addr, acceptor, service).await?);
    }
    Ok(side_servers)
}

/// Binds `addr` for the side server `name` (admin, metrics) and serves `service` there
/// in a task of its own; aborting the task closes it.
async fn start_side_server<S, F, B>(
    name: &'static str,
    path: &str,
    addr: SocketAddr,
    acceptor: &Acceptor,
    service: S,
) -> Result<JoinHandle<()>>
where
    S: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for {name} on {addr}: is another server using that port?")
    })?;
    let local = listener
        .local_addr()
        .with_context(|| format!("cannot read the bound address of {name}"))?;
    tracing::info!("serving {name} at http://{local}{path}");
    let acceptor = acceptor.clone();
    Ok(tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let accepting =
            acceptor.accept_connections(&listener, &graceful, SIDE_SERVER_MAX_CONNECTIONS, service);
        match accepting.await {}
    }))
}
