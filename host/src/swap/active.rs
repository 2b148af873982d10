//! The active component and how it is swapped while the host serves.
//!
//! The version in use sits behind one atomic pointer. A request takes it once, at its
//! start, and keeps it to the end, so a swap never changes the code under a running
//! request. A new version is read, compiled, linked and pre-instantiated off the async
//! threads before it is published; one that fails any of that is logged and dropped,
//! and the old one keeps serving. Swaps are serialized, so generations only go up.
//!
//! A reload reads the code again from where it came from: its file, its manifest, or
//! its registry reference, pulled again (the new bytes are downloaded only if the
//! reference now names other bytes). A pull waits on the network without holding the
//! lock that serializes swaps, so a slow or stalled registry never holds up an upload
//! or another reload; what it pulled is published only if nothing else was published
//! meanwhile.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow};
use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::{Mutex, MutexGuard};
use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::load::app::{App, AppBytes, HostPolicy, LoadedApp, VersionDigest};
use crate::load::component::ComponentBytes;
use crate::load::registry::{ComponentReference, LazyRegistry, Resolved};
use crate::load::source::AppSource;
use crate::observe::metrics::{Metrics, WASI_VERSIONS};
use crate::sandbox::store::InstanceState;

/// One published version of the code.
pub struct Version {
    /// The component, or the application's components, requests are served with.
    pub app: App,
    /// 1 for the version loaded at startup, one more for each swap.
    pub generation: u64,
    /// The SHA-256 of the bytes loaded, in lowercase hex (for a Spin application, of
    /// its manifest, components and files together). For a component loaded at startup
    /// it is computed after the host starts serving, so that hashing a large file never
    /// delays a cold start; until then (or if the file cannot be read again) it is
    /// unset.
    pub sha256: OnceLock<String>,
    /// Where the bytes came from: a path, an upload, a manifest, or a registry reference
    /// pinned to its manifest's digest.
    pub origin: String,
    /// When this version was published.
    pub activated_at: SystemTime,
}

/// A loaded version and its SHA-256, or `None` when the bytes are the active ones.
type Loaded = Result<Option<(LoadedApp, String)>>;

/// What made the host load a new version; it is named in the log line.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    /// The component file changed on disk (`--watch`).
    FileChanged,
    /// SIGHUP.
    Hangup,
    /// An upload to the admin endpoint.
    Upload,
    /// A new registry reference sent to the admin endpoint.
    NewReference,
    /// The primary worker made a change and has this secondary make it too
    /// (`--workers`).
    Primary,
}

/// Why a swap did not publish a new version.
#[derive(Debug)]
pub enum SwapError {
    /// The new bytes are the ones already serving.
    Unchanged,
    /// The new version could not be loaded; the old one keeps serving.
    Rejected(anyhow::Error),
    /// Another version was published while this one was being pulled: the newer change
    /// stands, and this one is dropped.
    Superseded,
}

/// A change this process made, for its followers to make too.
pub enum Change {
    /// Read the code again from its source.
    Reload,
    /// Serve uploaded bytes.
    Upload {
        /// The component, as uploaded.
        bytes: Vec<u8>,
        /// Where it came from, for the log and the admin `GET`.
        origin: String,
    },
    /// Pull and serve this reference.
    Reference(ComponentReference),
}

/// Processes that make every change this one makes: the secondary workers of
/// `--workers`. `swap` owns the trait so that it never depends on how they are reached.
pub trait Followers: Send + Sync {
    /// Has every follower make `change`, which this process has just made. One that
    /// cannot is logged: it keeps serving its current version.
    fn follow<'a>(&'a self, change: &'a Change) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// Where reloads read the code, and a count of the changes made since startup.
struct SourceState {
    source: AppSource,
    /// One more for every version published and every new source: a pull that started
    /// at another count was overtaken while it waited on the network.
    changes: u64,
}

/// The component requests are served with, and the means to replace it.
pub struct ActiveComponent {
    current: ArcSwap<Version>,
    engine: Engine,
    linker: Linker<InstanceState>,
    /// Where reloads (SIGHUP, `--watch`) read the code. It is locked for the whole of
    /// every swap but a pull's wait on the network, which serializes them.
    source: Mutex<SourceState>,
    /// What every component gets from the host.
    policy: Arc<HostPolicy>,
    /// Where registry references are pulled from.
    registry: LazyRegistry,
    /// Where the active generation is shown.
    metrics: Arc<Metrics>,
    /// The secondary workers, which make every change this one makes (`--workers`).
    followers: OnceLock<Arc<dyn Followers>>,
}

impl ActiveComponent {
    /// Loads generation 1 from `source`, before the port is bound.
    pub async fn load(
        engine: Engine,
        linker: Linker<InstanceState>,
        source: AppSource,
        policy: HostPolicy,
        registry: LazyRegistry,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let policy = Arc::new(policy);
        let pulled = match &source {
            AppSource::Registry(reference) => {
                let (resolved, bytes) = registry.get().pull(reference).await?;
                Some(AppBytes::pulled(&resolved, bytes)?)
            }
            _ => None,
        };
        let (read_source, compile_engine, compile_linker, compile_policy) = (
            source.clone(),
            engine.clone(),
            linker.clone(),
            policy.clone(),
        );
        let loaded = tokio::task::spawn_blocking(move || {
            let bytes = match pulled {
                Some(bytes) => bytes,
                None => AppBytes::read(&read_source)?,
            };
            bytes.load(&compile_engine, &compile_linker, &compile_policy)
        })
        .await
        .context("the loading task failed")??;
        let version = Arc::new(Version {
            app: loaded.app,
            generation: 1,
            sha256: OnceLock::new(),
            origin: loaded.origin,
            activated_at: SystemTime::now(),
        });
        tracing::info!("serving generation 1: `{}`", version.origin);
        hash_in_background(version.clone(), loaded.digest)?;
        show(&metrics, &version);
        Ok(Self {
            current: ArcSwap::new(version),
            engine,
            linker,
            source: Mutex::new(SourceState { source, changes: 0 }),
            policy,
            registry,
            metrics,
            followers: OnceLock::new(),
        })
    }

    /// From now on, every change made here is made by `followers` too.
    pub fn lead(&self, followers: Arc<dyn Followers>) {
        if self.followers.set(followers).is_err() {
            tracing::warn!("the secondary workers were already set");
        }
    }

    /// Has the followers, if any, make the change this one just made. The caller still
    /// holds the `source` lock, so every process makes the changes in one order.
    async fn tell_followers(&self, change: impl FnOnce() -> Change) {
        if let Some(followers) = self.followers.get() {
            followers.follow(&change()).await;
        }
    }

    /// The version new requests are served with.
    pub fn current(&self) -> Arc<Version> {
        self.current.load_full()
    }

    /// Reads the code again from its source and, if it changed, publishes it.
    pub async fn reload(&self, trigger: Trigger) -> Result<Arc<Version>, SwapError> {
        let state = self.source.lock().await;
        // The lock is held to the end, so that followers make the changes in one order.
        let (_state, outcome) = if let AppSource::Registry(reference) = &state.source {
            let (reference, seen) = (reference.clone(), state.changes);
            drop(state);
            self.pull_and_publish(trigger, &reference, seen).await
        } else {
            let mut state = state;
            let source = state.source.clone();
            let outcome = self
                .swap(trigger, &mut state, move || AppBytes::read(&source))
                .await;
            (state, outcome)
        };
        if outcome.is_ok() {
            self.tell_followers(|| Change::Reload).await;
        }
        outcome
    }

    /// Publishes `bytes`, an uploaded `.wasm` component, described as `origin`. A host
    /// serving a Spin application refuses it: the application is its manifest.
    pub async fn upload(&self, bytes: Vec<u8>, origin: String) -> Result<Arc<Version>, SwapError> {
        let mut state = self.source.lock().await;
        refuse_over_application(&state.source)?;
        let copy = self
            .followers
            .get()
            .map(|_| (bytes.clone(), origin.clone()));
        let outcome = self
            .swap(Trigger::Upload, &mut state, move || {
                Ok(AppBytes::Component(ComponentBytes::uploaded(
                    bytes, origin,
                )?))
            })
            .await;
        if let (Some((bytes, origin)), Ok(_)) = (copy, &outcome) {
            self.tell_followers(|| Change::Upload { bytes, origin })
                .await;
        }
        outcome
    }

    /// Pulls `reference` and publishes it; unless it is rejected or overtaken, it
    /// becomes the source later reloads pull.
    pub async fn pull_reference(
        &self,
        reference: ComponentReference,
    ) -> Result<Arc<Version>, SwapError> {
        let seen = {
            let state = self.source.lock().await;
            refuse_over_application(&state.source)?;
            state.changes
        };
        let (mut state, outcome) = self
            .pull_and_publish(Trigger::NewReference, &reference, seen)
            .await;
        if !matches!(outcome, Err(SwapError::Rejected(_) | SwapError::Superseded)) {
            self.tell_followers(|| Change::Reference(reference.clone()))
                .await;
            state.source = AppSource::Registry(reference);
            state.changes += 1;
        }
        outcome
    }

    /// Pulls `reference` without the `source` lock, then takes it and publishes what
    /// was pulled, unless the count of changes moved past `seen` meanwhile. Returns the
    /// lock, still held, with the outcome.
    async fn pull_and_publish(
        &self,
        trigger: Trigger,
        reference: &ComponentReference,
        seen: u64,
    ) -> (MutexGuard<'_, SourceState>, Result<Arc<Version>, SwapError>) {
        let pulled = self.pull(trigger, reference).await;
        let mut state = self.source.lock().await;
        let outcome = match pulled {
            Err(SwapError::Rejected(error)) => Err(SwapError::Rejected(error)),
            _ if state.changes != seen => Err(superseded(trigger)),
            Err(other) => Err(other),
            Ok((resolved, bytes)) => {
                self.swap(trigger, &mut state, move || {
                    AppBytes::pulled(&resolved, bytes)
                })
                .await
            }
        };
        (state, outcome)
    }

    /// Pulls `reference`: its bytes, unless they are the active version's.
    async fn pull(
        &self,
        trigger: Trigger,
        reference: &ComponentReference,
    ) -> Result<(Resolved, Bytes), SwapError> {
        let old = self.current();
        let registry = self.registry.get();
        let resolved = match registry.resolve(reference).await {
            Ok(resolved) => resolved,
            Err(error) => return Err(rejected(trigger, &old, error)),
        };
        if old.sha256.get().map(String::as_str) == Some(resolved.sha256()) {
            return Err(unchanged(trigger, &old));
        }
        match registry.fetch(&resolved).await {
            Ok(bytes) => Ok((resolved, bytes)),
            Err(error) => Err(rejected(trigger, &old, error)),
        }
    }

    /// Loads what `read` returns and publishes it, under the `source` lock `state`.
    async fn swap(
        &self,
        trigger: Trigger,
        state: &mut SourceState,
        read: impl FnOnce() -> Result<AppBytes> + Send + 'static,
    ) -> Result<Arc<Version>, SwapError> {
        let old = self.current();
        let engine = self.engine.clone();
        let linker = self.linker.clone();
        let policy = self.policy.clone();
        let current = old.clone();
        // Compiling takes milliseconds to seconds of CPU: keep it off the threads that
        // serve requests.
        let loaded = tokio::task::spawn_blocking(move || -> Loaded {
            let bytes = read()?;
            let sha256 = bytes.sha256()?;
            if current.sha256.get() == Some(&sha256) {
                return Ok(None);
            }
            let origin = bytes.origin();
            let loaded = bytes.load(&engine, &linker, &policy)?;
            // A precompiled file that did not fit was replaced by its `.wasm`.
            let sha256 = if loaded.origin == origin {
                sha256
            } else {
                loaded.digest.compute()?
            };
            Ok(Some((loaded, sha256)))
        })
        .await
        .context("the loading task failed")
        .and_then(|loaded| loaded);
        let (loaded, sha256) = match loaded {
            Ok(Some(loaded)) => loaded,
            Ok(None) => return Err(unchanged(trigger, &old)),
            Err(error) => return Err(rejected(trigger, &old, error)),
        };
        let version = Arc::new(Version {
            app: loaded.app,
            generation: old.generation + 1,
            sha256: OnceLock::from(sha256),
            origin: loaded.origin,
            activated_at: SystemTime::now(),
        });
        self.current.store(version.clone());
        state.changes += 1;
        show(&self.metrics, &version);
        tracing::info!(
            ?trigger,
            previous_generation = old.generation,
            "swapped: generation {} is `{}` (sha256 {})",
            version.generation,
            version.origin,
            version.sha256.wait()
        );
        Ok(version)
    }
}

/// Shows `version` in `metrics`: its generation and its components' WASI versions.
fn show(metrics: &Metrics, version: &Version) {
    metrics.set_component_generation(version.generation);
    let components = version.app.components();
    let count = |wasi| {
        components
            .iter()
            .filter(|component| component.world.wasi_version() == wasi)
            .count()
    };
    metrics.set_components(&WASI_VERSIONS.map(|wasi| (wasi, count(wasi))));
}

/// Computes the first version's digest on a thread of its own, so that hashing a large
/// file never delays a cold start.
fn hash_in_background(version: Arc<Version>, digest: VersionDigest) -> Result<()> {
    std::thread::Builder::new()
        .name("sha256".into())
        .spawn(move || match digest.compute() {
            // Published before it is logged, so whoever reads the log line finds it.
            Ok(sha256) => tracing::info!(
                "generation 1 has sha256 {}",
                version.sha256.get_or_init(|| sha256)
            ),
            // The digest stays unknown; a reload then never counts as "unchanged".
            Err(error) => tracing::warn!("cannot hash generation 1: {error:#}"),
        })
        .context("cannot start the thread that hashes the component")?;
    Ok(())
}

/// Refuses to replace a Spin application with a single component: the application is
/// its manifest, and is changed there.
fn refuse_over_application(source: &AppSource) -> Result<(), SwapError> {
    match source {
        AppSource::Manifest(manifest) => Err(SwapError::Rejected(anyhow!(
            "this host serves the Spin application `{}`; change it there and reload \
             (SIGHUP or --watch) instead",
            manifest.display()
        ))),
        _ => Ok(()),
    }
}

/// Logs that a swap found the active version's bytes again.
fn unchanged(trigger: Trigger, old: &Version) -> SwapError {
    tracing::info!(
        ?trigger,
        generation = old.generation,
        "component unchanged; nothing to swap"
    );
    SwapError::Unchanged
}

/// Logs that a pull was overtaken by another change while it waited on the network.
fn superseded(trigger: Trigger) -> SwapError {
    tracing::warn!(
        ?trigger,
        "another version was published while this one was pulled; dropping the pull"
    );
    SwapError::Superseded
}

/// Logs that a swap failed and the old version keeps serving.
fn rejected(trigger: Trigger, old: &Version, error: anyhow::Error) -> SwapError {
    tracing::error!(
        ?trigger,
        generation = old.generation,
        "rejected the new component, the old one keeps serving: {error:#}"
    );
    SwapError::Rejected(error)
}
