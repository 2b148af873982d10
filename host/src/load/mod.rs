//! Loading: the engine and its linker, a component file or a registry pull turned into
//! a pre-instantiated component, and Spin applications read from their manifest. It
//! produces what `swap` publishes and `request` runs; it serves nothing itself.

pub mod app;
pub mod component;
pub mod engine;
pub mod guest_config;
pub mod imports;
pub mod key_value;
pub mod registry;
pub mod source;
pub mod spin;
