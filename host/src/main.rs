//! `wasi-host`: serve a WASI HTTP component on `$PORT`.

use std::process::ExitCode;

use clap::Parser;
use wasi_host::config::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    wasi_host::telemetry::init();
    match wasi_host::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole context chain on one line: the file, then the cause.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
