//! Integration tests: the real `wasi-host` binary, real guests, real HTTP.

mod bench;
mod caller_tokens;
mod chaos;
mod config_reference;
mod defaults;
mod environment;
mod events;
mod examples;
mod fake_server;
mod guest_config;
mod hardening;
mod http2;
mod id_tokens;
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
