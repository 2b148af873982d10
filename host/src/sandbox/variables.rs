//! The values a component reads by name through Spin's variables interfaces
//! (`spin:variables/variables@3.0.0`, `fermyon:spin/variables@2.0.0`) and through
//! `wasi:config/store`, in both versions guests import: the draft Spin's SDKs import
//! and the release candidate wasmtime's own implementation (`wasmtime-wasi-config`)
//! provides. They are resolved when the version loads (a Spin manifest's variables, or
//! a plain component's config values), so a guest reads a fixed map and never the
//! host's environment.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{ComponentType, Lift, Linker, Lower};
use wasmtime::{Result, StoreContextMut};

/// A component's variables, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables(Arc<BTreeMap<String, String>>);

/// The error of Spin's variables interfaces (both versions have this variant).
#[derive(Debug, Clone, PartialEq, Eq, ComponentType, Lift, Lower)]
#[component(variant)]
pub enum VariableError {
    #[component(name = "invalid-name")]
    InvalidName(String),
    #[component(name = "undefined")]
    Undefined(String),
    #[component(name = "provider")]
    Provider(String),
    #[component(name = "other")]
    Other(String),
}

/// The versions of `wasi:config/store` the host provides; their functions and error
/// type are the same.
pub const CONFIG_STORE_VERSIONS: [&str; 2] = [
    "wasi:config/store@0.2.0-draft-2024-09-27",
    "wasi:config/store@0.2.0-rc.1",
];

/// The error of `wasi:config/store`; never returned: the values are in memory.
#[derive(Debug, Clone, PartialEq, Eq, ComponentType, Lift, Lower)]
#[component(variant)]
pub enum ConfigError {
    #[component(name = "upstream")]
    Upstream(String),
    #[component(name = "io")]
    Io(String),
}

impl Variables {
    pub fn new(values: BTreeMap<String, String>) -> Self {
        Self(Arc::new(values))
    }

    /// The value of `name`, by Spin's rules: a name is lower-case letters, digits and
    /// `_`, starting with a letter.
    pub fn get(&self, name: &str) -> Result<String, VariableError> {
        if !is_valid_name(name) {
            return Err(VariableError::InvalidName(format!(
                "`{name}` is not a variable name: lower-case letters, digits and `_`, \
                 starting with a letter"
            )));
        }
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| VariableError::Undefined(format!("no variable `{name}`")))
    }

    fn all(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }
}

/// Whether `name` is a Spin variable name.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Store data that holds an instance's variables.
pub trait WithVariables: Send + 'static {
    fn variables(&self) -> &Variables;
}

/// Defines the three interfaces in `linker`, reading each instance's variables.
pub fn add_to_linker<T: WithVariables>(linker: &mut Linker<T>) -> Result<()> {
    linker
        .instance("spin:variables/variables@3.0.0")?
        .func_wrap_concurrent("get", |accessor, (name,): (String,)| {
            Box::pin(async move {
                let value = accessor.with(|mut store| store.get().variables().get(&name));
                Ok((value,))
            })
        })?;
    linker.instance("fermyon:spin/variables@2.0.0")?.func_wrap(
        "get",
        |store: StoreContextMut<'_, T>, (name,): (String,)| {
            Ok((store.data().variables().get(&name),))
        },
    )?;
    for interface in CONFIG_STORE_VERSIONS {
        let mut config = linker.instance(interface)?;
        // An unknown key is `none`, never an error.
        config.func_wrap("get", |store: StoreContextMut<'_, T>, (key,): (String,)| {
            let value = store.data().variables().0.get(&key).cloned();
            Ok((Ok::<_, ConfigError>(value),))
        })?;
        config.func_wrap("get-all", |store: StoreContextMut<'_, T>, (): ()| {
            Ok((Ok::<_, ConfigError>(store.data().variables().all()),))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_spins_rules() {
        let variables = Variables::new(BTreeMap::from([("api_key".into(), "s3cret".into())]));
        assert_eq!(variables.get("api_key"), Ok("s3cret".into()));
        assert!(matches!(
            variables.get("other"),
            Err(VariableError::Undefined(_))
        ));
        for bad in ["API_KEY", "1key", "", "key-name"] {
            assert!(
                matches!(variables.get(bad), Err(VariableError::InvalidName(_))),
                "{bad}"
            );
        }
    }
}
