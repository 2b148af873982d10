//! Loading a version off the async threads, and the form in which the primary worker
//! hands a version it loaded to the other workers (`--workers`): a single component
//! compiled once, by the primary, and loaded by the others from that artifact, so that
//! every worker serves the bytes the primary pulled and checked; a Spin application read
//! again by each worker from its manifest and refused unless its digest is the primary's.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::load::app::{AppBytes, HostPolicy, LoadedApp};
use crate::load::component::ComponentBytes;
use crate::load::source::AppSource;
use crate::sandbox::store::InstanceState;

/// What a version is loaded with: the engine, the linker, and what every component gets
/// from the host.
pub struct Loader {
    engine: Engine,
    linker: Linker<InstanceState>,
    policy: Arc<HostPolicy>,
}

/// A version loaded but not yet published.
pub struct Candidate {
    pub loaded: LoadedApp,
    /// The SHA-256 of the bytes loaded, in lowercase hex.
    pub sha256: String,
    /// What the other workers load, when there are any.
    pub artifact: Option<Bytes>,
}

/// A version as the primary hands it to the other workers.
pub struct Handoff {
    /// The generation the primary publishes it as.
    pub generation: u64,
    /// The SHA-256 of the bytes the primary loaded.
    pub sha256: String,
    /// Where the primary read or pulled it from.
    pub origin: String,
    /// A single component's code, compiled by the primary; `None` for a Spin
    /// application, which each worker reads from its manifest.
    pub artifact: Option<Bytes>,
}

impl Loader {
    pub fn new(engine: Engine, linker: Linker<InstanceState>, policy: HostPolicy) -> Self {
        Self {
            engine,
            linker,
            policy: Arc::new(policy),
        }
    }

    /// Loads what `read` returns, unless its digest is `active_sha256`; with
    /// `for_workers`, also serializes the compiled code for the other workers.
    /// Compiling takes milliseconds to seconds of CPU: it runs off the threads that
    /// serve requests.
    pub async fn load(
        &self,
        read: impl FnOnce() -> Result<AppBytes> + Send + 'static,
        active_sha256: Option<String>,
        for_workers: bool,
    ) -> Result<Option<Candidate>> {
        let (engine, linker, policy) = self.parts();
        tokio::task::spawn_blocking(move || {
            let bytes = read()?;
            let sha256 = bytes.sha256()?;
            if active_sha256.as_ref() == Some(&sha256) {
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
            let artifact = match for_workers {
                true => loaded.app.artifact()?,
                false => None,
            };
            Ok(Some(Candidate {
                loaded,
                sha256,
                artifact,
            }))
        })
        .await
        .context("the loading task failed")?
    }

    /// Loads what `read` returns, without hashing it.
    pub async fn load_unhashed(
        &self,
        read: impl FnOnce() -> Result<AppBytes> + Send + 'static,
    ) -> Result<LoadedApp> {
        let (engine, linker, policy) = self.parts();
        tokio::task::spawn_blocking(move || read()?.load(&engine, &linker, &policy))
            .await
            .context("the loading task failed")?
    }

    /// Loads the code of the version the primary handed over; `source` is where a
    /// Spin application is read again.
    pub async fn load_handoff(&self, handoff: &Handoff, source: AppSource) -> Result<LoadedApp> {
        let (engine, linker, policy) = self.parts();
        let artifact = handoff.artifact.clone();
        let expected = handoff.sha256.clone();
        let handed_origin = handoff.origin.clone();
        tokio::task::spawn_blocking(move || {
            let bytes = match artifact {
                Some(artifact) => {
                    AppBytes::Component(ComponentBytes::handed_by_primary(artifact, handed_origin))
                }
                None => {
                    let bytes = AppBytes::read(&source)?;
                    let read = bytes.sha256()?;
                    ensure!(
                        read == expected,
                        "`{source}` now has sha256 {read}, not the {expected} the primary \
                         loaded: it changed while the workers loaded it"
                    );
                    bytes
                }
            };
            bytes.load(&engine, &linker, &policy)
        })
        .await
        .context("the loading task failed")?
    }

    fn parts(&self) -> (Engine, Linker<InstanceState>, Arc<HostPolicy>) {
        (
            self.engine.clone(),
            self.linker.clone(),
            self.policy.clone(),
        )
    }
}
