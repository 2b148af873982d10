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
//! reference now names other bytes).
//!
//! With `--workers`, only the primary reads, pulls and compiles; it hands each version
//! to the other workers (see [`super::loader`]) and publishes it only once every one of
//! them has loaded it, then has them publish it too. A worker that cannot load it makes
//! the swap fail, and every worker keeps the old version.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow};
use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::{Mutex, MutexGuard};

use super::loader::{Candidate, Handoff, Loader};
use crate::load::app::{App, AppBytes, VersionDigest};
use crate::load::component::ComponentBytes;
use crate::load::registry::{ComponentReference, LazyRegistry, Resolved};
use crate::load::source::AppSource;
use crate::observe::metrics::{Metrics, WASI_VERSIONS};

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

impl Version {
    /// Loads, with `loader`, the version the primary handed to this secondary worker;
    /// `source` is where a Spin application is read again.
    pub async fn handed(loader: &Loader, handoff: Handoff, source: AppSource) -> Result<Self> {
        let loaded = loader.load_handoff(&handoff, source).await?;
        Ok(Self {
            app: loaded.app,
            generation: handoff.generation,
            sha256: OnceLock::from(handoff.sha256),
            origin: handoff.origin,
            activated_at: SystemTime::now(),
        })
    }
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
    /// A new registry reference sent to the admin endpoint.
    NewReference,
    /// The primary worker published a version and has this secondary serve it too
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
    /// Another version was published while this one was pulled; the newer one stays.
    Superseded,
}

/// A future the [`Followers`] return.
pub type FollowerFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Processes that serve every version this one publishes: the secondary workers of
/// `--workers`. `swap` owns the trait so that it never depends on how they are reached.
pub trait Followers: Send + Sync {
    /// Has every follower load `handoff` without serving it yet. Fails, naming the
    /// first follower that could not, once those that had loaded it have dropped it.
    fn prepare<'a>(&'a self, handoff: &'a Handoff) -> FollowerFuture<'a, Result<()>>;

    /// Has every follower serve the version it prepared. One that cannot has lost its
    /// connection to this process, and so stops, which stops the host: the versions
    /// never stay split.
    fn publish(&self) -> FollowerFuture<'_, ()>;

    /// What each follower serves, for the admin endpoint.
    fn versions(&self) -> FollowerFuture<'_, Vec<FollowerVersion>>;
}

/// The version a follower serves, as it reports it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct FollowerVersion {
    /// Its worker number.
    pub worker: u32,
    pub generation: Option<u64>,
    pub sha256: Option<String>,
    /// Why it could not tell, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The component requests are served with, and the means to replace it.
pub struct ActiveComponent {
    current: ArcSwap<Version>,
    loader: Arc<Loader>,
    /// Where reloads (SIGHUP, `--watch`) read the code. It is locked for the whole of
    /// every swap, which serializes them.
    source: Mutex<AppSource>,
    /// Where registry references are pulled from.
    registry: LazyRegistry,
    /// Where the active generation is shown.
    metrics: Arc<Metrics>,
    /// The secondary workers, which serve every version this one publishes
    /// (`--workers`).
    followers: OnceLock<Arc<dyn Followers>>,
}

impl ActiveComponent {
    /// Loads generation 1 from `source`, before the port is bound. With `for_workers`,
    /// its digest is computed before it serves, since the other workers are given it;
    /// otherwise after, so that hashing a large file never delays a cold start.
    pub async fn load(
        loader: Arc<Loader>,
        source: AppSource,
        registry: LazyRegistry,
        metrics: Arc<Metrics>,
        for_workers: bool,
    ) -> Result<Self> {
        let pulled = match &source {
            AppSource::Registry(reference) => {
                let (resolved, bytes) = registry.get().pull(reference).await?;
                Some(AppBytes::pulled(&resolved, bytes)?)
            }
            _ => None,
        };
        let read_source = source.clone();
        let loaded = loader
            .load_unhashed(move || match pulled {
                Some(bytes) => Ok(bytes),
                None => AppBytes::read(&read_source),
            })
            .await?;
        let version = Arc::new(Version {
            app: loaded.app,
            generation: 1,
            sha256: OnceLock::new(),
            origin: loaded.origin,
            activated_at: SystemTime::now(),
        });
        tracing::info!("serving generation 1: `{}`", version.origin);
        if for_workers {
            let digest = loaded.digest;
            let sha256 = tokio::task::spawn_blocking(move || digest.compute())
                .await
                .context("the hashing task failed")??;
            version.sha256.get_or_init(|| sha256);
        } else {
            hash_in_background(version.clone(), loaded.digest)?;
        }
        show(&metrics, &version);
        Ok(Self::serving(loader, version, source, registry, metrics))
    }

    /// Serves `first`, the version the primary handed to this secondary worker.
    pub fn following(
        loader: Arc<Loader>,
        first: Version,
        source: AppSource,
        registry: LazyRegistry,
        metrics: Arc<Metrics>,
    ) -> Self {
        tracing::info!(
            "serving generation {}: `{}` (sha256 {}), as the primary does",
            first.generation,
            first.origin,
            first.sha256.get().map_or("unknown", String::as_str)
        );
        let first = Arc::new(first);
        show(&metrics, &first);
        Self::serving(loader, first, source, registry, metrics)
    }

    fn serving(
        loader: Arc<Loader>,
        version: Arc<Version>,
        source: AppSource,
        registry: LazyRegistry,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            current: ArcSwap::new(version),
            loader,
            source: Mutex::new(source),
            registry,
            metrics,
            followers: OnceLock::new(),
        }
    }

    /// From now on, every version published here is published by `followers` too.
    pub fn lead(&self, followers: Arc<dyn Followers>) {
        if self.followers.set(followers).is_err() {
            tracing::warn!("the secondary workers were already set");
        }
    }

    /// Hands the active version to the followers and has them serve it: how they get
    /// their first version.
    pub async fn hand_over(&self) -> Result<()> {
        let Some(followers) = self.followers.get() else {
            return Ok(());
        };
        let _swapping = self.source.lock().await;
        let version = self.current();
        let sha256 = version
            .sha256
            .get()
            .cloned()
            .context("the active version has no digest to hand over")?;
        let serializing = version.clone();
        let artifact = tokio::task::spawn_blocking(move || serializing.app.artifact())
            .await
            .context("the serializing task failed")??;
        let handoff = Handoff {
            generation: version.generation,
            sha256,
            origin: version.origin.clone(),
            artifact,
        };
        followers.prepare(&handoff).await?;
        followers.publish().await;
        Ok(())
    }

    /// The followers' versions, one per follower; none without followers.
    pub async fn follower_versions(&self) -> Vec<FollowerVersion> {
        match self.followers.get() {
            Some(followers) => followers.versions().await,
            None => Vec::new(),
        }
    }

    /// The version new requests are served with.
    pub fn current(&self) -> Arc<Version> {
        self.current.load_full()
    }

    /// Reads the code again from its source and, if it changed, publishes it.
    pub async fn reload(&self, trigger: Trigger) -> Result<Arc<Version>, SwapError> {
        let source = self.source.lock().await;
        let AppSource::Registry(reference) = &*source else {
            let source = source.clone();
            return self.swap(trigger, move || AppBytes::read(&source)).await;
        };
        let reference = reference.clone();
        // The pull goes over the network: other swaps must not wait for it.
        drop(source);
        let (_source, outcome) = self.pull_and_publish(trigger, &reference).await;
        outcome
    }

    /// Publishes `bytes`, an uploaded `.wasm` component, described as `origin`. A host
    /// serving a Spin application refuses it: the application is its manifest.
    pub async fn upload(&self, bytes: Vec<u8>, origin: String) -> Result<Arc<Version>, SwapError> {
        let source = self.source.lock().await;
        refuse_over_application(&source)?;
        self.swap(Trigger::Upload, move || {
            Ok(AppBytes::Component(ComponentBytes::uploaded(
                bytes, origin,
            )?))
        })
        .await
    }

    /// Pulls `reference` and publishes it; unless it is rejected, it becomes the source
    /// later reloads pull.
    pub async fn pull_reference(
        &self,
        reference: ComponentReference,
    ) -> Result<Arc<Version>, SwapError> {
        refuse_over_application(&*self.source.lock().await)?;
        let (mut source, outcome) = self
            .pull_and_publish(Trigger::NewReference, &reference)
            .await;
        if !matches!(outcome, Err(SwapError::Rejected(_) | SwapError::Superseded)) {
            *source = AppSource::Registry(reference);
        }
        outcome
    }

    /// Publishes `version`, which the primary handed to this secondary worker.
    pub fn publish_handed(&self, version: Version) -> Arc<Version> {
        let previous = self.current().generation;
        self.publish(version, Trigger::Primary, previous)
    }

    /// Pulls `reference` without the `source` lock, then takes it and publishes what was
    /// pulled, unless another version was published meanwhile. Returns the lock, still
    /// held, with the outcome.
    async fn pull_and_publish(
        &self,
        trigger: Trigger,
        reference: &ComponentReference,
    ) -> (MutexGuard<'_, AppSource>, Result<Arc<Version>, SwapError>) {
        let seen = self.current().generation;
        let pulled = self.pull(trigger, reference).await;
        let source = self.source.lock().await;
        let outcome = match pulled {
            Err(SwapError::Rejected(error)) => Err(SwapError::Rejected(error)),
            _ if self.current().generation != seen => Err(superseded(trigger)),
            Err(other) => Err(other),
            Ok((resolved, bytes)) => {
                self.swap(trigger, move || AppBytes::pulled(&resolved, bytes))
                    .await
            }
        };
        (source, outcome)
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

    /// Loads what `read` returns, has the followers load it too, and publishes it
    /// everywhere. The caller holds the `source` lock.
    async fn swap(
        &self,
        trigger: Trigger,
        read: impl FnOnce() -> Result<AppBytes> + Send + 'static,
    ) -> Result<Arc<Version>, SwapError> {
        let old = self.current();
        let followers = self.followers.get();
        let loaded = self
            .loader
            .load(read, old.sha256.get().cloned(), followers.is_some())
            .await;
        let candidate = match loaded {
            Ok(Some(candidate)) => candidate,
            Ok(None) => return Err(unchanged(trigger, &old)),
            Err(error) => return Err(rejected(trigger, &old, error)),
        };
        let Candidate {
            loaded,
            sha256,
            artifact,
        } = candidate;
        let generation = old.generation + 1;
        if let Some(followers) = followers {
            let handoff = Handoff {
                generation,
                sha256: sha256.clone(),
                origin: loaded.origin.clone(),
                artifact,
            };
            if let Err(error) = followers.prepare(&handoff).await {
                return Err(rejected(trigger, &old, error));
            }
        }
        let version = Version {
            app: loaded.app,
            generation,
            sha256: OnceLock::from(sha256),
            origin: loaded.origin,
            activated_at: SystemTime::now(),
        };
        let version = self.publish(version, trigger, old.generation);
        if let Some(followers) = followers {
            followers.publish().await;
        }
        Ok(version)
    }

    /// Makes `version` the one new requests are served with.
    fn publish(&self, version: Version, trigger: Trigger, previous: u64) -> Arc<Version> {
        let version = Arc::new(Version {
            activated_at: SystemTime::now(),
            ..version
        });
        self.current.store(version.clone());
        show(&self.metrics, &version);
        tracing::info!(
            ?trigger,
            previous_generation = previous,
            "swapped: generation {} is `{}` (sha256 {})",
            version.generation,
            version.origin,
            version.sha256.get().map_or("unknown", String::as_str)
        );
        version
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

/// Logs that a pull was overtaken by another swap and is dropped.
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
