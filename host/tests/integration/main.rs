//! Integration tests: the real `wasi-host` binary, real guests, real HTTP.

mod chaos;
mod examples;
mod hardening;
mod outbound;
mod portability;
mod precompile;
mod serve;
mod startup_errors;
mod swap;
mod util;
