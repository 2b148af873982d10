//! The active component and how it is swapped while the host serves.
//!
//! The version in use sits behind one atomic pointer. A request takes it once, at its
//! start, and keeps it to the end, so a swap never changes the code under a running
//! request. A new version is read, compiled, linked and pre-instantiated off the async
//! threads before it is published; one that fails any of that is logged and dropped,
//! and the old one keeps serving. Swaps are serialized, so generations only go up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::engine::{self, ComponentBytes, LoadedProxy};
use crate::metrics::Metrics;
use crate::state::RequestState;

/// One published version of the component.
pub struct Version {
    /// The pre-instantiated component requests are served with.
    pub proxy: ProxyPre<RequestState>,
    /// 1 for the version loaded at startup, one more for each swap.
    pub generation: u64,
    /// The SHA-256 of the bytes loaded, in lowercase hex.
    pub sha256: String,
    /// Where the bytes came from: a path, or an upload.
    pub origin: String,
    /// When this version was published.
    pub activated_at: SystemTime,
}

/// What made the host load a new version; it is named in the log line.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    /// The component file changed on disk (`--watch`).
    FileChanged,
    /// SIGHUP.
    Hangup,
    /// An upload to the admin endpoint.
    Upload,
}

/// Why a swap did not publish a new version.
#[derive(Debug)]
pub enum SwapError {
    /// The new bytes are the ones already serving.
    Unchanged,
    /// The new version could not be loaded; the old one keeps serving.
    Rejected(anyhow::Error),
}

/// The component requests are served with, and the means to replace it.
pub struct ActiveComponent {
    current: ArcSwap<Version>,
    engine: Engine,
    linker: Linker<RequestState>,
    /// The file loaded at startup and reloaded on SIGHUP and `--watch`.
    path: PathBuf,
    swap_lock: tokio::sync::Mutex<()>,
    /// Where the active generation is shown.
    metrics: Arc<Metrics>,
}

impl ActiveComponent {
    /// Loads generation 1 from `path`. This blocks: it runs before the port is bound.
    pub fn load(
        engine: Engine,
        linker: Linker<RequestState>,
        path: PathBuf,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let bytes = ComponentBytes::read(&path)?;
        let loaded = engine::load_proxy(&engine, &linker, bytes)?;
        let version = new_version(loaded, 1);
        tracing::info!(
            "serving generation 1: `{}` (sha256 {})",
            version.origin,
            version.sha256
        );
        metrics.set_component_generation(version.generation);
        Ok(Self {
            current: ArcSwap::from_pointee(version),
            engine,
            linker,
            path,
            swap_lock: tokio::sync::Mutex::new(()),
            metrics,
        })
    }

    /// The version new requests are served with.
    pub fn current(&self) -> Arc<Version> {
        self.current.load_full()
    }

    /// Reads the component file again and, if it changed, publishes it.
    pub async fn reload(&self, trigger: Trigger) -> Result<Arc<Version>, SwapError> {
        let path = self.path.clone();
        self.swap(trigger, move || ComponentBytes::read(&path))
            .await
    }

    /// Publishes `bytes`, an uploaded `.wasm` component, described as `origin`.
    pub async fn upload(&self, bytes: Vec<u8>, origin: String) -> Result<Arc<Version>, SwapError> {
        self.swap(Trigger::Upload, move || {
            ComponentBytes::uploaded(bytes, origin)
        })
        .await
    }

    async fn swap(
        &self,
        trigger: Trigger,
        read: impl FnOnce() -> wasmtime::Result<ComponentBytes> + Send + 'static,
    ) -> Result<Arc<Version>, SwapError> {
        let _serialized = self.swap_lock.lock().await;
        let old = self.current();
        let engine = self.engine.clone();
        let linker = self.linker.clone();
        let old_sha256 = old.sha256.clone();
        // Compiling takes milliseconds to seconds of CPU: keep it off the threads that
        // serve requests.
        let loaded = tokio::task::spawn_blocking(move || {
            let bytes = read()?;
            if bytes.sha256() == old_sha256 {
                return Ok(None);
            }
            engine::load_proxy(&engine, &linker, bytes).map(Some)
        })
        .await
        .context("the loading task failed")
        .and_then(|loaded| loaded.map_err(anyhow::Error::from));
        let loaded = match loaded {
            Ok(Some(loaded)) => loaded,
            Ok(None) => {
                tracing::info!(
                    ?trigger,
                    generation = old.generation,
                    "component unchanged (sha256 {}); nothing to swap",
                    old.sha256
                );
                return Err(SwapError::Unchanged);
            }
            Err(error) => {
                tracing::error!(
                    ?trigger,
                    generation = old.generation,
                    "rejected the new component, the old one keeps serving: {error:#}"
                );
                return Err(SwapError::Rejected(error));
            }
        };
        let version = Arc::new(new_version(loaded, old.generation + 1));
        self.current.store(version.clone());
        self.metrics.set_component_generation(version.generation);
        tracing::info!(
            ?trigger,
            previous_generation = old.generation,
            "swapped: generation {} is `{}` (sha256 {})",
            version.generation,
            version.origin,
            version.sha256
        );
        Ok(version)
    }
}

fn new_version(loaded: LoadedProxy, generation: u64) -> Version {
    Version {
        proxy: loaded.proxy,
        generation,
        sha256: loaded.sha256,
        origin: loaded.origin,
        activated_at: SystemTime::now(),
    }
}

/// Reloads the component file on every SIGHUP from now on, until the process ends.
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
