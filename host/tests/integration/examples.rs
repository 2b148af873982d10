//! The examples in `examples/`: hellos written in other languages and built by other
//! toolchains (componentize-py, componentize-js), each through its own build script.
//! The host serves them unchanged, they answer exactly like the Rust hello, and the
//! same as under `wasmtime serve`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::portability::{assert_same_answers, wasmtime_serve};
use crate::util::{
    TestServer, assert_hello, in_ci, report_skipped, run_build, tool_runs, workspace,
};

/// The Python hello, built once per test run; `None` when its toolchain is missing.
fn python_hello() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_example("python-hello", &["python3"]))
        .as_deref()
}

/// The JavaScript hello, built once per test run; `None` when its toolchain is missing.
fn js_hello() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_example("js-hello", &["node", "npm"]))
        .as_deref()
}

/// Builds `examples/NAME` with its `build.sh` into the test guests' target folder. When
/// one of `tools` is missing the example is skipped, saying so, except in CI, where
/// that fails the test: CI must build every example.
fn build_example(name: &str, tools: &[&str]) -> Option<PathBuf> {
    if let Some(missing) = tools.iter().find(|tool| !tool_runs(tool)) {
        let why = format!("`{missing}` is not installed (scripts/setup.sh installs it)");
        assert!(!in_ci(), "cannot build the {name} example: {why}");
        report_skipped(&format!("the {name} example"), &why);
        return None;
    }
    let root = workspace();
    let output = root
        .join("target")
        .join("test-guests")
        .join("examples")
        .join(format!("{name}.wasm"));
    let script = root.join("examples").join(name).join("build.sh");
    run_build(
        Command::new(&script).arg(&output),
        &format!("the {name} example (examples/{name}/build.sh)"),
    );
    Some(output)
}

/// Serves `component` and checks it answers like the Rust hello, then compares its
/// answers with `wasmtime serve`'s.
async fn assert_serves_like_hello(component: &Path) {
    let wasi_host = TestServer::start(component);
    assert_hello(&wasi_host).await;
    assert_same_answers(&wasmtime_serve(component), &wasi_host).await;
}

#[tokio::test]
async fn python_hello_answers_like_the_rust_hello() {
    if let Some(component) = python_hello() {
        assert_serves_like_hello(component).await;
    }
}

#[tokio::test]
async fn js_hello_answers_like_the_rust_hello() {
    if let Some(component) = js_hello() {
        assert_serves_like_hello(component).await;
    }
}
