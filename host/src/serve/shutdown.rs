//! The signals that end the process.

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};

/// Resolves when the process is asked to stop.
pub async fn requested() -> Result<()> {
    // Cloud Run, Kubernetes and `podman stop` send SIGTERM, then SIGKILL after the grace
    // period; as PID 1 in a container we get no default action for it, so we must listen.
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    // A person at a terminal presses Ctrl-C.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
    }
    Ok(())
}
