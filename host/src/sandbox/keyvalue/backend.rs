//! What a store does, whichever kind it is: the operations every guest interface is
//! made of. Keys are strings, values bytes; a counter is a value holding a decimal
//! integer, as Redis keeps one.

use anyhow::Result;
use async_trait::async_trait;

/// A store's data, kept somewhere.
#[async_trait]
pub trait Backend: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    async fn set(&self, key: &str, value: &[u8]) -> Result<()>;
    /// Removes `key`; a key that is not there is no error.
    async fn delete(&self, key: &str) -> Result<()>;
    async fn exists(&self, key: &str) -> Result<bool>;
    /// Every key, in no particular order.
    async fn keys(&self) -> Result<Vec<String>>;
    /// Adds `delta` to the counter at `key` (0 when absent) at once, whoever else adds
    /// to it, and returns its new value.
    async fn increment(&self, key: &str, delta: i64) -> Result<i64>;
    /// The values of `keys`, in their order.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>>;
    /// Sets every pair at once.
    async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<()>;
    async fn delete_many(&self, keys: &[String]) -> Result<()>;
    /// Sets `key` to `value` if it still holds `expected` (`None`: absent), at once;
    /// whether it did.
    async fn swap_if(&self, key: &str, expected: Option<&[u8]>, value: &[u8]) -> Result<bool>;
}
