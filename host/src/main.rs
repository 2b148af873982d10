//! `wasi-host`: serve a WASI HTTP component on `$PORT`.

use std::process::ExitCode;

use clap::Parser;
use wasi_host::Cli;

// Requests allocate and free many small objects across threads; musl's allocator (the
// static release build) is slow at that, and mimalloc beats glibc's too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = wasi_host::init_logs(cli.log_format);
    match wasi_host::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            wasi_host::report_fatal(log_format, &error);
            ExitCode::FAILURE
        }
    }
}
