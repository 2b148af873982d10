//! Configuration and secrets for a plain component: `wasi:config/store` values from
//! `--config`, `WASI_CONFIG_*` host variables and `--config-file`, in that order of
//! precedence, in both versions of the interface; an unknown key is `none`; a secret
//! reaches the guest's environment as a `WASI_GUEST_*` host variable. Bad sources stop
//! the host before it binds.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use reqwest::StatusCode;

use crate::examples::rust_config;
use crate::util::{TestServer, assert_get, client, run_build, send, serve_refused, workspace};

/// The config example importing the draft `wasi:config/store` Spin's SDKs use.
fn rust_config_draft() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let target_dir = workspace().join("target/test-guests/examples/rust-config-draft");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run_build(
            Command::new(cargo)
                .current_dir(workspace())
                .args(["build", "--release", "--target", "wasm32-wasip2"])
                .args(["-p", "rust-config", "--features", "draft", "--target-dir"])
                .arg(&target_dir),
            "the config example with the draft wasi:config/store",
        );
        target_dir.join("wasm32-wasip2/release/rust_config.wasm")
    })
}

/// A config file holding `text`, removed when dropped.
fn config_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("a temporary file");
    std::fs::write(file.path(), text).expect("write the config file");
    file
}

#[tokio::test]
async fn each_source_gives_values_and_the_flag_wins() {
    let file = config_file("greeting = \"Hi from the file\"\nregion = \"eu\"\nmode = \"file\"\n");
    let path = file.path().to_str().expect("utf-8 path");
    let server = TestServer::start_with_env(
        rust_config(),
        &["--config-file", path, "--config", "mode=flag"],
        &[
            ("WASI_CONFIG_region", "us"),
            ("WASI_CONFIG_mode", "env"),
            ("WASI_CONFIG_API_URL", "https://api.example"),
        ],
    );
    assert_get(&server, "/", StatusCode::OK, "Hi from the file, World!").await;
    assert_get(&server, "/config/region", StatusCode::OK, "us").await;
    assert_get(&server, "/config/mode", StatusCode::OK, "flag").await;
    assert_get(
        &server,
        "/config/API_URL",
        StatusCode::OK,
        "https://api.example",
    )
    .await;
    assert_get(
        &server,
        "/config/missing",
        StatusCode::NOT_FOUND,
        "no config value `missing`",
    )
    .await;
}

#[tokio::test]
async fn the_draft_interface_reads_the_same_values() {
    let server = TestServer::start_with_env(
        rust_config_draft(),
        &[],
        &[("WASI_HOST_CONFIG", "greeting=Hello again\nmode=lines\n")],
    );
    assert_get(&server, "/", StatusCode::OK, "Hello again, World!").await;
    assert_get(&server, "/config/mode", StatusCode::OK, "lines").await;
    assert_get(
        &server,
        "/config/other",
        StatusCode::NOT_FOUND,
        "no config value `other`",
    )
    .await;
}

#[tokio::test]
async fn without_values_every_key_is_none() {
    let server = TestServer::start(rust_config());
    assert_get(&server, "/", StatusCode::OK, "Hello, World!").await;
    assert_get(
        &server,
        "/config/greeting",
        StatusCode::NOT_FOUND,
        "no config value `greeting`",
    )
    .await;
}

#[tokio::test]
async fn a_secret_reaches_the_guest_as_a_prefixed_host_variable() {
    let server = TestServer::start_with_env(
        rust_config(),
        &[],
        &[
            ("WASI_GUEST_API_KEY", "s3cret-key"),
            ("API_KEY", "host-only"),
        ],
    );
    let private = |token: &str| client().get(server.url("/private")).bearer_auth(token);
    let reply = send(private("s3cret-key")).await;
    assert_eq!((reply.status, reply.text()), (StatusCode::OK, "welcome"));
    let reply = send(private("host-only")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    let unset = TestServer::start_with_env(rust_config(), &[], &[("API_KEY", "host-only")]);
    assert_get(
        &unset,
        "/private",
        StatusCode::INTERNAL_SERVER_ERROR,
        "API_KEY is not set",
    )
    .await;
}

#[test]
fn bad_config_stops_the_host_before_it_binds() {
    let stderr = serve_refused(rust_config(), &["--config", "novalue"], &[]);
    assert!(
        stderr.contains("error: invalid --config `novalue`: expected KEY=VALUE"),
        "{stderr}"
    );
    let stderr = serve_refused(
        rust_config(),
        &["--config-file", "/nonexistent/app.toml"],
        &[],
    );
    assert!(
        stderr.contains("cannot read the config file `/nonexistent/app.toml`"),
        "{stderr}"
    );
    let file = config_file("port = 8080\n");
    let path = file.path().to_str().expect("utf-8 path");
    let stderr = serve_refused(rust_config(), &["--config-file", path], &[]);
    assert!(
        stderr.contains(&format!("invalid config file `{path}`")),
        "{stderr}"
    );
    assert!(
        stderr.contains("`port` is not a string but integer"),
        "{stderr}"
    );
    let stderr = serve_refused(rust_config(), &[], &[("WASI_GUEST_1X", "v")]);
    assert!(stderr.contains("host variable `WASI_GUEST_1X`"), "{stderr}");
}
