//! One instance's side of key-value: which stores it may open, the limits on what it
//! asks, and each operation run, timed, counted and, when the store fails, logged with
//! the request it belongs to. The guest interfaces are thin over this.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tracing::Span;

use super::stores::{NamedStore, StoreGrant};
use crate::sandbox::occupancy::Occupancy;

/// What a guest may ask of its stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyValueLimits {
    /// Longest key, in bytes.
    pub max_key_size: usize,
    /// Largest value, in bytes.
    pub max_value_size: usize,
    /// Most operations (opening a store included) one request may run.
    pub max_operations: u32,
}

/// Spin's documented limits: keys up to 255 bytes, values up to 1 MiB.
impl Default for KeyValueLimits {
    fn default() -> Self {
        Self {
            max_key_size: 255,
            max_value_size: 1 << 20,
            max_operations: 1000,
        }
    }
}

/// An error every key-value interface has a case for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValueError {
    /// The store is not one the component may open.
    AccessDenied,
    /// Anything else, said in words: the store failed, a limit was reached.
    Other(String),
}

/// The key-value state of one instance.
pub struct KeyValueContext {
    grant: StoreGrant,
    limits: KeyValueLimits,
    occupancy: Arc<Occupancy>,
    /// The request operations are counted for, and how many it ran.
    counted: (Option<u64>, u32),
}

impl KeyValueContext {
    pub fn new(grant: StoreGrant, limits: KeyValueLimits, occupancy: Arc<Occupancy>) -> Self {
        Self {
            grant,
            limits,
            occupancy,
            counted: (None, 0),
        }
    }

    /// The store `name`, if the component may open it.
    pub fn open(&mut self, name: &str) -> Result<Arc<NamedStore>, KeyValueError> {
        self.count()?;
        self.grant
            .get(name)
            .cloned()
            .ok_or(KeyValueError::AccessDenied)
    }

    /// An operation on `store`, within the request's budget.
    pub fn begin(&mut self, store: &Arc<NamedStore>) -> Result<Operation, KeyValueError> {
        self.count()?;
        let visitor = self.occupancy.sole();
        Ok(Operation {
            store: store.clone(),
            name: "",
            limits: self.limits,
            request_id: visitor.as_ref().map(|visitor| visitor.request_id),
            span: visitor.map_or_else(Span::none, |visitor| visitor.span),
            instance_id: self.occupancy.instance_id(),
        })
    }

    /// Counts one operation against the request the instance serves (or, while it
    /// serves several at once, against them together).
    fn count(&mut self) -> Result<(), KeyValueError> {
        let request = self.occupancy.sole().map(|visitor| visitor.request_id);
        if request.is_none() || request != self.counted.0 {
            self.counted = (request, 0);
        }
        self.counted.1 += 1;
        if self.counted.1 > self.limits.max_operations {
            return Err(KeyValueError::Other(format!(
                "this request ran more than {} key-value operations (--kv-max-operations)",
                self.limits.max_operations
            )));
        }
        Ok(())
    }
}

/// One operation a guest asked for, checked and about to run.
pub struct Operation {
    store: Arc<NamedStore>,
    name: &'static str,
    limits: KeyValueLimits,
    request_id: Option<u64>,
    span: Span,
    instance_id: u64,
}

impl Operation {
    /// The value at `key`.
    pub async fn get(self, key: &str) -> Result<Option<Vec<u8>>, KeyValueError> {
        let (this, store) = self.named("get").key(key)?.store();
        this.run(store.backend.get(key)).await
    }

    pub async fn set(self, key: &str, value: &[u8]) -> Result<(), KeyValueError> {
        let (this, store) = self.named("set").key(key)?.value(value)?.store();
        this.run(store.backend.set(key, value)).await
    }

    pub async fn delete(self, key: &str) -> Result<(), KeyValueError> {
        let (this, store) = self.named("delete").key(key)?.store();
        this.run(store.backend.delete(key)).await
    }

    pub async fn exists(self, key: &str) -> Result<bool, KeyValueError> {
        let (this, store) = self.named("exists").key(key)?.store();
        this.run(store.backend.exists(key)).await
    }

    /// Every key of the store.
    pub async fn keys(self) -> Result<Vec<String>, KeyValueError> {
        let (this, store) = self.named("keys").store();
        this.run(store.backend.keys()).await
    }

    pub async fn increment(self, key: &str, delta: i64) -> Result<i64, KeyValueError> {
        let (this, store) = self.named("increment").key(key)?.store();
        this.run(store.backend.increment(key, delta)).await
    }

    pub async fn get_many(self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, KeyValueError> {
        let (this, store) = self.named("get_many").each_key(keys)?.store();
        this.run(store.backend.get_many(keys)).await
    }

    pub async fn set_many(self, pairs: &[(String, Vec<u8>)]) -> Result<(), KeyValueError> {
        let mut this = self.named("set_many");
        for (key, value) in pairs {
            this = this.key(key)?.value(value)?;
        }
        let (this, store) = this.store();
        this.run(store.backend.set_many(pairs)).await
    }

    pub async fn delete_many(self, keys: &[String]) -> Result<(), KeyValueError> {
        let (this, store) = self.named("delete_many").each_key(keys)?.store();
        this.run(store.backend.delete_many(keys)).await
    }

    /// Sets `key` to `value` if it still holds `expected`; whether it did.
    pub async fn swap_if(
        self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, KeyValueError> {
        let (this, store) = self.named("swap").key(key)?.value(value)?.store();
        this.run(store.backend.swap_if(key, expected, value)).await
    }

    fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// The operation, and its store for the call to borrow.
    fn store(self) -> (Self, Arc<NamedStore>) {
        let store = self.store.clone();
        (self, store)
    }

    /// Refuses a key longer than the limit.
    fn key(self, key: &str) -> Result<Self, KeyValueError> {
        let max = self.limits.max_key_size;
        if key.len() > max {
            return Err(KeyValueError::Other(format!(
                "a key is at most {max} bytes (--kv-max-key-size); this one has {}",
                key.len()
            )));
        }
        Ok(self)
    }

    fn each_key(self, keys: &[String]) -> Result<Self, KeyValueError> {
        keys.iter()
            .try_fold(self, |operation, key| operation.key(key))
    }

    /// Refuses a value larger than the limit.
    fn value(self, value: &[u8]) -> Result<Self, KeyValueError> {
        let max = self.limits.max_value_size;
        if value.len() > max {
            return Err(KeyValueError::Other(format!(
                "a value is at most {max} bytes (--kv-max-value-size); this one has {}",
                value.len()
            )));
        }
        Ok(self)
    }

    /// Runs `call` in the store: timed and counted; a failure is logged for the request
    /// and becomes the guest's `other` error.
    async fn run<T>(
        self,
        call: impl Future<Output = anyhow::Result<T>>,
    ) -> Result<T, KeyValueError> {
        let started = Instant::now();
        let outcome = call.await;
        let store = &self.store.name;
        self.store.metrics.key_value_operation(
            store,
            self.name,
            started.elapsed(),
            outcome.is_ok(),
        );
        outcome.map_err(|error| {
            let (request_id, instance_id, operation) =
                (self.request_id, self.instance_id, self.name);
            tracing::warn!(
                parent: &self.span, request_id, instance_id, store, operation,
                "key-value `{operation}` in store `{store}` failed: {error:#}"
            );
            KeyValueError::Other(format!("store `{store}`: {error:#}"))
        })
    }
}
