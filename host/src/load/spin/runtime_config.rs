//! Spin's runtime config file (`spin up --runtime-config-file`): the key-value stores
//! it defines, `[key_value_store.NAME]` with `type = "redis"` and a `url`, or
//! `type = "spin"` (a local SQLite file) and an optional `path`, relative to the file.
//! Anything else in it is refused by name rather than ignored.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::sandbox::keyvalue::{BackendSpec, StoreSpec};

#[derive(Debug, Deserialize)]
struct RuntimeConfig {
    #[serde(default)]
    key_value_store: BTreeMap<String, StoreTable>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum StoreTable {
    Redis { url: String },
    Spin { path: Option<String> },
}

/// Reads the stores the file at `path` defines.
pub fn read(path: &Path) -> Result<Vec<StoreSpec>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the runtime config file `{}`", path.display()))?;
    parse(&text, path.parent().unwrap_or(Path::new(".")))
        .with_context(|| format!("runtime config file `{}`", path.display()))
}

/// The stores `text` defines, local paths resolved from `folder`.
fn parse(text: &str, folder: &Path) -> Result<Vec<StoreSpec>> {
    let config: RuntimeConfig = toml::from_str(text)?;
    if let Some(section) = config.other.keys().next() {
        bail!(
            "`[{section}]` is not supported: this host reads the key-value stores \
             (`[key_value_store.NAME]`) of a runtime config file only"
        );
    }
    Ok(config
        .key_value_store
        .into_iter()
        .map(|(name, table)| {
            let backend = match table {
                StoreTable::Redis { url } => BackendSpec::Redis { url },
                StoreTable::Spin { path } => BackendSpec::Local {
                    path: path.map(|path| folder.join(path)),
                },
            };
            StoreSpec { name, backend }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redis_and_local_stores() {
        let text = r#"
            [key_value_store.default]
            type = "redis"
            url = "redis://10.0.0.3:6379"

            [key_value_store.cache]
            type = "spin"
            path = "data/cache.db"

            [key_value_store.scratch]
            type = "spin"
        "#;
        let stores = parse(text, Path::new("/app")).unwrap();
        assert_eq!(
            stores,
            [
                StoreSpec {
                    name: "cache".into(),
                    backend: BackendSpec::Local {
                        path: Some("/app/data/cache.db".into())
                    }
                },
                StoreSpec {
                    name: "default".into(),
                    backend: BackendSpec::Redis {
                        url: "redis://10.0.0.3:6379".into()
                    }
                },
                StoreSpec {
                    name: "scratch".into(),
                    backend: BackendSpec::Local { path: None }
                },
            ]
        );
    }

    #[test]
    fn refuses_what_it_cannot_honour_by_name() {
        for (text, named) in [
            (
                "[key_value_store.a]\ntype = \"azure_cosmos\"",
                "azure_cosmos",
            ),
            ("[key_value_store.a]\ntype = \"redis\"", "url"),
            (
                "[key_value_store.a]\ntype = \"spin\"\npath = \"a.db\"\nttl = 3",
                "ttl",
            ),
            (
                "[sqlite_database.default]\ntype = \"spin\"",
                "sqlite_database",
            ),
        ] {
            let error = format!("{:#}", parse(text, Path::new(".")).unwrap_err());
            assert!(error.contains(named), "{named}: {error}");
        }
    }
}
