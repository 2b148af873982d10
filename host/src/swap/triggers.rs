//! What starts a reload besides the admin endpoint: SIGHUP, and `--watch`, which reloads
//! the component when its file changes on disk, or a Spin application when its manifest
//! or one of its component files does.
//!
//! Folders are watched rather than files, so that every way of replacing a file is
//! seen: a write in place, a write to a temporary file renamed over it, and the symlink
//! swap Kubernetes does for mounted volumes. Events are debounced: a reload starts only
//! once the folder has been quiet for [`QUIET_PERIOD`], so a file still being written is
//! not read. If one is read anyway (a writer that pauses), it fails validation and is
//! rejected like any bad version, and the write's last event brings the finished file.
//! A file whose bytes did not change is not reloaded.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, DebouncedEventKind, new_debouncer};

use super::active::{ActiveComponent, Trigger};
use crate::load::source::AppSource;

/// How long the folder must see no change before the component is read.
const QUIET_PERIOD: Duration = Duration::from_millis(200);

/// Starts watching the folders of the files the active version was read from; the
/// watch lasts as long as the process.
pub fn spawn_watcher(active: Arc<ActiveComponent>, source: &AppSource) -> Result<()> {
    let mut folders = BTreeSet::new();
    for path in active.current().app.source_files(source) {
        let path = std::path::absolute(&path)
            .with_context(|| format!("cannot resolve `{}`", path.display()))?;
        let folder = path
            .parent()
            .with_context(|| format!("`{}` has no parent folder", path.display()))?;
        folders.insert(folder.to_path_buf());
    }
    let (changes_tx, mut changes_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut debouncer = new_debouncer(QUIET_PERIOD, move |result: DebounceEventResult| {
        match result {
            Ok(events) => {
                // Continuous events mean the folder is still being written to.
                if events.iter().any(|e| e.kind == DebouncedEventKind::Any) {
                    let _ = changes_tx.send(());
                }
            }
            Err(error) => tracing::warn!("watching the component folder failed: {error}"),
        }
    })
    .context("cannot start watching files")?;
    for folder in &folders {
        debouncer
            .watcher()
            .watch(folder, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch `{}`", folder.display()))?;
    }
    tracing::info!("watching `{source}` for changes");
    tokio::spawn(async move {
        // The debouncer stops when dropped: it lives as long as this task.
        let _debouncer = debouncer;
        while changes_rx.recv().await.is_some() {
            // Changes queued up to now are all covered by this one reload.
            while changes_rx.try_recv().is_ok() {}
            // The outcome is in the log; the host serves on either way.
            let _ = active.reload(Trigger::FileChanged).await;
        }
    });
    Ok(())
}

/// Reloads the code from its source on every SIGHUP from now on, until the process ends.
pub fn reload_on_hangup(active: Arc<ActiveComponent>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Sent by operators (`kill -HUP`) or process managers to ask for a reload; without
    // a handler it would terminate the host.
    let mut hangups = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            // The outcome is in the log; the host serves on either way.
            let _ = active.reload(Trigger::Hangup).await;
        }
    });
    Ok(())
}

/// Takes SIGHUP in a secondary worker, which serves what the primary hands it rather
/// than reloading on its own; without a handler, a SIGHUP sent to the whole process
/// group would terminate it.
pub fn leave_hangup_to_primary() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::debug!("SIGHUP left to the primary worker, which reloads for all");
        }
    });
    Ok(())
}
