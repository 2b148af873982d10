//! The wasmtime side of loading: one `Engine` per process, one `Linker` with everything
//! the host offers a guest, and the checks that turn a file into a ready-to-instantiate
//! `ProxyPre`, or into one clear error that names the file and the problem.
//!
//! Errors here are `wasmtime::Error`, which keeps wasmtime's own context chain; callers
//! turn them into `anyhow::Error` with `?`.

use std::path::Path;

use wasmtime::component::{Component, Linker};
use wasmtime::error::Context as _;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Result, bail};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::limits::InstanceLimits;
use crate::state::RequestState;

/// The export that makes a component a `wasi:http/proxy` handler.
const INCOMING_HANDLER: &str = "wasi:http/incoming-handler";

/// Builds the engine, with the pooling allocator sized from `limits` when the machine
/// lets us reserve its address space, and on-demand allocation otherwise.
pub fn build_engine(limits: &InstanceLimits) -> Result<Engine> {
    let mut config = base_config(limits);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(limits)));
    match Engine::new(&config) {
        Ok(engine) => {
            tracing::debug!(slots = limits.pool_slots(), "pooling allocator ready");
            Ok(engine)
        }
        // Sandboxes with a small virtual address space (gVisor, tight `ulimit -v`) refuse
        // the pool's reservation; per-instance allocation is slower but works everywhere.
        Err(error) => {
            tracing::warn!(
                "pooling allocator unavailable ({error:#}); falling back to on-demand allocation"
            );
            let mut config = base_config(limits);
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Engine::new(&config).context("failed to create the wasmtime engine")
        }
    }
}

fn base_config(limits: &InstanceLimits) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Deadlines interrupt guests through the epoch counter: one shared ticker thread,
    // not a timer per request.
    config.epoch_interruption(true);
    // Linear memories are reserved at their cap, so they never move and the reservation
    // stays small enough for many concurrent instances.
    config.memory_reservation(limits.max_memory as u64);
    config.memory_reservation_for_growth(0);
    config
}

fn pooling_config(limits: &InstanceLimits) -> PoolingAllocationConfig {
    let slots = limits.pool_slots();
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots * limits.core_instances_per_component)
        .total_memories(slots * limits.memories_per_component)
        .total_tables(slots * limits.tables_per_component)
        .total_stacks(slots)
        .max_core_instances_per_component(limits.core_instances_per_component)
        .max_memories_per_component(limits.memories_per_component)
        .max_tables_per_component(limits.tables_per_component)
        .max_memory_size(limits.max_memory)
        .table_elements(limits.max_table_elements);
    pool
}

/// Adds every interface the host offers: all of WASI 0.2 (toolchain-built guests import
/// `wasi:cli/*` besides the proxy world) and `wasi:http`. Files and sockets are linked
/// but the per-request context grants none.
pub fn build_linker(engine: &Engine) -> Result<Linker<RequestState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).context("failed to link WASI")?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .context("failed to link wasi:http")?;
    Ok(linker)
}

/// Reads, compiles, links and pre-instantiates the component at `path`.
pub fn load_proxy(
    engine: &Engine,
    linker: &Linker<RequestState>,
    path: &Path,
) -> Result<ProxyPre<RequestState>> {
    let shown = path.display();
    let component = compile(engine, path)?;
    if !exports_incoming_handler(engine, &component) {
        let exports = export_names(engine, &component);
        bail!(
            "`{shown}` is not a wasi:http/proxy component: it does not export \
             {INCOMING_HANDLER} (it exports: {exports})"
        );
    }
    let instance_pre = linker
        .instantiate_pre(&component)
        .with_context(|| format!("`{shown}` imports something this host does not provide"))?;
    ProxyPre::new(instance_pre)
        .with_context(|| format!("`{shown}` does not match the wasi:http/proxy world"))
}

fn compile(engine: &Engine, path: &Path) -> Result<Component> {
    let shown = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read component `{shown}`"))?;
    if wasmparser::Parser::is_core_wasm(&bytes) {
        bail!(
            "`{shown}` is a core WebAssembly module, not a component; build it for \
             `wasm32-wasip2` or with `cargo component build`"
        );
    }
    if !wasmparser::Parser::is_component(&bytes) {
        bail!("`{shown}` is not a WebAssembly component (no `\\0asm` component header)");
    }
    Component::new(engine, &bytes).with_context(|| format!("cannot compile `{shown}`"))
}

fn exports_incoming_handler(engine: &Engine, component: &Component) -> bool {
    component
        .component_type()
        .exports(engine)
        .any(|(name, _)| is_incoming_handler(name))
}

fn is_incoming_handler(export: &str) -> bool {
    export
        .strip_prefix(INCOMING_HANDLER)
        .is_some_and(|version| version.is_empty() || version.starts_with("@0.2."))
}

fn export_names(engine: &Engine, component: &Component) -> String {
    let names: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if names.is_empty() {
        "nothing".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_handler_of_any_wasi_0_2_minor_is_accepted() {
        assert!(is_incoming_handler("wasi:http/incoming-handler@0.2.0"));
        assert!(is_incoming_handler("wasi:http/incoming-handler@0.2.12"));
        assert!(!is_incoming_handler("wasi:http/incoming-handler@0.3.0"));
        assert!(!is_incoming_handler("wasi:cli/run@0.2.0"));
    }
}
