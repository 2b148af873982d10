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
use crate::workers::{Secondaries, serve_control};

/// This process's role, taken up once the port is bound.
pub enum Role {
    Primary {
        /// `None` with a single worker.
        secondaries: Option<Secondaries>,
        side_servers: Vec<JoinHandle<()>>,
    },
    Secondary {
        /// Notified when the primary asks this worker to stop, or goes away.
        control_stop: Arc<Notify>,
    },
}

impl Role {
    /// Takes up the role `config` names; a primary gives `secondary_listeners` to the
    /// secondaries it starts. Logs that this process listens on `local`.
    pub async fn take_up(
        config: &ServeConfig,
        active: &Arc<ActiveComponent>,
        metrics: &Arc<Metrics>,
        acceptor: &Acceptor,
        secondary_listeners: Vec<OwnedFd>,
        local: SocketAddr,
    ) -> Result<Self> {
        if let Some(role) = config.secondary {
            let control_stop = Arc::new(Notify::new());
            serve_control(active.clone(), metrics.clone(), control_stop.clone())?;
            tracing::info!(
                "worker {} of {} serving on http://{local}/",
                role.number,
                config.workers
            );
            return Ok(Self::Secondary { control_stop });
        }
        let secondaries = if secondary_listeners.is_empty() {
            None
        } else {
            Some(Secondaries::start(secondary_listeners).await?)
        };
        if let Some(started) = &secondaries {
            active.lead(started.followers());
        }
        // The configuration allows `--watch` with files only.
        if config.watch {
            triggers::spawn_watcher(active.clone(), &config.source)?;
        }
        let followers = secondaries.as_ref().map(Secondaries::followers);
        let side_servers = start_side_servers(config, active, metrics, followers, acceptor).await?;
        log_listening(config, local);
        Ok(Self::Primary {
            secondaries,
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
                ..
            } => tokio::select! {
                stopped = shutdown::requested() => stopped,
                lost = secondaries.exited() => Err(lost),
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
