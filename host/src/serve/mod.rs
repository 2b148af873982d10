//! The composition root: load the component, bind the port, take up this process's
//! role, accept connections, and drain on shutdown, one function each. Only `lib.rs`
//! imports it.

mod accept;
mod bind;
mod connection;
mod metrics_endpoint;
mod role;
mod shutdown;
mod side;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use self::accept::Acceptor;
use self::role::Role;
use crate::config::{SecondaryRole, ServeConfig};
use crate::load::app::HostPolicy;
use crate::load::engine;
use crate::load::registry::{self, LazyRegistry};
use crate::observe::metrics::Metrics;
use crate::observe::summary::RepeatedWarnings;
use crate::request::admission::Admission;
use crate::request::caller_token::CallerCheck;
use crate::request::handler::{Handler, HandlerSettings};
use crate::request::service::RequestService;
use crate::request::span::Observer;
use crate::sandbox::deadline;
use crate::sandbox::outbound::Outbound;
use crate::swap::active::ActiveComponent;
use crate::swap::loader::Loader;
use crate::swap::triggers;
use crate::workers;

/// Loads the component, binds, and serves until SIGTERM or SIGINT.
pub async fn serve(config: ServeConfig) -> Result<()> {
    for notice in &config.notices {
        tracing::warn!("{notice}");
    }
    let metrics = Arc::new(Metrics::new());
    let warnings = RepeatedWarnings::start(config.log_summary_interval);
    let acceptor = Acceptor::new(
        &config.client,
        &config.connections,
        metrics.clone(),
        warnings.clone(),
    );
    let loader = Arc::new(loader(&config, &metrics)?);
    let taken_up = match config.secondary {
        Some(secondary) => follow_primary(&config, secondary, loader, &metrics).await?,
        None => Some(lead(&config, loader, &metrics, &acceptor).await?),
    };
    // The primary asked this secondary to stop, or went away, before it had a version.
    let Some((active, listener, mut role)) = taken_up else {
        return Ok(());
    };
    let admission = Arc::new(Admission::new(config.admission.clone()));
    let service = Arc::new(request_service(
        &config, &active, &admission, &metrics, &warnings,
    )?);
    let graceful = GracefulShutdown::new();
    let serve_one = move |request, peer| {
        let service = service.clone();
        async move { service.serve(request, peer).await }
    };
    let outcome = tokio::select! {
        stopped = role.stopped() => stopped,
        never = acceptor.accept_connections(
            &listener,
            &graceful,
            config.connections.max_connections,
            serve_one,
        ) => match never {},
    };
    drop(listener);
    let stopped = drain(graceful, &admission, config.shutdown_timeout, role).await;
    outcome.and(stopped)
}

/// The engine, its linker and what every component gets, and the thread that stops
/// guests at their deadline.
fn loader(config: &ServeConfig, metrics: &Arc<Metrics>) -> Result<Loader> {
    let engine = engine::build_engine(&config.instance)?;
    let linker = engine::build_linker(&engine)?;
    let policy = HostPolicy {
        guest_env: config.guest_env.clone(),
        outbound: config.outbound.clone(),
        shared_outbound: Arc::new(Outbound::new(&config.outbound)?),
        instance: config.instance.clone(),
        reuse: config.reuse.clone(),
        request_timeout: config.request_timeout,
        spin_variables: config.spin_variables.clone(),
        guest_config: config.guest_config.resolve()?,
        imports: config.imports,
        key_value: Arc::new(config.key_value.open(&config.source, metrics)?),
        metrics: metrics.clone(),
    };
    deadline::start_epoch_ticker(&engine).context("cannot start the epoch ticker thread")?;
    Ok(Loader::new(engine, linker, policy))
}

/// The primary's start: loads the first version (every load error surfaces here,
/// before the port is bound), reloads on SIGHUP, binds, and starts the secondaries.
async fn lead(
    config: &ServeConfig,
    loader: Arc<Loader>,
    metrics: &Arc<Metrics>,
    acceptor: &Acceptor,
) -> Result<(Arc<ActiveComponent>, TcpListener, Role)> {
    tracing::info!(
        "{} serving process(es), {}",
        config.workers,
        config.workers_chosen
    );
    let registry = LazyRegistry::new(config.registry.clone())?;
    let for_workers = config.workers > 1;
    let active = ActiveComponent::load(
        loader,
        config.source.clone(),
        registry,
        metrics.clone(),
        for_workers,
    )
    .await?;
    let active = Arc::new(active);
    triggers::reload_on_hangup(active.clone())?;
    let (listener, secondary_sockets) = bind::bind_workers(config.addr, config.workers).await?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let role = Role::lead(config, &active, metrics, acceptor, secondary_sockets, local).await?;
    Ok((active, listener, role))
}

/// A secondary's start: waits for the primary to hand over the first version, then
/// listens on the socket the primary gave it. `None` if told to stop before that.
async fn follow_primary(
    config: &ServeConfig,
    secondary: SecondaryRole,
    loader: Arc<Loader>,
    metrics: &Arc<Metrics>,
) -> Result<Option<(Arc<ActiveComponent>, TcpListener, Role)>> {
    triggers::leave_hangup_to_primary()?;
    let socket = workers::inherited_socket()?;
    let following = workers::follow(
        secondary.number,
        loader,
        config.source.clone(),
        config.registry.clone(),
        metrics.clone(),
    )
    .await?;
    let Some(following) = following else {
        return Ok(None);
    };
    let listener = bind::listen_on(socket)?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    tracing::info!(
        "worker {} of {} serving on http://{local}/",
        secondary.number,
        config.workers
    );
    let role = Role::Secondary {
        control_stop: following.stop,
    };
    Ok(Some((following.active, listener, role)))
}

/// What the serving port answers with.
fn request_service(
    config: &ServeConfig,
    active: &Arc<ActiveComponent>,
    admission: &Arc<Admission>,
    metrics: &Arc<Metrics>,
    warnings: &Arc<RepeatedWarnings>,
) -> Result<RequestService> {
    let settings = HandlerSettings {
        request_timeout: config.request_timeout,
        max_body_size: config.client.max_body_size,
        body_idle_timeout: config.client.body_idle_timeout,
        metrics: metrics.clone(),
        warnings: warnings.clone(),
    };
    let handler = Handler::new(active.clone(), settings, admission.clone());
    let observer = Observer::new(trace_project(config), config.access_log, metrics.clone());
    // The component is loaded before the port is bound, so once the probe path answers
    // the instance is ready for traffic.
    let caller_check = config
        .caller_check
        .clone()
        .map(CallerCheck::new)
        .transpose()?;
    Ok(RequestService::new(
        handler,
        observer,
        config.health_path.as_deref(),
        caller_check,
    ))
}

/// The project log entries name traces in: as configured, or, where a metadata server
/// is expected, as it says, once it has answered (requests do not wait for it).
fn trace_project(config: &ServeConfig) -> Arc<OnceLock<String>> {
    let project = Arc::new(OnceLock::new());
    if let Some(configured) = &config.trace_project {
        let _ = project.set(configured.clone());
    } else if let Some(metadata_host) = config.project_from_metadata.clone() {
        let found = project.clone();
        tokio::spawn(async move {
            match registry::project_id_from_metadata(metadata_host).await {
                Ok(id) => tracing::info!(
                    "traces are named in project `{}`, from the metadata server",
                    found.get_or_init(|| id)
                ),
                Err(error) => tracing::warn!(
                    "no project id for trace links (set $GOOGLE_CLOUD_PROJECT): {error:#}"
                ),
            }
        });
    }
    project
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
