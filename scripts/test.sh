#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit and integration tests. The
# integration tests build every guest themselves and run the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
rustup component add rustfmt clippy
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test -p wasi-host
