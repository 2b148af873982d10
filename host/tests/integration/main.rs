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
#[path = "../common/help.rs"]
mod help;
mod http2;
mod id_tokens;
mod key_value;
mod logs;
mod metrics;
mod oci;
mod outbound;
mod portability;
mod precompile;
mod registry_auth;
mod reuse;
mod serve;
mod slow_clients;
mod spin;
mod startup_errors;
mod swap;
mod test_ca;
mod util;
mod workers;
