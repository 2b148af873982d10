//! The guest's environment: Cloud Run's service names and `--env` values arrive, nothing
//! else from the host's environment does, and bad entries stop the host before it binds.

use reqwest::StatusCode;

use crate::util::{TestServer, get, guests, serve_refused};

/// What the testbed's `/env` reports, one `KEY=VALUE` per line.
async fn guest_env(server: &TestServer) -> Vec<String> {
    let reply = get(server, "/env").await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.text().lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn platform_names_and_env_flags_reach_the_guest_and_host_secrets_do_not() {
    let server = TestServer::start_with_env(
        &guests().testbed,
        &["--env", "GREETING=hello, world", "--env", "QUERY=a=b"],
        &[
            ("K_SERVICE", "shop"),
            ("K_REVISION", "shop-00042-xyz"),
            ("K_CONFIGURATION", "shop"),
            ("SECRET_TOKEN", "do-not-leak"),
        ],
    );
    assert_eq!(
        guest_env(&server).await,
        [
            "K_SERVICE=shop",
            "K_REVISION=shop-00042-xyz",
            "K_CONFIGURATION=shop",
            "GREETING=hello, world",
            "QUERY=a=b",
        ]
    );
}

#[tokio::test]
async fn prefixed_host_variables_reach_the_guest_without_their_prefix() {
    let server = TestServer::start_with_env(
        &guests().testbed,
        &["--env", "MODE=explicit"],
        &[
            ("WASI_GUEST_DB_PASSWORD", "from-secret-manager"),
            ("WASI_GUEST_MODE", "passed"),
            ("DB_PASSWORD", "host-only"),
        ],
    );
    assert_eq!(
        guest_env(&server).await,
        ["DB_PASSWORD=from-secret-manager", "MODE=explicit"]
    );
}

#[tokio::test]
async fn wasi_host_env_takes_one_entry_per_line() {
    let server = TestServer::start_with_env(
        &guests().testbed,
        &[],
        &[
            ("WASI_HOST_ENV", "MODE=production\nLIST=a,b,c\n"),
            ("SECRET_TOKEN", "do-not-leak"),
        ],
    );
    assert_eq!(guest_env(&server).await, ["MODE=production", "LIST=a,b,c"]);
}

#[tokio::test]
async fn without_platform_variables_or_flags_the_guest_environment_is_empty() {
    let server =
        TestServer::start_with_env(&guests().testbed, &[], &[("SECRET_TOKEN", "do-not-leak")]);
    assert!(guest_env(&server).await.is_empty());
}

/// A bad entry is named by its place, never quoted: its value may be a secret.
#[test]
fn bad_entries_stop_the_host_before_it_binds() {
    let stderr = serve_refused(&guests().testbed, &["--env", "s3cret-value"], &[]);
    assert!(
        stderr.contains("error: invalid --env entry 1: expected KEY=VALUE"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
    let stderr = serve_refused(&guests().testbed, &["--env", "1ST=s3cret-value"], &[]);
    assert!(
        stderr.contains(
            "error: invalid --env entry 1: a key is a letter or `_` followed by letters, digits or `_`"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
    let stderr = serve_refused(&guests().testbed, &["--env", "A=1", "--env", "A=2"], &[]);
    assert!(
        stderr.contains("error: --env sets `A` more than once"),
        "{stderr}"
    );
    let stderr = serve_refused(
        &guests().testbed,
        &[],
        &[("WASI_HOST_ENV", "GOOD=1\nBAD-KEY=s3cret-value")],
    );
    assert!(stderr.contains("error: invalid --env entry 2"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
}
