//! What this process does besides serving requests. The primary (the process the user
//! started) starts the secondary workers, watches the component, serves the admin and
//! metrics endpoints, and speaks for all; a secondary serves requests and follows the
//! primary's control requests.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::accept::Acceptor;
use super::shutdown;
use super::side::start_side_servers;
use crate::config::ServeConfig;
use crate::load::source::AppSource;
use crate::observe::metrics::Metrics;
use crate::swap::active::ActiveComponent;
use crate::swap::triggers;
use crate::workers::Secondaries;

/// This process's role, taken up once the port is bound.
pub enum Role {
    Primary {
        /// `None` with a single worker.
        secondaries: Option<Secondaries>,
        /// Handing the first version to the secondaries; `None` with a single worker.
        handover: Option<JoinHandle<Result<()>>>,
        side_servers: Vec<JoinHandle<()>>,
    },
    Secondary {
        /// Notified when the primary asks this worker to stop, or goes away.
        control_stop: Arc<Notify>,
    },
}

impl Role {
    /// Takes up the primary's role: starts the secondaries, each with one of
    /// `secondary_sockets`, hands them the active version, and starts watching and the
    /// side servers. Logs that this process listens on `local`.
    pub async fn lead(
        config: &ServeConfig,
        active: &Arc<ActiveComponent>,
        metrics: &Arc<Metrics>,
        acceptor: &Acceptor,
        secondary_sockets: Vec<OwnedFd>,
        local: SocketAddr,
    ) -> Result<Self> {
        let secondaries = if secondary_sockets.is_empty() {
            None
        } else {
            Some(Secondaries::start(secondary_sockets, config.worker_control_timeout).await?)
        };
        // The primary serves meanwhile: the secondaries listen once they have it.
        let handover = secondaries.as_ref().map(|started| {
            active.lead(started.followers());
            let active = active.clone();
            tokio::spawn(async move { active.hand_over().await })
        });
        // The configuration allows `--watch` with files only.
        if config.watch {
            triggers::spawn_watcher(active.clone(), &config.source)?;
        }
        let followers = secondaries.as_ref().map(Secondaries::followers);
        let side_servers = start_side_servers(config, active, metrics, followers, acceptor).await?;
        log_listening(config, local);
        Ok(Self::Primary {
            secondaries,
            handover,
            side_servers,
        })
    }

    /// Resolves when this process should stop: on SIGTERM or SIGINT, for a secondary
    /// when the primary says so, and with an error for a primary when one of its
    /// secondaries exits on its own.
    pub async fn stopped(&mut self) -> Result<()> {
        match self {
            Self::Primary {
                secondaries: Some(secondaries),
                handover,
                ..
            } => tokio::select! {
                stopped = shutdown::requested() => stopped,
                lost = secondaries.exited() => Err(lost),
                failed = handover_failed(handover) => Err(failed),
            },
            Self::Primary { .. } => shutdown::requested().await,
            Self::Secondary { control_stop } => tokio::select! {
                stopped = shutdown::requested() => stopped,
                () = control_stop.notified() => Ok(()),
            },
        }
    }

    /// Has a primary's secondaries drain for up to `drain` and stop.
    pub async fn stop_secondaries(&mut self, drain: Duration) -> Result<()> {
        match self {
            Self::Primary { secondaries, .. } => match secondaries.take() {
                Some(secondaries) => secondaries.stop(drain).await,
                None => Ok(()),
            },
            Self::Secondary { .. } => Ok(()),
        }
    }

    /// Closes a primary's admin and metrics endpoints.
    pub fn close_side_servers(self) {
        if let Self::Primary { side_servers, .. } = self {
            for server in side_servers {
                server.abort();
            }
        }
    }
}

/// Resolves if handing the first version to the secondaries failed: the host cannot
/// serve one version on every worker.
async fn handover_failed(handover: &mut Option<JoinHandle<Result<()>>>) -> anyhow::Error {
    let Some(task) = handover.as_mut() else {
        return std::future::pending().await;
    };
    let outcome = task.await;
    *handover = None;
    match outcome {
        Ok(Ok(())) => std::future::pending().await,
        Ok(Err(error)) => error.context("the workers cannot serve the first version; stopping"),
        Err(error) => anyhow::anyhow!("handing the first version to the workers failed: {error}"),
    }
}

fn log_listening(config: &ServeConfig, local: SocketAddr) {
    match &config.source {
        AppSource::Manifest(manifest) => {
            tracing::info!(app = %manifest.display(), "listening on http://{local}/");
        }
        source => {
            tracing::info!("outbound: {}", config.outbound);
            tracing::info!(component = %source, "listening on http://{local}/");
        }
    }
}
