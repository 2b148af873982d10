//! Spin applications: the manifest (`spin.toml`) read and checked, its HTTP routes, its
//! variables, and the files it gives its components, staged where a guest can see them.

pub mod files;
pub mod manifest;
pub mod routes;
pub mod runtime_config;
pub mod variables;
