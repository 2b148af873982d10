//! What the primary and its secondaries say to each other over a secondary's stdin and
//! stdout: HTTP/1 requests on these paths.

/// `PUT`: load the version in the body and headers, without serving it yet; `DELETE`:
/// drop it.
pub const STAGED_PATH: &str = "/staged";
/// `POST`: serve the version loaded by the last `PUT` of [`STAGED_PATH`].
pub const PUBLISH_PATH: &str = "/staged/publish";
/// `GET`: the version served, as JSON.
pub const VERSION_PATH: &str = "/component";
pub const METRICS_PATH: &str = "/metrics";
pub const STOP_PATH: &str = "/stop";

/// The headers that describe a version handed to a secondary: where it came from, the
/// generation it is published as, its SHA-256, and what the body holds.
pub const ORIGIN_HEADER: &str = "x-wasi-host-origin";
pub const GENERATION_HEADER: &str = "x-wasi-host-generation";
pub const SHA256_HEADER: &str = "x-wasi-host-sha256";
pub const CODE_HEADER: &str = "x-wasi-host-code";

/// Values of [`CODE_HEADER`]: the body is the component compiled by the primary, or
/// empty, for the secondary to read the application from its manifest.
pub const CODE_PRECOMPILED: &str = "precompiled";
pub const CODE_READ_AGAIN: &str = "read-again";
