//! What requests are served with: one component, or a Spin application's components
//! behind its routes. Each component carries what its requests run with: its
//! environment, its outbound rules (with a connection pool of its own, so a connection
//! one component was allowed to open is never lent to another) and its files.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use http::{HeaderName, Request, header};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::app_files::StagedFiles;
use crate::engine::{self, ComponentBytes};
use crate::guest_env::GuestEnv;
use crate::outbound::{Outbound, OutboundConfig};
use crate::registry::{self, ComponentReference};
use crate::routes::Routes;
use crate::spin_manifest::{self, AppManifest};
use crate::state::RequestState;

/// Where the served code comes from, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppSource {
    /// A component file (`.wasm` or `.cwasm`), served for every path.
    Component(PathBuf),
    /// A Spin manifest (`spin.toml`), its components served on its routes.
    Manifest(PathBuf),
    /// A component in an OCI registry, served for every path.
    Registry(ComponentReference),
}

impl AppSource {
    /// The source `path` names: a manifest for a `.toml` file or a folder (its
    /// `spin.toml`), a component otherwise.
    pub fn from_path(path: &Path) -> Self {
        if spin_manifest::is_manifest_path(path) {
            Self::Manifest(spin_manifest::manifest_file(path))
        } else {
            Self::Component(path.to_path_buf())
        }
    }

    /// The file the source is read from, unless it is a registry reference.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::Component(path) | Self::Manifest(path) => Some(path),
            Self::Registry(_) => None,
        }
    }
}

impl FromStr for AppSource {
    type Err = anyhow::Error;

    /// A registry reference if it starts with `oci://`, a path otherwise.
    fn from_str(source: &str) -> Result<Self> {
        if source.starts_with(registry::SCHEME) {
            source.parse().map(Self::Registry)
        } else {
            Ok(Self::from_path(Path::new(source)))
        }
    }
}

impl fmt::Display for AppSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Component(path) | Self::Manifest(path) => path.display().fmt(f),
            Self::Registry(reference) => reference.fmt(f),
        }
    }
}

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
    pub proxy: ProxyPre<RequestState>,
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
        let (manifest, text) = spin_manifest::read(&manifest_path)?;
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
        linker: &Linker<RequestState>,
        policy: &HostPolicy,
    ) -> Result<LoadedApp> {
        let spin = match self {
            Self::Component(bytes) => {
                let loaded = engine::load_proxy(engine, linker, bytes)?;
                let origin = loaded.bytes.origin().to_owned();
                let component = AppComponent {
                    id: origin.clone(),
                    proxy: loaded.proxy,
                    env: policy.guest_env.clone(),
                    outbound: policy.shared_outbound.clone(),
                    files: None,
                };
                return Ok(LoadedApp {
                    app: App {
                        components: vec![component],
                        routes: None,
                        component_files: Vec::new(),
                    },
                    origin,
                    digest: VersionDigest::Of(loaded.bytes),
                });
            }
            Self::Spin(spin) => *spin,
        };
        let SpinBytes {
            manifest_path,
            manifest,
            components: read,
            sha256,
        } = spin;
        let routes = Routes::new(&manifest.routes)?;
        // Components built from the same file are compiled once.
        let mut compiled: HashMap<PathBuf, ProxyPre<RequestState>> = HashMap::new();
        let mut components = Vec::with_capacity(read.len());
        for (spec, (bytes, files)) in manifest.components.iter().zip(read) {
            let proxy = match compiled.get(&spec.source) {
                Some(proxy) => proxy.clone(),
                None => {
                    let loaded = engine::load_proxy(engine, linker, bytes)
                        .map_err(anyhow::Error::from)
                        .with_context(|| format!("component `{}`", spec.id))?;
                    compiled.insert(spec.source.clone(), loaded.proxy.clone());
                    loaded.proxy
                }
            };
            let outbound = OutboundConfig {
                allow: spec.allowed_outbound.clone(),
                ..policy.outbound.clone()
            };
            tracing::info!("component `{}`: outbound {outbound}", spec.id);
            components.push(AppComponent {
                id: spec.id.clone(),
                proxy,
                env: policy.guest_env.over(&spec.environment),
                outbound: Arc::new(Outbound::new(&outbound)),
                files,
            });
        }
        let routes_shown: Vec<String> = manifest
            .routes
            .iter()
            .map(|route| format!("{} -> {}", route.route, components[route.component].id))
            .collect();
        tracing::info!(
            "application `{}`: {}",
            manifest.name,
            routes_shown.join(", ")
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_components_manifests_or_references() {
        assert_eq!(
            "app.wasm".parse::<AppSource>().unwrap(),
            AppSource::Component("app.wasm".into())
        );
        assert_eq!(
            "app/spin.toml".parse::<AppSource>().unwrap(),
            AppSource::Manifest("app/spin.toml".into())
        );
        assert!(matches!(
            "oci://ghcr.io/org/hello:v1".parse::<AppSource>().unwrap(),
            AppSource::Registry(_)
        ));
        assert!("oci://nothing".parse::<AppSource>().is_err());
    }
}
