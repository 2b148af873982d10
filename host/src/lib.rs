//! `wasi-host` serves a `wasi:http/proxy` WebAssembly component over HTTP, with a fresh
//! instance per request, in the shape Cloud Run expects: one port from `$PORT`, logs on
//! stderr, and a clean exit on SIGTERM.
//!
//! The binary is a thin shell over [`run`]; each module below owns one job.

pub mod admin;
pub mod admission;
pub mod app;
pub mod app_files;
pub mod body;
pub mod cloud_logging;
pub mod config;
pub mod engine;
pub mod exchange;
pub mod guest_env;
pub mod guest_output;
pub mod handler;
pub mod limits;
pub mod metrics;
pub mod metrics_server;
pub mod outbound;
pub mod registry;
pub mod reload;
pub mod routes;
pub mod server;
pub mod shutdown;
pub mod spin_manifest;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod trace_context;
pub mod watch;
pub mod workers;

use anyhow::{Context, Result};

use crate::config::{Cli, Command};

/// Runs the command the user asked for, to completion.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = (*args).into_config()?;
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            // With several workers, parallelism comes from the processes.
            if config.workers > 1 {
                runtime.worker_threads(1);
            }
            let runtime = runtime
                .enable_all()
                .build()
                .context("failed to start the async runtime")?;
            runtime.block_on(server::serve(config))
        }
        Command::Compile(args) => {
            let engine = engine::compile_engine()?;
            let linker = engine::build_linker(&engine)?;
            let output = args
                .output
                .unwrap_or_else(|| engine::default_precompiled_path(&args.component));
            engine::precompile(&engine, &linker, &args.component, &output)?;
            tracing::info!(
                "compiled `{}` to `{}`",
                args.component.display(),
                output.display()
            );
            Ok(())
        }
    }
}
