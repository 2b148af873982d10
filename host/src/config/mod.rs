//! Configuration: the command line, and `serve`'s settings checked and resolved without
//! I/O (the environment is injected). Imports only `load`, `sandbox`, `observe` and
//! `http`, for the types the settings are made of.

mod cli;
mod cpus;
mod environment;
mod serve;
mod workers;

pub(crate) use self::cli::Command;
pub use self::cli::{
    Cli, DEFAULT_HEALTH_PATH, DEFAULT_MAX_CONCURRENCY, DEFAULT_PORT, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT,
};
pub(crate) use self::environment::HostEnv;
pub use self::serve::PROJECT_VARIABLE;
pub(crate) use self::serve::{
    AdmissionLimits, CallerCheckConfig, ClientLimits, ConnectionLimits,
    SIDE_SERVER_MAX_CONNECTIONS, ServeConfig,
};
pub(crate) use self::workers::{SECONDARY_ENV, SecondaryRole};
