//! The host's key-value stores, made once at startup from the command line and Spin's
//! runtime config file, with the Redis password read from its secret file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use super::source::AppSource;
use super::spin::runtime_config;
use crate::observe::metrics::Metrics;
use crate::sandbox::keyvalue::{DEFAULT_FILE, KeyValueStores, RedisSettings, StoreSpec};

/// The folder `spin up` keeps an application's local data in, beside its manifest.
const LOCAL_FOLDER: &str = ".spin";

/// Where the stores are, as configured.
#[derive(Clone)]
pub struct KeyValueConfig {
    /// The `--kv-store` stores.
    pub stores: Vec<StoreSpec>,
    pub runtime_config_file: Option<PathBuf>,
    /// The `default` store's file, if not the one beside the application.
    pub local_file: Option<PathBuf>,
    /// The Redis AUTH password given in the environment.
    pub redis_password: Option<String>,
    /// The file holding it, a mounted secret.
    pub redis_password_file: Option<PathBuf>,
    /// The CA certificates (PEM) that Redis servers over TLS are verified against.
    pub redis_ca_file: Option<PathBuf>,
    /// A Redis store's deadline to connect and to answer one command.
    pub timeout: Duration,
}

// The password stays out of debug output.
impl std::fmt::Debug for KeyValueConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValueConfig")
            .field("stores", &self.stores)
            .field("runtime_config_file", &self.runtime_config_file)
            .field("local_file", &self.local_file)
            .field("redis_password_file", &self.redis_password_file)
            .field("redis_ca_file", &self.redis_ca_file)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl KeyValueConfig {
    /// The stores, for an application read from `source`; nothing is connected yet.
    pub fn open(&self, source: &AppSource, metrics: &Arc<Metrics>) -> Result<KeyValueStores> {
        let mut specs = self.stores.clone();
        if let Some(file) = &self.runtime_config_file {
            specs.extend(runtime_config::read(file)?);
        }
        let redis = RedisSettings {
            timeout: self.timeout,
            password: self.redis_password()?,
            ca: self.redis_ca()?,
        };
        let default_file = self.local_file.clone().unwrap_or_else(|| {
            let folder = source
                .file()
                .and_then(Path::parent)
                .unwrap_or(Path::new("."));
            folder.join(LOCAL_FOLDER).join(DEFAULT_FILE)
        });
        KeyValueStores::new(&specs, default_file, &redis, metrics)
    }

    fn redis_ca(&self) -> Result<Option<Vec<u8>>> {
        let Some(file) = &self.redis_ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(file)
            .with_context(|| format!("cannot read the Redis CA file `{}`", file.display()))?;
        Ok(Some(pem))
    }

    fn redis_password(&self) -> Result<Option<String>> {
        let Some(file) = &self.redis_password_file else {
            return Ok(self.redis_password.clone());
        };
        ensure!(
            self.redis_password.is_none(),
            "give the Redis password in the environment or in --kv-redis-password-file, not both"
        );
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the Redis password file `{}`", file.display()))?;
        Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()))
    }
}
