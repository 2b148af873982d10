//! Integration tests: the real `wasi-host` binary, real guests, real HTTP.

mod chaos;
mod environment;
mod hardening;
mod logs;
mod metrics;
mod precompile;
mod serve;
mod startup_errors;
mod util;
