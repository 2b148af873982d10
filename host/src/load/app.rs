//! What requests are served with: one component, or a Spin application's components
//! behind its routes. Each component has its pool of instances, made with what its
//! requests run with: its environment and variables, its outbound rules (with a
//! connection pool of its own, so a connection one component was allowed to open is
//! never lent to another), its files, and how far its instances are reused.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{HeaderName, Request, header};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::component::{self, ComponentBytes, LoadedProxy, World};
use super::imports::UnimplementedImports;
use super::registry::Resolved;
use super::source::AppSource;
use super::spin::files::StagedFiles;
use super::spin::manifest::{self, AppManifest, ComponentSpec};
use super::spin::routes::Routes;
use super::spin::variables;
use crate::observe::metrics::Metrics;
use crate::sandbox::env::GuestEnv;
use crate::sandbox::instances::{InstancePool, Instances, ReusePolicy};
use crate::sandbox::keyvalue::KeyValueStores;
use crate::sandbox::limits::InstanceLimits;
use crate::sandbox::outbound::{Outbound, OutboundConfig};
use crate::sandbox::store::{InstanceRecipe, InstanceState};
use crate::sandbox::variables::Variables;

/// What every component gets from the host, whatever a manifest says.
pub struct HostPolicy {
    /// The operator's `--env` values and the platform's variables; they win over a
    /// manifest's `environment`.
    pub guest_env: GuestEnv,
    /// The outbound rules: for a single component, all of them; for a Spin
    /// application, the name resolutions and limits, under each component's own
    /// `allowed_outbound_hosts`.
    pub outbound: OutboundConfig,
    /// The pool a single component's requests share, across swaps.
    pub shared_outbound: Arc<Outbound>,
    pub instance: InstanceLimits,
    pub reuse: ReuseSettings,
    /// Longest a request may run; an instance working on one past it is retired.
    pub request_timeout: Duration,
    /// A Spin application's variables set in the environment, by lower-case name.
    pub spin_variables: BTreeMap<String, String>,
    /// What a single component reads through `wasi:config/store`.
    pub guest_config: Variables,
    pub imports: UnimplementedImports,
    /// The key-value stores, shared by every version.
    pub key_value: Arc<KeyValueStores>,
    pub metrics: Arc<Metrics>,
}

/// How far instances are reused, as configured: unset counts take the component's
/// world's defaults.
#[derive(Debug, Clone)]
pub struct ReuseSettings {
    pub max_requests: Option<usize>,
    pub max_concurrent: Option<usize>,
    pub idle_timeout: Duration,
}

impl ReuseSettings {
    /// The policy for a component of `world`: as `wasmtime serve` does, a WASI 0.3
    /// instance serves up to 128 requests, 16 at once; a 0.2 one serves one (a fresh
    /// instance per request) unless asked for more, and never two at once, since a 0.2
    /// handler cannot be called concurrently.
    pub fn policy(&self, world: World) -> ReusePolicy {
        let (max_requests, max_concurrent) = match world {
            World::Service => (
                self.max_requests.unwrap_or(128),
                self.max_concurrent.unwrap_or(16),
            ),
            World::Proxy => (self.max_requests.unwrap_or(1), 1),
        };
        ReusePolicy {
            max_requests: max_requests.max(1),
            max_concurrent: max_concurrent.max(1),
            idle_timeout: self.idle_timeout,
        }
    }
}

/// One version's code, ready to serve.
pub struct App {
    components: Vec<AppComponent>,
    /// `None` for a single component, which serves every path.
    routes: Option<Routes>,
    /// The component files a Spin application's manifest names.
    component_files: Vec<PathBuf>,
    /// A single component's compiled code; `None` for a Spin application.
    single: Option<Component>,
}

/// One component and the instances its requests run in.
pub struct AppComponent {
    /// Its id in the manifest; the file name for a single component.
    pub id: String,
    pub world: World,
    pub pool: InstancePool,
}

/// A version read from its source, before compiling.
pub enum AppBytes {
    /// A single component.
    Component(ComponentBytes),
    /// A Spin application: its manifest, and each component's bytes and files.
    Spin(Box<SpinBytes>),
}

/// A Spin application read from disk.
pub struct SpinBytes {
    manifest_path: PathBuf,
    manifest: AppManifest,
    components: Vec<(ComponentBytes, Option<StagedFiles>)>,
    sha256: String,
}

/// A version compiled and linked, and where its digest comes from.
pub struct LoadedApp {
    /// The code.
    pub app: App,
    /// What it was loaded from, for the log: a path, an upload, or the manifest.
    pub origin: String,
    /// Its digest, known, or to be computed from the single component it was made of.
    pub digest: VersionDigest,
}

/// A version's SHA-256, or the bytes to compute it from.
pub enum VersionDigest {
    /// Already known (a Spin application's, computed while reading it).
    Known(String),
    /// The SHA-256 of these component bytes.
    Of(ComponentBytes),
}

impl VersionDigest {
    /// The digest, in lowercase hex.
    pub fn compute(&self) -> Result<String> {
        match self {
            Self::Known(sha256) => Ok(sha256.clone()),
            Self::Of(bytes) => Ok(bytes.sha256()?),
        }
    }
}

impl AppBytes {
    /// Reads `source`: the component file, or the manifest, every component file it
    /// names and the files it gives them.
    pub fn read(source: &AppSource) -> Result<Self> {
        let manifest_path = match source {
            AppSource::Component(path) => return Ok(Self::Component(ComponentBytes::read(path)?)),
            AppSource::Manifest(path) => path.clone(),
            AppSource::Registry(reference) => {
                bail!("`{reference}` is pulled from its registry, not read from disk")
            }
        };
        let (manifest, text) = manifest::read(&manifest_path)?;
        let folder = manifest_path.parent().unwrap_or(Path::new("."));
        // Over the manifest's text and every component's bytes and files, so that a
        // change to any of them is a change of version.
        let mut hasher = Sha256::new();
        hasher.update(text.as_bytes());
        let mut components = Vec::with_capacity(manifest.components.len());
        for spec in &manifest.components {
            let in_component = || format!("component `{}`", spec.id);
            let bytes = ComponentBytes::read(&spec.source)
                .map_err(anyhow::Error::from)
                .with_context(in_component)?;
            let files = StagedFiles::stage(spec, folder)?;
            hasher.update(
                bytes
                    .sha256()
                    .map_err(anyhow::Error::from)
                    .with_context(in_component)?,
            );
            hasher.update(files.as_ref().map_or("", StagedFiles::sha256));
            components.push((bytes, files));
        }
        Ok(Self::Spin(Box::new(SpinBytes {
            manifest_path,
            manifest,
            components,
            sha256: format!("{:x}", hasher.finalize()),
        })))
    }

    /// What the version is loaded from, for the log.
    pub fn origin(&self) -> String {
        match self {
            Self::Component(bytes) => bytes.origin().to_owned(),
            Self::Spin(spin) => spin.manifest_path.display().to_string(),
        }
    }

    /// The version's SHA-256, in lowercase hex.
    pub fn sha256(&self) -> Result<String> {
        match self {
            Self::Component(bytes) => Ok(bytes.sha256()?),
            Self::Spin(spin) => Ok(spin.sha256.clone()),
        }
    }

    /// Compiles, links and pre-instantiates every component.
    pub fn load(
        self,
        engine: &Engine,
        linker: &Linker<InstanceState>,
        policy: &HostPolicy,
    ) -> Result<LoadedApp> {
        match self {
            Self::Component(bytes) => load_single(bytes, engine, linker, policy),
            Self::Spin(spin) => spin.load(engine, linker, policy),
        }
    }

    /// A component pulled from a registry, as `resolved` names it.
    pub fn pulled(resolved: &Resolved, bytes: Bytes) -> Result<Self> {
        Ok(Self::Component(ComponentBytes::uploaded(
            bytes.to_vec(),
            resolved.to_string(),
        )?))
    }
}

/// A single component, served for every path with the host's environment and config
/// values, and the outbound pool shared across versions.
fn load_single(
    bytes: ComponentBytes,
    engine: &Engine,
    linker: &Linker<InstanceState>,
    policy: &HostPolicy,
) -> Result<LoadedApp> {
    let loaded = component::load_proxy(engine, linker, bytes, policy.imports)?;
    let origin = loaded.bytes.origin().to_owned();
    let recipe = InstanceRecipe {
        env: policy.guest_env.clone(),
        files: None,
        outbound: policy.shared_outbound.clone(),
        variables: policy.guest_config.clone(),
        key_value: policy.key_value.grant_all(),
        limits: policy.instance.clone(),
    };
    let component = app_component(origin.clone(), &loaded, recipe, engine, policy);
    Ok(LoadedApp {
        app: App {
            components: vec![component],
            routes: None,
            component_files: Vec::new(),
            single: Some(loaded.compiled.clone()),
        },
        origin,
        digest: VersionDigest::Of(loaded.bytes),
    })
}

/// A component and its pool of instances made from `recipe`.
fn app_component(
    id: String,
    loaded: &LoadedProxy,
    recipe: InstanceRecipe,
    engine: &Engine,
    policy: &HostPolicy,
) -> AppComponent {
    let reuse = policy.reuse.policy(loaded.world);
    tracing::info!(
        "component `{id}`: {} (WASI {}), instances serve up to {} request(s), {} at once",
        loaded.world.name(),
        loaded.world.wasi_version(),
        reuse.max_requests,
        reuse.max_concurrent
    );
    let pool = Instances::pool(
        engine.clone(),
        loaded.pre(),
        recipe,
        reuse,
        policy.request_timeout,
        policy.metrics.clone(),
    );
    AppComponent {
        id,
        world: loaded.world,
        pool,
    }
}

impl SpinBytes {
    /// Every component of the application, each file compiled once, with its own
    /// environment, variables, outbound rules and files, behind the manifest's routes.
    fn load(
        self,
        engine: &Engine,
        linker: &Linker<InstanceState>,
        policy: &HostPolicy,
    ) -> Result<LoadedApp> {
        let Self {
            manifest_path,
            manifest,
            components: read,
            sha256,
        } = self;
        let routes = Routes::new(&manifest.routes)?;
        let values = variables::resolve(&manifest.variables, &policy.spin_variables)?;
        let mut compiled: HashMap<PathBuf, Arc<LoadedProxy>> = HashMap::new();
        let mut components = Vec::with_capacity(read.len());
        for (spec, (bytes, files)) in manifest.components.iter().zip(read) {
            let loaded = match compiled.get(&spec.source) {
                Some(loaded) => loaded.clone(),
                None => {
                    let loaded = component::load_proxy(engine, linker, bytes, policy.imports)
                        .map_err(anyhow::Error::from)
                        .with_context(|| format!("component `{}`", spec.id))?;
                    let loaded = Arc::new(loaded);
                    compiled.insert(spec.source.clone(), loaded.clone());
                    loaded
                }
            };
            let recipe = spin_recipe(spec, files, &values, policy)
                .with_context(|| format!("`{}`", manifest_path.display()))?;
            components.push(app_component(
                spec.id.clone(),
                &loaded,
                recipe,
                engine,
                policy,
            ));
        }
        log_routes(&manifest, &components);
        Ok(LoadedApp {
            app: App {
                components,
                routes: Some(routes),
                component_files: manifest
                    .components
                    .into_iter()
                    .map(|spec| spec.source)
                    .collect(),
                single: None,
            },
            origin: manifest_path.display().to_string(),
            digest: VersionDigest::Known(sha256),
        })
    }
}

/// What one component of a Spin application's instances get: the operator's
/// environment over the manifest's, its variables filled in, an outbound pool of its
/// own under its `allowed_outbound_hosts`, and the stores its `key_value_stores` list.
fn spin_recipe(
    spec: &ComponentSpec,
    files: Option<StagedFiles>,
    values: &BTreeMap<String, String>,
    policy: &HostPolicy,
) -> Result<InstanceRecipe> {
    let outbound = OutboundConfig {
        allow: spec.allowed_outbound.clone(),
        ..policy.outbound.clone()
    };
    tracing::info!("component `{}`: outbound {outbound}", spec.id);
    let key_value = policy
        .key_value
        .grant(spec.key_value_stores.iter().map(String::as_str))
        .with_context(|| format!("component `{}`", spec.id))?;
    Ok(InstanceRecipe {
        env: policy.guest_env.over(&spec.environment),
        files: files.map(|files| files.folder()),
        outbound: Arc::new(Outbound::new(&outbound)?),
        variables: Variables::new(variables::render(&spec.variables, values)),
        key_value,
        limits: policy.instance.clone(),
    })
}

/// Logs the application's routes, one line for all.
fn log_routes(manifest: &AppManifest, components: &[AppComponent]) {
    let routes: Vec<String> = manifest
        .routes
        .iter()
        .map(|route| format!("{} -> {}", route.route, components[route.component].id))
        .collect();
    tracing::info!("application `{}`: {}", manifest.name, routes.join(", "));
}

impl App {
    /// The index of the component that serves `request`, or `None` when no route
    /// matches its path. A request routed through a Spin application gets the headers
    /// Spin adds, and loses every `spin-*` header its client sent, so a component can
    /// trust them.
    pub fn route<B>(&self, request: &mut Request<B>) -> Option<usize> {
        let Some(routes) = &self.routes else {
            return Some(0);
        };
        let found = routes.find(request.uri().path())?;
        let host = request
            .uri()
            .authority()
            .map(|authority| authority.as_str())
            .or_else(|| request.headers().get(header::HOST)?.to_str().ok())
            .unwrap_or_default();
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |path| path.as_str());
        let spin_headers = found.spin_headers(&format!("http://{host}{path}"));
        let forged: Vec<HeaderName> = request
            .headers()
            .keys()
            .filter(|name| name.as_str().starts_with("spin-"))
            .cloned()
            .collect();
        let headers = request.headers_mut();
        for name in forged {
            headers.remove(name);
        }
        headers.extend(spin_headers);
        Some(found.component)
    }

    /// A single component's compiled code, serialized for the other workers to load
    /// as it is (`--workers`); `None` for a Spin application, which each worker reads
    /// from its manifest.
    pub fn artifact(&self) -> Result<Option<Bytes>> {
        self.single
            .as_ref()
            .map(|compiled| {
                let artifact = compiled
                    .serialize()
                    .map_err(anyhow::Error::from)
                    .context("cannot serialize the component")?;
                Ok(Bytes::from(artifact))
            })
            .transpose()
    }

    /// Every component, in the manifest's order.
    pub fn components(&self) -> &[AppComponent] {
        &self.components
    }

    /// The component at `index`, as [`App::route`] returned it.
    pub fn component(&self, index: usize) -> &AppComponent {
        &self.components[index]
    }

    /// The files this version was read from, `source`'s first: what `--watch` watches.
    pub fn source_files(&self, source: &AppSource) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = source.file().map(Path::to_path_buf).into_iter().collect();
        files.extend(self.component_files.iter().cloned());
        files
    }
}
