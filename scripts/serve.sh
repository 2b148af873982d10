#!/usr/bin/env bash
# Builds the hello guest and the host, then serves hello on $PORT (default 8080).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo component build -p hello --release
cargo build -p wasi-host --release
exec target/release/wasi-host serve target/wasm32-wasip1/release/hello.wasm "$@"
