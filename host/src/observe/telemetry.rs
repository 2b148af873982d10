//! Logging setup. Logs go to stderr, as human-readable lines or as Cloud Logging JSON
//! entries (see [`super::cloud_logging`]); `RUST_LOG` filters them (default `info`).

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::JsonFields;

use super::cloud_logging::CloudLoggingFormat;

/// Cloud Run (and Knative) set this in every container; its presence selects JSON logs.
const CLOUD_RUN_SERVICE_VARIABLE: &str = "K_SERVICE";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    Text,
    /// One Cloud Logging JSON entry per line.
    Json,
    /// JSON on Cloud Run (`K_SERVICE` is set), text elsewhere.
    Auto,
}

impl LogFormat {
    /// `Text` or `Json`: `Auto` resolved against the environment.
    pub fn resolve(self) -> Self {
        match self {
            LogFormat::Auto if std::env::var_os(CLOUD_RUN_SERVICE_VARIABLE).is_some() => {
                LogFormat::Json
            }
            LogFormat::Auto => LogFormat::Text,
            explicit => explicit,
        }
    }
}

/// Installs the global log subscriber writing `format` and returns the format in use.
pub fn init(format: LogFormat) -> LogFormat {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let format = format.resolve();
    match format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(CloudLoggingFormat)
            .init(),
        _ => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    format
}

/// `message` on one line: a multi-line error (a wasm backtrace, a panic message) would
/// otherwise become several log lines in text mode, each looking like an entry of its
/// own. Lines are trimmed and joined with `; `, or a space after a colon.
pub fn one_line(message: &str) -> String {
    let mut joined = String::with_capacity(message.len());
    for line in message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
    {
        if !joined.is_empty() {
            joined.push_str(if joined.ends_with(':') { " " } else { "; " });
        }
        joined.push_str(line);
    }
    joined
}

/// Reports the error that ends the process: `error: ...` on stderr for people, an
/// `ERROR` entry in JSON.
pub fn report_fatal(format: LogFormat, error: &anyhow::Error) {
    match format {
        LogFormat::Json => tracing::error!("{error:#}"),
        // `{:#}` prints the whole context chain on one line: the file, then the cause.
        _ => eprintln!("error: {error:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_line_error_is_logged_on_one_line() {
        let error = "error while executing at wasm backtrace:\n    0: 0x1a2b - testbed!handle\n\n    1: 0x3c - <unknown>!<wasm function 7>\n";
        assert_eq!(
            one_line(error),
            "error while executing at wasm backtrace: 0: 0x1a2b - testbed!handle; 1: 0x3c - <unknown>!<wasm function 7>"
        );
    }
}
