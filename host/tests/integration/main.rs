//! Integration tests: the real `wasi-host` binary, real guests, real HTTP.

mod chaos;
mod hardening;
mod outbound;
mod precompile;
mod serve;
mod startup_errors;
mod util;
