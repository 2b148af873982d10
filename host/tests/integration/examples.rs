//! The examples in `examples/`: hellos written in other languages and built by other
//! toolchains (componentize-py, componentize-js), and the Rust hello as a WASI 0.3
//! component, each through its own build script. The host serves them unchanged, they
//! answer exactly like the Rust hello, and the same as under `wasmtime serve`. The
//! config and events examples are built here too, and tested with what they show.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::portability::{assert_same_answers, wasmtime_serve};
use crate::util::{TestServer, assert_hello, run_build, tool_runs, workspace};

/// The Python hello, built once per test run.
fn python_hello() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_example("python-hello", &["python3"]))
}

/// The JavaScript hello, built once per test run.
fn js_hello() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_example("js-hello", &["node", "npm"]))
}

/// The Rust hello as a WASI 0.3 component, built once per test run.
fn rust_p3_hello() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_example("rust-p3-hello", &["cargo"]))
}

/// The Spin 4 Python app (spin-sdk 5), built once per test run.
pub fn spin_python() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_example("spin-python", &["python3"]))
}

/// The config and secrets example, built once per test run.
pub fn rust_config() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_example("rust-config", &["cargo"]))
}

/// The event handler example, built once per test run.
pub fn rust_events() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_example("rust-events", &["cargo"]))
}

/// Builds `examples/NAME` with its `build.sh` into the test guests' target folder. A
/// missing tool of `tools` fails the test, saying how to install it: an example that is
/// not built is not tested, and must not pass.
fn build_example(name: &str, tools: &[&str]) -> PathBuf {
    if let Some(missing) = tools.iter().find(|tool| !tool_runs(tool)) {
        panic!(
            "cannot build the {name} example: `{missing}` is not installed; \
             `scripts/setup.sh examples` installs it"
        );
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
    output
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
    assert_serves_like_hello(python_hello()).await;
}

#[tokio::test]
async fn js_hello_answers_like_the_rust_hello() {
    assert_serves_like_hello(js_hello()).await;
}

#[tokio::test]
async fn wasi_0_3_rust_hello_answers_like_the_rust_hello() {
    assert_serves_like_hello(rust_p3_hello()).await;
}
