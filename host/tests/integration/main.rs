//! Integration tests: the real `wasi-host` binary, real guests, real HTTP.

mod chaos;
mod config_reference;
mod environment;
mod examples;
mod hardening;
mod logs;
mod metrics;
mod oci;
mod outbound;
mod portability;
mod precompile;
mod serve;
mod spin;
mod startup_errors;
mod swap;
mod util;
mod workers;
