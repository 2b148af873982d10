//! What operators see: log set-up and Cloud Logging's JSON format, trace context from
//! request headers, and the Prometheus metrics. Imports only `http`.

pub mod cloud_logging;
pub mod exposition;
pub mod metrics;
pub mod summary;
pub mod telemetry;
pub mod trace_context;
