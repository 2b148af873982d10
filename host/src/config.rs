//! The command line: every flag also reads an environment variable, so the same image
//! is configured on Cloud Run (env) and on a laptop (flags) alike.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

/// Port used when neither `--addr` nor `$PORT` is given (Cloud Run's default too).
pub const DEFAULT_PORT: u16 = 8080;

/// A Cloud Run-ready host for WebAssembly HTTP components.
#[derive(Debug, Parser)]
#[command(name = "wasi-host", version, about, long_about = None)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// What `wasi-host` can do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a wasi:http/proxy component over HTTP, a fresh instance per request.
    Serve(ServeArgs),
}

/// Flags of `wasi-host serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The component to serve: a `.wasm` file exporting `wasi:http/incoming-handler`.
    #[arg(value_name = "COMPONENT", env = "WASI_HOST_COMPONENT")]
    pub component: PathBuf,

    /// Port to listen on, on all interfaces. Cloud Run sets `$PORT`.
    #[arg(long, env = "PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Full socket address to listen on; overrides `--port` (e.g. `127.0.0.1:0`).
    #[arg(long, value_name = "ADDR", env = "WASI_HOST_ADDR")]
    pub addr: Option<SocketAddr>,

    /// Longest a request may run; a guest still running then is interrupted and, if it
    /// has not answered yet, the client gets `504`. Cloud Run's default is 300s.
    #[arg(long, env = "WASI_HOST_REQUEST_TIMEOUT", default_value = "300s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// How long SIGTERM waits for in-flight requests before exiting; keep it under the
    /// platform's grace period (Cloud Run: 10s).
    #[arg(long, env = "WASI_HOST_SHUTDOWN_TIMEOUT", default_value = "8s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

/// The validated settings `serve` runs with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The component file to serve.
    pub component: PathBuf,
    /// Where to listen.
    pub addr: SocketAddr,
    /// Longest a request may run.
    pub request_timeout: Duration,
    /// Longest the drain after SIGTERM may take.
    pub shutdown_timeout: Duration,
}

impl ServeArgs {
    /// Checks the flags against each other and resolves defaults.
    pub fn into_config(self) -> Result<ServeConfig> {
        let addr = self
            .addr
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, self.port)));
        Ok(ServeConfig {
            component: self.component,
            addr,
            request_timeout: self.request_timeout,
            shutdown_timeout: self.shutdown_timeout,
        })
    }
}
