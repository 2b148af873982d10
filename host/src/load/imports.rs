//! Imports the host does not implement. A component built by Spin's SDKs imports the
//! whole Spin platform (SQLite, Redis, MQTT, ... and WASI's release
//! candidates) whether or not it calls them. Those load: each function becomes a stub
//! that, when called, logs once what the guest asked for and answers with the
//! interface's own error result where it has one (a variant case carrying a message),
//! or traps naming the import. With `--strict-imports` the component is refused at load
//! instead. Imports from any other package are left for linking to refuse.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};
use wasmtime::Engine;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, Linker, ResourceType, Type, Val};

use crate::sandbox::store::InstanceState;
use crate::sandbox::variables::CONFIG_STORE_VERSIONS;

/// WASI packages the host's linker provides, at any 0.2 or 0.3 release.
const WASI_PROVIDED: [&str; 7] = [
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:http/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
];

/// Interfaces the host implements beyond WASI (see `sandbox::variables` and
/// `sandbox::keyvalue`).
const HOST_PROVIDED: [&str; 12] = [
    "spin:variables/variables@3.0.0",
    "fermyon:spin/variables@2.0.0",
    CONFIG_STORE_VERSIONS[0],
    CONFIG_STORE_VERSIONS[1],
    "spin:key-value/key-value@3.0.0",
    "fermyon:spin/key-value@2.0.0",
    "wasi:keyvalue/store@0.2.0-draft2",
    "wasi:keyvalue/atomics@0.2.0-draft2",
    "wasi:keyvalue/batch@0.2.0-draft2",
    "wasi:keyvalue/store@0.2.0-draft",
    "wasi:keyvalue/atomics@0.2.0-draft",
    "wasi:keyvalue/batch@0.2.0-draft",
];

/// Packages whose unimplemented interfaces are stubbed rather than refused.
const PLATFORMS: [&str; 3] = ["wasi:", "spin:", "fermyon:"];

/// What to do with imports of the platforms the host does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnimplementedImports {
    /// Link them as stubs that fail when called.
    Stub,
    /// Refuse the component (`--strict-imports`).
    Refuse,
}

/// The imports of `component` the host does not implement, as `NAME@VERSION`.
pub fn unimplemented(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| !is_provided(name) && PLATFORMS.iter().any(|p| name.starts_with(p)))
        .map(str::to_owned)
        .collect()
}

/// Whether the host's linker has `import`.
fn is_provided(import: &str) -> bool {
    if HOST_PROVIDED.contains(&import) {
        return true;
    }
    let Some((interface, version)) = import.split_once('@') else {
        return false;
    };
    let release = !version.contains('-');
    let wasi = WASI_PROVIDED
        .iter()
        .any(|package| interface.starts_with(package));
    // wasi:io is part of 0.2 only: 0.3 has streams and futures built in.
    let versioned = version.starts_with("0.2.")
        || (version.starts_with("0.3.") && !interface.starts_with("wasi:io/"));
    wasi && release && versioned
}

/// Adds a stub for each import of `component` the host does not implement to `linker`,
/// or refuses the component, as `policy` says. Returns the stubbed imports.
pub fn link_unimplemented(
    linker: &mut Linker<InstanceState>,
    engine: &Engine,
    component: &Component,
    origin: &str,
    policy: UnimplementedImports,
) -> Result<Vec<String>> {
    let missing = unimplemented(engine, component);
    if missing.is_empty() {
        return Ok(missing);
    }
    if policy == UnimplementedImports::Refuse {
        bail!(
            "`{origin}` imports what this host does not implement: {} (without \
             --strict-imports these load, and a call to one fails)",
            missing.join(", ")
        );
    }
    for (name, import) in component.component_type().imports(engine) {
        if !missing.iter().any(|stubbed| stubbed == name) {
            continue;
        }
        let ComponentItem::ComponentInstance(interface) = import.ty else {
            bail!("`{origin}` imports `{name}`, which is not an interface");
        };
        let mut stubs = linker.instance(name)?;
        for (item, export) in interface.exports(engine) {
            let stub = Arc::new(Stub::new(name, item));
            match export.ty {
                ComponentItem::ComponentFunc(func) if func.async_() => {
                    stubs.func_new_concurrent(item, move |_, ty, _, results| {
                        let answer = stub.answer(&ty, results);
                        Box::pin(async move { answer })
                    })?
                }
                ComponentItem::ComponentFunc(_) => {
                    stubs.func_new(item, move |_, ty, _, results| stub.answer(&ty, results))?
                }
                ComponentItem::Resource(_) => {
                    stubs.resource(item, ResourceType::host::<Stub>(), |_, _| Ok(()))?
                }
                _ => {}
            }
        }
    }
    Ok(missing)
}

/// One function of an interface the host does not implement.
struct Stub {
    function: String,
    /// Set once the call has been logged: a guest calling in a loop logs it once.
    logged: AtomicBool,
}

impl Stub {
    fn new(interface: &str, function: &str) -> Self {
        Self {
            function: format!("{interface}#{function}"),
            logged: AtomicBool::new(false),
        }
    }

    /// The interface's own error result, in `results`, or a trap naming the import.
    fn answer(&self, ty: &ComponentFunc, results: &mut [Val]) -> wasmtime::Result<()> {
        let message = format!("`{}` is not implemented by this host", self.function);
        if !self.logged.swap(true, Ordering::Relaxed) {
            tracing::warn!("a guest called {message}; it gets an error");
        }
        match (error_result(ty, &message), results) {
            (Some(error), [result]) => {
                *result = error;
                Ok(())
            }
            _ => wasmtime::bail!("{message}"),
        }
    }
}

/// `result<_, E>`'s `Err` for a function whose one result is that, where `E` is a
/// variant with a case carrying a string: the message in the first such case.
fn error_result(ty: &ComponentFunc, message: &str) -> Option<Val> {
    let mut results = ty.results();
    let (Some(Type::Result(result)), None) = (results.next(), results.next()) else {
        return None;
    };
    let Some(Type::Variant(variant)) = result.err() else {
        return None;
    };
    let case = variant
        .cases()
        .find(|case| matches!(case.ty, Some(Type::String)))?;
    let error = Val::Variant(
        case.name.to_owned(),
        Some(Box::new(Val::String(message.to_owned()))),
    );
    Some(Val::Result(Err(Some(Box::new(error)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_host_provides() {
        for provided in [
            "wasi:http/incoming-handler@0.2.0",
            "wasi:cli/stdout@0.2.9",
            "wasi:http/handler@0.3.0",
            "wasi:clocks/monotonic-clock@0.3.0",
            "spin:variables/variables@3.0.0",
            "wasi:config/store@0.2.0-draft-2024-09-27",
            "wasi:config/store@0.2.0-rc.1",
            "wasi:keyvalue/atomics@0.2.0-draft2",
            "wasi:keyvalue/batch@0.2.0-draft",
            "spin:key-value/key-value@3.0.0",
            "fermyon:spin/key-value@2.0.0",
        ] {
            assert!(is_provided(provided), "{provided}");
        }
        for missing in [
            "wasi:http/types@0.3.0-rc-2026-03-15",
            "wasi:io/streams@0.3.0",
            "wasi:keyvalue/watcher@0.2.0-draft",
            "spin:sqlite/sqlite@3.0.0",
            "fermyon:spin/sqlite@2.0.0",
            "wasi:config/store@0.3.0",
            "acme:widgets/api@1.0.0",
        ] {
            assert!(!is_provided(missing), "{missing}");
        }
    }
}
