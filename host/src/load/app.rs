//! What requests are served with: one component, or a Spin application's components
//! behind its routes. Each component carries what its requests run with: its
//! environment, its outbound rules (with a connection pool of its own, so a connection
//! one component was allowed to open is never lent to another) and its files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{HeaderName, Request, header};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::component::{self, ComponentBytes};
use super::registry::Resolved;
use super::source::AppSource;
use super::spin::files::StagedFiles;
use super::spin::manifest::{self, AppManifest, ComponentSpec};
use super::spin::routes::Routes;
use crate::sandbox::env::GuestEnv;
use crate::sandbox::outbound::{Outbound, OutboundConfig};
use crate::sandbox::store::InstanceState;

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
}

/// One version's code, ready to serve.
pub struct App {
    components: Vec<AppComponent>,
    /// `None` for a single component, which serves every path.
    routes: Option<Routes>,
    /// The component files a Spin application's manifest names.
    component_files: Vec<PathBuf>,
}

/// One component and what its requests run with.
pub struct AppComponent {
    /// Its id in the manifest; the file name for a single component.
    pub id: String,
    /// The pre-instantiated component.
    pub proxy: ProxyPre<InstanceState>,
    /// Its guests' environment.
    pub env: GuestEnv,
    /// What its guests may reach.
    pub outbound: Arc<Outbound>,
    /// The files its guests see, if any.
    pub files: Option<StagedFiles>,
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

/// A single component, served for every path with the host's environment and the
/// outbound pool shared across versions.
fn load_single(
    bytes: ComponentBytes,
    engine: &Engine,
    linker: &Linker<InstanceState>,
    policy: &HostPolicy,
) -> Result<LoadedApp> {
    let loaded = component::load_proxy(engine, linker, bytes)?;
    let origin = loaded.bytes.origin().to_owned();
    let component = AppComponent {
        id: origin.clone(),
        proxy: loaded.proxy,
        env: policy.guest_env.clone(),
        outbound: policy.shared_outbound.clone(),
        files: None,
    };
    Ok(LoadedApp {
        app: App {
            components: vec![component],
            routes: None,
            component_files: Vec::new(),
        },
        origin,
        digest: VersionDigest::Of(loaded.bytes),
    })
}

impl SpinBytes {
    /// Every component of the application, each file compiled once, with its own
    /// environment, outbound rules and files, behind the manifest's routes.
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
        let mut compiled: HashMap<PathBuf, ProxyPre<InstanceState>> = HashMap::new();
        let mut components = Vec::with_capacity(read.len());
        for (spec, (bytes, files)) in manifest.components.iter().zip(read) {
            let proxy = match compiled.get(&spec.source) {
                Some(proxy) => proxy.clone(),
                None => {
                    let loaded = component::load_proxy(engine, linker, bytes)
                        .map_err(anyhow::Error::from)
                        .with_context(|| format!("component `{}`", spec.id))?;
                    compiled.insert(spec.source.clone(), loaded.proxy.clone());
                    loaded.proxy
                }
            };
            components.push(spin_component(spec, proxy, files, policy));
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
            },
            origin: manifest_path.display().to_string(),
            digest: VersionDigest::Known(sha256),
        })
    }
}

/// One component of a Spin application: the operator's environment over the
/// manifest's, and an outbound pool of its own under its `allowed_outbound_hosts`.
fn spin_component(
    spec: &ComponentSpec,
    proxy: ProxyPre<InstanceState>,
    files: Option<StagedFiles>,
    policy: &HostPolicy,
) -> AppComponent {
    let outbound = OutboundConfig {
        allow: spec.allowed_outbound.clone(),
        ..policy.outbound.clone()
    };
    tracing::info!("component `{}`: outbound {outbound}", spec.id);
    AppComponent {
        id: spec.id.clone(),
        proxy,
        env: policy.guest_env.over(&spec.environment),
        outbound: Arc::new(Outbound::new(&outbound)),
        files,
    }
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
