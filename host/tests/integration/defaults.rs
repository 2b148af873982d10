//! The defaults the documentation promises, pinned: what `wasi-host serve --help` says
//! each flag's variable and default are, against the values written out here as
//! `docs/configuration.md` writes them. (The configuration reference test checks that
//! the page follows the help; this one, that neither moves by accident.)

use crate::help::ServeHelp;

/// Every documented flag that has a default: the flag, its variable, its
/// default.
const DOCUMENTED_DEFAULTS: &[(&str, &str, &str)] = &[
    ("--port", "PORT", "8080"),
    ("--request-timeout", "WASI_HOST_REQUEST_TIMEOUT", "300s"),
    ("--shutdown-timeout", "WASI_HOST_SHUTDOWN_TIMEOUT", "8s"),
    ("--max-concurrency", "WASI_HOST_MAX_CONCURRENCY", "80"),
    ("--queue-timeout", "WASI_HOST_QUEUE_TIMEOUT", "10s"),
    ("--workers", "WASI_HOST_WORKERS", "1"),
    ("--max-memory", "WASI_HOST_MAX_MEMORY", "128MiB"),
    (
        "--max-table-elements",
        "WASI_HOST_MAX_TABLE_ELEMENTS",
        "20000",
    ),
    ("--max-resources", "WASI_HOST_MAX_RESOURCES", "10000"),
    ("--max-body-size", "WASI_HOST_MAX_BODY_SIZE", "32MiB"),
    ("--max-header-size", "WASI_HOST_MAX_HEADER_SIZE", "64KiB"),
    (
        "--health-path",
        "WASI_HOST_HEALTH_PATH",
        "/.well-known/wasi-host/health",
    ),
    (
        "--header-read-timeout",
        "WASI_HOST_HEADER_READ_TIMEOUT",
        "10s",
    ),
    ("--max-pull-size", "WASI_HOST_MAX_PULL_SIZE", "64MiB"),
    ("--admin-max-upload", "WASI_HOST_ADMIN_MAX_UPLOAD", "64MiB"),
    (
        "--outbound-connect-timeout",
        "WASI_HOST_OUTBOUND_CONNECT_TIMEOUT",
        "10s",
    ),
    (
        "--outbound-first-byte-timeout",
        "WASI_HOST_OUTBOUND_FIRST_BYTE_TIMEOUT",
        "60s",
    ),
    (
        "--outbound-total-timeout",
        "WASI_HOST_OUTBOUND_TOTAL_TIMEOUT",
        "120s",
    ),
    (
        "--outbound-max-response-body",
        "WASI_HOST_OUTBOUND_MAX_RESPONSE_BODY",
        "64MiB",
    ),
    ("--log-format", "WASI_HOST_LOG_FORMAT", "auto"),
];

/// The documented flags without a default (off, or none unless given), with their
/// variables.
const DOCUMENTED_WITHOUT_DEFAULT: &[(&str, &str)] = &[
    ("--addr", "WASI_HOST_ADDR"),
    ("--max-queue", "WASI_HOST_MAX_QUEUE"),
    ("--watch", "WASI_HOST_WATCH"),
    ("--insecure-registry", "WASI_HOST_INSECURE_REGISTRY"),
    ("--admin-addr", "WASI_HOST_ADMIN_ADDR"),
    ("--allow-outbound", "WASI_HOST_ALLOW_OUTBOUND"),
    ("--outbound-resolve", "WASI_HOST_OUTBOUND_RESOLVE"),
    ("--access-log", "WASI_HOST_ACCESS_LOG"),
    ("--metrics-addr", "WASI_HOST_METRICS_ADDR"),
    ("--env", "WASI_HOST_ENV"),
];

#[test]
fn serve_help_gives_the_documented_defaults_and_variables() {
    let help = ServeHelp::read();
    for &(flag, variable, default) in DOCUMENTED_DEFAULTS {
        assert_eq!(help.default_of(flag), default, "{flag}");
        assert_eq!(help.env_of(flag).as_deref(), Some(variable), "{flag}");
    }
    for &(flag, variable) in DOCUMENTED_WITHOUT_DEFAULT {
        assert_eq!(help.env_of(flag).as_deref(), Some(variable), "{flag}");
    }
}

#[test]
fn the_default_probe_path_is_one_cloud_run_leaves_alone() {
    // Cloud Run reserves some paths ending in `z` (`/healthz`) for itself.
    let probe = ServeHelp::read().default_of("--health-path");
    assert!(
        probe.starts_with("/.well-known/") && !probe.ends_with('z'),
        "{probe}"
    );
}
