//! Integration tests: the real `wasi-host` binary, real guests, real HTTP.

mod serve;
mod startup_errors;
mod util;
