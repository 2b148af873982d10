//! The composition root: load the component, bind the port, take up this process's
//! role, accept connections, and drain on shutdown, one function each. Only `lib.rs`
//! imports it.

mod accept;
mod bind;
mod metrics_endpoint;
mod role;
mod shutdown;
mod side;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper_util::server::graceful::GracefulShutdown;

use self::accept::{accept_connections, connection_builder};
use self::role::Role;
use crate::config::ServeConfig;
use crate::load::app::HostPolicy;
use crate::load::engine;
use crate::load::registry::LazyRegistry;
use crate::observe::metrics::Metrics;
use crate::request::admission::Admission;
use crate::request::handler::{Handler, HandlerSettings};
use crate::request::service::RequestService;
use crate::request::span::Observer;
use crate::sandbox::deadline;
use crate::sandbox::outbound::Outbound;
use crate::swap::active::ActiveComponent;
use crate::swap::triggers;

/// Loads the component, binds, and serves until SIGTERM or SIGINT.
pub async fn serve(config: ServeConfig) -> Result<()> {
    for notice in &config.notices {
        tracing::warn!("{notice}");
    }
    let metrics = Arc::new(Metrics::new());
    let active = load(&config, &metrics).await?;
    let admission = Arc::new(Admission::new(config.admission.clone()));
    let service = Arc::new(request_service(&config, &active, &admission, &metrics));
    let builder = connection_builder(&config.client);
    let (listener, secondary_listeners) = match config.secondary {
        Some(_) => (crate::workers::inherited_listener()?, Vec::new()),
        None => bind::bind_workers(config.addr, config.workers).await?,
    };
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let mut role = Role::take_up(
        &config,
        &active,
        &metrics,
        &builder,
        secondary_listeners,
        local,
    )
    .await?;
    let graceful = GracefulShutdown::new();
    let serve_one = move |request, peer| {
        let service = service.clone();
        async move { service.serve(request, peer).await }
    };
    let outcome = tokio::select! {
        stopped = role.stopped() => stopped,
        never = accept_connections(&listener, &builder, &graceful, serve_one) => match never {},
    };
    drop(listener);
    let stopped = drain(graceful, &admission, config.shutdown_timeout, role).await;
    outcome.and(stopped)
}

/// Loads the first version, starts what stops guests at their deadline and what reloads
/// on SIGHUP. Every load error surfaces here, before the port is bound.
async fn load(config: &ServeConfig, metrics: &Arc<Metrics>) -> Result<Arc<ActiveComponent>> {
    let engine = engine::build_engine(&config.instance)?;
    let linker = engine::build_linker(&engine)?;
    let policy = HostPolicy {
        guest_env: config.guest_env.clone(),
        outbound: config.outbound.clone(),
        shared_outbound: Arc::new(Outbound::new(&config.outbound)),
        instance: config.instance.clone(),
        reuse: config.reuse.clone(),
        request_timeout: config.request_timeout,
        spin_variables: config.spin_variables.clone(),
        imports: config.imports,
        key_value: Arc::new(config.key_value.open(&config.source, metrics)?),
        metrics: metrics.clone(),
    };
    let active = ActiveComponent::load(
        engine.clone(),
        linker,
        config.source.clone(),
        policy,
        LazyRegistry::new(config.registry.clone()),
        metrics.clone(),
    )
    .await?;
    let active = Arc::new(active);
    deadline::start_epoch_ticker(&engine).context("cannot start the epoch ticker thread")?;
    triggers::reload_on_hangup(active.clone())?;
    Ok(active)
}

/// What the serving port answers with.
fn request_service(
    config: &ServeConfig,
    active: &Arc<ActiveComponent>,
    admission: &Arc<Admission>,
    metrics: &Arc<Metrics>,
) -> RequestService {
    let settings = HandlerSettings {
        request_timeout: config.request_timeout,
        max_body_size: config.client.max_body_size,
        metrics: metrics.clone(),
    };
    let handler = Handler::new(active.clone(), settings, admission.clone());
    let observer = Observer::new(
        config.trace_project.clone(),
        config.access_log,
        metrics.clone(),
    );
    // The component is loaded before the port is bound, so once the probe path answers
    // the instance is ready for traffic.
    RequestService::new(handler, observer, config.health_path.as_deref())
}

/// Lets the requests in flight finish, up to `timeout`, while the role's other
/// processes stop too.
async fn drain(
    graceful: GracefulShutdown,
    admission: &Admission,
    timeout: Duration,
    mut role: Role,
) -> Result<()> {
    tracing::info!(
        in_flight = admission.in_flight(),
        "stopped accepting; draining for up to {timeout:?}"
    );
    let connections = async {
        tokio::select! {
            _ = graceful.shutdown() => tracing::info!("all connections drained"),
            _ = tokio::time::sleep(timeout) => {
                tracing::warn!(
                    in_flight = admission.in_flight(),
                    "shutdown timeout reached; cancelling the requests still in flight"
                );
            }
        }
    };
    let ((), stopped) = tokio::join!(connections, role.stop_secondaries(timeout));
    // Metrics stay up through the drain; side servers do not wait for their requests.
    role.close_side_servers();
    stopped
}
