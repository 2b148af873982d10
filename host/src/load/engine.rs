//! One `Engine` per process, its code settings and its instance pool, and one `Linker`
//! with everything the host offers a guest.
//!
//! Errors here are `wasmtime::Error`, which keeps wasmtime's own context chain; callers
//! turn them into `anyhow::Error` with `?`.

use wasmtime::component::Linker;
use wasmtime::error::Context as _;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Result,
};

use crate::sandbox::keyvalue;
use crate::sandbox::limits::InstanceLimits;
use crate::sandbox::store::InstanceState;
use crate::sandbox::variables;

/// Bytes of linear memory the pool as a whole keeps mapped in recycled slots, where the
/// kernel can tell which pages a guest wrote (`PAGEMAP_SCAN`, Linux 6.7+): only those
/// are copied back from the component's image on recycle, so a large guest (CPython)
/// finds much of its heap mapped and writable on its next request instead of faulting
/// it in again. Shared out over the slots, so that what idle slots hold after a burst
/// stays bounded, whatever the concurrency.
const MEMORY_KEEP_RESIDENT_BUDGET: usize = 32 << 20;

/// Most bytes one slot keeps, however few the slots.
const MEMORY_KEEP_RESIDENT_MAX: usize = 16 << 20;

/// Bytes of each linear memory kept mapped when its slot is recycled without
/// `PAGEMAP_SCAN` (older kernels, gVisor): these first bytes are reset in full on every
/// recycle, dirty or not, so only enough for a small guest's stack, data and heap.
const MEMORY_KEEP_RESIDENT_UNSCANNED: usize = 256 << 10;

/// Bytes of each table kept mapped when its slot is recycled.
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// Builds the engine, with the pooling allocator sized from `limits` when the machine
/// lets us reserve its address space, and on-demand allocation otherwise.
pub fn build_engine(limits: &InstanceLimits) -> Result<Engine> {
    let mut config = code_config()?;
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
            let mut config = code_config()?;
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Engine::new(&config).context("failed to create the wasmtime engine")
        }
    }
}

/// CPU features generated code may use on x86-64: the x86-64-v2 level, which every
/// machine Cloud Run or GKE schedules on has.
const X86_64_BASELINE: &[&str] = &[
    "has_sse3",
    "has_ssse3",
    "has_sse41",
    "has_sse42",
    "has_popcnt",
    "has_cmpxchg16b",
];

/// The settings that shape generated code. They depend on no flag, so a component
/// precompiled once loads into every `serve`, whatever its limits.
fn code_config() -> Result<Config> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // WASI 0.3 components: async functions, streams and futures.
    config.wasm_component_model_async(true);
    // Deadlines interrupt guests through the epoch counter: one shared ticker thread,
    // not a timer per request.
    config.epoch_interruption(true);
    // A `.cwasm` is built on one machine (a CI runner, Cloud Build) and served on
    // another, or under gVisor, which hides some CPU features: code for the build
    // machine's own CPU would be refused there. Naming the target turns off detecting
    // the CPU; the baseline is then enabled by hand.
    config.target(&target_lexicon::HOST.to_string())?;
    if cfg!(target_arch = "x86_64") {
        for feature in X86_64_BASELINE {
            // SAFETY: wasmtime checks each of these flags against the CPU it runs on
            // before it runs code compiled with them, and refuses the code otherwise.
            #[allow(unsafe_code)]
            unsafe {
                config.cranelift_flag_enable(feature);
            }
        }
    }
    Ok(config)
}

/// An engine for `wasi-host compile`: the same code settings as `serve`, no pool.
pub fn compile_engine() -> Result<Engine> {
    Engine::new(&code_config()?).context("failed to create the wasmtime engine")
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
        .table_elements(limits.max_table_elements)
        // A recycled slot's pages are reset in place rather than returned to the kernel:
        // no page faults on the next request, and none of the TLB-shootdown IPIs that
        // `madvise` and copy-on-write faults send to the other cores running guests.
        .linear_memory_keep_resident(memory_keep_resident(slots))
        .table_keep_resident(TABLE_KEEP_RESIDENT)
        // What lies beyond goes back to the kernel as each slot is recycled: batching
        // kept a batch's worth of a large guest's dirtied heaps resident (a Python guest
        // at 80 connections peaked 64 MiB higher with 16) for no gain measurable on
        // small guests.
        .decommit_batch_size(1)
        .pagemap_scan(Enabled::Auto);
    pool
}

fn memory_keep_resident(slots: u32) -> usize {
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        let share = MEMORY_KEEP_RESIDENT_BUDGET / usize::try_from(slots.max(1)).unwrap_or(1);
        // Whole pages: only those can be kept.
        (share & !0xfff).clamp(MEMORY_KEEP_RESIDENT_UNSCANNED, MEMORY_KEEP_RESIDENT_MAX)
    } else {
        MEMORY_KEEP_RESIDENT_UNSCANNED
    }
}

/// Adds every interface the host offers: all of WASI 0.2 and 0.3 (toolchain-built guests
/// import `wasi:cli/*` besides the HTTP world), `wasi:http` of both, and the variables and
/// key-value stores of Spin's SDKs and `wasi:keyvalue`. Files and sockets are linked but an instance's context grants none.
pub fn build_linker(engine: &Engine) -> Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).context("failed to link WASI 0.2")?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .context("failed to link wasi:http 0.2")?;
    wasmtime_wasi::p3::add_to_linker(&mut linker).context("failed to link WASI 0.3")?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker).context("failed to link wasi:http 0.3")?;
    variables::add_to_linker(&mut linker).context("failed to link Spin's variables")?;
    keyvalue::add_to_linker(&mut linker).context("failed to link the key-value interfaces")?;
    Ok(linker)
}
