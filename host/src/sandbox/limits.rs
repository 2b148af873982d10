//! How much one guest instance may use, and how the pooling allocator is sized from it.

use wasmtime::{StoreLimits, StoreLimitsBuilder};

use super::keyvalue::guest::KeyValueLimits;

/// Per-instance caps and the concurrency the pool is sized for.
#[derive(Debug, Clone)]
pub struct InstanceLimits {
    /// Largest linear memory one instance may grow to, in bytes.
    pub max_memory: usize,
    /// Largest table one instance may have, in elements.
    pub max_table_elements: usize,
    /// Most host resources one request's guest may hold at once.
    pub max_resources: usize,
    /// Requests that may run at once; the pool holds a slot for each, plus headroom.
    pub max_concurrency: u32,
    /// Core instances one component may create (toolchain-built components link several
    /// core modules: the program, its libc, adapters).
    pub core_instances_per_component: u32,
    /// Linear memories one component may create.
    pub memories_per_component: u32,
    /// Tables one component may create.
    pub tables_per_component: u32,
    /// What one request may ask of key-value stores.
    pub key_value: KeyValueLimits,
}

impl Default for InstanceLimits {
    fn default() -> Self {
        Self {
            max_memory: 128 << 20,
            max_table_elements: 20_000,
            max_resources: 10_000,
            max_concurrency: 80,
            core_instances_per_component: 32,
            memories_per_component: 2,
            tables_per_component: 16,
            key_value: KeyValueLimits::default(),
        }
    }
}

impl InstanceLimits {
    /// Instance slots the pool reserves: the concurrency cap plus a quarter more, for
    /// instances that are still streaming a response body after their handler returned.
    pub fn pool_slots(&self) -> u32 {
        self.max_concurrency + self.max_concurrency / 4 + 4
    }

    /// The same caps as store limits, enforced also when the pooling allocator is not in
    /// use. Growing past them fails inside the guest rather than trapping the host call.
    pub fn store_limits(&self) -> StoreLimits {
        StoreLimitsBuilder::new()
            .memory_size(self.max_memory)
            .table_elements(self.max_table_elements)
            .instances(self.core_instances_per_component as usize)
            .memories(self.memories_per_component as usize)
            .tables(self.tables_per_component as usize)
            .build()
    }
}
