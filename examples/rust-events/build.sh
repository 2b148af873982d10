#!/usr/bin/env bash
# Builds the event handler (Pub/Sub push and Eventarc), a WASI 0.2 wasi:http
# component, with plain cargo for `wasm32-wasip2`.
#
# Usage: examples/rust-events/build.sh [OUTPUT]   (default: target/examples/rust-events.wasm)
#        examples/rust-events/build.sh --tools-only
#
# As examples/rust-p3-hello/build.sh: the workspace's Rust with the `wasm32-wasip2`
# target, dependencies pinned in the workspace's Cargo.lock.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
source "$(dirname "$0")/../lib.sh"

BUILD_INPUTS=()
rust_example "$@"
