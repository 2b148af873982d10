//! Key-value stores for guests: `wasi:keyvalue` (store, atomics, batch) at the drafts
//! Spin's SDKs (`0.2.0-draft2`) and wasmtime (`0.2.0-draft`) import,
//! `spin:key-value@3.0.0` and `fermyon:spin/key-value@2.0.0`, all over the host's named
//! stores: Redis, shared by every instance of a service, or a SQLite file local to this
//! one. A component opens only the stores it was granted; any other is `access-denied`.

mod backend;
mod cas;
mod drafts;
pub mod guest;
mod linking;
mod local;
mod redis;
mod spin;
pub mod stores;
mod wasi;

use wasmtime::Result;
use wasmtime::component::Linker;

pub use self::guest::KeyValueLimits;
pub use self::local::DEFAULT_FILE;
pub use self::redis::RedisSettings;
pub use self::stores::{BackendSpec, KeyValueStores, StoreSpec};
use super::store::InstanceState;

/// Every interface a guest opens a store through, side by side: each version has its
/// own store type, `I` telling them apart.
pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> Result<()> {
    wasi::add_to_linker(linker)?;
    spin::add_to_linker(linker)
}
