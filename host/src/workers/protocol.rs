//! What the primary and its secondaries say to each other over a secondary's stdin and
//! stdout: HTTP/1 requests on these paths.

/// Control paths a secondary answers on its stdin and stdout.
pub const RELOAD_PATH: &str = "/reload";
pub const UPLOAD_PATH: &str = "/component";
pub const REFERENCE_PATH: &str = "/reference";
pub const METRICS_PATH: &str = "/metrics";
pub const STOP_PATH: &str = "/stop";

/// The header that carries an upload's origin to a secondary.
pub const ORIGIN_HEADER: &str = "x-wasi-host-origin";
