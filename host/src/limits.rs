//! How much one guest instance may use, and how the pooling allocator is sized from it.

use std::time::Duration;

use wasmtime::{Engine, EngineWeak, StoreLimits, StoreLimitsBuilder};

/// How often the engine's epoch advances. Past its first slice, a running guest yields
/// to other requests at every tick and notices its deadline within one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Ticks a guest runs before it first yields: 40 to 50 ms. Most requests finish inside
/// it, so an instance, once started, usually runs to completion, and a CPU-bound load
/// keeps about one live instance per core instead of interleaving every admitted
/// request, each with its own dirtied heap. Only guests that run longer are time-sliced.
pub const FIRST_SLICE_TICKS: u64 = 5;

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
        }
    }
}

impl InstanceLimits {
    /// Instance slots the pool reserves: the concurrency cap plus a quarter more, for
    /// instances that are still streaming a response body after their handler returned.
    pub fn pool_slots(&self) -> u32 {
        self.max_concurrency + self.max_concurrency / 4 + 4
    }
}

impl InstanceLimits {
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

/// What a client may send.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// Largest request body, in bytes.
    pub max_body_size: u64,
    /// Largest request header block, in bytes.
    pub max_header_size: usize,
    /// Longest a client may take to send its request headers.
    pub header_read_timeout: Duration,
}

/// What a guest's outbound requests may take.
#[derive(Debug, Clone)]
pub struct OutboundLimits {
    /// Longest to resolve, connect and finish the TLS handshake of a new connection.
    pub connect_timeout: Duration,
    /// Longest to wait for the response head once the request is on its way.
    pub first_byte_timeout: Duration,
    /// Longest one outbound request may take, response body included.
    pub total_timeout: Duration,
    /// Largest response body a guest may read, in bytes.
    pub max_response_body: u64,
}

/// Starts the one thread that advances `engine`'s epoch every [`EPOCH_TICK`]. It holds a
/// weak reference and stops when the engine is dropped.
pub fn start_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let engine: EngineWeak = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
}
