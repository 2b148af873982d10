#!/usr/bin/env bash
# Builds the Rust hello as a WASI 0.3 component (world `wasi:http/service@0.3.0`,
# export `wasi:http/handler@0.3.0`) with plain cargo for `wasm32-wasip2`: wit-bindgen
# generates the async export from the vendored WIT in wit/p3.
#
# Usage: examples/rust-p3-hello/build.sh [OUTPUT]   (default: target/examples/rust-p3-hello.wasm)
#        examples/rust-p3-hello/build.sh --tools-only
#
# The toolchain is the workspace's Rust with the `wasm32-wasip2` target, added with
# rustup; the crate's dependencies are pinned in the workspace's Cargo.lock. The build
# has its own target directory under target/examples/. An OUTPUT newer than its inputs
# is left as it is.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
source "$(dirname "$0")/../lib.sh"

BUILD_INPUTS=("$ROOT_DIR/wit/p3")
rust_example "$@"
