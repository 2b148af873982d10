//! Integration tests: the real `wasi-host` binary, real guests, real HTTP.

mod bench;
mod chaos;
mod config_reference;
mod defaults;
mod environment;
mod examples;
mod hardening;
mod http2;
mod key_value;
mod logs;
mod metrics;
mod oci;
mod outbound;
mod portability;
mod precompile;
mod reuse;
mod serve;
#[path = "../common/serve_help.rs"]
mod serve_help;
mod spin;
mod startup_errors;
mod swap;
mod util;
mod workers;
