//! What the two `wasi:keyvalue` drafts share: their error, and the marker types that
//! tell their buckets apart.

use wasmtime::component::{ComponentType, Lift, Lower};

use super::guest::KeyValueError;

/// The drafts' `error`.
#[derive(Debug, Clone, PartialEq, Eq, ComponentType, Lift, Lower)]
#[component(variant)]
pub enum WasiError {
    #[component(name = "no-such-store")]
    NoSuchStore,
    #[component(name = "access-denied")]
    AccessDenied,
    #[component(name = "other")]
    Other(String),
}

impl From<KeyValueError> for WasiError {
    fn from(error: KeyValueError) -> Self {
        match error {
            KeyValueError::AccessDenied => Self::AccessDenied,
            KeyValueError::Other(message) => Self::Other(message),
        }
    }
}

/// The bucket of `0.2.0-draft2`.
pub struct Draft2;
/// The bucket of `0.2.0-draft`.
pub struct Draft;
