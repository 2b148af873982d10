//! `wasi-host` serves a `wasi:http/proxy` WebAssembly component over HTTP, with a fresh
//! instance per request, in the shape Cloud Run expects: one port from `$PORT`, logs on
//! stderr, and a clean exit on SIGTERM.
//!
//! The folders follow a request's path through the host, and imports run one way only,
//! from a folder to the ones listed after it (the `layout` test enforces it):
//!
//! - `serve`: the composition root: load, bind, take up the process's role, accept,
//!   drain. Only this file imports it.
//! - `workers`: `--workers`' secondary processes, started and controlled by the primary.
//! - `request`: one request: admission, span and access log, the guest call, failures.
//! - `swap`: the active version, what reloads it (SIGHUP, `--watch`), the admin endpoint.
//! - `config`: the command line and `serve`'s settings, checked without I/O.
//! - `load`: the engine and linker, component files, registry pulls, Spin applications.
//! - `sandbox`: what one guest instance gets: store, environment, output, limits,
//!   deadline, outbound requests.
//! - `observe`: logs in Cloud Logging's format, trace context, metrics.
//! - `http`: body wrappers, the host's own responses, TLS settings.
//!
//! The binary is a thin shell over [`run`].

pub mod config;
mod http;
mod load;
mod observe;
mod request;
mod sandbox;
mod serve;
mod swap;
mod workers;

use anyhow::{Context, Result};

pub use crate::config::Cli;
use crate::config::{Command, HostEnv};
pub use crate::observe::telemetry::{LogFormat, init as init_logs, report_fatal};

/// Runs the command the user asked for, to completion.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = (*args).into_config(&HostEnv::of_this_process())?;
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            // With several workers, parallelism comes from the processes.
            if config.workers > 1 {
                runtime.worker_threads(1);
            }
            let runtime = runtime
                .enable_all()
                .build()
                .context("failed to start the async runtime")?;
            runtime.block_on(serve::serve(config))
        }
        Command::Compile(args) => {
            let engine = load::engine::compile_engine()?;
            let linker = load::engine::build_linker(&engine)?;
            let output = args
                .output
                .unwrap_or_else(|| load::component::default_precompiled_path(&args.component));
            load::component::precompile(&engine, &linker, &args.component, &output)?;
            tracing::info!(
                "compiled `{}` to `{}`",
                args.component.display(),
                output.display()
            );
            Ok(())
        }
    }
}
