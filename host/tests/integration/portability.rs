//! Portability: a component answers the same under `wasmtime serve` as under wasi-host,
//! so an app built for this host is not tied to it. The comparison needs wasmtime
//! 48.0.8 on PATH (`scripts/setup.sh core` installs it); without it the tests that
//! compare fail, saying so.

use std::path::Path;
use std::process::Command;

use crate::util::{HELLO_EXCHANGES, TestServer, answer, guests};

/// The wasmtime release this host embeds, and so the one it is compared with.
const WASMTIME_VERSION: &str = "48.0.8";

/// `wasmtime serve` serving `component` on 127.0.0.1; fails, saying how to install it,
/// when wasmtime 48.0.8 is not on PATH.
pub fn wasmtime_serve(component: &Path) -> TestServer {
    if let Err(why) = wasmtime_on_path() {
        panic!(
            "cannot compare {} with `wasmtime serve`: {why}; install wasmtime-cli \
             {WASMTIME_VERSION} with `scripts/setup.sh core`",
            component.display()
        );
    }
    let mut command = Command::new("wasmtime");
    // `-S cli`: toolchain-built guests import wasi:cli besides the proxy world, which
    // `wasmtime serve` links only when asked. No compilation cache: nothing is written
    // outside the workspace.
    command
        .args([
            "serve",
            "-S",
            "cli",
            "-C",
            "cache=n",
            "--addr",
            "127.0.0.1:0",
        ])
        .arg(component);
    TestServer::spawn(command, "wasmtime serve", "Serving HTTP on http://")
}

/// Whether `wasmtime` on PATH is the release the comparison needs; if not, why.
fn wasmtime_on_path() -> Result<(), String> {
    let output = Command::new("wasmtime")
        .arg("--version")
        .output()
        .map_err(|error| format!("cannot run `wasmtime --version` ({error}): wasmtime {WASMTIME_VERSION} is not on PATH"))?;
    let version = String::from_utf8_lossy(&output.stdout);
    match version.split_whitespace().nth(1) {
        Some(WASMTIME_VERSION) => Ok(()),
        _ => Err(format!(
            "`wasmtime --version` says {:?}; the comparison needs {WASMTIME_VERSION}",
            version.trim()
        )),
    }
}

/// Checks that `wasmtime` and `wasi_host`, serving the same component, answer every
/// request of `HELLO_EXCHANGES` with the same status, content-type and body.
pub async fn assert_same_answers(wasmtime: &TestServer, wasi_host: &TestServer) {
    for &(method, path, ..) in HELLO_EXCHANGES {
        assert_eq!(
            answer(wasmtime, method, path).await,
            answer(wasi_host, method, path).await,
            "{method} {path}: wasmtime serve (left) and wasi-host (right) answer differently"
        );
    }
}

#[tokio::test]
async fn hello_answers_the_same_on_wasmtime_serve() {
    let hello = &guests().hello;
    let wasmtime = wasmtime_serve(hello);
    let wasi_host = TestServer::start(hello);
    assert_same_answers(&wasmtime, &wasi_host).await;
}
