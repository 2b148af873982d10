//! The named stores of a host, made once at startup and shared by every instance and
//! version, and what one component may open of them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use super::backend::Backend;
use super::local::LocalStore;
use super::redis::{RedisSettings, RedisStore, redacted};
use crate::observe::metrics::Metrics;

/// The store every Spin application may list without configuring it, as in Spin; a
/// single component may open it too.
pub const DEFAULT_STORE: &str = "default";

/// Where a named store keeps its data, as configured.
#[derive(Clone, PartialEq, Eq)]
pub enum BackendSpec {
    /// A Redis database: `redis://` or `rediss://` (TLS).
    Redis { url: String },
    /// A SQLite file on this instance's disk; `None`: the default file.
    Local { path: Option<PathBuf> },
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redis { url } => write!(f, "Redis at {}", redacted(url)),
            Self::Local { path: Some(path) } => write!(f, "local file `{}`", path.display()),
            Self::Local { path: None } => f.write_str("the default local file"),
        }
    }
}

// A URL's password stays out of debug output.
impl fmt::Debug for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A store's name and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    pub name: String,
    pub backend: BackendSpec,
}

/// A store guests reach by name.
pub struct NamedStore {
    pub name: String,
    pub backend: Box<dyn Backend>,
    pub metrics: Arc<Metrics>,
}

/// Every store of the host, by name.
#[derive(Default)]
pub struct KeyValueStores(BTreeMap<String, Arc<NamedStore>>);

impl KeyValueStores {
    /// The stores `specs` name, and [`DEFAULT_STORE`] in `default_file` unless one of
    /// them is it. Nothing is connected or opened yet; each store says in the log where
    /// it keeps its data.
    pub fn new(
        specs: &[StoreSpec],
        default_file: PathBuf,
        redis: &RedisSettings,
        metrics: &Arc<Metrics>,
    ) -> Result<Self> {
        let default = StoreSpec {
            name: DEFAULT_STORE.to_owned(),
            backend: BackendSpec::Local { path: None },
        };
        let defaulted = (!specs.iter().any(|spec| spec.name == DEFAULT_STORE)).then_some(&default);
        let mut stores = BTreeMap::new();
        for spec in specs.iter().chain(defaulted) {
            let backend: Box<dyn Backend> = match &spec.backend {
                BackendSpec::Redis { url } => Box::new(
                    RedisStore::new(url, redis)
                        .with_context(|| format!("key-value store `{}`", spec.name))?,
                ),
                BackendSpec::Local { path } => {
                    let path = path.clone().unwrap_or_else(|| default_file.clone());
                    tracing::info!(
                        "key-value store `{}`: local to this instance, in `{}`; other instances \
                         of the service do not see its data",
                        spec.name,
                        path.display()
                    );
                    Box::new(LocalStore::new(path, &spec.name))
                }
            };
            if let BackendSpec::Redis { .. } = spec.backend {
                tracing::info!("key-value store `{}`: {}", spec.name, spec.backend);
            }
            let store = NamedStore {
                name: spec.name.clone(),
                backend,
                metrics: metrics.clone(),
            };
            if stores.insert(spec.name.clone(), Arc::new(store)).is_some() {
                bail!("key-value store `{}` is configured twice", spec.name);
            }
        }
        Ok(Self(stores))
    }

    /// What a component listing `names` may open; every name must be a store.
    pub fn grant<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<StoreGrant> {
        let mut granted = BTreeMap::new();
        for name in names {
            let store = self.0.get(name).with_context(|| {
                format!(
                    "key-value store `{name}` is not configured (configured: {}); define it \
                     in the runtime config file or with --kv-store",
                    self.names().join(", ")
                )
            })?;
            granted.insert(name.to_owned(), store.clone());
        }
        Ok(StoreGrant(Arc::new(granted)))
    }

    /// What a single component may open: every store.
    pub fn grant_all(&self) -> StoreGrant {
        StoreGrant(Arc::new(self.0.clone()))
    }

    fn names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The stores one component may open, by name.
#[derive(Clone, Default)]
pub struct StoreGrant(Arc<BTreeMap<String, Arc<NamedStore>>>);

impl StoreGrant {
    pub fn get(&self, name: &str) -> Option<&Arc<NamedStore>> {
        self.0.get(name)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn local(name: &str, path: &str) -> StoreSpec {
        StoreSpec {
            name: name.into(),
            backend: BackendSpec::Local {
                path: Some(path.into()),
            },
        }
    }

    fn configured(specs: &[StoreSpec]) -> Result<KeyValueStores> {
        let redis = RedisSettings {
            timeout: Duration::from_secs(1),
            password: None,
            ca: None,
        };
        KeyValueStores::new(
            specs,
            "default.db".into(),
            &redis,
            &Arc::new(Metrics::new()),
        )
    }

    #[test]
    fn a_component_gets_the_stores_it_lists_and_no_other() {
        let stores = configured(&[local("cache", "cache.db")]).unwrap();
        let grant = stores.grant(["default"]).unwrap();
        assert!(grant.get("default").is_some() && grant.get("cache").is_none());
        assert!(stores.grant_all().get("cache").is_some());
        let error = format!("{:#}", stores.grant(["sessions"]).err().unwrap());
        assert!(
            error.contains("`sessions` is not configured (configured: cache, default)"),
            "{error}"
        );
        let twice = configured(&[local("cache", "a.db"), local("cache", "b.db")]);
        assert!(format!("{:#}", twice.err().unwrap()).contains("configured twice"));
    }

    #[test]
    fn a_password_stays_out_of_debug_output() {
        let spec = StoreSpec {
            name: "default".into(),
            backend: BackendSpec::Redis {
                url: "rediss://:s3cret@10.0.0.3:6378".into(),
            },
        };
        let shown = format!("{spec:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("10.0.0.3"),
            "{shown}"
        );
    }
}
